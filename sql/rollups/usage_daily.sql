-- name: usage_daily
-- description: Product usage per account, day and event type: the sums, active days and event
--   types the usage views read. Its size grows with accounts, days and event types, never with
--   users (those are in usage_daily_users). Kept as features.usage_daily, partitioned by
--   event_date and refreshed for the days new events touch; computed on the fly from
--   usage_events where no such table exists (strict runs, tests).
-- sources: usage_events
SELECT
    account_id,
    CAST(event_time AS DATE) AS event_date,
    event_type,
    SUM(COALESCE(quantity, 1.0)) AS quantity,
    COUNT(*) AS events,
    MAX(_ingested_at) AS _ingested_at
FROM usage_events
{{where}}
GROUP BY account_id, CAST(event_time AS DATE), event_type
