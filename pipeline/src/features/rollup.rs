//! Incremental rollups: `features.usage_daily` holds usage per account, day, user and event type
//! (`sql/rollups/usage_daily.sql`), the grain the usage views need for every window and distinct
//! count. Each refresh recomputes only the days that events ingested since the last refresh
//! touch (late events for an old day included), so a daily run costs one day of events; the
//! high-water mark is the newest `_ingested_at` the rollup reflects. A full rebuild and a chain
//! of refreshes give the same table (tested).

use chrono::NaiveDate;
use cslake_features::USAGE_DAILY_SQL;

use crate::lake::query::{has_table, sql, strings};
use crate::{Lake, Result, RunContext};

/// More changed days than this and the rollup is rebuilt whole (a first load, a backfill).
const MAX_DAYS_INCREMENTAL: usize = 400;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RollupReport {
    /// `full` or `incremental`
    pub mode: String,
    pub days: usize,
    pub rows: usize,
    pub version: Option<u64>,
}

/// Brings `features.usage_daily` up to date with `core.usage_events`.
pub async fn refresh_usage_daily(
    lake: &Lake,
    rebuild: bool,
    run: &mut RunContext,
) -> Result<Option<RollupReport>> {
    let ctx = lake.session().await?;
    if !has_table(&ctx, "core.usage_events") {
        return Ok(None);
    }
    let exists = has_table(&ctx, "features.usage_daily");
    let watermark = if exists && !rebuild {
        sql(
            &ctx,
            "SELECT CAST(MAX(_ingested_at) AS VARCHAR) AS w FROM features.usage_daily",
        )
        .await?
        .first()
        .map(|b| strings(b, "w"))
        .transpose()?
        .and_then(|v| v.into_iter().next().flatten())
    } else {
        None
    };
    let target = lake.target("features", "usage_daily");
    let source = USAGE_DAILY_SQL.replace("FROM usage_events", "FROM core.usage_events");
    let report = match (&watermark, exists && !rebuild) {
        (Some(w), true) => {
            let q = format!(
                "SELECT DISTINCT CAST(CAST(event_time AS DATE) AS VARCHAR) AS d FROM core.usage_events \
                 WHERE _ingested_at > CAST('{w}' AS TIMESTAMP)"
            );
            let mut days: Vec<String> = Vec::new();
            for b in sql(&ctx, &q).await? {
                days.extend(strings(&b, "d")?.into_iter().flatten());
            }
            days.sort();
            if days.is_empty() {
                return Ok(Some(RollupReport {
                    mode: "incremental".into(),
                    ..Default::default()
                }));
            }
            if days.len() > MAX_DAYS_INCREMENTAL {
                return Box::pin(refresh_usage_daily(lake, true, run)).await;
            }
            // the days as Date32 literals: the form deltalake can write back into the commit
            let list = days
                .iter()
                .filter(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").is_ok())
                .map(|d| format!("arrow_cast('{d}', 'Date32')"))
                .collect::<Vec<_>>()
                .join(", ");
            let q = source.replace(
                "{{where}}",
                &format!("WHERE CAST(event_time AS DATE) IN ({list})"),
            );
            let batches = sql(&ctx, &q).await?;
            let rows = batches.iter().map(|b| b.num_rows()).sum();
            let w = target
                .replace_where(batches, &format!("event_date IN ({list})"), &[], &run.run_id)
                .await?;
            RollupReport {
                mode: "incremental".into(),
                days: days.len(),
                rows,
                version: w.version,
            }
        }
        _ => {
            // the whole history: streamed from the events into the table (a year of events for
            // 100K accounts does not fit in memory), aggregation spilling beyond the memory limit
            let df = ctx.sql(&source.replace("{{where}}", "")).await?;
            let w = target.overwrite_df(df, &ctx, &run.run_id).await?;
            let days = sql(
                &ctx,
                "SELECT COUNT(DISTINCT CAST(event_time AS DATE)) AS n FROM core.usage_events",
            )
            .await?
            .first()
            .map(|b| crate::lake::query::floats(b, "n"))
            .transpose()?
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0);
            RollupReport {
                mode: "full".into(),
                days: days as usize,
                rows: w.inserted,
                version: w.version,
            }
        }
    };
    run.wrote("features.usage_daily", report.rows, report.version);
    tracing::info!(
        mode = report.mode.as_str(),
        days = report.days,
        rows = report.rows,
        "usage rollup refreshed"
    );
    Ok(Some(report))
}
