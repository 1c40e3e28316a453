use std::collections::HashMap;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::calibration::sigmoid;
use crate::{
    Contribution, Dataset, Error, LogisticConfig, LogisticRegression, Metrics, Platt, Result, Scaler,
    TrainReport,
};

/// Everything about a trained model except its weights: stored as JSON beside the safetensors file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ModelMeta {
    pub name: String,
    pub version: String,
    pub family: String,
    pub created_at: String,
    /// The cslake version that trained it.
    pub code_version: String,
    pub features: Vec<String>,
    pub scaling: Scaler,
    pub calibration: Platt,
    pub config: LogisticConfig,
    pub train_report: TrainReport,
    /// What the label means, e.g. `{"definition": "...", "horizon_days": "90"}`.
    pub label: HashMap<String, String>,
    /// Observation dates per role: `train`, `validation`, `test` → `[first, last]`.
    pub windows: HashMap<String, [String; 2]>,
    /// Metrics on the out-of-time test window, which training never saw.
    pub test_metrics: Metrics,
    /// Metrics on the validation window (used for early stopping and calibration).
    pub validation_metrics: Option<Metrics>,
    /// The forward-in-time backtest: one model per fold, each tested on dates after all it saw.
    #[serde(default)]
    pub backtest: Vec<crate::Fold>,
    /// Isotonic calibration, when it beat Platt's on held-out rows (else `calibration` applies).
    #[serde(default)]
    pub isotonic: Option<crate::calibration::Isotonic>,
    /// Which calibration was chosen, and why.
    #[serde(default)]
    pub calibration_choice: String,
}

impl ModelMeta {
    /// The calibrated probability of a logit.
    pub fn calibrate(&self, logit: f64) -> f64 {
        match &self.isotonic {
            Some(iso) => iso.probability(logit),
            None => self.calibration.probability(logit),
        }
    }
}

/// A trained model: metadata, scaling, calibration and weights.
#[derive(Debug, Clone)]
pub struct ModelArtifact {
    pub meta: ModelMeta,
    model: LogisticRegression,
}

/// One account's prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub probability: f64,
    pub logit: f64,
    /// Every feature's signed contribution to the logit, largest magnitude first.
    pub contributions: Vec<Contribution>,
}

impl ModelArtifact {
    pub fn new(meta: ModelMeta, model: LogisticRegression) -> Self {
        Self { meta, model }
    }

    /// The weights as safetensors bytes, with the version in the header.
    pub fn weights_bytes(&self) -> Result<Vec<u8>> {
        let w = self.model.weights()?;
        let b = self.model.bias()?;
        let dev = Device::Cpu;
        let tensors = vec![
            (
                "linear.weight".to_string(),
                Tensor::from_slice(&w, (1, w.len()), &dev)?,
            ),
            ("linear.bias".to_string(), Tensor::from_slice(&[b], 1, &dev)?),
        ];
        let info = HashMap::from([("version".to_string(), self.meta.version.clone())]);
        safetensors::serialize(tensors, Some(info)).map_err(|e| Error::Artifact(e.to_string()))
    }

    pub fn meta_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(&self.meta).map_err(|e| Error::Artifact(e.to_string()))
    }

    /// Loads what [`weights_bytes`](Self::weights_bytes) and [`meta_json`](Self::meta_json) wrote.
    pub fn from_bytes(meta_json: &[u8], weights: &[u8]) -> Result<Self> {
        let meta: ModelMeta =
            serde_json::from_slice(meta_json).map_err(|e| Error::Artifact(format!("model.json: {e}")))?;
        let tensors = candle_core::safetensors::load_buffer(weights, &Device::Cpu)?;
        let get = |name: &str| {
            tensors
                .get(name)
                .ok_or_else(|| Error::Artifact(format!("weights lack tensor '{name}'")))
        };
        let w: Vec<f32> = get("linear.weight")?.flatten_all()?.to_vec1()?;
        let b: Vec<f32> = get("linear.bias")?.to_vec1()?;
        if w.len() != meta.features.len() || b.len() != 1 {
            return Err(Error::Artifact(format!(
                "weights hold {} features, model.json lists {}",
                w.len(),
                meta.features.len()
            )));
        }
        Ok(Self {
            model: LogisticRegression::from_weights(&w, b[0])?,
            meta,
        })
    }

    pub fn weights(&self) -> Result<Vec<f32>> {
        self.model.weights()
    }

    /// Scores rows; the dataset's columns are matched to the model's features by name.
    pub fn predict(&self, data: &Dataset) -> Result<Vec<Prediction>> {
        let index: HashMap<&str, usize> = data
            .feature_names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();
        let cols: Vec<usize> = self
            .meta
            .features
            .iter()
            .map(|f| {
                index
                    .get(f.as_str())
                    .copied()
                    .ok_or_else(|| Error::MissingFeature {
                        feature: f.clone(),
                        version: self.meta.version.clone(),
                    })
            })
            .collect::<Result<_>>()?;
        let d = cols.len();
        let mut scaled = Vec::with_capacity(data.n_rows() * d);
        for i in 0..data.n_rows() {
            let row = data.row(i);
            scaled.extend(
                cols.iter()
                    .enumerate()
                    .map(|(j, c)| self.meta.scaling.scale_one(j, row[*c])),
            );
        }
        let logits = self.model.logits(&scaled)?;
        let weights = self.model.weights()?;
        Ok(logits
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let z = f64::from(*z);
                let raw: Vec<f32> = cols.iter().map(|c| data.row(i)[*c]).collect();
                Prediction {
                    probability: self.meta.calibrate(z),
                    logit: z,
                    contributions: crate::explain::contributions(
                        &self.meta.scaling,
                        &weights,
                        &scaled[i * d..(i + 1) * d],
                        &raw,
                    ),
                }
            })
            .collect())
    }

    /// Uncalibrated probability, for diagnostics.
    pub fn raw_probability(logit: f64) -> f64 {
        sigmoid(logit)
    }
}
