//! `analytics.team_performance` (per CSM: book size and ARR, risk and health, tasks completed,
//! overdue and their median time to completion, alerts acknowledged and how fast, retention of the
//! book, load against capacity), `analytics.team_summary` (per team: the CSMs' books added up,
//! retention from the team's own cohort) and `analytics.team_goals` (each CSM's progress against
//! `[[analytics.goals]]`). They build on the views `financial` registers.

use chrono::NaiveDate;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::compute::concat_batches;
use deltalake::datafusion::prelude::SessionContext;

use crate::act::as_of;
use crate::lake::query::{has_table, sql};
use crate::settings::Goal;
use crate::{Error, Result};

/// The numeric columns of `analytics.team_performance` a goal can be set on.
pub const TEAM_METRICS: &[&str] = &[
    "accounts",
    "arr",
    "mean_risk_score",
    "high_risk_accounts",
    "mean_health_score",
    "red_accounts",
    "tasks_completed",
    "tasks_overdue",
    "tasks_open",
    "median_days_to_complete",
    "alerts",
    "alerts_acknowledged",
    "mean_hours_to_acknowledge",
    "grr_12m",
    "nrr_12m",
    "load_vs_capacity",
];

/// A goal's progress and `met` expressions over analytics.team_performance's columns, or why the
/// goal is not valid.
pub fn goal_sql(g: &Goal) -> Result<(String, String)> {
    if !TEAM_METRICS.contains(&g.metric.as_str()) {
        return Err(Error::Config(format!(
            "[[analytics.goals]] metric `{}` is not a numeric column of analytics.team_performance ({})",
            g.metric,
            TEAM_METRICS.join(", ")
        )));
    }
    let exprs = match g.direction.as_str() {
        "at_least" => (
            format!(
                "CASE WHEN {t} = 0 THEN 1.0 ELSE CAST({m} AS DOUBLE) / {t} END",
                m = g.metric,
                t = g.target
            ),
            format!("CAST({m} AS DOUBLE) >= {t}", m = g.metric, t = g.target),
        ),
        "at_most" => (
            format!(
                "CASE WHEN CAST({m} AS DOUBLE) <= 0 THEN 1.0 ELSE {t} / CAST({m} AS DOUBLE) END",
                m = g.metric,
                t = g.target
            ),
            format!("CAST({m} AS DOUBLE) <= {t}", m = g.metric, t = g.target),
        ),
        other => {
            return Err(Error::Config(format!(
                "[[analytics.goals]] metric `{}`: direction `{other}` must be `at_least` or `at_most`",
                g.metric
            )));
        }
    };
    Ok(exprs)
}

/// The CSMs' table of the day (also registered as `tp_today` for the summary and the goals).
pub async fn team_performance(
    ctx: &SessionContext,
    as_of: NaiveDate,
    run_id: &str,
) -> Result<Vec<RecordBatch>> {
    let d = format!("DATE '{as_of}'");
    // team performance
    let tasks = has_table(ctx, "actions.tasks");
    let alerts = has_table(ctx, "actions.alerts");
    let health = has_table(ctx, "scores.health_scores");
    // the tasks and alerts as they stood at the end of the day, not as they are now
    let runs = has_table(ctx, "actions.playbook_runs");
    let task_q = if tasks {
        format!(
            "(SELECT assignee AS csm, SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS tasks_completed, \
             SUM(CASE WHEN status = 'overdue' THEN 1 ELSE 0 END) AS tasks_overdue, \
             SUM(CASE WHEN status IN ('open', 'overdue') THEN 1 ELSE 0 END) AS tasks_open, \
             median(CASE WHEN status = 'completed' THEN (CAST(completed_at AS BIGINT) / 86400000000.0) - CAST(CAST(created_on AS TIMESTAMP) AS BIGINT) / 1000000000.0 / 86400.0 END) AS median_days_to_complete \
             FROM {tasks_then} t WHERE assignee IS NOT NULL GROUP BY assignee)",
            tasks_then = as_of::tasks_sql(as_of, runs)
        )
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS csm, 0 AS tasks_completed, 0 AS tasks_overdue, 0 AS tasks_open, CAST(NULL AS DOUBLE) AS median_days_to_complete WHERE FALSE)".into()
    };
    let alert_q = if alerts {
        format!(
            "(SELECT a.csm_id AS csm, COUNT(*) AS alerts, SUM(CASE WHEN al.status = 'acknowledged' THEN 1 ELSE 0 END) AS alerts_acknowledged, \
             avg(CASE WHEN al.status = 'acknowledged' THEN (CAST(al.acknowledged_at AS BIGINT) / 3600000000.0) - CAST(CAST(al.as_of_date AS TIMESTAMP) AS BIGINT) / 1000000000.0 / 3600.0 END) AS mean_hours_to_acknowledge \
             FROM {alerts_then} al JOIN core.accounts a ON a.account_id = al.account_id GROUP BY a.csm_id)",
            alerts_then = as_of::alerts_sql(as_of, runs)
        )
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS csm, 0 AS alerts, 0 AS alerts_acknowledged, CAST(NULL AS DOUBLE) AS mean_hours_to_acknowledge WHERE FALSE)".into()
    };
    let health_q = if health {
        format!("(SELECT account_id, health_score, band FROM scores.health_scores WHERE as_of_date = {d})")
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS account_id, CAST(NULL AS DOUBLE) AS health_score, CAST(NULL AS VARCHAR) AS band WHERE FALSE)".into()
    };
    let csms = csms(ctx);
    let team = sql(
        ctx,
        &format!(
            "SELECT b.csm AS csm_id, c.name, c.team, b.accounts, round(b.arr, 2) AS arr, round(b.mean_risk, 2) AS mean_risk_score, \
             b.high_risk_accounts, round(b.mean_health, 2) AS mean_health_score, b.red_accounts, \
             COALESCE(t.tasks_completed, 0) AS tasks_completed, COALESCE(t.tasks_overdue, 0) AS tasks_overdue, COALESCE(t.tasks_open, 0) AS tasks_open, \
             t.median_days_to_complete, COALESCE(al.alerts, 0) AS alerts, COALESCE(al.alerts_acknowledged, 0) AS alerts_acknowledged, \
             al.mean_hours_to_acknowledge, k.grr_12m, k.nrr_12m, c.capacity, \
             CASE WHEN c.capacity > 0 THEN CAST(b.accounts AS DOUBLE) / c.capacity END AS load_vs_capacity, \
             {d} AS as_of_date, '{run_id}' AS _run_id \
             FROM (SELECT f.csm, COUNT(*) AS accounts, SUM(f.mrr) * 12 AS arr, AVG(r.risk_score) AS mean_risk, \
                   SUM(CASE WHEN r.risk_band IN ('high', 'critical') THEN 1 ELSE 0 END) AS high_risk_accounts, \
                   AVG(h.health_score) AS mean_health, SUM(CASE WHEN h.band = 'red' THEN 1 ELSE 0 END) AS red_accounts \
                   FROM fi_base f JOIN scores.risk_scores r ON r.account_id = f.account_id AND r.as_of_date = {d} \
                   LEFT JOIN {health_q} h ON h.account_id = f.account_id GROUP BY f.csm) b \
             LEFT JOIN {csms} c ON c.csm_id = b.csm LEFT JOIN {task_q} t ON t.csm = b.csm LEFT JOIN {alert_q} al ON al.csm = b.csm \
             LEFT JOIN (SELECT csm, SUM(LEAST(mrr_now, mrr_then)) / SUM(mrr_then) AS grr_12m, SUM(mrr_now) / SUM(mrr_then) AS nrr_12m FROM fi_cohort GROUP BY csm) k ON k.csm = b.csm \
             ORDER BY b.csm",
            run_id = run_id
        ),
    )
    .await?;
    if let Some(b) = team.first() {
        ctx.deregister_table("tp_today")?;
        ctx.register_batch("tp_today", concat_batches(&b.schema(), &team)?)?;
    }
    Ok(team)
}

/// core.csms, or an empty table of its shape.
fn csms(ctx: &SessionContext) -> String {
    if has_table(ctx, "core.csms") {
        "(SELECT csm_id, name, team, capacity FROM core.csms)".to_string()
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS csm_id, CAST(NULL AS VARCHAR) AS name, CAST(NULL AS VARCHAR) AS team, CAST(NULL AS BIGINT) AS capacity WHERE FALSE)".to_string()
    }
}

/// One row per team: the CSMs' books added up; retention from the team's own cohort, not
/// averaged ratios. Needs `tp_today`.
pub async fn team_summary(ctx: &SessionContext, as_of: NaiveDate, run_id: &str) -> Result<Vec<RecordBatch>> {
    let d = format!("DATE '{as_of}'");
    let csms = csms(ctx);
    let rows = sql(
        ctx,
        &format!(
            "SELECT COALESCE(t.team, 'unassigned') AS team, COUNT(*) AS csms, SUM(t.accounts) AS accounts, round(SUM(t.arr), 2) AS arr, \
             round(SUM(t.mean_risk_score * t.accounts) / SUM(t.accounts), 2) AS mean_risk_score, SUM(t.high_risk_accounts) AS high_risk_accounts, \
             round(SUM(t.mean_health_score * t.accounts) / SUM(CASE WHEN t.mean_health_score IS NULL THEN 0 ELSE t.accounts END), 2) AS mean_health_score, \
             SUM(t.red_accounts) AS red_accounts, SUM(t.tasks_completed) AS tasks_completed, SUM(t.tasks_overdue) AS tasks_overdue, \
             SUM(t.tasks_open) AS tasks_open, SUM(t.alerts) AS alerts, SUM(t.alerts_acknowledged) AS alerts_acknowledged, \
             g.grr_12m, g.nrr_12m, SUM(t.capacity) AS capacity, CAST(SUM(t.accounts) AS DOUBLE) / NULLIF(SUM(t.capacity), 0) AS load_vs_capacity, \
             {d} AS as_of_date, '{run_id}' AS _run_id \
             FROM tp_today t LEFT JOIN (SELECT COALESCE(c.team, 'unassigned') AS team, SUM(LEAST(k.mrr_now, k.mrr_then)) / SUM(k.mrr_then) AS grr_12m, \
                   SUM(k.mrr_now) / SUM(k.mrr_then) AS nrr_12m FROM fi_cohort k LEFT JOIN {csms} c ON c.csm_id = k.csm GROUP BY 1) g \
               ON g.team = COALESCE(t.team, 'unassigned') \
             GROUP BY COALESCE(t.team, 'unassigned'), g.grr_12m, g.nrr_12m ORDER BY 1",
            run_id = run_id
        ),
    )
    .await?;
    Ok(rows)
}

/// Each CSM's progress against the goals, from their expressions ([`goal_sql`]). Needs `tp_today`.
pub async fn team_goals(
    ctx: &SessionContext,
    goals: &[Goal],
    goal_exprs: &[(String, String)],
    as_of: NaiveDate,
    run_id: &str,
) -> Result<Vec<RecordBatch>> {
    let d = format!("DATE '{as_of}'");
    let mut parts = Vec::new();
    for (k, g) in goals.iter().enumerate() {
        let (progress, met) = &goal_exprs[k];
        let team_filter = match &g.team {
            Some(t) => format!("WHERE team = '{}'", t.replace('\'', "''")),
            None => String::new(),
        };
        parts.push(format!(
            "SELECT csm_id, name, team, '{m}' AS metric, '{dir}' AS direction, CAST({t} AS DOUBLE) AS target,                  CAST({m} AS DOUBLE) AS actual, {progress} AS progress, {met} AS met FROM tp_today {team_filter}",
            m = g.metric,
            dir = g.direction,
            t = g.target
        ));
    }
    let q = format!(
        "SELECT *, {d} AS as_of_date, '{run_id}' AS _run_id FROM ({}) ORDER BY metric, csm_id",
        parts.join(" UNION ALL "),
        run_id = run_id
    );
    let rows = sql(ctx, &q).await?;
    Ok(rows)
}
