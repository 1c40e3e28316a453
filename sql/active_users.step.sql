-- step: active_users
-- description: active_users as of the date from its rows of the day before (previous_state).
--   Only users seen on the new day or on the days leaving the windows (7 and 30 days before it)
--   can change a count; whether each was seen in the days between (the 29 days before the date,
--   the 6 for 7 days) is a lookup, not a grouping of the whole 30 days by user. A user enters the 30-day count on the new
--   day unless seen in the 30 days before it, and leaves when last seen 30 days before it; the
--   7-day count alike. cslake uses it only when the previous day's rows exist, were computed by
--   the same SQL and no rollup day they read has changed since; otherwise active_users.sql.
WITH candidates AS (
    SELECT
        account_id,
        contact_id,
        MAX(CASE WHEN event_date = {{as_of}} THEN 1 ELSE 0 END) AS on_0,
        MAX(CASE WHEN event_date = {{as_of}} - INTERVAL '7' DAY THEN 1 ELSE 0 END) AS on_7,
        MAX(CASE WHEN event_date = {{as_of}} - INTERVAL '30' DAY THEN 1 ELSE 0 END) AS on_30
    FROM usage_daily_users
    WHERE (event_date = {{as_of}}
       OR event_date = {{as_of}} - INTERVAL '7' DAY
       OR event_date = {{as_of}} - INTERVAL '30' DAY)
      AND contact_id IS NOT NULL
    GROUP BY account_id, contact_id
),
moves_30d AS (
    -- candidates not seen in the 29 days before the date: in on the date, out from 30 days before
    SELECT account_id,
           SUM(CASE WHEN on_0 = 1 AND on_30 = 0 THEN 1 WHEN on_30 = 1 AND on_0 = 0 THEN -1 ELSE 0 END) AS moved
    FROM candidates c
    WHERE NOT EXISTS (
        SELECT 1 FROM usage_daily_users w
        WHERE w.account_id = c.account_id AND w.contact_id = c.contact_id
          AND w.event_date > {{as_of}} - INTERVAL '30' DAY AND w.event_date < {{as_of}}
    )
    GROUP BY account_id
),
moves_7d AS (
    -- the same over 7 days: not seen in the 6 days before the date
    SELECT account_id,
           SUM(CASE WHEN on_0 = 1 AND on_7 = 0 THEN 1 WHEN on_7 = 1 AND on_0 = 0 THEN -1 ELSE 0 END) AS moved
    FROM candidates c
    WHERE (on_0 = 1 OR on_7 = 1) AND NOT EXISTS (
        SELECT 1 FROM usage_daily_users w
        WHERE w.account_id = c.account_id AND w.contact_id = c.contact_id
          AND w.event_date > {{as_of}} - INTERVAL '7' DAY AND w.event_date < {{as_of}}
    )
    GROUP BY account_id
),
moves AS (
    SELECT COALESCE(a.account_id, b.account_id) AS account_id,
           COALESCE(a.moved, 0) AS moved_30d,
           COALESCE(b.moved, 0) AS moved_7d
    FROM moves_30d a
    FULL OUTER JOIN moves_7d b ON b.account_id = a.account_id
),
stepped AS (
    SELECT
        COALESCE(p.account_id, m.account_id) AS account_id,
        {{as_of}} AS as_of_date,
        CAST(COALESCE(p.active_users_7d, 0) + COALESCE(m.moved_7d, 0) AS BIGINT) AS active_users_7d,
        CAST(COALESCE(p.active_users_30d, 0) + COALESCE(m.moved_30d, 0) AS BIGINT) AS active_users_30d
    FROM previous_state p
    FULL OUTER JOIN moves m ON m.account_id = p.account_id
)
SELECT account_id, as_of_date, active_users_7d, active_users_30d
FROM stepped
WHERE active_users_30d > 0
