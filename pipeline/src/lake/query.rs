//! Small Arrow helpers shared by the jobs.

use std::collections::HashSet;
use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray, UInt32Array};
use deltalake::arrow::compute::{cast, concat_batches, take_record_batch};
use deltalake::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use deltalake::datafusion::prelude::SessionContext;

use crate::Result;

/// The values of a column as strings (`None` for nulls), whatever its type.
pub fn strings(batch: &RecordBatch, column: &str) -> Result<Vec<Option<String>>> {
    let Some(col) = batch.column_by_name(column) else {
        return Ok(vec![None; batch.num_rows()]);
    };
    let col = cast(col, &DataType::Utf8)?;
    let a = col.as_string::<i32>();
    Ok((0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
        .collect())
}

/// The values of a numeric column as f64 (NaN for nulls).
pub fn floats(batch: &RecordBatch, column: &str) -> Result<Vec<f64>> {
    let Some(col) = batch.column_by_name(column) else {
        return Ok(vec![f64::NAN; batch.num_rows()]);
    };
    let col = cast(col, &DataType::Float64)?;
    let a = col.as_primitive::<Float64Type>();
    Ok((0..a.len())
        .map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) })
        .collect())
}

/// Adds a constant `_run_id` column.
pub fn with_run_id(batch: &RecordBatch, run_id: &str) -> Result<RecordBatch> {
    let col: ArrayRef = Arc::new(StringArray::from(vec![run_id; batch.num_rows()]));
    append_column(batch, Field::new("_run_id", DataType::Utf8, false), col)
}

/// The batch with one more column.
pub fn append_column(batch: &RecordBatch, field: Field, col: ArrayRef) -> Result<RecordBatch> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(field);
    let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
    cols.push(col);
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}

/// Keeps one row per key: the last occurrence (entities: the latest export wins) or the first
/// (events: the first delivery wins).
pub fn dedupe(batches: &[RecordBatch], key: &str, keep_last: bool) -> Result<Option<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let all = concat_batches(&first.schema(), batches)?;
    let keys = strings(&all, key)?;
    let mut seen = HashSet::with_capacity(keys.len());
    let mut keep: Vec<u32> = Vec::with_capacity(keys.len());
    let order: Box<dyn Iterator<Item = usize>> = if keep_last {
        Box::new((0..keys.len()).rev())
    } else {
        Box::new(0..keys.len())
    };
    for i in order {
        if seen.insert(keys[i].clone()) {
            keep.push(i as u32);
        }
    }
    if keep.len() == all.num_rows() {
        return Ok(Some(all));
    }
    keep.sort_unstable();
    Ok(Some(take_record_batch(&all, &UInt32Array::from(keep))?))
}

/// Runs a query and collects it.
pub async fn sql(ctx: &SessionContext, query: &str) -> Result<Vec<RecordBatch>> {
    Ok(ctx.sql(query).await?.collect().await?)
}

/// `sql` with the text of every string literal replaced by `***`: what the audit log keeps of a
/// query, so that it records which tables and columns were read, not the values looked up (an
/// e-mail address or a name in a `WHERE` must not outlive its subject's erasure there).
pub fn without_literals(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '"' {
            // a quoted identifier is kept as it is
            for d in chars.by_ref() {
                out.push(d);
                if d == '"' {
                    break;
                }
            }
            continue;
        }
        if c != '\'' {
            continue;
        }
        // inside a literal until a quote that is not doubled
        loop {
            match chars.next() {
                None => break,
                Some('\'') if chars.peek() == Some(&'\'') => {
                    chars.next();
                }
                Some('\'') => break,
                Some(_) => {}
            }
        }
        out.push_str("***'");
    }
    out
}

/// Refuses SQL that is not a read: every statement must be a query (`SELECT`, `WITH`, `VALUES`),
/// or `EXPLAIN` / `DESCRIBE` of one. Checked on the parsed statements, so a write hidden in a
/// comment, a string or `EXPLAIN ANALYZE` (which runs its statement) is found, and a word in a
/// string is not mistaken for one. [`crate::Error::Usage`] (exit 2) names what was refused.
pub fn read_only(text: &str) -> Result<()> {
    use deltalake::datafusion::sql::parser::{DFParserBuilder, Statement};
    use deltalake::datafusion::sql::sqlparser::ast::Statement as Sql;
    fn check(statement: &Statement) -> std::result::Result<(), String> {
        let refused = |s: &dyn std::fmt::Display| {
            let text = s.to_string();
            let words: Vec<&str> = text.split_whitespace().take(3).collect();
            // the statement's kind: its leading keywords (`CREATE EXTERNAL TABLE`, `INSERT INTO`)
            let kind: Vec<&str> = words
                .iter()
                .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                .copied()
                .collect();
            Err(if kind.is_empty() {
                words.join(" ")
            } else {
                kind.join(" ")
            })
        };
        match statement {
            Statement::Statement(s) => match s.as_ref() {
                Sql::Query(_) | Sql::ExplainTable { .. } => Ok(()),
                Sql::Explain { statement, .. } => check(&Statement::Statement(statement.clone())),
                other => refused(other),
            },
            Statement::Explain(e) => check(&e.statement),
            Statement::CopyTo(s) => refused(s),
            Statement::CreateExternalTable(s) => refused(s),
            Statement::Reset(s) => refused(s),
        }
    }
    let statements = DFParserBuilder::new(text).build()?.parse_statements()?;
    if statements.len() > 1 {
        return Err(crate::Error::Usage(format!(
            "cslake query runs one statement at a time; found {}",
            statements.len()
        )));
    }
    for s in &statements {
        check(s).map_err(|kind| {
            crate::Error::Usage(format!(
                "cslake query is read-only: {kind} is refused. Tables are written by the commands that own them (ingest, features, score, gdpr, ...), each audited in ops.runs"
            ))
        })?;
    }
    Ok(())
}

/// A query's rows as (column, value as text) pairs in column order; `None` for nulls.
pub async fn text_rows(ctx: &SessionContext, query: &str) -> Result<Vec<Vec<(String, Option<String>)>>> {
    let mut out = Vec::new();
    for b in &sql(ctx, query).await? {
        let cols: Vec<(String, Vec<Option<String>>)> = b
            .schema()
            .fields()
            .iter()
            .map(|f| Ok((f.name().clone(), strings(b, f.name())?)))
            .collect::<Result<_>>()?;
        for i in 0..b.num_rows() {
            out.push(cols.iter().map(|(n, v)| (n.clone(), v[i].clone())).collect());
        }
    }
    Ok(out)
}

/// Whether a table is registered in the session.
pub fn has_table(ctx: &SessionContext, name: &str) -> bool {
    ctx.table_exist(name).unwrap_or(false)
}

/// Days since 1970-01-01, as Arrow's `Date32` stores dates.
pub fn epoch_days(d: chrono::NaiveDate) -> i32 {
    (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32
}

/// Fails with a clear message when the core tables the churn definition needs are not loaded.
pub fn require_core(ctx: &SessionContext, label: &cslake_features::LabelSpec) -> Result<()> {
    for t in label.definition.sources() {
        if !has_table(ctx, &format!("core.{t}")) {
            return Err(crate::Error::Job(format!(
                "table core.{t} does not exist yet: load data with `cslake ingest --source DIR_OR_URL` first \
                 (churn defined as {} reads core.{})",
                label.definition.name(),
                label.definition.sources().join(" and core.")
            )));
        }
    }
    Ok(())
}

/// Fails with a clear message when a core table was written by an older cslake and lacks
/// canonical columns added since (the views read them); `cslake ingest` adds them.
pub async fn require_current_core(ctx: &SessionContext) -> Result<()> {
    for spec in super::schema::CORE_TABLES {
        let name = format!("core.{}", spec.name);
        if !has_table(ctx, &name) {
            continue;
        }
        let schema = ctx.table_provider(name.as_str()).await?.schema();
        let missing: Vec<&str> = spec
            .columns
            .iter()
            .filter(|c| schema.field_with_name(c.name).is_err())
            .map(|c| c.name)
            .collect();
        if !missing.is_empty() {
            return Err(crate::Error::Job(format!(
                "{name} was written by an older cslake and lacks the column(s) {}: run `cslake ingest` \
                 once (with any source; it adds them, null in the rows already landed)",
                missing.join(", ")
            )));
        }
    }
    Ok(())
}

/// What features as of a date may know: everything, or (strict) only the rows ingested by the
/// daily run of that date, found from the ingest runs recorded in `ops.runs`.
pub async fn knowledge(ctx: &SessionContext, strict: bool) -> Result<cslake_features::Knowledge> {
    if !strict {
        return Ok(cslake_features::Knowledge::everything());
    }
    let mut ingests = Vec::new();
    if has_table(ctx, "ops.runs") {
        let q = "SELECT CAST(as_of_date AS VARCHAR) AS d, CAST(MAX(ended_at) AS BIGINT) AS t FROM ops.runs \
                 WHERE command = 'ingest' AND status = 'succeeded' AND as_of_date IS NOT NULL GROUP BY as_of_date";
        for b in sql(ctx, q).await? {
            let (d, t) = (strings(&b, "d")?, strings(&b, "t")?);
            for i in 0..b.num_rows() {
                if let (Some(d), Some(t)) = (
                    d[i].as_deref()
                        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
                    t[i].as_deref().and_then(|t| t.parse::<i64>().ok()),
                ) {
                    ingests.push((d, t));
                }
            }
        }
    }
    Ok(cslake_features::Knowledge::strict(ingests))
}
