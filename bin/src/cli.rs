//! The command line: every command, its flags and their help, as clap parses them. The
//! functions that run them are in `commands/`.

use std::path::PathBuf;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};
use cslake_pipeline::admin::gdpr::Subject;
use cslake_pipeline::day::Step;
use cslake_sinks::FileFormat;

use crate::output;

#[derive(Parser, Debug)]
#[command(
    name = "cslake",
    version,
    about = "A customer-success lakehouse: land CRM, billing, usage and support data in Delta tables, build features, score churn risk, health and expansion."
)]
pub struct Cli {
    /// Lake location: a folder, or a file://, s3:// or memory:// URL (default: `lake` in cslake.toml, else ./lake)
    #[arg(long, global = true, env = "CSLAKE_LAKE")]
    pub lake: Option<String>,
    /// Configuration file (default: ./cslake.toml when it exists)
    #[arg(long, global = true, env = "CSLAKE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Who runs the command, for the audit log (default: the OS user)
    #[arg(long, global = true, env = "CSLAKE_ACTOR")]
    pub actor: Option<String>,
    /// Memory a command may use before spilling to disk, e.g. 4G (default: half the machine's
    /// memory, or of the container's limit)
    #[arg(long, global = true, env = "CSLAKE_MEMORY_LIMIT")]
    pub memory_limit: Option<String>,
    /// Where feature builds, training sets and backfills run: `local`, or a Ballista cluster as
    /// ballista://HOST:PORT (default: [engine] url in cslake.toml, else local)
    #[arg(long, global = true, env = "CSLAKE_ENGINE")]
    pub engine: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct AsOf {
    /// The logical date of the run (YYYY-MM-DD), e.g. Airflow's {{ ds }}
    #[arg(long, env = "CSLAKE_AS_OF", value_parser = parse_date)]
    pub as_of: NaiveDate,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum LabelArg {
    Churn,
    Expansion,
}

/// The steps of a day, in order.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StepArg {
    Ingest,
    Features,
    Train,
    Score,
    Act,
    Analytics,
    /// Only when [publish.postgres] is configured
    Publish,
}

impl From<StepArg> for Step {
    fn from(s: StepArg) -> Step {
        match s {
            StepArg::Ingest => Step::Ingest,
            StepArg::Features => Step::Features,
            StepArg::Train => Step::Train,
            StepArg::Score => Step::Score,
            StepArg::Act => Step::Act,
            StepArg::Analytics => Step::Analytics,
            StepArg::Publish => Step::Publish,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct GenArgs {
    /// Number of accounts
    #[arg(long, default_value_t = 2000)]
    pub accounts: usize,
    /// Days of usage history
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    /// Last day of the data
    #[arg(long, default_value = "2026-10-31", value_parser = parse_date)]
    pub end: NaiveDate,
    /// Seed of the random generator (the same seed gives the same data)
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// csv, ndjson or parquet
    #[arg(long, default_value = "csv")]
    pub format: FileFormat,
    /// Usage events per file part
    #[arg(long, default_value_t = 1_000_000)]
    pub events_per_file: usize,
    /// How churn depends on the data: `linear` (a weighted sum of usage, tickets, payments and
    /// NPS) or `interactions` (only thresholds and combinations: contract type x tenure, low seat
    /// use with an open ticket, full seats on monthly contracts, failed payments of well-used
    /// accounts)
    #[arg(long, default_value = "linear")]
    pub churn: cslake_pipeline::demo::ChurnProfile,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate demo data, then ingest, build features, train and score it on the local lake
    Demo {
        #[command(flatten)]
        gen_args: GenArgs,
        /// Where the generated files go
        #[arg(long, default_value = "./demo-data")]
        data: PathBuf,
        /// Weeks before the last day also scored and analysed (a date every two weeks), so
        /// trends and the report's charts have a history (0: none)
        #[arg(long, default_value_t = 13)]
        history_weeks: u32,
    },
    /// Generate a realistic B2B SaaS data set as files
    Generate {
        #[command(flatten)]
        gen_args: GenArgs,
        /// The folder the files go to (created when missing)
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
        /// The generation to restore (default: the newest; `--list` shows them)
        #[arg(long, requires = "from")]
        generation: Option<String>,
        /// List the backup's generations instead of restoring
        #[arg(long, requires = "from")]
        list: bool,
    },
    /// Every table of the lake: columns and their Delta types, partitions, version, files, rows
    Tables {
        /// One table (zone.table) or zone; default: all
        table: Option<String>,
        /// table, json, or markdown (the form of docs/tables.md)
        #[arg(long, default_value = "table", value_parser = ["table", "json", "markdown"])]
        format: String,
    },
    /// The versions of a table, the run that wrote each, and the input versions it was built from
    Lineage {
        /// zone.table, e.g. scores.risk_scores
        table: String,
        /// How many versions to show, newest first
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
        /// The account's account_id
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
    /// Training and best-practice content: recommendations per account
    Content {
        #[command(subcommand)]
        action: ContentAction,
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
        /// Run only this step (a scheduler task per step); `train` trains when no model exists or with --retrain
        #[arg(long, value_enum, conflicts_with = "from_step")]
        only: Option<StepArg>,
        /// Run this step and the ones after it (resume a day that failed part-way)
        #[arg(long, value_enum)]
        from_step: Option<StepArg>,
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
        /// One SQL statement, e.g. "SELECT * FROM risk_scores LIMIT 5"
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
    /// Who may run what ([access]): your roles, and the store policy of a role
    Access {
        #[command(subcommand)]
        action: AccessAction,
    },
    /// Run a process of a Ballista cluster, for `--engine ballista://HOST:PORT` (see docs/scale.md)
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterAction {
    /// The scheduler: cslake commands send it their plans, it splits them into stages over the
    /// executors. Runs until stopped
    Scheduler {
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: std::net::SocketAddr,
        /// The name executors and clients reach it by (default: the address it listens on)
        #[arg(long)]
        external_host: Option<String>,
    },
    /// An executor: runs tasks of the scheduler's jobs, reading the lake's files itself (a local
    /// lake must be at the same path here). Uses --memory-limit before it spills. Runs until stopped
    Executor {
        /// The scheduler, HOST:PORT
        #[arg(long, default_value = "127.0.0.1:50050")]
        scheduler: String,
        /// Address to listen on
        #[arg(long, default_value = "127.0.0.1")]
        bind_host: String,
        /// The name the scheduler and other executors reach it by (default: the address it listens on)
        #[arg(long)]
        external_host: Option<String>,
        /// Port of its Arrow Flight service (shuffle data and results)
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// Port of its task service
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Where shuffle files go (default: a temporary folder)
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Tasks run at once (default: the machine's cores)
        #[arg(long)]
        concurrent_tasks: Option<usize>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccessAction {
    /// Who this command line runs as, its roles and the commands they allow
    Whoami,
    /// Print the least-privilege S3 bucket policy (IAM JSON) for the credentials of a role
    Policy {
        /// admin, engineer, scheduler, csm, analyst or a role of [access.roles]
        #[arg(long)]
        role: String,
    },
}

/// The command's name as the audit log and `[access.roles]` know it: the subcommand path
/// (`models promote`), plus a flag that changes what it does (`query --reveal`, `report
/// --deliver`).
pub fn command_name(matches: &clap::ArgMatches) -> String {
    let mut parts = Vec::new();
    let mut at = matches;
    while let Some((name, sub)) = at.subcommand() {
        parts.push(name.to_string());
        at = sub;
    }
    for flag in ["reveal", "deliver"] {
        if at.try_get_one::<bool>(flag).ok().flatten() == Some(&true) {
            parts.push(format!("--{flag}"));
        }
    }
    parts.join(" ")
}

#[derive(Subcommand, Debug)]
pub enum HealthAction {
    /// Propose measure weights from each measure's relation to churn in the training set of a
    /// date, as a diff of the profile's weight lines (nothing is changed)
    SuggestWeights {
        #[command(flatten)]
        as_of: AsOf,
    },
}

#[derive(Subcommand, Debug)]
pub enum PlaybooksAction {
    /// Every playbook and campaign: version, trigger, steps, file
    List,
    /// Parse the library and run every trigger, exit and only_if predicate against the day's
    /// table (the latest scored date, or --as-of)
    Validate {
        /// The day whose table the predicates run against (default: the latest scored day)
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
        /// The day (default: the latest with statistics)
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ContentAction {
    /// For each account, the content that teaches what it uses less than its segment's median and
    /// nobody there has completed, ranked, with the reason (actions.content_recommendations)
    Recommend {
        #[command(flatten)]
        as_of: AsOf,
        /// Recommendations per account
        #[arg(long, default_value_t = 3)]
        top: usize,
    },
    /// Full-text search of the content catalogue (title, tags, what it teaches, kind)
    Search {
        /// Words, "a phrase", +must, -not, title:word
        query: String,
        /// Results at most
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// table, or json (an array of results, nothing else on stdout, for tools)
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Reach, completion, the change in taught usage against peers and churn, per item and kind
    /// (analytics.content_effectiveness; `cslake analytics` writes it too)
    Effectiveness {
        #[command(flatten)]
        as_of: AsOf,
    },
}

#[derive(Subcommand, Debug)]
pub enum TasksAction {
    /// Open and overdue tasks (or --all), by due date
    List {
        /// Every task, closed ones included
        #[arg(long)]
        all: bool,
        /// Only this CSM's tasks (csm_id)
        #[arg(long)]
        assignee: Option<String>,
    },
    /// Mark a task done
    Complete {
        /// The task's task_id (cslake tasks list)
        task_id: String,
        /// Who completed it (default: the actor)
        #[arg(long)]
        by: Option<String>,
        /// When it was completed, if not now (RFC 3339 or YYYY-MM-DD, UTC): counts from that day
        /// in analytics as of any date
        #[arg(long, value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlertsAction {
    /// Open alerts (or --all), most urgent first
    List {
        /// Every alert, acknowledged and resolved ones included
        #[arg(long)]
        all: bool,
    },
    /// Acknowledge an alert: it is not re-notified any more
    Ack {
        /// The alert's alert_id (cslake alerts list)
        alert_id: String,
        /// Who acknowledged it (default: the actor)
        #[arg(long)]
        by: Option<String>,
        /// When it was acknowledged, if not now (RFC 3339 or YYYY-MM-DD, UTC): counts from that day
        /// in analytics as of any date
        #[arg(long, value_parser = parse_time)]
        at: Option<DateTime<Utc>>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CampaignsAction {
    /// Retention, expansion and engagement per arm against the control group, with 95% intervals
    Report {
        /// The day to measure at (default: the latest scored day)
        #[arg(long, value_parser = parse_date)]
        as_of: Option<NaiveDate>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PiiAction {
    /// Re-encrypt every value made with an old key (old_key_envs) under the current one
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum FeaturesAction {
    /// Every feature view: features, sources, last materialised date
    List,
    /// One view: its columns with labels and types, sources, materialisation
    Describe {
        /// The view's name (cslake features list)
        name: String,
    },
    /// The training set a model trained on a date would use (observation dates, features as of
    /// each, the churn label after it), written to training.churn and optionally to a file
    TrainingSet {
        /// The logical date of the training set (YYYY-MM-DD)
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
    /// The event types measured one by one (the event_metrics view): chosen and skipped, with
    /// their events, accounts and why
    EventTypes {
        /// Choose again from the events known now (event_metrics then starts again with the new
        /// columns; retrain afterwards)
        #[arg(long)]
        choose: bool,
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
pub enum ModelsAction {
    /// Every version with its status and out-of-time metrics, newest first
    List,
    /// One version's model.json: features, scaling, calibration, windows, metrics
    Show {
        /// A version of cslake models list
        version: String,
    },
    /// Make a version the current model
    Promote {
        /// A version of cslake models list
        version: String,
    },
    /// Put the previous model back
    Rollback,
}

#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct SubjectArgs {
    /// A contact, by e-mail address
    #[arg(long)]
    pub contact: Option<String>,
    /// An account, by id: the account, its contacts and every row about it
    #[arg(long)]
    pub account: Option<String>,
}

impl SubjectArgs {
    pub fn subject(&self) -> Subject {
        match (&self.contact, &self.account) {
            (Some(c), _) => Subject::Contact(c.clone()),
            (None, Some(a)) => Subject::Account(a.clone()),
            (None, None) => unreachable!("clap requires one"),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum GdprAction {
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
pub enum RunsAction {
    /// The latest runs, newest first
    List {
        /// How many runs to show, newest first
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Everything recorded about one run
    Show {
        /// A run_id of cslake runs list
        run_id: String,
    },
}

pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("'{s}' is not a date in the form YYYY-MM-DD"))
}

/// A moment: RFC 3339 (`2026-06-30T14:05:00Z`) or a date (its midnight, UTC).
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| format!("'{s}' is neither a time (2026-06-30T14:05:00Z) nor a date (YYYY-MM-DD)"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use cslake_pipeline::admin::access::COMMANDS;

    /// Every command the command line has is known to `[access]` (an unknown one would be
    /// closed to every role but admin).
    #[test]
    fn every_command_has_an_access_class() {
        fn walk(c: &clap::Command, path: Vec<String>, out: &mut Vec<String>) {
            let subs: Vec<&clap::Command> = c.get_subcommands().filter(|s| s.get_name() != "help").collect();
            if !path.is_empty() && (subs.is_empty() || !c.is_subcommand_required_set()) {
                out.push(path.join(" "));
            }
            for s in subs {
                let mut p = path.clone();
                p.push(s.get_name().to_string());
                walk(s, p, out);
            }
        }
        let mut names = Vec::new();
        walk(&super::Cli::command(), Vec::new(), &mut names);
        assert!(names.contains(&"features".to_string()) && names.contains(&"models promote".to_string()));
        for name in &names {
            assert!(
                COMMANDS.iter().any(|(c, _)| c == name),
                "'{name}' is not in access::COMMANDS"
            );
        }
        assert_eq!(names.len() + 2, COMMANDS.len(), "{names:?}");
    }
}
