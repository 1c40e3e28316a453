use serde::{Deserialize, Serialize};

/// Out-of-sample quality of a probability model, the way churn models are judged: ranking
/// (ROC AUC, PR AUC, lift) and calibration (Brier, reliability), with accuracy beside them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Metrics {
    pub rows: usize,
    pub positives: usize,
    #[serde(with = "undefined")]
    pub base_rate: f64,
    #[serde(with = "undefined")]
    pub roc_auc: f64,
    #[serde(with = "undefined")]
    pub pr_auc: f64,
    #[serde(with = "undefined")]
    pub brier: f64,
    /// Churn rate among the 10% highest-scored rows divided by the base rate.
    #[serde(with = "undefined")]
    pub top_decile_lift: f64,
    /// Accuracy at `threshold` (and, for comparison, the accuracy of always predicting "stays").
    #[serde(with = "undefined")]
    pub accuracy: f64,
    #[serde(with = "undefined")]
    pub majority_accuracy: f64,
    #[serde(with = "undefined")]
    pub precision: f64,
    #[serde(with = "undefined")]
    pub recall: f64,
    #[serde(with = "undefined")]
    pub threshold: f64,
    pub reliability: Vec<ReliabilityBin>,
}

/// Predicted against observed rate in one band of predicted probability.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReliabilityBin {
    #[serde(with = "undefined")]
    pub lower: f64,
    #[serde(with = "undefined")]
    pub upper: f64,
    pub rows: usize,
    #[serde(with = "undefined")]
    pub mean_predicted: f64,
    #[serde(with = "undefined")]
    pub observed_rate: f64,
}

/// A metric that can be undefined (ROC AUC of a window without churners is NaN) as JSON: `null`,
/// read back as NaN, so a model trained on such data can still be loaded.
pub(crate) mod undefined {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

impl Metrics {
    /// Computes every metric of `probabilities` against 0/1 `labels`.
    pub fn compute(probabilities: &[f64], labels: &[f32], threshold: f64) -> Self {
        let n = probabilities.len().min(labels.len());
        let y: Vec<bool> = labels[..n].iter().map(|v| *v > 0.5).collect();
        let p = &probabilities[..n];
        let positives = y.iter().filter(|v| **v).count();
        let base_rate = if n == 0 { 0.0 } else { positives as f64 / n as f64 };
        let brier = if n == 0 {
            0.0
        } else {
            p.iter()
                .zip(&y)
                .map(|(p, y)| (p - f64::from(u8::from(*y))).powi(2))
                .sum::<f64>()
                / n as f64
        };
        let (mut tp, mut fp, mut tn, mut fne) = (0usize, 0usize, 0usize, 0usize);
        for (p, y) in p.iter().zip(&y) {
            match (*p >= threshold, *y) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, false) => tn += 1,
                (false, true) => fne += 1,
            }
        }
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Self {
            rows: n,
            positives,
            base_rate,
            roc_auc: roc_auc(p, &y),
            pr_auc: average_precision(p, &y),
            brier,
            top_decile_lift: top_fraction_lift(p, &y, 0.1),
            accuracy: ratio(tp + tn, n),
            majority_accuracy: ratio(n - positives.min(n), n).max(base_rate),
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fne),
            threshold,
            reliability: reliability(p, &y, 10),
        }
    }
}

/// Indices sorted by descending score (ties keep input order: the result is deterministic).
fn order_desc(p: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
    idx
}

/// Area under the ROC curve by the rank-sum formula, with ties counted as one half.
pub fn roc_auc(p: &[f64], y: &[bool]) -> f64 {
    let pos = y.iter().filter(|v| **v).count() as f64;
    let neg = y.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|a, b| p[*a].total_cmp(&p[*b]));
    // Average ranks (1-based) over tied groups.
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && p[idx[j + 1]] == p[idx[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            if y[*k] {
                rank_sum_pos += avg_rank;
            }
        }
        i = j + 1;
    }
    (rank_sum_pos - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// Mean log loss of logits against 0/1 labels.
pub(crate) fn log_loss(logits: &[f64], y: &[f32]) -> f64 {
    let n = y.len().max(1) as f64;
    logits
        .iter()
        .zip(y)
        .map(|(z, y)| {
            // log(1 + e^z) - y z, stable for large |z|
            let softplus = if *z > 0.0 {
                z + (-z).exp().ln_1p()
            } else {
                z.exp().ln_1p()
            };
            softplus - f64::from(*y) * z
        })
        .sum::<f64>()
        / n
}

/// Mid-ranks (1-based, ties averaged) of `v`.
fn midranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
    let mut out = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        for k in &idx[i..=j] {
            out[*k] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    out
}

/// DeLong's structural components of one score on positives and negatives: per positive, the
/// share of negatives it outranks (ties one half), and per negative the share of positives
/// that outrank it.
fn delong_components(pos: &[f64], neg: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (m, n) = (pos.len() as f64, neg.len() as f64);
    let all: Vec<f64> = pos.iter().chain(neg).copied().collect();
    let (rz, rx, ry) = (midranks(&all), midranks(pos), midranks(neg));
    let v10 = (0..pos.len()).map(|i| (rz[i] - rx[i]) / n).collect();
    let v01 = (0..neg.len())
        .map(|j| 1.0 - (rz[pos.len() + j] - ry[j]) / m)
        .collect();
    (v10, v01)
}

/// ROC AUC of `b` minus that of `a` on the same rows, with the standard error of the
/// difference by DeLong's method (DeLong, DeLong & Clarke-Pearson 1988), which accounts for
/// both scores ranking the same rows: the noise a model-family choice must beat. NaN when
/// either class is missing.
pub fn auc_difference(a: &[f64], b: &[f64], labels: &[f32]) -> (f64, f64) {
    let split = |s: &[f64]| {
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        for (v, y) in s.iter().zip(labels) {
            if *y > 0.5 { pos.push(*v) } else { neg.push(*v) }
        }
        (pos, neg)
    };
    let ((pa, na), (pb, nb)) = (split(a), split(b));
    if pa.len() < 2 || na.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let ((a10, a01), (b10, b01)) = (delong_components(&pa, &na), delong_components(&pb, &nb));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    // the variance of the difference of the components, per class
    let var_diff = |x: &[f64], y: &[f64]| {
        let d: Vec<f64> = x.iter().zip(y).map(|(x, y)| y - x).collect();
        let md = mean(&d);
        d.iter().map(|v| (v - md).powi(2)).sum::<f64>() / (d.len() - 1) as f64
    };
    let diff = mean(&b10) - mean(&a10);
    let var = var_diff(&a10, &b10) / pa.len() as f64 + var_diff(&a01, &b01) / na.len() as f64;
    (diff, var.max(0.0).sqrt())
}

/// Average precision: the area under the precision-recall curve, step-wise.
pub fn average_precision(p: &[f64], y: &[bool]) -> f64 {
    let pos = y.iter().filter(|v| **v).count();
    if pos == 0 {
        return f64::NAN;
    }
    let mut tp = 0usize;
    let mut ap = 0.0;
    for (rank, i) in order_desc(p).into_iter().enumerate() {
        if y[i] {
            tp += 1;
            ap += tp as f64 / (rank + 1) as f64;
        }
    }
    ap / pos as f64
}

/// Positive rate in the top `fraction` of scores divided by the overall positive rate.
pub fn top_fraction_lift(p: &[f64], y: &[bool], fraction: f64) -> f64 {
    let n = p.len();
    let pos = y.iter().filter(|v| **v).count();
    if n == 0 || pos == 0 {
        return f64::NAN;
    }
    let k = ((n as f64 * fraction).ceil() as usize).clamp(1, n);
    let top_pos = order_desc(p).into_iter().take(k).filter(|i| y[*i]).count();
    (top_pos as f64 / k as f64) / (pos as f64 / n as f64)
}

fn reliability(p: &[f64], y: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    (0..bins)
        .filter_map(|b| {
            let lower = b as f64 / bins as f64;
            let upper = (b + 1) as f64 / bins as f64;
            let members: Vec<usize> = (0..p.len())
                .filter(|i| p[*i] >= lower && (p[*i] < upper || (b + 1 == bins && p[*i] <= 1.0)))
                .collect();
            if members.is_empty() {
                return None;
            }
            let m = members.len() as f64;
            Some(ReliabilityBin {
                lower,
                upper,
                rows: members.len(),
                mean_predicted: members.iter().map(|i| p[*i]).sum::<f64>() / m,
                observed_rate: members.iter().filter(|i| y[**i]).count() as f64 / m,
            })
        })
        .collect()
}

/// One fold of the forward-in-time backtest.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Fold {
    /// Observation dates trained (and calibrated) on, `[first, last]`.
    pub train: [String; 2],
    /// Observation dates evaluated, `[first, last]`: all later than every training date.
    pub test: [String; 2],
    pub metrics: Metrics,
}

#[cfg(test)]
mod tests {
    #[test]
    fn undefined_metrics_survive_a_json_round_trip() {
        // a test window without churners: ROC AUC, PR AUC and lift are undefined
        let m = super::Metrics::compute(&[0.1, 0.2, 0.3], &[0.0, 0.0, 0.0], 0.5);
        assert!(m.roc_auc.is_nan());
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains("\"roc_auc\":null"), "{text}");
        let back: super::Metrics = serde_json::from_str(&text).unwrap();
        assert!(back.roc_auc.is_nan() && back.pr_auc.is_nan());
        assert_eq!(back.rows, 3);
    }

    use super::*;

    #[test]
    fn auc_of_known_rankings() {
        let y = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &y), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &y), 0.0);
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &y), 0.5);
        // one discordant pair out of four
        assert_eq!(roc_auc(&[0.1, 0.7, 0.6, 0.9], &y), 0.75);
    }

    #[test]
    fn delong_difference_of_paired_aucs() {
        let y = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0];
        let a = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8];
        let b = [0.1, 0.2, 0.3, 0.9, 0.8, 0.7, 0.4, 0.6];
        let yb: Vec<bool> = y.iter().map(|v| *v > 0.5).collect();
        let (d, se) = auc_difference(&a, &b, &y);
        assert!((d - (roc_auc(&b, &yb) - roc_auc(&a, &yb))).abs() < 1e-12, "{d}");
        assert!(se > 0.0 && se < 0.5, "{se}");
        // a score against itself: no difference and no noise
        let (d, se) = auc_difference(&a, &a, &y);
        assert_eq!((d, se), (0.0, 0.0));
        // a monotone transform ranks the same: still no difference
        let a2: Vec<f64> = a.iter().map(|v| v * v).collect();
        assert_eq!(auc_difference(&a, &a2, &y).0, 0.0);
    }

    #[test]
    fn average_precision_and_lift() {
        let y = [true, false, true, false, false, false, false, false, false, false];
        let p = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0];
        // precision at the two positives: 1/1 and 2/3
        assert!((average_precision(&p, &y) - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // top 10% = 1 row, a positive: rate 1.0 against base 0.2
        assert!((top_fraction_lift(&p, &y, 0.1) - 5.0).abs() < 1e-12);
    }

    #[test]
    fn brier_accuracy_and_reliability() {
        let m = Metrics::compute(&[1.0, 0.0, 0.75, 0.25], &[1.0, 0.0, 0.0, 1.0], 0.5);
        assert!((m.brier - (0.0 + 0.0 + 0.5625 + 0.5625) / 4.0).abs() < 1e-12);
        assert_eq!(m.accuracy, 0.5);
        assert_eq!(m.precision, 0.5);
        assert_eq!(m.recall, 0.5);
        assert_eq!(m.reliability.iter().map(|b| b.rows).sum::<usize>(), 4);
    }
}
