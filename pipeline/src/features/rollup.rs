//! Incremental rollups: `features.usage_daily` holds usage per account, day and event type and
//! `features.usage_daily_users` per account, day and user (`sql/rollups/`): the grains the usage
//! views need for every window and distinct count. Both are partitioned by `event_date`. Each
//! refresh recomputes only the days that events ingested since the last refresh touch (late
//! events for an old day included), reading only the event files whose time range holds those
//! days, and replaces only those days' partitions, so a daily run costs one day of events. The
//! high-water mark is the newest `_ingested_at` a rollup reflects. A full rebuild goes range of
//! days by range of days when the events exceed what the memory budget aggregates at once
//! ([`super::ranges`]). A full rebuild and a chain of refreshes give the same tables (tested).

use chrono::NaiveDate;
use cslake_features::ROLLUPS;
use deltalake::datafusion::arrow::datatypes::DataType;
use deltalake::datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};

use crate::features::ranges::DayRanges;
use crate::lake::query::{has_table, sql, strings};
use crate::{Lake, Result, RunContext};

/// More changed days than this and the rollups are rebuilt whole (a first load, a backfill).
const MAX_DAYS_INCREMENTAL: usize = 400;

/// The only rollup column written with a Parquet dictionary. The others (an account or a user
/// per row, sums, counts, timestamps) have about as many distinct values as a day's file has
/// rows: a dictionary would be built only to be abandoned, and the dictionary encoder's hashing
/// was the largest single cost of a full rebuild (perf, 5M events).
const DICTIONARY: &[&str] = &["event_type"];

/// Up to this many changed days (a daily run, a late day or two), the two rollups are refreshed
/// side by side.
const SIDE_BY_SIDE_DAYS: usize = 7;

/// The column the rollups are partitioned by.
const PARTITION: &str = "event_date";

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RollupReport {
    /// `full` or `incremental`
    pub mode: String,
    pub days: usize,
    /// Rows written to `features.usage_daily` (the changed days' rows when incremental).
    pub rows: usize,
    /// Rows written to `features.usage_daily_users`.
    pub user_rows: usize,
    /// The version of `features.usage_daily`.
    pub version: Option<u64>,
    /// How many day ranges a full rebuild aggregated one after the other to stay within the
    /// memory budget (1: all at once; 0 when the refresh was incremental).
    pub ranges: usize,
}

/// Brings the daily usage rollups up to date with `core.usage_events`.
pub async fn refresh_usage_daily(
    lake: &Lake,
    rebuild: bool,
    run: &mut RunContext,
) -> Result<Option<RollupReport>> {
    let ctx = lake.session().await?;
    refresh_usage_daily_in(lake, &ctx, rebuild, run).await
}

/// [`refresh_usage_daily`] on a session of the lake, which then holds the rollups as written:
/// the features run goes on with the same session rather than opening every table again.
pub async fn refresh_usage_daily_in(
    lake: &Lake,
    ctx: &SessionContext,
    rebuild: bool,
    run: &mut RunContext,
) -> Result<Option<RollupReport>> {
    let report = refresh(lake, ctx, rebuild, run).await?;
    let rollups: Vec<(&str, &str)> = ROLLUPS.iter().map(|(name, _)| ("features", *name)).collect();
    lake.reopen(ctx, &rollups).await?;
    Ok(report)
}

async fn refresh(
    lake: &Lake,
    ctx: &SessionContext,
    rebuild: bool,
    run: &mut RunContext,
) -> Result<Option<RollupReport>> {
    if !has_table(ctx, "core.usage_events") {
        return Ok(None);
    }
    // the oldest high-water mark of the two: a refresh that failed between them redoes its days
    let mut watermark: Option<String> = None;
    let mut rebuild = rebuild;
    for (name, _) in ROLLUPS {
        match current_watermark(lake, ctx, name).await? {
            Some(w) if !rebuild => {
                if watermark.as_ref().is_none_or(|m| &w < m) {
                    watermark = Some(w);
                }
            }
            _ => rebuild = true,
        }
    }
    let report = match watermark.filter(|_| !rebuild) {
        Some(w) => {
            let days = changed_days(ctx, &w).await?;
            if days.is_empty() {
                return Ok(Some(RollupReport {
                    mode: "incremental".into(),
                    ..Default::default()
                }));
            }
            if days.len() > MAX_DAYS_INCREMENTAL {
                return Box::pin(refresh(lake, ctx, true, run)).await;
            }
            register_source(ctx, Some(&days)).await?;
            // the days as Date32 literals: partition values delta-rs can match and rewrite
            let list = days
                .iter()
                .map(|d| format!("arrow_cast('{d}', 'Date32')"))
                .collect::<Vec<_>>()
                .join(", ");
            let predicate = format!("{PARTITION} IN ({list})");
            let mut report = RollupReport {
                mode: "incremental".into(),
                days: days.len(),
                ..Default::default()
            };
            // a daily run's events are few: both rollups of them side by side, a commit each;
            // a catch-up of many days one rollup after the other, within the memory budget
            let at_once = if days.len() <= SIDE_BY_SIDE_DAYS {
                ROLLUPS.len()
            } else {
                1
            };
            let (ctx, predicate, run_id) = (ctx, &predicate, &run.run_id);
            let written: Vec<_> = futures::stream::iter(ROLLUPS.iter().map(|(name, rollup)| {
                let q = source_sql(rollup).replace("{{where}}", &format!("WHERE {}", event_days(&list)));
                async move {
                    let df = crate::cluster::for_writer(lake.engine(), ctx, ctx.sql(&q).await?).await?;
                    let w = lake
                        .target("features", name)
                        .with_dictionary_only(DICTIONARY)
                        .replace_partitions_df(df, ctx, &[PARTITION], Some(predicate), run_id)
                        .await?;
                    Ok::<_, crate::Error>((*name, w))
                }
            }))
            .buffered(at_once)
            .try_collect()
            .await?;
            for (i, (name, w)) in written.into_iter().enumerate() {
                record(&mut report, i, w.inserted, w.version);
                run.wrote(&format!("features.{name}"), w.inserted, w.version);
            }
            report
        }
        None => {
            // the whole history, streamed from the events into the tables (a year of events for
            // 100K accounts does not fit in memory), aggregations spilling beyond the memory limit
            register_source(ctx, None).await?;
            let queries: Vec<String> = ROLLUPS.iter().map(|(_, r)| source_sql(r)).collect();
            // a cluster aggregates the whole history at once, spread over its executors
            let ranges = if lake.engine().is_cluster() {
                None
            } else {
                DayRanges::stage(lake, ctx, "rollup_source", &queries).await?
            };
            let mut report = RollupReport {
                mode: "full".into(),
                ranges: ranges.as_ref().map_or(1, DayRanges::len),
                ..Default::default()
            };
            for (i, (name, rollup)) in ROLLUPS.iter().enumerate() {
                let t = std::time::Instant::now();
                let q = source_sql(rollup).replace("{{where}}", "");
                let df = match &ranges {
                    Some(r) => r.each(ctx, &q).await?,
                    None => ctx.sql(&q).await?,
                };
                let df = crate::cluster::for_writer(lake.engine(), ctx, df).await?;
                let w = lake
                    .target("features", name)
                    .with_dictionary_only(DICTIONARY)
                    .replace_partitions_df(df, ctx, &[PARTITION], None, &run.run_id)
                    .await?;
                // where a full build's time goes: aggregation and Delta write, per rollup
                tracing::info!(
                    rollup = *name,
                    rows = w.inserted,
                    seconds = t.elapsed().as_secs_f64(),
                    "rollup rebuilt"
                );
                record(&mut report, i, w.inserted, w.version);
                run.wrote(&format!("features.{name}"), w.inserted, w.version);
            }
            report.days = days_in(lake).await?;
            report
        }
    };
    tracing::info!(
        mode = report.mode.as_str(),
        days = report.days,
        rows = report.rows,
        user_rows = report.user_rows,
        ranges = report.ranges,
        "usage rollups refreshed"
    );
    Ok(Some(report))
}

fn record(report: &mut RollupReport, i: usize, rows: usize, version: Option<u64>) {
    if i == 0 {
        report.rows = rows;
        report.version = version;
    } else {
        report.user_rows = rows;
    }
}

/// The rollup's SELECT over `rollup_source` (the events, narrowed to the days being refreshed).
fn source_sql(rollup: &str) -> String {
    rollup.replace("FROM usage_events", "FROM rollup_source")
}

/// The events' own condition for the days: their date is one of them.
fn event_days(list: &str) -> String {
    format!("CAST(event_time AS DATE) IN ({list})")
}

/// The newest `_ingested_at` a rollup reflects, `None` when it must be (re)built: missing, or in
/// an older layout (one table per account, day, user and event type; not partitioned by day).
async fn current_watermark(lake: &Lake, ctx: &SessionContext, name: &str) -> Result<Option<String>> {
    let table = format!("features.{name}");
    if !has_table(ctx, &table) {
        return Ok(None);
    }
    let provider = ctx.table_provider(table.as_str()).await?;
    let schema = provider.schema();
    let old_layout = name == "usage_daily" && schema.field_with_name("contact_id").is_ok();
    let date_partitioned = matches!(
        schema.field_with_name(PARTITION).map(|f| f.data_type().clone()),
        Ok(DataType::Date32)
    ) && partitioned_by_date(lake, name).await?;
    if old_layout || !date_partitioned {
        tracing::info!(table = table.as_str(), "rollup in an older layout: rebuilt");
        return Ok(None);
    }
    let w = sql(
        ctx,
        &format!("SELECT CAST(MAX(_ingested_at) AS VARCHAR) AS w FROM {table}"),
    )
    .await?
    .first()
    .map(|b| strings(b, "w"))
    .transpose()?
    .and_then(|v| v.into_iter().next().flatten());
    Ok(w)
}

/// The days `features.usage_daily` holds: its partitions, from the Delta log (no data read).
async fn days_in(lake: &Lake) -> Result<usize> {
    let Some(table) = lake.open_table("features", "usage_daily").await? else {
        return Ok(0);
    };
    let snapshot = table.snapshot()?;
    let days: std::collections::HashSet<Option<String>> = snapshot
        .log_data()
        .iter()
        .map(|f| f.partition_values_map().remove(PARTITION).flatten())
        .collect();
    Ok(days.into_iter().flatten().count())
}

/// Whether the Delta table's partition columns are exactly the rollup's day.
async fn partitioned_by_date(lake: &Lake, name: &str) -> Result<bool> {
    let Some(table) = lake.open_table("features", name).await? else {
        return Ok(false);
    };
    let state = table.snapshot()?;
    let cols = state.metadata().partition_columns();
    Ok(cols.len() == 1 && cols[0] == PARTITION)
}

/// The days (UTC) of events ingested after the watermark, read only from the files whose
/// `_ingested_at` range reaches past it.
async fn changed_days(ctx: &SessionContext, watermark: &str) -> Result<Vec<NaiveDate>> {
    let q = format!(
        "SELECT DISTINCT CAST(CAST(event_time AS DATE) AS VARCHAR) AS d FROM core.usage_events \
         WHERE _ingested_at > CAST('{watermark}' AS TIMESTAMP)"
    );
    let mut days: Vec<NaiveDate> = Vec::new();
    for b in sql(ctx, &q).await? {
        days.extend(
            strings(&b, "d")?
                .into_iter()
                .flatten()
                .filter_map(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()),
        );
    }
    days.sort();
    Ok(days)
}

/// Registers `rollup_source`: `core.usage_events`, narrowed with `days` to the events whose time
/// falls on one of them, as ranges the scan prunes files with.
async fn register_source(ctx: &SessionContext, days: Option<&[NaiveDate]>) -> Result<()> {
    let mut df = ctx.table("core.usage_events").await?;
    if let Some(days) = days {
        df = cslake_features::on_days(df, "event_time", days)?;
    }
    ctx.deregister_table("rollup_source")?;
    ctx.register_table("rollup_source", df.into_view())?;
    Ok(())
}
