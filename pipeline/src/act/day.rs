//! The day's table `act_day`: one row per scored account with its scores and their change since
//! the previous scored day, health some days ago, new opportunities, account fields, custom
//! attributes (`attr_<key>`) and every feature. Playbook triggers, exits and `only_if` are SQL
//! predicates over it; templates fill `{column}` placeholders from it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{Duration as Days, NaiveDate};
use deltalake::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use serde_json::Value;

use crate::act::library::{Library, fill, identifiers};
use crate::features::available_registry;
use crate::lake::query::{has_table, sql, strings};
use crate::{Error, Result, Settings};

/// A number as people read it: integers without decimals, others with at most two.
fn readable(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The day's table: one row per scored account with scores, changes, account fields, custom
/// attributes (`attr_<key>`) and every feature. Registered as `act_day` for predicates.
pub struct Day {
    pub as_of: NaiveDate,
    pub batch: RecordBatch,
    pub ids: Vec<String>,
    index: HashMap<String, usize>,
    text: HashMap<String, Vec<Option<String>>>,
    numbers: HashMap<String, Vec<Option<f64>>>,
}

impl Day {
    pub fn row(&self, account: &str) -> Option<usize> {
        self.index.get(account).copied()
    }
    pub fn text(&self, col: &str, i: usize) -> Option<String> {
        self.text.get(col).and_then(|c| c[i].clone())
    }
    pub fn num(&self, col: &str, i: usize) -> Option<f64> {
        self.numbers.get(col).and_then(|c| c[i])
    }
    pub fn columns(&self) -> Vec<String> {
        self.batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }
    pub fn fill(&self, template: &str, i: usize) -> String {
        fill(template, |name| {
            self.text
                .get(name)
                .map(|c| c[i].clone().unwrap_or_else(|| "n/a".into()))
        })
    }

    /// The accounts whose row satisfies a predicate, in id order.
    pub async fn matching(&self, ctx: &SessionContext, predicate: &str, origin: &str) -> Result<Vec<String>> {
        let q = format!("SELECT account_id FROM act_day WHERE {predicate} ORDER BY account_id");
        let df = ctx
            .sql(&q)
            .await
            .map_err(|e| Error::Config(format!("{origin}: the predicate `{predicate}` does not run: {e}")))?;
        let batches = df.collect().await?;
        let mut out = Vec::new();
        for b in &batches {
            out.extend(strings(b, "account_id")?.into_iter().flatten());
        }
        Ok(out)
    }

    /// Why an account matched: the values of the columns the predicate names.
    pub fn reason(&self, predicate_text: &str, i: usize) -> String {
        let cols = self.columns();
        let shown: Vec<String> = identifiers(predicate_text)
            .into_iter()
            .filter(|c| cols.contains(c))
            .map(|c| format!("{c} = {}", self.text(&c, i).unwrap_or_else(|| "null".into())))
            .collect();
        if shown.is_empty() {
            predicate_text.to_string()
        } else {
            shown.join(", ")
        }
    }
}

/// Feature columns `act_day` always has (null when no feature view provides them).
const WELL_KNOWN: &[&str] = &[
    "mrr",
    "seats",
    "days_to_renewal",
    "events_30d",
    "active_users_30d",
];

/// The library without the built-in playbooks this lake cannot evaluate (their SQL names a column
/// no view provides, e.g. billing features for a company without billing data), with a warning
/// for each. A user's own playbook that does not plan stays, and fails the run with its file.
/// While the scoring model is provisional (`train` found it not ready), playbooks whose trigger
/// reads its risk score, band or probability wait, with a warning; the others run.
pub(crate) async fn usable(lib: Library, ctx: &SessionContext) -> (Library, Vec<String>) {
    let mut warnings = Vec::new();
    let provisional = provisional_model(ctx).await;
    let mut out = Library {
        campaigns: lib.campaigns,
        playbooks: Vec::new(),
    };
    for p in lib.playbooks {
        if p.origin.starts_with("builtin:") {
            let mut predicates = vec![p.trigger.predicate()];
            predicates.extend(p.exit.as_ref().map(|x| x.when.clone()));
            predicates.extend(
                p.steps
                    .iter()
                    .filter_map(|s| s.only_if.clone())
                    .filter(|c| c != "task_open" && c != "task_completed"),
            );
            let mut failed = None;
            for pred in predicates {
                let q = format!("SELECT account_id FROM act_day WHERE {pred} LIMIT 0");
                if let Err(e) = ctx.sql(&q).await {
                    failed = Some(e.to_string().lines().next().unwrap_or_default().to_string());
                    break;
                }
            }
            if let Some(e) = failed {
                let w = format!(
                    "built-in playbook '{}' skipped: this lake lacks what it reads ({e})",
                    p.name
                );
                tracing::warn!("{w}");
                warnings.push(w);
                continue;
            }
        }
        if let Some((version, why)) = &provisional
            && reads_risk(&p.trigger.predicate())
        {
            let w = format!(
                "playbook '{}' waits: model {version} is provisional ({why}); its risk bands drive no \
                 playbook until `cslake models promote {version}` confirms it",
                p.name
            );
            tracing::warn!("{w}");
            warnings.push(w);
            continue;
        }
        out.playbooks.push(p);
    }
    (out, warnings)
}

/// Whether a trigger reads the churn model's output (its risk score, band or probability).
fn reads_risk(predicate: &str) -> bool {
    predicate
        .to_ascii_lowercase()
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|t| {
            matches!(
                t,
                "risk_score" | "risk_band" | "prev_risk_band" | "churn_probability"
            )
        })
}

/// The model that scored the day, when it is provisional: `(version, why)`.
async fn provisional_model(ctx: &SessionContext) -> Option<(String, String)> {
    if !has_table(ctx, "models.registry") {
        return None;
    }
    let q = "SELECT r.version, r.reason FROM models.registry r \
             WHERE r.status = 'provisional' AND r.version IN (SELECT DISTINCT model_version FROM act_day)";
    let b = sql(ctx, q).await.ok()?;
    let b = b.iter().find(|b| b.num_rows() > 0)?;
    let version = strings(b, "version").ok()?.into_iter().next().flatten()?;
    let reason = strings(b, "reason")
        .ok()?
        .into_iter()
        .next()
        .flatten()
        .unwrap_or_default();
    // the problems, without the sentence about what provisional means
    let why = reason
        .strip_prefix("provisional: ")
        .unwrap_or(&reason)
        .split("; it scores")
        .next()
        .unwrap_or_default()
        .to_string();
    Some((version, why))
}

/// The last scored date before `as_of` (for "entered the band" and "appeared" triggers).
async fn previous_scored(ctx: &SessionContext, as_of: NaiveDate) -> Result<Option<NaiveDate>> {
    let b = sql(
        ctx,
        &format!(
            "SELECT CAST(MAX(as_of_date) AS VARCHAR) AS d FROM scores.risk_scores WHERE as_of_date < DATE '{as_of}'"
        ),
    )
    .await?;
    Ok(b.first()
        .and_then(|b| strings(b, "d").ok())
        .and_then(|v| v.into_iter().next().flatten())
        .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()))
}

/// Builds and registers `act_day` for `as_of`.
pub async fn day_table(
    ctx: &SessionContext,
    settings: &Settings,
    as_of: NaiveDate,
    extra_health_days: &BTreeSet<i64>,
) -> Result<Day> {
    if !has_table(ctx, "scores.risk_scores") {
        return Err(Error::Job(format!(
            "no scores yet: run `cslake score --as-of {as_of}` (or `cslake run`) first"
        )));
    }
    let prev = previous_scored(ctx, as_of).await?;
    let prev_lit = prev.map_or_else(|| "DATE '1900-01-01'".to_string(), |d| format!("DATE '{d}'"));
    let d = format!("DATE '{as_of}'");
    let has_health = has_table(ctx, "scores.health_scores");
    let has_opp = has_table(ctx, "scores.opportunities");
    let mut select = vec![
        "r.account_id".to_string(),
        "r.risk_score".into(),
        "r.risk_band".into(),
        "r.churn_probability".into(),
        "r.model_version".into(),
        "pr.risk_band AS prev_risk_band".into(),
    ];
    let mut joins = vec![format!(
        "LEFT JOIN scores.risk_scores pr ON pr.account_id = r.account_id AND pr.as_of_date = {prev_lit}"
    )];
    let mut days: BTreeSet<i64> = [7, 30].into_iter().collect();
    days.extend(extra_health_days);
    if has_health {
        select.extend([
            "h.health_score".to_string(),
            "h.band AS health_band".into(),
            "h.trend_7d AS health_trend_7d".into(),
            "h.trend_30d AS health_trend_30d".into(),
            "h.most_impactful_measure".into(),
            "ph.band AS prev_health_band".into(),
        ]);
        joins.push(format!(
            "LEFT JOIN scores.health_scores h ON h.account_id = r.account_id AND h.as_of_date = {d}"
        ));
        joins.push(format!(
            "LEFT JOIN scores.health_scores ph ON ph.account_id = r.account_id AND ph.as_of_date = {prev_lit}"
        ));
        for n in &days {
            select.push(format!("h{n}.health_score AS health_{n}d_ago"));
            joins.push(format!(
                "LEFT JOIN scores.health_scores h{n} ON h{n}.account_id = r.account_id AND h{n}.as_of_date = DATE '{}'",
                as_of - Days::days(*n)
            ));
        }
    } else {
        select.extend([
            "CAST(NULL AS DOUBLE) AS health_score".to_string(),
            "CAST(NULL AS VARCHAR) AS health_band".into(),
            "CAST(NULL AS VARCHAR) AS prev_health_band".into(),
        ]);
        for n in &days {
            select.push(format!("CAST(NULL AS DOUBLE) AS health_{n}d_ago"));
        }
    }
    if has_opp {
        select.extend([
            "COALESCE(o.kinds, '') AS opportunity_kinds".to_string(),
            "COALESCE(no.kinds, '') AS new_opportunity_kinds".into(),
            "o.expected_mrr AS opportunity_mrr".into(),
            "o.reason AS opportunity_reason".into(),
        ]);
        joins.push(format!(
            "LEFT JOIN (SELECT account_id, string_agg(kind, ',' ORDER BY kind) AS kinds, SUM(expected_mrr) AS expected_mrr, \
             string_agg(reason, '; ' ORDER BY kind) AS reason FROM scores.opportunities WHERE as_of_date = {d} GROUP BY account_id) o \
             ON o.account_id = r.account_id"
        ));
        joins.push(format!(
            "LEFT JOIN (SELECT t.account_id, string_agg(t.kind, ',' ORDER BY t.kind) AS kinds FROM scores.opportunities t \
             LEFT JOIN (SELECT account_id, kind FROM scores.opportunities WHERE as_of_date = {prev_lit}) p \
             ON p.account_id = t.account_id AND p.kind = t.kind \
             WHERE t.as_of_date = {d} AND p.account_id IS NULL GROUP BY t.account_id) no ON no.account_id = r.account_id"
        ));
    } else {
        select.extend([
            "'' AS opportunity_kinds".to_string(),
            "'' AS new_opportunity_kinds".into(),
            "CAST(NULL AS DOUBLE) AS opportunity_mrr".into(),
            "CAST(NULL AS VARCHAR) AS opportunity_reason".into(),
        ]);
    }
    let mut taken: HashSet<String> = select
        .iter()
        .map(|s| s.rsplit([' ', '.']).next().unwrap_or(s).to_string())
        .collect();
    if has_table(ctx, "core.accounts") {
        for c in [
            "name",
            "segment",
            "plan",
            "industry",
            "country",
            "csm_id",
            "contract_end",
            "status",
            "attributes",
        ] {
            let alias = if c == "status" { "account_status" } else { c };
            if ctx
                .table("core.accounts")
                .await?
                .schema()
                .has_column_with_unqualified_name(c)
            {
                select.push(format!("a.{c} AS {alias}"));
                taken.insert(alias.to_string());
            }
        }
        joins.push("LEFT JOIN core.accounts a ON a.account_id = r.account_id".into());
    }
    // every feature of the day, each column once
    let registry = available_registry(settings, ctx).await?;
    for (k, view) in registry.views.iter().enumerate() {
        let table = format!("features.{}", view.name);
        if !has_table(ctx, &table) {
            continue;
        }
        let mut any = false;
        for (f, _) in &view.features {
            if taken.insert(f.clone()) {
                select.push(format!("f{k}.{f}"));
                any = true;
            }
        }
        if any {
            joins.push(format!(
                "LEFT JOIN {table} f{k} ON f{k}.account_id = r.account_id AND f{k}.as_of_date = {d}"
            ));
        }
    }
    // columns the built-in playbooks read are there even when no view provides them (null)
    for c in WELL_KNOWN {
        if taken.insert((*c).to_string()) {
            select.push(format!("CAST(NULL AS DOUBLE) AS {c}"));
        }
    }
    let q = format!(
        "SELECT {} FROM scores.risk_scores r {} WHERE r.as_of_date = {d} ORDER BY r.account_id",
        select.join(", "),
        joins.join(" ")
    );
    let batches = sql(ctx, &q).await?;
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => ctx.sql(&q).await?.schema().inner().clone(),
    };
    let mut batch = deltalake::arrow::compute::concat_batches(&schema, &batches)?;
    if batch.num_rows() == 0 {
        return Err(Error::Job(format!(
            "no scores for {as_of}: run `cslake score --as-of {as_of}` first"
        )));
    }
    // top factors as one readable string, and custom attributes as attr_<key> columns
    batch = add_top_reasons(ctx, batch, as_of).await?;
    batch = expand_attributes(batch)?;
    ctx.deregister_table("act_day")?;
    ctx.register_table(
        "act_day",
        Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch.clone()]])?),
    )?;
    Day::from_batch(as_of, batch)
}

impl Day {
    /// Indexes a day's rows by account and renders every column as text for templates.
    pub fn from_batch(as_of: NaiveDate, batch: RecordBatch) -> Result<Day> {
        let ids: Vec<String> = strings(&batch, "account_id")?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        let index = ids.iter().enumerate().map(|(i, a)| (a.clone(), i)).collect();
        let mut text = HashMap::new();
        let mut numbers = HashMap::new();
        for f in batch.schema().fields() {
            let name = f.name();
            let col = batch.column_by_name(name).expect("column of its own schema");
            if f.data_type().is_numeric() {
                let v: Vec<Option<f64>> = crate::lake::query::floats(&batch, name)?
                    .into_iter()
                    .map(|x| x.is_finite().then_some(x))
                    .collect();
                text.insert(name.clone(), v.iter().map(|x| x.map(readable)).collect());
                numbers.insert(name.clone(), v);
            } else if matches!(f.data_type(), DataType::List(_)) {
                continue;
            } else {
                let c = cast(col, &DataType::Utf8)?;
                let a = c.as_string::<i32>();
                text.insert(
                    name.clone(),
                    (0..a.len())
                        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
                        .collect(),
                );
            }
        }
        Ok(Day {
            as_of,
            batch,
            ids,
            index,
            text,
            numbers,
        })
    }
}

async fn add_top_reasons(ctx: &SessionContext, batch: RecordBatch, as_of: NaiveDate) -> Result<RecordBatch> {
    let mut reasons: HashMap<String, String> = HashMap::new();
    let q =
        format!("SELECT account_id, top_factors FROM scores.risk_scores WHERE as_of_date = DATE '{as_of}'");
    for b in sql(ctx, &q).await? {
        let ids = strings(&b, "account_id")?;
        let Some(list) = b
            .column_by_name("top_factors")
            .and_then(|c| c.as_list_opt::<i32>())
        else {
            continue;
        };
        for (i, id) in ids.iter().enumerate() {
            let Some(id) = id else { continue };
            if list.is_null(i) {
                continue;
            }
            let item = list.value(i);
            let Some(st) = item.as_struct_opt() else { continue };
            let Some(r) = st.column_by_name("reason") else {
                continue;
            };
            let r = cast(r, &DataType::Utf8)?;
            let r = r.as_string::<i32>();
            let text: Vec<&str> = (0..r.len())
                .filter(|j| !r.is_null(*j))
                .map(|j| r.value(j))
                .collect();
            reasons.insert(id.clone(), text.join("; "));
        }
    }
    let ids = strings(&batch, "account_id")?;
    let col = StringArray::from(
        ids.iter()
            .map(|a| a.as_ref().and_then(|a| reasons.get(a).cloned()))
            .collect::<Vec<_>>(),
    );
    append_column(batch, "top_reasons", Arc::new(col))
}

fn append_column(batch: RecordBatch, name: &str, col: Arc<dyn Array>) -> Result<RecordBatch> {
    let field = Field::new(name, col.data_type().clone(), true);
    crate::lake::query::append_column(&batch, field, col)
}

/// `attributes` (a JSON object of the source's unmapped fields) as `attr_<key>` text columns.
fn expand_attributes(batch: RecordBatch) -> Result<RecordBatch> {
    let Some(col) = batch.column_by_name("attributes") else {
        return Ok(batch);
    };
    let col = cast(col, &DataType::Utf8)?;
    let a = col.as_string::<i32>();
    let parsed: Vec<Option<serde_json::Map<String, Value>>> = (0..a.len())
        .map(|i| {
            (!a.is_null(i))
                .then(|| serde_json::from_str::<Value>(a.value(i)).ok())
                .flatten()
                .and_then(|v| v.as_object().cloned())
        })
        .collect();
    let mut keys: BTreeSet<String> = BTreeSet::new();
    for m in parsed.iter().flatten() {
        keys.extend(m.keys().cloned());
        if keys.len() > 200 {
            break;
        }
    }
    let mut out = batch;
    for k in keys.into_iter().take(200) {
        let name = format!(
            "attr_{}",
            k.chars()
                .map(|c| if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                })
                .collect::<String>()
        );
        if out.schema().column_with_name(&name).is_some() {
            continue;
        }
        let values: Vec<Option<String>> = parsed
            .iter()
            .map(|m| {
                m.as_ref().and_then(|m| m.get(&k)).and_then(|v| match v {
                    Value::Null => None,
                    Value::String(s) => Some(s.clone()),
                    other => Some(other.to_string()),
                })
            })
            .collect();
        out = append_column(out, &name, Arc::new(StringArray::from(values)))?;
    }
    Ok(out)
}

pub(crate) fn health_days(lib: &Library) -> BTreeSet<i64> {
    lib.playbooks
        .iter()
        .filter_map(|p| p.trigger.health_days())
        .collect()
}
