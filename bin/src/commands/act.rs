//! `cslake act` and the commands around it: playbooks, tasks, alerts, campaigns.

use chrono::NaiveDate;
use cslake_pipeline::Error;
use cslake_pipeline::act::{self as job, commands, stats};
use cslake_pipeline::lake::ops::audited;

use super::Ctx;
use crate::cli::{AlertsAction, CampaignsAction, ContentAction, PlaybooksAction, TasksAction};
use crate::out;
use crate::output;
use crate::summary::Summary;

/// `cslake act --as-of D [--dry-run]`.
pub async fn act(ctx: &Ctx, d: NaiveDate, dry_run: bool) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    let report = if dry_run {
        // reads only: no audit row
        job::act(&lake, &ctx.settings, d, true, &mut ctx.run("act", Some(d))).await?
    } else {
        audited(&lake, ctx.run("act", Some(d)), async |run| {
            job::act(&lake, &ctx.settings, d, false, run).await
        })
        .await?
        .0
    };
    output::acted(&report);
    Ok(Summary::succeeded("act").with("actions", &report))
}

/// `cslake playbooks list | validate | dry-run | stats`.
pub async fn playbooks(ctx: &Ctx, action: PlaybooksAction) -> anyhow::Result<Summary> {
    match action {
        PlaybooksAction::List => {
            let entries = commands::list(&ctx.settings)?;
            output::playbooks(&entries);
            Ok(Summary::succeeded("playbooks list").with("playbooks", &entries))
        }
        PlaybooksAction::Validate { as_of } => {
            let entries = commands::list(&ctx.settings)?;
            // playbooks can be checked before any data landed: only the SQL checks need a lake
            let lake = match ctx.lake().await {
                Ok(lake) => Some(lake),
                Err(Error::Usage(why)) => {
                    out!("warning: {why}");
                    None
                }
                Err(e) => return Err(e.into()),
            };
            let warnings = commands::validate(lake.as_ref(), &ctx.settings, as_of).await?;
            for w in &warnings {
                out!("warning: {w}");
            }
            out!("{} playbooks and campaigns are valid.", entries.len());
            Ok(Summary::succeeded("playbooks validate")
                .with("checked", entries.len())
                .with("warnings", &warnings))
        }
        PlaybooksAction::DryRun { as_of } => {
            let d = as_of.as_of;
            let report = job::act(
                &ctx.lake().await?,
                &ctx.settings,
                d,
                true,
                &mut ctx.run("act", Some(d)),
            )
            .await?;
            output::acted(&report);
            Ok(Summary::succeeded("playbooks dry-run").with("actions", &report))
        }
        PlaybooksAction::Stats { as_of } => {
            let (date, batches) = commands::stats(&ctx.lake().await?, as_of).await?;
            let Some(date) = date else {
                return Err(Error::Job(
                    "no playbook statistics yet: run `cslake act --as-of DATE` first".into(),
                )
                .into());
            };
            out!("Playbook performance as of {date}:");
            output::print_batches(&batches, output::Format::Table)?;
            Ok(Summary::succeeded("playbooks stats").with("as_of", &date))
        }
    }
}

/// `cslake content recommend`.
pub async fn content(ctx: &Ctx, action: ContentAction) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    match action {
        ContentAction::Recommend { as_of, top } => {
            let d = as_of.as_of;
            let lib = job::library::library(&ctx.settings)?;
            let (report, run) = audited(&lake, ctx.run("content recommend", Some(d)), async |run| {
                job::content::recommend(&lake, &lib, d, top, run).await
            })
            .await?;
            out!(
                "Content for {d}: {} recommendation(s) to {} account(s) in actions.content_recommendations",
                report.recommendations,
                report.accounts
            );
            Ok(Summary::succeeded("content recommend")
                .run(&run)
                .with("content", &report))
        }
        ContentAction::Search { query, limit, format } => {
            let hits = job::catalog::search(&lake, &query, limit).await?;
            match format.as_str() {
                "json" => {
                    out!("{}", serde_json::to_string_pretty(&hits)?);
                    return Ok(Summary::succeeded("content search").silent());
                }
                "table" => {
                    for h in &hits {
                        out!(
                            "{:>2}. {}  {}  [{}] teaches {}  {}",
                            h.rank,
                            h.content_id,
                            h.title,
                            h.kind.as_deref().unwrap_or("-"),
                            h.teaches.as_deref().unwrap_or("-"),
                            h.url.as_deref().unwrap_or("")
                        );
                    }
                    if hits.is_empty() {
                        out!("No content matches '{query}'");
                    }
                }
                other => {
                    return Err(Error::Config(format!("--format {other}: expected table or json")).into());
                }
            }
            Ok(Summary::succeeded("content search").with("results", &hits))
        }
        ContentAction::Effectiveness { as_of } => {
            let d = as_of.as_of;
            let (rows, run) = audited(&lake, ctx.run("content effectiveness", Some(d)), async |run| {
                let session = lake.session().await?;
                cslake_pipeline::analytics::content_effectiveness(&lake, &session, d, run).await
            })
            .await?;
            if rows == 0 {
                return Err(Error::Config(
                    "no content to measure: ingest core.content and core.content_events first".into(),
                )
                .into());
            }
            out!("Content effectiveness for {d}: {rows} row(s) in analytics.content_effectiveness");
            Ok(Summary::succeeded("content effectiveness")
                .run(&run)
                .with("rows", rows))
        }
    }
}

/// `cslake tasks list | complete`.
pub async fn tasks(ctx: &Ctx, action: TasksAction) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    match action {
        TasksAction::List { all, assignee } => {
            let batches = commands::tasks(&lake, all, assignee.as_deref()).await?;
            let n = output::print_batches(&batches, output::Format::Table)?;
            Ok(Summary::succeeded("tasks list").with("rows", n))
        }
        TasksAction::Complete { task_id, by, at } => {
            let by = by.unwrap_or_else(|| ctx.settings.actor.clone());
            let (task, run) = audited(&lake, ctx.run("tasks complete", None), async |run| {
                commands::complete_task(&lake, &task_id, &by, at, run).await
            })
            .await?;
            out!("Task {} completed by {by}: {}", task.task_id, task.title);
            Ok(Summary::succeeded("tasks complete")
                .run(&run)
                .with("task_id", &task.task_id)
                .with("completed_by", &by))
        }
    }
}

/// `cslake alerts list | ack`.
pub async fn alerts(ctx: &Ctx, action: AlertsAction) -> anyhow::Result<Summary> {
    let lake = ctx.lake().await?;
    match action {
        AlertsAction::List { all } => {
            let n = output::print_batches(&commands::alerts(&lake, all).await?, output::Format::Table)?;
            Ok(Summary::succeeded("alerts list").with("rows", n))
        }
        AlertsAction::Ack { alert_id, by, at } => {
            let by = by.unwrap_or_else(|| ctx.settings.actor.clone());
            let (alert, run) = audited(&lake, ctx.run("alerts ack", None), async |run| {
                commands::ack_alert(&lake, &alert_id, &by, at, run).await
            })
            .await?;
            out!("Alert {} acknowledged by {by}: {}", alert.alert_id, alert.title);
            Ok(Summary::succeeded("alerts ack")
                .run(&run)
                .with("alert_id", &alert.alert_id)
                .with("acknowledged_by", &by))
        }
    }
}

/// `cslake campaigns report`.
pub async fn campaigns(ctx: &Ctx, action: CampaignsAction) -> anyhow::Result<Summary> {
    let CampaignsAction::Report { as_of } = action;
    let arms = stats::campaign_report(&ctx.lake().await?, &ctx.settings, as_of).await?;
    output::campaigns(&arms);
    Ok(Summary::succeeded("campaigns report").with("arms", &arms))
}
