//! The runner of a day and of a range of days: `cslake run` (every step, `--only` one, or
//! `--from-step` the one that failed and those after it), `cslake backfill` and the demo. Each step
//! is its own audited run, so a scheduler sees one `ops.runs` row per step and a failed day resumes
//! where it stopped. The runner reports each step to an [`Observer`] (the CLI prints the step's
//! summary and draws progress); the binary, the benchmarks and the tests call the same code.

use chrono::NaiveDate;
use serde::Serialize;

use crate::act::ActReport;
use crate::analytics::AnalyticsReport;
use crate::analytics::publish::PublishReport;
use crate::features::FeaturesReport;
use crate::ingest::{IngestReport, TableLoad};
use crate::lake::ops::{Audit, audited};
use crate::lake::query::has_table;
use crate::score::ScoreReport;
use crate::train::TrainReport;
use crate::{Error, Lake, Progress, Result, Settings};

/// The steps of a day, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Ingest,
    Features,
    Train,
    Score,
    Act,
    Analytics,
    /// Only when `[publish.postgres]` is configured.
    Publish,
}

impl Step {
    pub const ALL: [Step; 7] = [
        Step::Ingest,
        Step::Features,
        Step::Train,
        Step::Score,
        Step::Act,
        Step::Analytics,
        Step::Publish,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Ingest => "ingest",
            Step::Features => "features",
            Step::Train => "train",
            Step::Score => "score",
            Step::Act => "act",
            Step::Analytics => "analytics",
            Step::Publish => "publish",
        }
    }

    /// The steps `--only` / `--from-step` select (all of them by default).
    pub fn selected(only: Option<Step>, from: Option<Step>) -> Vec<Step> {
        match (only, from) {
            (Some(s), _) => vec![s],
            (None, Some(f)) => Self::ALL.into_iter().filter(|s| *s >= f).collect(),
            (None, None) => Self::ALL.to_vec(),
        }
    }
}

/// What a finished step reports to the observer.
#[derive(Debug, Clone, Copy)]
pub enum StepReport<'a> {
    Ingest(&'a IngestReport),
    Features(&'a FeaturesReport),
    Train(&'a TrainReport),
    Score(&'a ScoreReport),
    Act(&'a ActReport),
    Analytics(&'a AnalyticsReport),
    Publish(&'a PublishReport),
}

/// Watches a day run: progress of long steps, and each step's report when it is done.
pub trait Observer: Progress {
    fn step_done(&self, _report: StepReport<'_>) {}
}

/// Watches nothing.
pub struct Quiet;
impl Progress for Quiet {}
impl Observer for Quiet {}

/// How a day runs.
#[derive(Debug, Clone)]
pub struct DayOptions {
    /// `[[sources]]` names or file-drop locations ingested first, in order.
    pub sources: Vec<String>,
    /// Which steps run; train also needs `retrain` or a lake without a model.
    pub steps: Vec<Step>,
    pub retrain: bool,
    /// Ignore rows ingested after the daily run of the date (reproduce what it saw).
    pub strict: bool,
}

/// One source's load within an ingest step.
#[derive(Debug, Clone, Serialize)]
pub struct SourceLoad {
    pub source: String,
    pub run_id: String,
    pub read: usize,
    pub rejected: usize,
    pub tables: Vec<TableLoad>,
}

/// Every source an ingest step loaded, with totals. With one source, its run and tables are
/// also given at the top level.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestSummary {
    pub read: usize,
    pub rejected: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<TableLoad>>,
    pub sources: Vec<SourceLoad>,
}

/// The features step in a day's summary.
#[derive(Debug, Clone, Serialize)]
pub struct FeaturesDay {
    pub accounts: usize,
    pub views: usize,
    pub warnings: Vec<String>,
}

impl From<&FeaturesReport> for FeaturesDay {
    fn from(r: &FeaturesReport) -> Self {
        Self {
            accounts: r.accounts,
            views: r.views.len(),
            warnings: r.warnings.clone(),
        }
    }
}

/// What a day did, step by step (steps that did not run are left out).
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaySummary {
    pub as_of: String,
    pub steps: Vec<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest: Option<IngestSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<FeaturesDay>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<TrainReport>,
    /// Why the train step trained nothing (a model exists and `--retrain` was not given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_skipped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<ScoreReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<ActReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analytics: Option<AnalyticsReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish: Option<PublishReport>,
}

/// `given` when set, else every configured source: the `[ingest]` file drop, then each
/// `[[sources]]` in order.
pub fn sources(settings: &Settings, given: Option<String>) -> Vec<String> {
    match given {
        Some(s) => vec![s],
        None => settings
            .file
            .ingest
            .source
            .iter()
            .cloned()
            .chain(settings.file.sources.iter().map(|s| s.name.clone()))
            .collect(),
    }
}

/// Ingests each source as its own audited run (each commits completely or not at all); stops at
/// the first that fails.
pub async fn ingest(
    lake: &Lake,
    settings: &Settings,
    sources: &[String],
    full: bool,
    as_of: Option<NaiveDate>,
    audit: &Audit,
    observer: &dyn Observer,
) -> Result<IngestSummary> {
    if sources.is_empty() {
        return Err(Error::Config(
            "no source: pass --source NAME_DIR_OR_URL, set CSLAKE_SOURCE, set [ingest] source or add [[sources]] in cslake.toml"
                .into(),
        ));
    }
    let mut summary = IngestSummary::default();
    for source in sources {
        let (report, run) = audited(lake, audit.run("ingest", as_of), async |run| {
            crate::ingest::ingest(lake, settings, source, full, run, observer).await
        })
        .await?;
        observer.step_done(StepReport::Ingest(&report));
        summary.read += report.read;
        summary.rejected += report.rejected;
        summary.sources.push(SourceLoad {
            source: report.source,
            run_id: run.run_id,
            read: report.read,
            rejected: report.rejected,
            tables: report.tables,
        });
    }
    if let [one] = summary.sources.as_slice() {
        summary.run_id = Some(one.run_id.clone());
        summary.tables = Some(one.tables.clone());
    }
    Ok(summary)
}

/// Runs one step of a day with a line on the terminal saying which, for which date, for how long.
pub async fn shown<T>(
    progress: &dyn Progress,
    step: &str,
    d: NaiveDate,
    job: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    progress.start(&format!("{step} {d}"), None);
    let out = job.await;
    progress.finish();
    out
}

/// The whole day (or the steps `opts` selects), each step audited as its own run.
pub async fn run(
    lake: &Lake,
    settings: &Settings,
    d: NaiveDate,
    opts: &DayOptions,
    audit: &Audit,
    observer: &dyn Observer,
) -> Result<DaySummary> {
    // publishing is a step only where there is somewhere to publish to
    let publishes = settings.file.publish.postgres.is_some();
    let mut summary = DaySummary {
        as_of: d.to_string(),
        steps: opts
            .steps
            .iter()
            .filter(|s| **s != Step::Publish || publishes)
            .map(|s| s.name())
            .collect(),
        ..Default::default()
    };
    let step = |s: Step| opts.steps.contains(&s);
    if step(Step::Ingest) && !opts.sources.is_empty() {
        summary.ingest = Some(ingest(lake, settings, &opts.sources, false, Some(d), audit, observer).await?);
    }
    if step(Step::Features) {
        let (report, _) = shown(
            observer,
            "features",
            d,
            audited(lake, audit.run("features", Some(d)), async |run| {
                crate::features::features(lake, settings, d, opts.strict, run, observer).await
            }),
        )
        .await?;
        observer.step_done(StepReport::Features(&report));
        summary.features = Some(FeaturesDay::from(&report));
    }
    if step(Step::Train) {
        let has_model = async || Ok::<_, Error>(has_table(&lake.session().await?, "models.registry"));
        if opts.retrain || !has_model().await? {
            let (report, _) = shown(
                observer,
                "train",
                d,
                audited(lake, audit.run("train", Some(d)), async |run| {
                    // another day may have trained a first model while this one waited for the lease
                    if !opts.retrain && has_model().await? {
                        return Ok(None);
                    }
                    crate::train::train(lake, settings, d, opts.strict, run, observer)
                        .await
                        .map(Some)
                }),
            )
            .await?;
            if let Some(report) = report {
                observer.step_done(StepReport::Train(&report));
                summary.train = Some(report);
            }
        }
        if summary.train.is_none() {
            let why = "a model exists (models.registry): nothing trained; --retrain trains a new one";
            tracing::info!("{why}");
            summary.train_skipped = Some(why.into());
        }
    }
    if step(Step::Score) {
        let (report, _) = shown(
            observer,
            "score",
            d,
            audited(lake, audit.run("score", Some(d)), async |run| {
                crate::score::score(lake, settings, d, run).await
            }),
        )
        .await?;
        observer.step_done(StepReport::Score(&report));
        summary.scores = Some(report);
    }
    if step(Step::Act) {
        let (report, _) = shown(
            observer,
            "act",
            d,
            audited(lake, audit.run("act", Some(d)), async |run| {
                crate::act::act(lake, settings, d, false, run).await
            }),
        )
        .await?;
        observer.step_done(StepReport::Act(&report));
        summary.actions = Some(report);
    }
    if step(Step::Analytics) {
        let (report, _) = shown(
            observer,
            "analytics",
            d,
            audited(lake, audit.run("analytics", Some(d)), async |run| {
                crate::analytics::analytics(lake, settings, d, run).await
            }),
        )
        .await?;
        observer.step_done(StepReport::Analytics(&report));
        summary.analytics = Some(report);
    }
    if step(Step::Publish) && publishes {
        let (report, _) = shown(
            observer,
            "publish",
            d,
            audited(lake, audit.run("publish", Some(d)), async |run| {
                crate::analytics::publish::publish(lake, settings, d, run).await
            }),
        )
        .await?;
        observer.step_done(StepReport::Publish(&report));
        summary.publish = Some(report);
    }
    Ok(summary)
}

/// One date of a backfill.
#[derive(Debug, Clone, Serialize)]
pub struct BackfillDay {
    pub as_of: String,
    pub features: Option<FeaturesDay>,
    /// Accounts scored (none with `features_only`).
    pub scores: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BackfillSummary {
    pub from: String,
    pub to: String,
    pub dates: usize,
    pub days: Vec<BackfillDay>,
}

/// The dates of `from..=to`, every `every` days.
pub fn backfill_dates(from: NaiveDate, to: NaiveDate, every: u32) -> Result<Vec<NaiveDate>> {
    if to < from || every == 0 {
        return Err(Error::Usage(format!(
            "backfill: --to ({to}) must not be before --from ({from}), and --every at least 1"
        )));
    }
    Ok(from
        .iter_days()
        .step_by(every as usize)
        .take_while(|d| *d <= to)
        .collect())
}

/// Features (and scores, with the current model) for every date of a range. Each date replaces
/// its partitions, so a stopped backfill resumes from the date it names.
#[allow(clippy::too_many_arguments)]
pub async fn backfill(
    lake: &Lake,
    settings: &Settings,
    from: NaiveDate,
    to: NaiveDate,
    every: u32,
    features_only: bool,
    strict: bool,
    audit: &Audit,
    observer: &dyn Observer,
) -> Result<BackfillSummary> {
    let dates = backfill_dates(from, to, every)?;
    let steps = if features_only {
        vec![Step::Features]
    } else {
        vec![Step::Features, Step::Score]
    };
    let opts = DayOptions {
        sources: vec![],
        steps,
        retrain: false,
        strict,
    };
    let mut days = Vec::new();
    observer.start("backfill", Some(dates.len() as u64));
    for d in &dates {
        let day = run(lake, settings, *d, &opts, audit, observer).await;
        if day.is_ok() {
            observer.advance(1);
        } else {
            observer.finish();
        }
        let day = day.map_err(|e| {
            e.context(format!(
                "backfill stopped at {d} (dates before it are done; re-run with --from {d})"
            ))
        })?;
        tracing::info!(as_of = %d, "backfilled");
        days.push(BackfillDay {
            as_of: d.to_string(),
            features: day.features,
            scores: day.scores.map(|s| s.accounts),
        });
    }
    observer.finish();
    Ok(BackfillSummary {
        from: from.to_string(),
        to: to.to_string(),
        dates: dates.len(),
        days,
    })
}
