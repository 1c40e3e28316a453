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
WITH e AS (
    -- the daily rollup of usage_events (sql/rollups/usage_daily.sql): same sums and distinct counts
    SELECT account_id, contact_id, event_type, event_date, quantity
    FROM usage_daily
    WHERE event_date <= {{as_of}} AND event_date > {{as_of}} - INTERVAL '90' DAY
),
last_event AS (
    SELECT account_id, MAX(event_date) AS last_event_date
    FROM usage_daily
    WHERE event_date <= {{as_of}}
    GROUP BY account_id
),
agg AS (
    SELECT
        account_id,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '7' DAY THEN quantity ELSE 0 END) AS events_7d,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '30' DAY THEN quantity ELSE 0 END) AS events_30d,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '60' DAY
                  AND event_date <= {{as_of}} - INTERVAL '30' DAY THEN quantity ELSE 0 END) AS events_prev_30d,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '90' DAY THEN quantity ELSE 0 END) AS events_90d,
        COUNT(DISTINCT CASE WHEN event_date > {{as_of}} - INTERVAL '7' DAY THEN contact_id END) AS active_users_7d,
        COUNT(DISTINCT CASE WHEN event_date > {{as_of}} - INTERVAL '30' DAY THEN contact_id END) AS active_users_30d,
        COUNT(DISTINCT CASE WHEN event_date > {{as_of}} - INTERVAL '30' DAY THEN event_date END) AS active_days_30d,
        COUNT(DISTINCT CASE WHEN event_date > {{as_of}} - INTERVAL '30' DAY THEN event_type END) AS event_types_30d
    FROM e
    GROUP BY account_id
)
SELECT
    s.account_id,
    s.as_of_date,
    COALESCE(agg.events_7d, 0) AS events_7d,
    COALESCE(agg.events_30d, 0) AS events_30d,
    COALESCE(agg.events_90d, 0) AS events_90d,
    (COALESCE(agg.events_30d, 0) + 1.0) / (COALESCE(agg.events_prev_30d, 0) + 1.0) - 1.0 AS events_trend_30d,
    CAST(COALESCE(agg.active_users_7d, 0) AS DOUBLE) AS active_users_7d,
    CAST(COALESCE(agg.active_users_30d, 0) AS DOUBLE) AS active_users_30d,
    CAST(COALESCE(agg.active_days_30d, 0) AS DOUBLE) AS active_days_30d,
    CAST(COALESCE(agg.event_types_30d, 0) AS DOUBLE) AS event_types_30d,
    CAST({{as_of}} - l.last_event_date AS DOUBLE) AS days_since_last_event
FROM spine s
LEFT JOIN agg ON agg.account_id = s.account_id
LEFT JOIN last_event l ON l.account_id = s.account_id
