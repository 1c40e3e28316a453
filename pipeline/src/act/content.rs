//! `cslake content recommend --as-of D`: for each customer account, the training and
//! best-practice content (`core.content`) that teaches what the account under-uses, and that
//! nobody there has completed yet, ranked, with the reason; kept in
//! `actions.content_recommendations` (one partition per as-of date, replaced on a re-run).
//!
//! "Under-uses" is measured against peers: an account's events of a type per seat over the 90 days
//! up to D, against the median of the accounts of its segment. An item teaches an event type (or a
//! product feature named like one) when its `teaches` lists it; items written for another segment
//! are left out. The larger the account's gap to the median, the higher the item ranks, one item
//! per gap first (the widest gap's, then the next gap's), then second items. Items a playbook's
//! `send_content` step lists come before all of these for the accounts enrolled in it, with
//! the reason "listed in playbook NAME".
//!
//! [`picks`] chooses what a `send_content` step sends: the step's own items, then the account's
//! recommendations of the day, without what the account has completed.

use chrono::NaiveDate;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::act::library::{Library, StepAction};
use crate::act::plan::ContentSend;
use crate::lake::query::{has_table, sql, strings};
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

/// The content ids each playbook's `send_content` steps list, as `(playbook, content_id)`.
pub fn listed(lib: &Library) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in lib.playbooks.iter().filter(|p| p.enabled) {
        for s in p.steps.iter().filter(|s| s.action == StepAction::SendContent) {
            for c in &s.content {
                let pair = (p.name.clone(), c.clone());
                if !out.contains(&pair) {
                    out.push(pair);
                }
            }
        }
    }
    out
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The ranked recommendations of day `d`, `top` per account. Items a playbook lists (`listed`,
/// see [`listed`]) come first for the accounts in it on `d` (active in the latest
/// `actions.playbook_runs` snapshot up to `d`, or ended that day: a one-step playbook ends the
/// day it starts), then the items of the widest usage gaps.
pub fn recommendations_sql(
    ctx: &SessionContext,
    d: NaiveDate,
    top: usize,
    run_id: &str,
    listed: &[(String, String)],
) -> String {
    let usage = usage(ctx);
    let done = if has_table(ctx, "core.content_events") {
        format!(
            "(SELECT DISTINCT account_id, content_id FROM core.content_events \
             WHERE LOWER(action) = 'completed' AND CAST(event_time AS DATE) <= DATE '{d}')"
        )
    } else {
        "(SELECT CAST(NULL AS VARCHAR) AS account_id, CAST(NULL AS VARCHAR) AS content_id WHERE FALSE)".into()
    };
    let enrolled = if listed.is_empty() || !has_table(ctx, "actions.playbook_runs") {
        "SELECT CAST(NULL AS VARCHAR) AS account_id, CAST(NULL AS VARCHAR) AS playbook, \
         CAST(NULL AS VARCHAR) AS content_id WHERE FALSE"
            .to_string()
    } else {
        let values: Vec<String> = listed
            .iter()
            .map(|(p, c)| format!("({}, {})", quote(p), quote(c)))
            .collect();
        format!(
            "SELECT DISTINCT r.account_id, l.playbook, l.content_id
             FROM actions.playbook_runs r
             JOIN (SELECT column1 AS playbook, column2 AS content_id FROM (VALUES {})) l
               ON l.playbook = r.playbook
             WHERE (r.status = 'active' OR r.ended_on = r.as_of_date) AND r.as_of_date = (
                SELECT MAX(as_of_date) FROM actions.playbook_runs WHERE as_of_date <= DATE '{d}')",
            values.join(", ")
        )
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
        enrolled AS ({enrolled}),
        pool AS (
            SELECT g.account_id, i.content_id, i.title, i.kind, i.url, g.topic, g.segment, g.rate,
                   g.median_rate, g.gap, 1 AS prio, CAST(NULL AS VARCHAR) AS playbook
            FROM gaps g
            JOIN items i ON i.topic = g.topic AND (i.item_segment IS NULL OR i.item_segment = g.segment)
            UNION ALL
            SELECT e.account_id, c.content_id, c.title, c.kind, c.url,
                   LOWER(regexp_replace(c.teaches, '[\\[\\]\" ]', '', 'g')) AS topic, k.segment,
                   CAST(NULL AS DOUBLE) AS rate, CAST(NULL AS DOUBLE) AS median_rate,
                   CAST(NULL AS DOUBLE) AS gap, 0 AS prio, e.playbook
            FROM enrolled e
            JOIN cust k ON k.account_id = e.account_id
            JOIN core.content c ON c.content_id = e.content_id
        ),
        candidates AS (
            SELECT p.*,
                   ROW_NUMBER() OVER (PARTITION BY p.account_id, p.content_id
                                      ORDER BY p.prio, p.gap DESC, p.topic, p.playbook) AS dup
            FROM pool p
            LEFT JOIN {done} d ON d.account_id = p.account_id AND d.content_id = p.content_id
            WHERE d.content_id IS NULL
        ),
        per_topic AS (
            SELECT *, CASE WHEN prio = 0 THEN 0 ELSE
                   ROW_NUMBER() OVER (PARTITION BY account_id, prio, topic ORDER BY content_id) END AS topic_rank
            FROM candidates WHERE dup = 1
        ),
        ranked AS (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY account_id
                                         ORDER BY prio, topic_rank, gap DESC, topic, content_id) AS rank
            FROM per_topic
        )
        SELECT DATE '{d}' AS as_of_date, account_id, CAST(rank AS BIGINT) AS rank, content_id, title, kind, url,
               topic AS teaches, round(rate, 2) AS usage_per_seat_90d, round(median_rate, 2) AS segment_median_90d,
               round(gap, 3) AS gap,
               CASE WHEN prio = 0 THEN concat('listed in playbook ', playbook)
                    ELSE concat('uses ', topic, ' ', CAST(round(rate, 2) AS VARCHAR), ' times per seat in ',
                      '{WINDOW_DAYS} days; the ', segment, ' median is ', CAST(round(median_rate, 2) AS VARCHAR))
               END AS reason,
               '{run_id}' AS _run_id
        FROM ranked WHERE rank <= {top}
        ORDER BY account_id, rank"
    )
}

/// One item a `send_content` step sends.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Pick {
    pub content_id: String,
    pub title: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub reason: String,
}

/// What each of the day's `send_content` steps sends, by delivery key: the step's listed items
/// that are in the catalogue and not completed by the account by `d`, then the account's
/// recommendations of `d` (computed as `content recommend` would), `top` at most. A step whose
/// account has nothing left gets an empty list.
pub async fn picks(
    ctx: &SessionContext,
    lib: &Library,
    d: NaiveDate,
    sends: &[ContentSend],
) -> Result<HashMap<String, Vec<Pick>>> {
    let mut out: HashMap<String, Vec<Pick>> = HashMap::new();
    if sends.is_empty() {
        return Ok(out);
    }
    if !has_table(ctx, "core.content") {
        tracing::warn!("send_content: there is no core.content catalogue; nothing is sent");
        return Ok(out);
    }
    let accounts: BTreeSet<&str> = sends.iter().map(|s| s.account_id.as_str()).collect();
    let in_list = accounts.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", ");
    let mut catalogue: HashMap<String, Pick> = HashMap::new();
    for b in sql(ctx, "SELECT content_id, title, kind, url FROM core.content").await? {
        catalogue.extend(picks_of(&b)?.into_iter().map(|(_, p)| (p.content_id.clone(), p)));
    }
    let mut done: HashSet<(String, String)> = HashSet::new();
    if has_table(ctx, "core.content_events") {
        let q = format!(
            "SELECT DISTINCT account_id, content_id FROM core.content_events \
             WHERE LOWER(action) = 'completed' AND CAST(event_time AS DATE) <= DATE '{d}' \
             AND account_id IN ({in_list})"
        );
        for b in sql(ctx, &q).await? {
            let (a, c) = (strings(&b, "account_id")?, strings(&b, "content_id")?);
            for i in 0..b.num_rows() {
                if let (Some(a), Some(c)) = (&a[i], &c[i]) {
                    done.insert((a.clone(), c.clone()));
                }
            }
        }
    }
    let mut recs: HashMap<String, Vec<Pick>> = HashMap::new();
    let needed = ["core.accounts", "core.subscriptions", "core.usage_events"];
    if needed.iter().all(|t| has_table(ctx, t)) {
        let top = sends.iter().map(|s| s.top).max().unwrap_or(1);
        let q = format!(
            "SELECT account_id, content_id, title, kind, url, reason FROM ({}) WHERE account_id IN ({in_list}) \
             ORDER BY account_id, rank",
            recommendations_sql(ctx, d, top, "", &listed(lib))
        );
        for b in sql(ctx, &q).await? {
            for (a, p) in picks_of(&b)? {
                recs.entry(a.unwrap_or_default()).or_default().push(p);
            }
        }
    }
    for s in sends {
        let mut list: Vec<Pick> = Vec::new();
        for c in &s.listed {
            let Some(item) = catalogue.get(c) else {
                tracing::warn!(
                    playbook = s.playbook.as_str(),
                    content_id = c.as_str(),
                    "send_content lists an item that is not in core.content: left out"
                );
                continue;
            };
            if !done.contains(&(s.account_id.clone(), c.clone())) {
                list.push(Pick {
                    reason: format!("listed in playbook {}", s.playbook),
                    ..item.clone()
                });
            }
        }
        for r in recs.get(&s.account_id).into_iter().flatten() {
            if !list.iter().any(|p| p.content_id == r.content_id) {
                list.push(r.clone());
            }
        }
        list.truncate(s.top);
        out.insert(s.key.clone(), list);
    }
    Ok(out)
}

/// The rows of `b` as `(account_id, item)`: content_id, title, kind, url, and account_id and
/// reason where `b` has them.
fn picks_of(b: &RecordBatch) -> Result<Vec<(Option<String>, Pick)>> {
    let col = |c: &str| -> Result<Vec<Option<String>>> {
        if b.schema().index_of(c).is_ok() {
            strings(b, c)
        } else {
            Ok(vec![None; b.num_rows()])
        }
    };
    let (account, id, title, kind, url, reason) = (
        col("account_id")?,
        col("content_id")?,
        col("title")?,
        col("kind")?,
        col("url")?,
        col("reason")?,
    );
    Ok((0..b.num_rows())
        .filter_map(|i| {
            let content_id = id[i].clone()?;
            Some((
                account[i].clone(),
                Pick {
                    content_id,
                    title: title[i].clone(),
                    kind: kind[i].clone(),
                    url: url[i].clone(),
                    reason: reason[i].clone().unwrap_or_default(),
                },
            ))
        })
        .collect())
}

/// Writes the day's recommendations (replacing that day's) and says how many.
pub async fn recommend(
    lake: &Lake,
    lib: &Library,
    d: NaiveDate,
    top: usize,
    run: &mut RunContext,
) -> Result<ContentReport> {
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
        .sql(&recommendations_sql(
            &ctx,
            d,
            top.max(1),
            &run.run_id,
            &listed(lib),
        ))
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
