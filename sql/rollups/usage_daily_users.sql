-- name: usage_daily_users
-- description: Product usage per account, day and user (contact_id): what distinct active users
--   over a window are counted from. One row per user active on a day, so a window of N days
--   reads N days of it, whatever the history. Kept as features.usage_daily_users like
--   usage_daily; events without a contact_id make one row with a NULL contact_id per account and
--   day, which the views do not count as a user.
-- sources: usage_events
SELECT
    account_id,
    CAST(event_time AS DATE) AS event_date,
    contact_id,
    SUM(COALESCE(quantity, 1.0)) AS quantity,
    COUNT(*) AS events,
    MAX(_ingested_at) AS _ingested_at
FROM usage_events
{{where}}
GROUP BY account_id, CAST(event_time AS DATE), contact_id
