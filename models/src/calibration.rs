use serde::{Deserialize, Serialize};

/// Platt scaling: `p = 1 / (1 + exp(-(a * logit + b)))`, fitted on held-out rows so that a risk of
/// 30 means about a 30% chance even when training re-weighted the classes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

impl Default for Platt {
    fn default() -> Self {
        Self { a: 1.0, b: 0.0 }
    }
}

impl Platt {
    /// Fits by Newton's method on the log-loss, with Platt's smoothed targets. Falls back to the
    /// identity when the rows hold a single class.
    pub fn fit(logits: &[f64], labels: &[f32]) -> Self {
        let pos = labels.iter().filter(|v| **v > 0.5).count() as f64;
        let neg = labels.len() as f64 - pos;
        if pos == 0.0 || neg == 0.0 {
            return Self::default();
        }
        let hi = (pos + 1.0) / (pos + 2.0);
        let lo = 1.0 / (neg + 2.0);
        let t: Vec<f64> = labels.iter().map(|v| if *v > 0.5 { hi } else { lo }).collect();
        let (mut a, mut b) = (1.0, 0.0);
        for _ in 0..100 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
            for (z, t) in logits.iter().zip(&t) {
                let p = sigmoid(a * z + b);
                let w = p * (1.0 - p);
                ga += (p - t) * z;
                gb += p - t;
                haa += w * z * z;
                hab += w * z;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-12 {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            a -= da;
            b -= db;
            if da.abs() + db.abs() < 1e-10 {
                break;
            }
        }
        Self { a, b }
    }

    pub fn probability(&self, logit: f64) -> f64 {
        sigmoid(self.a * logit + self.b)
    }
}

pub(crate) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_shifted_logit() {
        // True probability is sigmoid(z - 2); the model's logit z is over-confident by +2.
        let mut logits = Vec::new();
        let mut labels = Vec::new();
        for i in 0..2000 {
            let z = (i % 100) as f64 / 10.0 - 5.0;
            let p = sigmoid(z - 2.0);
            // deterministic "coin": fraction of the 20 repetitions that are positive equals p
            let rep = (i / 100) as f64;
            logits.push(z);
            labels.push(if rep < (p * 20.0).round() { 1.0 } else { 0.0 });
        }
        let platt = Platt::fit(&logits, &labels);
        assert!((platt.a - 1.0).abs() < 0.15, "a = {}", platt.a);
        assert!((platt.b + 2.0).abs() < 0.3, "b = {}", platt.b);
    }
}

/// Isotonic calibration: the monotone step function of the logit that best fits the observed
/// rates (pool-adjacent-violators), interpolated linearly between block centres. More flexible
/// than Platt's sigmoid; chosen only when it calibrates held-out rows better.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Isotonic {
    /// Block centres (logits), increasing.
    pub x: Vec<f64>,
    /// Calibrated probability at each centre, non-decreasing.
    pub y: Vec<f64>,
}

impl Isotonic {
    pub fn fit(logits: &[f64], labels: &[f32]) -> Self {
        let mut pairs: Vec<(f64, f64)> = logits
            .iter()
            .zip(labels)
            .map(|(z, y)| (*z, f64::from(*y)))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        // blocks of (sum of x, sum of y, count)
        let mut blocks: Vec<(f64, f64, f64)> = Vec::with_capacity(pairs.len());
        for (x, y) in pairs {
            blocks.push((x, y, 1.0));
            while blocks.len() > 1 {
                let n = blocks.len();
                let (a, b) = (blocks[n - 2], blocks[n - 1]);
                if a.1 / a.2 <= b.1 / b.2 {
                    break;
                }
                blocks.truncate(n - 2);
                blocks.push((a.0 + b.0, a.1 + b.1, a.2 + b.2));
            }
        }
        Self {
            x: blocks.iter().map(|b| b.0 / b.2).collect(),
            y: blocks.iter().map(|b| b.1 / b.2).collect(),
        }
    }

    pub fn probability(&self, logit: f64) -> f64 {
        match self.x.len() {
            0 => sigmoid(logit),
            1 => self.y[0],
            n => {
                if logit <= self.x[0] {
                    return self.y[0];
                }
                if logit >= self.x[n - 1] {
                    return self.y[n - 1];
                }
                let i = self.x.partition_point(|x| *x <= logit);
                let (x0, x1, y0, y1) = (self.x[i - 1], self.x[i], self.y[i - 1], self.y[i]);
                if x1 > x0 {
                    y0 + (y1 - y0) * (logit - x0) / (x1 - x0)
                } else {
                    y1
                }
            }
        }
    }
}

/// Held-out rows below which isotonic calibration is not tried: with fewer, its end blocks hold a
/// handful of rows of one class and map every more extreme logit to a rate of 0 or 1, which the
/// next months do not bear out (the usual advice, e.g. scikit-learn's, is about a thousand).
pub const MIN_ISOTONIC_ROWS: usize = 1000;

/// Platt or isotonic, whichever calibrates better: each is fitted on one half of the rows and
/// scored (Brier) on the other, both ways round; the winner is refitted on all the rows. Fewer
/// than [`MIN_ISOTONIC_ROWS`] rows keep Platt's two parameters.
pub fn choose_calibration(logits: &[f64], labels: &[f32]) -> (Platt, Option<Isotonic>, String) {
    if logits.len() < MIN_ISOTONIC_ROWS {
        return (
            Platt::fit(logits, labels),
            None,
            format!(
                "platt (isotonic needs {MIN_ISOTONIC_ROWS} validation rows, there are {})",
                logits.len()
            ),
        );
    }
    let brier = |p: &dyn Fn(f64) -> f64, idx: &[usize]| -> f64 {
        idx.iter()
            .map(|i| (p(logits[*i]) - f64::from(labels[*i])).powi(2))
            .sum::<f64>()
            / idx.len().max(1) as f64
    };
    let halves: [Vec<usize>; 2] = [
        (0..logits.len()).filter(|i| i % 2 == 0).collect(),
        (0..logits.len()).filter(|i| i % 2 == 1).collect(),
    ];
    let (mut platt_score, mut iso_score) = (0.0, 0.0);
    for (fit, eval) in [(&halves[0], &halves[1]), (&halves[1], &halves[0])] {
        let z: Vec<f64> = fit.iter().map(|i| logits[*i]).collect();
        let y: Vec<f32> = fit.iter().map(|i| labels[*i]).collect();
        let p = Platt::fit(&z, &y);
        let s = Isotonic::fit(&z, &y);
        platt_score += brier(&|v| p.probability(v), eval);
        iso_score += brier(&|v| s.probability(v), eval);
    }
    let platt = Platt::fit(logits, labels);
    if iso_score < platt_score * 0.995 {
        (
            platt,
            Some(Isotonic::fit(logits, labels)),
            format!(
                "isotonic (held-out Brier {:.5} against {:.5} for Platt)",
                iso_score / 2.0,
                platt_score / 2.0
            ),
        )
    } else {
        (
            platt,
            None,
            format!(
                "platt (held-out Brier {:.5} against {:.5} for isotonic)",
                platt_score / 2.0,
                iso_score / 2.0
            ),
        )
    }
}

#[cfg(test)]
mod isotonic_tests {
    use super::*;

    #[test]
    fn isotonic_is_monotone_and_fits_rates() {
        let z = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0];
        let y = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let iso = Isotonic::fit(&z, &y);
        assert!(iso.y.windows(2).all(|w| w[0] <= w[1]), "{iso:?}");
        assert_eq!(iso.probability(-5.0), 0.0);
        assert_eq!(iso.probability(5.0), 1.0);
        // the violators -1 (1) and 0, 1 (0) pool into one block of rate 1/3
        assert!((iso.probability(0.0) - 1.0 / 3.0).abs() < 1e-12, "{iso:?}");
    }

    #[test]
    fn the_better_calibration_is_chosen_on_held_out_rows() {
        // rates that jump at a logit of 1: a sigmoid cannot follow them, a step function can
        let mut seed = 42u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as f64 / (1u64 << 31) as f64
        };
        let z: Vec<f64> = (0..4000).map(|i| -3.0 + 6.0 * (i as f64) / 4000.0).collect();
        let y: Vec<f32> = z
            .iter()
            .map(|z| {
                if next() < if *z < 1.0 { 0.02 } else { 0.7 } {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let (_, iso, why) = choose_calibration(&z, &y);
        assert!(iso.is_some(), "{why}");
        assert!(why.starts_with("isotonic"), "{why}");
        // a well-fitting sigmoid keeps Platt
        let y2: Vec<f32> = z
            .iter()
            .map(|z| if next() < sigmoid(*z - 1.0) { 1.0 } else { 0.0 })
            .collect();
        let (_, iso, why) = choose_calibration(&z, &y2);
        assert!(iso.is_none(), "{why}");
    }
}
