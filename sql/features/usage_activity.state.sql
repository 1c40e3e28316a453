-- state: usage_activity_state
-- description: The windowed sums usage_activity reads, one row per account with any product
--   event up to the as-of date: events over 7, 30, 35 and 90 days and over the 30 days before
--   the last 30, active days over 30 and 90 days, and the day of the last event. This file computes
--   them from the usage_daily rollup for any date on its own (a first run, a training set, a
--   past date); usage_activity.step.sql advances the previous day's rows by one day instead.
--   Both give the same rows (tested); sums are rounded to 9 decimals so that adding and
--   subtracting days cannot drift from summing them. The engagement view reads it too.
WITH days AS (
    SELECT account_id, event_date, SUM(quantity) AS quantity
    FROM usage_daily
    WHERE event_date <= {{as_of}} AND event_date > {{as_of}} - INTERVAL '90' DAY
    GROUP BY account_id, event_date
),
recent AS (
    SELECT
        account_id,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '7' DAY THEN quantity ELSE 0 END) AS events_7d,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '30' DAY THEN quantity ELSE 0 END) AS events_30d,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '35' DAY THEN quantity ELSE 0 END) AS events_35d,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '60' DAY
                  AND event_date <= {{as_of}} - INTERVAL '30' DAY THEN quantity ELSE 0 END) AS events_prev_30d,
        SUM(quantity) AS events_90d,
        SUM(CASE WHEN event_date > {{as_of}} - INTERVAL '30' DAY THEN 1 ELSE 0 END) AS active_days_30d,
        COUNT(*) AS active_days_90d,
        MAX(event_date) AS last_event_date
    FROM days
    GROUP BY account_id
),
older AS (
    -- the last event of accounts quiet for 90 days
    SELECT account_id, MAX(event_date) AS last_event_date
    FROM usage_daily
    WHERE event_date <= {{as_of}} - INTERVAL '90' DAY
    GROUP BY account_id
)
SELECT
    COALESCE(r.account_id, o.account_id) AS account_id,
    {{as_of}} AS as_of_date,
    ROUND(COALESCE(r.events_7d, 0.0), 9) AS events_7d,
    ROUND(COALESCE(r.events_30d, 0.0), 9) AS events_30d,
    ROUND(COALESCE(r.events_35d, 0.0), 9) AS events_35d,
    ROUND(COALESCE(r.events_prev_30d, 0.0), 9) AS events_prev_30d,
    ROUND(COALESCE(r.events_90d, 0.0), 9) AS events_90d,
    CAST(COALESCE(r.active_days_30d, 0) AS BIGINT) AS active_days_30d,
    CAST(COALESCE(r.active_days_90d, 0) AS BIGINT) AS active_days_90d,
    COALESCE(r.last_event_date, o.last_event_date) AS last_event_date
FROM recent r
FULL OUTER JOIN older o ON o.account_id = r.account_id
