-- name: churn_inactivity
-- description: 1 when the account has no product activity at all in the label window
--   (as_of + lead_days, as_of + lead_days + horizon_days]: for products without subscription data.
-- sources: usage_events
WITH active AS (
    SELECT DISTINCT account_id
    FROM usage_daily
    WHERE event_date > {{as_of}} + INTERVAL '{{lead_days}}' DAY
      AND event_date <= {{as_of}} + INTERVAL '{{window_end_days}}' DAY
)
SELECT
    s.account_id,
    s.as_of_date,
    CASE WHEN a.account_id IS NULL THEN 1.0 ELSE 0.0 END AS label
FROM spine s
LEFT JOIN active a ON a.account_id = s.account_id
