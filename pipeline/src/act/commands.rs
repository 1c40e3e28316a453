//! The commands around the day: `cslake playbooks list | validate | stats`, `cslake tasks
//! complete`, `cslake alerts ack`.

use chrono::{DateTime, NaiveDate, Utc};
use deltalake::arrow::array::RecordBatch;

use crate::act::day::{day_table, health_days, usable};
use crate::act::deliveries::check_routes;
use crate::act::library::library;
use crate::act::library::{StepAction, fill};
use crate::act::plan::Predicates;
use crate::act::tables::{Alert, Task, read};
use crate::act::tables::{upsert_alerts, upsert_tasks};
use crate::lake::query::{has_table, sql, strings};
use crate::{Error, Lake, Result, RunContext, Settings};

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
                        StepAction::SendContent => format!("send {}", s.content_summary()),
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
pub async fn validate(
    lake: Option<&Lake>,
    settings: &Settings,
    as_of: Option<NaiveDate>,
) -> Result<Vec<String>> {
    let lib = library(settings)?;
    check_routes(settings, &lib)?;
    let Some(lake) = lake else {
        return Ok(vec![
            "no lake: trigger and exit SQL could not be checked against the day's columns".into(),
        ]);
    };
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
    // every trigger, exit and only_if runs, as the day would run them
    Predicates::evaluate(&ctx, &lib, &day).await?;
    for p in &lib.playbooks {
        for (k, s) in p.steps.iter().enumerate() {
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

pub(crate) fn placeholders(t: &str) -> Vec<String> {
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

/// When a CSM says they did something (`--at`, default now), in microseconds: not in the future,
/// not before the day the task or alert came to be.
fn when(at: Option<DateTime<Utc>>, since: NaiveDate, what: &str, id: &str, verb: &str) -> Result<i64> {
    let now = Utc::now();
    let Some(at) = at else {
        return Ok(now.timestamp_micros());
    };
    if at > now {
        return Err(Error::Config(format!(
            "--at {at}: {what} {id} cannot be done in the future"
        )));
    }
    if at.date_naive() < since {
        return Err(Error::Config(format!(
            "--at {at}: {what} {id} was only {verb} on {since}"
        )));
    }
    Ok(at.timestamp_micros())
}

/// `cslake tasks complete ID`.
pub async fn complete_task(
    lake: &Lake,
    task_id: &str,
    by: &str,
    at: Option<DateTime<Utc>>,
    run: &mut RunContext,
) -> Result<Task> {
    let ctx = lake.session().await?;
    let id = task_id.replace('\'', "''");
    let tasks = Task::read(&read(&ctx, "actions.tasks", &format!("task_id = '{id}'")).await?)?;
    let Some(t) = tasks.into_iter().next() else {
        return Err(Error::NotFound {
            what: "task",
            name: task_id.to_string(),
            hint: " in actions.tasks (cslake tasks list --all)".into(),
        });
    };
    if t.status == "completed" {
        return Ok(t);
    }
    let at = when(at, t.created_on, "task", task_id, "created")?;
    let done = Task {
        status: "completed".into(),
        completed_at: Some(at),
        completed_by: Some(by.to_string()),
        ..t
    };
    upsert_tasks(lake, std::slice::from_ref(&done), run).await?;
    Ok(done)
}

/// `cslake alerts ack ID`.
pub async fn ack_alert(
    lake: &Lake,
    alert_id: &str,
    by: &str,
    at: Option<DateTime<Utc>>,
    run: &mut RunContext,
) -> Result<Alert> {
    let ctx = lake.session().await?;
    let id = alert_id.replace('\'', "''");
    let alerts = Alert::read(&read(&ctx, "actions.alerts", &format!("alert_id = '{id}'")).await?)?;
    let Some(a) = alerts.into_iter().next() else {
        return Err(Error::NotFound {
            what: "alert",
            name: alert_id.to_string(),
            hint: " in actions.alerts (cslake alerts list --all)".into(),
        });
    };
    if a.status == "acknowledged" {
        return Ok(a);
    }
    let at = when(at, a.as_of_date, "alert", alert_id, "raised")?;
    let done = Alert {
        status: "acknowledged".into(),
        acknowledged_at: Some(at),
        acknowledged_by: Some(by.to_string()),
        ..a
    };
    upsert_alerts(lake, std::slice::from_ref(&done), run).await?;
    Ok(done)
}

/// `cslake tasks list`: open and overdue tasks (or all), by due date; one assignee's only.
pub async fn tasks(lake: &Lake, all: bool, assignee: Option<&str>) -> Result<Vec<RecordBatch>> {
    let mut filter = if all {
        "TRUE".to_string()
    } else {
        "status IN ('open', 'overdue')".to_string()
    };
    if let Some(a) = assignee {
        filter.push_str(&format!(" AND assignee = '{}'", a.replace('\'', "''")));
    }
    listing(
        lake,
        "actions.tasks",
        &format!(
            "SELECT task_id, account_id, title, assignee, priority, CAST(due_date AS VARCHAR) AS due_date, status \
             FROM actions.tasks WHERE {filter} ORDER BY due_date, task_id"
        ),
    )
    .await
}

/// `cslake alerts list`: open alerts (or all), most urgent first.
pub async fn alerts(lake: &Lake, all: bool) -> Result<Vec<RecordBatch>> {
    let filter = if all { "TRUE" } else { "status = 'open'" };
    listing(
        lake,
        "actions.alerts",
        &format!(
            "SELECT alert_id, account_id, priority, title, recipients, CAST(as_of_date AS VARCHAR) AS raised_on, \
             notified_count, status FROM actions.alerts WHERE {filter} ORDER BY priority, as_of_date, alert_id"
        ),
    )
    .await
}

/// A query over an actions table, with a clear message when nothing has created it yet.
async fn listing(lake: &Lake, table: &str, q: &str) -> Result<Vec<RecordBatch>> {
    let ctx = lake.session().await?;
    if !has_table(&ctx, table) {
        return Err(Error::Job(format!(
            "{table} does not exist yet: run `cslake act --as-of DATE` first"
        )));
    }
    sql(&ctx, q).await
}
