//! Data quality of the daily features, checked before they reach a model.
//!
//! Per run and feature: rows, null rate, min, max, mean, distinct values, and drift as the
//! population stability index (PSI) against the previous materialised day and against the
//! training set of the current model (deciles of the reference, PSI = Σ (a − e)·ln(a / e)).
//! Stored in `ops.feature_stats`; `[features.checks]` turns them into warnings or failures.
//! Source freshness (`[freshness]`) checks how old the newest row of each `core` table is.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use deltalake::arrow::array::{
    Array, AsArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Float64Type, Schema};
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::query::{epoch_days, has_table, sql, strings};
use crate::settings::{FeatureCheck, FreshnessCheck};
use crate::{Error, Lake, Result};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FeatureStats {
    pub view: String,
    pub feature: String,
    pub rows: usize,
    pub null_rate: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub distinct: usize,
    pub psi_previous: Option<f64>,
    pub psi_training: Option<f64>,
    /// `ok`, `warn` or `fail`
    pub status: String,
    pub problems: Vec<String>,
    #[serde(skip)]
    pub edges: Vec<f64>,
    #[serde(skip)]
    pub fractions: Vec<f64>,
}

/// The values of a column as `f64` (nulls and non-finite values as `None`).
pub fn values(batches: &[RecordBatch], column: &str) -> Result<Vec<Option<f64>>> {
    let mut out = Vec::new();
    for b in batches {
        let Some(c) = b.column_by_name(column) else {
            continue;
        };
        let c = cast(c, &DataType::Float64)?;
        let a = c.as_primitive::<Float64Type>();
        out.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i)).filter(|v| v.is_finite())));
    }
    Ok(out)
}

/// Decile cut points of `vals` (deduplicated), and the share of `vals` in each bin.
pub fn bins(vals: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut s = vals.to_vec();
    s.sort_by(f64::total_cmp);
    bins_sorted(&s)
}

/// [`bins`] of values already in ascending order (`f64::total_cmp`).
fn bins_sorted(sorted: &[f64]) -> (Vec<f64>, Vec<f64>) {
    if sorted.is_empty() {
        return (vec![], vec![]);
    }
    let mut edges: Vec<f64> = (1..10)
        .map(|q| sorted[((q as f64 / 10.0) * (sorted.len() - 1) as f64).round() as usize])
        .collect();
    edges.dedup();
    let fractions = shares_sorted(&edges, sorted);
    (edges, fractions)
}

/// The share of `sorted` (ascending, finite) in each bin `(-inf, e0], (e0, e1], …, (e_last,
/// inf)`: a binary search per edge rather than one per value.
fn shares_sorted(edges: &[f64], sorted: &[f64]) -> Vec<f64> {
    let n = sorted.len().max(1) as f64;
    let mut below = 0;
    let mut out = Vec::with_capacity(edges.len() + 1);
    for e in edges {
        let upto = sorted.partition_point(|v| v <= e);
        out.push(upto.saturating_sub(below) as f64 / n);
        below = below.max(upto);
    }
    out.push((sorted.len() - below) as f64 / n);
    out
}

/// Population stability index of `vals` against a reference binning.
pub fn psi(edges: &[f64], reference: &[f64], vals: &[f64]) -> Option<f64> {
    let mut s = vals.to_vec();
    s.sort_by(f64::total_cmp);
    psi_sorted(edges, reference, &s)
}

/// [`psi`] of values already in ascending order.
fn psi_sorted(edges: &[f64], reference: &[f64], sorted: &[f64]) -> Option<f64> {
    if sorted.is_empty() || reference.len() != edges.len() + 1 {
        return None;
    }
    let actual = shares_sorted(edges, sorted);
    let eps = 1e-4;
    Some(
        actual
            .iter()
            .zip(reference)
            .map(|(a, e)| {
                let (a, e) = (a.max(eps), e.max(eps));
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}

pub fn summarize(view: &str, feature: &str, vals: &[Option<f64>]) -> FeatureStats {
    let mut present: Vec<f64> = vals.iter().flatten().copied().collect();
    present.sort_by(f64::total_cmp);
    summarize_sorted(view, feature, vals.len(), &present)
}

/// [`summarize`] from the row count and the present values in ascending order.
fn summarize_sorted(view: &str, feature: &str, rows: usize, present: &[f64]) -> FeatureStats {
    // equal values are adjacent once sorted
    let distinct = present
        .iter()
        .enumerate()
        .filter(|(i, v)| *i == 0 || present[i - 1].to_bits() != v.to_bits())
        .count();
    let (edges, fractions) = bins_sorted(present);
    FeatureStats {
        view: view.into(),
        feature: feature.into(),
        rows,
        null_rate: if rows == 0 {
            0.0
        } else {
            (rows - present.len()) as f64 / rows as f64
        },
        min: present.first().copied(),
        max: present.last().copied(),
        mean: (!present.is_empty()).then(|| present.iter().sum::<f64>() / present.len() as f64),
        distinct,
        status: "ok".into(),
        edges,
        fractions,
        ..Default::default()
    }
}

/// At most this many training values per feature are binned as the reference of the drift
/// against the training set.
const TRAINING_SAMPLE: usize = 100_000;

/// The statistics of every feature of the computed `views` (view, batches, feature columns),
/// with their drift against the `previous` day's binning and the `training` values: each
/// feature's values sorted once, the features shared out over the cores (a daily run's 60
/// features of 100,000 accounts took a quarter of a second one after the other).
pub fn statistics(
    views: &[(&str, &[RecordBatch], Vec<String>)],
    previous: &Binnings,
    training: &HashMap<String, Vec<f64>>,
) -> Result<Vec<FeatureStats>> {
    let work: Vec<(&str, &[RecordBatch], &str)> = views
        .iter()
        .flat_map(|(name, batches, cols)| cols.iter().map(move |c| (*name, *batches, c.as_str())))
        .collect();
    let one = |(name, batches, col): (&str, &[RecordBatch], &str)| -> Result<FeatureStats> {
        let vals = values(batches, col)?;
        let mut present: Vec<f64> = vals.iter().flatten().copied().collect();
        present.sort_by(f64::total_cmp);
        let mut s = summarize_sorted(name, col, vals.len(), &present);
        if let Some((edges, fractions)) = previous.get(&(name.to_string(), col.to_string())) {
            s.psi_previous = psi_sorted(edges, fractions, &present);
        }
        if let Some(t) = training.get(col) {
            // deciles of a training set of millions of rows from an even sample of it: the
            // reference of a drift measure, not worth sorting every row each day
            let step = t.len().div_ceil(TRAINING_SAMPLE).max(1);
            let sample: Vec<f64> = t.iter().step_by(step).copied().collect();
            let (edges, fractions) = bins(&sample);
            s.psi_training = psi_sorted(&edges, &fractions, &present);
        }
        Ok(s)
    };
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, work.len().max(1));
    let per = work.len().div_ceil(workers).max(1);
    let chunks: Vec<Vec<(&str, &[RecordBatch], &str)>> = work.chunks(per).map(<[_]>::to_vec).collect();
    let done: Vec<Result<Vec<FeatureStats>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || chunk.into_iter().map(one).collect::<Result<Vec<_>>>()))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Job("feature statistics: a worker stopped".into())))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(work.len());
    for part in done {
        out.extend(part?);
    }
    Ok(out)
}

/// The check for a feature: its own entry, else its bare name's, else `default`.
fn check_for<'a>(
    checks: &'a HashMap<String, FeatureCheck>,
    view: &str,
    feature: &str,
) -> Option<&'a FeatureCheck> {
    checks
        .get(&format!("{view}.{feature}"))
        .or_else(|| checks.get(feature))
        .or_else(|| checks.get("default"))
}

/// Applies the configured thresholds; returns whether a failing check was hit.
pub fn judge(s: &mut FeatureStats, checks: &HashMap<String, FeatureCheck>) -> bool {
    let Some(c) = check_for(checks, &s.view, &s.feature) else {
        return false;
    };
    let mut problems = Vec::new();
    if let Some(m) = c.max_null_rate
        && s.null_rate > m
    {
        problems.push(format!(
            "null rate {:.1}% above {:.1}%",
            100.0 * s.null_rate,
            100.0 * m
        ));
    }
    if let (Some(m), Some(p)) = (c.max_psi, s.psi_previous)
        && p > m
    {
        problems.push(format!("drift against the previous day: PSI {p:.3} above {m}"));
    }
    if let (Some(m), Some(p)) = (c.max_psi_training, s.psi_training)
        && p > m
    {
        problems.push(format!("drift against the training set: PSI {p:.3} above {m}"));
    }
    if let (Some(lo), Some(v)) = (c.min, s.min)
        && v < lo
    {
        problems.push(format!("minimum {v} below {lo}"));
    }
    if let (Some(hi), Some(v)) = (c.max, s.max)
        && v > hi
    {
        problems.push(format!("maximum {v} above {hi}"));
    }
    if problems.is_empty() {
        return false;
    }
    let fail = c.action.as_deref() == Some("fail");
    s.status = if fail { "fail" } else { "warn" }.into();
    s.problems = problems;
    fail
}

/// Reference binnings: (view, feature) → (edges, fractions).
pub type Binnings = HashMap<(String, String), (Vec<f64>, Vec<f64>)>;

/// The reference binnings of the previous materialised day before `as_of`.
pub async fn previous(ctx: &SessionContext, as_of: NaiveDate) -> Result<Binnings> {
    let mut out = HashMap::new();
    if !has_table(ctx, "ops.feature_stats") {
        return Ok(out);
    }
    let q = format!(
        "SELECT view, feature, edges, fractions FROM ops.feature_stats WHERE as_of_date = \
         (SELECT MAX(as_of_date) FROM ops.feature_stats WHERE as_of_date < DATE '{as_of}')"
    );
    for b in sql(ctx, &q).await? {
        let (v, f, e, fr) = (
            strings(&b, "view")?,
            strings(&b, "feature")?,
            strings(&b, "edges")?,
            strings(&b, "fractions")?,
        );
        for i in 0..b.num_rows() {
            let parse = |s: &Option<String>| -> Vec<f64> {
                s.as_deref()
                    .and_then(|s| serde_json::from_str(s).ok())
                    .unwrap_or_default()
            };
            if let (Some(v), Some(f)) = (&v[i], &f[i]) {
                out.insert((v.clone(), f.clone()), (parse(&e[i]), parse(&fr[i])));
            }
        }
    }
    Ok(out)
}

/// The values of each feature in the training set (`training.churn`), if there is one.
pub async fn training_values(ctx: &SessionContext, features: &[String]) -> Result<HashMap<String, Vec<f64>>> {
    let mut out = HashMap::new();
    if !has_table(ctx, "training.churn") {
        return Ok(out);
    }
    let batches = sql(ctx, "SELECT * FROM training.churn").await?;
    for f in features {
        if batches.first().is_some_and(|b| b.column_by_name(f).is_some()) {
            out.insert(f.clone(), values(&batches, f)?.into_iter().flatten().collect());
        }
    }
    Ok(out)
}

/// Writes the day's statistics (replacing that date's).
pub async fn store(
    lake: &Lake,
    as_of: NaiveDate,
    stats: &[FeatureStats],
    run_id: &str,
) -> Result<Option<(usize, Option<u64>)>> {
    if stats.is_empty() {
        return Ok(None);
    }
    let n = stats.len();
    let schema = Arc::new(Schema::new(vec![
        Field::new("as_of_date", DataType::Date32, false),
        Field::new("view", DataType::Utf8, false),
        Field::new("feature", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
        Field::new("null_rate", DataType::Float64, false),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
        Field::new("mean", DataType::Float64, true),
        Field::new("distinct_values", DataType::Int64, false),
        Field::new("psi_previous", DataType::Float64, true),
        Field::new("psi_training", DataType::Float64, true),
        Field::new("status", DataType::Utf8, false),
        Field::new("problems", DataType::Utf8, true),
        Field::new("edges", DataType::Utf8, false),
        Field::new("fractions", DataType::Utf8, false),
        Field::new("_run_id", DataType::Utf8, false),
    ]));
    let f = |g: &dyn Fn(&FeatureStats) -> Option<f64>| Arc::new(Float64Array::from_iter(stats.iter().map(g)));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Date32Array::from(vec![epoch_days(as_of); n])),
            Arc::new(StringArray::from_iter_values(
                stats.iter().map(|s| s.view.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                stats.iter().map(|s| s.feature.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(stats.iter().map(|s| s.rows as i64))),
            Arc::new(Float64Array::from_iter_values(stats.iter().map(|s| s.null_rate))),
            f(&|s| s.min),
            f(&|s| s.max),
            f(&|s| s.mean),
            Arc::new(Int64Array::from_iter_values(
                stats.iter().map(|s| s.distinct as i64),
            )),
            f(&|s| s.psi_previous),
            f(&|s| s.psi_training),
            Arc::new(StringArray::from_iter_values(
                stats.iter().map(|s| s.status.as_str()),
            )),
            Arc::new(StringArray::from_iter(
                stats
                    .iter()
                    .map(|s| (!s.problems.is_empty()).then(|| s.problems.join("; "))),
            )),
            Arc::new(StringArray::from_iter_values(
                stats
                    .iter()
                    .map(|s| serde_json::to_string(&s.edges).unwrap_or_default()),
            )),
            Arc::new(StringArray::from_iter_values(
                stats
                    .iter()
                    .map(|s| serde_json::to_string(&s.fractions).unwrap_or_default()),
            )),
            Arc::new(StringArray::from(vec![run_id; n])),
        ],
    )?;
    let w = lake
        .target("ops", "feature_stats")
        .replace_where(
            vec![batch],
            &format!("as_of_date = '{as_of}'"),
            &["as_of_date"],
            run_id,
        )
        .await?;
    Ok(Some((n, w.version)))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Freshness {
    pub table: String,
    pub newest: Option<String>,
    pub age_days: Option<i64>,
    pub status: String,
}

/// How old each configured `core` table's newest row is at `as_of`; errors past `error_after`.
pub async fn freshness(
    ctx: &SessionContext,
    cfg: &HashMap<String, FreshnessCheck>,
    as_of: NaiveDate,
) -> Result<Vec<Freshness>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut names: Vec<&String> = cfg.keys().collect();
    names.sort();
    for name in names {
        let check = &cfg[name];
        let table = if name.contains('.') {
            name.clone()
        } else {
            format!("core.{name}")
        };
        let col = if has_table(ctx, &table) {
            let schema = ctx.table(table.as_str()).await?.schema().as_arrow().clone();
            crate::lake::retention::time_column(&table, &schema).or_else(|| {
                ["_ingested_at"]
                    .iter()
                    .find(|c| schema.field_with_name(c).is_ok())
                    .map(|c| c.to_string())
            })
        } else {
            None
        };
        let newest = match &col {
            Some(c) => {
                let q = format!(
                    "SELECT CAST(CAST(MAX({c}) AS DATE) AS VARCHAR) AS d FROM {table} WHERE CAST({c} AS DATE) <= DATE '{as_of}'"
                );
                sql(ctx, &q)
                    .await?
                    .first()
                    .map(|b| strings(b, "d"))
                    .transpose()?
                    .and_then(|v| v.into_iter().next().flatten())
            }
            None => None,
        };
        let age = newest
            .as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .map(|d| (as_of - d).num_days());
        let limit = |s: &Option<String>| {
            s.as_deref()
                .map(|v| {
                    crate::units::parse_days(v).map_err(|e| Error::Config(format!("[freshness] {name}: {e}")))
                })
                .transpose()
        };
        let (warn, error) = (limit(&check.warn_after)?, limit(&check.error_after)?);
        let status = match age {
            None if error.is_some() => "error",
            None => "warn",
            Some(a) if error.is_some_and(|e| a > e) => "error",
            Some(a) if warn.is_some_and(|w| a > w) => "warn",
            Some(_) => "ok",
        };
        match status {
            "error" => errors.push(format!(
                "{table}: newest row {} ({} days before {as_of}), allowed {} days",
                newest.as_deref().unwrap_or("none"),
                age.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                error.unwrap_or_default()
            )),
            "warn" => tracing::warn!(table = table.as_str(), age_days = age, "source is stale"),
            _ => {}
        }
        out.push(Freshness {
            table,
            newest,
            age_days: age,
            status: status.into(),
        });
    }
    if !errors.is_empty() {
        return Err(Error::Quality(format!("stale sources: {}", errors.join("; "))));
    }
    Ok(out)
}

/// `cslake features stats`: one day's statistics (`as_of`, or the latest day with any), rounded
/// for reading, with how many features each check verdict holds.
pub async fn stats_table(
    lake: &Lake,
    as_of: Option<NaiveDate>,
) -> Result<(Vec<RecordBatch>, std::collections::BTreeMap<String, usize>)> {
    let ctx = lake.session().await?;
    if !has_table(&ctx, "ops.feature_stats") {
        return Err(Error::Job(
            "no feature statistics yet: run `cslake features --as-of DATE`".into(),
        ));
    }
    let day = match as_of {
        Some(d) => format!("DATE '{d}'"),
        None => "(SELECT MAX(as_of_date) FROM ops.feature_stats)".into(),
    };
    let batches = sql(
        &ctx,
        &format!(
            "SELECT view, feature, rows, round(null_rate, 3) AS null_rate, round(min, 3) AS min, \
             round(max, 3) AS max, round(mean, 3) AS mean, distinct_values, \
             round(psi_previous, 3) AS psi_previous, round(psi_training, 3) AS psi_training, status, problems \
             FROM ops.feature_stats WHERE as_of_date = {day} ORDER BY view, feature"
        ),
    )
    .await?;
    let mut checks = std::collections::BTreeMap::new();
    for b in &batches {
        for s in strings(b, "status")?.into_iter().flatten() {
            *checks.entry(s).or_default() += 1;
        }
    }
    Ok((batches, checks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_zero_for_the_same_distribution_and_grows_with_a_shift() {
        let base: Vec<f64> = (0..1000).map(|i| (i % 100) as f64).collect();
        let (edges, fr) = bins(&base);
        assert!(psi(&edges, &fr, &base).unwrap() < 1e-9);
        let shifted: Vec<f64> = base.iter().map(|v| v + 30.0).collect();
        let p = psi(&edges, &fr, &shifted).unwrap();
        assert!(p > 0.25, "a 30% shift is a major change: {p}");
        let s = summarize("v", "f", &[Some(1.0), None, Some(3.0), Some(3.0)]);
        assert_eq!((s.rows, s.distinct, s.min, s.max), (4, 2, Some(1.0), Some(3.0)));
        assert!((s.null_rate - 0.25).abs() < 1e-12);
        // the shares count each value in the bin it falls in, ties at an edge below it
        let (edges, fr) = bins(&[1.0, 1.0, 2.0, 5.0, 5.0, 5.0, 9.0, 9.0, 9.0, 9.0]);
        assert_eq!(edges, [1.0, 2.0, 5.0, 9.0]);
        assert_eq!(fr, [0.2, 0.1, 0.3, 0.4, 0.0]);
        let stats = statistics(&[("v", &[], vec!["f".into()])], &HashMap::new(), &HashMap::new()).unwrap();
        assert_eq!((stats.len(), stats[0].rows), (1, 0));
    }
}
