//! `cslake features`: materialise every feature view as of a date.

pub mod event_types;
pub mod quality;
pub mod ranges;
pub mod rollup;
pub mod state;
pub mod write;

use chrono::NaiveDate;
use cslake_features::{HealthProfiles, Registry, compute_all};

use deltalake::datafusion::prelude::SessionContext;

use crate::lake::query::{has_table, require_core, with_run_id};
use crate::{Error, Lake, Result, RunContext, Settings};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FeaturesReport {
    pub as_of: String,
    /// Where the views and rollups ran: `local` or the cluster's `ballista://host:port`.
    pub engine: String,
    /// Queries sent to the cluster (rollups, states, views; 0 on the local engine).
    pub cluster_jobs: usize,
    pub accounts: usize,
    /// (view, rows, table version)
    pub views: Vec<(String, usize, Option<u64>)>,
    /// Features whose checks warned (`view.feature: problems`).
    pub warnings: Vec<String>,
    pub freshness: Vec<crate::features::quality::Freshness>,
    /// How the daily usage rollup was brought up to date.
    pub rollup: Option<crate::features::rollup::RollupReport>,
    /// How each view state was brought to the date (stepped from the day before, or in full).
    pub states: Vec<crate::features::state::StateReport>,
    /// The event types measured one by one (`event_metrics`), and those skipped with why.
    pub event_types: Option<event_types::EventTypesReport>,
}

/// The built-in views plus the user's folder, if configured.
pub fn load_registry(settings: &Settings) -> Result<Registry> {
    let reg = Registry::builtin()?;
    Ok(match &settings.file.features.dir {
        Some(dir) => reg.with_dir(&settings.config_path(dir))?,
        None => reg,
    })
}

/// The views of the lake: the built-in ones, the user's folder, the per-event-type metrics of the
/// event types kept in `features.event_types` and the account attributes of
/// `[features.attributes]` (a user view of the same name wins).
pub async fn lake_registry(settings: &Settings, ctx: &SessionContext) -> Result<Registry> {
    let mut reg = load_registry(settings)?;
    let metrics = event_types::chosen(ctx, &settings.file.features.events).await?;
    let seats = has_table(ctx, "core.subscriptions");
    if let Some(view) = cslake_features::event_metrics_view(&metrics, seats)?
        && reg.get(&view.name).is_none()
    {
        reg.views.push(view);
    }
    let attributes = &settings.file.features.attributes;
    if let Some(view) = cslake_features::attributes_view(&attributes.declared()?, attributes.backfill)?
        && reg.get(&view.name).is_none()
    {
        reg.views.push(view);
    }
    Ok(reg)
}

/// What [`prepare`] brought up to date: the rollups' refresh and the event types' choice.
pub type Prepared = (
    Option<crate::features::rollup::RollupReport>,
    Option<event_types::EventTypesReport>,
);

/// Brings what every view reads up to date: the daily usage rollups, then the choice of event
/// types measured one by one (made once, from the rollup).
pub async fn prepare(lake: &Lake, settings: &Settings, run: &mut RunContext) -> Result<Prepared> {
    let ctx = lake.session().await?;
    prepare_in(lake, settings, &ctx, run).await
}

/// [`prepare`] on a session of the lake, which then holds the tables as brought up to date.
pub async fn prepare_in(
    lake: &Lake,
    settings: &Settings,
    ctx: &SessionContext,
    run: &mut RunContext,
) -> Result<Prepared> {
    let rollup = crate::features::rollup::refresh_usage_daily_in(lake, ctx, false, run).await?;
    let types = event_types::ensure_in(lake, ctx, &settings.file.features.events, false, run).await?;
    Ok((rollup, types))
}

/// The views this lake can compute: those whose source tables exist.
pub async fn available_registry(settings: &Settings, ctx: &SessionContext) -> Result<Registry> {
    crate::lake::query::require_current_core(ctx).await?;
    let reg = lake_registry(settings, ctx)
        .await?
        .available(|t| has_table(ctx, t));
    if reg.views.is_empty() {
        return Err(crate::Error::Job(
            "no feature view can be computed: their source tables are missing; run `cslake ingest` first"
                .into(),
        ));
    }
    Ok(reg)
}

/// Computes every view as of `as_of` and replaces that date's partition of `features/<view>`.
/// `strict` also ignores rows ingested after the daily run of `as_of` (reproducible backfills).
pub async fn features(
    lake: &Lake,
    settings: &Settings,
    as_of: NaiveDate,
    strict: bool,
    run: &mut RunContext,
    progress: &dyn crate::Progress,
) -> Result<FeaturesReport> {
    // views and rollups run on the configured engine; what they write is committed from here
    let lake = &lake.on_engine(settings);
    let jobs_before = crate::cluster::jobs_sent();
    progress.phase("usage rollups");
    // one session for the whole run: the tables it writes before the views are registered again
    let ctx = lake.session().await?;
    let (rollup, event_types) = prepare_in(lake, settings, &ctx, run).await?;
    let label = settings.label_spec();
    require_core(&ctx, &label)?;
    let registry = available_registry(settings, &ctx).await?;
    let freshness = quality::freshness(&ctx, &settings.file.freshness, as_of).await?;
    let knowledge = crate::lake::query::knowledge(&ctx, strict).await?;
    let (previous, reasons) = state::previous(lake, &ctx, &registry, as_of, strict).await?;
    // after the rollup refresh: a rollup file written later than this invalidates the states
    let computed_at = chrono::Utc::now();
    progress.phase(&format!("{} views", registry.views.len()));
    let computed = compute_all(&ctx, &registry, as_of, &label, &knowledge, &previous).await?;
    progress.phase("checks and writes");
    let mut report = FeaturesReport {
        as_of: as_of.to_string(),
        engine: lake.engine().to_string(),
        freshness,
        rollup,
        event_types,
        ..Default::default()
    };

    // quality: statistics and drift of every feature, checked before anything is written
    let previous = quality::previous(&ctx, as_of).await?;
    let names: Vec<String> = registry
        .views
        .iter()
        .flat_map(|v| v.features.iter().map(|(c, _)| c.clone()))
        .collect();
    let training = quality::training_values(&ctx, &names).await?;
    let columns: Vec<(&str, &[deltalake::arrow::array::RecordBatch], Vec<String>)> = computed
        .views
        .iter()
        .filter_map(|(name, batches)| {
            let view = registry.views.iter().find(|v| &v.name == name)?;
            let cols = view.features.iter().map(|(c, _)| c.clone()).collect();
            Some((name.as_str(), batches.as_slice(), cols))
        })
        .collect();
    let mut stats = quality::statistics(&columns, &previous, &training)?;
    let mut failures = Vec::new();
    for s in &mut stats {
        let fail = quality::judge(s, &settings.file.features.checks);
        if !s.problems.is_empty() {
            let line = format!("{}.{}: {}", s.view, s.feature, s.problems.join("; "));
            tracing::warn!(
                feature = line.as_str(),
                status = s.status.as_str(),
                "feature check"
            );
            if fail {
                failures.push(line);
            } else {
                report.warnings.push(line);
            }
        }
    }
    if !failures.is_empty() {
        if let Some((rows, version)) = quality::store(lake, as_of, &stats, &run.run_id).await? {
            run.wrote("ops.feature_stats", rows, version);
        }
        return Err(crate::Error::Quality(format!(
            "features of {as_of} not written: {} (see ops.feature_stats)",
            failures.join(" | ")
        )));
    }
    // Each view its own table, written side by side (a commit each) with the statistics and the
    // view states. A crash part way leaves some dates' partitions replaced and others not: each
    // is replaced whole by date, so the re-run converges (tests/faults.rs), and a state written
    // without its views is still the state of that date.
    let run_id = run.run_id.clone();
    let (states, run_id) = (computed.states, run_id.as_str());
    let views = futures::future::try_join_all(computed.views.into_iter().map(|(name, batches)| async move {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let batches = batches
            .iter()
            .map(|b| with_run_id(b, run_id))
            .collect::<Result<Vec<_>>>()?;
        let stats =
            write::replace_dated(lake, &name, batches, &format!("as_of_date = '{as_of}'"), run_id).await?;
        tracing::info!(
            view = name.as_str(),
            rows,
            version = stats.version,
            "materialised"
        );
        Ok::<_, Error>((name, rows, stats.version))
    }));
    let views = async {
        let done = futures::future::try_join(quality::store(lake, as_of, &stats, run_id), views).await?;
        // the views are written, the states perhaps not yet
        crate::fault_point("features:mid-write");
        Ok::<_, Error>(done)
    };
    // a strict run's states know less than the lake: the next daily run must not step from them
    let states = async {
        if strict {
            return Ok(Vec::new());
        }
        state::write(lake, &registry, as_of, states, &reasons, computed_at, run_id).await
    };
    let ((statistics, written), states) = futures::future::try_join(views, states).await?;
    if let Some((rows, version)) = statistics {
        run.wrote("ops.feature_stats", rows, version);
    }
    for (name, rows, version) in written {
        report.accounts = report.accounts.max(rows);
        run.wrote(&format!("features.{name}"), rows, version);
        report.views.push((name, rows, version));
    }
    for st in &states {
        run.wrote(&st.table, st.rows, st.version);
    }
    report.states = states;
    report.cluster_jobs = crate::cluster::jobs_sent() - jobs_before;
    Ok(report)
}

/// What `cslake features list | describe` shows about a view.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ViewInfo {
    pub name: String,
    pub description: String,
    pub entity: String,
    pub owner: String,
    pub sources: Vec<String>,
    pub origin: String,
    /// Whether every source table exists in this lake.
    pub available: bool,
    /// Whether a daily run costs in proportion to the view's window (it reads the daily
    /// rollups), or reads `usage_events` itself and so grows with history.
    pub incremental: bool,
    /// `step` (a state advanced from the day before), `window` (its windows of the rollups
    /// recomputed) or `history` (reads `usage_events`).
    pub maintenance: cslake_features::Maintenance,
    /// (column, label, type as materialised or `null` before the first run)
    pub features: Vec<(String, String, Option<String>)>,
    pub materialised_dates: u64,
    pub last_as_of: Option<String>,
    pub last_rows: Option<u64>,
}

/// The registry with each view's materialisation state.
pub async fn describe_views(lake: &Lake, settings: &Settings) -> Result<Vec<ViewInfo>> {
    let ctx = lake.session().await?;
    let registry = lake_registry(settings, &ctx).await?;
    let mut out = Vec::with_capacity(registry.views.len());
    for v in &registry.views {
        let table = format!("features.{}", v.name);
        let (mut dates, mut last, mut rows, mut types) = (0, None, None, std::collections::HashMap::new());
        if has_table(&ctx, &table) {
            let provider = ctx.table_provider(table.as_str()).await?;
            for f in provider.schema().fields() {
                types.insert(f.name().clone(), f.data_type().to_string());
            }
            let q = format!(
                "SELECT COUNT(DISTINCT as_of_date) AS dates, CAST(MAX(as_of_date) AS VARCHAR) AS last, \
                 SUM(CASE WHEN as_of_date = (SELECT MAX(as_of_date) FROM {table}) THEN 1 ELSE 0 END) AS rows \
                 FROM {table}"
            );
            if let Some(b) = crate::lake::query::sql(&ctx, &q).await?.first() {
                dates = crate::lake::query::floats(b, "dates")?
                    .first()
                    .copied()
                    .unwrap_or(0.0) as u64;
                last = crate::lake::query::strings(b, "last")?
                    .into_iter()
                    .next()
                    .flatten();
                rows = crate::lake::query::floats(b, "rows")?
                    .first()
                    .copied()
                    .filter(|r| r.is_finite())
                    .map(|r| r as u64);
            }
        }
        out.push(ViewInfo {
            name: v.name.clone(),
            description: v.description.clone(),
            entity: v.entity.clone(),
            owner: v.owner.clone(),
            sources: v.sources.clone(),
            origin: v.origin.clone(),
            available: v.sources.iter().all(|s| has_table(&ctx, s)),
            incremental: v.incremental(),
            maintenance: v.maintenance(),
            features: v
                .features
                .iter()
                .map(|(n, l)| (n.clone(), l.clone(), types.get(n).cloned()))
                .collect(),
            materialised_dates: dates,
            last_as_of: last,
            last_rows: rows,
        });
    }
    Ok(out)
}

/// The configured health profiles (or the built-in ones), checked against the known features.
pub fn health_profiles(settings: &Settings) -> Result<HealthProfiles> {
    let all_features = load_registry(settings)?.feature_names();
    Ok(match &settings.file.health.profiles {
        Some(p) => {
            let path = settings.config_path(p);
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            HealthProfiles::parse(&text, &path.display().to_string(), &all_features)?
        }
        None => HealthProfiles::parse(cslake_features::DEFAULT_PROFILES, "built-in", &all_features)?,
    })
}
