-- name: subscription
-- entity: account
-- grain: one row per account and as_of_date
-- owner: cs-data
-- description: Seats, MRR and their change, seat utilisation, tenure and renewal timing from the subscription history (renewals every bill_period_months, 12 when unknown, from the renewal date, else the contract end or start).
-- sources: subscriptions, accounts, usage_events
-- feature: seats | licensed seats on the as-of date
-- feature: mrr | monthly recurring revenue on the as-of date
-- feature: mrr_change_90d | MRR change against 90 days earlier (ratio - 1)
-- feature: seat_utilisation_30d | users active in the last 30 days per licensed seat
-- feature: tenure_days | days since the first subscription started
-- feature: days_to_renewal | days until the next renewal (by billing period)
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
    -- distinct users over 30 days, counted once per date for every view (sql/active_users.sql)
    SELECT account_id, active_users_30d
    FROM active_users
),
terms AS (
    -- each current subscription renews every bill_period_months, counted from its renewal date,
    -- else the account's contract end or start, else its own start
    SELECT c.account_id,
           COALESCE(c.renewal_date, a.contract_end, a.contract_start, c.start_date) AS anchor,
           CAST(COALESCE(c.bill_period_months, 12) AS BIGINT) AS period
    FROM subscriptions c
    LEFT JOIN accounts a ON a.account_id = c.account_id
    WHERE c.start_date <= {{as_of}} AND (c.end_date IS NULL OR c.end_date > {{as_of}})
      AND COALESCE(c.bill_period_months, 12) > 0
    UNION ALL
    -- an account without a current subscription: yearly from its contract or first start
    SELECT s.account_id, COALESCE(a.contract_end, a.contract_start, f.first_start) AS anchor, CAST(12 AS BIGINT) AS period
    FROM spine s
    LEFT JOIN accounts a ON a.account_id = s.account_id
    LEFT JOIN first_start f ON f.account_id = s.account_id
    WHERE NOT EXISTS (
        SELECT 1 FROM subscriptions c
        WHERE c.account_id = s.account_id AND c.start_date <= {{as_of}}
          AND (c.end_date IS NULL OR c.end_date > {{as_of}}) AND COALESCE(c.bill_period_months, 12) > 0
    )
),
months AS (
    -- whole billing periods from the anchor to the as-of date, rounded down (an anchor in the
    -- future, such as a contract end, counts back)
    SELECT account_id, anchor, period,
           (CAST(date_part('year', {{as_of}}) - date_part('year', anchor) AS BIGINT) * 12
            + CAST(date_part('month', {{as_of}}) - date_part('month', anchor) AS BIGINT)) AS m
    FROM terms
    WHERE anchor IS NOT NULL
),
periods AS (
    SELECT account_id, anchor, period,
           -- rounded down, before the anchor too (float division: DuckDB's `/` on integers is not
           -- integer division, so the same SQL gives the same values there)
           CAST(FLOOR(CAST(m AS DOUBLE) / period) AS BIGINT) AS n
    FROM months
),
renewals AS (
    -- the first renewal after the as-of date, in calendar months (the 31st renews on the last
    -- day of shorter months)
    SELECT account_id,
           -- a date again (DuckDB's date + interval is a timestamp)
           CAST(MIN(CASE
               WHEN anchor + CAST(CONCAT(CAST(n * period AS VARCHAR), ' months') AS INTERVAL) > {{as_of}}
               THEN anchor + CAST(CONCAT(CAST(n * period AS VARCHAR), ' months') AS INTERVAL)
               ELSE anchor + CAST(CONCAT(CAST((n + 1) * period AS VARCHAR), ' months') AS INTERVAL)
           END) AS DATE) AS next_renewal
    FROM periods
    GROUP BY account_id
)
SELECT
    s.account_id,
    s.as_of_date,
    CAST(cur.seats AS DOUBLE) AS seats,
    cur.mrr AS mrr,
    CASE WHEN prev.mrr > 0 THEN cur.mrr / prev.mrr - 1.0 ELSE 0.0 END AS mrr_change_90d,
    CASE WHEN cur.seats > 0 THEN CAST(COALESCE(users.active_users_30d, 0) AS DOUBLE) / cur.seats END AS seat_utilisation_30d,
    CAST({{as_of}} - first_start.first_start AS DOUBLE) AS tenure_days,
    CAST(renewals.next_renewal - {{as_of}} AS DOUBLE) AS days_to_renewal
FROM spine s
LEFT JOIN cur ON cur.account_id = s.account_id
LEFT JOIN prev ON prev.account_id = s.account_id
LEFT JOIN users ON users.account_id = s.account_id
LEFT JOIN first_start ON first_start.account_id = s.account_id
LEFT JOIN renewals ON renewals.account_id = s.account_id
