-- name: active_users
-- description: Users active per account as of the date: distinct users (contact_id) with any
--   event over 7 and over 30 days, from the usage_daily_users rollup's 30-day window. Computed
--   once per date, before the views, when a view reads it (usage_activity, subscription,
--   engagement and event_metrics do), like the spine; it is the one distinct count the usage views
--   share, so the 30 days of account x day x user rows are grouped once rather than once per view.
--   Distinct keys first, then a count: the grouping spills to disk under a memory limit, where
--   COUNT(DISTINCT ...) per group cannot. A daily run steps it from the day before instead
--   (active_users.step.sql) and keeps it in features.active_users, as a view keeps its state.
SELECT
    account_id,
    {{as_of}} AS as_of_date,
    CAST(COALESCE(SUM(CASE WHEN last_active > {{as_of}} - INTERVAL '7' DAY THEN 1 ELSE 0 END), 0) AS BIGINT) AS active_users_7d,
    CAST(COUNT(*) AS BIGINT) AS active_users_30d
FROM (
    SELECT account_id, contact_id, MAX(event_date) AS last_active
    FROM usage_daily_users
    WHERE event_date <= {{as_of}} AND event_date > {{as_of}} - INTERVAL '30' DAY
      AND contact_id IS NOT NULL
    GROUP BY account_id, contact_id
) u
GROUP BY account_id
