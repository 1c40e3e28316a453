-- name: expansion
-- description: 1 when the account's MRR at the end of the label window is at least
--   {{min_increase_pct}}% above its MRR on the observation date (an upgrade, more seats, an
--   add-on). The window ends at as_of + lead_days + horizon_days.
-- sources: subscriptions
WITH mrr_now AS (
    SELECT account_id, SUM(mrr) AS mrr
    FROM subscriptions
    WHERE start_date <= {{as_of}} AND (end_date IS NULL OR end_date > {{as_of}})
    GROUP BY account_id
),
mrr_then AS (
    SELECT account_id, SUM(mrr) AS mrr
    FROM subscriptions
    WHERE start_date <= {{as_of}} + INTERVAL '{{window_end_days}}' DAY
      AND (end_date IS NULL OR end_date > {{as_of}} + INTERVAL '{{window_end_days}}' DAY)
    GROUP BY account_id
)
SELECT
    s.account_id,
    s.as_of_date,
    CASE
        WHEN COALESCE(n.mrr, 0) > 0 AND COALESCE(t.mrr, 0) >= n.mrr * (1.0 + {{min_increase_pct}} / 100.0) THEN 1.0
        ELSE 0.0
    END AS label
FROM spine s
LEFT JOIN mrr_now n ON n.account_id = s.account_id
LEFT JOIN mrr_then t ON t.account_id = s.account_id
