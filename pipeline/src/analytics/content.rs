//! `analytics.content_effectiveness`: what the training content changed, per item and per kind.
//!
//! - Reach: accounts and people with any event of the item; people who started it (or went
//!   straight to completing it), people who completed it, and the completion rate between them.
//! - Usage: for each account's first completion of an item on day c (at least 30 days before the
//!   as-of date, so the 30 days after are known), the events per seat of what the item teaches
//!   in the 30 days after c minus the 30 days up to c; minus the same change, over the same
//!   calendar days, of the accounts of the same segment that completed nothing teaching it (the
//!   matched comparison: same segment, same season, per seat). The mean of these differences, with
//!   a 95% interval (normal, from their spread), is the item's effect on usage.
//! - Churn: the share of completing accounts that are no longer customers on the as-of date,
//!   against the share of the other accounts that were customers on the median completion day,
//!   and the difference with a 95% interval (Wald). Observational: accounts that train differ
//!   from those that do not, so read it with the usage effect, which is measured against peers.
//!
//! Data is pulled with SQL (small aggregates), the arithmetic is done here.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;
use deltalake::arrow::array::{ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{Field, Schema};
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::query::{epoch_days, floats, has_table, sql, strings};
use crate::{Error, Result};

/// Days before and after a completion that usage is compared over.
pub const WINDOW: i64 = 30;

fn day(s: &Option<String>) -> Option<NaiveDate> {
    s.as_deref().and_then(|s| s.parse().ok())
}

/// The usage rollup (account, day, event type, events): materialised or computed.
fn usage(ctx: &SessionContext) -> &'static str {
    if has_table(ctx, "features.usage_daily") {
        "features.usage_daily"
    } else {
        "(SELECT account_id, CAST(event_time AS DATE) AS event_date, event_type, COUNT(*) AS events \
         FROM core.usage_events GROUP BY 1, 2, 3)"
    }
}

#[derive(Debug, Default, Clone)]
struct Group {
    title: Option<String>,
    kind: Option<String>,
    teaches: Option<String>,
    accounts_reached: i64,
    people_reached: i64,
    people_started: i64,
    people_completed: i64,
    /// Per completing account: usage change minus the peers' change.
    effects: Vec<f64>,
    /// Completing accounts (customers when they completed) and how many have churned since.
    completers: HashSet<String>,
    churned: usize,
    completion_days: Vec<NaiveDate>,
}

/// One output row: its dimension (`item`, `kind`), its value and what was measured.
type Row<'a> = (&'static str, &'a String, &'a Group);

/// Completers' churn rate, the others', the difference and its 95% interval.
type Churn = (Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<f64>);

/// Mean and 95% interval of a sample (`None` for fewer than two values).
fn mean_ci(v: &[f64]) -> (Option<f64>, Option<f64>, Option<f64>) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (None, None, None);
    }
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (Some(mean), None, None);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    let half = 1.96 * (var / n).sqrt();
    (Some(mean), Some(mean - half), Some(mean + half))
}

/// The day's rows, or none when the lake has no content catalogue or events.
pub async fn content_effectiveness(
    ctx: &SessionContext,
    as_of: NaiveDate,
    run_id: &str,
) -> Result<Vec<RecordBatch>> {
    if ![
        "core.content",
        "core.content_events",
        "core.accounts",
        "core.subscriptions",
    ]
    .iter()
    .all(|t| has_table(ctx, t))
    {
        return Ok(Vec::new());
    }
    let d = format!("DATE '{as_of}'");
    // the items and what each teaches
    let mut items: BTreeMap<String, Group> = BTreeMap::new();
    let mut topics_of: HashMap<String, Vec<String>> = HashMap::new();
    for b in sql(ctx, "SELECT content_id, title, kind, teaches FROM core.content").await? {
        let (id, title, kind, teaches) = (
            strings(&b, "content_id")?,
            strings(&b, "title")?,
            strings(&b, "kind")?,
            strings(&b, "teaches")?,
        );
        for i in 0..b.num_rows() {
            let Some(id) = id[i].clone() else { continue };
            let topics = crate::act::content::topics(teaches[i].as_deref().unwrap_or_default());
            topics_of.insert(id.clone(), topics);
            items.insert(
                id,
                Group {
                    title: title[i].clone(),
                    kind: kind[i].clone(),
                    teaches: teaches[i].clone(),
                    ..Default::default()
                },
            );
        }
    }
    if items.is_empty() {
        return Ok(Vec::new());
    }
    // reach
    for b in sql(
        ctx,
        &format!(
            "SELECT content_id, COUNT(DISTINCT account_id) AS accounts, COUNT(DISTINCT contact_id) AS people, \
             COUNT(DISTINCT CASE WHEN LOWER(action) IN ('started', 'completed') THEN contact_id END) AS started, \
             COUNT(DISTINCT CASE WHEN LOWER(action) = 'completed' THEN contact_id END) AS completed \
             FROM core.content_events WHERE CAST(event_time AS DATE) <= {d} GROUP BY content_id"
        ),
    )
    .await?
    {
        let id = strings(&b, "content_id")?;
        let (a, p, s, c) = (
            floats(&b, "accounts")?,
            floats(&b, "people")?,
            floats(&b, "started")?,
            floats(&b, "completed")?,
        );
        for i in 0..b.num_rows() {
            if let Some(g) = id[i].as_ref().and_then(|id| items.get_mut(id)) {
                g.accounts_reached = a[i] as i64;
                g.people_reached = p[i] as i64;
                g.people_started = s[i] as i64;
                g.people_completed = c[i] as i64;
            }
        }
    }

    // accounts: segment, and whether each is a customer on the as-of date
    let mut segment: HashMap<String, String> = HashMap::new();
    for b in sql(
        ctx,
        "SELECT account_id, COALESCE(segment, 'all') AS segment FROM core.accounts",
    )
    .await?
    {
        for (a, s) in strings(&b, "account_id")?
            .into_iter()
            .zip(strings(&b, "segment")?)
        {
            if let (Some(a), Some(s)) = (a, s) {
                segment.insert(a, s);
            }
        }
    }
    // subscription spans: (account, seats, start, end)
    let mut spans: Vec<(String, f64, NaiveDate, Option<NaiveDate>)> = Vec::new();
    for b in sql(
        ctx,
        "SELECT account_id, COALESCE(seats, 1) AS seats, CAST(start_date AS VARCHAR) AS s, CAST(end_date AS VARCHAR) AS e \
         FROM core.subscriptions",
    )
    .await?
    {
        let (a, seats, s, e) = (
            strings(&b, "account_id")?,
            floats(&b, "seats")?,
            strings(&b, "s")?,
            strings(&b, "e")?,
        );
        for i in 0..b.num_rows() {
            if let (Some(a), Some(start)) = (a[i].clone(), day(&s[i])) {
                spans.push((a, seats[i].max(1.0), start, day(&e[i])));
            }
        }
    }
    let mut by_account: HashMap<String, Vec<(f64, NaiveDate, Option<NaiveDate>)>> = HashMap::new();
    for (a, seats, s, e) in spans {
        by_account.entry(a).or_default().push((seats, s, e));
    }
    // the account's seats on a day it is a customer (a subscription covers it)
    let customer_on = |account: &str, on: NaiveDate| -> Option<f64> {
        by_account
            .get(account)?
            .iter()
            .filter(|(_, s, e)| *s <= on && e.is_none_or(|e| e > on))
            .map(|(seats, _, _)| *seats)
            .reduce(f64::max)
    };

    // first completion of each item by each account, and who completed anything per topic
    let mut firsts: Vec<(String, String, NaiveDate)> = Vec::new();
    let mut trained: HashSet<(String, String)> = HashSet::new(); // (account, topic)
    for b in sql(
        ctx,
        &format!(
            "SELECT account_id, content_id, CAST(MIN(CAST(event_time AS DATE)) AS VARCHAR) AS first \
             FROM core.content_events WHERE LOWER(action) = 'completed' AND CAST(event_time AS DATE) <= {d} \
             GROUP BY account_id, content_id"
        ),
    )
    .await?
    {
        let (a, c, f) = (
            strings(&b, "account_id")?,
            strings(&b, "content_id")?,
            strings(&b, "first")?,
        );
        for i in 0..b.num_rows() {
            let (Some(a), Some(c), Some(f)) = (a[i].clone(), c[i].clone(), day(&f[i])) else {
                continue;
            };
            for t in topics_of.get(&c).into_iter().flatten() {
                trained.insert((a.clone(), t.clone()));
            }
            firsts.push((a, c, f));
        }
    }
    // churn of completers: customers when they completed, not any more on the as-of date
    for (a, c, f) in &firsts {
        if let Some(g) = items.get_mut(c)
            && customer_on(a, *f).is_some()
            && g.completers.insert(a.clone())
        {
            g.completion_days.push(*f);
            if customer_on(a, as_of).is_none() {
                g.churned += 1;
            }
        }
    }

    // usage of the taught event types per account and day, over the days any window covers
    let measured: Vec<&(String, String, NaiveDate)> = firsts
        .iter()
        .filter(|(_, _, f)| *f + chrono::Duration::days(WINDOW) <= as_of)
        .collect();
    let topics: HashSet<&String> = measured
        .iter()
        .flat_map(|(_, c, _)| topics_of.get(c).into_iter().flatten())
        .collect();
    if let (false, Some(lo), Some(hi)) = (
        topics.is_empty(),
        measured.iter().map(|m| m.2).min(),
        measured.iter().map(|m| m.2).max(),
    ) {
        let lo = lo - chrono::Duration::days(WINDOW - 1);
        let hi = hi + chrono::Duration::days(WINDOW);
        let list: Vec<String> = topics
            .iter()
            .map(|t| format!("'{}'", t.replace('\'', "''")))
            .collect();
        let mut used: HashMap<(String, String), BTreeMap<NaiveDate, f64>> = HashMap::new();
        for b in sql(
            ctx,
            &format!(
                "SELECT account_id, LOWER(event_type) AS topic, CAST(event_date AS VARCHAR) AS day, SUM(events) AS n \
                 FROM {} WHERE event_date BETWEEN DATE '{lo}' AND DATE '{hi}' AND LOWER(event_type) IN ({}) \
                 GROUP BY 1, 2, 3",
                usage(ctx),
                list.join(", ")
            ),
        )
        .await?
        {
            let (a, t, dd, n) = (
                strings(&b, "account_id")?,
                strings(&b, "topic")?,
                strings(&b, "day")?,
                floats(&b, "n")?,
            );
            for i in 0..b.num_rows() {
                if let (Some(a), Some(t), Some(dd)) = (a[i].clone(), t[i].clone(), day(&dd[i])) {
                    used.entry((a, t)).or_default().insert(dd, n[i]);
                }
            }
        }
        let events_in = |a: &str, t: &str, from: NaiveDate, to: NaiveDate| -> f64 {
            used.get(&(a.to_string(), t.to_string()))
                .map(|m| m.range(from..=to).map(|(_, n)| n).sum())
                .unwrap_or(0.0)
        };
        // the peers' change over the same days: per seat, pooled over the segment's customers
        // that completed nothing teaching the topic
        let peers_change = |seg: &str, t: &str, c: NaiveDate| -> Option<f64> {
            let (b0, b1) = (c - chrono::Duration::days(WINDOW - 1), c);
            let (a0, a1) = (c + chrono::Duration::days(1), c + chrono::Duration::days(WINDOW));
            let (mut ev_before, mut ev_after, mut seats) = (0.0, 0.0, 0.0);
            for (a, s) in &segment {
                if s != seg || trained.contains(&(a.clone(), t.to_string())) {
                    continue;
                }
                let (Some(s0), Some(_)) = (customer_on(a, b0), customer_on(a, a1)) else {
                    continue;
                };
                ev_before += events_in(a, t, b0, b1);
                ev_after += events_in(a, t, a0, a1);
                seats += s0;
            }
            (seats > 0.0).then(|| (ev_after - ev_before) / seats)
        };
        let mut peers: HashMap<(String, String, NaiveDate), Option<f64>> = HashMap::new();
        for (a, c, f) in measured {
            let (Some(seg), Some(seats)) = (segment.get(a), customer_on(a, *f)) else {
                continue;
            };
            for t in topics_of.get(c).into_iter().flatten() {
                let own = (events_in(
                    a,
                    t,
                    *f + chrono::Duration::days(1),
                    *f + chrono::Duration::days(WINDOW),
                ) - events_in(a, t, *f - chrono::Duration::days(WINDOW - 1), *f))
                    / seats;
                let peer = *peers
                    .entry((seg.clone(), t.clone(), *f))
                    .or_insert_with(|| peers_change(seg, t, *f));
                if let (Some(peer), Some(g)) = (peer, items.get_mut(c)) {
                    g.effects.push(own - peer);
                }
            }
        }
    }

    // the other accounts' churn: customers on an item's median completion day, gone by the as-of date
    let others_churn = |g: &Group| -> Option<(usize, usize)> {
        let mut days = g.completion_days.clone();
        days.sort();
        let mid = *days.get(days.len() / 2)?;
        let (mut n, mut gone) = (0, 0);
        for a in segment.keys().filter(|a| !g.completers.contains(*a)) {
            if customer_on(a, mid).is_some() {
                n += 1;
                if customer_on(a, as_of).is_none() {
                    gone += 1;
                }
            }
        }
        Some((n, gone))
    };

    // per kind: the items of a kind pooled
    let mut kinds: BTreeMap<String, Group> = BTreeMap::new();
    for g in items.values() {
        let k = kinds
            .entry(g.kind.clone().unwrap_or_else(|| "unknown".into()))
            .or_default();
        k.kind = g.kind.clone();
        k.accounts_reached += g.accounts_reached;
        k.people_reached += g.people_reached;
        k.people_started += g.people_started;
        k.people_completed += g.people_completed;
        k.effects.extend(&g.effects);
        for a in &g.completers {
            k.completers.insert(a.clone());
        }
        k.completion_days.extend(&g.completion_days);
    }
    for k in kinds.values_mut() {
        k.churned = k
            .completers
            .iter()
            .filter(|a| customer_on(a, as_of).is_none())
            .count();
    }

    let rows: Vec<Row> = items
        .iter()
        .map(|(id, g)| ("item", id, g))
        .chain(kinds.iter().map(|(k, g)| ("kind", k, g)))
        .collect();
    let n = rows.len();
    let mut cols: Vec<(&str, ArrayRef)> = Vec::new();
    let text = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
        Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
    };
    let int = |f: &dyn Fn(&Group) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from(rows.iter().map(|r| f(r.2)).collect::<Vec<_>>()))
    };
    let float = |v: Vec<Option<f64>>| -> ArrayRef { Arc::new(Float64Array::from(v)) };
    cols.push((
        "as_of_date",
        Arc::new(Date32Array::from(vec![epoch_days(as_of); n])),
    ));
    cols.push(("dimension", text(&|r| Some(r.0.to_string()))));
    cols.push(("value", text(&|r| Some(r.1.clone()))));
    cols.push(("title", text(&|r| r.2.title.clone())));
    cols.push(("kind", text(&|r| r.2.kind.clone())));
    cols.push(("teaches", text(&|r| r.2.teaches.clone())));
    cols.push(("accounts_reached", int(&|g| g.accounts_reached)));
    cols.push(("people_reached", int(&|g| g.people_reached)));
    cols.push(("people_started", int(&|g| g.people_started)));
    cols.push(("people_completed", int(&|g| g.people_completed)));
    cols.push((
        "completion_rate",
        float(
            rows.iter()
                .map(|r| {
                    (r.2.people_started > 0).then(|| r.2.people_completed as f64 / r.2.people_started as f64)
                })
                .collect(),
        ),
    ));
    cols.push(("accounts_measured", int(&|g| g.effects.len() as i64)));
    let ci: Vec<_> = rows.iter().map(|r| mean_ci(&r.2.effects)).collect();
    cols.push((
        "usage_change_per_seat_30d",
        float(ci.iter().map(|c| c.0).collect()),
    ));
    cols.push(("usage_change_ci_low", float(ci.iter().map(|c| c.1).collect())));
    cols.push(("usage_change_ci_high", float(ci.iter().map(|c| c.2).collect())));
    let churn: Vec<Churn> = rows
        .iter()
        .map(|r| {
            let g = r.2;
            let n1 = g.completers.len();
            if n1 == 0 {
                return (None, None, None, None, None);
            }
            let p1 = g.churned as f64 / n1 as f64;
            let Some((n2, gone)) = others_churn(g).filter(|(n2, _)| *n2 > 0) else {
                return (Some(p1), None, None, None, None);
            };
            let p2 = gone as f64 / n2 as f64;
            let se = (p1 * (1.0 - p1) / n1 as f64 + p2 * (1.0 - p2) / n2 as f64).sqrt();
            let diff = p1 - p2;
            (
                Some(p1),
                Some(p2),
                Some(diff),
                Some(diff - 1.96 * se),
                Some(diff + 1.96 * se),
            )
        })
        .collect();
    cols.push(("completers", int(&|g| g.completers.len() as i64)));
    cols.push(("completer_churn_rate", float(churn.iter().map(|c| c.0).collect())));
    cols.push(("other_churn_rate", float(churn.iter().map(|c| c.1).collect())));
    cols.push(("churn_difference", float(churn.iter().map(|c| c.2).collect())));
    cols.push((
        "churn_difference_ci_low",
        float(churn.iter().map(|c| c.3).collect()),
    ));
    cols.push((
        "churn_difference_ci_high",
        float(churn.iter().map(|c| c.4).collect()),
    ));
    cols.push(("_run_id", Arc::new(StringArray::from(vec![run_id; n]))));
    let schema = Schema::new(
        cols.iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), *name != "as_of_date"))
            .collect::<Vec<_>>(),
    );
    let batch = RecordBatch::try_new(Arc::new(schema), cols.into_iter().map(|(_, a)| a).collect())
        .map_err(|e| Error::Job(format!("content_effectiveness: {e}")))?;
    Ok(vec![batch])
}

#[cfg(test)]
mod tests {
    use super::mean_ci;

    #[test]
    fn a_mean_has_an_interval_from_its_spread() {
        let (m, lo, hi) = mean_ci(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(m, Some(2.5));
        let half = 1.96 * (1.666_666_666_666_666_7_f64 / 4.0).sqrt();
        assert!((lo.unwrap() - (2.5 - half)).abs() < 1e-12 && (hi.unwrap() - (2.5 + half)).abs() < 1e-12);
        assert_eq!(mean_ci(&[]), (None, None, None));
        assert_eq!(mean_ci(&[3.0]), (Some(3.0), None, None));
    }
}
