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
    let mut pivot = Vec::new();
    let mut select = Vec::new();
    for m in metrics {
        let (c, t) = (
            &m.column,
            m.event_type.replace('|', "/").replace(['\n', '\r'], " "),
        );
        let name = lit(&m.event_type);
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
        for (suffix, col) in [("7d", "n7"), ("30d", "n30"), ("prev_30d", "p30"), ("90d", "n90")] {
            pivot.push(format!(
                "SUM(CASE WHEN event_type = {name} THEN {col} ELSE 0 END) AS {c}_{suffix}"
            ));
        }
        let n = |s: &str| format!("CAST(COALESCE(t.{c}_{s}, 0) AS DOUBLE)");
        select.push(format!("{} AS {c}_7d", n("7d")));
        select.push(format!("{} AS {c}_30d", n("30d")));
        select.push(format!("{} AS {c}_90d", n("90d")));
        select.push(format!(
            "({} + 1.0) / ({} + 1.0) - 1.0 AS {c}_trend_30d",
            n("30d"),
            n("prev_30d")
        ));
        select.push(format!(
            "{} / GREATEST(CAST(COALESCE(users.users_30d, 0) AS DOUBLE), 1.0) AS {c}_per_user_30d",
            n("30d")
        ));
        if seats {
            select.push(format!(
                "{} / GREATEST(CAST(COALESCE(seats.seats, 0) AS DOUBLE), 1.0) AS {c}_per_seat_30d",
                n("30d")
            ));
        }
    }
    let types = metrics
        .iter()
        .map(|m| lit(&m.event_type))
        .collect::<Vec<_>>()
        .join(", ");
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
         --\n-- The windowed counts come from {EVENT_METRICS_STATE} (advanced a day at a time on daily runs).\n\
         WITH t AS (\n    SELECT\n        account_id,\n        {pivot}\n    FROM {EVENT_METRICS_STATE}\n    GROUP BY account_id\n),\n\
         users AS (\n    -- distinct users over 30 days, counted once per date for every view (sql/active_users.sql)\n    \
         SELECT account_id, active_users_30d AS users_30d\n    FROM active_users\n)\
         {seats_cte}\n\
         SELECT\n    s.account_id,\n    s.as_of_date,\n    {select}\nFROM spine s\n\
         LEFT JOIN t ON t.account_id = s.account_id\nLEFT JOIN users ON users.account_id = s.account_id{seats_join}\n",
        header = header.join("\n"),
        pivot = pivot.join(",\n        "),
        select = select.join(",\n    "),
    );
    let mut view = FeatureView::parse(&sql, "generated:event_metrics (features.event_types)")?;
    view.state = Some(state(&types));
    if view.features.len() != metrics.len() * if seats { 6 } else { 5 } {
        return Err(Error::View {
            view: EVENT_METRICS_VIEW.into(),
            path: view.origin.clone(),
            message: "an event type's name broke the generated header".into(),
        });
    }
    Ok(Some(view))
}

/// The state of the view over the quoted event types `types` (`'a', 'b'`): its SQL from scratch
/// (the 90-day window of `usage_daily`) and its step from the previous day's rows. A row exists
/// for an account and type with an event in the last 90 days, in both.
fn state(types: &str) -> ViewState {
    let header = format!(
        "-- state: {EVENT_METRICS_STATE}\n\
         -- description: Per account and chosen event type with events in the last 90 days: events over\n\
         --   7, 30 and 90 days and over the 30 days before the last 30, from the usage_daily rollup.\n\
         --   Generated by cslake from features.event_types; the step advances the previous day's rows\n\
         --   by one day (the new day in, the days 7, 30, 60 and 90 before it out) and gives the same rows.\n"
    );
    let sql = format!(
        "{header}SELECT\n    account_id,\n    event_type,\n    {{{{as_of}}}} AS as_of_date,\n    \
         CAST(COALESCE(SUM(CASE WHEN event_date > {{{{as_of}}}} - INTERVAL '7' DAY THEN events ELSE 0 END), 0) AS BIGINT) AS n7,\n    \
         CAST(COALESCE(SUM(CASE WHEN event_date > {{{{as_of}}}} - INTERVAL '30' DAY THEN events ELSE 0 END), 0) AS BIGINT) AS n30,\n    \
         CAST(COALESCE(SUM(CASE WHEN event_date <= {{{{as_of}}}} - INTERVAL '30' DAY AND event_date > {{{{as_of}}}} - INTERVAL '60' DAY \
         THEN events ELSE 0 END), 0) AS BIGINT) AS p30,\n    \
         CAST(COALESCE(SUM(events), 0) AS BIGINT) AS n90\n\
         FROM usage_daily\n\
         WHERE event_date <= {{{{as_of}}}} AND event_date > {{{{as_of}}}} - INTERVAL '90' DAY\n  \
         AND event_type IN ({types})\n\
         GROUP BY account_id, event_type\n\
         HAVING SUM(events) > 0\n"
    );
    let step = format!(
        "{header}WITH moves AS (\n    SELECT\n        account_id,\n        event_type,\n        \
         SUM(CASE WHEN event_date = {{{{as_of}}}} THEN events ELSE 0 END) AS in_0,\n        \
         SUM(CASE WHEN event_date = {{{{as_of}}}} - INTERVAL '7' DAY THEN events ELSE 0 END) AS out_7,\n        \
         SUM(CASE WHEN event_date = {{{{as_of}}}} - INTERVAL '30' DAY THEN events ELSE 0 END) AS out_30,\n        \
         SUM(CASE WHEN event_date = {{{{as_of}}}} - INTERVAL '60' DAY THEN events ELSE 0 END) AS out_60,\n        \
         SUM(CASE WHEN event_date = {{{{as_of}}}} - INTERVAL '90' DAY THEN events ELSE 0 END) AS out_90\n    \
         FROM usage_daily\n    \
         WHERE (event_date = {{{{as_of}}}}\n       OR event_date = {{{{as_of}}}} - INTERVAL '7' DAY\n       \
         OR event_date = {{{{as_of}}}} - INTERVAL '30' DAY\n       OR event_date = {{{{as_of}}}} - INTERVAL '60' DAY\n       \
         OR event_date = {{{{as_of}}}} - INTERVAL '90' DAY)\n      \
         AND event_type IN ({types})\n    GROUP BY account_id, event_type\n),\n\
         stepped AS (\n    SELECT\n        COALESCE(p.account_id, m.account_id) AS account_id,\n        \
         COALESCE(p.event_type, m.event_type) AS event_type,\n        {{{{as_of}}}} AS as_of_date,\n        \
         CAST(COALESCE(p.n7, 0) + COALESCE(m.in_0, 0) - COALESCE(m.out_7, 0) AS BIGINT) AS n7,\n        \
         CAST(COALESCE(p.n30, 0) + COALESCE(m.in_0, 0) - COALESCE(m.out_30, 0) AS BIGINT) AS n30,\n        \
         CAST(COALESCE(p.p30, 0) + COALESCE(m.out_30, 0) - COALESCE(m.out_60, 0) AS BIGINT) AS p30,\n        \
         CAST(COALESCE(p.n90, 0) + COALESCE(m.in_0, 0) - COALESCE(m.out_90, 0) AS BIGINT) AS n90\n    \
         FROM previous_state p\n    \
         FULL OUTER JOIN moves m ON m.account_id = p.account_id AND m.event_type = p.event_type\n)\n\
         SELECT account_id, event_type, as_of_date, n7, n30, p30, n90\nFROM stepped\nWHERE n90 > 0\n"
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
        assert!(v.sql.contains("'o''brien | x'"), "{}", v.sql);
        let no_seats = view(&columns(&["login".into()]), false).unwrap().unwrap();
        assert_eq!(no_seats.sources, ["usage_events"]);
        assert!(!no_seats.sql.contains("subscriptions"));
        assert!(view(&[], true).unwrap().is_none());
    }
}
