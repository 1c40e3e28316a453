//! `scores.risk_scores` and `scores.prediction_log`: the churn probability of every account, its
//! 0-100 score and band, and the factors behind it as sentences a CSM reads ("logins in the last
//! 30 days: 11, down 62% from 29 30 days earlier (typical 138)").

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::Duration;
use cslake_features::Registry;
use cslake_models::Prediction;
use deltalake::arrow::array::{
    ArrayRef, Date32Array, Float64Array, Float64Builder, Int32Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, StructBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Fields, Schema};
use deltalake::datafusion::prelude::SessionContext;

use crate::Result;
use crate::lake::query::{epoch_days, floats, sql, strings};
use crate::score::inputs::Scoring;
use crate::score::report::TopAccount;
use crate::settings::ScoringConfig;

/// The day's risk tables and what the report says of them.
pub struct Risk {
    pub scores_batch: RecordBatch,
    pub log_batch: RecordBatch,
    pub bands: BTreeMap<String, usize>,
    /// The five accounts most at risk.
    pub top: Vec<TopAccount>,
}

fn factor_fields() -> Fields {
    Fields::from(vec![
        Field::new("feature", DataType::Utf8, true),
        Field::new("contribution", DataType::Float64, true),
        Field::new("value", DataType::Float64, true),
        Field::new("reason", DataType::Utf8, true),
    ])
}

fn fmt_num(v: f64) -> String {
    let v = v + 0.0; // no "-0"
    if !v.is_finite() {
        "missing".into()
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if v.abs() < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

fn band(score: f64, s: &crate::settings::ScoringConfig) -> &'static str {
    if score >= s.band_critical {
        "critical"
    } else if score >= s.band_high {
        "high"
    } else if score >= s.band_medium {
        "medium"
    } else {
        "low"
    }
}

/// Scores every account from the model's predictions.
#[allow(clippy::too_many_lines, clippy::too_many_arguments)]
pub async fn risk(
    ctx: &SessionContext,
    registry: &Registry,
    s: &Scoring,
    predictions: &[Prediction],
    x: &[f32],
    sc: &ScoringConfig,
    version: &str,
    run_id: &str,
) -> Result<Risk> {
    let (as_of, ids, names, cols, info) = (s.as_of, &s.ids, &s.names, &s.cols, &s.info);
    let n = ids.len();
    let day = epoch_days(as_of);
    let d = names.len();
    let input_hashes: Vec<String> = (0..n)
        .map(|i| inputs_hash(names, &x[i * d..(i + 1) * d]))
        .collect();
    let mut bands_count: BTreeMap<String, usize> = BTreeMap::new();
    // each feature 30 days earlier, so that reasons can say "down 62%" of an account's own trend
    let month_ago = as_of - Duration::days(30);
    let mut before: HashMap<String, HashMap<String, f64>> = HashMap::new();
    for view in &registry.views {
        let cols: Vec<&str> = view.features.iter().map(|(f, _)| f.as_str()).collect();
        let q = format!(
            "SELECT account_id, {} FROM features.{} WHERE as_of_date = DATE '{month_ago}'",
            cols.join(", "),
            view.name
        );
        for b in sql(ctx, &q).await? {
            let ids = strings(&b, "account_id")?;
            for f in &cols {
                let v = floats(&b, f)?;
                let m = before.entry((*f).to_string()).or_default();
                for (i, id) in ids.iter().enumerate() {
                    if let Some(id) = id
                        && v[i].is_finite()
                    {
                        m.insert(id.clone(), v[i]);
                    }
                }
            }
        }
    }

    // risk_scores
    let mut factors = ListBuilder::new(StructBuilder::from_fields(factor_fields(), n));
    let mut probs = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    let mut bands = Vec::with_capacity(n);
    let mut ranked: Vec<(usize, f64)> = Vec::with_capacity(n);
    let mut reasons_of: Vec<Vec<String>> = Vec::with_capacity(n);
    for (i, p) in predictions.iter().enumerate() {
        let score = (p.probability * 100.0).round();
        probs.push(p.probability);
        scores.push(score as i32);
        let b = band(score, sc);
        *bands_count.entry(b.to_string()).or_default() += 1;
        bands.push(b);
        ranked.push((i, p.probability));
        let mut reasons = Vec::new();
        let sb = factors.values();
        for c in p
            .contributions
            .iter()
            .filter(|c| c.contribution > 0.0)
            .take(sc.top_factors)
        {
            let label = registry.label(&c.feature).unwrap_or(&c.feature);
            let earlier = before.get(&c.feature).and_then(|m| m.get(&ids[i])).copied();
            let reason = readable_reason(label, c.value, c.typical, earlier);
            if let Some(f) = sb.field_builder::<StringBuilder>(0) {
                f.append_value(&c.feature);
            }
            if let Some(f) = sb.field_builder::<Float64Builder>(1) {
                f.append_value(c.contribution);
            }
            if let Some(f) = sb.field_builder::<Float64Builder>(2) {
                f.append_option(c.value.is_finite().then_some(c.value));
            }
            if let Some(f) = sb.field_builder::<StringBuilder>(3) {
                f.append_value(&reason);
            }
            sb.append(true);
            reasons.push(reason);
        }
        factors.append(true);
        reasons_of.push(reasons);
    }
    let risk_schema = Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Utf8, false),
        Field::new("as_of_date", DataType::Date32, false),
        Field::new("churn_probability", DataType::Float64, false),
        Field::new("risk_score", DataType::Int32, false),
        Field::new("risk_band", DataType::Utf8, false),
        Field::new("model_version", DataType::Utf8, false),
        Field::new(
            "top_factors",
            DataType::List(Arc::new(Field::new(
                "item",
                DataType::Struct(factor_fields()),
                true,
            ))),
            true,
        ),
        Field::new("_run_id", DataType::Utf8, false),
    ]));
    let risk = RecordBatch::try_new(
        risk_schema,
        vec![
            Arc::new(StringArray::from(ids.clone())),
            Arc::new(Date32Array::from(vec![day; n])),
            Arc::new(Float64Array::from(probs)),
            Arc::new(Int32Array::from(scores.clone())),
            Arc::new(StringArray::from(bands)),
            Arc::new(StringArray::from(vec![version; n])),
            Arc::new(factors.finish()) as ArrayRef,
            Arc::new(StringArray::from(vec![run_id; n])),
        ],
    )?;
    // prediction_log: every prediction ever made, with the model and a hash of its inputs
    let log_schema = Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Utf8, false),
        Field::new("as_of_date", DataType::Date32, false),
        Field::new("model_version", DataType::Utf8, false),
        Field::new("churn_probability", DataType::Float64, false),
        Field::new("risk_score", DataType::Int32, false),
        Field::new("inputs_hash", DataType::Utf8, false),
        Field::new(
            "scored_at",
            crate::lake::schema::ColType::Timestamp.arrow(),
            false,
        ),
        Field::new("_run_id", DataType::Utf8, false),
    ]));
    let log = RecordBatch::try_new(
        log_schema,
        vec![
            Arc::new(StringArray::from(ids.clone())),
            Arc::new(Date32Array::from(vec![day; n])),
            Arc::new(StringArray::from(vec![version; n])),
            Arc::new(Float64Array::from_iter_values(
                predictions.iter().map(|p| p.probability),
            )),
            Arc::new(Int32Array::from(scores.clone())),
            Arc::new(StringArray::from(input_hashes)),
            Arc::new(
                deltalake::arrow::array::TimestampMicrosecondArray::from(vec![
                    chrono::Utc::now()
                        .timestamp_micros();
                    n
                ])
                .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec![run_id; n])),
        ],
    )?;
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(ids[a.0].cmp(&ids[b.0])));
    let top = ranked
        .iter()
        .take(5)
        .map(|(i, _)| TopAccount {
            account_id: ids[*i].clone(),
            name: info.get(&ids[*i]).map(|x| x.0.clone()).unwrap_or_default(),
            risk_score: scores[*i],
            mrr: cols.get("mrr").map_or(f64::NAN, |m| m[*i]),
            reasons: reasons_of[*i].clone(),
        })
        .collect();

    Ok(Risk {
        scores_batch: risk,
        log_batch: log,
        bands: bands_count,
        top,
    })
}

/// One factor as a sentence: the value, its change over the last 30 days when large enough to
/// matter ("down 62% from 29 30 days earlier"), and the typical value. Features that are already a
/// change ("(ratio - 1)" in their label) read as "down 62%".
pub(crate) fn readable_reason(label: &str, value: f64, typical: f64, month_ago: Option<f64>) -> String {
    let direction = |change: f64| {
        let pct = (change.abs() * 100.0).round();
        if change < 0.0 {
            format!("down {pct:.0}%")
        } else {
            format!("up {pct:.0}%")
        }
    };
    if let Some(base) = label.strip_suffix(" (ratio - 1)")
        && value.is_finite()
    {
        return format!("{base}: {}", direction(value));
    }
    let mut out = format!("{label}: {}", fmt_num(value));
    if let Some(b) = month_ago
        && value.is_finite()
        && b.abs() > 1e-9
    {
        let change = (value - b) / b.abs();
        if change.abs() >= 0.1 {
            out.push_str(&format!(
                ", {} from {} 30 days earlier",
                direction(change),
                fmt_num(b)
            ));
        }
    }
    out.push_str(&format!(" (typical {})", fmt_num(typical)));
    out
}

/// FNV-1a over the feature names and the bits of their values: equal inputs, equal hash, on
/// every platform and version (unlike `DefaultHasher`).
fn inputs_hash(names: &[String], values: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (n, v) in names.iter().zip(values) {
        eat(n.as_bytes());
        // all NaNs hash alike
        eat(&if v.is_nan() {
            f32::NAN.to_bits()
        } else {
            v.to_bits()
        }
        .to_le_bytes());
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::readable_reason;

    #[test]
    fn reasons_read_like_sentences() {
        assert_eq!(
            readable_reason("logins in the last 30 days", 11.0, 138.0, Some(29.0)),
            "logins in the last 30 days: 11, down 62% from 29 30 days earlier (typical 138)"
        );
        // a small change is not worth saying
        assert_eq!(
            readable_reason("seats", 10.0, 12.0, Some(10.5)),
            "seats: 10 (typical 12)"
        );
        assert_eq!(
            readable_reason(
                "change in events, last 30 days against the 30 before (ratio - 1)",
                -0.62,
                0.0,
                None
            ),
            "change in events, last 30 days against the 30 before: down 62%"
        );
        assert_eq!(
            readable_reason("days since the last event", f64::NAN, 2.0, Some(3.0)),
            "days since the last event: missing (typical 2)"
        );
    }
}
