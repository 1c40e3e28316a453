//! `cslake act`: turns the day's scores into actions. Playbooks enrol accounts whose row of the
//! day matches their trigger, advance their steps day by day (tasks, alerts, campaign arms,
//! content sends), end them when the exit condition holds; alerts, campaign e-mails and content
//! are delivered through the configured channels exactly once in effect; scores and tasks are
//! written back to the CRM.
//!
//! Re-running a day is safe: the playbook state of day D is computed from the state of the last
//! day before D (`actions.playbook_runs` is a snapshot per day), every task, alert, assignment
//! and delivery has an id derived from what produced it, and deliveries already sent are
//! skipped by their idempotency key.

pub mod as_of;
pub mod assignment;
pub mod catalog;
pub mod channels;
pub mod commands;
pub mod content;
pub mod crm_sync;
pub mod day;
pub mod deliveries;
pub mod library;
pub mod plan;
pub mod report;
pub mod stats;
pub mod tables;

pub use report::{ActReport, CrmReport, DeliveryCounts, Firing, PlaybookDay};

use std::collections::HashSet;

use chrono::NaiveDate;

use crate::act::assignment::load_csms;
use crate::act::channels::Dispatcher;
use crate::act::channels::crm::Crm;
use crate::act::content::Pick;
use crate::act::crm_sync::{pull_completions, write_back};
use crate::act::day::{day_table, health_days, usable};
use crate::act::deliveries::{check_routes, deliveries_for, dispatch};
use crate::act::library::library;
use crate::act::plan::{ContentSend, Plan, Predicates, State, plan};
use crate::act::stats::{arms_batch, campaign_arms, playbook_stats, stats_batch};
use crate::act::tables::{Alert, Assignment, DeliveryRow, Enrolment, Task, read};
use crate::act::tables::{insert_new, previous_state, upsert_alerts, upsert_tasks};
use crate::lake::query::has_table;
use crate::{Lake, Result, RunContext, Settings};

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
    check_routes(settings, &lib)?;
    let crms: Vec<Crm> = if dry_run {
        vec![]
    } else {
        settings
            .file
            .actions
            .crm
            .iter()
            .map(|c| Crm::open(c, &settings.file.actions.delivery))
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
    let state = State {
        enrolments: previous_state(&ctx, as_of).await?,
        tasks: Task::read(&read(&ctx, "actions.tasks", "").await?)?,
        alerts: Alert::read(&read(&ctx, "actions.alerts", "").await?)?,
        assignments: Assignment::read(&read(&ctx, "actions.campaign_assignments", "").await?)?,
    };
    let predicates = Predicates::evaluate(&ctx, &lib, &day).await?;
    let csms = load_csms(&ctx).await?;
    let Plan {
        enrolments,
        new_tasks,
        changed_tasks,
        new_alerts,
        resolved_alerts,
        new_assignments,
        content_sends,
        mut report,
    } = plan(settings, &lib, &day, &predicates, csms, &state, dry_run);
    report.as_of = as_of.to_string();
    report.dry_run = dry_run;
    report.warnings = skipped;
    report.accounts = day.ids.len();
    let Some(dispatcher) = dispatcher else {
        return Ok(report);
    };

    create_tables(lake, as_of, &run.run_id).await?;

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
    let picks = content::picks(&ctx, &lib, as_of, &content_sends).await?;
    let content: Vec<(&ContentSend, &[Pick])> = content_sends
        .iter()
        .map(|s| (s, picks.get(&s.key).map_or(&[][..], Vec::as_slice)))
        .collect();
    report.content_nothing_to_send = content.iter().filter(|(_, p)| p.is_empty()).count();
    let wanted = deliveries_for(
        settings,
        &lib,
        &dispatcher,
        &day,
        &ctx,
        &alerts,
        &assignments,
        &content,
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

/// Every `actions` table, created empty on the first (not dry) run, so BI tools and SQL find the
/// documented tables before a playbook first fills them (no alert yet is an empty table, not a
/// missing one). Each comes from the builder its writer uses, so the schemas cannot differ.
async fn create_tables(lake: &Lake, as_of: NaiveDate, run_id: &str) -> Result<()> {
    let day = ["as_of_date"];
    let tables = [
        ("tasks", Task::batch(&[], run_id)?, &[][..]),
        ("alerts", Alert::batch(&[], run_id)?, &[]),
        ("campaign_assignments", Assignment::batch(&[], run_id)?, &[]),
        ("playbook_runs", Enrolment::batch(&[], as_of, run_id)?, &day),
        ("deliveries", DeliveryRow::batch(&[], run_id)?, &[]),
        (
            "dead_letters",
            deliveries::dead_letters_batch(&[], as_of, run_id)?,
            &[],
        ),
        (
            "crm_sync",
            crm_sync::sync_batch("", vec![], vec![], vec![], as_of, run_id)?,
            &[],
        ),
        ("playbook_stats", stats_batch(&[], as_of, run_id)?, &day),
        ("campaign_results", arms_batch(&[], as_of, run_id)?, &day),
    ];
    for (name, example, partitions) in tables {
        lake.target("actions", name)
            .create_empty(example, partitions, run_id)
            .await?;
    }
    Ok(())
}
