-- name: usage_daily
-- description: Product usage per account, day, user and event type: what the usage views read,
--   so a daily run costs in proportion to one day of events, not to the whole history. Kept
--   as features.usage_daily and refreshed for the days new events touch; computed on the fly
--   from usage_events where no such table exists (strict runs, tests).
-- sources: usage_events
SELECT
    account_id,
    CAST(event_time AS DATE) AS event_date,
    contact_id,
    event_type,
    SUM(COALESCE(quantity, 1.0)) AS quantity,
    COUNT(*) AS events,
    MAX(_ingested_at) AS _ingested_at
FROM usage_events
{{where}}
GROUP BY account_id, CAST(event_time AS DATE), contact_id, event_type
