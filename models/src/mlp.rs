use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

use crate::{Error, Result, TrainReport};

/// Hyper-parameters of the small multi-layer perceptron (one hidden ReLU layer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct MlpConfig {
    pub n_features: usize,
    pub hidden: usize,
    /// L2 penalty on both weight matrices.
    pub l2: f64,
    pub learning_rate: f64,
    pub max_epochs: usize,
    /// Stop after this many validation checks (every 5 epochs) without improvement.
    pub patience: usize,
    pub balance_classes: bool,
    /// Seed of the (deterministic) weight initialisation.
    pub seed: u64,
}

impl Default for MlpConfig {
    fn default() -> Self {
        Self {
            n_features: 0,
            hidden: 16,
            l2: 1e-3,
            learning_rate: 0.01,
            max_epochs: 600,
            patience: 10,
            balance_classes: true,
            seed: 42,
        }
    }
}

/// `logit = w2 · relu(W1 x + b1) + b2`.
#[derive(Debug, Clone)]
pub struct Mlp {
    w1: Tensor,
    b1: Tensor,
    w2: Tensor,
    b2: Tensor,
}

/// A seeded xorshift stream: the same weights on every machine and run.
fn uniform(seed: &mut u64, n: usize, bound: f64) -> Vec<f32> {
    (0..n)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let u = (*seed >> 11) as f64 / (1u64 << 53) as f64;
            ((u * 2.0 - 1.0) * bound) as f32
        })
        .collect()
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = x.matmul(&self.w1.t()?)?.broadcast_add(&self.b1)?.relu()?;
        Ok(h.matmul(&self.w2.t()?)?
            .squeeze(D::Minus1)?
            .broadcast_add(&self.b2)?)
    }

    pub fn n_features(&self) -> usize {
        self.w1.dims()[1]
    }

    /// Logits for scaled rows (row-major).
    pub fn logits(&self, x_scaled: &[f32]) -> Result<Vec<f32>> {
        let d = self.n_features();
        if x_scaled.is_empty() {
            return Ok(Vec::new());
        }
        let x = Tensor::from_slice(x_scaled, (x_scaled.len() / d, d), &Device::Cpu)?;
        Ok(self.forward(&x)?.to_vec1()?)
    }

    /// The four tensors by name, for safetensors.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        vec![
            ("mlp.w1".into(), self.w1.clone()),
            ("mlp.b1".into(), self.b1.clone()),
            ("mlp.w2".into(), self.w2.clone()),
            ("mlp.b2".into(), self.b2.clone()),
        ]
    }

    pub fn from_tensors(get: impl Fn(&str) -> Result<Tensor>) -> Result<Self> {
        let (w1, b1, w2, b2) = (get("mlp.w1")?, get("mlp.b1")?, get("mlp.w2")?, get("mlp.b2")?);
        let h = w1.dims().first().copied().unwrap_or(0);
        if b1.dims() != [h] || w2.dims() != [1, h] || b2.dims() != [1] {
            return Err(Error::Artifact("MLP tensors of inconsistent shapes".into()));
        }
        Ok(Self { w1, b1, w2, b2 })
    }

    /// Full-batch AdamW with class weights; keeps the weights with the lowest validation loss.
    pub fn fit(
        cfg: &MlpConfig,
        train_x: &[f32],
        train_y: &[f32],
        valid: Option<(&[f32], &[f32])>,
    ) -> Result<(Self, TrainReport)> {
        let (d, h, n) = (cfg.n_features, cfg.hidden.max(1), train_y.len());
        if n == 0 || train_x.len() != n * d {
            return Err(Error::Data(format!(
                "{n} labels for {} values of {d} features",
                train_x.len()
            )));
        }
        let positives = train_y.iter().filter(|v| **v > 0.5).count();
        if positives == 0 || positives == n {
            return Err(Error::Data(format!(
                "the training rows hold a single class ({positives} churned of {n})"
            )));
        }
        let dev = Device::Cpu;
        let mut seed = cfg.seed.max(1);
        let w1 = Var::from_tensor(&Tensor::from_slice(
            &uniform(&mut seed, h * d, (6.0 / (d + h) as f64).sqrt()),
            (h, d),
            &dev,
        )?)?;
        let b1 = Var::from_tensor(&Tensor::zeros(h, DType::F32, &dev)?)?;
        let w2 = Var::from_tensor(&Tensor::from_slice(
            &uniform(&mut seed, h, (6.0 / (h + 1) as f64).sqrt()),
            (1, h),
            &dev,
        )?)?;
        let b2 = Var::from_tensor(&Tensor::zeros(1, DType::F32, &dev)?)?;
        let vars = vec![w1.clone(), b1.clone(), w2.clone(), b2.clone()];
        let model = |vars: &[Var]| Mlp {
            w1: vars[0].as_tensor().clone(),
            b1: vars[1].as_tensor().clone(),
            w2: vars[2].as_tensor().clone(),
            b2: vars[3].as_tensor().clone(),
        };
        let positive_weight = if cfg.balance_classes {
            (n - positives) as f64 / positives as f64
        } else {
            1.0
        };
        let weights_of = |y: &[f32]| -> Vec<f32> {
            y.iter()
                .map(|v| if *v > 0.5 { positive_weight as f32 } else { 1.0 })
                .collect()
        };
        let x = Tensor::from_slice(train_x, (n, d), &dev)?;
        let y = Tensor::from_slice(train_y, n, &dev)?;
        let w = Tensor::from_slice(&weights_of(train_y), n, &dev)?;
        let valid = match valid {
            Some((vx, vy)) if !vy.is_empty() => Some((
                Tensor::from_slice(vx, (vy.len(), d), &dev)?,
                Tensor::from_slice(vy, vy.len(), &dev)?,
                Tensor::from_slice(&weights_of(vy), vy.len(), &dev)?,
            )),
            _ => None,
        };
        let mut opt = candle_nn::AdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr: cfg.learning_rate,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let mut best: Option<(f64, usize, Vec<Tensor>)> = None;
        let (mut since_best, mut epochs, mut train_loss) = (0, 0, f64::NAN);
        for epoch in 0..cfg.max_epochs {
            epochs = epoch + 1;
            let m = model(&vars);
            let data_loss = crate::logistic::weighted_bce(&m.forward(&x)?, &y, &w)?;
            let penalty = ((m.w1.sqr()?.sum_all()? + m.w2.sqr()?.sum_all()?)? * cfg.l2)?;
            opt.backward_step(&(&data_loss + penalty)?)?;
            train_loss = f64::from(data_loss.to_scalar::<f32>()?);
            if let Some((vx, vy, vw)) = &valid
                && epoch % 5 == 4
            {
                let vl = f64::from(
                    crate::logistic::weighted_bce(&model(&vars).forward(vx)?, vy, vw)?.to_scalar::<f32>()?,
                );
                if best.as_ref().is_none_or(|(b, _, _)| vl < *b - 1e-6) {
                    let copies = vars
                        .iter()
                        .map(|v| v.as_tensor().copy())
                        .collect::<candle_core::Result<Vec<_>>>()?;
                    best = Some((vl, epochs, copies));
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
            Some((vl, e, copies)) => {
                for (var, t) in vars.iter().zip(copies) {
                    var.set(t)?;
                }
                (Some(*vl), *e)
            }
            None => (None, epochs),
        };
        // detach from the optimiser's variables
        let m = model(&vars);
        let trained = Mlp {
            w1: m.w1.copy()?,
            b1: m.b1.copy()?,
            w2: m.w2.copy()?,
            b2: m.b2.copy()?,
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;
    use crate::calibration::sigmoid;

    #[test]
    fn learns_an_interaction_a_linear_model_cannot() {
        // churn when exactly one of two signals is high (xor): no line separates it
        let mut seed = 11u64;
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let v = uniform(&mut seed, 3, 2.0);
            let p = if (v[0] > 0.0) != (v[1] > 0.0) { 0.8 } else { 0.1 };
            y.push(if f64::from(uniform(&mut seed, 1, 1.0)[0]).abs() < p {
                1.0
            } else {
                0.0
            });
            x.extend(v);
        }
        let cfg = MlpConfig {
            n_features: 3,
            ..Default::default()
        };
        let (model, report) = Mlp::fit(&cfg, &x[..9000], &y[..3000], Some((&x[9000..], &y[3000..]))).unwrap();
        assert!(report.best_epoch > 0);
        let p: Vec<f64> = model
            .logits(&x[9000..])
            .unwrap()
            .iter()
            .map(|z| sigmoid(f64::from(*z)))
            .collect();
        let auc = Metrics::compute(&p, &y[3000..], 0.5).roc_auc;
        assert!(auc > 0.8, "auc {auc}");
        // deterministic: the same data gives the same weights
        let (again, _) = Mlp::fit(&cfg, &x[..9000], &y[..3000], Some((&x[9000..], &y[3000..]))).unwrap();
        assert_eq!(
            model.logits(&x[9000..9030]).unwrap(),
            again.logits(&x[9000..9030]).unwrap()
        );
    }
}
