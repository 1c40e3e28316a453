//! Gradient-boosted decision trees for churn, on the `perpetual` crate (log loss, histogram
//! splits, exact TreeSHAP contributions), with early stopping on cslake's own validation window.
//!
//! perpetual sizes the ensemble itself from one `budget` (its learning rate and stopping rule);
//! cslake then cuts the ensemble back to the number of trees whose validation log loss was
//! lowest, so the out-of-time split, not the training rows, decides how long it learns, as for
//! the other families.

use perpetual::objective::Objective;
use perpetual::{ContributionsMethod, Matrix, PerpetualBooster};
use serde::{Deserialize, Serialize};

use crate::metrics::log_loss;
use crate::{Error, Result, TrainReport};

/// Hyper-parameters of the tree ensemble.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GbdtConfig {
    pub n_features: usize,
    /// perpetual's complexity budget: higher learns longer with smaller steps (0.5-1.5 usual).
    pub budget: f32,
    /// Histogram bins per feature.
    pub max_bin: u16,
    /// Upper bound on boosting rounds (trees).
    pub max_trees: usize,
    /// Seed of perpetual's sampling: the same trees on every run.
    pub seed: u64,
    /// Threads for one fit (default: every core).
    pub threads: Option<usize>,
}

impl Default for GbdtConfig {
    fn default() -> Self {
        Self {
            n_features: 0,
            budget: 0.5,
            max_bin: 63,
            max_trees: 500,
            seed: 42,
            threads: None,
        }
    }
}

/// A trained ensemble; its raw output is the churn log-odds.
#[derive(Clone)]
pub struct Gbdt {
    // boxed: the booster's configuration is large, and a `Net` is passed around by value
    booster: Box<PerpetualBooster>,
    n_features: usize,
}

impl std::fmt::Debug for Gbdt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gbdt")
            .field("trees", &self.n_trees())
            .field("n_features", &self.n_features)
            .finish()
    }
}

/// Row-major `f32` rows to perpetual's column-major `f64`.
fn column_major(x: &[f32], d: usize) -> Vec<f64> {
    let n = x.len() / d.max(1);
    let mut out = vec![0.0; x.len()];
    for (k, v) in x.iter().enumerate() {
        let (i, j) = (k / d, k % d);
        out[j * n + i] = f64::from(*v);
    }
    out
}

impl Gbdt {
    /// Fits on row-major `train_x`; with a validation window, keeps only the first trees up to
    /// the one after which the validation log loss was lowest.
    pub fn fit(
        cfg: &GbdtConfig,
        train_x: &[f32],
        train_y: &[f32],
        valid: Option<(&[f32], &[f32])>,
    ) -> Result<(Self, TrainReport)> {
        let d = cfg.n_features;
        let n = train_y.len();
        if n == 0 || d == 0 || train_x.len() != n * d {
            return Err(Error::Data(format!(
                "{n} labels for {} values of {d} features",
                train_x.len()
            )));
        }
        let cols = column_major(train_x, d);
        let matrix = Matrix::new(&cols, n, d);
        let y: Vec<f64> = train_y.iter().map(|v| f64::from(*v)).collect();
        let mut booster = PerpetualBooster::default()
            .set_objective(Objective::LogLoss)
            .set_budget(cfg.budget)
            .set_max_bin(cfg.max_bin)
            .set_num_threads(cfg.threads)
            .set_seed(cfg.seed)
            .set_iteration_limit(Some(cfg.max_trees.max(1)));
        booster
            .fit(&matrix, &y, None, None)
            .map_err(|e| Error::Data(format!("gradient-boosted trees: {e}")))?;
        let fitted = booster.trees.len();
        let mut report = TrainReport {
            epochs: fitted,
            best_epoch: fitted,
            train_loss: log_loss(&booster.predict(&matrix, true), train_y),
            valid_loss: None,
            positive_weight: 1.0,
        };
        if let Some((vx, vy)) = valid.filter(|(_, vy)| !vy.is_empty()) {
            let vcols = column_major(vx, d);
            let vm = Matrix::new(&vcols, vy.len(), d);
            let mut z = vec![booster.base_score; vy.len()];
            let (mut best, mut best_loss) = (0, log_loss(&z, vy));
            for (k, tree) in booster.trees.iter().enumerate() {
                for (zi, t) in z.iter_mut().zip(tree.predict(&vm, true, &booster.cfg.missing)) {
                    *zi += t;
                }
                let loss = log_loss(&z, vy);
                if loss < best_loss {
                    (best, best_loss) = (k + 1, loss);
                }
            }
            // at least one tree: a constant model explains nothing
            let best = best.max(1).min(fitted);
            booster.trees.truncate(best);
            report.best_epoch = best;
            report.valid_loss = Some(best_loss);
            report.train_loss = log_loss(&booster.predict(&matrix, true), train_y);
        }
        Ok((
            Self {
                booster: Box::new(booster),
                n_features: d,
            },
            report,
        ))
    }

    /// Logits of row-major rows.
    pub fn logits(&self, x: &[f32]) -> Result<Vec<f32>> {
        let d = self.n_features;
        let n = x.len() / d.max(1);
        let cols = column_major(x, d);
        Ok(self
            .booster
            .predict(&Matrix::new(&cols, n, d), true)
            .into_iter()
            .map(|z| z as f32)
            .collect())
    }

    /// Exact TreeSHAP values of row-major rows: `rows × features`, row-major. With
    /// [`expected_logit`](Self::expected_logit) they sum to each row's logit.
    pub fn shap(&self, x: &[f32]) -> Vec<f32> {
        let d = self.n_features;
        let n = x.len() / d.max(1);
        let cols = column_major(x, d);
        let c =
            self.booster
                .predict_contributions(&Matrix::new(&cols, n, d), ContributionsMethod::Shapley, true);
        // perpetual appends the expected value as a last column per row
        c.chunks(d + 1)
            .flat_map(|row| row[..d].iter().map(|v| *v as f32))
            .collect()
    }

    /// The logit the contributions are measured from (the ensemble's expectation over the
    /// training rows).
    pub fn expected_logit(&self, x_row: &[f32]) -> f64 {
        let d = self.n_features;
        let cols = column_major(x_row, d);
        let c = self.booster.predict_contributions(
            &Matrix::new(&cols, 1, d),
            ContributionsMethod::Shapley,
            false,
        );
        c[d]
    }

    pub fn n_trees(&self) -> usize {
        self.booster.trees.len()
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The ensemble as JSON (perpetual's own format), stored as bytes in the weights file.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(&self.booster).map_err(|e| Error::Artifact(format!("trees: {e}")))
    }

    pub fn from_json(bytes: &[u8], n_features: usize) -> Result<Self> {
        let booster: PerpetualBooster =
            serde_json::from_slice(bytes).map_err(|e| Error::Artifact(format!("trees: {e}")))?;
        Ok(Self {
            booster: Box::new(booster),
            n_features,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calibration::sigmoid;

    /// Churn mostly where `a` and `b` have opposite signs: an interaction no linear logit can draw.
    /// Also returns the true probabilities, the best any model can rank by.
    fn interaction(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f64>) {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 11) as f64 / (1u64 << 53) as f64
        };
        let (mut x, mut y, mut truth) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let (a, b, c) = (next() * 2.0 - 1.0, next() * 2.0 - 1.0, next());
            let p = if (a > 0.0) != (b > 0.0) { 0.4 } else { 0.03 };
            x.extend([a as f32, b as f32, c as f32]);
            y.push(if next() < p { 1.0 } else { 0.0 });
            truth.push(p);
        }
        (x, y, truth)
    }

    #[test]
    fn learns_an_interaction_and_its_shap_values_sum_to_the_logit() {
        let (x, y, _) = interaction(6000, 3);
        let (vx, vy, truth) = interaction(2000, 4);
        let cfg = GbdtConfig {
            n_features: 3,
            ..Default::default()
        };
        let (m, report) = Gbdt::fit(&cfg, &x, &y, Some((&vx, &vy))).unwrap();
        assert!(report.best_epoch >= 1 && report.best_epoch <= report.epochs);
        assert_eq!(m.n_trees(), report.best_epoch);
        let z = m.logits(&vx).unwrap();
        let p: Vec<f64> = z.iter().map(|z| sigmoid(f64::from(*z))).collect();
        let auc = crate::Metrics::compute(&p, &vy, 0.5).roc_auc;
        let best = crate::Metrics::compute(&truth, &vy, 0.5).roc_auc;
        assert!(auc > best - 0.02, "{auc} against the true probabilities' {best}");
        // logistic regression on the same rows cannot draw the corner
        let lr_cfg = crate::LogisticConfig {
            n_features: 3,
            ..Default::default()
        };
        let (lr, _) = crate::LogisticRegression::fit(&lr_cfg, &x, &y, Some((&vx, &vy))).unwrap();
        let lp: Vec<f64> = lr.logits(&vx).unwrap().iter().map(|z| f64::from(*z)).collect();
        let lr_auc = crate::Metrics::compute(&lp, &vy, 0.5).roc_auc;
        assert!(auc > lr_auc + 0.15, "trees {auc}, logistic regression {lr_auc}");
        let shap = m.shap(&vx[..30]);
        for i in 0..10 {
            let row = &vx[i * 3..i * 3 + 3];
            let total =
                m.expected_logit(row) + shap[i * 3..i * 3 + 3].iter().map(|v| f64::from(*v)).sum::<f64>();
            assert!((total - f64::from(z[i])).abs() < 1e-3, "{total} vs {}", z[i]);
        }
        // the noise column matters least
        let mean_abs = |j: usize| shap.iter().skip(j).step_by(3).map(|v| v.abs()).sum::<f32>();
        assert!(mean_abs(2) < mean_abs(0) && mean_abs(2) < mean_abs(1));
        let back = Gbdt::from_json(&m.to_json().unwrap(), 3).unwrap();
        assert_eq!(back.logits(&vx).unwrap(), z);
    }
}
