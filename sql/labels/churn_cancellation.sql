-- name: churn_cancellation
-- description: 1 when a subscription of the account is cancelled (status cancelled, canceled or churned)
--   with its end date in the label window (as_of + lead_days, as_of + lead_days + horizon_days].
-- sources: subscriptions
WITH churn_events AS (
    SELECT account_id, end_date AS churn_date
    FROM subscriptions
    WHERE end_date IS NOT NULL AND LOWER(COALESCE(status, '')) IN ('cancelled', 'canceled', 'churned')
)
SELECT
    s.account_id,
    s.as_of_date,
    CASE WHEN COUNT(c.churn_date) > 0 THEN 1.0 ELSE 0.0 END AS label
FROM spine s
LEFT JOIN churn_events c
  ON c.account_id = s.account_id
 AND c.churn_date > {{as_of}} + INTERVAL '{{lead_days}}' DAY
 AND c.churn_date <= {{as_of}} + INTERVAL '{{window_end_days}}' DAY
GROUP BY s.account_id, s.as_of_date
