//! Which event types get metrics of their own (`event_metrics`), chosen once per lake and kept in
//! `features.event_types`: the feature columns must be the same for every date a model is
//! trained on and every day it scores, so the choice is not remade from each day's data. It is
//! made again when `[features.events]` changes (or the table is removed); the view's table then
//! starts again with the new columns, and a model trained on the old ones asks to be retrained.
//!
//! The choice reads every event known when it is made: which types exist is a property of the
//! product, not of any one date, and the values computed from the types stay as-of correct.

use std::sync::Arc;

use cslake_features::{EventMetric, event_metric_columns};
use deltalake::arrow::array::{Array, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use deltalake::datafusion::prelude::SessionContext;
use sha2::{Digest, Sha256};

use crate::lake::query::{has_table, sql, strings, with_run_id};
use crate::settings::EventsConfig;
use crate::{Lake, Result, RunContext};

/// The table the choice is kept in.
pub const TABLE: &str = "features.event_types";

/// One event type seen in the lake and what became of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventTypeChoice {
    pub event_type: String,
    /// The prefix of its feature columns (`ev_<slug>`), when chosen.
    pub column: Option<String>,
    pub events: i64,
    pub accounts: i64,
    /// Why it has no metrics (`too rare: 3 of 400 accounts`, `beyond the top 10`, `excluded`).
    pub skipped: Option<String>,
}

/// What `features` reports about the choice.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EventTypesReport {
    /// The chosen types, in column order.
    pub chosen: Vec<String>,
    /// `type: reason` for every type seen and not chosen.
    pub skipped: Vec<String>,
    /// Whether this run made the choice (`false`: the kept one was used).
    pub chosen_now: bool,
}

fn definition(config: &EventsConfig) -> String {
    let json = serde_json::to_string(config).unwrap_or_default();
    Sha256::digest(json.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The kept choice as a table: chosen types first, in column order, then the skipped ones.
pub async fn table(lake: &Lake) -> Result<Vec<RecordBatch>> {
    let ctx = lake.session().await?;
    if !has_table(&ctx, TABLE) {
        return Ok(Vec::new());
    }
    sql(
        &ctx,
        &format!(
            "SELECT event_type, chosen, column_prefix, events, accounts, skipped, chosen_at \
             FROM {TABLE} ORDER BY chosen DESC, rank"
        ),
    )
    .await
}

/// The kept choice, in column order (empty when none was made or per-type metrics are off).
pub async fn chosen(ctx: &SessionContext, config: &EventsConfig) -> Result<Vec<EventMetric>> {
    if !config.enabled || !has_table(ctx, TABLE) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for b in sql(
        ctx,
        &format!("SELECT event_type, column_prefix FROM {TABLE} WHERE chosen ORDER BY rank"),
    )
    .await?
    {
        let (t, c) = (strings(&b, "event_type")?, strings(&b, "column_prefix")?);
        for (t, c) in t.into_iter().zip(c) {
            if let (Some(event_type), Some(column)) = (t, c) {
                out.push(EventMetric { event_type, column });
            }
        }
    }
    Ok(out)
}

/// Makes the choice when there is none, the configuration changed since, or `again` asks for a
/// new one (`cslake features event-types --choose`); otherwise reports the kept one. `None` when
/// per-type metrics are off or the lake has no events yet.
pub async fn ensure(
    lake: &Lake,
    config: &EventsConfig,
    again: bool,
    run: &mut RunContext,
) -> Result<Option<EventTypesReport>> {
    if !config.enabled {
        // no session opened for nothing
        return Ok(None);
    }
    ensure_in(lake, &lake.session().await?, config, again, run).await
}

/// [`ensure`] on a session of the lake, which then holds the kept choice.
pub async fn ensure_in(
    lake: &Lake,
    ctx: &SessionContext,
    config: &EventsConfig,
    again: bool,
    run: &mut RunContext,
) -> Result<Option<EventTypesReport>> {
    if !config.enabled {
        return Ok(None);
    }
    if !has_table(ctx, "core.usage_events") {
        return Ok(None);
    }
    let def = definition(config);
    if has_table(ctx, TABLE) && !again {
        let kept = sql(
            ctx,
            &format!(
                "SELECT event_type, chosen, skipped, _definition FROM {TABLE} ORDER BY chosen DESC, rank"
            ),
        )
        .await?;
        let mut report = EventTypesReport::default();
        let mut same = true;
        for b in &kept {
            let (t, r, d) = (
                strings(b, "event_type")?,
                strings(b, "skipped")?,
                strings(b, "_definition")?,
            );
            for i in 0..b.num_rows() {
                same &= d[i].as_deref() == Some(def.as_str());
                let t = t[i].clone().unwrap_or_default();
                match &r[i] {
                    Some(reason) => report.skipped.push(format!("{t}: {reason}")),
                    None => report.chosen.push(t),
                }
            }
        }
        if same && !report.chosen.is_empty() {
            return Ok(Some(report));
        }
    }
    let choices = choose(ctx, config).await?;
    if choices.iter().all(|c| c.column.is_none()) {
        tracing::info!("no event type to measure on its own yet");
        return Ok(None);
    }
    let report = EventTypesReport {
        chosen: choices
            .iter()
            .filter(|c| c.column.is_some())
            .map(|c| c.event_type.clone())
            .collect(),
        skipped: choices
            .iter()
            .filter_map(|c| c.skipped.as_ref().map(|r| format!("{}: {r}", c.event_type)))
            .collect(),
        chosen_now: true,
    };
    tracing::info!(chosen = ?report.chosen, skipped = report.skipped.len(), "event types chosen for per-type metrics");
    store(lake, &choices, &def, run).await?;
    lake.reopen(ctx, &[("features", "event_types")]).await?;
    Ok(Some(report))
}

/// Every event type with its events and accounts, and the choice: listed types first (in the
/// order given), then the most frequent of the rest down to `top`, too-rare ones skipped.
///
/// One aggregation to (event type, account) pairs, streamed and counted here: the pairs are far
/// fewer than the rollup's rows, and the accounts of all types are counted from them too. Two
/// aggregations over the rollup (per type with distinct accounts, then distinct accounts) took
/// 5.6 s of a 56 s first build (perf, 50M events); this one about 3.5 s.
async fn choose(ctx: &SessionContext, config: &EventsConfig) -> Result<Vec<EventTypeChoice>> {
    use deltalake::arrow::array::AsArray;
    use deltalake::arrow::compute::cast;
    use deltalake::arrow::datatypes::Int64Type;
    use futures::StreamExt;

    // the rollup when materialised (an account-day-type row per group), else the events
    let source = if has_table(ctx, "features.usage_daily") {
        "SELECT account_id, event_type, events FROM features.usage_daily"
    } else {
        "SELECT account_id, event_type, 1 AS events FROM core.usage_events"
    };
    let mut pairs = ctx
        .sql(&format!(
            "SELECT event_type, account_id, CAST(SUM(events) AS BIGINT) AS events \
             FROM ({source}) e GROUP BY event_type, account_id"
        ))
        .await?
        .execute_stream()
        .await?;
    // per type: events and accounts; and every account with an event of any type
    let mut types: std::collections::HashMap<String, (i64, i64)> = Default::default();
    let mut accounts: std::collections::HashSet<String> = Default::default();
    while let Some(b) = pairs.next().await {
        let b = b?;
        let (t, a) = (
            cast(b.column(0), &DataType::Utf8)?,
            cast(b.column(1), &DataType::Utf8)?,
        );
        let (t, a, e) = (
            t.as_string::<i32>(),
            a.as_string::<i32>(),
            b.column(2).as_primitive::<Int64Type>(),
        );
        for i in 0..b.num_rows() {
            if a.is_valid(i) && !accounts.contains(a.value(i)) {
                accounts.insert(a.value(i).to_string());
            }
            if t.is_valid(i) {
                let entry = types.entry(t.value(i).to_string()).or_default();
                entry.0 += e.value(i);
                entry.1 += i64::from(a.is_valid(i));
            }
        }
    }
    let mut seen: Vec<(String, i64, i64)> = types.into_iter().map(|(t, (e, a))| (t, e, a)).collect();
    // most frequent first; ties by name, so the choice does not depend on the scan's order
    seen.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    Ok(decide(config, &seen, accounts.len() as f64))
}

/// The choice from `(type, events, accounts)` sorted by events; `total` accounts with events.
fn decide(config: &EventsConfig, seen: &[(String, i64, i64)], total: f64) -> Vec<EventTypeChoice> {
    let min_accounts = (config.min_account_share * total).ceil().max(1.0) as i64;
    let mut picked: Vec<String> = config
        .types
        .iter()
        .filter(|t| !config.exclude.contains(t))
        .cloned()
        .collect();
    picked.dedup();
    let mut reasons: Vec<(String, String)> = Vec::new();
    let mut frequent = 0;
    for (t, _, accounts) in seen {
        if picked.contains(t) {
            continue;
        }
        let reason = if config.exclude.contains(t) {
            Some("excluded in [features.events]".to_string())
        } else if *accounts < min_accounts {
            Some(format!(
                "too rare: used by {accounts} of {total} accounts (fewer than {:.0}%)",
                config.min_account_share * 100.0
            ))
        } else if frequent >= config.top {
            Some(format!("beyond the {} most frequent", config.top))
        } else {
            None
        };
        match reason {
            Some(r) => reasons.push((t.clone(), r)),
            None => {
                frequent += 1;
                picked.push(t.clone());
            }
        }
    }
    let columns = event_metric_columns(&picked);
    let stat = |t: &str| {
        seen.iter()
            .find(|(x, _, _)| x == t)
            .map_or((0, 0), |(_, e, a)| (*e, *a))
    };
    columns
        .into_iter()
        .map(|m| {
            let (events, accounts) = stat(&m.event_type);
            EventTypeChoice {
                event_type: m.event_type,
                column: Some(m.column),
                events,
                accounts,
                skipped: None,
            }
        })
        .chain(reasons.into_iter().map(|(t, r)| {
            let (events, accounts) = stat(&t);
            EventTypeChoice {
                event_type: t,
                column: None,
                events,
                accounts,
                skipped: Some(r),
            }
        }))
        .collect()
}

async fn store(lake: &Lake, choices: &[EventTypeChoice], def: &str, run: &mut RunContext) -> Result<()> {
    let n = choices.len();
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_type", DataType::Utf8, false),
        Field::new("chosen", DataType::Boolean, false),
        Field::new("rank", DataType::Int32, false),
        Field::new("column_prefix", DataType::Utf8, true),
        Field::new("events", DataType::Int64, false),
        Field::new("accounts", DataType::Int64, false),
        Field::new("skipped", DataType::Utf8, true),
        Field::new(
            "chosen_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("_definition", DataType::Utf8, false),
    ]));
    let now = chrono::Utc::now().timestamp_micros();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(
                choices.iter().map(|c| c.event_type.as_str()),
            )),
            Arc::new(BooleanArray::from_iter(
                choices.iter().map(|c| Some(c.column.is_some())),
            )),
            Arc::new(Int32Array::from_iter_values(0..n as i32)),
            Arc::new(StringArray::from_iter(
                choices.iter().map(|c| c.column.as_deref()),
            )),
            Arc::new(Int64Array::from_iter_values(choices.iter().map(|c| c.events))),
            Arc::new(Int64Array::from_iter_values(choices.iter().map(|c| c.accounts))),
            Arc::new(StringArray::from_iter(
                choices.iter().map(|c| c.skipped.as_deref()),
            )),
            Arc::new(
                deltalake::arrow::array::TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec![def; n])),
        ],
    )?;
    let batch = with_run_id(&batch, &run.run_id)?;
    let w = lake
        .target("features", "event_types")
        .overwrite(vec![batch], &run.run_id)
        .await?;
    run.wrote(TABLE, n, w.version);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen() -> Vec<(String, i64, i64)> {
        vec![
            ("login".into(), 9000, 100),
            ("view".into(), 5000, 90),
            ("export".into(), 800, 60),
            ("debug".into(), 700, 50),
            ("sso_setup".into(), 3, 2),
        ]
    }

    #[test]
    fn the_most_frequent_listed_and_not_rare_types_are_chosen() {
        let config = EventsConfig {
            top: 2,
            types: vec!["sso_setup".into()],
            exclude: vec!["view".into()],
            ..Default::default()
        };
        let c = decide(&config, &seen(), 100.0);
        let chosen: Vec<(&str, &str)> = c
            .iter()
            .filter_map(|c| Some((c.event_type.as_str(), c.column.as_deref()?)))
            .collect();
        assert_eq!(
            chosen,
            [
                ("sso_setup", "ev_sso_setup"),
                ("login", "ev_login"),
                ("export", "ev_export")
            ]
        );
        let skipped: Vec<String> = c
            .iter()
            .filter_map(|c| Some(format!("{}: {}", c.event_type, c.skipped.as_ref()?)))
            .collect();
        assert_eq!(
            skipped,
            [
                "view: excluded in [features.events]",
                "debug: beyond the 2 most frequent"
            ]
        );
        // unlisted, the rare type is skipped with its numbers
        let c = decide(&EventsConfig::default(), &seen(), 100.0);
        assert_eq!(c.iter().filter(|c| c.column.is_some()).count(), 4);
        assert_eq!(
            c.last().unwrap().skipped.as_deref(),
            Some("too rare: used by 2 of 100 accounts (fewer than 5%)")
        );
    }
}
