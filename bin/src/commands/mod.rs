//! One function per command, grouped by the stage of the day it belongs to. Each resolves its
//! arguments, calls the pipeline (audited), prints what people read and returns the summary line.

mod act;
mod admin;
mod analytics;
mod day;
mod features;
mod ingest;
mod lake;
mod score;
mod train;

use chrono::NaiveDate;
use cslake_pipeline::day::{Observer, StepReport};
use cslake_pipeline::lake::ops::Audit;
use cslake_pipeline::{Lake, Progress, RunContext, Settings};

use crate::cli::{Cli, Command};
use crate::output;
use crate::progress::Bars;
use crate::summary::Summary;

/// What every command gets: the settings, who runs it with which arguments, and the progress
/// display.
pub struct Ctx {
    pub settings: Settings,
    pub audit: Audit,
    pub progress: Bars,
}

impl Ctx {
    /// The lake the settings name, which must exist (exit 2 naming it otherwise).
    pub async fn lake(&self) -> cslake_pipeline::Result<Lake> {
        Lake::existing(&self.settings).await
    }

    /// The lake the settings name, created if missing: for the commands that land data.
    pub fn new_lake(&self) -> cslake_pipeline::Result<Lake> {
        Lake::from_settings(&self.settings)
    }

    /// The audit record of a new run.
    pub fn run(&self, command: &str, as_of: Option<NaiveDate>) -> RunContext {
        self.audit.run(command, as_of)
    }
}

/// The day runner's steps, as the terminal shows them: the bars, and each step's summary.
impl Progress for Ctx {
    fn start(&self, step: &str, total: Option<u64>) {
        self.progress.start(step, total);
    }
    fn start_bytes(&self, step: &str, total: u64) {
        self.progress.start_bytes(step, total);
    }
    fn advance(&self, n: u64) {
        self.progress.advance(n);
    }
    fn rows(&self, n: u64) {
        self.progress.rows(n);
    }
    fn phase(&self, what: &str) {
        self.progress.phase(what);
    }
    fn finish(&self) {
        self.progress.finish();
    }
}

impl Observer for Ctx {
    fn step_done(&self, report: StepReport<'_>) {
        match report {
            StepReport::Ingest(r) => output::ingested(r),
            StepReport::Features(_) => {}
            StepReport::Train(r) => output::trained(r),
            StepReport::Score(r) => output::scored(r),
            StepReport::Act(r) => output::acted(r),
            StepReport::Analytics(r) => output::analysed(r),
            StepReport::Publish(r) => output::published(r),
        }
    }
}

/// Runs the command the command line names.
pub async fn run(cli: Cli) -> anyhow::Result<Summary> {
    let settings = Settings::load(
        cli.config.as_deref(),
        cli.lake.clone(),
        cli.actor.clone(),
        cli.memory_limit.clone(),
    )?;
    let ctx = Ctx {
        audit: Audit {
            actor: settings.actor.clone(),
            args: std::env::args().skip(1).collect(),
        },
        settings,
        progress: Bars::new(),
    };
    match cli.command {
        Command::Demo {
            gen_args,
            data,
            history_weeks,
        } => day::demo(&ctx, &gen_args, data, history_weeks).await,
        Command::Generate { gen_args, out } => ingest::generate(&ctx, &gen_args, out),
        Command::Ingest { source, full } => ingest::ingest(&ctx, source, full).await,
        Command::Features {
            action: Some(action), ..
        } => features::action(&ctx, action).await,
        Command::Features {
            action: None,
            as_of,
            strict,
        } => features::features(&ctx, as_of, strict).await,
        Command::Models { action } => train::models(&ctx, action).await,
        Command::Train { as_of, strict } => train::train(&ctx, as_of.as_of, strict).await,
        Command::Evaluate { as_of, out } => train::evaluate(&ctx, as_of.as_of, out).await,
        Command::Health { action } => train::health(&ctx, action).await,
        Command::Score { as_of } => score::score(&ctx, as_of.as_of).await,
        Command::Act { as_of, dry_run } => act::act(&ctx, as_of.as_of, dry_run).await,
        Command::Playbooks { action } => act::playbooks(&ctx, action).await,
        Command::Tasks { action } => act::tasks(&ctx, action).await,
        Command::Alerts { action } => act::alerts(&ctx, action).await,
        Command::Campaigns { action } => act::campaigns(&ctx, action).await,
        Command::Analytics { as_of } => analytics::analytics(&ctx, as_of.as_of).await,
        Command::Publish { as_of } => analytics::publish(&ctx, as_of.as_of).await,
        Command::Report {
            as_of,
            format,
            out,
            deliver,
        } => analytics::report(&ctx, as_of.as_of, &format, out, deliver).await,
        Command::Account { account_id, as_of } => analytics::account(&ctx, &account_id, as_of).await,
        Command::Run {
            as_of,
            source,
            retrain,
            strict,
            only,
            from_step,
        } => day::run(&ctx, as_of.as_of, source, retrain, strict, only, from_step).await,
        Command::Backfill {
            from,
            to,
            every,
            features_only,
            strict,
        } => day::backfill(&ctx, from, to, every, features_only, strict).await,
        Command::Backup { to, verify } => admin::backup(&ctx, &to, verify).await,
        Command::Restore { from, table, version } => admin::restore(&ctx, from, table, version).await,
        Command::Maintain { as_of, dry_run } => admin::maintain(&ctx, as_of, dry_run).await,
        Command::Gdpr { action } => admin::gdpr(&ctx, action).await,
        Command::Pii { action } => admin::pii(&ctx, action).await,
        Command::Tables { table, format } => lake::tables(&ctx, table.as_deref(), &format).await,
        Command::Lineage { table, limit } => lake::lineage(&ctx, &table, limit).await,
        Command::Runs { action } => lake::runs(&ctx, action).await,
        Command::Query { sql, format, reveal } => lake::query(&ctx, &sql, format, reveal).await,
    }
}
