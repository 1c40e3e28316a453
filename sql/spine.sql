-- name: spine
-- description: The accounts that are customers on the as-of date: a subscription period covers it.
-- sources: accounts, subscriptions
SELECT
    a.account_id,
    {{as_of}} AS as_of_date
FROM accounts a
WHERE EXISTS (
    SELECT 1 FROM subscriptions s
    WHERE s.account_id = a.account_id
      AND s.start_date <= {{as_of}}
      AND (s.end_date IS NULL OR s.end_date > {{as_of}})
)
