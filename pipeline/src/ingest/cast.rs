//! One source batch into one canonical table, a column at a time: each canonical column is taken
//! from its source column (or a constant), value-mapped, checked against `allowed`, cast and
//! checked against its rules over the whole column; the rows that fail anywhere are split off with
//! the first reason (in column order) and their raw record, the others land. Typed source columns
//! (Parquet) are cast by Arrow's kernels; text is parsed value by value from the Arrow array, with
//! the same rules as ever ([`parse_value`]) and no row of strings in between.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, StringBuilder,
};
use deltalake::arrow::compute::{cast, max, min};
use deltalake::arrow::datatypes::{
    DataType, Date32Type, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType,
};

use crate::Result;
use crate::ingest::batch::SourceBatch;
use crate::ingest::event_ids::EventIds;
use crate::ingest::records::{
    ColumnBuilder, MAX_FIELD_BYTES, Mapping, Value, date_of, filter_of, parse_value,
};
use crate::ingest::rules::{broken, keeps_rule, rules};
use crate::lake::ops::Rejected;
use crate::lake::schema::{ColType, Kind, TableSpec};
use crate::settings::{Rule, TableMapping};

/// What one batch gave one table.
#[derive(Debug)]
pub struct Cast {
    /// The rows that landed: canonical columns, `attributes` where kept, audit columns.
    pub batch: RecordBatch,
    pub rejected: Vec<Rejected>,
    /// Rows of the batch that belong to the table (its `filter`), landed or rejected.
    pub read: usize,
    /// The canonical columns the source provides (others are left alone when rows update).
    pub provided: Vec<&'static str>,
}

/// Where the rows are loaded from and by which run.
#[derive(Debug, Clone, Copy)]
pub struct Stamp<'a> {
    pub source: &'a str,
    pub run_id: &'a str,
    pub ingested_at: DateTime<Utc>,
}

/// A source column cast by Arrow to the canonical type, when its own type allows it exactly
/// (integers to integers, numbers to numbers, dates and times to dates and times, booleans), or
/// text Arrow's parsers read (values they cannot read come out null, for the text path to judge).
fn typed(col: &ArrayRef, ty: ColType) -> Option<ArrayRef> {
    let t = col.data_type();
    if *t == DataType::Utf8 {
        let target = match ty {
            ColType::Str => return None,
            ColType::Int => DataType::Int64,
            ColType::Float => DataType::Float64,
            ColType::Bool => DataType::Boolean,
            ColType::Date => DataType::Date32,
            ColType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        };
        return cast(col, &target).ok();
    }
    let target = match ty {
        ColType::Int if t.is_integer() => DataType::Int64,
        ColType::Float if t.is_numeric() => DataType::Float64,
        ColType::Bool if *t == DataType::Boolean => DataType::Boolean,
        ColType::Date if matches!(t, DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)) => {
            DataType::Date32
        }
        ColType::Timestamp if matches!(t, DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        _ => return None,
    };
    cast(col, &target).ok()
}

/// The value of a cast column at `row`; `None` for what the text path must judge (NaN, an
/// infinity, an instant out of range).
fn typed_value(col: &ArrayRef, row: usize) -> Option<Value> {
    Some(match col.data_type() {
        DataType::Int64 => Value::Int(col.as_primitive::<Int64Type>().value(row)),
        DataType::Float64 => Some(col.as_primitive::<Float64Type>().value(row))
            .filter(|v| v.is_finite())
            .map(Value::Float)?,
        DataType::Boolean => Value::Bool(col.as_boolean().value(row)),
        DataType::Date32 => Value::Date(date_of(col.as_primitive::<Date32Type>().value(row))?),
        DataType::Timestamp(..) => Value::Ts(DateTime::from_timestamp_micros(
            col.as_primitive::<TimestampMicrosecondType>().value(row),
        )?),
        _ => return None,
    })
}

/// One canonical column over the rows of a batch that belong to the table.
struct ColumnJob<'a> {
    table: &'static str,
    column: &'static crate::lake::schema::Column,
    config: &'a TableMapping,
    rule: Option<&'a Rule>,
    today: NaiveDate,
    rows: &'a [usize],
    /// Every row of the batch is the table's (no filter routed any away).
    all_rows: bool,
}

/// A row's first failure: (field, reason).
type Failure = Option<(String, String)>;

impl ColumnJob<'_> {
    /// The column's values, in the order of `rows`; rows that fail are marked in `failed` (their
    /// value is left null or as it was: they do not land).
    fn run(
        &self,
        source: Option<(&SourceBatch, usize)>,
        failed: &mut [Failure],
        number: &dyn Fn(usize) -> usize,
    ) -> Result<ArrayRef> {
        let c = self.column;
        let config = self.config;
        let constant = config.constants.get(c.name).map(String::as_str);
        let value_map: Option<HashMap<String, &str>> = match config.values.get(c.name) {
            Some(m) => Some(
                m.iter()
                    .map(|(k, v)| (k.trim().to_lowercase(), v.as_str()))
                    .collect(),
            ),
            None if !c.words.is_empty() => Some(c.words.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
            None => None,
        };
        let allowed = config.allowed.get(c.name);
        let plain = value_map.is_none() && allowed.is_none();
        let fail = |k: usize, reason: String| {
            Some((
                c.name.to_string(),
                format!("row {}, field '{}': {reason}", number(k), c.name),
            ))
        };
        let column = source.map(|(src, i)| src.batch.column(i));
        // typed source columns, and text the kernels parse, land by Arrow's casts; what they
        // cannot parse goes value by value through the rules of the text path
        let fast = column
            .filter(|_| plain && c.ty != ColType::Str)
            .and_then(|col| typed(col, c.ty));
        // every value cast, and to values a column may hold
        let clean = fast
            .as_ref()
            .is_some_and(|f| f.null_count() == 0 && !needs_text(f));
        let text: Option<StringArray> = match source {
            None => None,
            // a typed column without nulls needs no text
            Some(_) if clean => None,
            Some((src, i)) => Some(src.text_column(i)?),
        };
        if plain
            && c.ty == ColType::Str
            && let Some(t) = &text
            && let Some(same) = self.text_as_is(t, constant, failed, &fail)
        {
            return Ok(same);
        }
        if let Some(f) = &fast
            && clean
            && self.all_rows
            && self.rule.is_none_or(|rule| keeps_rule(f, rule, self.today))
        {
            return Ok(f.clone());
        }
        let mut out = ColumnBuilder::new(c.ty, self.rows.len());
        for (k, &r) in self.rows.iter().enumerate() {
            if failed[k].is_some() {
                out.null();
                continue;
            }
            let value = match fast
                .as_ref()
                .filter(|f| !f.is_null(r))
                .and_then(|f| typed_value(f, r))
            {
                Some(v) => Ok(v),
                None => {
                    let raw = text
                        .as_ref()
                        .filter(|t| !t.is_null(r))
                        .map(|t| t.value(r).trim())
                        .filter(|v| !v.is_empty())
                        .or(constant);
                    let raw = match (raw, &value_map) {
                        (Some(v), Some(map)) => Some(map.get(&v.to_lowercase()).copied().unwrap_or(v)),
                        (v, _) => v,
                    };
                    if let (Some(v), Some(allowed)) = (raw, allowed)
                        && !allowed.iter().any(|a| a.eq_ignore_ascii_case(v))
                    {
                        failed[k] = fail(
                            k,
                            format!(
                                "'{}' is not one of the allowed values ({})",
                                short(v, 60),
                                allowed.join(", ")
                            ),
                        );
                        out.null();
                        continue;
                    }
                    match raw {
                        None if c.required => Err("required but empty".to_string()),
                        None => Ok(Value::Null),
                        Some(s) if c.ty == ColType::Str => {
                            out.str(s);
                            continue;
                        }
                        Some(s) => parse_value(c.ty, s, &config.date_formats),
                    }
                }
            };
            match value {
                Ok(v) => {
                    let (x, day) = out.push(v);
                    if let Some(why) = self.rule.and_then(|rule| broken(rule, x, day, self.today)) {
                        failed[k] = fail(
                            k,
                            format!(
                                "{why} (a rule of [ingest.tables.{}.rules]; `{} = {{}}` there turns it off)",
                                self.table, c.name
                            ),
                        );
                    }
                }
                Err(reason) => {
                    failed[k] = fail(k, reason);
                    out.null();
                }
            }
        }
        Ok(out.finish())
    }

    /// A text column that lands as it is (values already trimmed, no blank standing for a
    /// null): the source array itself, no copy. `None` when values need trimming or filling.
    fn text_as_is(
        &self,
        t: &StringArray,
        constant: Option<&str>,
        failed: &mut [Failure],
        fail: &dyn Fn(usize, String) -> Failure,
    ) -> Option<ArrayRef> {
        if !self.all_rows {
            return None;
        }
        let mut missing: Vec<usize> = Vec::new();
        for r in 0..t.len() {
            if t.is_null(r) {
                missing.push(r);
                continue;
            }
            let v = t.value(r);
            let trimmed = v.trim();
            if trimmed.is_empty() || trimmed.len() != v.len() {
                return None;
            }
        }
        if !missing.is_empty() && constant.is_some() {
            return None;
        }
        if self.column.required {
            for r in missing {
                if failed[r].is_none() {
                    failed[r] = fail(r, "required but empty".into());
                }
            }
        }
        Some(Arc::new(t.clone()))
    }
}

/// Whether a cast column holds what no column may hold: NaN or an infinity, a date or instant
/// beyond the years chrono holds. The text path judges those rows.
fn needs_text(a: &ArrayRef) -> bool {
    match a.data_type() {
        DataType::Float64 => a
            .as_primitive::<Float64Type>()
            .iter()
            .flatten()
            .any(|x| !x.is_finite()),
        // the days and instants chrono holds are one range: the extremes decide
        DataType::Date32 => {
            let a = a.as_primitive::<Date32Type>();
            [min(a), max(a)]
                .into_iter()
                .flatten()
                .any(|d| date_of(d).is_none())
        }
        DataType::Timestamp(..) => {
            let a = a.as_primitive::<TimestampMicrosecondType>();
            [min(a), max(a)]
                .into_iter()
                .flatten()
                .any(|t| DateTime::from_timestamp_micros(t).is_none())
        }
        _ => false,
    }
}

/// The accounts the lake knows, looked up once per row of every table that references one: a
/// fast seeded hash (foldhash) in place of SipHash halves the cost of the lookups, and ids of up
/// to 24 bytes (most CRM ids) sit inline in the table's slots, so a lookup does not chase a
/// pointer to a heap string per row (measured: the check was 11% of a Parquet load's CPU).
pub type Accounts = HashSet<compact_str::CompactString, foldhash::fast::RandomState>;

/// Casts the rows of `src` that belong to the table; `known` are the accounts rows may reference
/// (`None`: orphans are kept). `None` when no row of the batch is the table's (a filter routes
/// the rows of mixed files).
pub fn cast_batch(
    spec: &'static TableSpec,
    src: &SourceBatch,
    config: &TableMapping,
    known: Option<&Accounts>,
    stamp: Stamp<'_>,
    ids: &mut EventIds,
) -> Result<Option<Cast>> {
    let n_src = src.num_rows();
    let header = src.header();
    // text of every column that is text already or that a filter, check or attribute reads
    let mut text: HashMap<usize, StringArray> = HashMap::new();
    let text_of = |i: usize, text: &mut HashMap<usize, StringArray>| -> Result<()> {
        if let std::collections::hash_map::Entry::Vacant(e) = text.entry(i) {
            e.insert(src.text_column(i)?);
        }
        Ok(())
    };
    let filter = filter_of(&header, config);
    for (f, _) in &filter {
        if let Some(i) = f {
            text_of(*i, &mut text)?;
        }
    }
    // the rows of this table; rows the reader could not read are everybody's, to be rejected
    let rows: Vec<usize> = if filter.is_empty() {
        (0..n_src).collect()
    } else {
        (0..n_src)
            .filter(|r| {
                src.errors.contains_key(r)
                    || filter.iter().all(|(idx, want)| {
                        idx.and_then(|i| text.get(&i))
                            .filter(|c| !c.is_null(*r))
                            .is_some_and(|c| c.value(*r).trim().to_lowercase() == *want)
                    })
            })
            .collect()
    };
    if rows.is_empty() && n_src > 0 {
        return Ok(None);
    }
    // with a filter, a field that no row of this table fills is not a candidate for any column,
    // so `groupId` of group calls does not shadow `context.groupId` of track calls
    let present: Vec<bool> = if filter.is_empty() || n_src == 0 {
        vec![true; header.len()]
    } else {
        (0..header.len())
            .map(|i| {
                let col = src.batch.column(i);
                match col.data_type() {
                    DataType::Utf8 => {
                        let t = col.as_string::<i32>();
                        rows.iter()
                            .any(|r| !t.is_null(*r) && !t.value(*r).trim().is_empty())
                    }
                    _ => rows.iter().any(|r| !col.is_null(*r)),
                }
            })
            .collect()
    };
    let mapping = Mapping::resolve_present(spec, &header, &present, config, &src.origin)?;
    let n = rows.len();
    let number = |k: usize| src.number(rows[k]);
    // the first reason each row failed for: (field, reason)
    let mut failed: Vec<Option<(String, String)>> = vec![None; n];
    for (k, r) in rows.iter().enumerate() {
        if let Some(e) = src.errors.get(r) {
            failed[k] = Some((String::new(), format!("row {}: {}", number(k), e.reason)));
        }
    }
    // a runaway field (an unclosed quote, a blob in a text column) is not data to keep
    for (i, f) in src.batch.schema().fields().iter().enumerate() {
        if *f.data_type() != DataType::Utf8 {
            continue;
        }
        let col = src.batch.column(i).as_string::<i32>();
        for (k, r) in rows.iter().enumerate() {
            if failed[k].is_none() && !col.is_null(*r) && col.value(*r).len() > MAX_FIELD_BYTES {
                let field = spec
                    .columns
                    .iter()
                    .zip(&mapping.columns)
                    .find(|(_, idx)| **idx == Some(i))
                    .map_or_else(|| header[i].clone(), |(c, _)| c.name.to_string());
                failed[k] = Some((
                    field.clone(),
                    format!(
                        "row {}, field '{field}': {} bytes, above the 1 MiB a field may hold (an unclosed quote?)",
                        number(k),
                        col.value(*r).len()
                    ),
                ));
            }
        }
    }

    let rules = rules(spec, config);
    let all_rows = n == n_src;
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(spec.columns.len() + 4);
    for (j, (c, idx)) in spec.columns.iter().zip(&mapping.columns).enumerate() {
        if spec.kind == Kind::Event
            && c.name == spec.key
            && idx.is_none()
            && !config.constants.contains_key(c.name)
        {
            let fields: Vec<(&str, StringArray)> = spec
                .columns
                .iter()
                .zip(&mapping.columns)
                .filter_map(|(c, idx)| idx.map(|i| Ok((c.name, src.text_column(i)?))))
                .collect::<Result<_>>()?;
            let fields: Vec<(&str, &StringArray)> = fields.iter().map(|(n, t)| (*n, t)).collect();
            columns.push(ids.make(&src.origin, &fields, &rows));
            continue;
        }
        let source = idx.map(|i| (src, i));
        let job = ColumnJob {
            table: spec.name,
            column: c,
            config,
            rule: rules[j].as_ref(),
            today: stamp.ingested_at.date_naive(),
            rows: &rows,
            all_rows,
        };
        columns.push(job.run(source, &mut failed, &number)?);
    }

    // rows that name an account the lake does not know
    if let (Some(known), true) = (known, spec.references_account)
        && let Some(a) = spec.columns.iter().position(|c| c.name == "account_id")
    {
        let accounts = columns[a].as_string::<i32>();
        for (k, f) in failed.iter_mut().enumerate() {
            if f.is_none() && !accounts.is_null(k) && !known.contains(accounts.value(k)) {
                *f = Some((
                    "account_id".into(),
                    format!(
                        "row {}, field 'account_id': unknown account '{}' (not in accounts)",
                        number(k),
                        accounts.value(k)
                    ),
                ));
            }
        }
    }

    // fields mapped to nothing, kept as a JSON object where the table keeps attributes
    if spec.keeps_attributes {
        for i in &mapping.unmapped {
            text_of(*i, &mut text)?;
        }
        let mut attrs = StringBuilder::with_capacity(n, n * 16);
        for &r in &rows {
            let obj: serde_json::Map<String, serde_json::Value> = mapping
                .unmapped
                .iter()
                .filter_map(|i| {
                    let c = &text[i];
                    let v = (!c.is_null(r)).then(|| c.value(r).trim())?;
                    (!v.is_empty()).then(|| (header[*i].clone(), serde_json::Value::String(v.to_string())))
                })
                .collect();
            attrs.append_option((!obj.is_empty()).then(|| serde_json::Value::Object(obj).to_string()));
        }
        columns.push(Arc::new(attrs.finish()));
    }

    // the rejected rows, with the raw record as the source had it
    let mut rejected = Vec::new();
    if failed.iter().any(Option::is_some) {
        let all: Vec<StringArray> = (0..src.batch.num_columns())
            .map(|i| match text.get(&i) {
                Some(t) => Ok(t.clone()),
                None => src.text_column(i),
            })
            .collect::<Result<_>>()?;
        for (k, f) in failed.iter().enumerate() {
            if let Some((field, reason)) = f {
                rejected.push(Rejected {
                    origin: src.origin.clone(),
                    row: number(k),
                    field: field.clone(),
                    reason: reason.clone(),
                    raw: src.raw_json(rows[k], &all),
                });
            }
        }
    }
    let mut kept: Vec<ArrayRef> = if rejected.is_empty() {
        columns
    } else {
        let keep = BooleanArray::from(failed.iter().map(Option::is_none).collect::<Vec<_>>());
        columns
            .iter()
            .map(|c| deltalake::arrow::compute::filter(c, &keep))
            .collect::<std::result::Result<_, _>>()?
    };
    let landed = n - rejected.len();
    let repeat = |s: &str| Arc::new(StringArray::new_repeated(s, landed)) as ArrayRef;
    kept.push(repeat(stamp.source));
    kept.push(repeat(stamp.run_id));
    kept.push(Arc::new(
        deltalake::arrow::array::TimestampMicrosecondArray::from(vec![
            stamp.ingested_at.timestamp_micros();
            landed
        ])
        .with_timezone("UTC"),
    ));
    let batch = RecordBatch::try_new(spec.table_schema(), kept)?;
    let mut provided: Vec<&'static str> = spec
        .columns
        .iter()
        .zip(&mapping.columns)
        .filter(|(_, idx)| idx.is_some())
        .map(|(c, _)| c.name)
        .collect();
    if spec.keeps_attributes && !mapping.unmapped.is_empty() {
        provided.push("attributes");
    }
    Ok(Some(Cast {
        batch,
        rejected,
        read: n,
        provided,
    }))
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::records::{RawRecords, RawRow};
    use crate::lake::schema::{ACCOUNTS, USAGE_EVENTS};

    fn stamp() -> Stamp<'static> {
        Stamp {
            source: "test",
            run_id: "run",
            ingested_at: Utc::now(),
        }
    }

    /// The landed rows and the rejects of `src` in `spec`.
    fn land(spec: &'static TableSpec, src: &SourceBatch, cfg: &TableMapping) -> (RecordBatch, Vec<Rejected>) {
        let src = src.clone().with_templates(cfg).unwrap();
        let c = cast_batch(spec, &src, cfg, None, stamp(), &mut EventIds::default())
            .unwrap()
            .unwrap();
        (c.batch, c.rejected)
    }

    fn rec(header: &[&str], rows: &[&[&str]]) -> SourceBatch {
        SourceBatch::from_records(RawRecords {
            origin: "file:///x/usage.csv".into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            meetings: false,
            rows: rows
                .iter()
                .enumerate()
                .map(|(i, r)| RawRow {
                    number: i + 1,
                    values: r.iter().map(|s| Some(s.to_string())).collect(),
                    error: None,
                })
                .collect(),
        })
        .unwrap()
    }

    #[test]
    fn casts_good_rows_and_rejects_bad_ones_with_reasons() {
        let r = rec(
            &["Event ID", "group_id", "User ID", "event", "timestamp", "count"],
            &[
                &["e1", "a1", "u1", "login", "2026-01-02T10:00:00Z", "2"],
                &["e2", "a1", "u1", "login", "yesterday", "1"],
                &["", "a1", "u1", "login", "2026-01-02", "1"],
                &["e4", "a2", "", "export", "1767348000", ""],
            ],
        );
        let (b, rej) = land(&USAGE_EVENTS, &r, &TableMapping::default());
        assert_eq!(b.num_rows(), 2);
        assert_eq!(rej.len(), 2);
        assert_eq!(
            rej[0].reason,
            "row 2, field 'event_time': expected a timestamp (RFC 3339, e.g. 2026-01-31T09:30:00Z), found 'yesterday'"
        );
        assert_eq!(rej[1].reason, "row 3, field 'event_id': required but empty");
        assert!(rej[1].raw.contains("\"group_id\":\"a1\""));
        assert_eq!(b.num_rows(), 2);
    }

    #[test]
    fn a_date_beyond_what_a_calendar_holds_is_rejected_not_a_panic() {
        // found by the CSV and Parquet hostile-input runs: arrow casts this to a Date32 that
        // chrono cannot hold
        let r = rec(
            &["account_id", "name", "created_date"],
            &[&["a1", "Acme", "+275760-09-13"], &["a2", "Bolt", "2025-02-01"]],
        );
        let (b, bad) = land(&ACCOUNTS, &r, &TableMapping::default());
        assert_eq!(b.num_rows(), 1);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].field, "created_date");
        assert!(
            bad[0].reason.starts_with("row 1, field 'created_date'"),
            "{}",
            bad[0].reason
        );
    }

    #[test]
    fn values_that_cannot_be_right_are_quarantined_by_rule() {
        use crate::lake::schema::SUBSCRIPTIONS;
        let r = rec(
            &["subscription_id", "account_id", "mrr", "seats", "start_date"],
            &[
                &["s1", "a1", "100", "5", "2026-01-01"],
                &["s2", "a1", "-5", "5", "2026-01-01"],
                &["s3", "a1", "100", "-1", "2026-01-01"],
            ],
        );
        let (b, bad) = land(&SUBSCRIPTIONS, &r, &TableMapping::default());
        assert_eq!(b.num_rows(), 1);
        assert_eq!(bad.len(), 2);
        assert_eq!(bad[0].field, "mrr");
        assert!(
            bad[0].reason.contains(
                "row 2, field 'mrr': -5 is below the minimum 0 (a rule of [ingest.tables.subscriptions.rules]"
            ),
            "{}",
            bad[0].reason
        );
        assert_eq!(bad[1].field, "seats");
        // `mrr = {}` turns the built-in rule off; a rule of one's own replaces it
        let cfg: TableMapping = toml::from_str("[rules]\nmrr = {}\nseats = { min = 0, max = 3 }\n").unwrap();
        let (b, bad) = land(&SUBSCRIPTIONS, &r, &cfg);
        assert_eq!((b.num_rows(), bad.len()), (0, 3));
        let reasons: Vec<&str> = bad.iter().map(|r| r.reason.as_str()).collect();
        assert!(
            reasons[0].contains("5 is above the maximum 3")
                && reasons[1].contains("5 is above the maximum 3")
        );
        assert!(reasons[2].contains("-1 is below the minimum 0"), "{reasons:?}");
        // events cannot have happened years from now
        let future = (Utc::now() + chrono::Duration::days(400))
            .format("%Y-%m-%dT10:00:00Z")
            .to_string();
        let soon = (Utc::now() + chrono::Duration::days(1))
            .format("%Y-%m-%dT10:00:00Z")
            .to_string();
        let r = rec(
            &["event_id", "account_id", "event_type", "event_time"],
            &[&["e1", "a1", "login", &future], &["e2", "a1", "login", &soon]],
        );
        let (b, bad) = land(&USAGE_EVENTS, &r, &TableMapping::default());
        assert_eq!((b.num_rows(), bad.len()), (1, 1));
        assert!(
            bad[0]
                .reason
                .contains("days after the day it was loaded (at most 2"),
            "{}",
            bad[0].reason
        );
    }

    #[test]
    fn typed_columns_are_judged_by_their_rules_at_the_bounds_and_row_by_row_past_them() {
        // a Parquet source: numbers and instants arrive typed; a column whose least and
        // greatest values keep its rules lands as it is, one that breaks them is judged row by row
        use crate::lake::schema::SUBSCRIPTIONS;
        use deltalake::arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
        use deltalake::arrow::datatypes::{Field, Schema};
        let typed = |mrr: Vec<f64>, seats: Vec<i64>| {
            let n = mrr.len();
            let ids: Vec<String> = (1..=n).map(|i| format!("s{i}")).collect();
            let schema = Schema::new(vec![
                Field::new("subscription_id", DataType::Utf8, false),
                Field::new("account_id", DataType::Utf8, false),
                Field::new("mrr", DataType::Float64, false),
                Field::new("seats", DataType::Int64, false),
                Field::new(
                    "start_date",
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                    false,
                ),
            ]);
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(StringArray::from(vec!["a1"; n])),
                Arc::new(Float64Array::from(mrr)),
                Arc::new(Int64Array::from(seats)),
                Arc::new(TimestampMicrosecondArray::from(vec![1_767_225_600_000_000; n])),
            ];
            SourceBatch {
                origin: "file:///x/subscriptions.parquet".into(),
                batch: RecordBatch::try_new(Arc::new(schema), cols).unwrap(),
                first_row: 1,
                numbers: None,
                errors: HashMap::new(),
                meetings: false,
                offset: 0,
            }
        };
        // the least values sit on the minimum 0: nothing is broken
        let (b, bad) = land(
            &SUBSCRIPTIONS,
            &typed(vec![0.0, 250.5, 99.0], vec![3, 0, 7]),
            &TableMapping::default(),
        );
        assert_eq!((b.num_rows(), bad.len()), (3, 0));
        let mrr = b.column_by_name("mrr").unwrap().as_primitive::<Float64Type>();
        assert_eq!(mrr.values().to_vec(), vec![0.0, 250.5, 99.0]);
        // one value past a bound: that row, with its reason; the others land
        let (b, bad) = land(
            &SUBSCRIPTIONS,
            &typed(vec![10.0, -0.5, 20.0], vec![3, 4, 5]),
            &TableMapping::default(),
        );
        assert_eq!((b.num_rows(), bad.len()), (2, 1));
        assert!(
            bad[0]
                .reason
                .starts_with("row 2, field 'mrr': -0.5 is below the minimum 0"),
            "{}",
            bad[0].reason
        );
        let seats = b.column_by_name("seats").unwrap().as_primitive::<Int64Type>();
        assert_eq!(seats.values().to_vec(), vec![3, 5]);
        // a rule of one's own on an integer column: its maximum is kept exactly, one past is not
        let cfg: TableMapping = toml::from_str("[rules]\nseats = { min = 1, max = 5 }\n").unwrap();
        let (b, bad) = land(&SUBSCRIPTIONS, &typed(vec![1.0, 2.0], vec![1, 5]), &cfg);
        assert_eq!((b.num_rows(), bad.len()), (2, 0));
        let (b, bad) = land(&SUBSCRIPTIONS, &typed(vec![1.0, 2.0, 3.0], vec![1, 6, 5]), &cfg);
        assert_eq!((b.num_rows(), bad.len()), (2, 1));
        assert!(
            bad[0]
                .reason
                .contains("row 2, field 'seats': 6 is above the maximum 5"),
            "{}",
            bad[0].reason
        );
    }

    #[test]
    fn missing_required_column_names_file_and_columns() {
        let r = rec(&["id", "name"], &[]);
        let e = cast_batch(
            &USAGE_EVENTS,
            &r,
            &TableMapping::default(),
            None,
            stamp(),
            &mut EventIds::default(),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("file:///x/usage.csv"), "{msg}");
        assert!(msg.contains("'account_id'"), "{msg}");
        assert!(msg.contains("found: id, name"), "{msg}");
    }

    #[test]
    fn unmapped_fields_become_attributes() {
        let r = rec(
            &["account_id", "Name", "NPS Owner", "health_flag"],
            &[&["a1", "Acme", "Kim", "ok"]],
        );
        let (batch, rej) = land(&ACCOUNTS, &r, &TableMapping::default());
        assert!(rej.is_empty());
        let attrs = deltalake::arrow::util::display::array_value_to_string(
            batch.column_by_name("attributes").unwrap(),
            0,
        )
        .unwrap();
        assert_eq!(attrs, r#"{"NPS Owner":"Kim","health_flag":"ok"}"#);
    }

    #[test]
    fn ignored_fields_are_neither_attributes_nor_columns() {
        let r = rec(
            &["account_id", "Name", "last_txn_date", "debug.trace", "created"],
            &[&["a1", "Acme", "2026-11-30", "x1", "2020-01-01"]],
        );
        let cfg: TableMapping = toml::from_str(r#"ignore = ["last_txn_date", "debug", "created"]"#).unwrap();
        let (batch, rej) = land(&ACCOUNTS, &r, &cfg);
        assert!(rej.is_empty());
        let value = |c: &str| {
            deltalake::arrow::util::display::array_value_to_string(batch.column_by_name(c).unwrap(), 0)
                .unwrap()
        };
        assert_eq!(value("attributes"), "");
        // `created` is an alias of created_date: ignored, it does not land there either
        assert_eq!(value("created_date"), "");
        assert_eq!(value("name"), "Acme");
    }

    #[test]
    fn billing_periods_are_read_as_words_or_months() {
        use crate::lake::schema::SUBSCRIPTIONS;
        let r = rec(
            &["id", "customer_id", "amount", "started_at", "Billing Period"],
            &[
                &["s1", "a1", "10", "2026-01-01", "Monthly"],
                &["s2", "a1", "10", "2026-01-01", "annual"],
                &["s3", "a1", "10", "2026-01-01", "3"],
                &["s4", "a1", "10", "2026-01-01", "fortnightly"],
            ],
        );
        let (batch, rej) = land(&SUBSCRIPTIONS, &r, &TableMapping::default());
        let months: Vec<String> = (0..batch.num_rows())
            .map(|i| {
                deltalake::arrow::util::display::array_value_to_string(
                    batch.column_by_name("bill_period_months").unwrap(),
                    i,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(months, ["1", "12", "3"]);
        assert_eq!(
            rej[0].reason,
            "row 4, field 'bill_period_months': expected an integer, found 'fortnightly'"
        );
    }

    #[test]
    fn configured_date_formats_value_maps_and_constants() {
        let r = rec(
            &["id", "Tier", "Since"],
            &[
                &["a1", "Small Business", "03/15/2025"],
                &["a2", "enterprise", "15.03.2025"],
                &["a3", "SMB", "2025-03-15"],
            ],
        );
        let cfg: TableMapping = toml::from_str(
            r#"
            columns = { segment = "Tier", contract_start = "Since" }
            date_formats = ["%m/%d/%Y"]
            constants = { plan = "standard" }
            [values.segment]
            "small business" = "SMB"
            "Enterprise" = "Enterprise"
            "#,
        )
        .unwrap();
        let (b, rej) = land(&ACCOUNTS, &r, &cfg);
        assert_eq!(rej.len(), 1);
        assert_eq!(
            rej[0].reason,
            "row 2, field 'contract_start': expected a date (YYYY-MM-DD), found '15.03.2025'"
        );
        let batch = b;
        let text =
            deltalake::arrow::util::pretty::pretty_format_batches(&[batch.project(&[0, 3, 4, 7]).unwrap()])
                .unwrap()
                .to_string();
        assert_eq!(
            text,
            "+------------+---------+----------+----------------+\n\
             | account_id | segment | plan     | contract_start |\n\
             +------------+---------+----------+----------------+\n\
             | a1         | SMB     | standard | 2025-03-15     |\n\
             | a3         | SMB     | standard | 2025-03-15     |\n\
             +------------+---------+----------+----------------+"
        );
    }

    #[test]
    fn values_outside_the_allowed_list_are_rejected_after_mapping() {
        let r = rec(
            &["id", "Tier"],
            &[&["a1", "Small Business"], &["a2", "Gold"], &["a3", "enterprise"]],
        );
        let cfg: TableMapping = toml::from_str(
            r#"
            columns = { segment = "Tier" }
            allowed = { segment = ["SMB", "Enterprise"] }
            values.segment = { "small business" = "SMB" }
            "#,
        )
        .unwrap();
        let (b, rej) = land(&ACCOUNTS, &r, &cfg);
        assert_eq!(b.num_rows(), 2);
        assert_eq!(
            rej.iter().map(|r| r.reason.as_str()).collect::<Vec<_>>(),
            ["row 2, field 'segment': 'Gold' is not one of the allowed values (SMB, Enterprise)"]
        );
    }

    #[test]
    fn a_constant_stands_in_for_a_missing_required_column() {
        let r = rec(
            &["event_id", "account_id", "time"],
            &[&["e1", "a1", "2026-01-01"]],
        );
        let cfg: TableMapping = toml::from_str("constants = { event_type = \"page_view\" }").unwrap();
        let (b, rej) = land(&USAGE_EVENTS, &r, &cfg);
        assert!(rej.is_empty());
        assert_eq!(b.num_rows(), 1);
    }
}
