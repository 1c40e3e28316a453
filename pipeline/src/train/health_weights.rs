//! `cslake health suggest-weights`: measure weights proposed from how well each measure, scored
//! 0-100 as the profile scores it, separates the accounts that churned from those that stayed in
//! the churn training set (its ROC AUC). What commercial "AI scorecards" do, as a diff a CS
//! operations lead reviews and applies to the profile file by hand.

use chrono::NaiveDate;
use cslake_models::Metrics;

use crate::lake::query::floats;
use crate::train::build_training_set;
use crate::{Lake, Result, Settings};

#[derive(Debug, Clone, serde::Serialize)]
pub struct MeasureWeight {
    pub profile: String,
    pub measure: String,
    pub feature: String,
    pub current: f64,
    pub suggested: f64,
    /// ROC AUC of (100 - measure score) against churn: 0.5 is no relation.
    pub auc: Option<f64>,
    /// Training rows where the feature had a value.
    pub rows: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct WeightSuggestion {
    pub as_of: String,
    pub rows: usize,
    pub churned: usize,
    pub measures: Vec<MeasureWeight>,
    /// The proposal as a diff of the profile's `weight` lines.
    pub diff: String,
}

/// A measure's 0-100 score, as the profile computes it (linear from `poor` to `healthy`).
fn measure_score(v: f64, poor: f64, healthy: f64) -> f64 {
    ((v - poor) / (healthy - poor)).clamp(0.0, 1.0) * 100.0
}

pub async fn suggest_weights(lake: &Lake, settings: &Settings, as_of: NaiveDate) -> Result<WeightSuggestion> {
    let profiles = crate::features::health_profiles(settings)?;
    let ctx = lake.session().await?;
    let set = build_training_set(&ctx, settings, settings.label_spec(), as_of, false).await?;
    let mut labels = Vec::new();
    for b in &set.batches {
        labels.extend(floats(b, "label")?);
    }
    let churned = labels.iter().filter(|v| **v > 0.5).count();
    let mut measures = Vec::new();
    let mut diff = format!(
        "--- health profiles (current)\n+++ health profiles (suggested: churn training set as of {as_of}, {} rows, {churned} churned)\n",
        labels.len()
    );
    for p in &profiles.profiles {
        let total: f64 = p.measures.iter().map(|m| m.weight).sum();
        let mut rows = Vec::new();
        for m in &p.measures {
            let mut values = Vec::new();
            for b in &set.batches {
                values.extend(floats(b, &m.feature)?);
            }
            let (mut risk, mut y) = (Vec::new(), Vec::new());
            for (v, l) in values.iter().zip(&labels) {
                if v.is_finite() {
                    risk.push(1.0 - measure_score(*v, m.poor, m.healthy) / 100.0);
                    y.push(*l as f32);
                }
            }
            let both = y.iter().any(|v| *v > 0.5) && y.iter().any(|v| *v < 0.5);
            let auc = both.then(|| Metrics::compute(&risk, &y, 0.5).roc_auc);
            rows.push((m, auc, y.len()));
        }
        // weight in proportion to the signal above chance; a measure with none keeps a token weight
        let signal: Vec<f64> = rows
            .iter()
            .map(|(_, auc, _)| auc.map_or(0.0, |a| (a - 0.5).max(0.0)))
            .collect();
        let sum: f64 = signal.iter().sum();
        diff.push_str(&format!(" [[profile]] name = \"{}\"\n", p.name));
        for ((m, auc, n), s) in rows.iter().zip(&signal) {
            let suggested = if sum > 0.0 {
                ((s / sum * total).max(total * 0.02) * 10.0).round() / 10.0
            } else {
                m.weight
            };
            let why = match auc {
                Some(a) if *a < 0.5 => {
                    format!("ROC AUC {a:.3}: lower scores go with *less* churn here; check poor/healthy")
                }
                Some(a) => format!("ROC AUC {a:.3} on {n} rows"),
                None => format!("no churner and stayer both among the {n} rows with a value"),
            };
            diff.push_str(&format!("   # {} ({}): {why}\n", m.name, m.feature));
            if (suggested - m.weight).abs() < 0.05 {
                diff.push_str(&format!("   weight = {}\n", m.weight));
            } else {
                diff.push_str(&format!("-  weight = {}\n+  weight = {suggested}\n", m.weight));
            }
            measures.push(MeasureWeight {
                profile: p.name.clone(),
                measure: m.name.clone(),
                feature: m.feature.clone(),
                current: m.weight,
                suggested,
                auc: *auc,
                rows: *n,
            });
        }
    }
    Ok(WeightSuggestion {
        as_of: as_of.to_string(),
        rows: labels.len(),
        churned,
        measures,
        diff,
    })
}

#[cfg(test)]
mod tests {
    use super::measure_score;

    #[test]
    fn measures_score_as_the_profile_does() {
        for (v, poor, healthy, want) in [
            (0.5, 0.2, 0.8, 50.0),
            (5.0, 4.0, 0.0, 0.0),
            (1.0, 4.0, 0.0, 75.0),
            (9.0, 1.0, 4.0, 100.0),
        ] {
            assert!((measure_score(v, poor, healthy) - want).abs() < 1e-9, "{v}");
        }
    }
}
