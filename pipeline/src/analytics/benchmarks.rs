//! `analytics.benchmarks`: each KPI of the company and of each segment against (a) its own
//! history (30 and 90 days earlier), (b) the other segments (median and rank) and (c) an industry
//! table shipped as data (`data/industry_benchmarks.csv`, with its published source on every row),
//! which `[analytics] industry_benchmarks = "file.csv"` replaces.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use deltalake::arrow::array::{ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray, UInt32Array};
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::datafusion::prelude::SessionContext;

use crate::lake::query::{epoch_days, floats, has_table, sql, strings};
use crate::{Error, Result, Settings};

/// The KPIs benchmarked, and whether a higher value is better.
pub const KPIS: &[(&str, bool)] = &[
    ("grr_12m", true),
    ("nrr_12m", true),
    ("logo_churn_12m", false),
    ("revenue_at_risk_share", false),
    ("high_risk_share", false),
    ("mean_health_score", true),
];

/// The industry table shipped with cslake.
pub const SHIPPED_INDUSTRY: &str = include_str!("../../../data/industry_benchmarks.csv");

/// One row of an industry benchmark table.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct IndustryRow {
    pub kpi: String,
    pub band_kind: String,
    pub band: String,
    pub acv_min: Option<f64>,
    pub acv_max: Option<f64>,
    pub p25: Option<f64>,
    pub median: f64,
    pub p75: Option<f64>,
    pub source: String,
    pub url: Option<String>,
    pub published: Option<String>,
}

/// Reads an industry table (the shipped one, or the user's), naming the file and row of a bad one.
pub fn industry_table(settings: &Settings) -> Result<Vec<IndustryRow>> {
    let (name, text) = match &settings.file.analytics.industry_benchmarks {
        Some(p) => {
            let path = settings.config_path(p);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::Config(format!("[analytics] industry_benchmarks {}: {e}", path.display()))
            })?;
            (path.display().to_string(), text)
        }
        None => (
            "data/industry_benchmarks.csv (shipped)".to_string(),
            SHIPPED_INDUSTRY.to_string(),
        ),
    };
    let mut rows = Vec::new();
    let mut r = csv::Reader::from_reader(text.as_bytes());
    for (i, row) in r.deserialize::<IndustryRow>().enumerate() {
        let row = row.map_err(|e| Error::Config(format!("{name}: row {}: {e}", i + 2)))?;
        if !KPIS.iter().any(|(k, _)| *k == row.kpi) {
            return Err(Error::Config(format!(
                "{name}: row {}: kpi `{}` is not one cslake computes ({})",
                i + 2,
                row.kpi,
                KPIS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
            )));
        }
        if row.band_kind != "acv" && row.band_kind != "all" {
            return Err(Error::Config(format!(
                "{name}: row {}: band_kind `{}` must be `acv` (matched on annual contract value) or `all`",
                i + 2,
                row.band_kind
            )));
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The industry row for a KPI at an annual contract value.
fn industry_for<'a>(rows: &'a [IndustryRow], kpi: &str, acv: f64) -> Option<&'a IndustryRow> {
    rows.iter().filter(|r| r.kpi == kpi).find(|r| {
        r.band_kind == "all"
            || (acv.is_finite() && r.acv_min.is_none_or(|m| acv >= m) && r.acv_max.is_none_or(|m| acv < m))
    })
}

type Kpis = BTreeMap<(String, String), f64>;

/// Every KPI on date `t`, for `all` and per segment: keys are (scope value, kpi), where the scope
/// value is `all` or the segment's name.
async fn kpis_at(ctx: &SessionContext, t: NaiveDate, back_days: i64) -> Result<Kpis> {
    let mut out = Kpis::new();
    // scores of `t`, or of the latest day scored up to `back_days` before it (a past date's
    // scores exist only where a run or backfill made them; daily runs skip days)
    let day_of = |table: &str| {
        format!(
            "(SELECT MAX(as_of_date) FROM {table} WHERE as_of_date <= DATE '{t}' AND as_of_date >= DATE '{}')",
            t - Duration::days(back_days)
        )
    };
    let seg = "COALESCE(a.segment, 'unknown')";
    let mut put = |batches: &[RecordBatch], cols: &[&str]| -> Result<()> {
        for b in batches {
            let scope = strings(b, "scope")?;
            for c in cols {
                for (s, v) in scope.iter().zip(floats(b, c)?) {
                    if v.is_finite() {
                        out.insert((s.clone().unwrap_or_else(|| "all".into()), c.to_string()), v);
                    }
                }
            }
        }
        Ok(())
    };
    let mrr_on = |day: NaiveDate| crate::analytics::financial::mrr_on(day);
    if has_table(ctx, "core.subscriptions") {
        let q = format!(
            "SELECT {seg} AS scope, SUM(LEAST(COALESCE(n.mrr, 0), t.mrr)) / SUM(t.mrr) AS grr_12m, \
             SUM(COALESCE(n.mrr, 0)) / SUM(t.mrr) AS nrr_12m, AVG(CASE WHEN COALESCE(n.mrr, 0) <= 0 THEN 1.0 ELSE 0.0 END) AS logo_churn_12m \
             FROM ({then}) t LEFT JOIN ({now}) n ON n.account_id = t.account_id LEFT JOIN core.accounts a ON a.account_id = t.account_id \
             WHERE t.mrr > 0 GROUP BY ROLLUP({seg})",
            then = mrr_on(t - Duration::days(365)),
            now = mrr_on(t)
        );
        put(&sql(ctx, &q).await?, &["grr_12m", "nrr_12m", "logo_churn_12m"])?;
    }
    if has_table(ctx, "scores.risk_scores") {
        let mrr = if has_table(ctx, "core.subscriptions") {
            mrr_on(t)
        } else {
            "SELECT account_id, mrr FROM core.accounts".to_string()
        };
        let q = format!(
            "SELECT {seg} AS scope, SUM(COALESCE(m.mrr, 0) * r.churn_probability) / NULLIF(SUM(COALESCE(m.mrr, 0)), 0) AS revenue_at_risk_share, \
             AVG(CASE WHEN r.risk_band IN ('high', 'critical') THEN 1.0 ELSE 0.0 END) AS high_risk_share \
             FROM scores.risk_scores r LEFT JOIN ({mrr}) m ON m.account_id = r.account_id LEFT JOIN core.accounts a ON a.account_id = r.account_id \
             WHERE r.as_of_date = {d} GROUP BY ROLLUP({seg})",
            d = day_of("scores.risk_scores")
        );
        put(
            &sql(ctx, &q).await?,
            &["revenue_at_risk_share", "high_risk_share"],
        )?;
    }
    if has_table(ctx, "scores.health_scores") {
        let q = format!(
            "SELECT {seg} AS scope, AVG(h.health_score) AS mean_health_score FROM scores.health_scores h \
             LEFT JOIN core.accounts a ON a.account_id = h.account_id WHERE h.as_of_date = {d} GROUP BY ROLLUP({seg})",
            d = day_of("scores.health_scores")
        );
        put(&sql(ctx, &q).await?, &["mean_health_score"])?;
    }
    Ok(out)
}

/// Annual contract value (ARR per paying account) per scope on `t`.
async fn acv_at(ctx: &SessionContext, t: NaiveDate) -> Result<BTreeMap<String, f64>> {
    let mrr = if has_table(ctx, "core.subscriptions") {
        crate::analytics::financial::mrr_on(t)
    } else {
        "SELECT account_id, mrr FROM core.accounts".to_string()
    };
    let seg = "COALESCE(a.segment, 'unknown')";
    let q = format!(
        "SELECT {seg} AS scope, SUM(m.mrr) * 12 / COUNT(*) AS acv FROM ({mrr}) m \
         LEFT JOIN core.accounts a ON a.account_id = m.account_id WHERE m.mrr > 0 GROUP BY ROLLUP({seg})"
    );
    let mut out = BTreeMap::new();
    for b in sql(ctx, &q).await? {
        for (s, v) in strings(&b, "scope")?.into_iter().zip(floats(&b, "acv")?) {
            out.insert(s.unwrap_or_else(|| "all".into()), v);
        }
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The benchmarks rows for `as_of`.
pub async fn benchmarks(
    ctx: &SessionContext,
    industry: &[IndustryRow],
    as_of: NaiveDate,
    run_id: &str,
) -> Result<RecordBatch> {
    let now = kpis_at(ctx, as_of, 0).await?;
    let d30 = kpis_at(ctx, as_of - Duration::days(30), 7).await?;
    let d90 = kpis_at(ctx, as_of - Duration::days(90), 7).await?;
    let acv = acv_at(ctx, as_of).await?;
    let mut scopes: Vec<String> = now.keys().map(|(s, _)| s.clone()).collect();
    scopes.sort();
    scopes.dedup();
    // `all` first, then the segments
    scopes.sort_by_key(|s| s != "all");

    let mut dimension = Vec::new();
    let mut value_col = Vec::new();
    let mut kpi_col = Vec::new();
    let mut cols: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    let mut rank = Vec::new();
    let mut peers = Vec::new();
    let mut band = Vec::new();
    let mut source = Vec::new();
    let mut url = Vec::new();
    let f = |x: Option<&f64>| x.copied().filter(|v| v.is_finite());
    for (kpi, higher_better) in KPIS {
        let segs: Vec<(String, f64)> = now
            .iter()
            .filter(|((s, k), _)| k == kpi && s != "all")
            .map(|((s, _), v)| (s.clone(), *v))
            .collect();
        let peer_median = median(segs.iter().map(|(_, v)| *v).collect());
        for scope in &scopes {
            let Some(v) = f(now.get(&(scope.clone(), kpi.to_string()))) else {
                continue;
            };
            let key = (scope.clone(), kpi.to_string());
            let (v30, v90) = (f(d30.get(&key)), f(d90.get(&key)));
            let a = acv.get(scope).copied().unwrap_or(f64::NAN);
            let ind = industry_for(industry, kpi, a);
            dimension.push(if scope == "all" { "all" } else { "segment" }.to_string());
            value_col.push(scope.clone());
            kpi_col.push(kpi.to_string());
            let mut push = |c: &'static str, x: Option<f64>| cols.entry(c).or_default().push(x);
            push("value", Some(v));
            push("value_30d_ago", v30);
            push("value_90d_ago", v90);
            push("change_30d", v30.map(|o| v - o));
            push("change_90d", v90.map(|o| v - o));
            push("peer_median", peer_median);
            push("vs_peer_median", peer_median.map(|m| v - m));
            push("acv", a.is_finite().then_some(a));
            push("industry_p25", ind.and_then(|r| r.p25));
            push("industry_median", ind.map(|r| r.median));
            push("industry_p75", ind.and_then(|r| r.p75));
            push("vs_industry_median", ind.map(|r| v - r.median));
            if scope == "all" {
                rank.push(None);
            } else {
                let better = segs
                    .iter()
                    .filter(|(_, o)| if *higher_better { *o > v } else { *o < v })
                    .count();
                rank.push(Some(better as u32 + 1));
            }
            peers.push(segs.len() as u32);
            band.push(ind.map(|r| r.band.clone()));
            source.push(ind.map(|r| r.source.clone()));
            url.push(ind.and_then(|r| r.url.clone()));
        }
    }
    let n = kpi_col.len();
    let higher: Vec<bool> = kpi_col
        .iter()
        .map(|k| KPIS.iter().any(|(x, h)| x == k && *h))
        .collect();
    let mut fields = vec![
        Field::new("dimension", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, false),
        Field::new("kpi", DataType::Utf8, false),
        Field::new("higher_is_better", DataType::Boolean, false),
    ];
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(dimension)),
        Arc::new(StringArray::from(value_col)),
        Arc::new(StringArray::from(kpi_col)),
        Arc::new(deltalake::arrow::array::BooleanArray::from(higher)),
    ];
    let order = [
        "value",
        "value_30d_ago",
        "value_90d_ago",
        "change_30d",
        "change_90d",
        "peer_median",
        "vs_peer_median",
        "acv",
        "industry_p25",
        "industry_median",
        "industry_p75",
        "vs_industry_median",
    ];
    for c in order {
        let name = if c == "value" { "kpi_value" } else { c };
        fields.push(Field::new(name, DataType::Float64, true));
        arrays.push(Arc::new(Float64Array::from(
            cols.remove(c).unwrap_or_else(|| vec![None; n]),
        )));
        if c == "vs_peer_median" {
            fields.push(Field::new("peer_rank", DataType::UInt32, true));
            arrays.push(Arc::new(UInt32Array::from(rank.clone())));
            fields.push(Field::new("peer_segments", DataType::UInt32, false));
            arrays.push(Arc::new(UInt32Array::from(peers.clone())));
        }
    }
    fields.push(Field::new("industry_band", DataType::Utf8, true));
    arrays.push(Arc::new(StringArray::from(band)));
    fields.push(Field::new("industry_source", DataType::Utf8, true));
    arrays.push(Arc::new(StringArray::from(source)));
    fields.push(Field::new("industry_url", DataType::Utf8, true));
    arrays.push(Arc::new(StringArray::from(url)));
    fields.push(Field::new("as_of_date", DataType::Date32, false));
    arrays.push(Arc::new(Date32Array::from(vec![epoch_days(as_of); n])));
    fields.push(Field::new("_run_id", DataType::Utf8, false));
    arrays.push(Arc::new(StringArray::from(vec![run_id; n])));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_industry_table_parses_and_matches_bands() {
        let s = Settings {
            lake: "x".into(),
            file: toml::from_str("").unwrap(),
            config_dir: std::path::PathBuf::new(),
            actor: "t".into(),
            memory_limit: None,
            engine: Default::default(),
        };
        let rows = industry_table(&s).unwrap();
        assert!(rows.iter().all(|r| !r.source.is_empty()));
        assert_eq!(industry_for(&rows, "nrr_12m", 5_000.0).unwrap().median, 1.00);
        assert_eq!(industry_for(&rows, "nrr_12m", 30_000.0).unwrap().median, 1.03);
        assert_eq!(industry_for(&rows, "grr_12m", 1_000_000.0).unwrap().median, 0.93);
        assert!(industry_for(&rows, "mean_health_score", 30_000.0).is_none());
        assert!(industry_for(&rows, "nrr_12m", f64::NAN).is_none());
    }

    #[test]
    fn a_bad_industry_table_names_its_file_and_row() {
        let dir = tempfile::tempdir().unwrap();
        let header = "kpi,band_kind,band,acv_min,acv_max,p25,median,p75,source,url,published\n";
        std::fs::write(
            dir.path().join("ours.csv"),
            format!("{header}nrr_12m,acv,small,0,10000,,1.01,,Our survey,,2025\narr_growth,all,all,,,,0.3,,Our survey,,2025\n"),
        )
        .unwrap();
        let mut s = Settings {
            lake: "x".into(),
            file: toml::from_str("[analytics]\nindustry_benchmarks = \"ours.csv\"\n").unwrap(),
            config_dir: dir.path().to_path_buf(),
            actor: "t".into(),
            memory_limit: None,
            engine: Default::default(),
        };
        let e = industry_table(&s).unwrap_err().to_string();
        assert!(e.contains("ours.csv: row 3: kpi `arr_growth`"), "{e}");
        std::fs::write(
            dir.path().join("ours.csv"),
            format!("{header}nrr_12m,acv,small,0,x,,1.01,,Our survey,,2025\n"),
        )
        .unwrap();
        let e = industry_table(&s).unwrap_err().to_string();
        assert!(e.contains("ours.csv: row 2"), "{e}");
        std::fs::write(
            dir.path().join("ours.csv"),
            format!("{header}nrr_12m,acv,small,0,10000,,1.01,,Our survey,,2025\n"),
        )
        .unwrap();
        let rows = industry_table(&s).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            industry_for(&rows, "nrr_12m", 5_000.0).unwrap().source,
            "Our survey"
        );
        s.file.analytics.industry_benchmarks = Some("missing.csv".into());
        assert!(
            industry_table(&s)
                .unwrap_err()
                .to_string()
                .contains("missing.csv")
        );
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![f64::NAN]), None);
    }
}
