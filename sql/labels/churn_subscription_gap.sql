-- name: churn
-- description: 1 when the account stops being a customer within the label window after the observation
--   date: a subscription period ends and no other period of the account covers the following
--   {{grace_days}} days. The window is (as_of + lead_days, as_of + lead_days + horizon_days].
-- sources: subscriptions
WITH churn_events AS (
    SELECT p.account_id, p.end_date AS churn_date
    FROM subscriptions p
    LEFT JOIN subscriptions q
      ON q.account_id = p.account_id
     AND q.subscription_id <> p.subscription_id
     AND q.start_date <= p.end_date + INTERVAL '{{grace_days}}' DAY
     AND (q.end_date IS NULL OR q.end_date > p.end_date)
    WHERE p.end_date IS NOT NULL AND q.subscription_id IS NULL
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
