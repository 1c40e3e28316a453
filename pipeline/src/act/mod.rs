//! `cslake act`: turns the day's scores into actions. Playbooks enrol accounts whose row of the
//! day matches their trigger, advance their steps day by day (tasks, alerts, campaign arms),
//! end them when the exit condition holds; alerts and campaign e-mails are delivered through the
//! configured channels exactly once in effect; scores and tasks are written back to the CRM.
//!
//! Re-running a day is safe: the playbook state of day D is computed from the state of the last
//! day before D (`actions.playbook_runs` is a snapshot per day), every task, alert, assignment
//! and delivery has an id derived from what produced it, and deliveries already sent are
//! skipped by their idempotency key.

pub mod channels;
pub mod library;
pub mod tables;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as Days, NaiveDate};
use deltalake::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::prelude::SessionContext;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::act::channels::crm::{Crm, CrmTask, RecordUpdate};
use crate::act::channels::{Delivery, Dispatcher, Outcome};
use crate::act::library::{Campaign, Library, StepAction, fill, identifiers};
use crate::act::tables::{Alert, Assignment, Cols, DeliveryRow, Enrolment, Rows, Task, read};
use crate::features::available_registry;
use crate::lake::query::{has_table, sql, strings};
use crate::{Error, Lake, Result, RunContext, Settings};

/// What one playbook did (or, in a dry run, would do) today.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PlaybookDay {
    pub playbook: String,
    pub version: u32,
    pub matched: usize,
    pub enrolled: usize,
    pub exited: usize,
    pub completed: usize,
    pub steps_run: usize,
    /// Who entered and why (every one in a dry run, the first 20 otherwise).
    pub enrolments: Vec<Firing>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Firing {
    pub account_id: String,
    pub name: String,
    pub reason: String,
    pub steps_today: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DeliveryCounts {
    pub sent: usize,
    pub failed: usize,
    pub dead: usize,
    pub already_sent: usize,
    pub skipped: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CrmReport {
    pub name: String,
    pub records_updated: usize,
    pub fields_sent: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub tasks_created: usize,
    pub tasks_completed_in_crm: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ActReport {
    pub as_of: String,
    pub dry_run: bool,
    pub accounts: usize,
    pub enrolled: usize,
    pub exited: usize,
    pub completed: usize,
    pub cancelled: usize,
    pub active: usize,
    pub tasks_created: usize,
    pub tasks_overdue: usize,
    pub alerts_created: usize,
    pub renotified: usize,
    pub campaign_assignments: usize,
    pub deliveries: DeliveryCounts,
    pub crm: Vec<CrmReport>,
    pub playbooks: Vec<PlaybookDay>,
    pub warnings: Vec<String>,
}

/// The template library the settings point at.
pub fn library(settings: &Settings) -> Result<Library> {
    let dir = settings
        .file
        .actions
        .library
        .as_ref()
        .map(|p| settings.config_path(p));
    Library::load(dir.as_deref())
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

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
    fn fill(&self, template: &str, i: usize) -> String {
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
    fn reason(&self, predicate_text: &str, i: usize) -> String {
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
async fn usable(lib: Library, ctx: &SessionContext) -> (Library, Vec<String>) {
    let mut warnings = Vec::new();
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
        out.playbooks.push(p);
    }
    (out, warnings)
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
    let registry = available_registry(settings, ctx)?;
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

/// A CSM as tasks and alerts need them.
#[derive(Debug, Clone, Default)]
struct Csm {
    email: Option<String>,
    team: Option<String>,
}

async fn load_csms(ctx: &SessionContext) -> Result<BTreeMap<String, Csm>> {
    let mut out = BTreeMap::new();
    for b in read(ctx, "core.csms", "").await? {
        let r = Rows(&b);
        let (id, email, team) = (r.s("csm_id")?, r.s("email")?, r.s("team")?);
        for i in 0..b.num_rows() {
            if let Some(id) = &id[i] {
                out.insert(
                    id.clone(),
                    Csm {
                        email: email[i].clone(),
                        team: team[i].clone(),
                    },
                );
            }
        }
    }
    Ok(out)
}

/// Who gets tasks: the rules of `[actions.assignment]` over the CSMs of core.csms.
struct Assigner<'a> {
    settings: &'a Settings,
    csms: BTreeMap<String, Csm>,
    open_load: HashMap<String, i64>,
    book_arr: HashMap<String, f64>,
    round_robin: HashMap<String, usize>,
    /// Alert recipients that resolved to no address, with how often.
    unresolved: BTreeMap<String, usize>,
}

impl Assigner<'_> {
    fn team_of(&self, day: &Day, i: usize) -> Option<String> {
        let a = &self.settings.file.actions.assignment;
        day.text("segment", i)
            .and_then(|s| a.segment_teams.get(&s).cloned())
            .or_else(|| {
                day.text("csm_id", i)
                    .and_then(|c| self.csms.get(&c).and_then(|c| c.team.clone()))
            })
    }

    fn members(&self, team: Option<&str>) -> Vec<String> {
        self.csms
            .iter()
            .filter(|(_, c)| team.is_none() || c.team.as_deref() == team)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// (csm_id, e-mail, team) for a task of the account in row `i`.
    fn assign(
        &mut self,
        rule: &str,
        day: &Day,
        i: usize,
    ) -> (Option<String>, Option<String>, Option<String>) {
        let team = self.team_of(day, i);
        let owner = day.text("csm_id", i);
        let pick = match rule {
            "owner" => owner.clone().or_else(|| self.least_loaded(team.as_deref())),
            "round_robin" => {
                let m = self.members(team.as_deref());
                if m.is_empty() {
                    owner.clone()
                } else {
                    let k = self
                        .round_robin
                        .entry(team.clone().unwrap_or_default())
                        .or_insert(0);
                    let who = m[*k % m.len()].clone();
                    *k += 1;
                    Some(who)
                }
            }
            "least_loaded" => self.least_loaded(team.as_deref()).or(owner.clone()),
            "least_arr" => {
                let m = self.members(team.as_deref());
                m.into_iter()
                    .min_by(|a, b| {
                        let (x, y) = (
                            self.book_arr.get(a).copied().unwrap_or(0.0),
                            self.book_arr.get(b).copied().unwrap_or(0.0),
                        );
                        x.total_cmp(&y).then(a.cmp(b))
                    })
                    .or(owner.clone())
            }
            "team_lead" => team
                .as_ref()
                .and_then(|t| self.settings.file.actions.teams.get(t))
                .and_then(|t| t.lead_csm_id.clone())
                .or(owner.clone()),
            fixed => fixed.strip_prefix("csm:").map(str::to_string).or(owner.clone()),
        };
        if let Some(p) = &pick {
            *self.open_load.entry(p.clone()).or_insert(0) += 1;
        }
        let email = pick
            .as_ref()
            .and_then(|p| self.csms.get(p))
            .and_then(|c| c.email.clone());
        let team = pick
            .as_ref()
            .and_then(|p| self.csms.get(p))
            .and_then(|c| c.team.clone())
            .or(team);
        (pick, email, team)
    }

    fn least_loaded(&self, team: Option<&str>) -> Option<String> {
        self.members(team)
            .into_iter()
            .min_by_key(|m| (self.open_load.get(m).copied().unwrap_or(0), m.clone()))
    }

    /// Addresses for an alert's `to` entries.
    fn recipients(&mut self, to: &[String], day: &Day, i: usize) -> Vec<String> {
        let mut out = Vec::new();
        for t in to {
            let addr = match t.as_str() {
                "csm" => day
                    .text("csm_id", i)
                    .and_then(|c| self.csms.get(&c))
                    .and_then(|c| c.email.clone()),
                "team_lead" => self
                    .team_of(day, i)
                    .and_then(|t| self.settings.file.actions.teams.get(&t))
                    .and_then(|t| t.lead.clone()),
                literal => Some(literal.to_string()),
            };
            match addr {
                Some(a) if !out.contains(&a) => out.push(a),
                Some(_) => {}
                None => *self.unresolved.entry(t.clone()).or_insert(0) += 1,
            }
        }
        out
    }
}

/// Everything the engine produced for the day, before writing.
#[derive(Default)]
struct Plan {
    enrolments: Vec<Enrolment>,
    new_tasks: Vec<Task>,
    changed_tasks: Vec<Task>,
    new_alerts: Vec<Alert>,
    /// Open alerts of enrolments that ended today: resolved.
    resolved_alerts: Vec<Alert>,
    new_assignments: Vec<Assignment>,
    report: ActReport,
}

/// Deterministic campaign arm: `control` for the holdout share, else an arm by weight.
pub fn campaign_arm(c: &Campaign, account: &str) -> (String, i64) {
    let h = Sha256::digest(format!("{}:{account}", c.name).as_bytes());
    let bucket = (u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) % 10_000) as i64;
    let holdout = (c.holdout_pct * 100.0).round() as i64;
    if bucket < holdout {
        return ("control".into(), bucket);
    }
    let total: f64 = c.arms.iter().map(|a| a.weight).sum();
    let pos = (bucket - holdout) as f64 / (10_000 - holdout).max(1) as f64 * total;
    let mut acc = 0.0;
    for a in &c.arms {
        acc += a.weight;
        if pos < acc {
            return (a.name.clone(), bucket);
        }
    }
    (c.arms.last().map(|a| a.name.clone()).unwrap_or_default(), bucket)
}

#[allow(clippy::too_many_lines, clippy::too_many_arguments)]
async fn plan_day(
    ctx: &SessionContext,
    settings: &Settings,
    lib: &Library,
    day: &Day,
    prev: Vec<Enrolment>,
    tasks: &[Task],
    alerts: &[Alert],
    assignments: &[Assignment],
    dry_run: bool,
) -> Result<Plan> {
    let as_of = day.as_of;
    let mut plan = Plan::default();
    let mut tasks: Vec<Task> = tasks.to_vec();
    let original: HashMap<String, Task> = tasks.iter().map(|t| (t.task_id.clone(), t.clone())).collect();
    let csms = load_csms(ctx).await?;
    let mut assigner = Assigner {
        settings,
        open_load: tasks
            .iter()
            .filter(|t| t.is_open() && t.created_on < as_of)
            .filter_map(|t| t.assignee.clone())
            .fold(HashMap::new(), |mut m, a| {
                *m.entry(a).or_insert(0) += 1;
                m
            }),
        book_arr: day.ids.iter().enumerate().fold(HashMap::new(), |mut m, (i, _)| {
            if let (Some(c), Some(mrr)) = (day.text("csm_id", i), day.num("mrr", i)) {
                *m.entry(c).or_insert(0.0) += mrr * 12.0;
            }
            m
        }),
        // rotation continues from the tasks assigned before today (a re-run assigns alike)
        round_robin: tasks
            .iter()
            .filter(|t| t.created_on < as_of)
            .filter_map(|t| t.team.clone())
            .fold(HashMap::new(), |mut m, t| {
                *m.entry(t).or_insert(0) += 1;
                m
            }),
        csms,
        unresolved: BTreeMap::new(),
    };
    let known_alerts: HashSet<&str> = alerts.iter().map(|a| a.alert_id.as_str()).collect();
    let mut assigned: HashSet<String> = assignments.iter().map(|a| a.assignment_id.clone()).collect();
    let playbook = |name: &str| lib.playbooks.iter().find(|p| p.name == name);
    let mut days: BTreeMap<String, PlaybookDay> = lib
        .playbooks
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                PlaybookDay {
                    playbook: p.name.clone(),
                    version: p.version,
                    ..Default::default()
                },
            )
        })
        .collect();

    // 1. exits: recovered accounts, accounts no longer scored, playbooks removed
    let mut enrolments = prev;
    let mut exit_sets: HashMap<String, HashSet<String>> = HashMap::new();
    for p in &lib.playbooks {
        if let Some(x) = &p.exit {
            let set = day
                .matching(ctx, &x.when, &format!("{}: [exit]", p.origin))
                .await?;
            exit_sets.insert(p.name.clone(), set.into_iter().collect());
        }
    }
    for e in enrolments.iter_mut().filter(|e| e.status == "active") {
        let (status, reason) = if day.row(&e.account_id).is_none() {
            (
                "cancelled",
                "the account is no longer scored (churned or removed)".to_string(),
            )
        } else if let Some(p) = playbook(&e.playbook) {
            match exit_sets.get(&p.name) {
                Some(s) if s.contains(&e.account_id) => (
                    "exited",
                    format!(
                        "exit condition met: {}",
                        p.exit.as_ref().map(|x| x.when.as_str()).unwrap_or("")
                    ),
                ),
                _ => continue,
            }
        } else {
            (
                "cancelled",
                "the playbook was removed from the library".to_string(),
            )
        };
        e.status = status.into();
        e.ended_on = Some(as_of);
        e.end_reason = Some(reason);
        if let Some(d) = days.get_mut(&e.playbook)
            && status == "exited"
        {
            d.exited += 1;
        }
        if status == "exited" {
            plan.report.exited += 1;
        } else {
            plan.report.cancelled += 1;
        }
        // their open tasks are no longer needed
        for t in tasks
            .iter_mut()
            .filter(|t| t.enrollment_id.as_deref() == Some(&e.enrollment_id) && t.is_open())
        {
            t.status = "cancelled".into();
        }
    }

    // 2. triggers: new enrolments
    let active_by: HashSet<(String, String)> = enrolments
        .iter()
        .filter(|e| e.status == "active")
        .map(|e| (e.playbook.clone(), e.account_id.clone()))
        .collect();
    let mut active_groups: HashSet<(String, String)> = enrolments
        .iter()
        .filter(|e| e.status == "active")
        .filter_map(|e| e.dedupe_group.clone().map(|g| (g, e.account_id.clone())))
        .collect();
    let mut last_end: HashMap<(String, String), NaiveDate> = HashMap::new();
    for e in enrolments.iter().filter(|e| e.status != "active") {
        let k = (e.playbook.clone(), e.account_id.clone());
        let end = e.ended_on.unwrap_or(e.enrolled_on);
        if last_end.get(&k).is_none_or(|d| *d < end) {
            last_end.insert(k, end);
        }
    }
    for p in lib.playbooks.iter().filter(|p| p.enabled) {
        let pred = p.trigger.predicate();
        let matched = day
            .matching(ctx, &pred, &format!("{}: [trigger]", p.origin))
            .await?;
        let pd = days.get_mut(&p.name).expect("a day entry per playbook");
        pd.matched = matched.len();
        for account in matched {
            let key = (p.name.clone(), account.clone());
            if active_by.contains(&key) {
                continue;
            }
            if let Some(g) = &p.dedupe_group
                && active_groups.contains(&(g.clone(), account.clone()))
            {
                continue;
            }
            if let Some(end) = last_end.get(&key)
                && *end + Days::days(p.cooldown_days) > as_of
            {
                continue;
            }
            let i = day.row(&account).expect("matched accounts are in the day");
            if let Some(g) = &p.dedupe_group {
                active_groups.insert((g.clone(), account.clone()));
            }
            let reason_src = [
                p.trigger.when.clone(),
                p.trigger
                    .entered_risk_band
                    .as_ref()
                    .map(|_| "risk_band prev_risk_band".to_string()),
                p.trigger
                    .entered_health_band
                    .as_ref()
                    .map(|_| "health_band prev_health_band".to_string()),
                p.trigger
                    .health_drop
                    .as_ref()
                    .map(|h| format!("health_score health_{}d_ago", h.days)),
                p.trigger
                    .opportunity
                    .as_ref()
                    .map(|_| "new_opportunity_kinds".to_string()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
            enrolments.push(Enrolment {
                enrollment_id: format!("e-{}", short_hash(&[&p.name, &account, &as_of.to_string()])),
                playbook: p.name.clone(),
                playbook_version: i64::from(p.version),
                category: p.category.clone(),
                dedupe_group: p.dedupe_group.clone(),
                account_id: account.clone(),
                enrolled_on: as_of,
                status: "active".into(),
                steps_done: 0,
                steps_total: p.steps.len() as i64,
                last_step_on: None,
                ended_on: None,
                end_reason: None,
                trigger_reason: day.reason(&reason_src, i),
                mrr_at_enrolment: day.num("mrr", i),
                risk_at_enrolment: day.num("risk_score", i),
                health_at_enrolment: day.num("health_score", i),
                renewal_date: day
                    .text("contract_end", i)
                    .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
            });
            pd.enrolled += 1;
            plan.report.enrolled += 1;
        }
    }

    // 3. steps due today, for every active enrolment (new ones run their day-0 steps)
    let mut only_if_sets: HashMap<(String, usize), HashSet<String>> = HashMap::new();
    for p in &lib.playbooks {
        for (k, s) in p.steps.iter().enumerate() {
            if let Some(c) = &s.only_if
                && c != "task_open"
                && c != "task_completed"
            {
                let set = day
                    .matching(ctx, c, &format!("{}: step {} only_if", p.origin, k + 1))
                    .await?;
                only_if_sets.insert((p.name.clone(), k), set.into_iter().collect());
            }
        }
    }
    enrolments.sort_by(|a, b| {
        a.enrolled_on
            .cmp(&b.enrolled_on)
            .then(a.enrollment_id.cmp(&b.enrollment_id))
    });
    for e in enrolments.iter_mut().filter(|e| e.status == "active") {
        let (Some(p), Some(i)) = (playbook(&e.playbook), day.row(&e.account_id)) else {
            continue;
        };
        let age = (as_of - e.enrolled_on).num_days();
        let mut steps_today = Vec::new();
        while (e.steps_done as usize) < p.steps.len() && p.steps[e.steps_done as usize].day <= age {
            let k = e.steps_done as usize;
            let s = &p.steps[k];
            let mine = |t: &&Task| t.enrollment_id.as_deref() == Some(e.enrollment_id.as_str());
            let go = match s.only_if.as_deref() {
                None => true,
                Some("task_open") => tasks.iter().filter(mine).any(Task::is_open),
                Some("task_completed") => {
                    let m: Vec<&Task> = tasks.iter().filter(mine).collect();
                    !m.is_empty() && m.iter().all(|t| t.status == "completed")
                }
                Some(_) => only_if_sets
                    .get(&(p.name.clone(), k))
                    .is_some_and(|s| s.contains(&e.account_id)),
            };
            e.steps_done += 1;
            e.last_step_on = Some(as_of);
            if !go {
                steps_today.push(format!(
                    "step {} skipped ({})",
                    k + 1,
                    s.only_if.as_deref().unwrap_or("")
                ));
                continue;
            }
            let id = short_hash(&[&e.enrollment_id, &k.to_string()]);
            match s.action {
                StepAction::Task => {
                    let rule = s
                        .assign
                        .clone()
                        .unwrap_or_else(|| settings.file.actions.assignment.rule.clone());
                    let (assignee, email, team) = assigner.assign(&rule, day, i);
                    let task = Task {
                        task_id: format!("t-{id}"),
                        enrollment_id: Some(e.enrollment_id.clone()),
                        playbook: Some(p.name.clone()),
                        account_id: e.account_id.clone(),
                        title: day.fill(s.title.as_deref().unwrap_or_default(), i),
                        description: s.description.as_deref().map(|d| day.fill(d, i)),
                        assignee,
                        assignee_email: email,
                        team,
                        priority: s.priority.clone().unwrap_or_else(|| "medium".into()),
                        created_on: as_of,
                        due_date: as_of + Days::days(s.due_days.unwrap_or(3)),
                        status: "open".into(),
                        completed_at: None,
                        completed_by: None,
                        crm_task_id: None,
                    };
                    steps_today.push(format!(
                        "task for {}: {}",
                        task.assignee.as_deref().unwrap_or("nobody"),
                        task.title
                    ));
                    if !original.contains_key(&task.task_id) {
                        tasks.push(task.clone());
                        plan.new_tasks.push(task);
                        plan.report.tasks_created += 1;
                    }
                }
                StepAction::Alert => {
                    let to = assigner.recipients(&s.to, day, i);
                    let alert = Alert {
                        alert_id: format!("a-{id}"),
                        enrollment_id: Some(e.enrollment_id.clone()),
                        playbook: Some(p.name.clone()),
                        account_id: e.account_id.clone(),
                        as_of_date: as_of,
                        priority: s.priority.clone().unwrap_or_else(|| "P3".into()),
                        title: day.fill(s.title.as_deref().unwrap_or_default(), i),
                        message: s.description.as_deref().map(|d| day.fill(d, i)),
                        recipients: to.join(","),
                        status: "open".into(),
                        acknowledged_at: None,
                        acknowledged_by: None,
                        notified_count: 0,
                        last_notified_on: None,
                    };
                    steps_today.push(format!("{} alert: {}", alert.priority, alert.title));
                    if !known_alerts.contains(alert.alert_id.as_str()) {
                        plan.report.alerts_created += 1;
                    }
                    plan.new_alerts.push(alert);
                }
                StepAction::Campaign => {
                    let name = s.campaign.as_deref().unwrap_or_default();
                    let Some(c) = lib.campaign(name) else { continue };
                    let assignment_id = format!("{}:{}", c.name, e.account_id);
                    if !assigned.insert(assignment_id.clone()) {
                        steps_today.push(format!("campaign {name}: already assigned earlier"));
                        continue;
                    }
                    let (arm, bucket) = campaign_arm(c, &e.account_id);
                    steps_today.push(format!("campaign {name}: arm {arm}"));
                    plan.new_assignments.push(Assignment {
                        assignment_id,
                        campaign: c.name.clone(),
                        campaign_version: i64::from(c.version),
                        account_id: e.account_id.clone(),
                        arm,
                        bucket,
                        assigned_on: as_of,
                        enrollment_id: Some(e.enrollment_id.clone()),
                        mrr_at_assignment: day.num("mrr", i),
                        engagement_at_assignment: day.num(&c.engagement_feature, i),
                    });
                    plan.report.campaign_assignments += 1;
                }
            }
            if let Some(d) = days.get_mut(&p.name) {
                d.steps_run += 1;
            }
        }
        // done when every step has run and none of its tasks is still open
        if e.steps_done as usize >= p.steps.len()
            && !tasks
                .iter()
                .any(|t| t.enrollment_id.as_deref() == Some(e.enrollment_id.as_str()) && t.is_open())
        {
            e.status = "completed".into();
            e.ended_on = Some(as_of);
            e.end_reason = Some("every step done and every task closed".into());
            plan.report.completed += 1;
            if let Some(d) = days.get_mut(&p.name) {
                d.completed += 1;
            }
        }
        let d = days.get_mut(&p.name).expect("a day entry per playbook");
        if e.enrolled_on == as_of && (dry_run || d.enrolments.len() < 20) {
            d.enrolments.push(Firing {
                account_id: e.account_id.clone(),
                name: day.text("name", i).unwrap_or_default(),
                reason: e.trigger_reason.clone(),
                steps_today,
            });
        }
    }

    for (to, n) in &assigner.unresolved {
        tracing::warn!(
            to = to.as_str(),
            alerts = n,
            "alert recipient has no e-mail address (core.csms email, or [actions.teams.<team>] lead): the alert is recorded but not e-mailed to it"
        );
    }

    // 4. overdue tasks
    for t in tasks
        .iter_mut()
        .filter(|t| t.status == "open" && t.due_date < as_of)
    {
        t.status = "overdue".into();
    }
    plan.report.tasks_overdue = tasks.iter().filter(|t| t.status == "overdue").count();
    plan.changed_tasks = tasks
        .into_iter()
        .filter(|t| original.get(&t.task_id).is_some_and(|o| o != t))
        .collect();
    // the alerts of enrolments that ended today have done their work
    let ended: HashSet<&str> = enrolments
        .iter()
        .filter(|e| e.status != "active" && e.ended_on == Some(as_of))
        .map(|e| e.enrollment_id.as_str())
        .collect();
    plan.resolved_alerts = alerts
        .iter()
        .filter(|a| a.status == "open" && a.enrollment_id.as_deref().is_some_and(|e| ended.contains(e)))
        .map(|a| Alert {
            status: "resolved".into(),
            ..a.clone()
        })
        .collect();
    plan.report.active = enrolments.iter().filter(|e| e.status == "active").count();
    plan.report.playbooks = days
        .into_values()
        .map(|mut d| {
            d.enrolments.sort_by(|a, b| a.account_id.cmp(&b.account_id));
            d
        })
        .collect();
    enrolments.sort_by(|a, b| a.enrollment_id.cmp(&b.enrollment_id));
    plan.enrolments = enrolments;
    Ok(plan)
}

/// The state of the last day before `as_of` (`actions.playbook_runs` is a snapshot per day).
async fn previous_state(ctx: &SessionContext, as_of: NaiveDate) -> Result<Vec<Enrolment>> {
    if !has_table(ctx, "actions.playbook_runs") {
        return Ok(vec![]);
    }
    let b = sql(
        ctx,
        &format!(
            "SELECT CAST(MAX(as_of_date) AS VARCHAR) AS d FROM actions.playbook_runs WHERE as_of_date < DATE '{as_of}'"
        ),
    )
    .await?;
    let Some(d) = b
        .first()
        .and_then(|b| strings(b, "d").ok())
        .and_then(|v| v.into_iter().next().flatten())
    else {
        return Ok(vec![]);
    };
    Enrolment::read(&read(ctx, "actions.playbook_runs", &format!("as_of_date = DATE '{d}'")).await?)
}

fn health_days(lib: &Library) -> BTreeSet<i64> {
    lib.playbooks
        .iter()
        .filter_map(|p| p.trigger.health_days())
        .collect()
}

/// `cslake act --as-of D [--dry-run]`.
#[allow(clippy::too_many_lines)]
pub async fn act(
    lake: &Lake,
    settings: &Settings,
    as_of: NaiveDate,
    dry_run: bool,
    run: &mut RunContext,
) -> Result<ActReport> {
    let lib = library(settings)?;
    // channels first: a missing secret is found before anything is written
    let dispatcher = if dry_run {
        None
    } else {
        Some(Dispatcher::new(&settings.file.actions, &settings.config_dir)?)
    };
    check_routes(settings)?;
    let crms: Vec<Crm> = if dry_run {
        vec![]
    } else {
        settings
            .file
            .actions
            .crm
            .iter()
            .map(Crm::open)
            .collect::<Result<_>>()?
    };
    let mut from_crm = Vec::new();
    for crm in &crms {
        let ctx = lake.session().await?;
        from_crm.push(pull_completions(lake, &ctx, crm, run).await?);
    }
    let ctx = lake.session().await?;
    let day = day_table(&ctx, settings, as_of, &health_days(&lib)).await?;
    let (lib, skipped) = usable(lib, &ctx).await;
    let prev = previous_state(&ctx, as_of).await?;
    let tasks = Task::read(&read(&ctx, "actions.tasks", "").await?)?;
    let alerts = Alert::read(&read(&ctx, "actions.alerts", "").await?)?;
    let assignments = Assignment::read(&read(&ctx, "actions.campaign_assignments", "").await?)?;
    let Plan {
        enrolments,
        new_tasks,
        changed_tasks,
        new_alerts,
        resolved_alerts,
        new_assignments,
        mut report,
    } = plan_day(
        &ctx,
        settings,
        &lib,
        &day,
        prev,
        &tasks,
        &alerts,
        &assignments,
        dry_run,
    )
    .await?;
    report.as_of = as_of.to_string();
    report.dry_run = dry_run;
    report.warnings = skipped;
    report.accounts = day.ids.len();
    let Some(dispatcher) = dispatcher else {
        return Ok(report);
    };

    // state first, then messages: a crash after this point re-sends only what was not logged
    if !new_tasks.is_empty() {
        let b = Task::batch(&new_tasks, &run.run_id)?;
        insert_new(lake, "tasks", b, "task_id", run).await?;
    }
    if !changed_tasks.is_empty() {
        upsert_tasks(lake, &changed_tasks, run).await?;
    }
    if !new_alerts.is_empty() {
        let b = Alert::batch(&new_alerts, &run.run_id)?;
        insert_new(lake, "alerts", b, "alert_id", run).await?;
    }
    if !resolved_alerts.is_empty() {
        upsert_alerts(lake, &resolved_alerts, run).await?;
    }
    if !new_assignments.is_empty() {
        let b = Assignment::batch(&new_assignments, &run.run_id)?;
        insert_new(lake, "campaign_assignments", b, "assignment_id", run).await?;
    }
    if !enrolments.is_empty() || has_table(&ctx, "actions.playbook_runs") {
        let s = lake
            .target("actions", "playbook_runs")
            .replace_where(
                vec![Enrolment::batch(&enrolments, as_of, &run.run_id)?],
                &format!("as_of_date = '{as_of}'"),
                &["as_of_date"],
                &run.run_id,
            )
            .await?;
        run.wrote("actions.playbook_runs", enrolments.len(), s.version);
    }

    // deliveries: the day's alerts, re-notifications, digests and campaign e-mails, plus
    // earlier ones that failed; read back from the tables so a re-run sees the same
    let ctx = lake.session().await?;
    let alerts = Alert::read(&read(&ctx, "actions.alerts", "").await?)?;
    let assignments = Assignment::read(&read(&ctx, "actions.campaign_assignments", "").await?)?;
    let pii = crate::lake::pii::Protector::from_settings(settings)?;
    let wanted = deliveries_for(
        settings,
        &lib,
        &dispatcher,
        &day,
        &ctx,
        &alerts,
        &assignments,
        pii.as_ref(),
    )
    .await?;
    report.renotified = wanted
        .iter()
        .filter(|d| d.kind == "renotify")
        .map(|d| d.ref_id.as_str())
        .collect::<HashSet<_>>()
        .len();
    let logged = DeliveryRow::read(&read(&ctx, "actions.deliveries", "").await?)?;
    let counts = dispatch(lake, settings, &dispatcher, wanted, logged, &alerts, as_of, run).await?;
    report.deliveries = counts;

    // CRM write-back
    for (crm, completed) in crms.iter().zip(from_crm) {
        let mut r = write_back(lake, &ctx, crm, &day, run).await?;
        r.tasks_completed_in_crm = completed;
        report.crm.push(r);
    }

    // success tracking for BI
    let ctx = lake.session().await?;
    let tasks = Task::read(&read(&ctx, "actions.tasks", "").await?)?;
    let stats = playbook_stats(settings, &lib, &day, &enrolments, &tasks, &alerts);
    if !stats.is_empty() {
        let s = lake
            .target("actions", "playbook_stats")
            .replace_where(
                vec![stats_batch(&stats, as_of, &run.run_id)?],
                &format!("as_of_date = '{as_of}'"),
                &["as_of_date"],
                &run.run_id,
            )
            .await?;
        run.wrote("actions.playbook_stats", stats.len(), s.version);
    }
    let assignments = Assignment::read(&read(&ctx, "actions.campaign_assignments", "").await?)?;
    let arms = campaign_arms(settings, &lib, &assignments, &day);
    if !arms.is_empty() {
        let s = lake
            .target("actions", "campaign_results")
            .replace_where(
                vec![arms_batch(&arms, as_of, &run.run_id)?],
                &format!("as_of_date = '{as_of}'"),
                &["as_of_date"],
                &run.run_id,
            )
            .await?;
        run.wrote("actions.campaign_results", arms.len(), s.version);
    }
    Ok(report)
}

/// Adds the rows whose key the `actions.<table>` table does not hold yet.
async fn insert_new(
    lake: &Lake,
    table: &str,
    batch: RecordBatch,
    key: &str,
    run: &mut RunContext,
) -> Result<()> {
    let s = lake
        .target("actions", table)
        .insert_new(vec![batch], key, &run.run_id)
        .await?;
    run.wrote(&format!("actions.{table}"), s.inserted, s.version);
    Ok(())
}

async fn upsert_tasks(lake: &Lake, rows: &[Task], run: &mut RunContext) -> Result<()> {
    let s = lake
        .target("actions", "tasks")
        .upsert(
            vec![Task::batch(rows, &run.run_id)?],
            &["task_id"],
            &["status", "completed_at", "completed_by", "crm_task_id"],
            &["_run_id"],
            &run.run_id,
        )
        .await?;
    run.wrote("actions.tasks", s.inserted + s.updated, s.version);
    Ok(())
}

async fn upsert_alerts(lake: &Lake, rows: &[Alert], run: &mut RunContext) -> Result<()> {
    let s = lake
        .target("actions", "alerts")
        .upsert(
            vec![Alert::batch(rows, &run.run_id)?],
            &["alert_id"],
            &[
                "status",
                "acknowledged_at",
                "acknowledged_by",
                "notified_count",
                "last_notified_on",
            ],
            &["_run_id"],
            &run.run_id,
        )
        .await?;
    run.wrote("actions.alerts", s.inserted + s.updated, s.version);
    Ok(())
}

fn check_routes(settings: &Settings) -> Result<()> {
    let a = &settings.file.actions;
    for (k, r) in a.routes.iter().enumerate() {
        for c in &r.channels {
            if !a.channels.iter().any(|x| &x.name == c) {
                return Err(Error::Config(format!(
                    "[[actions.routes]] #{}: channel '{c}' is not defined in [[actions.channels]]",
                    k + 1
                )));
            }
        }
        for p in &r.priorities {
            if !crate::act::library::ALERT_PRIORITIES.contains(&p.as_str()) {
                return Err(Error::Config(format!(
                    "[[actions.routes]] #{}: priority '{p}': expected P1, P2, P3 or P4",
                    k + 1
                )));
            }
        }
    }
    Ok(())
}

/// An e-mail address as it can be sent to: decrypted when `[pii]` encrypts it. A pseudonym
/// cannot be turned back into an address: it is dropped (the delivery then fails as "no
/// recipient") rather than mailed to a made-up address.
fn reveal(pii: Option<&crate::lake::pii::Protector>, addr: &str) -> Option<String> {
    match pii {
        Some(p) => {
            let clear = p.reveal(addr);
            (!crate::lake::pii::Protector::is_protected(&clear)).then_some(clear)
        }
        None => Some(addr.to_string()),
    }
}

/// Every delivery the day calls for.
#[allow(clippy::too_many_arguments)]
async fn deliveries_for(
    settings: &Settings,
    lib: &Library,
    dispatcher: &Dispatcher,
    day: &Day,
    ctx: &SessionContext,
    alerts: &[Alert],
    assignments: &[Assignment],
    pii: Option<&crate::lake::pii::Protector>,
) -> Result<Vec<Delivery>> {
    let a = &settings.file.actions;
    let as_of = day.as_of;
    let mut out = Vec::new();
    let segment = |acc: &str| day.row(acc).and_then(|i| day.text("segment", i));
    let name = |acc: &str| {
        day.row(acc)
            .and_then(|i| day.text("name", i))
            .unwrap_or_else(|| acc.to_string())
    };
    let routes_for = |al: &Alert| -> Vec<(&String, bool)> {
        let mut chans: Vec<(&String, bool)> = Vec::new();
        for r in &a.routes {
            let ok = (r.priorities.is_empty() || r.priorities.contains(&al.priority))
                && (r.playbooks.is_empty() || al.playbook.as_ref().is_some_and(|p| r.playbooks.contains(p)))
                && (r.segments.is_empty()
                    || segment(&al.account_id).is_some_and(|s| r.segments.contains(&s)));
            if ok {
                for c in &r.channels {
                    if !chans.iter().any(|(x, d)| *x == c && *d == r.digest) {
                        chans.push((c, r.digest));
                    }
                }
            }
        }
        chans
    };
    let d = &a.delivery;
    let mut digests: BTreeMap<(String, String), Vec<&Alert>> = BTreeMap::new();
    for al in alerts {
        let renotify = al.priority == "P1"
            && al.status == "open"
            && al.as_of_date < as_of
            && al.notified_count >= 1
            && al.notified_count <= d.renotify_max
            && al
                .last_notified_on
                .is_some_and(|l| l + Days::days(d.renotify_p1_after_days) <= as_of);
        if al.as_of_date != as_of && !renotify {
            continue;
        }
        let to: Vec<String> = al
            .recipients
            .split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|s| reveal(pii, s))
            .collect();
        for (channel, digest) in routes_for(al) {
            if digest {
                if renotify {
                    continue;
                }
                if dispatcher.is_email(channel) {
                    for r in &to {
                        digests.entry((channel.clone(), r.clone())).or_default().push(al);
                    }
                } else {
                    digests
                        .entry((channel.clone(), String::new()))
                        .or_default()
                        .push(al);
                }
                continue;
            }
            let (key, kind, subject) = if renotify {
                (
                    format!("renotify:{}:{channel}:{as_of}", al.alert_id),
                    "renotify",
                    format!("[{} reminder, not acknowledged] {}", al.priority, al.title),
                )
            } else {
                (
                    format!("alert:{}:{channel}", al.alert_id),
                    "alert",
                    format!("[{}] {}", al.priority, al.title),
                )
            };
            out.push(Delivery {
                key,
                kind: kind.into(),
                ref_id: al.alert_id.clone(),
                account_id: Some(al.account_id.clone()),
                channel: channel.clone(),
                to: if dispatcher.is_email(channel) { to.clone() } else { vec![] },
                subject,
                text: format!(
                    "{}\n\nAccount: {} ({})\nPlaybook: {}\nAcknowledge with: cslake alerts ack {}",
                    al.message.clone().unwrap_or_default(),
                    name(&al.account_id),
                    al.account_id,
                    al.playbook.clone().unwrap_or_default(),
                    al.alert_id
                ),
                data: json!({
                    "alert_id": al.alert_id, "priority": al.priority, "title": al.title, "message": al.message,
                    "account_id": al.account_id, "account_name": name(&al.account_id), "playbook": al.playbook,
                    "enrollment_id": al.enrollment_id, "as_of_date": al.as_of_date.to_string(),
                    "notified_before": al.notified_count,
                }),
                attachments: Vec::new(),
            });
        }
    }
    for ((channel, recipient), list) in digests {
        let lines: Vec<String> = list
            .iter()
            .map(|al| {
                format!(
                    "- [{}] {} ({}) — {}",
                    al.priority, al.title, al.account_id, al.alert_id
                )
            })
            .collect();
        out.push(Delivery {
            key: format!("digest:{channel}:{recipient}:{as_of}"),
            kind: "digest".into(),
            ref_id: format!("digest:{as_of}"),
            account_id: None,
            channel: channel.clone(),
            to: if recipient.is_empty() { vec![] } else { vec![recipient.clone()] },
            subject: format!("cslake digest for {as_of}: {} alert(s)", list.len()),
            text: lines.join("\n"),
            data: json!({"as_of_date": as_of.to_string(), "alerts": list.iter().map(|al| json!({
                "alert_id": al.alert_id, "priority": al.priority, "title": al.title, "account_id": al.account_id,
                "playbook": al.playbook})).collect::<Vec<_>>()}),
            attachments: Vec::new(),
        });
    }
    // campaign e-mails for today's assignments to a treated arm
    let email_channels: Vec<&String> = a
        .channels
        .iter()
        .filter(|c| c.kind == "email")
        .map(|c| &c.name)
        .collect();
    let mut contacts: HashMap<String, Vec<String>> = HashMap::new();
    if lib.campaigns.iter().any(|c| c.to == "contacts") {
        for b in read(ctx, "core.contacts", "email IS NOT NULL").await? {
            let (acc, email) = (strings(&b, "account_id")?, strings(&b, "email")?);
            for i in 0..b.num_rows() {
                if let (Some(a), Some(e)) = (&acc[i], &email[i]) {
                    contacts.entry(a.clone()).or_default().extend(reveal(pii, e));
                }
            }
        }
    }
    let csm_email = load_csms(ctx).await?;
    for asg in assignments
        .iter()
        .filter(|x| x.assigned_on == as_of && x.arm != "control")
    {
        let Some(c) = lib.campaign(&asg.campaign) else {
            continue;
        };
        let Some(arm) = c.arms.iter().find(|x| x.name == asg.arm) else {
            continue;
        };
        let Some(channel) = c.channel.as_ref().or(email_channels.first().copied()) else {
            tracing::warn!(
                campaign = c.name.as_str(),
                "no e-mail channel: campaign e-mails are not sent (assignments are recorded)"
            );
            continue;
        };
        let Some(i) = day.row(&asg.account_id) else {
            continue;
        };
        let to: Vec<String> = if c.to == "contacts" {
            contacts.get(&asg.account_id).cloned().unwrap_or_default()
        } else {
            day.text("csm_id", i)
                .and_then(|id| csm_email.get(&id).and_then(|c| c.email.clone()))
                .and_then(|e| reveal(pii, &e))
                .map(|e| vec![e])
                .unwrap_or_default()
        };
        out.push(Delivery {
            key: format!("campaign:{}", asg.assignment_id),
            kind: "campaign".into(),
            ref_id: asg.assignment_id.clone(),
            account_id: Some(asg.account_id.clone()),
            channel: channel.clone(),
            to,
            subject: day.fill(&arm.subject, i),
            text: day.fill(&arm.body, i),
            data: json!({"campaign": c.name, "version": c.version, "arm": asg.arm, "account_id": asg.account_id}),
            attachments: Vec::new(),
        });
    }
    Ok(out)
}

/// Sends what has not been sent, logging each result in `actions.deliveries` in small
/// batches (so a crash repeats at most one batch, and receivers see the same idempotency key).
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    lake: &Lake,
    settings: &Settings,
    dispatcher: &Dispatcher,
    wanted: Vec<Delivery>,
    logged: Vec<DeliveryRow>,
    alerts: &[Alert],
    as_of: NaiveDate,
    run: &mut RunContext,
) -> Result<DeliveryCounts> {
    let cfg = &settings.file.actions.delivery;
    let mut counts = DeliveryCounts::default();
    let by_key: HashMap<&str, &DeliveryRow> = logged.iter().map(|d| (d.delivery_id.as_str(), d)).collect();
    let mut pending: Vec<DeliveryRow> = Vec::new();
    let mut seen = HashSet::new();
    for d in wanted {
        if !seen.insert(d.key.clone()) {
            continue;
        }
        match by_key.get(d.key.as_str()) {
            Some(row) if row.status == "sent" || row.status == "dead" => counts.already_sent += 1,
            Some(row) => pending.push((*row).clone()),
            None => pending.push(DeliveryRow {
                delivery_id: d.key,
                kind: d.kind,
                ref_id: d.ref_id,
                account_id: d.account_id,
                channel: d.channel,
                recipients: d.to.join(","),
                subject: d.subject,
                body: d.text,
                payload: d.data.to_string(),
                as_of_date: as_of,
                status: "pending".into(),
                attempts: 0,
                last_error: None,
                sent_at: None,
                response_status: None,
            }),
        }
    }
    // earlier failures are retried
    for row in logged.iter().filter(|r| r.status == "failed") {
        if seen.insert(row.delivery_id.clone()) {
            pending.push(row.clone());
        }
    }
    let backoff = Duration::from_millis(cfg.backoff_ms);
    for (n, chunk) in pending.chunks_mut(20).enumerate() {
        let mut dead = Vec::new();
        for row in chunk.iter_mut() {
            let d = Delivery {
                key: row.delivery_id.clone(),
                kind: row.kind.clone(),
                ref_id: row.ref_id.clone(),
                account_id: row.account_id.clone(),
                channel: row.channel.clone(),
                to: row
                    .recipients
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                subject: row.subject.clone(),
                text: row.body.clone(),
                data: serde_json::from_str(&row.payload).unwrap_or(Value::Null),
                attachments: Vec::new(),
            };
            row.attempts += 1;
            match dispatcher.send(&d, cfg.max_retries, backoff).await {
                Outcome::Sent { status } => {
                    row.status = "sent".into();
                    row.sent_at = Some(chrono::Utc::now().timestamp_micros());
                    row.response_status = status.map(i64::from);
                    row.last_error = None;
                    counts.sent += 1;
                }
                Outcome::Failed { error, transient } => {
                    tracing::warn!(
                        delivery = row.delivery_id.as_str(),
                        channel = row.channel.as_str(),
                        error = error.as_str(),
                        "delivery failed"
                    );
                    row.last_error = Some(error);
                    if !transient || row.attempts >= cfg.dead_after_attempts {
                        row.status = "dead".into();
                        counts.dead += 1;
                        dead.push(row.clone());
                    } else {
                        row.status = "failed".into();
                        counts.failed += 1;
                    }
                }
            }
        }
        let s = lake
            .target("actions", "deliveries")
            .upsert(
                vec![DeliveryRow::batch(chunk, &run.run_id)?],
                &["delivery_id"],
                &["status", "attempts", "last_error", "sent_at", "response_status"],
                &["_run_id"],
                &run.run_id,
            )
            .await?;
        run.wrote("actions.deliveries", chunk.len(), s.version);
        if !dead.is_empty() {
            let rows: Vec<&DeliveryRow> = dead.iter().collect();
            let b = Cols::default()
                .key(
                    "delivery_id",
                    rows.iter().map(|r| r.delivery_id.clone()).collect(),
                )
                .str("kind", rows.iter().map(|r| Some(r.kind.clone())).collect())
                .str("ref_id", rows.iter().map(|r| Some(r.ref_id.clone())).collect())
                .str("channel", rows.iter().map(|r| Some(r.channel.clone())).collect())
                .str(
                    "recipients",
                    rows.iter().map(|r| Some(r.recipients.clone())).collect(),
                )
                .str("subject", rows.iter().map(|r| Some(r.subject.clone())).collect())
                .str("body", rows.iter().map(|r| Some(r.body.clone())).collect())
                .str("payload", rows.iter().map(|r| Some(r.payload.clone())).collect())
                .str("error", rows.iter().map(|r| r.last_error.clone()).collect())
                .int("attempts", rows.iter().map(|r| Some(r.attempts)).collect())
                .date("as_of_date", vec![Some(as_of); rows.len()])
                .ts(
                    "dead_at",
                    vec![Some(chrono::Utc::now().timestamp_micros()); rows.len()],
                )
                .key("_run_id", vec![run.run_id.clone(); rows.len()])
                .batch()?;
            insert_new(lake, "dead_letters", b, "delivery_id", run).await?;
        }
        if n == 0 {
            crate::fault_point("act:mid-dispatch");
        }
    }
    // how often each alert went out, from the log itself (so a crash between sending and this
    // update is repaired by the next run)
    let mut all: HashMap<&str, &DeliveryRow> = logged.iter().map(|d| (d.delivery_id.as_str(), d)).collect();
    for row in &pending {
        all.insert(row.delivery_id.as_str(), row);
    }
    let mut days_sent: HashMap<&str, BTreeSet<NaiveDate>> = HashMap::new();
    for d in all.values() {
        if d.status == "sent" && (d.kind == "alert" || d.kind == "renotify") {
            days_sent
                .entry(d.ref_id.as_str())
                .or_default()
                .insert(d.as_of_date);
        }
    }
    let changed: Vec<Alert> = alerts
        .iter()
        .filter_map(|a| {
            let days = days_sent.get(a.alert_id.as_str())?;
            let (count, last) = (days.len() as i64, days.last().copied());
            (count != a.notified_count || last != a.last_notified_on).then(|| Alert {
                notified_count: count,
                last_notified_on: last,
                ..a.clone()
            })
        })
        .collect();
    if !changed.is_empty() {
        upsert_alerts(lake, &changed, run).await?;
    }
    Ok(counts)
}

/// Tasks completed in the CRM come back as completed here (before the day is planned, so an
/// escalation `only_if = "task_open"` sees them).
async fn pull_completions(
    lake: &Lake,
    ctx: &SessionContext,
    crm: &Crm,
    run: &mut RunContext,
) -> Result<usize> {
    let cfg = &crm.config;
    if !cfg.push_tasks || !has_table(ctx, "actions.tasks") {
        return Ok(0);
    }
    let prefix = format!("{}:", cfg.name);
    let open = Task::read(
        &read(
            ctx,
            "actions.tasks",
            "crm_task_id IS NOT NULL AND status IN ('open', 'overdue')",
        )
        .await?,
    )?;
    let ids: Vec<String> = open
        .iter()
        .filter_map(|t| {
            t.crm_task_id
                .as_deref()?
                .strip_prefix(&prefix)
                .map(str::to_string)
        })
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let done: HashSet<String> = crm.completed_tasks(&ids).await?.into_iter().collect();
    let now = chrono::Utc::now().timestamp_micros();
    let closed: Vec<Task> = open
        .into_iter()
        .filter(|t| {
            t.crm_task_id
                .as_deref()
                .and_then(|c| c.strip_prefix(&prefix))
                .is_some_and(|c| done.contains(c))
        })
        .map(|t| Task {
            status: "completed".into(),
            completed_at: Some(now),
            completed_by: Some(format!("crm:{}", cfg.name)),
            ..t
        })
        .collect();
    if !closed.is_empty() {
        upsert_tasks(lake, &closed, run).await?;
    }
    Ok(closed.len())
}

/// Sends changed fields (and new tasks) to one CRM.
async fn write_back(
    lake: &Lake,
    ctx: &SessionContext,
    crm: &Crm,
    day: &Day,
    run: &mut RunContext,
) -> Result<CrmReport> {
    let cfg = &crm.config;
    let mut report = CrmReport {
        name: cfg.name.clone(),
        ..Default::default()
    };
    let id_col = cfg.object_id.clone().unwrap_or_else(|| "account_id".into());
    let cols = day.columns();
    for (field, col) in &cfg.fields {
        if !cols.contains(col) {
            return Err(Error::Config(format!(
                "[[actions.crm]] '{}': field {field} = '{col}': the day's table has no such column (columns: {})",
                cfg.name,
                cols.join(", ")
            )));
        }
    }
    if !cols.contains(&id_col) {
        return Err(Error::Config(format!(
            "[[actions.crm]] '{}': object_id = '{id_col}': the day's table has no such column",
            cfg.name
        )));
    }
    // what the CRM holds already (as cslake last sent it)
    let mut synced: HashMap<String, String> = HashMap::new();
    for b in read(
        ctx,
        "actions.crm_sync",
        &format!("crm = '{}'", cfg.name.replace('\'', "''")),
    )
    .await?
    {
        let (k, v) = (strings(&b, "sync_key")?, strings(&b, "value")?);
        for i in 0..b.num_rows() {
            if let (Some(k), Some(v)) = (&k[i], &v[i]) {
                synced.insert(k.clone(), v.clone());
            }
        }
    }
    let mut updates = Vec::new();
    let mut pending_state: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut object_of: HashMap<String, String> = HashMap::new();
    for (i, account) in day.ids.iter().enumerate() {
        let Some(object_id) = day.text(&id_col, i) else {
            continue;
        };
        object_of.insert(account.clone(), object_id.clone());
        let mut fields = BTreeMap::new();
        for (field, col) in &cfg.fields {
            let text = day.text(col, i).unwrap_or_default();
            let key = format!("{}|{object_id}|{field}", cfg.name);
            if synced.get(&key) == Some(&text) {
                continue;
            }
            let value = match day.num(col, i) {
                Some(v) => json!(v),
                None if text.is_empty() => Value::Null,
                None => json!(text),
            };
            fields.insert(field.clone(), value);
            pending_state
                .entry(object_id.clone())
                .or_default()
                .push((key, text));
        }
        if fields.is_empty() {
            report.unchanged += 1;
        } else {
            report.fields_sent += fields.len();
            updates.push(RecordUpdate { object_id, fields });
        }
    }
    let results = crm.update(&updates).await?;
    let mut keys = Vec::new();
    let mut values = Vec::new();
    let mut objects = Vec::new();
    let mut failures = Vec::new();
    for (object_id, r) in results {
        match r {
            Ok(()) => {
                report.records_updated += 1;
                for (k, v) in pending_state.remove(&object_id).unwrap_or_default() {
                    keys.push(k);
                    values.push(Some(v));
                    objects.push(Some(object_id.clone()));
                }
            }
            Err(e) => {
                report.failed += 1;
                failures.push((object_id, e));
            }
        }
    }
    if !keys.is_empty() {
        let n = keys.len();
        let b = Cols::default()
            .key("sync_key", keys)
            .key("crm", vec![cfg.name.clone(); n])
            .str("object_id", objects)
            .str("value", values)
            .date("synced_on", vec![Some(day.as_of); n])
            .key("_run_id", vec![run.run_id.clone(); n])
            .batch()?;
        let s = lake
            .target("actions", "crm_sync")
            .upsert(
                vec![b],
                &["sync_key"],
                &["value", "synced_on"],
                &["_run_id"],
                &run.run_id,
            )
            .await?;
        run.wrote("actions.crm_sync", n, s.version);
    }
    // tasks not yet in the CRM
    if cfg.push_tasks {
        let tasks = Task::read(
            &read(
                ctx,
                "actions.tasks",
                "crm_task_id IS NULL AND status IN ('open', 'overdue')",
            )
            .await?,
        )?;
        let todo: Vec<CrmTask> = tasks
            .iter()
            .filter_map(|t| {
                Some(CrmTask {
                    task_id: t.task_id.clone(),
                    object_id: object_of.get(&t.account_id)?.clone(),
                    subject: t.title.clone(),
                    body: t.description.clone().unwrap_or_default(),
                    due_date: t.due_date,
                    priority: t.priority.clone(),
                })
            })
            .collect();
        let results = crm.create_tasks(&todo).await?;
        let mut done = Vec::new();
        for (task_id, r) in results {
            match r {
                Ok(crm_id) => {
                    if let Some(t) = tasks.iter().find(|t| t.task_id == task_id) {
                        done.push(Task {
                            crm_task_id: Some(format!("{}:{crm_id}", cfg.name)),
                            ..t.clone()
                        });
                    }
                }
                Err(e) => failures.push((task_id, e)),
            }
        }
        report.tasks_created = done.len();
        if !done.is_empty() {
            upsert_tasks(lake, &done, run).await?;
        }
    }
    if !failures.is_empty() {
        // kept with the reason; the next run sends them again (their state was not recorded)
        let n = failures.len();
        let b = Cols::default()
            .key(
                "delivery_id",
                failures
                    .iter()
                    .map(|(id, _)| format!("crm:{}:{id}:{}", cfg.name, day.as_of))
                    .collect(),
            )
            .str("kind", vec![Some("crm".to_string()); n])
            .str(
                "ref_id",
                failures.iter().map(|(id, _)| Some(id.clone())).collect(),
            )
            .str("channel", vec![Some(cfg.name.clone()); n])
            .str("recipients", vec![None; n])
            .str("subject", vec![None; n])
            .str("body", vec![None; n])
            .str("payload", vec![None; n])
            .str("error", failures.iter().map(|(_, e)| Some(e.clone())).collect())
            .int("attempts", vec![Some(1); n])
            .date("as_of_date", vec![Some(day.as_of); n])
            .ts("dead_at", vec![Some(chrono::Utc::now().timestamp_micros()); n])
            .key("_run_id", vec![run.run_id.clone(); n])
            .batch()?;
        insert_new(lake, "dead_letters", b, "delivery_id", run).await?;
        tracing::warn!(
            crm = cfg.name.as_str(),
            failed = n,
            first = failures[0].1.as_str(),
            "CRM records not updated"
        );
    }
    Ok(report)
}

/// Per playbook and version: enrolments, completion and the outcome of enrolled accounts.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PlaybookStats {
    pub playbook: String,
    pub playbook_version: i64,
    pub category: Option<String>,
    pub enrolled: i64,
    pub active: i64,
    pub completed: i64,
    pub exited: i64,
    pub cancelled: i64,
    pub tasks_created: i64,
    pub tasks_completed: i64,
    pub tasks_overdue: i64,
    pub task_completion_rate: Option<f64>,
    pub alerts: i64,
    pub churned: i64,
    pub renewed: i64,
    pub expanded: i64,
    pub retention_rate: Option<f64>,
}

fn playbook_stats(
    settings: &Settings,
    _lib: &Library,
    day: &Day,
    enrolments: &[Enrolment],
    tasks: &[Task],
    alerts: &[Alert],
) -> Vec<PlaybookStats> {
    let min_increase = settings.file.opportunities.expansion_min_increase_pct as f64 / 100.0;
    let mut by: BTreeMap<(String, i64), PlaybookStats> = BTreeMap::new();
    let playbook_of: HashMap<&str, (&str, i64)> = enrolments
        .iter()
        .map(|e| {
            (
                e.enrollment_id.as_str(),
                (e.playbook.as_str(), e.playbook_version),
            )
        })
        .collect();
    for e in enrolments {
        let s = by
            .entry((e.playbook.clone(), e.playbook_version))
            .or_insert_with(|| PlaybookStats {
                playbook: e.playbook.clone(),
                playbook_version: e.playbook_version,
                category: e.category.clone(),
                ..Default::default()
            });
        s.enrolled += 1;
        match e.status.as_str() {
            "active" => s.active += 1,
            "completed" => s.completed += 1,
            "exited" => s.exited += 1,
            _ => s.cancelled += 1,
        }
        match day.row(&e.account_id) {
            None => s.churned += 1,
            Some(i) => {
                if e.renewal_date
                    .is_some_and(|r| r > e.enrolled_on && r <= day.as_of)
                {
                    s.renewed += 1;
                }
                if let (Some(before), Some(now)) = (e.mrr_at_enrolment, day.num("mrr", i))
                    && before > 0.0
                    && now >= before * (1.0 + min_increase)
                {
                    s.expanded += 1;
                }
            }
        }
    }
    for t in tasks {
        let Some((p, v)) = t.enrollment_id.as_deref().and_then(|e| playbook_of.get(e)) else {
            continue;
        };
        if let Some(s) = by.get_mut(&((*p).to_string(), *v)) {
            s.tasks_created += 1;
            match t.status.as_str() {
                "completed" => s.tasks_completed += 1,
                "overdue" => s.tasks_overdue += 1,
                _ => {}
            }
        }
    }
    for a in alerts {
        let Some((p, v)) = a.enrollment_id.as_deref().and_then(|e| playbook_of.get(e)) else {
            continue;
        };
        if let Some(s) = by.get_mut(&((*p).to_string(), *v)) {
            s.alerts += 1;
        }
    }
    by.into_values()
        .map(|mut s| {
            s.task_completion_rate =
                (s.tasks_created > 0).then(|| s.tasks_completed as f64 / s.tasks_created as f64);
            s.retention_rate = (s.enrolled > 0).then(|| 1.0 - s.churned as f64 / s.enrolled as f64);
            s
        })
        .collect()
}

fn stats_batch(rows: &[PlaybookStats], as_of: NaiveDate, run_id: &str) -> Result<RecordBatch> {
    let n = rows.len();
    let i = |f: fn(&PlaybookStats) -> i64| rows.iter().map(|r| Some(f(r))).collect::<Vec<_>>();
    Cols::default()
        .key("playbook", rows.iter().map(|r| r.playbook.clone()).collect())
        .int("playbook_version", i(|r| r.playbook_version))
        .str("category", rows.iter().map(|r| r.category.clone()).collect())
        .int("enrolled", i(|r| r.enrolled))
        .int("active", i(|r| r.active))
        .int("completed", i(|r| r.completed))
        .int("exited", i(|r| r.exited))
        .int("cancelled", i(|r| r.cancelled))
        .int("tasks_created", i(|r| r.tasks_created))
        .int("tasks_completed", i(|r| r.tasks_completed))
        .int("tasks_overdue", i(|r| r.tasks_overdue))
        .float(
            "task_completion_rate",
            rows.iter().map(|r| r.task_completion_rate).collect(),
        )
        .int("alerts", i(|r| r.alerts))
        .int("churned", i(|r| r.churned))
        .int("renewed", i(|r| r.renewed))
        .int("expanded", i(|r| r.expanded))
        .float("retention_rate", rows.iter().map(|r| r.retention_rate).collect())
        .date("as_of_date", vec![Some(as_of); n])
        .key("_run_id", vec![run_id.to_string(); n])
        .batch()
}

/// One playbook or campaign of the library, as `cslake playbooks list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LibraryEntry {
    pub kind: &'static str,
    pub name: String,
    pub version: u32,
    pub category: Option<String>,
    pub owner: Option<String>,
    pub enabled: bool,
    pub trigger: String,
    pub steps: Vec<String>,
    pub origin: String,
}

pub fn list(settings: &Settings) -> Result<Vec<LibraryEntry>> {
    let lib = library(settings)?;
    let mut out: Vec<LibraryEntry> = lib
        .playbooks
        .iter()
        .map(|p| LibraryEntry {
            kind: "playbook",
            name: p.name.clone(),
            version: p.version,
            category: p.category.clone(),
            owner: p.owner.clone(),
            enabled: p.enabled,
            trigger: p.trigger.predicate(),
            steps: p
                .steps
                .iter()
                .map(|s| {
                    let what = match s.action {
                        StepAction::Task => format!("task '{}'", s.title.as_deref().unwrap_or_default()),
                        StepAction::Alert => format!(
                            "{} alert to {}",
                            s.priority.as_deref().unwrap_or("P3"),
                            s.to.join(", ")
                        ),
                        StepAction::Campaign => {
                            format!("campaign {}", s.campaign.as_deref().unwrap_or_default())
                        }
                    };
                    match &s.only_if {
                        Some(c) => format!("day {}: {what} if {c}", s.day),
                        None => format!("day {}: {what}", s.day),
                    }
                })
                .collect(),
            origin: p.origin.clone(),
        })
        .collect();
    out.extend(lib.campaigns.iter().map(|c| {
        LibraryEntry {
            kind: "campaign",
            name: c.name.clone(),
            version: c.version,
            category: c.category.clone(),
            owner: c.owner.clone(),
            enabled: true,
            trigger: "a playbook step".into(),
            steps: c
                .arms
                .iter()
                .map(|a| format!("arm {} (weight {})", a.name, a.weight))
                .chain(std::iter::once(format!("control: {}% held out", c.holdout_pct)))
                .collect(),
            origin: c.origin.clone(),
        }
    }));
    Ok(out)
}

/// `cslake playbooks validate`: the library parses, and every predicate and placeholder works
/// against the day's table of the latest scored date (or `as_of`). Returns warnings.
pub async fn validate(lake: &Lake, settings: &Settings, as_of: Option<NaiveDate>) -> Result<Vec<String>> {
    let lib = library(settings)?;
    check_routes(settings)?;
    let ctx = lake.session().await?;
    if !has_table(&ctx, "scores.risk_scores") {
        return Ok(vec![
            "no scores yet: trigger and exit SQL could not be checked against the day's columns".into(),
        ]);
    }
    let date = match as_of {
        Some(d) => d,
        None => {
            let b = sql(
                &ctx,
                "SELECT CAST(MAX(as_of_date) AS VARCHAR) AS d FROM scores.risk_scores",
            )
            .await?;
            b.first()
                .and_then(|b| strings(b, "d").ok())
                .and_then(|v| v.into_iter().next().flatten())
                .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
                .ok_or_else(|| Error::Job("scores.risk_scores is empty".into()))?
        }
    };
    let day = day_table(&ctx, settings, date, &health_days(&lib)).await?;
    let (lib, mut warnings) = usable(lib, &ctx).await;
    let cols = day.columns();
    for p in &lib.playbooks {
        day.matching(&ctx, &p.trigger.predicate(), &format!("{}: [trigger]", p.origin))
            .await?;
        if let Some(x) = &p.exit {
            day.matching(&ctx, &x.when, &format!("{}: [exit]", p.origin))
                .await?;
        }
        for (k, s) in p.steps.iter().enumerate() {
            if let Some(c) = &s.only_if
                && c != "task_open"
                && c != "task_completed"
            {
                day.matching(&ctx, c, &format!("{}: step {} only_if", p.origin, k + 1))
                    .await?;
            }
            for t in [&s.title, &s.description].into_iter().flatten() {
                for name in placeholders(t) {
                    if !cols.contains(&name) {
                        warnings.push(format!(
                            "{}: step {}: placeholder {{{name}}} is not a column of the day's table",
                            p.origin,
                            k + 1
                        ));
                    }
                }
            }
        }
    }
    for c in &lib.campaigns {
        if !cols.contains(&c.engagement_feature) {
            warnings.push(format!(
                "{}: engagement_feature '{}' is not a column of the day's table",
                c.origin, c.engagement_feature
            ));
        }
        for a in &c.arms {
            for name in placeholders(&a.subject).into_iter().chain(placeholders(&a.body)) {
                if !cols.contains(&name) {
                    warnings.push(format!(
                        "{}: arm {}: placeholder {{{name}}} is not a column of the day's table",
                        c.origin, a.name
                    ));
                }
            }
        }
    }
    Ok(warnings)
}

fn placeholders(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    fill(t, |n| {
        out.push(n.to_string());
        Some(String::new())
    });
    out
}

/// The newest `actions.playbook_stats` (or that of `as_of`).
pub async fn stats(lake: &Lake, as_of: Option<NaiveDate>) -> Result<(Option<String>, Vec<RecordBatch>)> {
    let ctx = lake.session().await?;
    if !has_table(&ctx, "actions.playbook_stats") {
        return Ok((None, vec![]));
    }
    let filter = match as_of {
        Some(d) => format!("DATE '{d}'"),
        None => "(SELECT MAX(as_of_date) FROM actions.playbook_stats)".into(),
    };
    let b = sql(
        &ctx,
        &format!(
            "SELECT playbook, playbook_version, enrolled, active, completed, exited, cancelled, tasks_created, \
             tasks_completed, tasks_overdue, round(task_completion_rate, 3) AS task_completion_rate, alerts, churned, \
             renewed, expanded, round(retention_rate, 3) AS retention_rate, CAST(as_of_date AS VARCHAR) AS as_of_date \
             FROM actions.playbook_stats WHERE as_of_date = {filter} ORDER BY playbook, playbook_version"
        ),
    )
    .await?;
    let date = b
        .first()
        .and_then(|b| strings(b, "as_of_date").ok())
        .and_then(|v| v.into_iter().next().flatten());
    Ok((date, b))
}

/// `cslake tasks complete ID`.
pub async fn complete_task(lake: &Lake, task_id: &str, by: &str, run: &mut RunContext) -> Result<Task> {
    let ctx = lake.session().await?;
    let id = task_id.replace('\'', "''");
    let tasks = Task::read(&read(&ctx, "actions.tasks", &format!("task_id = '{id}'")).await?)?;
    let Some(t) = tasks.into_iter().next() else {
        return Err(Error::Config(format!(
            "no task '{task_id}' in actions.tasks (cslake query \"SELECT task_id, title, status FROM tasks\")"
        )));
    };
    if t.status == "completed" {
        return Ok(t);
    }
    let done = Task {
        status: "completed".into(),
        completed_at: Some(chrono::Utc::now().timestamp_micros()),
        completed_by: Some(by.to_string()),
        ..t
    };
    upsert_tasks(lake, std::slice::from_ref(&done), run).await?;
    Ok(done)
}

/// `cslake alerts ack ID`.
pub async fn ack_alert(lake: &Lake, alert_id: &str, by: &str, run: &mut RunContext) -> Result<Alert> {
    let ctx = lake.session().await?;
    let id = alert_id.replace('\'', "''");
    let alerts = Alert::read(&read(&ctx, "actions.alerts", &format!("alert_id = '{id}'")).await?)?;
    let Some(a) = alerts.into_iter().next() else {
        return Err(Error::Config(format!(
            "no alert '{alert_id}' in actions.alerts (cslake query \"SELECT alert_id, title, status FROM alerts\")"
        )));
    };
    if a.status == "acknowledged" {
        return Ok(a);
    }
    let done = Alert {
        status: "acknowledged".into(),
        acknowledged_at: Some(chrono::Utc::now().timestamp_micros()),
        acknowledged_by: Some(by.to_string()),
        ..a
    };
    upsert_alerts(lake, std::slice::from_ref(&done), run).await?;
    Ok(done)
}

/// One arm of a campaign against its control group.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ArmReport {
    pub campaign: String,
    pub arm: String,
    pub accounts: usize,
    /// Accounts whose outcome window has fully passed.
    pub matured: usize,
    pub retained: usize,
    pub retention_rate: Option<f64>,
    pub expanded: usize,
    pub expansion_rate: Option<f64>,
    /// Mean relative change of the engagement feature since assignment.
    pub engagement_change: Option<f64>,
    /// Retention rate minus control's, with a 95% confidence interval (normal approximation).
    pub retention_lift: Option<f64>,
    pub retention_lift_ci: Option<(f64, f64)>,
    pub engagement_lift: Option<f64>,
    pub engagement_lift_ci: Option<(f64, f64)>,
}

fn arms_batch(rows: &[ArmReport], as_of: NaiveDate, run_id: &str) -> Result<RecordBatch> {
    let n = rows.len();
    let lo = |v: Option<(f64, f64)>| v.map(|x| x.0);
    let hi = |v: Option<(f64, f64)>| v.map(|x| x.1);
    Cols::default()
        .key("campaign", rows.iter().map(|r| r.campaign.clone()).collect())
        .key("arm", rows.iter().map(|r| r.arm.clone()).collect())
        .int("accounts", rows.iter().map(|r| Some(r.accounts as i64)).collect())
        .int("matured", rows.iter().map(|r| Some(r.matured as i64)).collect())
        .int("retained", rows.iter().map(|r| Some(r.retained as i64)).collect())
        .float("retention_rate", rows.iter().map(|r| r.retention_rate).collect())
        .int("expanded", rows.iter().map(|r| Some(r.expanded as i64)).collect())
        .float("expansion_rate", rows.iter().map(|r| r.expansion_rate).collect())
        .float(
            "engagement_change",
            rows.iter().map(|r| r.engagement_change).collect(),
        )
        .float("retention_lift", rows.iter().map(|r| r.retention_lift).collect())
        .float(
            "retention_lift_low",
            rows.iter().map(|r| lo(r.retention_lift_ci)).collect(),
        )
        .float(
            "retention_lift_high",
            rows.iter().map(|r| hi(r.retention_lift_ci)).collect(),
        )
        .float(
            "engagement_lift",
            rows.iter().map(|r| r.engagement_lift).collect(),
        )
        .float(
            "engagement_lift_low",
            rows.iter().map(|r| lo(r.engagement_lift_ci)).collect(),
        )
        .float(
            "engagement_lift_high",
            rows.iter().map(|r| hi(r.engagement_lift_ci)).collect(),
        )
        .date("as_of_date", vec![Some(as_of); n])
        .key("_run_id", vec![run_id.to_string(); n])
        .batch()
}

fn mean_var(v: &[f64]) -> Option<(f64, f64, usize)> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some((m, var, v.len()))
}

/// `cslake campaigns report`: per campaign and arm, retention, expansion and engagement change
/// of the assigned accounts as of `as_of` (or the latest scored date), against the control group.
pub async fn campaign_report(
    lake: &Lake,
    settings: &Settings,
    as_of: Option<NaiveDate>,
) -> Result<Vec<ArmReport>> {
    let lib = library(settings)?;
    let ctx = lake.session().await?;
    let assignments = Assignment::read(&read(&ctx, "actions.campaign_assignments", "").await?)?;
    if assignments.is_empty() {
        return Ok(vec![]);
    }
    let date = match as_of {
        Some(d) => d,
        None => {
            let b = sql(
                &ctx,
                "SELECT CAST(MAX(as_of_date) AS VARCHAR) AS d FROM scores.risk_scores",
            )
            .await?;
            b.first()
                .and_then(|b| strings(b, "d").ok())
                .and_then(|v| v.into_iter().next().flatten())
                .and_then(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
                .ok_or_else(|| Error::Job("no scores to measure campaigns against".into()))?
        }
    };
    let day = day_table(&ctx, settings, date, &BTreeSet::new()).await?;
    Ok(campaign_arms(settings, &lib, &assignments, &day))
}

/// Per campaign and arm, the outcomes of the accounts assigned up to the day.
fn campaign_arms(
    settings: &Settings,
    lib: &Library,
    assignments: &[Assignment],
    day: &Day,
) -> Vec<ArmReport> {
    let date = day.as_of;
    let min_increase = settings.file.opportunities.expansion_min_increase_pct as f64 / 100.0;
    // (campaign, arm) -> (retained flags, expanded flags, engagement changes, matured)
    type Acc = (Vec<f64>, Vec<f64>, Vec<f64>, usize);
    let mut by: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for a in assignments.iter().filter(|a| a.assigned_on <= date) {
        let outcome_days = lib.campaign(&a.campaign).map_or(90, |c| c.outcome_days);
        let feature = lib
            .campaign(&a.campaign)
            .map_or("events_30d".to_string(), |c| c.engagement_feature.clone());
        let e = by.entry((a.campaign.clone(), a.arm.clone())).or_default();
        if a.assigned_on + Days::days(outcome_days) <= date {
            e.3 += 1;
        }
        match day.row(&a.account_id) {
            None => {
                e.0.push(0.0);
                e.1.push(0.0);
            }
            Some(i) => {
                e.0.push(1.0);
                let expanded = matches!((a.mrr_at_assignment, day.num("mrr", i)), (Some(b), Some(n)) if b > 0.0 && n >= b * (1.0 + min_increase));
                e.1.push(if expanded { 1.0 } else { 0.0 });
                if let (Some(b), Some(n)) = (a.engagement_at_assignment, day.num(&feature, i))
                    && b > 0.0
                {
                    e.2.push(n / b - 1.0);
                }
            }
        }
    }
    let mut out = Vec::new();
    for ((campaign, arm), (ret, exp, eng, matured)) in &by {
        let control = by.get(&(campaign.clone(), "control".to_string()));
        let r = mean_var(ret);
        let mut rep = ArmReport {
            campaign: campaign.clone(),
            arm: arm.clone(),
            accounts: ret.len(),
            matured: *matured,
            retained: ret.iter().filter(|x| **x > 0.5).count(),
            retention_rate: r.map(|x| x.0),
            expanded: exp.iter().filter(|x| **x > 0.5).count(),
            expansion_rate: mean_var(exp).map(|x| x.0),
            engagement_change: mean_var(eng).map(|x| x.0),
            ..Default::default()
        };
        if arm != "control"
            && let Some((cret, _, ceng, _)) = control
        {
            if let (Some((p1, _, n1)), Some((p2, _, n2))) = (r, mean_var(cret)) {
                let diff = p1 - p2;
                let se = (p1 * (1.0 - p1) / n1 as f64 + p2 * (1.0 - p2) / n2 as f64).sqrt();
                rep.retention_lift = Some(diff);
                rep.retention_lift_ci = Some((diff - 1.96 * se, diff + 1.96 * se));
            }
            if let (Some((m1, v1, n1)), Some((m2, v2, n2))) = (mean_var(eng), mean_var(ceng)) {
                let diff = m1 - m2;
                let se = (v1 / n1 as f64 + v2 / n2 as f64).sqrt();
                rep.engagement_lift = Some(diff);
                rep.engagement_lift_ci = Some((diff - 1.96 * se, diff + 1.96 * se));
            }
        }
        out.push(rep);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::act::library::Arm;

    fn day() -> Day {
        let batch = Cols::default()
            .key(
                "account_id",
                vec!["a1".into(), "a2".into(), "a3".into(), "a4".into()],
            )
            .str(
                "csm_id",
                vec![Some("c1".into()), Some("c1".into()), None, Some("c3".into())],
            )
            .str(
                "segment",
                vec![
                    Some("SMB".into()),
                    Some("SMB".into()),
                    Some("SMB".into()),
                    Some("Enterprise".into()),
                ],
            )
            .float("mrr", vec![Some(100.0), Some(900.0), Some(50.0), Some(5000.0)])
            .batch()
            .unwrap();
        Day::from_batch(NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(), batch).unwrap()
    }

    fn settings() -> Settings {
        let mut file = crate::settings::FileConfig::default();
        file.actions
            .assignment
            .segment_teams
            .insert("SMB".into(), "small".into());
        file.actions.teams.insert(
            "small".into(),
            crate::settings::TeamConfig {
                lead: Some("lead@x.test".into()),
                lead_csm_id: Some("c2".into()),
            },
        );
        Settings {
            lake: String::new(),
            file,
            config_dir: ".".into(),
            actor: "test".into(),
            memory_limit: None,
        }
    }

    fn assigner<'a>(settings: &'a Settings, day: &Day) -> Assigner<'a> {
        let csm = |team: &str, email: &str| Csm {
            email: Some(email.into()),
            team: Some(team.into()),
        };
        Assigner {
            settings,
            csms: [
                ("c1".to_string(), csm("small", "c1@x.test")),
                ("c2".to_string(), csm("small", "c2@x.test")),
                ("c3".to_string(), csm("big", "c3@x.test")),
            ]
            .into_iter()
            .collect(),
            open_load: [("c1".to_string(), 5)].into_iter().collect(),
            book_arr: day.ids.iter().enumerate().fold(HashMap::new(), |mut m, (i, _)| {
                if let (Some(c), Some(mrr)) = (day.text("csm_id", i), day.num("mrr", i)) {
                    *m.entry(c).or_insert(0.0) += mrr * 12.0;
                }
                m
            }),
            round_robin: HashMap::new(),
            unresolved: BTreeMap::new(),
        }
    }

    #[test]
    fn tasks_go_to_the_person_the_rule_names() {
        let (settings, day) = (settings(), day());
        let mut a = assigner(&settings, &day);
        // owner; an account without one goes to the least-loaded CSM of its segment's team
        assert_eq!(a.assign("owner", &day, 0).0.as_deref(), Some("c1"));
        assert_eq!(
            a.assign("owner", &day, 2),
            (Some("c2".into()), Some("c2@x.test".into()), Some("small".into()))
        );
        // round robin within the team, in csm_id order
        let rr: Vec<String> = (0..3)
            .map(|_| a.assign("round_robin", &day, 0).0.unwrap())
            .collect();
        assert_eq!(rr, ["c1", "c2", "c1"]);
        // least loaded: c1 started with 5 open tasks
        assert_eq!(a.assign("least_loaded", &day, 1).0.as_deref(), Some("c2"));
        // least ARR in the book: c2 owns nothing
        assert_eq!(a.assign("least_arr", &day, 0).0.as_deref(), Some("c2"));
        // the team lead, and a fixed CSM
        assert_eq!(a.assign("team_lead", &day, 0).0.as_deref(), Some("c2"));
        assert_eq!(a.assign("csm:c3", &day, 0).0.as_deref(), Some("c3"));
        // alert recipients: the owner's e-mail, the team's lead, literal addresses; unknown ones counted
        assert_eq!(
            a.recipients(&["csm".into(), "team_lead".into(), "ops@x.test".into()], &day, 0),
            ["c1@x.test", "lead@x.test", "ops@x.test"]
        );
        assert!(a.recipients(&["team_lead".into()], &day, 3).is_empty());
        assert_eq!(a.unresolved.get("team_lead"), Some(&1));
    }

    #[test]
    fn campaign_arms_are_deterministic_and_follow_the_split() {
        let c = Campaign {
            kind: "campaign".into(),
            name: "c".into(),
            version: 1,
            category: None,
            owner: None,
            description: None,
            holdout_pct: 20.0,
            arms: ["a", "b"]
                .iter()
                .map(|n| Arm {
                    name: (*n).into(),
                    weight: 1.0,
                    subject: String::new(),
                    body: String::new(),
                })
                .collect(),
            channel: None,
            to: "csm".into(),
            outcome_days: 90,
            engagement_feature: "events_30d".into(),
            origin: String::new(),
        };
        let mut n: HashMap<String, usize> = HashMap::new();
        for i in 0..10_000 {
            let (arm, _) = campaign_arm(&c, &format!("acc-{i}"));
            assert_eq!(campaign_arm(&c, &format!("acc-{i}")).0, arm);
            *n.entry(arm).or_default() += 1;
        }
        // 20% control, the rest split evenly (within sampling noise of 10,000 draws)
        assert!((1800..2200).contains(&n["control"]), "{n:?}");
        assert!((3700..4300).contains(&n["a"]), "{n:?}");
        assert!((3700..4300).contains(&n["b"]), "{n:?}");
    }
}
