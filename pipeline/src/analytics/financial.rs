//! `analytics.financial_impact`: per dimension (`all`, `segment`, `plan`, `csm`) and value —
//! revenue at risk (MRR × churn probability, monthly and annualised), the expansion pipeline, gross
//! and net revenue retention and logo churn over the trailing 12 months from the subscription
//! history, and the intervention ROI of campaigns against their control groups. Also registers the
//! views the team tables build on (`fi_base`: one row per scored account; `fi_cohort`: the accounts
//! paying a year ago and what they pay now; `fi_roi`: campaign assignments and their outcome).

use chrono::{Duration, NaiveDate};
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::query::{has_table, sql, strings};
use crate::{Result, Settings};

/// MRR per account on a date, from the subscription history.
pub(crate) fn mrr_on(d: NaiveDate) -> String {
    format!(
        "SELECT account_id, SUM(mrr) AS mrr FROM core.subscriptions \
         WHERE start_date <= DATE '{d}' AND (end_date IS NULL OR end_date > DATE '{d}') GROUP BY account_id"
    )
}

/// The day's financial impact rows, and the company-wide row as JSON.
pub async fn financial_impact(
    ctx: &SessionContext,
    settings: &Settings,
    as_of: NaiveDate,
    run_id: &str,
) -> Result<(Vec<RecordBatch>, serde_json::Value)> {
    let d = format!("DATE '{as_of}'");
    let year_ago = as_of - Duration::days(365);
    let has_subs = has_table(ctx, "core.subscriptions");
    let has_opps = has_table(ctx, "scores.opportunities");
    let has_mrr_feature = has_table(ctx, "features.subscription");
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
    let roi = if has_table(ctx, "actions.campaign_assignments") {
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
        ctx,
        &format!(
            "SELECT dimension, value, accounts, round(mrr, 2) AS mrr, round(revenue_at_risk_monthly, 2) AS revenue_at_risk_monthly, \
             round(revenue_at_risk_annual, 2) AS revenue_at_risk_annual, round(expansion_pipeline_mrr, 2) AS expansion_pipeline_mrr, \
             grr_12m, nrr_12m, logo_churn_12m, cohort_accounts, treated_accounts, control_accounts, retention_lift, intervention_roi_mrr, \
             {d} AS as_of_date, '{run_id}' AS _run_id FROM ({}) ORDER BY dimension, value",
            parts.join(" UNION ALL "),
            run_id = run_id
        ),
    )
    .await?;
    let _fi_rows: usize = fi.iter().map(|b| b.num_rows()).sum();
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
    Ok((fi, total))
}
