-- name: support
-- entity: account
-- grain: one row per account and as_of_date
-- owner: cs-data
-- description: Support load and friction from tickets in interactions.
-- sources: interactions
-- feature: open_tickets | tickets opened and not resolved by the as-of date
-- feature: tickets_30d | tickets opened in the last 30 days
-- feature: tickets_90d | tickets opened in the last 90 days
-- feature: high_priority_tickets_90d | high or urgent tickets opened in the last 90 days
-- feature: oldest_open_ticket_days | age in days of the oldest unresolved ticket
WITH t AS (
    SELECT
        account_id,
        CAST(occurred_at AS DATE) AS opened,
        CAST(resolved_at AS DATE) AS resolved,
        LOWER(COALESCE(priority, '')) AS priority
    FROM interactions
    WHERE LOWER(kind) = 'ticket' AND CAST(occurred_at AS DATE) <= {{as_of}}
),
agg AS (
    SELECT
        account_id,
        SUM(CASE WHEN resolved IS NULL OR resolved > {{as_of}} THEN 1 ELSE 0 END) AS open_tickets,
        SUM(CASE WHEN opened > {{as_of}} - INTERVAL '30' DAY THEN 1 ELSE 0 END) AS tickets_30d,
        SUM(CASE WHEN opened > {{as_of}} - INTERVAL '90' DAY THEN 1 ELSE 0 END) AS tickets_90d,
        SUM(CASE WHEN opened > {{as_of}} - INTERVAL '90' DAY AND priority IN ('high', 'urgent') THEN 1 ELSE 0 END)
            AS high_priority_tickets_90d,
        MIN(CASE WHEN resolved IS NULL OR resolved > {{as_of}} THEN opened END) AS oldest_open
    FROM t
    GROUP BY account_id
)
SELECT
    s.account_id,
    s.as_of_date,
    CAST(COALESCE(agg.open_tickets, 0) AS DOUBLE) AS open_tickets,
    CAST(COALESCE(agg.tickets_30d, 0) AS DOUBLE) AS tickets_30d,
    CAST(COALESCE(agg.tickets_90d, 0) AS DOUBLE) AS tickets_90d,
    CAST(COALESCE(agg.high_priority_tickets_90d, 0) AS DOUBLE) AS high_priority_tickets_90d,
    CAST(COALESCE({{as_of}} - agg.oldest_open, 0) AS DOUBLE) AS oldest_open_ticket_days
FROM spine s
LEFT JOIN agg ON agg.account_id = s.account_id
