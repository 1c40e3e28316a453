-- name: relationship
-- entity: account
-- grain: one row per account and as_of_date
-- owner: cs-data
-- description: Voice of the customer and CSM contact: latest NPS and meetings from interactions.
-- sources: interactions
-- feature: latest_nps | latest NPS answer (0-10)
-- feature: days_since_nps | days since the most recent NPS answer
-- feature: meetings_90d | meetings with the account in the last 90 days
-- feature: days_since_last_meeting | days since the last meeting
WITH nps AS (
    SELECT account_id, score, CAST(occurred_at AS DATE) AS answered,
           ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY occurred_at DESC, interaction_id DESC) AS rn
    FROM interactions
    WHERE LOWER(kind) = 'nps' AND score IS NOT NULL AND CAST(occurred_at AS DATE) <= {{as_of}}
),
meet AS (
    SELECT
        account_id,
        SUM(CASE WHEN CAST(occurred_at AS DATE) > {{as_of}} - INTERVAL '90' DAY THEN 1 ELSE 0 END) AS meetings_90d,
        MAX(CAST(occurred_at AS DATE)) AS last_meeting
    FROM interactions
    WHERE LOWER(kind) = 'meeting' AND CAST(occurred_at AS DATE) <= {{as_of}}
    GROUP BY account_id
)
SELECT
    s.account_id,
    s.as_of_date,
    nps.score AS latest_nps,
    CAST({{as_of}} - nps.answered AS DOUBLE) AS days_since_nps,
    CAST(COALESCE(meet.meetings_90d, 0) AS DOUBLE) AS meetings_90d,
    CAST({{as_of}} - meet.last_meeting AS DOUBLE) AS days_since_last_meeting
FROM spine s
LEFT JOIN nps ON nps.account_id = s.account_id AND nps.rn = 1
LEFT JOIN meet ON meet.account_id = s.account_id
