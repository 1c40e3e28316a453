//! View states: what a view keeps from one day to the next (`NAME.state.sql`, advanced a day at a
//! time by `NAME.step.sql`; see [`crate::ViewState`]). This crate computes them; the pipeline
//! decides whether the previous day's rows can be stepped from and keeps them in the lake.

use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;

use crate::{Error, FeatureView, Result, ViewState, render};
use datafusion::datasource::MemTable;

/// The previous day's rows of view states, by state table, for [`crate::compute_all`] to step from.
pub type PreviousStates = std::collections::HashMap<String, Arc<dyn datafusion::catalog::TableProvider>>;

/// Registers `batches` as table `name` (replacing it), keeping their schema.
pub(crate) fn register_batches(ctx: &SessionContext, name: &str, batches: Vec<RecordBatch>) -> Result<()> {
    let schema = match batches.first() {
        Some(b) => b.schema(),
        None => {
            return Err(Error::View {
                view: name.into(),
                path: String::new(),
                message: "produced no batches".into(),
            });
        }
    };
    ctx.deregister_table(name)?;
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    Ok(())
}

/// A view's state as of a date, and how it was obtained.
#[derive(Debug, Clone)]
pub struct ComputedState {
    /// What keeps it: a view, or the shared table itself (`active_users`).
    pub view: String,
    /// The state's table (`features.<table>` in the lake).
    pub table: String,
    pub batches: Vec<RecordBatch>,
    /// Advanced from the previous day's rows (`true`) or computed from scratch.
    pub stepped: bool,
}

/// What [`crate::compute_all`] computed as of a date: each view's rows, and the states they read.
#[derive(Debug, Clone, Default)]
pub struct Computed {
    pub views: Vec<(String, Vec<RecordBatch>)>,
    pub states: Vec<ComputedState>,
}

/// Runs `sql` and collects it, keeping its schema when it returns no row.
pub(crate) async fn collect_sql(
    ctx: &SessionContext,
    sql: &str,
    view: &str,
    as_of: NaiveDate,
) -> Result<Vec<RecordBatch>> {
    let wrap = |source| Error::Query {
        view: view.to_string(),
        as_of: as_of.to_string(),
        source,
    };
    let df = ctx.sql(sql).await.map_err(wrap)?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(wrap)?;
    Ok(if batches.is_empty() {
        vec![RecordBatch::new_empty(schema)]
    } else {
        batches
    })
}

/// Computes the state `view` keeps as of `as_of` (spine and rollups registered) and registers it
/// under its table name: advanced by its step from `previous` (the state's rows as of the day
/// before) when given and the view has a step, else from scratch. `None` when the view keeps no
/// state.
pub async fn compute_state(
    ctx: &SessionContext,
    view: &FeatureView,
    as_of: NaiveDate,
    previous: Option<Arc<dyn datafusion::catalog::TableProvider>>,
) -> Result<Option<ComputedState>> {
    let Some(state) = view.state.as_ref() else {
        return Ok(None);
    };
    compute_kept(ctx, &view.name, state, as_of, previous)
        .await
        .map(Some)
}

/// [`compute_state`] for any kept state, a view's or a shared table's (`owner`: what owns it).
/// The previous day's rows are registered as `previous_<table>` and the step's `previous_state`
/// read from there, so states computed side by side on one session do not see each other's.
pub async fn compute_kept(
    ctx: &SessionContext,
    owner: &str,
    state: &ViewState,
    as_of: NaiveDate,
    previous: Option<Arc<dyn datafusion::catalog::TableProvider>>,
) -> Result<ComputedState> {
    let step = state.step.as_deref().zip(previous);
    let stepped = step.is_some();
    let batches = match step {
        Some((step, previous)) => {
            let alias = format!("previous_{}", state.table);
            ctx.deregister_table(alias.as_str())?;
            ctx.register_table(alias.as_str(), previous)?;
            let sql = replace_word(&render(step, as_of, &[]), "previous_state", &alias);
            let out = collect_sql(ctx, &sql, &state.table, as_of).await;
            ctx.deregister_table(alias.as_str())?;
            out?
        }
        None => collect_sql(ctx, &render(&state.sql, as_of, &[]), &state.table, as_of).await?,
    };
    register_batches(ctx, &state.table, batches.clone())?;
    Ok(ComputedState {
        view: owner.to_string(),
        table: state.table.clone(),
        batches,
        stepped,
    })
}

/// `text` with every whole-word `word` (not part of a longer identifier) replaced by `with`.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(word) {
        let before = rest[..at].chars().next_back();
        let after = rest[at + word.len()..].chars().next();
        let whole = !before.is_some_and(ident) && !after.is_some_and(ident);
        out.push_str(&rest[..at]);
        out.push_str(if whole { with } else { word });
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;
    use datafusion::arrow::array::{Date32Array, Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::MemTable;

    /// A small deterministic generator (xorshift64) for the generated usage below.
    fn xorshift(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    /// Daily usage of `accounts` accounts over `days` days: bursts and gaps longer than 90 days,
    /// accounts that start late, fractional and zero quantities, several event types a day.
    fn usage_daily(seed: u64, accounts: usize, days: i32) -> RecordBatch {
        let mut next = xorshift(seed);
        let (mut acct, mut date, mut ty, mut qty, mut events) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for a in 0..accounts {
            let start = (next() % 150) as i32;
            let quiet_from = (next() % 200) as i32;
            let quiet_len = (next() % 120) as i32;
            let rate = 1 + next() % 6;
            for d in start..days {
                if (quiet_from..quiet_from + quiet_len).contains(&d) || next() % 10 >= rate {
                    continue;
                }
                for t in 0..(1 + next() % 3) {
                    acct.push(format!("A{a:03}"));
                    date.push(20_000 + d);
                    ty.push(format!("type_{t}"));
                    qty.push(match next() % 5 {
                        0 => 0.0,
                        1 => (next() % 100) as f64 / 10.0,
                        _ => (1 + next() % 20) as f64,
                    });
                    events.push(1 + (next() % 40) as i64);
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("account_id", DataType::Utf8, false),
            Field::new("event_date", DataType::Date32, false),
            Field::new("event_type", DataType::Utf8, false),
            Field::new("quantity", DataType::Float64, false),
            Field::new("events", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(acct)),
                Arc::new(Date32Array::from(date)),
                Arc::new(StringArray::from(ty)),
                Arc::new(Float64Array::from(qty)),
                Arc::new(Int64Array::from(events)),
            ],
        )
        .unwrap()
    }

    async fn shown(ctx: &SessionContext, sql: &str) -> String {
        let rows = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        pretty_format_batches(&rows).unwrap().to_string()
    }

    const USAGE_ACTIVITY_STATE: &str = "SELECT account_id, as_of_date, events_7d + 0.0, events_30d + 0.0, \
         events_35d + 0.0, events_prev_30d + 0.0, events_90d + 0.0, active_days_30d, active_days_90d, \
         last_event_date FROM usage_activity_state ORDER BY account_id";

    /// Daily users of `accounts` accounts over `days` days: each account draws from its own few
    /// users (so they come back after gaps of every length, within and past 7 and 30 days), some
    /// days with none, a null contact now and then.
    fn usage_daily_users(seed: u64, accounts: usize, days: i32) -> RecordBatch {
        let mut next = xorshift(seed);
        let (mut acct, mut date, mut user, mut events) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for a in 0..accounts {
            let users = 1 + next() % 12;
            let rate = next() % 10;
            for d in 0..days {
                for u in 0..users {
                    if next() % 40 >= rate {
                        continue;
                    }
                    acct.push(format!("A{a:03}"));
                    date.push(20_000 + d);
                    user.push((!next().is_multiple_of(50)).then(|| format!("u{u}")));
                    events.push(1 + (next() % 5) as i64);
                }
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("account_id", DataType::Utf8, false),
            Field::new("event_date", DataType::Date32, false),
            Field::new("contact_id", DataType::Utf8, true),
            Field::new("events", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(acct)),
                Arc::new(Date32Array::from(date)),
                Arc::new(StringArray::from(user)),
                Arc::new(Int64Array::from(events)),
            ],
        )
        .unwrap()
    }

    /// Computes `view`'s state from scratch on day 120 of generated usage (before some accounts
    /// start), steps it 100 days and compares it with the state from scratch every third day:
    /// past every window's edge, and accounts back from more than 90 quiet days.
    async fn stepped_equals_scratch(view: &FeatureView, shown_sql: &str) {
        stepped_state_equals_scratch(view.state.as_ref().unwrap(), shown_sql).await
    }

    async fn stepped_state_equals_scratch(kept: &ViewState, shown_sql: &str) {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for seed in [7_u64, 987_654_321] {
            let ctx = SessionContext::new();
            for (name, batch) in [
                ("usage_daily", usage_daily(seed, 40, 300)),
                ("usage_daily_users", usage_daily_users(seed, 40, 300)),
            ] {
                ctx.register_table(
                    name,
                    Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap()),
                )
                .unwrap();
            }
            let first = epoch + chrono::Duration::days(20_120);
            let mut state = compute_kept(&ctx, "test", kept, first, None).await.unwrap();
            assert!(!state.stepped);
            for i in 1..=100 {
                let day = first + chrono::Duration::days(i);
                let previous = Arc::new(
                    MemTable::try_new(state.batches[0].schema(), vec![state.batches.clone()]).unwrap(),
                );
                state = compute_kept(&ctx, "test", kept, day, Some(previous))
                    .await
                    .unwrap();
                assert!(state.stepped);
                if i % 3 != 0 {
                    continue;
                }
                let stepped = shown(&ctx, shown_sql).await;
                let scratch = compute_kept(&ctx, "test", kept, day, None).await.unwrap();
                assert!(!scratch.stepped);
                let expected = shown(&ctx, shown_sql).await;
                assert_eq!(
                    stepped, expected,
                    "{}, seed {seed}, {day}: the step drifted from the state computed from scratch",
                    kept.table
                );
                assert!(expected.lines().count() > 10, "{expected}");
            }
        }
    }

    #[tokio::test]
    async fn a_state_stepped_day_by_day_equals_the_state_computed_from_scratch() {
        let registry = Registry::builtin().unwrap();
        stepped_equals_scratch(registry.get("usage_activity").unwrap(), USAGE_ACTIVITY_STATE).await;
    }

    #[tokio::test]
    async fn the_event_metrics_state_stepped_day_by_day_equals_the_state_computed_from_scratch() {
        // a type the usage never has, and one with a quote in its name, change nothing
        let types = ["type_0".to_string(), "type_2".into(), "o'never".into()];
        let view = crate::event_metrics::view(&crate::event_metrics::columns(&types), false)
            .unwrap()
            .unwrap();
        stepped_equals_scratch(
            &view,
            "SELECT account_id, as_of_date, ev_type_0_n7, ev_type_0_n30, ev_type_0_p30, ev_type_0_n90, \
             ev_type_2_n7, ev_type_2_n30, ev_type_2_p30, ev_type_2_n90, \
             ev_o_never_n7 + ev_o_never_n30 + ev_o_never_p30 + ev_o_never_n90 AS never \
             FROM event_metrics_state ORDER BY account_id",
        )
        .await;
    }

    #[tokio::test]
    async fn the_active_users_stepped_day_by_day_equal_the_users_counted_from_scratch() {
        let shared = crate::shared_states();
        let active = shared.iter().find(|s| s.table == "active_users").unwrap();
        stepped_state_equals_scratch(
            active,
            "SELECT account_id, as_of_date, active_users_7d, active_users_30d FROM active_users \
             ORDER BY account_id",
        )
        .await;
    }

    #[test]
    fn only_whole_words_are_replaced() {
        assert_eq!(
            replace_word(
                "FROM previous_state p JOIN previous_states q ON x.previous_state = my_previous_state",
                "previous_state",
                "previous_t"
            ),
            "FROM previous_t p JOIN previous_states q ON x.previous_t = my_previous_state"
        );
    }
}
