//! `event_metrics`: the "metric per account per period" of churn analysis, for each event type a
//! company's product emits. The built-in usage views count events of any type; churn usually
//! hangs on particular actions (posts, exports, API calls), so this view is generated from the
//! event types chosen for the lake (the most frequent ones and those the configuration lists):
//! per type, events over 7/30/90 days, their change against the 30 days before, per active user
//! and per licensed seat. The windowed counts are a state, `event_metrics_state` (account × event
//! type): computed from the `usage_daily` rollup's 90-day window for any date, and advanced a day
//! at a time on daily runs by reading five days of the rollup (the new day and the days 7, 30, 60
//! and 90 before it), so a daily run costs in proportion to a day's data, not to 90 days of it.

use crate::registry::{FeatureView, ViewState};
use crate::{Error, Result};

/// One chosen event type and the prefix of its feature columns (`ev_<slug>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMetric {
    pub event_type: String,
    pub column: String,
}

/// The view's name, and the table `features.<name>` it is kept in.
pub const EVENT_METRICS_VIEW: &str = "event_metrics";

/// The state the view reads: per account and chosen event type, events over 7, 30 and 90 days
/// and over the 30 days before the last 30.
pub const EVENT_METRICS_STATE: &str = "event_metrics_state";

/// A column-safe, readable slug of an event type: lower-case ASCII letters, digits and single
/// underscores, at most 40 characters (`"Page Viewed"` -> `page_viewed`).
pub fn slug(event_type: &str) -> String {
    let mut out = String::new();
    for c in event_type.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') && !out.is_empty() {
            out.push('_');
        }
    }
    let mut out: String = out.trim_end_matches('_').chars().take(40).collect();
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// Column prefixes for `types`, in order: `ev_<slug>`, made unique (`ev_x`, `ev_x_2`) where two
/// types share a slug, `ev_type_N` where a type has no letter or digit at all.
pub fn columns(types: &[String]) -> Vec<EventMetric> {
    let mut taken: Vec<String> = Vec::with_capacity(types.len());
    types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let s = slug(t);
            let base = if s.is_empty() {
                format!("ev_type_{}", i + 1)
            } else {
                format!("ev_{s}")
            };
            let mut column = base.clone();
            let mut n = 2;
            while taken.contains(&column) {
                column = format!("{base}_{n}");
                n += 1;
            }
            taken.push(column.clone());
            EventMetric {
                event_type: t.clone(),
                column,
            }
        })
        .collect()
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The generated view over `metrics` (none: no view). `seats`: the lake has subscriptions, so
/// the per-seat metrics are computed (and the view needs them).
pub fn view(metrics: &[EventMetric], seats: bool) -> Result<Option<FeatureView>> {
    if metrics.is_empty() {
        return Ok(None);
    }
    let mut header = vec![
        format!("-- name: {EVENT_METRICS_VIEW}"),
        "-- entity: account".into(),
        "-- grain: one row per account and as_of_date".into(),
        "-- owner: cslake".into(),
        "-- description: Events of each chosen event type (features.event_types): counts over \
         7/30/90 days, change against the 30 days before, per active user and per seat."
            .into(),
        format!(
            "-- sources: usage_events{}",
            if seats { ", subscriptions" } else { "" }
        ),
    ];
    let mut select = Vec::new();
    for m in metrics {
        let (c, t) = (
            &m.column,
            m.event_type.replace('|', "/").replace(['\n', '\r'], " "),
        );
        header.push(format!("-- feature: {c}_7d | {t} events in the last 7 days"));
        header.push(format!("-- feature: {c}_30d | {t} events in the last 30 days"));
        header.push(format!("-- feature: {c}_90d | {t} events in the last 90 days"));
        header.push(format!(
            "-- feature: {c}_trend_30d | change in {t} events, last 30 days against the 30 before (ratio - 1)"
        ));
        header.push(format!(
            "-- feature: {c}_per_user_30d | {t} events per active user in the last 30 days"
        ));
        if seats {
            header.push(format!(
                "-- feature: {c}_per_seat_30d | {t} events per licensed seat in the last 30 days"
            ));
        }
        let n = |s: &str| format!("CAST(COALESCE(t.{c}_{s}, 0) AS DOUBLE)");
        select.push(format!("{} AS {c}_7d", n("n7")));
        select.push(format!("{} AS {c}_30d", n("n30")));
        select.push(format!("{} AS {c}_90d", n("n90")));
        select.push(format!(
            "({} + 1.0) / ({} + 1.0) - 1.0 AS {c}_trend_30d",
            n("n30"),
            n("p30")
        ));
        select.push(format!(
            "{} / GREATEST(CAST(COALESCE(users.users_30d, 0) AS DOUBLE), 1.0) AS {c}_per_user_30d",
            n("n30")
        ));
        if seats {
            select.push(format!(
                "{} / GREATEST(CAST(COALESCE(seats.seats, 0) AS DOUBLE), 1.0) AS {c}_per_seat_30d",
                n("n30")
            ));
        }
    }
    let seats_cte = if seats {
        ",\nseats AS (\n    SELECT account_id, SUM(COALESCE(seats, 0)) AS seats\n    FROM subscriptions\n    \
         WHERE start_date <= {{as_of}} AND (end_date IS NULL OR end_date > {{as_of}})\n    GROUP BY account_id\n)"
    } else {
        ""
    };
    let seats_join = if seats {
        "\nLEFT JOIN seats ON seats.account_id = s.account_id"
    } else {
        ""
    };
    let sql = format!(
        "{header}\n--\n-- Generated by cslake from features.event_types; do not edit (list types in\n\
         -- [features.events] instead).\n\
         --\n-- The windowed counts come from {EVENT_METRICS_STATE} (advanced a day at a time on daily runs),\n\
         -- one row per account, four columns per type.\n\
         WITH users AS (\n    -- distinct users over 30 days, counted once per date for every view (sql/active_users.sql)\n    \
         SELECT account_id, active_users_30d AS users_30d\n    FROM active_users\n)\
         {seats_cte}\n\
         SELECT\n    s.account_id,\n    s.as_of_date,\n    {select}\nFROM spine s\n\
         LEFT JOIN {EVENT_METRICS_STATE} t ON t.account_id = s.account_id\nLEFT JOIN users ON users.account_id = s.account_id{seats_join}\n",
        header = header.join("\n"),
        select = select.join(",\n    "),
    );
    let mut view = FeatureView::parse(&sql, "generated:event_metrics (features.event_types)")?;
    view.state = Some(state(metrics));
    if view.features.len() != metrics.len() * if seats { 6 } else { 5 } {
        return Err(Error::View {
            view: EVENT_METRICS_VIEW.into(),
            path: view.origin.clone(),
            message: "an event type's name broke the generated header".into(),
        });
    }
    Ok(Some(view))
}

/// The state of the view over `metrics`: one row per account with an event of a chosen type in
/// the last 90 days, four counts per type in columns of their own (`<prefix>_n7`, `_n30`, `_p30`
/// for the 30 days before the last 30, `_n90`), from scratch (the 90-day window of
/// `usage_daily`) and as a step from the previous day's rows. One row per account rather than
/// per account and type: the step joins, and the daily run writes, a row per account, and the
/// view reads its columns as they are instead of pivoting the rows.
fn state(metrics: &[EventMetric]) -> ViewState {
    let header = format!(
        "-- state: {EVENT_METRICS_STATE}\n\
         -- description: Per account with an event of a chosen type in the last 90 days, for each\n\
         --   type: events over 7, 30 and 90 days and over the 30 days before the last 30, from the\n\
         --   usage_daily rollup. Generated by cslake from features.event_types; the step advances the\n\
         --   previous day's rows by one day (the new day in, the days 7, 30, 60 and 90 before it out)\n\
         --   and gives the same rows.\n"
    );
    let types = metrics
        .iter()
        .map(|m| lit(&m.event_type))
        .collect::<Vec<_>>()
        .join(", ");
    let (mut scratch, mut moves, mut stepped, mut any) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for m in metrics {
        let (c, name) = (&m.column, lit(&m.event_type));
        for n in ["n7", "n30", "p30", "n90"] {
            scratch.push(format!(
                "CAST(COALESCE(SUM(CASE WHEN event_type = {name} THEN {n} ELSE 0 END), 0) AS BIGINT) AS {c}_{n}"
            ));
        }
        for back in [0, 7, 30, 60, 90] {
            moves.push(format!(
                "SUM(CASE WHEN event_type = {name} AND ago = {back} THEN events ELSE 0 END) AS {c}_d{back}"
            ));
        }
        let p = |n: &str| format!("COALESCE(p.{c}_{n}, 0)");
        let d = |n: u32| format!("COALESCE(m.{c}_d{n}, 0)");
        stepped.push(format!(
            "CAST({} + {} - {} AS BIGINT) AS {c}_n7",
            p("n7"),
            d(0),
            d(7)
        ));
        stepped.push(format!(
            "CAST({} + {} - {} AS BIGINT) AS {c}_n30",
            p("n30"),
            d(0),
            d(30)
        ));
        stepped.push(format!(
            "CAST({} + {} - {} AS BIGINT) AS {c}_p30",
            p("p30"),
            d(30),
            d(60)
        ));
        stepped.push(format!(
            "CAST({} + {} - {} AS BIGINT) AS {c}_n90",
            p("n90"),
            d(0),
            d(90)
        ));
        any.push(format!("{c}_n90 > 0"));
    }
    // per account and type first (four sums over 90 days of rows), then one row per account:
    // a column per type and count costs a comparison per row of the 90 days, not per pair
    let sql = format!(
        "{header}WITH per_type AS (\n    SELECT\n        account_id,\n        event_type,\n        \
         SUM(CASE WHEN event_date > {{{{as_of}}}} - INTERVAL '7' DAY THEN events ELSE 0 END) AS n7,\n        \
         SUM(CASE WHEN event_date > {{{{as_of}}}} - INTERVAL '30' DAY THEN events ELSE 0 END) AS n30,\n        \
         SUM(CASE WHEN event_date <= {{{{as_of}}}} - INTERVAL '30' DAY AND event_date > {{{{as_of}}}} - INTERVAL '60' DAY \
         THEN events ELSE 0 END) AS p30,\n        \
         SUM(events) AS n90\n    \
         FROM usage_daily\n    \
         WHERE event_date <= {{{{as_of}}}} AND event_date > {{{{as_of}}}} - INTERVAL '90' DAY\n      \
         AND event_type IN ({types})\n    \
         GROUP BY account_id, event_type\n)\n\
         SELECT\n    account_id,\n    {{{{as_of}}}} AS as_of_date,\n    {scratch}\n\
         FROM per_type\n\
         GROUP BY account_id\n\
         HAVING SUM(n90) > 0\n",
        scratch = scratch.join(",\n    "),
    );
    let step = format!(
        "{header}WITH days AS (\n    SELECT account_id, event_type, events,\n        \
         CASE WHEN event_date = {{{{as_of}}}} THEN 0\n             \
         WHEN event_date = {{{{as_of}}}} - INTERVAL '7' DAY THEN 7\n             \
         WHEN event_date = {{{{as_of}}}} - INTERVAL '30' DAY THEN 30\n             \
         WHEN event_date = {{{{as_of}}}} - INTERVAL '60' DAY THEN 60\n             \
         ELSE 90 END AS ago\n    \
         FROM usage_daily\n    \
         WHERE (event_date = {{{{as_of}}}}\n       OR event_date = {{{{as_of}}}} - INTERVAL '7' DAY\n       \
         OR event_date = {{{{as_of}}}} - INTERVAL '30' DAY\n       OR event_date = {{{{as_of}}}} - INTERVAL '60' DAY\n       \
         OR event_date = {{{{as_of}}}} - INTERVAL '90' DAY)\n      \
         AND event_type IN ({types})\n),\n\
         moves AS (\n    SELECT\n        account_id,\n        {moves}\n    FROM days\n    GROUP BY account_id\n),\n\
         stepped AS (\n    SELECT\n        COALESCE(p.account_id, m.account_id) AS account_id,\n        \
         {{{{as_of}}}} AS as_of_date,\n        {stepped}\n    \
         FROM previous_state p\n    \
         FULL OUTER JOIN moves m ON m.account_id = p.account_id\n)\n\
         SELECT *\nFROM stepped\nWHERE {any}\n",
        moves = moves.join(",\n        "),
        stepped = stepped.join(",\n        "),
        any = any.join(" OR "),
    );
    ViewState {
        table: EVENT_METRICS_STATE.into(),
        sql,
        step: Some(step),
        origin: "generated:event_metrics.state.sql (features.event_types)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_column_safe_and_unique() {
        assert_eq!(slug("Page Viewed"), "page_viewed");
        assert_eq!(slug("  api-call/v2 "), "api_call_v2");
        assert_eq!(slug("日本"), "");
        let cols = columns(&[
            "Page Viewed".into(),
            "page-viewed".into(),
            "日本".into(),
            "o'brien".into(),
        ]);
        let names: Vec<&str> = cols.iter().map(|c| c.column.as_str()).collect();
        assert_eq!(
            names,
            ["ev_page_viewed", "ev_page_viewed_2", "ev_type_3", "ev_o_brien"]
        );
    }

    #[test]
    fn the_view_has_every_metric_per_type_and_quotes_names() {
        let v = view(&columns(&["login".into(), "o'brien | x".into()]), true)
            .unwrap()
            .unwrap();
        assert_eq!(v.name, "event_metrics");
        assert_eq!(v.sources, ["usage_events", "subscriptions"]);
        assert_eq!(v.features.len(), 12);
        assert_eq!(
            v.features[1],
            (
                "ev_login_30d".to_string(),
                "login events in the last 30 days".to_string()
            )
        );
        let state = v.state.as_ref().unwrap();
        assert!(state.sql.contains("'o''brien | x'"), "{}", state.sql);
        assert!(
            state.step.as_deref().unwrap().contains("'o''brien | x'"),
            "{:?}",
            state.step
        );
        // the view reads the state's columns: one per type and count
        assert!(v.sql.contains("t.ev_o_brien_x_p30"), "{}", v.sql);
        let no_seats = view(&columns(&["login".into()]), false).unwrap().unwrap();
        assert_eq!(no_seats.sources, ["usage_events"]);
        assert!(!no_seats.sql.contains("subscriptions"));
        assert!(view(&[], true).unwrap().is_none());
    }
}
