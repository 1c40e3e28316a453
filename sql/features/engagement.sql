-- name: engagement
-- entity: account
-- grain: one row per account and as_of_date
-- owner: cs-data
-- description: Usage relative to the account's size and age: per seat, per active user, share of known users, scaled to tenure, and the last week against the four before.
-- sources: usage_events, subscriptions, contacts
-- feature: events_per_seat_30d | product events per licensed seat in the last 30 days
-- feature: events_per_active_user_30d | product events per active user in the last 30 days
-- feature: user_coverage_30d | share of the account's known users active in the last 30 days
-- feature: events_rate_tenure_90d | product events per 30 days over the last 90 days, or over the account's life when shorter
-- feature: events_change_7d_vs_28d | events in the last 7 days against the weekly average of the 28 days before (ratio - 1)
WITH u AS (
    -- the windowed sums usage_activity keeps (usage_activity.state.sql): one row per account,
    -- advanced a day at a time on daily runs instead of re-reading 90 days of usage_daily
    SELECT
        account_id,
        events_7d AS e7,
        events_35d - events_7d AS e28_before,
        events_30d AS e30,
        events_90d AS e90
    FROM usage_activity_state
),
users AS (
    -- distinct users over 30 days, counted once per date for every view (sql/active_users.sql)
    SELECT account_id, active_users_30d AS users_30d
    FROM active_users
),
seats AS (
    SELECT account_id, SUM(COALESCE(seats, 0)) AS seats, MIN(start_date) AS current_since
    FROM subscriptions
    WHERE start_date <= {{as_of}} AND (end_date IS NULL OR end_date > {{as_of}})
    GROUP BY account_id
),
since AS (
    SELECT account_id, MIN(start_date) AS first_start
    FROM subscriptions
    WHERE start_date <= {{as_of}}
    GROUP BY account_id
),
known AS (
    SELECT account_id, COUNT(*) AS contacts
    FROM contacts
    WHERE created_date IS NULL OR created_date <= {{as_of}}
    GROUP BY account_id
)
SELECT
    s.account_id,
    s.as_of_date,
    CAST(COALESCE(u.e30, 0) AS DOUBLE) / GREATEST(CAST(COALESCE(seats.seats, 0) AS DOUBLE), 1.0) AS events_per_seat_30d,
    CAST(COALESCE(u.e30, 0) AS DOUBLE) / GREATEST(CAST(COALESCE(users.users_30d, 0) AS DOUBLE), 1.0) AS events_per_active_user_30d,
    CAST(COALESCE(users.users_30d, 0) AS DOUBLE) / GREATEST(CAST(COALESCE(known.contacts, 0) AS DOUBLE), 1.0) AS user_coverage_30d,
    CAST(COALESCE(u.e90, 0) AS DOUBLE) * 30.0
        / GREATEST(LEAST(CAST(COALESCE({{as_of}} - since.first_start, 90) AS DOUBLE), 90.0), 1.0) AS events_rate_tenure_90d,
    (CAST(COALESCE(u.e7, 0) AS DOUBLE) + 1.0) / (CAST(COALESCE(u.e28_before, 0) AS DOUBLE) / 4.0 + 1.0) - 1.0
        AS events_change_7d_vs_28d
FROM spine s
LEFT JOIN u ON u.account_id = s.account_id
LEFT JOIN users ON users.account_id = s.account_id
LEFT JOIN seats ON seats.account_id = s.account_id
LEFT JOIN since ON since.account_id = s.account_id
LEFT JOIN known ON known.account_id = s.account_id
