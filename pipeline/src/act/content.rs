//! `cslake content recommend --as-of D`: for each customer account, the training and
//! best-practice content (`core.content`) that teaches what the account under-uses, and that
//! nobody there has completed yet, ranked, with the reason; kept in
//! `actions.content_recommendations` (one partition per as-of date, replaced on a re-run).
//!
//! "Under-uses" is measured against peers: an account's events of a type per seat over the 90 days
//! up to D, against the median of the accounts of its segment. An item teaches an event type (or a
//! product feature named like one) when its `teaches` lists it; items written for another segment
//! are left out. The larger the account's gap to the median, the higher the item ranks, one item
//! per gap first (the widest gap's, then the next gap's), then second items.

use chrono::NaiveDate;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::query::{has_table, strings};
use crate::{Error, Lake, Result, RunContext};

/// What an item teaches, as lower-case topics: `teaches` is comma-separated, or a JSON array of
/// strings as APIs give labels (`["sso","security"]`). The SQL of [`recommendations_sql`] reads it
/// the same way.
pub fn topics(teaches: &str) -> Vec<String> {
    teaches
        .split(',')
        .map(|t| {
            t.trim_matches(|c: char| c == '[' || c == ']' || c == '"' || c.is_whitespace())
                .to_lowercase()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// The window usage is compared over.
pub const WINDOW_DAYS: i64 = 90;

/// What `recommend` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ContentReport {
    pub as_of: String,
    /// Accounts with at least one recommendation.
    pub accounts: usize,
    pub recommendations: usize,
    pub version: Option<u64>,
}

/// The usage rollup to read: the materialised one where it exists, else computed from the events.
fn usage(ctx: &SessionContext) -> &'static str {
    if has_table(ctx, "features.usage_daily") {
        "features.usage_daily"
    } else {
        "(SELECT account_id, CAST(event_time AS DATE) AS event_date, event_type, COUNT(*) AS events \
         FROM core.usage_events GROUP BY 1, 2, 3)"
    }
}

/// The ranked recommendations of day `d`, `top` per account.
pub fn recommendations_sql(ctx: &SessionContext, d: NaiveDate, top: usize, run_id: &str) -> String {
    let usage = usage(ctx);
    let done = if has_table(ctx, "core.content_events") {
        format!(
            "(SELECT DISTINCT account_id, content_id FROM core.content_events \
             WHERE LOWER(action) = 'completed' AND CAST(event_time AS DATE) <= DATE '{d}')"
        )
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS account_id, CAST(NULL AS VARCHAR) AS content_id WHERE FALSE)".into()
    };
    format!(
        "WITH cust AS (
            SELECT a.account_id, COALESCE(a.segment, 'all') AS segment, s.seats
            FROM core.accounts a
            JOIN (SELECT account_id, MAX(seats) AS seats FROM core.subscriptions
                  WHERE start_date <= DATE '{d}' AND (end_date IS NULL OR end_date > DATE '{d}')
                  GROUP BY account_id) s ON s.account_id = a.account_id
        ),
        items AS (
            SELECT content_id, title, kind, url, segment AS item_segment, LOWER(TRIM(topic)) AS topic
            FROM (SELECT content_id, title, kind, url, segment,
                         unnest(string_to_array(regexp_replace(teaches, '[\\[\\]\"]', '', 'g'), ',')) AS topic
                  FROM core.content WHERE teaches IS NOT NULL)
            WHERE TRIM(topic) <> ''
        ),
        seen AS (SELECT DISTINCT LOWER(event_type) AS topic FROM {usage} WHERE event_date <= DATE '{d}'),
        topics AS (SELECT DISTINCT i.topic FROM items i JOIN seen ON seen.topic = i.topic),
        used AS (
            SELECT account_id, LOWER(event_type) AS topic, SUM(events) AS events FROM {usage}
            WHERE event_date > DATE '{d}' - INTERVAL '{WINDOW_DAYS}' DAY AND event_date <= DATE '{d}'
            GROUP BY 1, 2
        ),
        grid AS (
            SELECT c.account_id, c.segment, t.topic,
                   CAST(COALESCE(u.events, 0) AS DOUBLE) / GREATEST(COALESCE(c.seats, 1), 1) AS rate
            FROM cust c CROSS JOIN topics t
            LEFT JOIN used u ON u.account_id = c.account_id AND u.topic = t.topic
        ),
        med AS (SELECT segment, topic, median(rate) AS median_rate FROM grid GROUP BY segment, topic),
        gaps AS (
            SELECT g.account_id, g.segment, g.topic, g.rate, m.median_rate,
                   (m.median_rate - g.rate) / m.median_rate AS gap
            FROM grid g JOIN med m ON m.segment = g.segment AND m.topic = g.topic
            WHERE m.median_rate > 0 AND g.rate < m.median_rate
        ),
        candidates AS (
            SELECT g.account_id, i.content_id, i.title, i.kind, i.url, g.topic, g.segment, g.rate,
                   g.median_rate, g.gap,
                   ROW_NUMBER() OVER (PARTITION BY g.account_id, i.content_id ORDER BY g.gap DESC, g.topic) AS dup
            FROM gaps g
            JOIN items i ON i.topic = g.topic AND (i.item_segment IS NULL OR i.item_segment = g.segment)
            LEFT JOIN {done} d ON d.account_id = g.account_id AND d.content_id = i.content_id
            WHERE d.content_id IS NULL
        ),
        per_topic AS (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY account_id, topic ORDER BY content_id) AS topic_rank
            FROM candidates WHERE dup = 1
        ),
        ranked AS (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY topic_rank, gap DESC, topic, content_id) AS rank
            FROM per_topic
        )
        SELECT DATE '{d}' AS as_of_date, account_id, CAST(rank AS BIGINT) AS rank, content_id, title, kind, url,
               topic AS teaches, round(rate, 2) AS usage_per_seat_90d, round(median_rate, 2) AS segment_median_90d,
               round(gap, 3) AS gap,
               concat('uses ', topic, ' ', CAST(round(rate, 2) AS VARCHAR), ' times per seat in ',
                      '{WINDOW_DAYS} days; the ', segment, ' median is ', CAST(round(median_rate, 2) AS VARCHAR)) AS reason,
               '{run_id}' AS _run_id
        FROM ranked WHERE rank <= {top}
        ORDER BY account_id, rank"
    )
}

/// Writes the day's recommendations (replacing that day's) and says how many.
pub async fn recommend(lake: &Lake, d: NaiveDate, top: usize, run: &mut RunContext) -> Result<ContentReport> {
    let ctx = lake.session().await?;
    for (table, what) in [
        (
            "core.content",
            "a content catalogue (content.csv, or a [[sources]] table `content`)",
        ),
        ("core.accounts", "accounts"),
        ("core.subscriptions", "subscriptions"),
        ("core.usage_events", "usage events"),
    ] {
        if !has_table(&ctx, table) {
            return Err(Error::Config(format!(
                "content recommend needs {table}: ingest {what} first"
            )));
        }
    }
    let df = ctx
        .sql(&recommendations_sql(&ctx, d, top.max(1), &run.run_id))
        .await?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let mut batches = df.collect().await?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut accounts = std::collections::HashSet::new();
    for b in &batches {
        accounts.extend(strings(b, "account_id")?.into_iter().flatten());
    }
    if batches.is_empty() {
        // none today: the day's earlier recommendations still go
        batches.push(RecordBatch::new_empty(schema));
    }
    let stats = lake
        .target("actions", "content_recommendations")
        .replace_where(
            batches,
            &format!("as_of_date = '{d}'"),
            &["as_of_date"],
            &run.run_id,
        )
        .await?;
    run.wrote("actions.content_recommendations", rows, stats.version);
    Ok(ContentReport {
        as_of: d.to_string(),
        accounts: accounts.len(),
        recommendations: rows,
        version: stats.version,
    })
}

#[cfg(test)]
mod tests {
    use super::topics;

    #[test]
    fn what_an_item_teaches_is_a_list_or_a_json_array() {
        assert_eq!(
            topics("create_report, Export_Data"),
            ["create_report", "export_data"]
        );
        assert_eq!(topics(r#"["sso","security"]"#), ["sso", "security"]);
        assert!(topics(" , []").is_empty());
    }
}
