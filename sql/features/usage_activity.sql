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
-- Distinct counts are two grouped aggregations (distinct keys first, then a count), which spill
-- to disk under a memory limit where COUNT(DISTINCT ...) per group cannot.
WITH e AS (
    -- the daily rollups of usage_events (sql/rollups/): per account, day and event type
    SELECT account_id, event_type, event_date, quantity
    FROM usage_daily
    WHERE event_date <= {{as_of}} AND event_date > {{as_of}} - INTERVAL '90' DAY
),
days AS (
    SELECT account_id, event_date, SUM(quantity) AS quantity
    FROM e
    GROUP BY account_id, event_date
),
agg AS (
    SELECT
        account_id,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '7' DAY THEN quantity ELSE 0 END) AS events_7d,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '30' DAY THEN quantity ELSE 0 END) AS events_30d,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '60' DAY
                  AND event_date <= {{as_of}} - INTERVAL '30' DAY THEN quantity ELSE 0 END) AS events_prev_30d,
        SUM(quantity) AS events_90d,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '30' DAY THEN 1 ELSE 0 END) AS active_days_30d,
        MAX(event_date) AS last_event_date
    FROM days
    GROUP BY account_id
),
types AS (
    SELECT account_id, COUNT(*) AS event_types_30d
    FROM (
        SELECT account_id, event_type
        FROM e
        WHERE event_date > {{as_of}} - INTERVAL '30' DAY
        GROUP BY account_id, event_type
    ) t
    GROUP BY account_id
),
users AS (
    SELECT
        account_id,
        SUM(CASE WHEN last_active > {{as_of}} - INTERVAL '7' DAY THEN 1 ELSE 0 END) AS active_users_7d,
        COUNT(*) AS active_users_30d
    FROM (
        SELECT account_id, contact_id, MAX(event_date) AS last_active
        FROM usage_daily_users
        WHERE event_date <= {{as_of}} AND event_date > {{as_of}} - INTERVAL '30' DAY
          AND contact_id IS NOT NULL
        GROUP BY account_id, contact_id
    ) u
    GROUP BY account_id
),
quiet AS (
    -- customers with no event in the 90 days: only their last event needs the older history
    SELECT s.account_id
    FROM spine s
    LEFT JOIN agg ON agg.account_id = s.account_id
    WHERE agg.account_id IS NULL
),
older AS (
    SELECT q.account_id, MAX(d.event_date) AS last_event_date
    FROM quiet q
    JOIN usage_daily d ON d.account_id = q.account_id
    WHERE d.event_date <= {{as_of}} - INTERVAL '90' DAY
    GROUP BY q.account_id
)
SELECT
    s.account_id,
    s.as_of_date,
    COALESCE(agg.events_7d, 0) AS events_7d,
    COALESCE(agg.events_30d, 0) AS events_30d,
    COALESCE(agg.events_90d, 0) AS events_90d,
    (COALESCE(agg.events_30d, 0) + 1.0) / (COALESCE(agg.events_prev_30d, 0) + 1.0) - 1.0 AS events_trend_30d,
    CAST(COALESCE(users.active_users_7d, 0) AS DOUBLE) AS active_users_7d,
    CAST(COALESCE(users.active_users_30d, 0) AS DOUBLE) AS active_users_30d,
    CAST(COALESCE(agg.active_days_30d, 0) AS DOUBLE) AS active_days_30d,
    CAST(COALESCE(types.event_types_30d, 0) AS DOUBLE) AS event_types_30d,
    CAST({{as_of}} - COALESCE(agg.last_event_date, older.last_event_date) AS DOUBLE) AS days_since_last_event
FROM spine s
LEFT JOIN agg ON agg.account_id = s.account_id
LEFT JOIN types ON types.account_id = s.account_id
LEFT JOIN users ON users.account_id = s.account_id
LEFT JOIN older ON older.account_id = s.account_id
