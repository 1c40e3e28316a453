use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};

use crate::registry::{
    CHURN_CANCELLATION_SQL, CHURN_INACTIVITY_SQL, CHURN_SUBSCRIPTION_GAP_SQL, SPINE_ACTIVITY_SQL, SPINE_SQL,
    reads, shared_states,
};
use crate::state::{
    Computed, ComputedState, PreviousStates, collect_sql, compute_kept, compute_state, register_batches,
};
use crate::{Error, FeatureView, Registry, Result, render};

/// What "churned" means: configuration, because every business defines it differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChurnDefinition {
    /// A subscription period ends and no other period covers the next `grace_days` days.
    #[default]
    SubscriptionGap,
    /// A subscription ends with status cancelled / canceled / churned.
    Cancellation,
    /// No product activity in the label window; customers are the accounts active in the
    /// `inactivity_days` before the observation date. For products without subscription data.
    Inactivity,
}

impl ChurnDefinition {
    /// The name used in `cslake.toml`.
    pub fn name(self) -> &'static str {
        match self {
            ChurnDefinition::SubscriptionGap => "subscription_gap",
            ChurnDefinition::Cancellation => "cancellation",
            ChurnDefinition::Inactivity => "inactivity",
        }
    }

    /// The tables the definition needs.
    pub fn sources(self) -> &'static [&'static str] {
        match self {
            ChurnDefinition::SubscriptionGap | ChurnDefinition::Cancellation => {
                &["accounts", "subscriptions"]
            }
            ChurnDefinition::Inactivity => &["accounts", "usage_events"],
        }
    }

    fn label_sql(self) -> &'static str {
        match self {
            ChurnDefinition::SubscriptionGap => CHURN_SUBSCRIPTION_GAP_SQL,
            ChurnDefinition::Cancellation => CHURN_CANCELLATION_SQL,
            ChurnDefinition::Inactivity => CHURN_INACTIVITY_SQL,
        }
    }

    fn spine_sql(self) -> &'static str {
        match self {
            ChurnDefinition::Inactivity => SPINE_ACTIVITY_SQL,
            _ => SPINE_SQL,
        }
    }
}

/// What a training label predicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The account stops being a customer (by the churn definition).
    #[default]
    Churn,
    /// The account's MRR grows by at least `min_increase_pct`.
    Expansion,
}

/// How the label is observed after an observation date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelSpec {
    pub target: Target,
    /// For `Expansion`: the MRR increase that counts, in percent.
    pub min_increase_pct: i64,
    pub definition: ChurnDefinition,
    /// Days after the observation date before the label window opens (time to act).
    pub lead_days: i64,
    /// Length of the label window in days ("cancels within 90 days").
    pub horizon_days: i64,
    /// A subscription gap longer than this many days counts as churn.
    pub grace_days: i64,
    /// For `Inactivity`: an account is a customer while it was active in this many days.
    pub inactivity_days: i64,
}

impl Default for LabelSpec {
    fn default() -> Self {
        Self {
            target: Target::Churn,
            min_increase_pct: 10,
            definition: ChurnDefinition::SubscriptionGap,
            lead_days: 0,
            horizon_days: 90,
            grace_days: 30,
            inactivity_days: 30,
        }
    }
}

impl LabelSpec {
    fn params(&self) -> [(&'static str, i64); 5] {
        [
            ("grace_days", self.grace_days),
            ("lead_days", self.lead_days),
            ("window_end_days", self.lead_days + self.horizon_days),
            ("inactivity_days", self.inactivity_days),
            ("min_increase_pct", self.min_increase_pct),
        ]
    }

    fn label_sql(&self) -> &'static str {
        match self.target {
            Target::Churn => self.definition.label_sql(),
            Target::Expansion => crate::registry::EXPANSION_SQL,
        }
    }

    /// A readable statement of the label, stored with every model.
    pub fn describe(&self) -> String {
        if self.target == Target::Expansion {
            return format!(
                "MRR at least {}% above the observation date's, {} days after a lead of {} days",
                self.min_increase_pct, self.horizon_days, self.lead_days
            );
        }
        let what = match self.definition {
            ChurnDefinition::SubscriptionGap => {
                format!(
                    "a subscription ends and none covers the next {} days",
                    self.grace_days
                )
            }
            ChurnDefinition::Cancellation => "a subscription is cancelled".to_string(),
            ChurnDefinition::Inactivity => "no product activity".to_string(),
        };
        format!(
            "{what}, within {} days after a lead of {} days",
            self.horizon_days, self.lead_days
        )
    }
}

/// Registers `spine`: the accounts that are customers on `as_of` (as the churn definition sees
/// them), which every view starts from. Returns the number of accounts.
pub async fn register_spine(ctx: &SessionContext, as_of: NaiveDate, label: &LabelSpec) -> Result<usize> {
    let sql = render(label.definition.spine_sql(), as_of, &label.params());
    // the schema is kept even when nobody is a customer yet
    let batches = collect_sql(ctx, &sql, "spine", as_of).await?;
    let rows = batches.iter().map(RecordBatch::num_rows).sum();
    register_batches(ctx, "spine", batches)?;
    Ok(rows)
}

/// Computes and registers the shared tables `views` read as of `as_of`
/// ([`crate::registry::shared_states`]): stepped from `previous` where it has their rows of the
/// day before, else from scratch.
async fn register_shared(
    ctx: &SessionContext,
    views: &[&FeatureView],
    as_of: NaiveDate,
    previous: &PreviousStates,
) -> Result<Vec<ComputedState>> {
    let mut out = Vec::new();
    for state in shared_states() {
        if !views.iter().any(|v| reads(&v.sql, &state.table)) {
            continue;
        }
        let t = std::time::Instant::now();
        let prior = previous.get(&state.table).cloned();
        let computed = compute_kept(ctx, &state.table, &state, as_of, prior).await?;
        tracing::debug!(%as_of, table = state.table.as_str(), stepped = computed.stepped, seconds = t.elapsed().as_secs_f64(), "shared table computed");
        out.push(computed);
    }
    Ok(out)
}

/// Computes one view as of `as_of` (the spine must be registered; its state, if it keeps one,
/// and the shared tables it reads are computed first) and checks that it returns every feature
/// its header declares.
pub async fn compute_view(
    ctx: &SessionContext,
    registry: &Registry,
    view: &FeatureView,
    as_of: NaiveDate,
) -> Result<Vec<RecordBatch>> {
    register_shared(ctx, &[view], as_of, &PreviousStates::new()).await?;
    for owner in registry.states_read_by(view) {
        compute_state(ctx, owner, as_of, None).await?;
    }
    compute_view_sql(ctx, view, as_of).await
}

/// The view's own SELECT as of `as_of`, its state (if any) already registered.
async fn compute_view_sql(
    ctx: &SessionContext,
    view: &FeatureView,
    as_of: NaiveDate,
) -> Result<Vec<RecordBatch>> {
    let sql = render(&view.sql, as_of, &[]);
    let df = ctx.sql(&sql).await.map_err(|source| Error::Query {
        view: view.name.clone(),
        as_of: as_of.to_string(),
        source,
    })?;
    let schema = df.schema().as_arrow().clone();
    for required in ["account_id", "as_of_date"]
        .into_iter()
        .chain(view.features.iter().map(|(n, _)| n.as_str()))
    {
        if schema.field_with_name(required).is_err() {
            return Err(Error::View {
                view: view.name.clone(),
                path: view.origin.clone(),
                message: format!(
                    "the header declares column '{required}' but the SELECT returns only: {}",
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    let batches = df.collect().await.map_err(|source| Error::Query {
        view: view.name.clone(),
        as_of: as_of.to_string(),
        source,
    })?;
    if batches.is_empty() {
        return Ok(vec![RecordBatch::new_empty(Arc::new(schema))]);
    }
    Ok(batches)
}

/// Joins computed views into one row per spine account: `account_id, as_of_date` and every
/// feature as `DOUBLE`, in registry order.
pub async fn feature_vector(
    ctx: &SessionContext,
    registry: &Registry,
    computed: &[(String, Vec<RecordBatch>)],
) -> Result<Vec<RecordBatch>> {
    let mut select = vec!["s.account_id".to_string(), "s.as_of_date".to_string()];
    let mut joins = String::new();
    for (i, (name, batches)) in computed.iter().enumerate() {
        let alias = format!("fv_{i}");
        register_batches(ctx, &alias, batches.clone())?;
        let view = registry.get(name).ok_or_else(|| Error::View {
            view: name.clone(),
            path: String::new(),
            message: "not in the registry".into(),
        })?;
        for (feature, _) in &view.features {
            select.push(format!("CAST({alias}.\"{feature}\" AS DOUBLE) AS \"{feature}\""));
        }
        joins.push_str(&format!(
            " LEFT JOIN {alias} ON {alias}.account_id = s.account_id"
        ));
    }
    let sql = format!(
        "SELECT {} FROM spine s{joins} ORDER BY s.account_id",
        select.join(", ")
    );
    let out = ctx.sql(&sql).await?.collect().await?;
    for i in 0..computed.len() {
        ctx.deregister_table(format!("fv_{i}").as_str())?;
    }
    Ok(out)
}

/// What a computation as of D may know.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Knowledge {
    /// `None`: everything in the lake (facts dated after D are excluded either way). `Some`:
    /// strict mode, only rows ingested before the cutoff of D: the end of the last recorded
    /// ingest for a date up to D, `(date, end in µs)` sorted by date, or the end of D without one.
    strict: Option<Vec<(NaiveDate, i64)>>,
}

impl Knowledge {
    pub fn everything() -> Self {
        Self { strict: None }
    }

    /// Strict mode, from the ends of earlier ingest runs by their as-of date.
    pub fn strict(mut ingests: Vec<(NaiveDate, i64)>) -> Self {
        ingests.sort();
        Self {
            strict: Some(ingests),
        }
    }

    /// The ingestion cutoff for D in µs since the epoch (UTC), `None` when not strict.
    pub fn cutoff(&self, as_of: NaiveDate) -> Option<i64> {
        let ingests = self.strict.as_ref()?;
        let recorded = ingests.iter().filter(|(d, _)| *d <= as_of).map(|(_, t)| *t).max();
        let end_of_day = (as_of + chrono::Duration::days(1))
            .and_hms_opt(0, 0, 0)?
            .and_utc()
            .timestamp_micros();
        Some(recorded.unwrap_or(end_of_day))
    }
}

/// Points the bare table names (`usage_events`, ...) at the rows of `core` ingested before
/// `cutoff` (µs, UTC), or back at the whole tables with `None`. Views use bare names, so every
/// view sees the same knowledge without a change to its SQL.
pub async fn restrict_knowledge(ctx: &SessionContext, cutoff: Option<i64>) -> Result<()> {
    use datafusion::common::{ScalarValue, TableReference};
    use datafusion::prelude::{col, lit};
    let Some(core) = ctx.catalog("datafusion").and_then(|c| c.schema("core")) else {
        return Ok(());
    };
    for name in core.table_names() {
        let qualified = TableReference::partial("core", name.as_str());
        let df = ctx.table(qualified).await?;
        let has_ingested = df.schema().has_column_with_unqualified_name("_ingested_at");
        let provider = match cutoff {
            Some(c) if has_ingested => df
                .filter(col("_ingested_at").lt(lit(ScalarValue::TimestampMicrosecond(
                    Some(c),
                    Some("UTC".into()),
                ))))?
                .into_view(),
            _ => df.into_view(),
        };
        ctx.deregister_table(name.as_str())?;
        ctx.register_table(name.as_str(), provider)?;
    }
    Ok(())
}

/// Makes the daily usage rollups (`usage_daily`, `usage_daily_users`: what the usage views read)
/// available under their bare names: the materialised `features.<rollup>` tables when the session
/// has them and `restricted` is false, else views computed from `usage_events` (a
/// knowledge-restricted session, a session without the tables such as the `.slt` tests).
pub async fn register_rollups(ctx: &SessionContext, restricted: bool) -> Result<()> {
    if !ctx.table_exist("usage_events")? {
        return Ok(());
    }
    let has_ingested = ctx
        .table("usage_events")
        .await?
        .schema()
        .has_column_with_unqualified_name("_ingested_at");
    for (name, rollup) in crate::registry::ROLLUPS {
        let materialised = ctx
            .catalog("datafusion")
            .and_then(|c| c.schema("features"))
            .is_some_and(|s| s.table_exist(name));
        let provider = if !restricted && materialised {
            ctx.table(format!("features.{name}").as_str()).await?.into_view()
        } else {
            let mut sql = rollup.replace("{{where}}", "");
            if !has_ingested {
                sql = sql.replace("MAX(_ingested_at)", "CAST(NULL AS TIMESTAMP)");
            }
            ctx.sql(&sql).await?.into_view()
        };
        ctx.deregister_table(*name)?;
        ctx.register_table(*name, provider)?;
    }
    Ok(())
}

/// The rollups as they stood with only the rows ingested before `cutoff` (µs, UTC), for strict
/// runs as of `as_of`: the materialised rows of every day whose rows were all ingested before the
/// cutoff (a rollup row keeps its newest `_ingested_at`), and the other days up to `as_of`
/// recomputed from the events ingested before it (the restricted `usage_events`, narrowed to those
/// days so the scan skips the other files). A backfill of a lake loaded day by day so reads a
/// few days of events per date, not the history. Without the materialised tables, views over the
/// restricted events, as [`register_rollups`].
async fn register_rollups_known_at(ctx: &SessionContext, as_of: NaiveDate, cutoff: i64) -> Result<()> {
    use datafusion::common::ScalarValue;
    use datafusion::prelude::{col, lit};
    let cutoff = lit(ScalarValue::TimestampMicrosecond(
        Some(cutoff),
        Some("UTC".into()),
    ));
    let as_of_lit = lit(ScalarValue::Date32(Some(
        (as_of - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32,
    )));
    for (name, rollup) in crate::registry::ROLLUPS {
        let materialised = ctx
            .catalog("datafusion")
            .and_then(|c| c.schema("features"))
            .is_some_and(|s| s.table_exist(name));
        let has_ingested = ctx
            .table("usage_events")
            .await?
            .schema()
            .has_column_with_unqualified_name("_ingested_at");
        if !materialised || !has_ingested {
            let mut sql = rollup.replace("{{where}}", "");
            if !has_ingested {
                sql = sql.replace("MAX(_ingested_at)", "CAST(NULL AS TIMESTAMP)");
            }
            let view = ctx.sql(&sql).await?.into_view();
            ctx.deregister_table(*name)?;
            ctx.register_table(*name, view)?;
            continue;
        }
        let table = ctx.table(format!("features.{name}").as_str()).await?;
        let upto = table.filter(col("event_date").lt_eq(as_of_lit.clone()))?;
        let late = upto
            .clone()
            .filter(col("_ingested_at").gt_eq(cutoff.clone()))?
            .aggregate(vec![col("event_date")], vec![])?
            .collect()
            .await?;
        let mut days: Vec<NaiveDate> = Vec::new();
        for b in &late {
            let d = datafusion::arrow::compute::cast(b.column(0), &DataType::Date32)
                .map_err(datafusion::error::DataFusionError::from)?;
            let d = d
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Date32Array>()
                .ok_or_else(|| Error::View {
                    view: name.to_string(),
                    path: String::new(),
                    message: "event_date is not a date".into(),
                })?;
            days.extend(d.iter().flatten().filter_map(|v| {
                NaiveDate::from_ymd_opt(1970, 1, 1).map(|e| e + chrono::Duration::days(v.into()))
            }));
        }
        let known = if days.is_empty() {
            upto
        } else {
            let list: Vec<_> = days
                .iter()
                .map(|d| {
                    lit(ScalarValue::Date32(Some(
                        (*d - NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default()).num_days() as i32,
                    )))
                })
                .collect();
            let kept = upto.filter(col("event_date").in_list(list, true))?;
            // the late days again, from the events known at the cutoff
            let events = crate::on_days(ctx.table("usage_events").await?, "event_time", &days)?;
            ctx.deregister_table("rollup_known_events")?;
            ctx.register_table("rollup_known_events", events.into_view())?;
            let recomputed = ctx
                .sql(
                    &rollup
                        .replace("FROM usage_events", "FROM rollup_known_events")
                        .replace("{{where}}", ""),
                )
                .await?;
            let columns: Vec<_> = kept
                .schema()
                .fields()
                .iter()
                .map(|f| col(format!("\"{}\"", f.name())))
                .collect();
            kept.union(recomputed.select(columns)?)?
        };
        ctx.deregister_table(*name)?;
        ctx.register_table(*name, known.into_view())?;
    }
    Ok(())
}

/// Computes every view of the registry as of `as_of` (registering the spine first). A view that
/// keeps a state steps it from `previous` when that holds the state's rows of the day before.
pub async fn compute_all(
    ctx: &SessionContext,
    registry: &Registry,
    as_of: NaiveDate,
    label: &LabelSpec,
    knowledge: &Knowledge,
    previous: &PreviousStates,
) -> Result<Computed> {
    if let Some(cutoff) = knowledge.cutoff(as_of) {
        restrict_knowledge(ctx, Some(cutoff)).await?;
        // the materialised rollups know rows the cutoff excludes: keep the days they do not
        register_rollups_known_at(ctx, as_of, cutoff).await?;
    } else {
        register_rollups(ctx, false).await?;
    }
    let t = std::time::Instant::now();
    register_spine(ctx, as_of, label).await?;
    tracing::debug!(%as_of, seconds = t.elapsed().as_secs_f64(), "spine");
    let mut out = Computed::default();
    // every state a view reads first (engagement reads usage_activity's), then the views; the
    // shared tables (one distinct count over 30 days of users) alongside the states, unless a
    // state reads one
    let all: Vec<&FeatureView> = registry.views.iter().collect();
    let shared = register_shared(ctx, &all, as_of, previous);
    let states = async {
        let mut states = Vec::new();
        for owner in &registry.views {
            let Some(needed) = registry.needs_state(owner) else {
                continue;
            };
            let t = std::time::Instant::now();
            let prior = previous.get(&needed.table).cloned();
            if let Some(state) = compute_state(ctx, owner, as_of, prior).await? {
                tracing::debug!(%as_of, state = state.table.as_str(), stepped = state.stepped, seconds = t.elapsed().as_secs_f64(), "state computed");
                states.push(state);
            }
        }
        Ok::<_, Error>(states)
    };
    let states_read_shared = registry.views.iter().filter_map(|v| v.state.as_ref()).any(|st| {
        shared_states().iter().any(|shared| {
            reads(&st.sql, &shared.table) || st.step.as_deref().is_some_and(|step| reads(step, &shared.table))
        })
    });
    let (shared, mut states) = if states_read_shared {
        let shared = shared.await?;
        (shared, states.await?)
    } else {
        futures::future::try_join(shared, states).await?
    };
    states.extend(shared);
    out.states = states;
    // The views only read what is registered by now: twice as many at a time as the session
    // has partitions (cores), so one view's planning, log and footer reads and single-threaded
    // steps overlap another's work (a daily run's views are small; the memory pool bounds them
    // together). One per core left the cores idle part of the time: on 2 cores, twice as many
    // took a daily run from 2.3-2.5 s to 2.1-2.3 s (perf data, 3 views) and from 2.7-2.9 s to
    // 2.5-2.7 s (demo data, 8 views), 30 MB more at the peak. Kept in registry order.
    let at_once = 2 * ctx.state().config().target_partitions().max(1);
    out.views = futures::stream::iter(registry.views.clone())
        .map(|view| {
            let ctx = ctx.clone();
            let task = datafusion::common::runtime::SpawnedTask::spawn(async move {
                let t = std::time::Instant::now();
                let batches = compute_view_sql(&ctx, &view, as_of).await?;
                tracing::debug!(%as_of, view = view.name.as_str(), seconds = t.elapsed().as_secs_f64(), "view computed");
                Ok::<_, Error>((view.name, batches))
            });
            async move {
                task.join_unwind().await.map_err(|e| Error::View {
                    view: "views".into(),
                    path: String::new(),
                    message: format!("a view's task stopped: {e}"),
                })?
            }
        })
        .buffered(at_once)
        .try_collect()
        .await?;
    Ok(out)
}

/// Features at each observation date with the churn label observed after it: the rows of
/// `account_id, as_of_date, <features…>, label`. Only accounts that are customers on the
/// observation date appear, so accounts already gone are excluded.
pub async fn training_set(
    ctx: &SessionContext,
    registry: &Registry,
    dates: &[NaiveDate],
    label: LabelSpec,
    knowledge: &Knowledge,
) -> Result<Vec<RecordBatch>> {
    training_sets(ctx, registry, dates, &[label], knowledge)
        .await?
        .pop()
        .unwrap_or_else(|| Ok(Vec::new()))
}

/// [`training_set`] for several labels observed on the same dates (churn and expansion): the
/// features of each date are computed once and joined to every label. The labels must share the
/// spine (the churn definition). A label whose query fails (expansion without MRR history, say)
/// gives its error and leaves the others be; a feature view that fails fails the whole call.
pub async fn training_sets(
    ctx: &SessionContext,
    registry: &Registry,
    dates: &[NaiveDate],
    labels: &[LabelSpec],
    knowledge: &Knowledge,
) -> Result<Vec<Result<Vec<RecordBatch>>>> {
    let Some(first) = labels.first() else {
        return Ok(Vec::new());
    };
    if labels.iter().any(|l| l.definition != first.definition) {
        return Err(Error::View {
            view: "training set".into(),
            path: String::new(),
            message: "labels built together must share the churn definition (the spine)".into(),
        });
    }
    // The dates are independent: `workers` sessions (the configured target partitions, the
    // cores by default) take every `workers`-th date each, side by side. They share the tables,
    // the runtime and its memory pool, so the budget holds for all of them together; what each
    // registers (spine, rollups as known then, labels) is its own.
    let workers = ctx
        .state()
        .config()
        .target_partitions()
        .clamp(1, dates.len().max(1));
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let fork = fork_session(ctx).await?;
        let mine: Vec<NaiveDate> = dates.iter().copied().skip(w).step_by(workers).collect();
        let (registry, labels, knowledge) = (registry.clone(), labels.to_vec(), knowledge.clone());
        tasks.push(datafusion::common::runtime::SpawnedTask::spawn(async move {
            let mut done = Vec::with_capacity(mine.len());
            for as_of in mine {
                let rows = date_rows(&fork, &registry, as_of, &labels, &knowledge).await?;
                done.push((as_of, rows));
            }
            Ok::<_, Error>(done)
        }));
    }
    let mut by_date = Vec::with_capacity(dates.len());
    for task in tasks {
        let done = task.join_unwind().await.map_err(|e| Error::View {
            view: "training set".into(),
            path: String::new(),
            message: format!("a worker stopped: {e}"),
        })??;
        by_date.extend(done);
    }
    by_date.sort_by_key(|(d, _)| *d);
    let mut out: Vec<Result<Vec<RecordBatch>>> = labels.iter().map(|_| Ok(Vec::new())).collect();
    for (_, rows) in by_date {
        for (acc, r) in out.iter_mut().zip(rows) {
            match (acc, r) {
                (Ok(acc), Ok(r)) => acc.extend(r),
                (acc @ Ok(_), Err(e)) => *acc = Err(e),
                (Err(_), _) => {}
            }
        }
    }
    Ok(out)
}

/// The rows of one observation date for each label: the feature vector joined to the label. A
/// feature view that fails fails the date; a label that fails gives its error in its place.
async fn date_rows(
    ctx: &SessionContext,
    registry: &Registry,
    as_of: NaiveDate,
    labels: &[LabelSpec],
    knowledge: &Knowledge,
) -> Result<Vec<Result<Vec<RecordBatch>>>> {
    let Some(first) = labels.first() else {
        return Ok(Vec::new());
    };
    let computed = compute_all(ctx, registry, as_of, first, knowledge, &PreviousStates::new()).await?;
    let vector = feature_vector(ctx, registry, &computed.views).await?;
    if vector.iter().all(|b| b.num_rows() == 0) {
        return Ok(labels.iter().map(|_| Ok(Vec::new())).collect());
    }
    register_batches(ctx, "fv_all", vector)?;
    // the label looks into the future of the observation date: it sees everything
    if knowledge.strict.is_some() {
        restrict_knowledge(ctx, None).await?;
        register_rollups(ctx, false).await?;
    }
    let mut out = Vec::with_capacity(labels.len());
    for label in labels {
        let label_sql = render(label.label_sql(), as_of, &label.params());
        let joined = async {
            register_batches(
                ctx,
                "labels_at",
                collect_sql(ctx, &label_sql, "label", as_of).await?,
            )?;
            let rows = ctx
                .sql("SELECT f.*, l.label FROM fv_all f JOIN labels_at l ON l.account_id = f.account_id ORDER BY f.account_id")
                .await?
                .collect()
                .await?;
            ctx.deregister_table("labels_at")?;
            Ok::<_, Error>(rows)
        };
        out.push(joined.await);
    }
    ctx.deregister_table("fv_all")?;
    Ok(out)
}

/// A session sharing `ctx`'s configuration, functions, runtime (memory pool, spill folder) and
/// tables, with catalogs of its own: a table one registers or replaces the other does not see.
pub async fn fork_session(ctx: &SessionContext) -> Result<SessionContext> {
    use datafusion::catalog::{
        CatalogProvider, MemoryCatalogProvider, MemoryCatalogProviderList, MemorySchemaProvider,
        SchemaProvider,
    };
    use datafusion::execution::session_state::SessionStateBuilder;
    let state = SessionStateBuilder::new_from_existing(ctx.state())
        .with_catalog_list(Arc::new(MemoryCatalogProviderList::new()))
        .build();
    let fork = SessionContext::new_with_state(state);
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        let copy = Arc::new(MemoryCatalogProvider::new());
        for schema_name in catalog.schema_names() {
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let tables = Arc::new(MemorySchemaProvider::new());
            for table in schema.table_names() {
                if let Some(provider) = schema.table(&table).await? {
                    tables.register_table(table, provider)?;
                }
            }
            copy.register_schema(&schema_name, tables)?;
        }
        fork.register_catalog(catalog_name, copy);
    }
    Ok(fork)
}

/// The type feature columns are handed to models in.
pub const FEATURE_TYPE: DataType = DataType::Float64;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_forked_session_shares_tables_but_not_what_it_registers() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE accounts AS VALUES ('a'), ('b')")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let fork = fork_session(&ctx).await.unwrap();
        let n = fork
            .sql("SELECT COUNT(*) FROM accounts")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        assert_eq!(n[0].num_rows(), 1);
        // a spine registered in the fork, and a table replaced there, stay there
        fork.sql("CREATE TABLE spine AS VALUES (1)")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        fork.deregister_table("accounts").unwrap();
        assert!(!ctx.table_exist("spine").unwrap());
        assert!(ctx.table_exist("accounts").unwrap());
        assert!(fork_session(&ctx).await.unwrap().table_exist("accounts").unwrap());
    }

    #[test]
    fn strict_cutoff_is_the_last_ingest_up_to_the_date_or_the_end_of_the_day() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let k = Knowledge::strict(vec![
            (d("2026-03-02"), 300),
            (d("2026-03-01"), 100),
            (d("2026-03-01"), 200),
        ]);
        assert_eq!(k.cutoff(d("2026-03-01")), Some(200));
        assert_eq!(k.cutoff(d("2026-03-05")), Some(300));
        let end_of_feb_28 = d("2026-03-01")
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        assert_eq!(k.cutoff(d("2026-02-28")), Some(end_of_feb_28));
        assert_eq!(Knowledge::everything().cutoff(d("2026-03-01")), None);
    }
}
