//! `cslake analytics --as-of D`: the tables BI tools build the executive numbers from.
//!
//! - `analytics.financial_impact`: per dimension (`all`, `segment`, `plan`, `csm`) and value —
//!   revenue at risk (MRR × churn probability, monthly and annualised), the expansion pipeline,
//!   gross and net revenue retention and logo churn over the trailing 12 months from the
//!   subscription history, and the intervention ROI of campaigns against their control groups.
//! - `analytics.team_performance`: per CSM — book size and ARR, risk and health, tasks completed,
//!   overdue and their median time to completion, alerts acknowledged and how fast, retention of
//!   the book, load against capacity.
//!
//! Every number is a SQL aggregate over plain lake tables, so a BI user can rebuild it.

pub mod account;
pub mod benchmarks;
pub mod publish;
pub mod report;

use chrono::{Duration, NaiveDate};
use deltalake::arrow::compute::concat_batches;

use crate::lake::query::{has_table, sql, strings};
use crate::{Error, Lake, Result, RunContext, Settings};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AnalyticsReport {
    pub as_of: String,
    pub financial_impact_rows: usize,
    pub team_performance_rows: usize,
    pub team_summary_rows: usize,
    pub team_goals_rows: usize,
    pub benchmarks_rows: usize,
    /// The company-wide row of financial_impact.
    pub total: serde_json::Value,
}

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

/// MRR per account on a date, from the subscription history.
pub(crate) fn mrr_on(d: NaiveDate) -> String {
    format!(
        "SELECT account_id, SUM(mrr) AS mrr FROM core.subscriptions \
         WHERE start_date <= DATE '{d}' AND (end_date IS NULL OR end_date > DATE '{d}') GROUP BY account_id"
    )
}

/// A goal's progress and `met` expressions over analytics.team_performance's columns, or why the
/// goal is not valid.
fn goal_sql(g: &crate::settings::Goal) -> Result<(String, String)> {
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

pub async fn analytics(
    lake: &Lake,
    settings: &Settings,
    as_of: NaiveDate,
    run: &mut RunContext,
) -> Result<AnalyticsReport> {
    // configuration first: nothing is written when a goal or the industry table is wrong
    let goal_exprs: Vec<(String, String)> = settings
        .file
        .analytics
        .goals
        .iter()
        .map(goal_sql)
        .collect::<Result<_>>()?;
    let industry = crate::analytics::benchmarks::industry_table(settings)?;
    let ctx = lake.session().await?;
    let scored: i64 = {
        if !has_table(&ctx, "scores.risk_scores") {
            0
        } else {
            let b = sql(
                &ctx,
                &format!("SELECT COUNT(*) AS n FROM scores.risk_scores WHERE as_of_date = DATE '{as_of}'"),
            )
            .await?;
            b.first()
                .and_then(|b| strings(b, "n").ok())
                .and_then(|v| v.into_iter().next().flatten())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        }
    };
    if scored == 0 {
        return Err(Error::Job(format!(
            "no scores for {as_of}: run `cslake score --as-of {as_of}` (or `cslake run`) first"
        )));
    }
    let d = format!("DATE '{as_of}'");
    let year_ago = as_of - Duration::days(365);
    let has_subs = has_table(&ctx, "core.subscriptions");
    let has_opps = has_table(&ctx, "scores.opportunities");
    let has_mrr_feature = has_table(&ctx, "features.subscription");
    let cost = settings.file.analytics.cost_per_intervention;

    // one row per scored account with everything the dimensions and measures need
    let mrr_now = if has_mrr_feature {
        format!("(SELECT account_id, mrr FROM features.subscription WHERE as_of_date = {d})")
    } else {
        "(SELECT account_id, mrr FROM core.accounts)".to_string()
    };
    let opps = if has_opps {
        format!(
            "(SELECT account_id, SUM(expected_mrr) AS pipeline FROM scores.opportunities WHERE as_of_date = {d} GROUP BY account_id)"
        )
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS account_id, CAST(NULL AS DOUBLE) AS pipeline)".to_string()
    };
    let base = format!(
        "SELECT r.account_id, COALESCE(a.segment, 'unknown') AS segment, COALESCE(a.plan, 'unknown') AS plan, \
         COALESCE(a.csm_id, 'unassigned') AS csm, COALESCE(m.mrr, 0) AS mrr, r.churn_probability, COALESCE(o.pipeline, 0) AS pipeline \
         FROM scores.risk_scores r LEFT JOIN core.accounts a ON a.account_id = r.account_id \
         LEFT JOIN {mrr_now} m ON m.account_id = r.account_id LEFT JOIN {opps} o ON o.account_id = r.account_id \
         WHERE r.as_of_date = {d}"
    );
    ctx.deregister_table("fi_base")?;
    ctx.register_table("fi_base", ctx.sql(&base).await?.into_view())?;
    // the trailing-12-month cohort: accounts paying a year ago, and what they pay now
    let cohort = if has_subs {
        format!(
            "SELECT t.account_id, COALESCE(a.segment, 'unknown') AS segment, COALESCE(a.plan, 'unknown') AS plan, \
             COALESCE(a.csm_id, 'unassigned') AS csm, t.mrr AS mrr_then, COALESCE(n.mrr, 0) AS mrr_now \
             FROM ({then}) t LEFT JOIN ({now}) n ON n.account_id = t.account_id LEFT JOIN core.accounts a ON a.account_id = t.account_id \
             WHERE t.mrr > 0",
            then = mrr_on(year_ago),
            now = mrr_on(as_of)
        )
    } else {
        "SELECT CAST(NULL AS VARCHAR) AS account_id, CAST(NULL AS VARCHAR) AS segment, CAST(NULL AS VARCHAR) AS plan, \
         CAST(NULL AS VARCHAR) AS csm, CAST(NULL AS DOUBLE) AS mrr_then, CAST(NULL AS DOUBLE) AS mrr_now WHERE FALSE"
            .to_string()
    };
    ctx.deregister_table("fi_cohort")?;
    ctx.register_table("fi_cohort", ctx.sql(&cohort).await?.into_view())?;
    // campaigns: treated against control, retained = still scored today
    let roi = if has_table(&ctx, "actions.campaign_assignments") {
        format!(
            "SELECT COALESCE(a.segment, 'unknown') AS segment, COALESCE(a.plan, 'unknown') AS plan, COALESCE(a.csm_id, 'unassigned') AS csm, \
             c.arm <> 'control' AS treated, CASE WHEN r.account_id IS NULL THEN 0.0 ELSE 1.0 END AS retained, COALESCE(c.mrr_at_assignment, 0) AS mrr \
             FROM actions.campaign_assignments c LEFT JOIN core.accounts a ON a.account_id = c.account_id \
             LEFT JOIN (SELECT account_id FROM scores.risk_scores WHERE as_of_date = {d}) r ON r.account_id = c.account_id \
             WHERE c.assigned_on <= {d}"
        )
    } else {
        "SELECT CAST(NULL AS VARCHAR) AS segment, CAST(NULL AS VARCHAR) AS plan, CAST(NULL AS VARCHAR) AS csm, \
         FALSE AS treated, 0.0 AS retained, 0.0 AS mrr WHERE FALSE"
            .to_string()
    };
    ctx.deregister_table("fi_roi")?;
    ctx.register_table("fi_roi", ctx.sql(&roi).await?.into_view())?;

    let mut parts = Vec::new();
    for dim in ["all", "segment", "plan", "csm"] {
        let key = if dim == "all" {
            "'all'".to_string()
        } else {
            dim.to_string()
        };
        parts.push(format!(
            "SELECT '{dim}' AS dimension, v.value, v.accounts, v.mrr, v.revenue_at_risk_monthly, v.revenue_at_risk_monthly * 12 AS revenue_at_risk_annual, \
             v.expansion_pipeline_mrr, c.grr_12m, c.nrr_12m, c.logo_churn_12m, c.cohort_accounts, \
             i.treated_accounts, i.control_accounts, i.retention_lift, \
             i.retention_lift * i.treated_mrr - {cost} * i.treated_accounts AS intervention_roi_mrr \
             FROM (SELECT CAST({key} AS VARCHAR) AS value, COUNT(*) AS accounts, SUM(mrr) AS mrr, SUM(mrr * churn_probability) AS revenue_at_risk_monthly, \
                   SUM(pipeline) AS expansion_pipeline_mrr FROM fi_base GROUP BY 1) v \
             LEFT JOIN (SELECT CAST({key} AS VARCHAR) AS value, COUNT(*) AS cohort_accounts, \
                   SUM(LEAST(mrr_now, mrr_then)) / SUM(mrr_then) AS grr_12m, SUM(mrr_now) / SUM(mrr_then) AS nrr_12m, \
                   AVG(CASE WHEN mrr_now <= 0 THEN 1.0 ELSE 0.0 END) AS logo_churn_12m FROM fi_cohort GROUP BY 1) c ON c.value = v.value \
             LEFT JOIN (SELECT CAST({key} AS VARCHAR) AS value, \
                   SUM(CASE WHEN treated THEN 1 ELSE 0 END) AS treated_accounts, SUM(CASE WHEN treated THEN 0 ELSE 1 END) AS control_accounts, \
                   AVG(CASE WHEN treated THEN retained END) - AVG(CASE WHEN NOT treated THEN retained END) AS retention_lift, \
                   SUM(CASE WHEN treated THEN mrr ELSE 0 END) AS treated_mrr FROM fi_roi GROUP BY 1) i ON i.value = v.value"
        ));
    }
    let fi = sql(
        &ctx,
        &format!(
            "SELECT dimension, value, accounts, round(mrr, 2) AS mrr, round(revenue_at_risk_monthly, 2) AS revenue_at_risk_monthly, \
             round(revenue_at_risk_annual, 2) AS revenue_at_risk_annual, round(expansion_pipeline_mrr, 2) AS expansion_pipeline_mrr, \
             grr_12m, nrr_12m, logo_churn_12m, cohort_accounts, treated_accounts, control_accounts, retention_lift, intervention_roi_mrr, \
             {d} AS as_of_date, '{run_id}' AS _run_id FROM ({}) ORDER BY dimension, value",
            parts.join(" UNION ALL "),
            run_id = run.run_id
        ),
    )
    .await?;
    let fi_rows: usize = fi.iter().map(|b| b.num_rows()).sum();
    let total = {
        let mut t = serde_json::Map::new();
        for b in &fi {
            let dims = strings(b, "dimension")?;
            if let Some(i) = dims.iter().position(|x| x.as_deref() == Some("all")) {
                for f in b.schema().fields() {
                    let v = strings(b, f.name())?[i].clone();
                    let num = v.as_deref().and_then(|s| s.parse::<f64>().ok());
                    t.insert(
                        f.name().clone(),
                        match (num, v) {
                            (Some(n), _) => serde_json::json!(n),
                            (None, Some(s)) => serde_json::json!(s),
                            (None, None) => serde_json::Value::Null,
                        },
                    );
                }
            }
        }
        serde_json::Value::Object(t)
    };
    let pred = format!("as_of_date = '{as_of}'");
    let s = lake
        .target("analytics", "financial_impact")
        .replace_where(fi, &pred, &["as_of_date"], &run.run_id)
        .await?;
    run.wrote("analytics.financial_impact", fi_rows, s.version);

    // team performance
    let tasks = has_table(&ctx, "actions.tasks");
    let alerts = has_table(&ctx, "actions.alerts");
    let health = has_table(&ctx, "scores.health_scores");
    let task_q = if tasks {
        format!(
            "(SELECT assignee AS csm, SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS tasks_completed, \
             SUM(CASE WHEN status = 'overdue' OR (status = 'open' AND due_date < {d}) THEN 1 ELSE 0 END) AS tasks_overdue, \
             SUM(CASE WHEN status IN ('open', 'overdue') THEN 1 ELSE 0 END) AS tasks_open, \
             median(CASE WHEN status = 'completed' THEN (CAST(completed_at AS BIGINT) / 86400000000.0) - CAST(CAST(created_on AS TIMESTAMP) AS BIGINT) / 1000000000.0 / 86400.0 END) AS median_days_to_complete \
             FROM actions.tasks WHERE created_on <= {d} AND assignee IS NOT NULL GROUP BY assignee)"
        )
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS csm, 0 AS tasks_completed, 0 AS tasks_overdue, 0 AS tasks_open, CAST(NULL AS DOUBLE) AS median_days_to_complete WHERE FALSE)".into()
    };
    let alert_q = if alerts {
        format!(
            "(SELECT a.csm_id AS csm, COUNT(*) AS alerts, SUM(CASE WHEN al.status = 'acknowledged' THEN 1 ELSE 0 END) AS alerts_acknowledged, \
             avg(CASE WHEN al.status = 'acknowledged' THEN (CAST(al.acknowledged_at AS BIGINT) / 3600000000.0) - CAST(CAST(al.as_of_date AS TIMESTAMP) AS BIGINT) / 1000000000.0 / 3600.0 END) AS mean_hours_to_acknowledge \
             FROM actions.alerts al JOIN core.accounts a ON a.account_id = al.account_id WHERE al.as_of_date <= {d} GROUP BY a.csm_id)"
        )
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS csm, 0 AS alerts, 0 AS alerts_acknowledged, CAST(NULL AS DOUBLE) AS mean_hours_to_acknowledge WHERE FALSE)".into()
    };
    let health_q = if health {
        format!("(SELECT account_id, health_score, band FROM scores.health_scores WHERE as_of_date = {d})")
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS account_id, CAST(NULL AS DOUBLE) AS health_score, CAST(NULL AS VARCHAR) AS band WHERE FALSE)".into()
    };
    let csms = if has_table(&ctx, "core.csms") {
        "(SELECT csm_id, name, team, capacity FROM core.csms)".to_string()
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS csm_id, CAST(NULL AS VARCHAR) AS name, CAST(NULL AS VARCHAR) AS team, CAST(NULL AS BIGINT) AS capacity WHERE FALSE)".to_string()
    };
    let team = sql(
        &ctx,
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
            run_id = run.run_id
        ),
    )
    .await?;
    let team_rows: usize = team.iter().map(|b| b.num_rows()).sum();
    if let Some(b) = team.first() {
        ctx.deregister_table("tp_today")?;
        ctx.register_batch("tp_today", concat_batches(&b.schema(), &team)?)?;
    }
    let s = lake
        .target("analytics", "team_performance")
        .replace_where(team, &pred, &["as_of_date"], &run.run_id)
        .await?;
    run.wrote("analytics.team_performance", team_rows, s.version);

    // teams: the CSMs' books added up; retention from the team's cohort, not averaged ratios
    let mut team_summary_rows = 0;
    if team_rows > 0 {
        let rows = sql(
            &ctx,
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
                run_id = run.run_id
            ),
        )
        .await?;
        team_summary_rows = rows.iter().map(|b| b.num_rows()).sum();
        let s = lake
            .target("analytics", "team_summary")
            .replace_where(rows, &pred, &["as_of_date"], &run.run_id)
            .await?;
        run.wrote("analytics.team_summary", team_summary_rows, s.version);
    }

    // goals: each CSM's progress against [[analytics.goals]]
    let goals = &settings.file.analytics.goals;
    let mut goal_rows = 0;
    if !goals.is_empty() && team_rows > 0 {
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
            run_id = run.run_id
        );
        let rows = sql(&ctx, &q).await?;
        goal_rows = rows.iter().map(|b| b.num_rows()).sum();
        let s = lake
            .target("analytics", "team_goals")
            .replace_where(rows, &pred, &["as_of_date"], &run.run_id)
            .await?;
        run.wrote("analytics.team_goals", goal_rows, s.version);
    }

    // benchmarks: own history, peer segments, the industry table
    let bench = crate::analytics::benchmarks::benchmarks(&ctx, &industry, as_of, &run.run_id).await?;
    let bench_rows = bench.num_rows();
    let s = lake
        .target("analytics", "benchmarks")
        .replace_where(vec![bench], &pred, &["as_of_date"], &run.run_id)
        .await?;
    run.wrote("analytics.benchmarks", bench_rows, s.version);
    Ok(AnalyticsReport {
        as_of: as_of.to_string(),
        financial_impact_rows: fi_rows,
        team_performance_rows: team_rows,
        team_summary_rows,
        team_goals_rows: goal_rows,
        benchmarks_rows: bench_rows,
        total,
    })
}
