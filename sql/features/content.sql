-- name: content
-- entity: account
-- grain: one row per account and as_of_date
-- owner: cs-data
-- description: Training and best practices: the content the account's people viewed and completed (content_events).
-- sources: content_events, subscriptions
-- feature: content_viewed_30d | content items viewed in the last 30 days
-- feature: content_viewed_90d | content items viewed in the last 90 days
-- feature: content_completed_30d | content items completed in the last 30 days
-- feature: content_completed_90d | content items completed in the last 90 days
-- feature: share_of_seats_trained | people who completed any content by the as-of date, per seat (at most 1)
-- feature: days_since_content_completion | days since the last completion
WITH e AS (
    SELECT
        account_id,
        contact_id,
        content_id,
        LOWER(action) AS action,
        CAST(event_time AS DATE) AS day
    FROM content_events
    WHERE CAST(event_time AS DATE) <= {{as_of}}
),
-- distinct counts as two grouped aggregations (each account's content and action once, then a
-- count per account), not COUNT(DISTINCT ...) per account: those hold a set per group outside
-- the memory budget (this view peaked at 2.8 GB over the rest of the build on the demo data)
seen AS (
    SELECT account_id, content_id, action, MAX(day) AS last_day
    FROM e
    WHERE content_id IS NOT NULL
    GROUP BY account_id, content_id, action
),
agg AS (
    SELECT
        account_id,
        COUNT(CASE WHEN action = 'viewed' AND last_day > {{as_of}} - INTERVAL '30' DAY THEN 1 END) AS viewed_30d,
        COUNT(CASE WHEN action = 'viewed' AND last_day > {{as_of}} - INTERVAL '90' DAY THEN 1 END) AS viewed_90d,
        COUNT(CASE WHEN action = 'completed' AND last_day > {{as_of}} - INTERVAL '30' DAY THEN 1 END) AS completed_30d,
        COUNT(CASE WHEN action = 'completed' AND last_day > {{as_of}} - INTERVAL '90' DAY THEN 1 END) AS completed_90d
    FROM seen
    GROUP BY account_id
),
completions AS (
    SELECT account_id, MAX(day) AS last_completion
    FROM e
    WHERE action = 'completed'
    GROUP BY account_id
),
trained AS (
    SELECT account_id, COUNT(*) AS trained
    FROM (SELECT DISTINCT account_id, contact_id FROM e WHERE action = 'completed' AND contact_id IS NOT NULL) t
    GROUP BY account_id
),
seats AS (
    SELECT account_id, MAX(seats) AS seats
    FROM subscriptions
    WHERE start_date <= {{as_of}} AND (end_date IS NULL OR end_date > {{as_of}})
    GROUP BY account_id
)
SELECT
    s.account_id,
    s.as_of_date,
    CAST(COALESCE(agg.viewed_30d, 0) AS DOUBLE) AS content_viewed_30d,
    CAST(COALESCE(agg.viewed_90d, 0) AS DOUBLE) AS content_viewed_90d,
    CAST(COALESCE(agg.completed_30d, 0) AS DOUBLE) AS content_completed_30d,
    CAST(COALESCE(agg.completed_90d, 0) AS DOUBLE) AS content_completed_90d,
    CASE WHEN seats.seats > 0 THEN LEAST(1.0, CAST(COALESCE(trained.trained, 0) AS DOUBLE) / seats.seats) END
        AS share_of_seats_trained,
    CAST({{as_of}} - completions.last_completion AS DOUBLE) AS days_since_content_completion
FROM spine s
LEFT JOIN agg ON agg.account_id = s.account_id
LEFT JOIN completions ON completions.account_id = s.account_id
LEFT JOIN trained ON trained.account_id = s.account_id
LEFT JOIN seats ON seats.account_id = s.account_id
