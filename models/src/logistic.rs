use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{Init, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Hyper-parameters of the logistic regression.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogisticConfig {
    pub n_features: usize,
    /// L1 penalty on the weights (sparsity).
    pub l1: f64,
    /// L2 penalty on the weights (shrinkage).
    pub l2: f64,
    pub learning_rate: f64,
    pub max_epochs: usize,
    /// Stop after this many validation checks (every 5 epochs) without improvement.
    pub patience: usize,
    /// Weight the classes so that churners count as much as stayers in the loss.
    pub balance_classes: bool,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        Self {
            n_features: 0,
            l1: 0.0,
            l2: 1e-3,
            learning_rate: 0.05,
            max_epochs: 400,
            patience: 8,
            balance_classes: true,
        }
    }
}

/// `logit = x · wᵀ + b`, one output.
#[derive(Debug, Clone)]
pub struct LogisticRegression {
    weight: Tensor,
    bias: Tensor,
}

/// What happened during training.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TrainReport {
    pub epochs: usize,
    pub best_epoch: usize,
    /// NaN (JSON `null`) when no epoch ran.
    #[serde(with = "crate::metrics::undefined")]
    pub train_loss: f64,
    pub valid_loss: Option<f64>,
    pub positive_weight: f64,
}

impl LogisticRegression {
    /// Weights start at zero: the problem is convex, and zero makes training deterministic.
    pub fn new(vb: VarBuilder, cfg: &LogisticConfig) -> Result<Self> {
        let weight = vb.get_with_hints((1, cfg.n_features), "weight", Init::Const(0.0))?;
        let bias = vb.get_with_hints(1, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias })
    }

    /// Logits for a `(rows, features)` input.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&self.weight.t()?)?
            .squeeze(D::Minus1)?
            .broadcast_add(&self.bias)?)
    }

    pub fn weights(&self) -> Result<Vec<f32>> {
        Ok(self.weight.flatten_all()?.to_vec1()?)
    }

    pub fn bias(&self) -> Result<f32> {
        Ok(self.bias.to_vec1::<f32>()?[0])
    }

    /// Builds a model from stored weights.
    pub fn from_weights(weights: &[f32], bias: f32) -> Result<Self> {
        let dev = Device::Cpu;
        Ok(Self {
            weight: Tensor::from_slice(weights, (1, weights.len()), &dev)?,
            bias: Tensor::from_slice(&[bias], 1, &dev)?,
        })
    }

    /// Logits for scaled rows (row-major, `weights().len()` columns).
    pub fn logits(&self, x_scaled: &[f32]) -> Result<Vec<f32>> {
        let d = self.weight.dims()[1];
        if x_scaled.is_empty() {
            return Ok(Vec::new());
        }
        let x = Tensor::from_slice(x_scaled, (x_scaled.len() / d, d), &Device::Cpu)?;
        Ok(self.forward(&x)?.to_vec1()?)
    }

    /// Trains on scaled rows with full-batch AdamW, keeping the weights with the lowest
    /// validation loss (early stopping) when validation rows are given.
    pub fn fit(
        cfg: &LogisticConfig,
        train_x: &[f32],
        train_y: &[f32],
        valid: Option<(&[f32], &[f32])>,
    ) -> Result<(Self, TrainReport)> {
        let d = cfg.n_features;
        let n = train_y.len();
        if n == 0 || train_x.len() != n * d {
            return Err(Error::Data(format!(
                "{n} labels for {} values of {d} features",
                train_x.len()
            )));
        }
        let positives = train_y.iter().filter(|v| **v > 0.5).count();
        if positives == 0 || positives == n {
            return Err(Error::Data(format!(
                "the training rows hold a single class ({positives} churned of {n}): widen the history or the label horizon"
            )));
        }
        let dev = Device::Cpu;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let model = Self::new(vb.pp("linear"), cfg)?;
        let positive_weight = if cfg.balance_classes {
            (n - positives) as f64 / positives as f64
        } else {
            1.0
        };
        let x = Tensor::from_slice(train_x, (n, d), &dev)?;
        let y = Tensor::from_slice(train_y, n, &dev)?;
        let sample_w: Vec<f32> = train_y
            .iter()
            .map(|v| if *v > 0.5 { positive_weight as f32 } else { 1.0 })
            .collect();
        let w = Tensor::from_slice(&sample_w, n, &dev)?;
        let valid = match valid {
            Some((vx, vy)) if !vy.is_empty() => Some((
                Tensor::from_slice(vx, (vy.len(), d), &dev)?,
                Tensor::from_slice(vy, vy.len(), &dev)?,
                Tensor::from_slice(
                    &vy.iter()
                        .map(|v| if *v > 0.5 { positive_weight as f32 } else { 1.0 })
                        .collect::<Vec<_>>(),
                    vy.len(),
                    &dev,
                )?,
            )),
            _ => None,
        };
        let vars = varmap.all_vars();
        let mut opt = candle_nn::AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr: cfg.learning_rate,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let mut best: Option<(f64, usize, Vec<Tensor>)> = None;
        let mut since_best = 0;
        let mut epochs = 0;
        let mut train_loss = f64::NAN;
        for epoch in 0..cfg.max_epochs {
            epochs = epoch + 1;
            let logits = model.forward(&x)?;
            let data_loss = weighted_bce(&logits, &y, &w)?;
            let loss = (&data_loss + penalty(&model.weight, cfg)?)?;
            opt.backward_step(&loss)?;
            train_loss = f64::from(data_loss.to_scalar::<f32>()?);
            if let Some((vx, vy, vw)) = &valid
                && epoch % 5 == 4
            {
                let vl = f64::from(weighted_bce(&model.forward(vx)?, vy, vw)?.to_scalar::<f32>()?);
                if best.as_ref().is_none_or(|(b, _, _)| vl < *b - 1e-6) {
                    best = Some((vl, epochs, snapshot(&vars)?));
                    since_best = 0;
                } else {
                    since_best += 1;
                    if since_best >= cfg.patience {
                        break;
                    }
                }
            }
        }
        let (valid_loss, best_epoch) = match &best {
            Some((vl, e, weights)) => {
                for (var, t) in vars.iter().zip(weights) {
                    var.set(t)?;
                }
                (Some(*vl), *e)
            }
            None => (None, epochs),
        };
        let trained = Self::from_weights(&model.weights()?, model.bias()?)?;
        Ok((
            trained,
            TrainReport {
                epochs,
                best_epoch,
                train_loss,
                valid_loss,
                positive_weight,
            },
        ))
    }
}

fn snapshot(vars: &[Var]) -> Result<Vec<Tensor>> {
    Ok(vars
        .iter()
        .map(|v| v.as_tensor().copy())
        .collect::<candle_core::Result<_>>()?)
}

/// Mean of `w · (softplus(z) - y·z)`, the numerically stable binary cross-entropy on logits.
pub(crate) fn weighted_bce(logits: &Tensor, y: &Tensor, w: &Tensor) -> Result<Tensor> {
    let softplus = (logits.relu()? + ((logits.abs()?.neg()?.exp()? + 1.0)?.log()?))?;
    let per_row = (softplus - (y * logits)?)?;
    Ok(((per_row * w)?.sum_all()? / f64::from(w.sum_all()?.to_scalar::<f32>()?))?)
}

fn penalty(weight: &Tensor, cfg: &LogisticConfig) -> Result<Tensor> {
    let l2 = (weight.sqr()?.sum_all()? * cfg.l2)?;
    if cfg.l1 > 0.0 {
        Ok((l2 + (weight.abs()?.sum_all()? * cfg.l1)?)?)
    } else {
        Ok(l2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;
    use crate::calibration::sigmoid;

    /// A seeded linear-congruential stream, enough for test data.
    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 11) as f64 / (1u64 << 53) as f64
    }

    #[test]
    fn learns_the_sign_and_ranking_of_a_known_model() {
        let mut seed = 7;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..3000 {
            let a = lcg(&mut seed) * 4.0 - 2.0;
            let b = lcg(&mut seed) * 4.0 - 2.0;
            let noise = lcg(&mut seed) * 4.0 - 2.0;
            let p = sigmoid(2.0 * a - 1.0 * b - 2.5);
            x.extend([a as f32, b as f32, noise as f32]);
            y.push(if lcg(&mut seed) < p { 1.0 } else { 0.0 });
        }
        let cfg = LogisticConfig {
            n_features: 3,
            ..Default::default()
        };
        let (model, report) =
            LogisticRegression::fit(&cfg, &x[..6000], &y[..2000], Some((&x[6000..], &y[2000..]))).unwrap();
        let w = model.weights().unwrap();
        assert!(w[0] > 1.0 && w[1] < -0.4 && w[2].abs() < 0.3, "weights {w:?}");
        assert!(report.positive_weight > 1.0);
        let p: Vec<f64> = model
            .logits(&x[6000..])
            .unwrap()
            .iter()
            .map(|z| sigmoid(f64::from(*z)))
            .collect();
        let m = Metrics::compute(&p, &y[2000..], 0.5);
        assert!(m.roc_auc > 0.8, "auc {}", m.roc_auc);
    }
}
