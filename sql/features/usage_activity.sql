-- name: usage_activity
-- entity: account
-- grain: one row per account and as_of_date
-- owner: cs-data
-- description: Product usage volume, breadth and recency from usage_events, any event type.
-- sources: usage_events
-- feature: events_7d | product events in the last 7 days
-- feature: events_30d | product events in the last 30 days
-- feature: events_90d | product events in the last 90 days
-- feature: events_trend_30d | change in events, last 30 days against the 30 before (ratio - 1)
-- feature: active_users_7d | users active in the last 7 days
-- feature: active_users_30d | users active in the last 30 days
-- feature: active_days_30d | days with any activity in the last 30 days
-- feature: event_types_30d | distinct event types used in the last 30 days
-- feature: days_since_last_event | days since the last product event
--
-- The windowed sums come from usage_activity_state (usage_activity.state.sql, advanced a day at a
-- time by usage_activity.step.sql on daily runs); distinct event types are counted here from the
-- rollup's 30-day window, distinct users come from active_users (sql/active_users.sql, computed
-- once per date for every view that reads it). Distinct counts are two grouped aggregations
-- (distinct keys first, then a count), which spill to disk under a memory limit where
-- COUNT(DISTINCT ...) per group cannot.
WITH types AS (
    SELECT account_id, COUNT(*) AS event_types_30d
    FROM (
        SELECT account_id, event_type
        FROM usage_daily
        WHERE event_date <= {{as_of}} AND event_date > {{as_of}} - INTERVAL '30' DAY
        GROUP BY account_id, event_type
    ) t
    GROUP BY account_id
),
users AS (
    -- distinct users over 7 and 30 days, counted once per date for every view (sql/active_users.sql)
    SELECT account_id, active_users_7d, active_users_30d
    FROM active_users
)
SELECT
    s.account_id,
    s.as_of_date,
    COALESCE(st.events_7d, 0) AS events_7d,
    COALESCE(st.events_30d, 0) AS events_30d,
    COALESCE(st.events_90d, 0) AS events_90d,
    (COALESCE(st.events_30d, 0) + 1.0) / (COALESCE(st.events_prev_30d, 0) + 1.0) - 1.0 AS events_trend_30d,
    CAST(COALESCE(users.active_users_7d, 0) AS DOUBLE) AS active_users_7d,
    CAST(COALESCE(users.active_users_30d, 0) AS DOUBLE) AS active_users_30d,
    CAST(COALESCE(st.active_days_30d, 0) AS DOUBLE) AS active_days_30d,
    CAST(COALESCE(types.event_types_30d, 0) AS DOUBLE) AS event_types_30d,
    CAST({{as_of}} - st.last_event_date AS DOUBLE) AS days_since_last_event
FROM spine s
LEFT JOIN usage_activity_state st ON st.account_id = s.account_id
LEFT JOIN types ON types.account_id = s.account_id
LEFT JOIN users ON users.account_id = s.account_id
