//! View states kept between daily runs: `features.<view>_state`, partitioned by `as_of_date`,
//! the rows a view's `NAME.state.sql` computes from scratch and its `NAME.step.sql` advances by
//! one day (see `cslake_features::ViewState`). A daily run steps from the previous day's rows
//! only when they can be trusted to equal a computation from scratch:
//! - they exist (`features` ran for the day before, not in `--strict` mode);
//! - they were computed by the same state and step SQL (`_definition`, a hash of both);
//! - no partition of the rollups they read, up to that day, was written after them
//!   (`_computed_at` against the Delta files' modification times): late events for an old day,
//!   an erasure or a rollup rebuild all rewrite a partition, and any of them means a full
//!   computation.
//!
//! Otherwise the state is computed from scratch, and written either way for the next day. Only
//! the last [`KEEP_DAYS`] dates are kept: a step needs only the day before, and a backfill
//! computes its first date from scratch.

use std::sync::Arc;

use chrono::{Duration, NaiveDate, Utc};
use cslake_features::{ComputedState, PreviousStates, ROLLUPS, Registry, ViewState};
use deltalake::datafusion::arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use deltalake::datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::query::{append_column, has_table, sql, strings, with_run_id};
use crate::{Lake, Result};

/// How many dates of a state the lake keeps.
pub const KEEP_DAYS: i64 = 7;

/// How a state was brought to the as-of date.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StateReport {
    /// `features.<view>_state`
    pub table: String,
    /// `step` (from the previous day's rows) or `full`
    pub mode: String,
    /// Why a state was computed in full.
    pub reason: Option<String>,
    pub rows: usize,
    pub version: Option<u64>,
}

/// A hash of the state's SQL: rows computed by other SQL are not stepped from.
pub fn definition(state: &ViewState) -> String {
    crate::lake::erasures::sha256(&format!(
        "{}\n--step--\n{}",
        state.sql,
        state.step.as_deref().unwrap_or("")
    ))
}

/// The previous day's rows of every state that can be stepped from, and for the others why not.
pub async fn previous(
    lake: &Lake,
    ctx: &SessionContext,
    registry: &Registry,
    as_of: NaiveDate,
    strict: bool,
) -> Result<(PreviousStates, Vec<(String, String)>)> {
    let mut ok = PreviousStates::new();
    let mut why_not = Vec::new();
    let written = if strict {
        Vec::new()
    } else {
        rollups_written(lake).await?
    };
    for (_, state) in registry.kept_states() {
        if state.step.is_none() {
            continue;
        }
        let table = format!("features.{}", state.table);
        let verdict = if strict {
            Err("a --strict run computes from what was known then".to_string())
        } else {
            check(ctx, &state, as_of, &written).await?
        };
        match verdict {
            Ok(()) => {
                let day = as_of - Duration::days(1);
                let rows = ctx
                    .table(table.as_str())
                    .await?
                    .filter(deltalake::datafusion::prelude::col("as_of_date").eq(date_lit(day)))?;
                ok.insert(state.table.clone(), rows.into_view());
            }
            Err(reason) => {
                tracing::info!(
                    state = table.as_str(),
                    reason = reason.as_str(),
                    "state computed in full"
                );
                why_not.push((state.table.clone(), reason));
            }
        }
    }
    Ok((ok, why_not))
}

fn date_lit(d: NaiveDate) -> deltalake::datafusion::prelude::Expr {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    deltalake::datafusion::prelude::lit(deltalake::datafusion::common::ScalarValue::Date32(Some(
        (d - epoch).num_days() as i32,
    )))
}

/// When each day of each rollup was last written: (rollup, day, newest file modification time in
/// ms), read once for every state's check.
async fn rollups_written(lake: &Lake) -> Result<Vec<(&'static str, String, i64)>> {
    let mut out = Vec::new();
    for (rollup, _) in ROLLUPS {
        let Some(t) = lake.open_table("features", rollup).await? else {
            continue;
        };
        let mut newest: std::collections::HashMap<String, i64> = Default::default();
        for f in t.snapshot()?.log_data().iter() {
            if let Some(day) = f.partition_values_map().get("event_date").cloned().flatten() {
                let at = newest.entry(day).or_insert(i64::MIN);
                *at = (*at).max(f.modification_time());
            }
        }
        out.extend(newest.into_iter().map(|(day, at)| (*rollup, day, at)));
    }
    Ok(out)
}

/// `Ok` when the state's rows of the day before `as_of` can be stepped from, else the reason.
/// `written`: when each rollup day was last written ([`rollups_written`]).
async fn check(
    ctx: &SessionContext,
    state: &ViewState,
    as_of: NaiveDate,
    written: &[(&'static str, String, i64)],
) -> Result<std::result::Result<(), String>> {
    let table = format!("features.{}", state.table);
    let day = as_of - Duration::days(1);
    if !has_table(ctx, &table) {
        return Ok(Err("no earlier state".into()));
    }
    let found = sql(
        ctx,
        &format!(
            "SELECT CAST(COUNT(*) AS VARCHAR) AS n, MIN(_definition) AS lo, MAX(_definition) AS hi, \
             CAST(CAST(MIN(_computed_at) AS BIGINT) AS VARCHAR) AS at \
             FROM {table} WHERE as_of_date = DATE '{day}'"
        ),
    )
    .await;
    let Ok(found) = found else {
        return Ok(Err(format!("{table} is in an older layout")));
    };
    let first = |col: &str| -> Result<Option<String>> {
        Ok(match found.first() {
            Some(b) => strings(b, col)?.into_iter().next().flatten(),
            None => None,
        })
    };
    if first("n")?.is_none_or(|n| n == "0") {
        return Ok(Err(format!("no state as of {day}")));
    }
    let wanted = definition(state);
    if first("lo")?.as_deref() != Some(wanted.as_str()) || first("hi")?.as_deref() != Some(wanted.as_str()) {
        return Ok(Err(format!("the state of {day} was computed by other SQL")));
    }
    // `_computed_at` in µs; Delta records file modification times in ms
    let Some(at) = first("at")?.and_then(|a| a.parse::<i64>().ok()) else {
        return Ok(Err(format!("the state of {day} has no computation time")));
    };
    let at_ms = at / 1000;
    let day_s = day.to_string();
    let reads = |rollup: &str| {
        state.sql.contains(rollup) || state.step.as_deref().is_some_and(|s| s.contains(rollup))
    };
    let mut changed: Vec<&(&str, String, i64)> = written
        .iter()
        .filter(|(rollup, on, modified)| reads(rollup) && on.as_str() <= day_s.as_str() && *modified > at_ms)
        .collect();
    changed.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    if let Some((rollup, on, _)) = changed.first() {
        return Ok(Err(format!(
            "features.{rollup} changed for {on} after the state of {day} was computed"
        )));
    }
    Ok(Ok(()))
}

/// Writes the states computed as of `as_of` (their date's partition replaced, dates older than
/// [`KEEP_DAYS`] dropped in the same commit), with their definition and computation time.
pub async fn write(
    lake: &Lake,
    registry: &Registry,
    as_of: NaiveDate,
    states: Vec<ComputedState>,
    reasons: &[(String, String)],
    computed_at: chrono::DateTime<Utc>,
    run_id: &str,
) -> Result<Vec<StateReport>> {
    // each state its own table: committed side by side
    let kept = registry.kept_states();
    let written = futures::future::try_join_all(states.into_iter().filter_map(|st| {
        let def = kept
            .iter()
            .find(|(_, s)| s.table == st.table)
            .map(|(_, s)| definition(s))?;
        Some(async move {
            let rows: usize = st.batches.iter().map(|b| b.num_rows()).sum();
            let mut batches = Vec::with_capacity(st.batches.len());
            for b in &st.batches {
                let n = b.num_rows();
                let d: ArrayRef = Arc::new(StringArray::from(vec![def.as_str(); n]));
                let b = append_column(b, Field::new("_definition", DataType::Utf8, false), d)?;
                let t: ArrayRef = Arc::new(
                    TimestampMicrosecondArray::from(vec![computed_at.timestamp_micros(); n])
                        .with_timezone("UTC"),
                );
                let b = append_column(
                    &b,
                    Field::new(
                        "_computed_at",
                        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                        false,
                    ),
                    t,
                )?;
                batches.push(with_run_id(&b, run_id)?);
            }
            let oldest = as_of - Duration::days(KEEP_DAYS);
            let w = crate::features::write::replace_dated(
                lake,
                &st.table,
                batches,
                &format!("as_of_date = '{as_of}' OR as_of_date < '{oldest}'"),
                run_id,
            )
            .await?;
            Ok::<_, crate::Error>((st, rows, w.version))
        })
    }))
    .await?;
    let mut out = Vec::with_capacity(written.len());
    for (st, rows, version) in written {
        out.push(StateReport {
            table: format!("features.{}", st.table),
            mode: if st.stepped { "step" } else { "full" }.into(),
            reason: reasons
                .iter()
                .find(|(t, _)| *t == st.table)
                .map(|(_, r)| r.clone()),
            rows,
            version,
        });
    }
    Ok(out)
}
