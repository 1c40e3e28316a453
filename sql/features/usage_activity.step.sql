-- step: usage_activity_state
-- description: usage_activity_state as of the date from its rows of the day before
--   (previous_state): every window takes in the new day and lets go of the day that leaves it,
--   so a daily run reads six days of usage_daily (the new day and the days 7, 30, 35, 60 and
--   90 before it) instead of ninety days and the older history. cslake uses it only when the
--   previous day's rows exist, were computed by the same SQL and no rollup day they read has
--   changed since (late events, an erasure, a rebuild); otherwise usage_activity.state.sql.
WITH moved AS (
    SELECT account_id, event_date, SUM(quantity) AS quantity
    FROM usage_daily
    WHERE event_date = {{as_of}}
       OR event_date = {{as_of}} - INTERVAL '7' DAY
       OR event_date = {{as_of}} - INTERVAL '30' DAY
       OR event_date = {{as_of}} - INTERVAL '35' DAY
       OR event_date = {{as_of}} - INTERVAL '60' DAY
       OR event_date = {{as_of}} - INTERVAL '90' DAY
    GROUP BY account_id, event_date
),
moves AS (
    SELECT
        account_id,
        SUM(CASE WHEN event_date = {{as_of}} THEN quantity ELSE 0 END) AS in_0,
        SUM(CASE WHEN event_date = {{as_of}} - INTERVAL '7' DAY THEN quantity ELSE 0 END) AS out_7,
        SUM(CASE WHEN event_date = {{as_of}} - INTERVAL '30' DAY THEN quantity ELSE 0 END) AS out_30,
        SUM(CASE WHEN event_date = {{as_of}} - INTERVAL '35' DAY THEN quantity ELSE 0 END) AS out_35,
        SUM(CASE WHEN event_date = {{as_of}} - INTERVAL '60' DAY THEN quantity ELSE 0 END) AS out_60,
        SUM(CASE WHEN event_date = {{as_of}} - INTERVAL '90' DAY THEN quantity ELSE 0 END) AS out_90,
        MAX(CASE WHEN event_date = {{as_of}} THEN 1 ELSE 0 END) AS active_0,
        MAX(CASE WHEN event_date = {{as_of}} - INTERVAL '30' DAY THEN 1 ELSE 0 END) AS active_30,
        MAX(CASE WHEN event_date = {{as_of}} - INTERVAL '90' DAY THEN 1 ELSE 0 END) AS active_90
    FROM moved
    GROUP BY account_id
)
SELECT
    COALESCE(p.account_id, m.account_id) AS account_id,
    {{as_of}} AS as_of_date,
    ROUND(COALESCE(p.events_7d, 0.0) + COALESCE(m.in_0, 0.0) - COALESCE(m.out_7, 0.0), 9) AS events_7d,
    ROUND(COALESCE(p.events_30d, 0.0) + COALESCE(m.in_0, 0.0) - COALESCE(m.out_30, 0.0), 9) AS events_30d,
    ROUND(COALESCE(p.events_35d, 0.0) + COALESCE(m.in_0, 0.0) - COALESCE(m.out_35, 0.0), 9) AS events_35d,
    ROUND(COALESCE(p.events_prev_30d, 0.0) + COALESCE(m.out_30, 0.0) - COALESCE(m.out_60, 0.0), 9) AS events_prev_30d,
    ROUND(COALESCE(p.events_90d, 0.0) + COALESCE(m.in_0, 0.0) - COALESCE(m.out_90, 0.0), 9) AS events_90d,
    CAST(COALESCE(p.active_days_30d, 0) + COALESCE(m.active_0, 0) - COALESCE(m.active_30, 0) AS BIGINT) AS active_days_30d,
    CAST(COALESCE(p.active_days_90d, 0) + COALESCE(m.active_0, 0) - COALESCE(m.active_90, 0) AS BIGINT) AS active_days_90d,
    CASE WHEN m.active_0 = 1 THEN {{as_of}} ELSE p.last_event_date END AS last_event_date
FROM previous_state p
FULL OUTER JOIN moves m ON m.account_id = p.account_id
