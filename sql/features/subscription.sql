-- name: subscription
-- entity: account
-- grain: one row per account and as_of_date
-- owner: cs-data
-- description: Seats, MRR and their change, seat utilisation, tenure and renewal timing from the subscription history.
-- sources: subscriptions, accounts, usage_events
-- feature: seats | licensed seats on the as-of date
-- feature: mrr | monthly recurring revenue on the as-of date
-- feature: mrr_change_90d | MRR change against 90 days earlier (ratio - 1)
-- feature: seat_utilisation_30d | users active in the last 30 days per licensed seat
-- feature: tenure_days | days since the first subscription started
-- feature: days_to_renewal | days until the next contract anniversary
WITH cur AS (
    SELECT account_id, SUM(COALESCE(seats, 0)) AS seats, SUM(mrr) AS mrr
    FROM subscriptions
    WHERE start_date <= {{as_of}} AND (end_date IS NULL OR end_date > {{as_of}})
    GROUP BY account_id
),
prev AS (
    SELECT account_id, SUM(mrr) AS mrr
    FROM subscriptions
    WHERE start_date <= {{as_of}} - INTERVAL '90' DAY
      AND (end_date IS NULL OR end_date > {{as_of}} - INTERVAL '90' DAY)
    GROUP BY account_id
),
first_start AS (
    SELECT account_id, MIN(start_date) AS first_start
    FROM subscriptions
    WHERE start_date <= {{as_of}}
    GROUP BY account_id
),
users AS (
    SELECT account_id, COUNT(*) AS active_users_30d
    FROM (
        SELECT account_id, contact_id
        FROM usage_daily_users
        WHERE event_date <= {{as_of}} AND event_date > {{as_of}} - INTERVAL '30' DAY
          AND contact_id IS NOT NULL
        GROUP BY account_id, contact_id
    ) d
    GROUP BY account_id
),
anchor AS (
    SELECT s.account_id, COALESCE(a.contract_start, f.first_start) AS anchor_date, f.first_start
    FROM spine s
    LEFT JOIN accounts a ON a.account_id = s.account_id
    LEFT JOIN first_start f ON f.account_id = s.account_id
)
SELECT
    s.account_id,
    s.as_of_date,
    CAST(cur.seats AS DOUBLE) AS seats,
    cur.mrr AS mrr,
    CASE WHEN prev.mrr > 0 THEN cur.mrr / prev.mrr - 1.0 ELSE 0.0 END AS mrr_change_90d,
    CASE WHEN cur.seats > 0 THEN CAST(COALESCE(users.active_users_30d, 0) AS DOUBLE) / cur.seats END AS seat_utilisation_30d,
    CAST({{as_of}} - anchor.first_start AS DOUBLE) AS tenure_days,
    -- next anniversary of the contract start after the as-of date (years of 365 days)
    CAST(365 - (CAST({{as_of}} - anchor.anchor_date AS BIGINT) % 365) AS DOUBLE) AS days_to_renewal
FROM spine s
LEFT JOIN cur ON cur.account_id = s.account_id
LEFT JOIN prev ON prev.account_id = s.account_id
LEFT JOIN users ON users.account_id = s.account_id
LEFT JOIN anchor ON anchor.account_id = s.account_id
