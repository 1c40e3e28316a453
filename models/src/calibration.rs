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
