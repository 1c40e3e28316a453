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
pub mod content;
pub mod financial;
pub mod publish;
pub mod report;
pub mod team;

use chrono::NaiveDate;
use deltalake::arrow::array::RecordBatch;

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
    pub content_effectiveness_rows: usize,
    /// The company-wide row of financial_impact.
    pub total: serde_json::Value,
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
        .map(team::goal_sql)
        .collect::<Result<_>>()?;
    let industry = benchmarks::industry_table(settings)?;
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
    let (fi, total) = financial::financial_impact(&ctx, settings, as_of, &run.run_id).await?;
    let fi_rows = write(lake, run, "financial_impact", fi, as_of).await?;
    let team = team::team_performance(&ctx, as_of, &run.run_id).await?;
    let team_rows = write(lake, run, "team_performance", team, as_of).await?;
    let mut team_summary_rows = 0;
    let mut goal_rows = 0;
    if team_rows > 0 {
        let rows = team::team_summary(&ctx, as_of, &run.run_id).await?;
        team_summary_rows = write(lake, run, "team_summary", rows, as_of).await?;
        let goals = &settings.file.analytics.goals;
        if !goals.is_empty() {
            let rows = team::team_goals(&ctx, goals, &goal_exprs, as_of, &run.run_id).await?;
            goal_rows = write(lake, run, "team_goals", rows, as_of).await?;
        }
    }
    // benchmarks: own history, peer segments, the industry table
    let bench = benchmarks::benchmarks(&ctx, &industry, as_of, &run.run_id).await?;
    let bench_rows = write(lake, run, "benchmarks", vec![bench], as_of).await?;
    // what the training content changed, where there is content
    let content_rows = content_effectiveness(lake, &ctx, as_of, run).await?;
    Ok(AnalyticsReport {
        as_of: as_of.to_string(),
        financial_impact_rows: fi_rows,
        team_performance_rows: team_rows,
        team_summary_rows,
        team_goals_rows: goal_rows,
        benchmarks_rows: bench_rows,
        content_effectiveness_rows: content_rows,
        total,
    })
}

/// Writes the day's `analytics.content_effectiveness` (nothing without content); returns the rows.
pub async fn content_effectiveness(
    lake: &Lake,
    ctx: &deltalake::datafusion::prelude::SessionContext,
    as_of: NaiveDate,
    run: &mut RunContext,
) -> Result<usize> {
    let rows = content::content_effectiveness(ctx, as_of, &run.run_id).await?;
    if rows.is_empty() {
        return Ok(0);
    }
    write(lake, run, "content_effectiveness", rows, as_of).await
}

/// Replaces the day's partition of `analytics.<table>`; returns the rows written.
async fn write(
    lake: &Lake,
    run: &mut RunContext,
    table: &str,
    rows: Vec<RecordBatch>,
    as_of: NaiveDate,
) -> Result<usize> {
    let n = rows.iter().map(RecordBatch::num_rows).sum();
    let s = lake
        .target("analytics", table)
        .replace_where(
            rows,
            &format!("as_of_date = '{as_of}'"),
            &["as_of_date"],
            &run.run_id,
        )
        .await?;
    run.wrote(&format!("analytics.{table}"), n, s.version);
    Ok(n)
}
