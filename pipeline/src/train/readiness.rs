//! Whether a new model is ready to drive playbooks. A first model trained on a few observation
//! dates can rank accounts well enough to look useful and still put four in ten accounts in the
//! high band at a 3% churn rate; acting on such bands sends CSMs after the wrong accounts. So a
//! model trained on too few dates or churners, or whose probabilities on the test window are off
//! in a risk band, is provisional: its scores are written, but no playbook acts on its risk bands
//! until `cslake models promote VERSION` confirms it.

use crate::settings::{ModelConfig, ScoringConfig};

/// Rows a band needs on the test window before its calibration is judged.
const MIN_BAND_ROWS: usize = 20;

/// The reasons a model is not ready (empty: ready). `test`: the split model's out-of-time
/// probability and label of every test-window row.
pub fn problems(
    model: &ModelConfig,
    scoring: &ScoringConfig,
    dates: usize,
    positives: usize,
    test: &[(f64, f32)],
) -> Vec<String> {
    let mut out = Vec::new();
    if dates < model.min_observation_dates {
        out.push(format!(
            "trained on {dates} observation dates, fewer than {} ([model] min_observation_dates)",
            model.min_observation_dates
        ));
    }
    if positives < model.min_positives {
        out.push(format!(
            "trained on {positives} churned rows, fewer than {} ([model] min_positives)",
            model.min_positives
        ));
    }
    let bands = [
        ("low", f64::NEG_INFINITY, scoring.band_medium),
        ("medium", scoring.band_medium, scoring.band_high),
        ("high", scoring.band_high, scoring.band_critical),
        ("critical", scoring.band_critical, f64::INFINITY),
    ];
    for (name, lo, hi) in bands {
        let rows: Vec<&(f64, f32)> = test
            .iter()
            .filter(|(p, _)| {
                let score = (p * 100.0).round();
                score >= lo && score < hi
            })
            .collect();
        let n = rows.len();
        if n < MIN_BAND_ROWS {
            continue;
        }
        let predicted = rows.iter().map(|(p, _)| p).sum::<f64>() / n as f64;
        let observed = rows.iter().filter(|(_, y)| *y > 0.5).count() as f64 / n as f64;
        // beyond the tolerance and beyond what chance gives on this many rows (two standard errors)
        let noise = 2.0 * (predicted * (1.0 - predicted) / n as f64).sqrt();
        if (predicted - observed).abs() > model.calibration_tolerance.max(noise) {
            out.push(format!(
                "in the {name} band it predicts {:.0}% churn on average, and {:.0}% of those accounts churned \
                 ({n} rows of the test window; [model] calibration_tolerance {:.0} points)",
                predicted * 100.0,
                observed * 100.0,
                model.calibration_tolerance * 100.0
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_dates_few_churners_and_a_miscalibrated_band_are_named() {
        let model = ModelConfig::default();
        let scoring = ScoringConfig::default();
        // 100 rows predicted at 50% of which 3 churned; 200 at 5% of which 10 churned
        let mut test: Vec<(f64, f32)> = (0..100).map(|i| (0.5, if i < 3 { 1.0 } else { 0.0 })).collect();
        test.extend((0..200).map(|i| (0.05, if i < 10 { 1.0 } else { 0.0 })));
        let p = problems(&model, &scoring, 3, 12, &test);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("trained on 3 observation dates, fewer than 6"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("trained on 12 churned rows, fewer than 20"),
            "{p:?}"
        );
        assert!(
            p[2].starts_with("in the high band it predicts 50% churn on average, and 3% of those accounts churned (100 rows"),
            "{p:?}"
        );
        // well calibrated, enough history: ready
        let fine: Vec<(f64, f32)> = (0..100).map(|i| (0.3, if i < 30 { 1.0 } else { 0.0 })).collect();
        assert!(problems(&model, &scoring, 10, 50, &fine).is_empty());
        // a small band is not judged on its noise
        let small: Vec<(f64, f32)> = (0..10).map(|_| (0.9, 0.0)).collect();
        assert!(problems(&model, &scoring, 10, 50, &small).is_empty());
    }
}
