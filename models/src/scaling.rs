use serde::{Deserialize, Serialize};

use crate::Dataset;

/// How one raw feature is turned into a model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    /// `(x - mean) / std`
    Standard,
    /// `(ln(1 + x) - mean) / std`: for non-negative, right-skewed counts.
    Log1p,
}

/// Scaling of one feature, learnt on the training rows only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeatureScaling {
    pub name: String,
    pub transform: Transform,
    pub mean: f64,
    pub std: f64,
    /// Median of the raw values: the "typical" value used in explanations.
    pub median: f64,
    /// Share of training rows where the feature was missing (imputed with the mean).
    pub missing_share: f64,
}

/// Standardises features; missing values become 0 (the training mean) after scaling.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Scaler {
    pub features: Vec<FeatureScaling>,
}

impl Scaler {
    /// Learns the scaling of every column. A column that is never negative and strongly
    /// right-skewed (skewness above 2, like most event counts) is log-scaled first.
    pub fn fit(data: &Dataset) -> Self {
        let features = data
            .feature_names
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let mut values: Vec<f64> = data.column(j).filter(|v| v.is_finite()).map(f64::from).collect();
                let n = data.n_rows().max(1);
                let missing_share = 1.0 - values.len() as f64 / n as f64;
                values.sort_by(f64::total_cmp);
                let median = values.get(values.len() / 2).copied().unwrap_or(0.0);
                let skewed = values.first().is_some_and(|v| *v >= 0.0) && skewness(&values) > 2.0;
                let transform = if skewed {
                    Transform::Log1p
                } else {
                    Transform::Standard
                };
                let t: Vec<f64> = values.iter().map(|v| apply(transform, *v)).collect();
                let (mean, std) = mean_std(&t);
                FeatureScaling {
                    name: name.clone(),
                    transform,
                    mean,
                    std: if std > 1e-9 { std } else { 1.0 },
                    median,
                    missing_share,
                }
            })
            .collect();
        Self { features }
    }

    /// Scales a dataset whose columns are in the scaler's order.
    pub fn transform(&self, data: &Dataset) -> Vec<f32> {
        let d = self.features.len();
        data.x
            .iter()
            .enumerate()
            .map(|(i, v)| self.scale_one(i % d, *v))
            .collect()
    }

    pub fn scale_one(&self, j: usize, v: f32) -> f32 {
        let f = &self.features[j];
        if !v.is_finite() {
            return 0.0;
        }
        // Clip far outliers so one extreme account cannot dominate a linear model.
        (((apply(f.transform, f64::from(v)) - f.mean) / f.std).clamp(-6.0, 6.0)) as f32
    }
}

fn apply(t: Transform, v: f64) -> f64 {
    match t {
        Transform::Standard => v,
        Transform::Log1p => v.max(0.0).ln_1p(),
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 1.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn skewness(v: &[f64]) -> f64 {
    let (mean, std) = mean_std(v);
    if std < 1e-12 {
        return 0.0;
    }
    v.iter().map(|x| ((x - mean) / std).powi(3)).sum::<f64>() / v.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_log_scaled_and_missing_values_imputed() {
        let mut x = Vec::new();
        for i in 0..100 {
            let count = if i < 95 { i as f32 % 5.0 } else { 1000.0 };
            x.extend([count, i as f32]);
        }
        x[0] = f32::NAN;
        let data = Dataset::new(vec!["events".into(), "tenure".into()], x, vec![]).unwrap();
        let s = Scaler::fit(&data);
        assert_eq!(s.features[0].transform, Transform::Log1p);
        assert_eq!(s.features[1].transform, Transform::Standard);
        assert!((s.features[0].missing_share - 0.01).abs() < 1e-9);
        assert_eq!(s.scale_one(0, f32::NAN), 0.0);
        let z = s.transform(&data);
        let mean: f32 = z.iter().skip(1).step_by(2).sum::<f32>() / 100.0;
        assert!(mean.abs() < 1e-4, "standardised column has mean {mean}");
    }
}
