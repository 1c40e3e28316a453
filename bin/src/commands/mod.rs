//! One function per command, grouped by the stage of the day it belongs to. Each resolves its
//! arguments, calls the pipeline (audited), prints what people read and returns the summary line.

mod access;
mod act;
mod admin;
mod analytics;
mod cluster;
mod day;
mod features;
mod ingest;
mod lake;
mod score;
mod train;

use chrono::NaiveDate;
use cslake_pipeline::admin::access::{self as rules, Access, Class};
use cslake_pipeline::day::{Observer, StepReport};
use cslake_pipeline::lake::ops::{self, Audit};
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
    /// The actor's roles (`[access]`), checked before the command ran.
    pub access: Option<Access>,
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

/// Runs the command the command line names (`name`, as [`crate::cli::command_name`] gives it),
/// if the actor's roles allow it; a command that wrote no row of `ops.runs` itself (a read, a
/// refusal) gets one here, so every command is in the audit log.
pub async fn run(cli: Cli, name: String) -> anyhow::Result<Summary> {
    let settings = Settings::load(
        cli.config.as_deref(),
        cli.lake.clone(),
        cli.actor.clone(),
        cli.memory_limit.clone(),
    )?
    .with_engine(cli.engine.as_deref())?;
    let os_user = cslake_pipeline::settings::os_user();
    let actor = if settings.actor == os_user {
        settings.actor.clone()
    } else {
        format!("{} (via {os_user})", settings.actor)
    };
    let allowed = Access::resolve(&settings).and_then(|a| a.check(&name).map(|()| a));
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if name.starts_with("query") {
        // the audit keeps what was read, not the values looked up
        args = args
            .iter()
            .map(|a| cslake_pipeline::lake::query::without_literals(a))
            .collect();
    }
    let ctx = Ctx {
        audit: Audit { actor, args },
        settings,
        progress: Bars::new(),
        access: allowed.as_ref().ok().cloned(),
    };
    // a read's row is written after it, but it started now
    let run = ctx.run(&name, None);
    let outcome = match allowed {
        Ok(_) => dispatch(&ctx, cli.command).await,
        Err(e) => Err(e.into()),
    };
    if !ops::run_recorded()
        && rules::class(&name) != Class::Local
        && let Some(run) = record(&ctx, run, &outcome).await?
    {
        return outcome.map(|s| s.run(&run));
    }
    outcome
}

/// The `ops.runs` row of a command that wrote none: a read, or one refused or failed before its
/// job began. A lake that does not exist gets none (nothing to audit into, nothing was read).
async fn record(
    ctx: &Ctx,
    mut run: RunContext,
    outcome: &anyhow::Result<Summary>,
) -> anyhow::Result<Option<RunContext>> {
    let Ok(lake) = ctx.lake().await else {
        return Ok(None);
    };
    let name = run.command.clone();
    if name.starts_with("gdpr") {
        // the subject is never written in clear, whatever stopped the command
        let mut hide = false;
        for a in &mut run.args {
            if hide {
                *a = "***".into();
            }
            hide = a == "--contact" || a == "--account";
            if let Some((k, _)) = a
                .split_once('=')
                .filter(|(k, _)| *k == "--contact" || *k == "--account")
            {
                *a = format!("{k}=***");
            }
        }
    }
    let (status, message) = match outcome {
        Ok(s) => match &s.unsuccessful {
            None => ("succeeded", None),
            Some(why) => ("failed", Some(why.clone())),
        },
        Err(e) => match e.downcast_ref::<cslake_pipeline::Error>() {
            Some(cslake_pipeline::Error::Denied(_)) => ("refused", Some(e.to_string())),
            _ => ("failed", Some(e.to_string())),
        },
    };
    if let Some(rows) = outcome.as_ref().ok().and_then(|s| s.rows()) {
        run.rows_read = rows;
    }
    match run.record_once(&lake, status, message.as_deref()).await {
        Ok(()) => Ok(Some(run)),
        // the command's own error is the one to report
        Err(e) if outcome.is_err() => {
            tracing::error!(error = %e, "could not write the ops.runs row");
            Ok(None)
        }
        Err(e) => Err(anyhow::anyhow!(
            "'{name}' ran, but its ops.runs row could not be written: {e}"
        )),
    }
}

async fn dispatch(ctx: &Ctx, command: Command) -> anyhow::Result<Summary> {
    match command {
        Command::Demo {
            gen_args,
            data,
            history_weeks,
        } => day::demo(ctx, &gen_args, data, history_weeks).await,
        Command::Generate { gen_args, out } => ingest::generate(ctx, &gen_args, out),
        Command::Ingest { source, full } => ingest::ingest(ctx, source, full).await,
        Command::Features {
            action: Some(action), ..
        } => features::action(ctx, action).await,
        Command::Features {
            action: None,
            as_of,
            strict,
        } => features::features(ctx, as_of, strict).await,
        Command::Models { action } => train::models(ctx, action).await,
        Command::Train { as_of, strict } => train::train(ctx, as_of.as_of, strict).await,
        Command::Evaluate { as_of, out } => train::evaluate(ctx, as_of.as_of, out).await,
        Command::Health { action } => train::health(ctx, action).await,
        Command::Score { as_of } => score::score(ctx, as_of.as_of).await,
        Command::Act { as_of, dry_run } => act::act(ctx, as_of.as_of, dry_run).await,
        Command::Playbooks { action } => act::playbooks(ctx, action).await,
        Command::Content { action } => act::content(ctx, action).await,
        Command::Tasks { action } => act::tasks(ctx, action).await,
        Command::Alerts { action } => act::alerts(ctx, action).await,
        Command::Campaigns { action } => act::campaigns(ctx, action).await,
        Command::Analytics { as_of } => analytics::analytics(ctx, as_of.as_of).await,
        Command::Publish { as_of } => analytics::publish(ctx, as_of.as_of).await,
        Command::Report {
            as_of,
            format,
            out,
            deliver,
        } => analytics::report(ctx, as_of.as_of, &format, out, deliver).await,
        Command::Account { account_id, as_of } => analytics::account(ctx, &account_id, as_of).await,
        Command::Run {
            as_of,
            source,
            retrain,
            strict,
            only,
            from_step,
        } => day::run(ctx, as_of.as_of, source, retrain, strict, only, from_step).await,
        Command::Backfill {
            from,
            to,
            every,
            features_only,
            strict,
        } => day::backfill(ctx, from, to, every, features_only, strict).await,
        Command::Backup { to, verify } => admin::backup(ctx, &to, verify).await,
        Command::Restore {
            from,
            table,
            version,
            generation,
            list,
        } => admin::restore(ctx, from, table, version, generation, list).await,
        Command::Maintain { as_of, dry_run } => admin::maintain(ctx, as_of, dry_run).await,
        Command::Gdpr { action } => admin::gdpr(ctx, action).await,
        Command::Pii { action } => admin::pii(ctx, action).await,
        Command::Tables { table, format } => lake::tables(ctx, table.as_deref(), &format).await,
        Command::Lineage { table, limit } => lake::lineage(ctx, &table, limit).await,
        Command::Runs { action } => lake::runs(ctx, action).await,
        Command::Query { sql, format, reveal } => lake::query(ctx, &sql, format, reveal).await,
        Command::Access { action } => access::access(ctx, action),
        Command::Cluster { action } => cluster::cluster(ctx, action).await,
    }
}
