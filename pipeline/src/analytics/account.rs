//! `cslake account ID`: the account workbench in a terminal — who the account is, its risk and
//! the factors behind it, its health over time, recent interactions, the playbooks it is in with
//! their open tasks and alerts, its opportunities, and the revenue to expect from it.

use chrono::NaiveDate;
use deltalake::datafusion::prelude::SessionContext;
use serde_json::{Map, Value, json};

use crate::lake::query::{has_table, text_rows};
use crate::{Error, Lake, Result};

/// Rows of a query as JSON objects (every value as text, numbers as numbers).
async fn rows(ctx: &SessionContext, q: &str) -> Result<Vec<Value>> {
    Ok(text_rows(ctx, q)
        .await?
        .into_iter()
        .map(|row| {
            let m: Map<String, Value> = row
                .into_iter()
                .map(|(name, v)| {
                    let v = match v {
                        None => Value::Null,
                        Some(s) => s.parse::<f64>().map_or_else(|_| json!(s), |n| json!(n)),
                    };
                    (name, v)
                })
                .collect();
            Value::Object(m)
        })
        .collect())
}

pub async fn account(lake: &Lake, id: &str, as_of: Option<NaiveDate>) -> Result<Value> {
    let ctx = lake.session().await?;
    let key = id.replace('\'', "''");
    if !has_table(&ctx, "core.accounts") {
        return Err(Error::Job("no accounts yet: run `cslake ingest` first".into()));
    }
    let profile = rows(
        &ctx,
        &format!(
            "SELECT account_id, name, segment, plan, seats, mrr, CAST(contract_end AS VARCHAR) AS contract_end, csm_id, status \
             FROM core.accounts WHERE account_id = '{key}'"
        ),
    )
    .await?;
    let Some(profile) = profile.into_iter().next() else {
        return Err(Error::NotFound {
            what: "account",
            name: id.to_string(),
            hint: " in core.accounts".into(),
        });
    };
    let upto = as_of.map_or(String::new(), |d| format!(" AND as_of_date <= DATE '{d}'"));
    let mut out = json!({"account": profile});
    if has_table(&ctx, "scores.risk_scores") {
        let risk = rows(
            &ctx,
            &format!(
                "SELECT CAST(as_of_date AS VARCHAR) AS as_of_date, risk_score, risk_band, churn_probability, model_version \
                 FROM scores.risk_scores WHERE account_id = '{key}'{upto} ORDER BY as_of_date DESC LIMIT 1"
            ),
        )
        .await?;
        out["risk"] = risk.into_iter().next().unwrap_or(Value::Null);
        if let Some(d) = out["risk"]["as_of_date"].as_str().map(str::to_string) {
            let factors = rows(
                &ctx,
                &format!(
                    "SELECT f['reason'] AS reason, round(f['contribution'], 3) AS contribution FROM \
                     (SELECT unnest(top_factors) AS f FROM scores.risk_scores WHERE account_id = '{key}' AND as_of_date = DATE '{d}')"
                ),
            )
            .await?;
            out["risk"]["factors"] = json!(factors);
            if has_table(&ctx, "scores.opportunities") {
                out["opportunities"] = json!(
                    rows(
                        &ctx,
                        &format!(
                            "SELECT kind, product_id, probability, expected_mrr, reason FROM scores.opportunities \
                             WHERE account_id = '{key}' AND as_of_date = DATE '{d}' ORDER BY expected_mrr DESC"
                        ),
                    )
                    .await?
                );
            }
        }
    }
    if has_table(&ctx, "scores.health_scores") {
        let mut timeline = rows(
            &ctx,
            &format!(
                "SELECT CAST(as_of_date AS VARCHAR) AS as_of_date, health_score, band, most_impactful_measure \
                 FROM scores.health_scores WHERE account_id = '{key}'{upto} ORDER BY as_of_date DESC LIMIT 30"
            ),
        )
        .await?;
        timeline.reverse();
        out["health"] = json!(timeline);
    }
    if has_table(&ctx, "core.interactions") {
        let upto_i = as_of.map_or(String::new(), |d| {
            format!(" AND occurred_at < CAST(DATE '{d}' + INTERVAL '1' DAY AS TIMESTAMP)")
        });
        out["interactions"] = json!(
            rows(
                &ctx,
                &format!(
                    "SELECT CAST(occurred_at AS VARCHAR) AS occurred_at, kind, subject, score, status FROM core.interactions \
                     WHERE account_id = '{key}'{upto_i} ORDER BY occurred_at DESC LIMIT 10"
                ),
            )
            .await?
        );
    }
    if has_table(&ctx, "actions.playbook_runs") {
        out["playbooks"] = json!(
            rows(
                &ctx,
                &format!(
                    "SELECT playbook, playbook_version, status, CAST(enrolled_on AS VARCHAR) AS enrolled_on, steps_done, steps_total, \
                     trigger_reason, end_reason FROM actions.playbook_runs WHERE account_id = '{key}' AND as_of_date = \
                     (SELECT MAX(as_of_date) FROM actions.playbook_runs WHERE TRUE{upto}) ORDER BY enrolled_on DESC"
                ),
            )
            .await?
        );
    }
    if has_table(&ctx, "actions.tasks") {
        out["open_tasks"] = json!(
            rows(
                &ctx,
                &format!(
                    "SELECT task_id, title, assignee, priority, CAST(due_date AS VARCHAR) AS due_date, status FROM actions.tasks \
                     WHERE account_id = '{key}' AND status IN ('open', 'overdue') ORDER BY due_date"
                ),
            )
            .await?
        );
    }
    if has_table(&ctx, "actions.alerts") {
        out["open_alerts"] = json!(
            rows(
                &ctx,
                &format!(
                    "SELECT alert_id, priority, title, CAST(as_of_date AS VARCHAR) AS raised_on FROM actions.alerts \
                     WHERE account_id = '{key}' AND status = 'open' ORDER BY priority, as_of_date"
                ),
            )
            .await?
        );
    }
    // revenue to expect over the label horizon: what is kept, plus the expected expansion
    let mrr = out["account"]["mrr"].as_f64();
    let p = out["risk"]["churn_probability"].as_f64();
    let expansion: f64 = out["opportunities"]
        .as_array()
        .map(|o| o.iter().filter_map(|x| x["expected_mrr"].as_f64()).sum())
        .unwrap_or(0.0);
    if let (Some(mrr), Some(p)) = (mrr, p) {
        out["forecast"] = json!({
            "mrr": mrr,
            "expected_retained_mrr": ((mrr * (1.0 - p)) * 100.0).round() / 100.0,
            "revenue_at_risk_mrr": ((mrr * p) * 100.0).round() / 100.0,
            "expected_expansion_mrr": (expansion * 100.0).round() / 100.0 + 0.0,
        });
    }
    Ok(out)
}
