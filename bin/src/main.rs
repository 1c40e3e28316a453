//! `cslake`: the command line of the customer-success lakehouse.
#![allow(clippy::print_stdout, clippy::print_stderr)] // the binary owns stdout and stderr

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use chrono::NaiveDate;
use clap::{Args, Parser, Subcommand};
use cslake_pipeline::demo::{GenOptions, generate};
use cslake_pipeline::{Error, Lake, Progress, RunContext, Settings};
use cslake_pipeline::{act, admin, analytics, features, ingest, lake, score, train};
use cslake_sinks::FileFormat;
use serde_json::json;

/// `println!` for stdout that ends the process quietly when the reader has gone away
/// (`cslake query ... | head`), instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::emit(format_args!($($arg)*))
    };
}

fn emit(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    if let Err(e) = writeln!(std::io::stdout().lock(), "{args}")
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

mod output;
mod progress;

#[derive(Parser, Debug)]
#[command(
    name = "cslake",
    version,
    about = "A customer-success lakehouse: land CRM, billing, usage and support data in Delta tables, build features, score churn risk, health and expansion."
)]
struct Cli {
    /// Lake location: a folder, file:// or memory:// URL
    #[arg(long, global = true, env = "CSLAKE_LAKE")]
    lake: Option<String>,
    /// Configuration file (default: ./cslake.toml when it exists)
    #[arg(long, global = true, env = "CSLAKE_CONFIG")]
    config: Option<PathBuf>,
    /// Who runs the command, for the audit log (default: the OS user)
    #[arg(long, global = true, env = "CSLAKE_ACTOR")]
    actor: Option<String>,
    /// Memory queries may use before spilling to disk, e.g. 4G (default: unbounded)
    #[arg(long, global = true, env = "CSLAKE_MEMORY_LIMIT")]
    memory_limit: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct AsOf {
    /// The logical date of the run (YYYY-MM-DD), e.g. Airflow's {{ ds }}
    #[arg(long, env = "CSLAKE_AS_OF", value_parser = parse_date)]
    as_of: NaiveDate,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum LabelArg {
    Churn,
    Expansion,
}

/// The steps of a day, in order.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Ingest,
    Features,
    Train,
    Score,
    Act,
    Analytics,
    /// Only when [publish.postgres] is configured
    Publish,
}

impl Step {
    const ALL: [Step; 7] = [
        Step::Ingest,
        Step::Features,
        Step::Train,
        Step::Score,
        Step::Act,
        Step::Analytics,
        Step::Publish,
    ];

    /// The steps `--only` / `--from-step` select (all of them by default).
    fn selected(only: Option<Step>, from: Option<Step>) -> Vec<Step> {
        match (only, from) {
            (Some(s), _) => vec![s],
            (None, Some(f)) => Self::ALL.into_iter().filter(|s| *s >= f).collect(),
            (None, None) => Self::ALL.to_vec(),
        }
    }
}

#[derive(Args, Debug, Clone)]
struct GenArgs {
    /// Number of accounts
    #[arg(long, default_value_t = 2000)]
    accounts: usize,
    /// Days of usage history
    #[arg(long, default_value_t = 365)]
    days: i64,
    /// Last day of the data
    #[arg(long, default_value = "2026-10-31", value_parser = parse_date)]
    end: NaiveDate,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// csv, ndjson or parquet
    #[arg(long, default_value = "csv")]
    format: FileFormat,
    /// Usage events per file part
    #[arg(long, default_value_t = 1_000_000)]
    events_per_file: usize,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate demo data, then ingest, build features, train and score it on the local lake
    Demo {
        #[command(flatten)]
        gen_args: GenArgs,
        /// Where the generated files go
        #[arg(long, default_value = "./demo-data")]
        data: PathBuf,
    },
    /// Generate a realistic B2B SaaS data set as files
    Generate {
        #[command(flatten)]
        gen_args: GenArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Load a folder or URL of exported files into the core tables
    Ingest {
        /// A [[sources]] name from cslake.toml, or a file-drop folder or URL (default: every
        /// configured source: the [ingest] file drop, then each [[sources]] in order)
        #[arg(long, env = "CSLAKE_SOURCE")]
        source: Option<String>,
        /// Read every file again, not only new or changed ones (safe: loading is idempotent)
        #[arg(long)]
        full: bool,
    },
    /// Materialise every feature view as of a date
    Features {
        #[command(subcommand)]
        action: Option<FeaturesAction>,
        /// The logical date of the run (YYYY-MM-DD)
        #[arg(long, env = "CSLAKE_AS_OF", value_parser = parse_date)]
        as_of: Option<NaiveDate>,
        /// Also ignore rows ingested after the daily run of that date (reproduce what it saw)
        #[arg(long)]
        strict: bool,
    },
    /// The model registry: versions, metrics, promotion and rollback
    Models {
        #[command(subcommand)]
        action: ModelsAction,
    },
    /// Copy the lake incrementally to a second store (folder or s3://), with checksums
    Backup {
        /// Where the backup lives (created on first use)
        #[arg(long)]
        to: String,
        /// Re-read the backup and check every object against its manifest instead
        #[arg(long)]
        verify: bool,
    },
    /// Bring tables back: from a backup into a lake without them, or one table to an earlier version
    Restore {
        /// A backup made by `cslake backup --to`
        #[arg(long, conflicts_with = "version", required_unless_present = "version")]
        from: Option<String>,
        /// Only this table (zone.table); required with --version
        #[arg(long)]
        table: Option<String>,
        /// Roll the live table back to this version (Delta RESTORE; history is kept)
        #[arg(long, requires = "table")]
        version: Option<u64>,
    },
    /// The versions of a table, the run that wrote each, and the input versions it was built from
    Lineage {
        /// zone.table, e.g. scores.risk_scores
        table: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
    },
    /// Housekeeping: delete rows past their [retention], compact small files, checkpoint, vacuum
    Maintain {
        /// Retention is counted back from this date (default: today)
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
        /// Only report what would be deleted and vacuumed
        #[arg(long)]
        dry_run: bool,
    },
    /// Data-subject requests: erase a contact or an account everywhere, or export their data
    Gdpr {
        #[command(subcommand)]
        action: GdprAction,
    },
    /// The audit log of every command (ops.runs)
    Runs {
        #[command(subcommand)]
        action: RunsAction,
    },
    /// Build the training set and train the churn model, evaluated out of time
    Train {
        #[command(flatten)]
        as_of: AsOf,
        /// Also ignore rows ingested after the daily run of that date (reproduce what it saw)
        #[arg(long)]
        strict: bool,
    },
    /// The trainer against a plain logistic-regression reference on the same training set and
    /// test window (nothing is registered); optionally exports that training set
    Evaluate {
        #[command(flatten)]
        as_of: AsOf,
        /// Also write the training set to a .csv, .ndjson or .parquet file
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Score churn risk, health and opportunities as of a date
    Score {
        #[command(flatten)]
        as_of: AsOf,
    },
    /// Turn the day's scores into actions: playbooks enrol accounts and advance their steps
    /// (tasks, alerts, campaigns), alerts and e-mails are delivered, scores written to the CRM
    Act {
        #[command(flatten)]
        as_of: AsOf,
        /// Show what would fire, for whom and why; write and send nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// The tables BI tools read: financial impact (revenue at risk, pipeline, GRR/NRR, logo
    /// churn, intervention ROI) and team performance, by date
    Analytics {
        #[command(flatten)]
        as_of: AsOf,
    },
    /// Upserts the day's output tables into PostgreSQL ([publish.postgres]) for BI tools
    Publish {
        #[command(flatten)]
        as_of: AsOf,
    },
    /// The executive report: KPI cards, revenue at risk and pipeline, risk heat map, trends,
    /// benchmarks, the accounts to act on and the team, as PDF and/or HTML
    Report {
        #[command(flatten)]
        as_of: AsOf,
        /// pdf, html or both
        #[arg(long, value_delimiter = ',', default_value = "pdf,html")]
        format: Vec<String>,
        /// The folder the files go to
        #[arg(long, default_value = "./reports")]
        out: PathBuf,
        /// Also send it to the channels of [report] deliver
        #[arg(long)]
        deliver: bool,
    },
    /// One account as the CS team sees it: risk and its factors, health over time,
    /// interactions, playbooks, open tasks and alerts, opportunities, expected revenue
    Account {
        account_id: String,
        /// The day to look from (default: the latest scores)
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
    },
    /// Health profiles
    Health {
        #[command(subcommand)]
        action: HealthAction,
    },
    /// The playbook and campaign library
    Playbooks {
        #[command(subcommand)]
        action: PlaybooksAction,
    },
    /// Tasks the playbooks created (actions.tasks)
    Tasks {
        #[command(subcommand)]
        action: TasksAction,
    },
    /// Alerts the playbooks raised (actions.alerts)
    Alerts {
        #[command(subcommand)]
        action: AlertsAction,
    },
    /// A/B campaigns and their control groups
    Campaigns {
        #[command(subcommand)]
        action: CampaignsAction,
    },
    /// The whole day: ingest (when a source is set), features, train (when no model exists or --retrain), score, act, analytics
    Run {
        #[command(flatten)]
        as_of: AsOf,
        /// A [[sources]] name or a file-drop folder or URL (default: every configured source)
        #[arg(long, env = "CSLAKE_SOURCE")]
        source: Option<String>,
        /// Train a new model even when one exists
        #[arg(long)]
        retrain: bool,
        /// Also ignore rows ingested after the daily run of that date (reproduce what it saw)
        #[arg(long)]
        strict: bool,
        /// Run only this step (a scheduler task per step); `train` always trains
        #[arg(long, value_enum, conflicts_with = "from_step")]
        only: Option<Step>,
        /// Run this step and the ones after it (resume a day that failed part-way)
        #[arg(long, value_enum)]
        from_step: Option<Step>,
    },
    /// Materialise features (and scores) for every date of a range: re-runs are idempotent
    Backfill {
        /// First date (YYYY-MM-DD)
        #[arg(long, value_parser = parse_date)]
        from: NaiveDate,
        /// Last date, included
        #[arg(long, value_parser = parse_date)]
        to: NaiveDate,
        /// Days between materialised dates
        #[arg(long, default_value_t = 1)]
        every: u32,
        /// Features only: do not score (scores use the current model, trained later than the
        /// earlier dates of the range)
        #[arg(long)]
        features_only: bool,
        /// Ignore rows ingested after each date's daily run: reproduce what those runs saw
        #[arg(long)]
        strict: bool,
    },
    /// Run SQL over the lake; tables are named `zone.table` or by their bare name
    Query {
        sql: String,
        /// table, csv or json
        #[arg(long, default_value = "table")]
        format: output::Format,
        /// Show [pii] encrypted values in clear (needs the key; recorded in ops.runs)
        #[arg(long)]
        reveal: bool,
    },
    /// Personal data at rest ([pii]): re-encrypt with the current key
    Pii {
        #[command(subcommand)]
        action: PiiAction,
    },
}

#[derive(Subcommand, Debug)]
enum HealthAction {
    /// Propose measure weights from each measure's relation to churn in the training set of a
    /// date, as a diff of the profile's weight lines (nothing is changed)
    SuggestWeights {
        #[command(flatten)]
        as_of: AsOf,
    },
}

#[derive(Subcommand, Debug)]
enum PlaybooksAction {
    /// Every playbook and campaign: version, trigger, steps, file
    List,
    /// Parse the library and run every trigger, exit and only_if predicate against the day's
    /// table (the latest scored date, or --as-of)
    Validate {
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
    },
    /// What would fire on a day, for whom and why (nothing is written or sent)
    DryRun {
        #[command(flatten)]
        as_of: AsOf,
    },
    /// Enrolments, completion and outcomes per playbook and version (actions.playbook_stats)
    Stats {
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
    },
}

#[derive(Subcommand, Debug)]
enum TasksAction {
    /// Open and overdue tasks (or --all), by due date
    List {
        #[arg(long)]
        all: bool,
        /// Only this CSM's tasks (csm_id)
        #[arg(long)]
        assignee: Option<String>,
    },
    /// Mark a task done
    Complete {
        task_id: String,
        /// Who completed it (default: the actor)
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum AlertsAction {
    /// Open alerts (or --all), most urgent first
    List {
        #[arg(long)]
        all: bool,
    },
    /// Acknowledge an alert: it is not re-notified any more
    Ack {
        alert_id: String,
        /// Who acknowledged it (default: the actor)
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum CampaignsAction {
    /// Retention, expansion and engagement per arm against the control group, with 95% intervals
    Report {
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
    },
}

#[derive(Subcommand, Debug)]
enum PiiAction {
    /// Re-encrypt every value made with an old key (old_key_envs) under the current one
    Rotate,
}

#[derive(Subcommand, Debug)]
enum FeaturesAction {
    /// Every feature view: features, sources, last materialised date
    List,
    /// One view: its columns with labels and types, sources, materialisation
    Describe { name: String },
    /// The training set a model trained on a date would use (observation dates, features as of
    /// each, the churn label after it), written to training.churn and optionally to a file
    TrainingSet {
        #[arg(long, value_parser = parse_date)]
        as_of: NaiveDate,
        /// Also ignore rows ingested after each observation date's daily run
        #[arg(long)]
        strict: bool,
        /// Also write it to a .csv, .ndjson or .parquet file
        #[arg(long)]
        out: Option<PathBuf>,
        /// The label: churn (default; `[churn]`) or expansion (MRR up by
        /// `[opportunities] expansion_min_increase_pct`); written to training.<label>
        #[arg(long, value_enum, default_value = "churn")]
        label: LabelArg,
    },
    /// Data quality of one day's features: null rate, range, distinct values, drift (PSI)
    /// against the previous day and the training set, and the checks' verdicts
    Stats {
        /// The day (default: the latest with statistics)
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
    },
}

#[derive(Subcommand, Debug)]
enum ModelsAction {
    /// Every version with its status and out-of-time metrics, newest first
    List,
    /// One version's model.json: features, scaling, calibration, windows, metrics
    Show { version: String },
    /// Make a version the current model
    Promote { version: String },
    /// Put the previous model back
    Rollback,
}

#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
struct SubjectArgs {
    /// A contact, by e-mail address
    #[arg(long)]
    contact: Option<String>,
    /// An account, by id: the account, its contacts and every row about it
    #[arg(long)]
    account: Option<String>,
}

impl SubjectArgs {
    fn subject(&self) -> admin::gdpr::Subject {
        match (&self.contact, &self.account) {
            (Some(c), _) => admin::gdpr::Subject::Contact(c.clone()),
            (None, Some(a)) => admin::gdpr::Subject::Account(a.clone()),
            (None, None) => unreachable!("clap requires one"),
        }
    }
}

#[derive(Subcommand, Debug)]
enum GdprAction {
    /// Remove the subject from every table and from the tables' history (files and log entries);
    /// ops.erasures keeps a hash so later ingests do not land it again
    Erase {
        #[command(flatten)]
        subject: SubjectArgs,
        /// Only report what would be removed
        #[arg(long)]
        dry_run: bool,
    },
    /// Write everything the lake holds on the subject as JSON
    Export {
        #[command(flatten)]
        subject: SubjectArgs,
        /// The JSON file to write
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum RunsAction {
    /// The latest runs, newest first
    List {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Everything recorded about one run
    Show { run_id: String },
}

fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("'{s}' is not a date in the form YYYY-MM-DD"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let _ = e.print();
            let first = e.to_string().lines().next().unwrap_or_default().to_string();
            out!("{}", json!({"status": "failed", "exit_code": 2, "error": first}));
            return ExitCode::from(2);
        }
    };
    progress::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = e.downcast_ref::<Error>().map_or(1, Error::exit_code);
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            out!(
                "{}",
                json!({"status": "failed", "exit_code": code, "error": e.to_string()})
            );
            ExitCode::from(u8::try_from(code).unwrap_or(1))
        }
    }
}

fn gen_options(g: &GenArgs, out: PathBuf) -> GenOptions {
    GenOptions {
        accounts: g.accounts,
        days: g.days,
        end: g.end,
        seed: g.seed,
        format: g.format,
        out,
        events_per_file: g.events_per_file,
    }
}

/// Runs a job with its audit row: the row is written whether the job succeeds or fails.
async fn audited<T, F>(lake: &Lake, run: RunContext, job: F) -> anyhow::Result<(T, RunContext)>
where
    F: AsyncFnOnce(&mut RunContext) -> cslake_pipeline::Result<T>,
{
    run.begin(lake).await.context("writing ops.runs")?;
    finish(lake, run, job).await
}

/// Runs the job and records its outcome, without a `running` row first (for `restore`, whose
/// job brings back the audit table itself).
async fn finish<T, F>(lake: &Lake, mut run: RunContext, job: F) -> anyhow::Result<(T, RunContext)>
where
    F: AsyncFnOnce(&mut RunContext) -> cslake_pipeline::Result<T>,
{
    match job(&mut run).await {
        Ok(v) => {
            run.record(lake, "succeeded", None)
                .await
                .context("writing ops.runs")?;
            Ok((v, run))
        }
        Err(e) => {
            if let Err(audit) = run.record(lake, "failed", Some(&e.to_string())).await {
                tracing::error!(error = %audit, "could not write the ops.runs row");
            }
            Err(e.into())
        }
    }
}

#[allow(clippy::too_many_lines)]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(
        cli.config.as_deref(),
        cli.lake.clone(),
        cli.actor.clone(),
        cli.memory_limit.clone(),
    )?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let progress = progress::Bars::new();
    let new_run = |command: &str, as_of: Option<NaiveDate>| {
        RunContext::new(command, &settings.actor, args.clone(), as_of)
    };
    let open_lake = || Lake::from_settings(&settings);
    match cli.command {
        Command::Generate { gen_args, out } => {
            let stats = generate(&gen_options(&gen_args, out.clone()), &progress)?;
            output::generated(&stats, &out);
            out!(
                "{}",
                json!({"status": "succeeded", "command": "generate", "out": out, "tables": stats.tables, "files": stats.files})
            );
        }
        Command::Ingest { source, full } => {
            let lake = open_lake()?;
            let sources = sources_to_ingest(&settings, source);
            if sources.is_empty() {
                return Err(Error::Config("no source: pass --source NAME_DIR_OR_URL, set CSLAKE_SOURCE, set [ingest] source or add [[sources]] in cslake.toml".into()).into());
            }
            let mut summary = json!({"status": "succeeded", "command": "ingest"});
            ingest_all(
                &lake,
                &settings,
                &sources,
                full,
                None,
                &new_run,
                &progress,
                &mut summary,
            )
            .await?;
            out!("{summary}");
        }
        Command::Features {
            action: Some(action), ..
        } => {
            let lake = open_lake()?;
            let views = features::describe_views(&lake, &settings).await?;
            match action {
                FeaturesAction::List => {
                    output::views(&views);
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "features list", "views": views.len()})
                    );
                }
                FeaturesAction::Describe { name } => {
                    let view = views.iter().find(|v| v.name == name).ok_or_else(|| {
                        Error::Config(format!(
                            "no feature view '{name}' (views: {})",
                            views
                                .iter()
                                .map(|v| v.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })?;
                    output::view(view);
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "features describe", "view": view})
                    );
                }
                FeaturesAction::TrainingSet {
                    as_of,
                    strict,
                    out,
                    label,
                } => {
                    let target = match label {
                        LabelArg::Churn => cslake_features::Target::Churn,
                        LabelArg::Expansion => cslake_features::Target::Expansion,
                    };
                    let (report, run) = audited(
                        &lake,
                        new_run("features training-set", Some(as_of)),
                        async |run| {
                            train::write_training_set(
                                &lake,
                                &settings,
                                target,
                                as_of,
                                strict,
                                out.as_deref(),
                                run,
                            )
                            .await
                        },
                    )
                    .await?;
                    out!(
                        "Training set as of {}: {} rows ({} churned) at {} observation dates {}..{}, {} features; label: {}",
                        report.as_of,
                        report.rows,
                        report.positives,
                        report.observation_dates,
                        report.first,
                        report.last,
                        report.features,
                        report.label
                    );
                    if let Some(f) = &report.out {
                        out!("  written to {f} and {}", report.table);
                    }
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "features training-set", "run_id": run.run_id, "training_set": report})
                    );
                }
                FeaturesAction::Stats { as_of } => {
                    let ctx = lake.session().await?;
                    if !ctx.table_exist("ops.feature_stats").unwrap_or(false) {
                        return Err(Error::Job(
                            "no feature statistics yet: run `cslake features --as-of DATE`".into(),
                        )
                        .into());
                    }
                    let day = match as_of {
                        Some(d) => format!("DATE '{d}'"),
                        None => "(SELECT MAX(as_of_date) FROM ops.feature_stats)".into(),
                    };
                    let batches = lake::query::sql(
                        &ctx,
                        &format!(
                            "SELECT view, feature, rows, round(null_rate, 3) AS null_rate, round(min, 3) AS min, \
                             round(max, 3) AS max, round(mean, 3) AS mean, distinct_values, \
                             round(psi_previous, 3) AS psi_previous, round(psi_training, 3) AS psi_training, status, problems \
                             FROM ops.feature_stats WHERE as_of_date = {day} ORDER BY view, feature"
                        ),
                    )
                    .await?;
                    let rows = output::print_batches(&batches, output::Format::Table)?;
                    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
                    for b in &batches {
                        for s in lake::query::strings(b, "status")?.into_iter().flatten() {
                            *statuses.entry(s).or_default() += 1;
                        }
                    }
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "features stats", "features": rows, "checks": statuses})
                    );
                }
            }
        }
        Command::Features {
            action: None,
            as_of,
            strict,
        } => {
            let d = as_of.ok_or_else(|| {
                Error::Config(
                    "cslake features needs --as-of YYYY-MM-DD (or a subcommand: list, describe NAME)".into(),
                )
            })?;
            let lake = open_lake()?;
            let (report, run) = audited(&lake, new_run("features", Some(d)), async |run| {
                features::features(&lake, &settings, d, strict, run).await
            })
            .await?;
            out!(
                "{}",
                json!({"status": "succeeded", "command": "features", "run_id": run.run_id, "as_of": report.as_of, "accounts": report.accounts, "views": report.views, "warnings": report.warnings, "freshness": report.freshness, "rollup": report.rollup})
            );
        }
        Command::Models { action } => {
            let lake = open_lake()?;
            match action {
                ModelsAction::List => {
                    let ctx = lake.session().await?;
                    if !ctx.table_exist("models.registry").unwrap_or(false) {
                        return Err(Error::NoModel.into());
                    }
                    let q = "SELECT version, status, as_of_date, training_rows, test_rows, \
                             ROUND(roc_auc, 3) AS roc_auc, ROUND(pr_auc, 3) AS pr_auc, ROUND(brier, 4) AS brier, \
                             ROUND(top_decile_lift, 2) AS lift, reason FROM models.registry ORDER BY created_at DESC";
                    let batches = lake::query::sql(&ctx, q).await?;
                    let rows = output::print_batches(&batches, output::Format::Table)?;
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "models list", "rows": rows})
                    );
                }
                ModelsAction::Show { version } => {
                    let ctx = lake.session().await?;
                    let entries = train::registry::load(&ctx).await?;
                    let entry = &entries[train::registry::position(&entries, &version)?];
                    let artifact = train::registry::load_artifact(&lake, entry).await?;
                    out!("{}", serde_json::to_string_pretty(&artifact.meta)?);
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "models show", "version": version, "model_status": entry.status})
                    );
                }
                ModelsAction::Promote { version } => {
                    let (entry, run) = audited(&lake, new_run("models promote", None), async |run| {
                        train::registry::promote(&lake, &version, run).await
                    })
                    .await?;
                    out!("{} is the current model ({})", entry.version, entry.reason);
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "models promote", "run_id": run.run_id, "current": entry.version})
                    );
                }
                ModelsAction::Rollback => {
                    let (entry, run) = audited(&lake, new_run("models rollback", None), async |run| {
                        train::registry::rollback(&lake, run).await
                    })
                    .await?;
                    out!("{} is the current model again", entry.version);
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "models rollback", "run_id": run.run_id, "current": entry.version})
                    );
                }
            }
        }
        Command::Evaluate { as_of, out } => {
            let lake = open_lake()?;
            let d = as_of.as_of;
            let (r, run) = audited(&lake, new_run("evaluate", Some(d)), async |run| {
                train::evaluate(&lake, &settings, d, out.as_deref(), run).await
            })
            .await?;
            out!(
                "Evaluated on {} rows ({} churned); test window {} .. {}",
                r.rows,
                r.positives,
                r.test_window[0],
                r.test_window[1]
            );
            out!(
                "  {:<28} {:>8} {:>8} {:>8} {:>6}",
                "",
                "ROC AUC",
                "PR AUC",
                "Brier",
                "lift"
            );
            for (name, m) in [
                ("cslake trainer", &r.model),
                ("plain logistic regression", &r.reference),
            ] {
                out!(
                    "  {:<28} {:>8.3} {:>8.3} {:>8.4} {:>6.2}",
                    name,
                    m.roc_auc,
                    m.pr_auc,
                    m.brier,
                    m.top_decile_lift
                );
            }
            out!("  model: {}", r.family_choice);
            out!("  calibration: {}", r.calibration);
            out!("  verdict: the trainer {}", r.verdict);
            if let Some(f) = &r.out {
                out!("  training set written to {f}");
            }
            out!(
                "{}",
                json!({"status": "succeeded", "command": "evaluate", "run_id": run.run_id, "evaluation": r})
            );
        }
        Command::Backup { to, verify } => {
            let lake = open_lake()?;
            if verify {
                let report = admin::backup::verify(&to, &settings.file.storage).await?;
                out!(
                    "Checked {} objects of the backup at {}: {} damaged or missing",
                    report.checked,
                    to,
                    report.bad.len()
                );
                for b in &report.bad {
                    out!("  damaged or missing: {b}");
                }
                let status = if report.bad.is_empty() {
                    "succeeded"
                } else {
                    "failed"
                };
                out!(
                    "{}",
                    json!({"status": status, "command": "backup verify", "verify": report})
                );
                if !report.bad.is_empty() {
                    return Err(Error::Job(format!(
                        "{} object(s) of the backup at {to} do not match the manifest",
                        report.bad.len()
                    ))
                    .into());
                }
            } else {
                let (report, run) = audited(&lake, new_run("backup", None), async |run| {
                    admin::backup::backup(&lake, &to, &settings.file.storage, run).await
                })
                .await?;
                out!(
                    "Backed up to {}: {} objects copied ({} bytes), {} already there",
                    report.to,
                    report.copied,
                    report.bytes,
                    report.unchanged
                );
                out!(
                    "{}",
                    json!({"status": "succeeded", "command": "backup", "run_id": run.run_id, "backup": report})
                );
            }
        }
        Command::Restore { from, table, version } => {
            let lake = open_lake()?;
            match (from, table, version) {
                (_, Some(table), Some(version)) => {
                    let (v, run) = audited(&lake, new_run("restore", None), async |run| {
                        admin::backup::restore_version(&lake, &table, version, run).await
                    })
                    .await?;
                    out!(
                        "Restored {table} to its version {version} (as its new version {})",
                        v.unwrap_or_default()
                    );
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "restore", "run_id": run.run_id, "table": table, "restored_version": version, "new_version": v})
                    );
                }
                (Some(from), table, None) => {
                    let (report, run) = finish(&lake, new_run("restore", None), async |run| {
                        admin::backup::restore_from(
                            &lake,
                            &from,
                            table.as_deref(),
                            &settings.file.storage,
                            run,
                        )
                        .await
                    })
                    .await?;
                    out!(
                        "Restored {} table(s) from {} ({} objects, checksums verified)",
                        report.tables.len(),
                        report.from,
                        report.objects
                    );
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "restore", "run_id": run.run_id, "restore": report})
                    );
                }
                _ => {
                    return Err(Error::Config(
                        "restore: pass --from BACKUP, or --table T --version V".into(),
                    )
                    .into());
                }
            }
        }
        Command::Lineage { table, limit } => {
            let lake = open_lake()?;
            let versions = lake::lineage::lineage(&lake, &table, limit).await?;
            for v in &versions {
                let inputs = v
                    .inputs
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(t, n)| format!("{t}@{n}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                out!(
                    "{table}@{} {} {} run {}\n    inputs: {}",
                    v.version.map(|v| v.to_string()).unwrap_or_default(),
                    v.timestamp.as_deref().unwrap_or("-"),
                    v.operation.as_deref().unwrap_or("-"),
                    v.run_id.as_deref().unwrap_or("-"),
                    if inputs.is_empty() { "-".into() } else { inputs }
                );
            }
            out!(
                "{}",
                json!({"status": "succeeded", "command": "lineage", "table": table, "versions": versions})
            );
        }
        Command::Maintain { as_of, dry_run } => {
            let lake = open_lake()?;
            let d = as_of.unwrap_or_else(|| chrono::Utc::now().date_naive());
            let (report, run) = audited(&lake, new_run("maintain", Some(d)), async |run| {
                admin::maintain::maintain(&lake, &settings, d, dry_run, run).await
            })
            .await?;
            output::maintained(&report);
            out!(
                "{}",
                json!({"status": "succeeded", "command": "maintain", "run_id": run.run_id, "maintenance": report})
            );
        }
        Command::Gdpr { action } => {
            let lake = open_lake()?;
            let (command, subject) = match &action {
                GdprAction::Erase { subject, .. } => ("gdpr erase", subject.subject()),
                GdprAction::Export { subject, .. } => ("gdpr export", subject.subject()),
            };
            // the audit row names the subject only by its hash
            let raw = match &subject {
                admin::gdpr::Subject::Contact(c) | admin::gdpr::Subject::Account(c) => c.clone(),
            };
            let scrubbed: Vec<String> = args.iter().map(|a| a.replace(&raw, &subject.hashed())).collect();
            let run = RunContext::new(command, &settings.actor, scrubbed, None);
            let pii = cslake_pipeline::lake::pii::Protector::from_settings(&settings)?;
            match action {
                GdprAction::Erase { dry_run, .. } => {
                    let (report, run) = audited(&lake, run, async |run| {
                        admin::gdpr::erase(&lake, &subject, pii.as_ref(), dry_run, run).await
                    })
                    .await?;
                    output::erased(&report);
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "gdpr erase", "run_id": run.run_id, "erasure": report})
                    );
                }
                GdprAction::Export { out, .. } => {
                    let (data, run) = audited(&lake, run, async |_| {
                        admin::gdpr::export(&lake, &subject, pii.as_ref()).await
                    })
                    .await?;
                    let text = serde_json::to_string_pretty(&data)?;
                    std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
                    let tables: serde_json::Map<String, serde_json::Value> = data["tables"]
                        .as_object()
                        .map(|t| {
                            t.iter()
                                .map(|(k, v)| (k.clone(), json!(v.as_array().map_or(0, Vec::len))))
                                .collect()
                        })
                        .unwrap_or_default();
                    out!(
                        "Wrote {} ({} tables with data on the subject)",
                        out.display(),
                        tables.len()
                    );
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "gdpr export", "run_id": run.run_id, "out": out, "rows": tables})
                    );
                }
            }
        }
        Command::Runs { action } => {
            let lake = open_lake()?;
            let ctx = lake.session().await?;
            if !ctx.table_exist("ops.runs").unwrap_or(false) {
                return Err(Error::Job("no runs recorded yet in this lake".into()).into());
            }
            let (sql, command) = match &action {
                RunsAction::List { limit } => (
                    format!(
                        "SELECT run_id, command, actor, as_of_date, started_at, \
                         CAST(date_part('epoch', ended_at) - date_part('epoch', started_at) AS DECIMAL(10, 1)) AS seconds, \
                         status, rows_read, rows_written, rows_rejected FROM ops.runs ORDER BY started_at DESC LIMIT {limit}"
                    ),
                    "runs list",
                ),
                RunsAction::Show { run_id } => (
                    format!(
                        "SELECT * FROM ops.runs WHERE run_id = '{}'",
                        run_id.replace('\'', "''")
                    ),
                    "runs show",
                ),
            };
            let batches = lake::query::sql(&ctx, &sql).await?;
            let rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
            if let RunsAction::Show { run_id } = &action
                && rows == 0
            {
                return Err(Error::Config(format!("no run '{run_id}' in ops.runs")).into());
            }
            let format = if matches!(action, RunsAction::Show { .. }) {
                output::Format::Json
            } else {
                output::Format::Table
            };
            output::print_batches(&batches, format)?;
            out!(
                "{}",
                json!({"status": "succeeded", "command": command, "rows": rows})
            );
        }
        Command::Train { as_of, strict } => {
            let lake = open_lake()?;
            let d = as_of.as_of;
            let (report, run) = audited(&lake, new_run("train", Some(d)), async |run| {
                train::train(&lake, &settings, d, strict, run).await
            })
            .await?;
            output::trained(&report);
            out!(
                "{}",
                json!({"status": "succeeded", "command": "train", "run_id": run.run_id, "model": report})
            );
        }
        Command::Score { as_of } => {
            let lake = open_lake()?;
            let d = as_of.as_of;
            let (report, run) = audited(&lake, new_run("score", Some(d)), async |run| {
                score::score(&lake, &settings, d, run).await
            })
            .await?;
            output::scored(&report);
            out!(
                "{}",
                json!({"status": "succeeded", "command": "score", "run_id": run.run_id, "scores": report})
            );
        }
        Command::Act { as_of, dry_run } => {
            let lake = open_lake()?;
            let d = as_of.as_of;
            let report = if dry_run {
                // reads only: no audit row
                let mut run = new_run("act", Some(d));
                act::act(&lake, &settings, d, true, &mut run).await?
            } else {
                audited(&lake, new_run("act", Some(d)), async |run| {
                    act::act(&lake, &settings, d, false, run).await
                })
                .await?
                .0
            };
            output::acted(&report);
            out!(
                "{}",
                json!({"status": "succeeded", "command": "act", "actions": report})
            );
        }
        Command::Analytics { as_of } => {
            let lake = open_lake()?;
            let d = as_of.as_of;
            let (r, run) = audited(&lake, new_run("analytics", Some(d)), async |run| {
                analytics::analytics(&lake, &settings, d, run).await
            })
            .await?;
            output::analysed(&r);
            out!(
                "{}",
                json!({"status": "succeeded", "command": "analytics", "run_id": run.run_id, "analytics": r})
            );
        }
        Command::Publish { as_of } => {
            let lake = open_lake()?;
            let d = as_of.as_of;
            let (r, run) = audited(&lake, new_run("publish", Some(d)), async |run| {
                analytics::publish::publish(&lake, &settings, d, run).await
            })
            .await?;
            output::published(&r);
            out!(
                "{}",
                json!({"status": "succeeded", "command": "publish", "run_id": run.run_id, "publish": r})
            );
        }
        Command::Report {
            as_of,
            format,
            out,
            deliver,
        } => {
            let lake = open_lake()?;
            let d = as_of.as_of;
            let built = analytics::report::build(&lake, &settings, d).await?;
            let r = analytics::report::write(built, &format, &out)?;
            let deliveries = if deliver {
                analytics::report::deliver(&settings, &r).await?
            } else {
                Vec::new()
            };
            output::reported(&r, &deliveries);
            let failed = deliveries.iter().filter(|d| !d.sent).count();
            out!(
                "{}",
                json!({"status": if failed == 0 { "succeeded" } else { "failed" }, "command": "report", "report": r, "deliveries": deliveries})
            );
            if failed > 0 {
                anyhow::bail!("{failed} of {} report deliveries failed", deliveries.len());
            }
        }
        Command::Account { account_id, as_of } => {
            let lake = open_lake()?;
            let a = analytics::account::account(&lake, &account_id, as_of).await?;
            output::account(&a);
            out!(
                "{}",
                json!({"status": "succeeded", "command": "account", "account": a})
            );
        }
        Command::Health {
            action: HealthAction::SuggestWeights { as_of },
        } => {
            let lake = open_lake()?;
            let s = train::health_weights::suggest_weights(&lake, &settings, as_of.as_of).await?;
            out!("{}", s.diff.trim_end());
            out!(
                "{}",
                json!({"status": "succeeded", "command": "health suggest-weights", "as_of": s.as_of, "rows": s.rows, "churned": s.churned, "measures": s.measures})
            );
        }
        Command::Playbooks { action } => {
            let lake = open_lake()?;
            match action {
                PlaybooksAction::List => {
                    let entries = act::commands::list(&settings)?;
                    output::playbooks(&entries);
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "playbooks list", "playbooks": entries})
                    );
                }
                PlaybooksAction::Validate { as_of } => {
                    let entries = act::commands::list(&settings)?;
                    let warnings = act::commands::validate(&lake, &settings, as_of).await?;
                    for w in &warnings {
                        out!("warning: {w}");
                    }
                    out!("{} playbooks and campaigns are valid.", entries.len());
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "playbooks validate", "checked": entries.len(), "warnings": warnings})
                    );
                }
                PlaybooksAction::DryRun { as_of } => {
                    let mut run = new_run("act", Some(as_of.as_of));
                    let report = act::act(&lake, &settings, as_of.as_of, true, &mut run).await?;
                    output::acted(&report);
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "playbooks dry-run", "actions": report})
                    );
                }
                PlaybooksAction::Stats { as_of } => {
                    let (date, batches) = act::commands::stats(&lake, as_of).await?;
                    let Some(date) = date else {
                        return Err(Error::Job(
                            "no playbook statistics yet: run `cslake act --as-of DATE` first".into(),
                        )
                        .into());
                    };
                    out!("Playbook performance as of {date}:");
                    output::print_batches(&batches, output::Format::Table)?;
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "playbooks stats", "as_of": date})
                    );
                }
            }
        }
        Command::Tasks { action } => {
            let lake = open_lake()?;
            match action {
                TasksAction::List { all, assignee } => {
                    let mut filter = if all {
                        "TRUE".to_string()
                    } else {
                        "status IN ('open', 'overdue')".to_string()
                    };
                    if let Some(a) = assignee {
                        filter.push_str(&format!(" AND assignee = '{}'", a.replace('\'', "''")));
                    }
                    let q = format!(
                        "SELECT task_id, account_id, title, assignee, priority, CAST(due_date AS VARCHAR) AS due_date, status FROM actions.tasks WHERE {filter} ORDER BY due_date, task_id"
                    );
                    let batches = table_query(&lake, "actions.tasks", &q).await?;
                    let n = output::print_batches(&batches, output::Format::Table)?;
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "tasks list", "rows": n})
                    );
                }
                TasksAction::Complete { task_id, by } => {
                    let by = by.unwrap_or_else(|| settings.actor.clone());
                    let (task, run) = audited(&lake, new_run("tasks complete", None), async |run| {
                        act::commands::complete_task(&lake, &task_id, &by, run).await
                    })
                    .await?;
                    out!("Task {} completed by {by}: {}", task.task_id, task.title);
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "tasks complete", "run_id": run.run_id, "task_id": task.task_id, "completed_by": by})
                    );
                }
            }
        }
        Command::Alerts { action } => {
            let lake = open_lake()?;
            match action {
                AlertsAction::List { all } => {
                    let filter = if all { "TRUE" } else { "status = 'open'" };
                    let q = format!(
                        "SELECT alert_id, account_id, priority, title, recipients, CAST(as_of_date AS VARCHAR) AS raised_on, notified_count, status FROM actions.alerts WHERE {filter} ORDER BY priority, as_of_date, alert_id"
                    );
                    let batches = table_query(&lake, "actions.alerts", &q).await?;
                    let n = output::print_batches(&batches, output::Format::Table)?;
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "alerts list", "rows": n})
                    );
                }
                AlertsAction::Ack { alert_id, by } => {
                    let by = by.unwrap_or_else(|| settings.actor.clone());
                    let (alert, run) = audited(&lake, new_run("alerts ack", None), async |run| {
                        act::commands::ack_alert(&lake, &alert_id, &by, run).await
                    })
                    .await?;
                    out!("Alert {} acknowledged by {by}: {}", alert.alert_id, alert.title);
                    out!(
                        "{}",
                        json!({"status": "succeeded", "command": "alerts ack", "run_id": run.run_id, "alert_id": alert.alert_id, "acknowledged_by": by})
                    );
                }
            }
        }
        Command::Campaigns {
            action: CampaignsAction::Report { as_of },
        } => {
            let lake = open_lake()?;
            let arms = act::stats::campaign_report(&lake, &settings, as_of).await?;
            output::campaigns(&arms);
            out!(
                "{}",
                json!({"status": "succeeded", "command": "campaigns report", "arms": arms})
            );
        }
        Command::Run {
            as_of,
            source,
            retrain,
            strict,
            only,
            from_step,
        } => {
            let lake = open_lake()?;
            let d = as_of.as_of;
            let steps = Step::selected(only, from_step);
            let summary = day(
                &lake,
                &settings,
                d,
                DayOptions {
                    sources: sources_to_ingest(&settings, source),
                    // a train step asked for by name trains, model or not
                    retrain: retrain || only == Some(Step::Train) || from_step == Some(Step::Train),
                    strict,
                    steps,
                },
                &new_run,
                &progress,
            )
            .await?;
            out!("{summary}");
        }
        Command::Backfill {
            from,
            to,
            every,
            features_only,
            strict,
        } => {
            if to < from || every == 0 {
                return Err(Error::Config(format!(
                    "backfill: --to ({to}) must not be before --from ({from}), and --every at least 1"
                ))
                .into());
            }
            let lake = open_lake()?;
            let dates: Vec<NaiveDate> = from
                .iter_days()
                .step_by(every as usize)
                .take_while(|d| *d <= to)
                .collect();
            let mut days = Vec::new();
            for d in &dates {
                let steps = if features_only {
                    vec![Step::Features]
                } else {
                    vec![Step::Features, Step::Score]
                };
                let summary = day(
                    &lake,
                    &settings,
                    *d,
                    DayOptions {
                        sources: vec![],
                        retrain: false,
                        strict,
                        steps,
                    },
                    &new_run,
                    &progress,
                )
                .await
                .with_context(|| {
                    format!("backfill stopped at {d} (dates before it are done; re-run with --from {d})")
                })?;
                tracing::info!(as_of = %d, "backfilled");
                days.push(json!({"as_of": d.to_string(), "features": summary["features"], "scores": summary["scores"]["accounts"]}));
            }
            out!(
                "{}",
                json!({"status": "succeeded", "command": "backfill", "from": from.to_string(), "to": to.to_string(), "dates": dates.len(), "days": days})
            );
        }
        Command::Demo { gen_args, data } => {
            let lake = open_lake()?;
            let opts = gen_options(&gen_args, data.clone());
            let t = std::time::Instant::now();
            let stats = generate(&opts, &progress)?;
            output::generated(&stats, &data);
            tracing::info!(seconds = t.elapsed().as_secs_f64(), "generated");
            let source = data.display().to_string();
            // the demo always trains, so that its summary shows the model's quality
            let summary = day(
                &lake,
                &settings,
                gen_args.end,
                DayOptions {
                    sources: vec![source],
                    retrain: true,
                    strict: false,
                    steps: Step::ALL.to_vec(),
                },
                &new_run,
                &progress,
            )
            .await?;
            out!("{summary}");
        }
        Command::Pii {
            action: PiiAction::Rotate,
        } => {
            let lake = open_lake()?;
            let pii = cslake_pipeline::lake::pii::Protector::from_settings(&settings)?
                .ok_or_else(|| Error::Config("[pii] is not configured: nothing to rotate".into()))?;
            let (report, run) = audited(&lake, new_run("pii rotate", None), async |run| {
                admin::gdpr::rotate(&lake, &pii, run).await
            })
            .await?;
            out!("Re-encrypted under key {}:", report.key);
            for (t, n) in &report.tables {
                out!("  {t:<26} {n:>8} values");
            }
            out!(
                "{}",
                json!({"status": "succeeded", "command": "pii rotate", "run_id": run.run_id, "rotation": report})
            );
        }
        Command::Query { sql, format, reveal } => {
            let lake = open_lake()?;
            let ctx = lake.session().await?;
            let mut batches = lake::query::sql(&ctx, &sql).await?;
            if reveal {
                let pii = cslake_pipeline::lake::pii::Protector::from_settings(&settings)?
                    .ok_or_else(|| Error::Config("--reveal: [pii] is not configured".into()))?;
                // revealing personal data is audited
                let (revealed, _) = audited(&lake, new_run("query --reveal", None), async |run| {
                    run.rows_read = batches.iter().map(|b| b.num_rows() as u64).sum();
                    batches
                        .iter()
                        .map(|b| pii.reveal_batch(b))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await?;
                batches = revealed;
            }
            let rows = output::print_batches(&batches, format)?;
            if format == output::Format::Table {
                out!(
                    "{}",
                    json!({"status": "succeeded", "command": "query", "rows": rows})
                );
            }
        }
    }
    Ok(())
}

/// A query over an actions table, with a clear message when nothing has created it yet.
async fn table_query(
    lake: &Lake,
    table: &str,
    q: &str,
) -> anyhow::Result<Vec<deltalake::arrow::array::RecordBatch>> {
    let ctx = lake.session().await?;
    if !lake::query::has_table(&ctx, table) {
        return Err(Error::Job(format!(
            "{table} does not exist yet: run `cslake act --as-of DATE` first"
        ))
        .into());
    }
    Ok(lake::query::sql(&ctx, q).await?)
}

/// `--source` when given, else every configured source: the file drop, then each `[[sources]]`.
fn sources_to_ingest(settings: &Settings, given: Option<String>) -> Vec<String> {
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

/// Ingests each source as its own audited run (each commits completely or not at all); stops
/// at the first that fails. Adds totals, and per source its run and tables, to `summary`.
#[allow(clippy::too_many_arguments)]
async fn ingest_all(
    lake: &Lake,
    settings: &Settings,
    sources: &[String],
    full: bool,
    as_of: Option<NaiveDate>,
    new_run: &dyn Fn(&str, Option<NaiveDate>) -> RunContext,
    progress: &dyn Progress,
    summary: &mut serde_json::Value,
) -> anyhow::Result<()> {
    let (mut read, mut rejected) = (0, 0);
    let mut per_source = Vec::new();
    for source in sources {
        let (report, run) = audited(lake, new_run("ingest", as_of), async |run| {
            ingest::ingest(lake, settings, source, full, run, progress).await
        })
        .await?;
        output::ingested(&report);
        read += report.read;
        rejected += report.rejected;
        per_source.push(json!({"source": report.source, "run_id": run.run_id, "read": report.read, "rejected": report.rejected, "tables": report.tables}));
    }
    summary["read"] = json!(read);
    summary["rejected"] = json!(rejected);
    if let [one] = per_source.as_slice() {
        summary["run_id"] = one["run_id"].clone();
        summary["tables"] = one["tables"].clone();
    }
    summary["sources"] = json!(per_source);
    Ok(())
}

/// How `cslake run` (and the demo) runs the day.
struct DayOptions {
    sources: Vec<String>,
    /// Which steps run; train also needs `retrain` or a lake without a model.
    steps: Vec<Step>,
    retrain: bool,
    strict: bool,
}

/// The whole day, each step audited as its own run.
async fn day(
    lake: &Lake,
    settings: &Settings,
    d: NaiveDate,
    opts: DayOptions,
    new_run: &dyn Fn(&str, Option<NaiveDate>) -> RunContext,
    progress: &dyn Progress,
) -> anyhow::Result<serde_json::Value> {
    // publishing is a step only where there is somewhere to publish to
    let publishes = settings.file.publish.postgres.is_some();
    let names: Vec<String> = opts
        .steps
        .iter()
        .filter(|s| **s != Step::Publish || publishes)
        .map(|s| format!("{s:?}").to_lowercase())
        .collect();
    let mut summary =
        json!({"status": "succeeded", "command": "run", "as_of": d.to_string(), "steps": names});
    let step = |s: Step| opts.steps.contains(&s);
    if step(Step::Ingest) && !opts.sources.is_empty() {
        let mut ingest = json!({});
        ingest_all(
            lake,
            settings,
            &opts.sources,
            false,
            Some(d),
            new_run,
            progress,
            &mut ingest,
        )
        .await?;
        summary["ingest"] = ingest;
    }
    if step(Step::Features) {
        let (report, _) = audited(lake, new_run("features", Some(d)), async |run| {
            features::features(lake, settings, d, opts.strict, run).await
        })
        .await?;
        summary["features"] =
            json!({"accounts": report.accounts, "views": report.views.len(), "warnings": report.warnings});
    }
    let ctx = lake.session().await?;
    let has_model = ctx.table_exist("models.registry").unwrap_or(false);
    if step(Step::Train) && (opts.retrain || !has_model) {
        let (report, _) = audited(lake, new_run("train", Some(d)), async |run| {
            train::train(lake, settings, d, opts.strict, run).await
        })
        .await?;
        output::trained(&report);
        summary["train"] = json!(report);
    }
    if step(Step::Score) {
        let (report, _) = audited(lake, new_run("score", Some(d)), async |run| {
            score::score(lake, settings, d, run).await
        })
        .await?;
        output::scored(&report);
        summary["scores"] = json!(report);
    }
    if step(Step::Act) {
        let (report, _) = audited(lake, new_run("act", Some(d)), async |run| {
            act::act(lake, settings, d, false, run).await
        })
        .await?;
        output::acted(&report);
        summary["actions"] = json!(report);
    }
    if step(Step::Analytics) {
        let (report, _) = audited(lake, new_run("analytics", Some(d)), async |run| {
            analytics::analytics(lake, settings, d, run).await
        })
        .await?;
        output::analysed(&report);
        summary["analytics"] = json!(report);
    }
    if step(Step::Publish) && settings.file.publish.postgres.is_some() {
        let (report, _) = audited(lake, new_run("publish", Some(d)), async |run| {
            analytics::publish::publish(lake, settings, d, run).await
        })
        .await?;
        output::published(&report);
        summary["publish"] = json!(report);
    }
    Ok(summary)
}
