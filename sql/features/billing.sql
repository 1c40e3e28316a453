-- name: billing
-- entity: account
-- grain: one row per account and as_of_date
-- owner: cs-data
-- description: Payment health from invoices: failed and late payments, unpaid balance.
-- sources: invoices
-- feature: failed_payments_90d | failed payment attempts on invoices issued in the last 90 days
-- feature: late_invoices_90d | invoices of the last 90 days paid after their due date or still unpaid past it
-- feature: overdue_amount | amount of invoices past due and unpaid on the as-of date
WITH i AS (
    SELECT
        account_id,
        issued_date,
        COALESCE(due_date, issued_date) AS due_date,
        CASE WHEN paid_date <= {{as_of}} THEN paid_date END AS paid_date,
        amount,
        COALESCE(payment_failures, 0) AS payment_failures
    FROM invoices
    WHERE issued_date <= {{as_of}}
),
agg AS (
    SELECT
        account_id,
        SUM(CASE WHEN issued_date > {{as_of}} - INTERVAL '90' DAY THEN payment_failures ELSE 0 END) AS failed_payments_90d,
        SUM(CASE WHEN issued_date > {{as_of}} - INTERVAL '90' DAY
                  AND ((paid_date IS NOT NULL AND paid_date > due_date)
                       OR (paid_date IS NULL AND due_date < {{as_of}})) THEN 1 ELSE 0 END) AS late_invoices_90d,
        SUM(CASE WHEN paid_date IS NULL AND due_date < {{as_of}} THEN amount ELSE 0 END) AS overdue_amount
    FROM i
    GROUP BY account_id
)
SELECT
    s.account_id,
    s.as_of_date,
    CAST(COALESCE(agg.failed_payments_90d, 0) AS DOUBLE) AS failed_payments_90d,
    CAST(COALESCE(agg.late_invoices_90d, 0) AS DOUBLE) AS late_invoices_90d,
    COALESCE(agg.overdue_amount, 0.0) AS overdue_amount
FROM spine s
LEFT JOIN agg ON agg.account_id = s.account_id
