-- name: spine_activity
-- description: The accounts that are active users on the as-of date: a product event in the
--   {{inactivity_days}} days up to it. Used when churn is defined by inactivity.
-- sources: accounts, usage_events
SELECT
    a.account_id,
    {{as_of}} AS as_of_date
FROM accounts a
WHERE EXISTS (
    SELECT 1 FROM usage_daily e
    WHERE e.account_id = a.account_id
      AND e.event_date <= {{as_of}}
      AND e.event_date > {{as_of}} - INTERVAL '{{inactivity_days}}' DAY
)
