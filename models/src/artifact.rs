use std::collections::HashMap;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::calibration::sigmoid;
use crate::{
    Contribution, Dataset, Error, Gbdt, GbdtConfig, LogisticConfig, LogisticRegression, Metrics, Mlp,
    MlpConfig, Platt, Result, Scaler, TrainReport,
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
    /// The MLP's hyper-parameters when `family` is `mlp`.
    #[serde(default)]
    pub mlp: Option<MlpConfig>,
    /// The tree ensemble's hyper-parameters when `family` is `gbdt`.
    #[serde(default)]
    pub gbdt: Option<GbdtConfig>,
    /// Which model family was chosen on the validation window, and why.
    #[serde(default)]
    pub family_choice: String,
    /// Seconds each family took to fit on the split (every family under `auto`).
    #[serde(default)]
    pub fit_seconds: std::collections::BTreeMap<String, f64>,
    /// When set, the weights scoring with this model were refit on every observation date
    /// (validation and test windows included) after the split chose the family, its training
    /// length and its calibration; the metrics above are the split model's, out of time.
    #[serde(default)]
    pub refit: Option<Refit>,
}

/// How the deployed weights were refit on every observation date whose label has closed.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Refit {
    /// Observation dates and rows refit on, and the first and last date.
    pub dates: usize,
    pub rows: usize,
    pub first: String,
    pub last: String,
    /// Epochs trained (the split model's early-stopped length).
    pub epochs: usize,
    /// The affine map `(scale, shift)` from the refit model's logits to the split model's
    /// (their means and spreads matched on every row), folded into the calibration.
    pub logit_map: [f64; 2],
}

impl ModelMeta {
    /// The last observation date this model's weights learned from: the refit's last date, or
    /// the end of the validation window for a model that was not refit.
    pub fn trained_through(&self) -> Option<&str> {
        match &self.refit {
            Some(r) => Some(r.last.as_str()),
            None => self.windows.get("validation").map(|w| w[1].as_str()),
        }
    }
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

/// The network of a model family.
#[derive(Debug, Clone)]
pub enum Net {
    Logistic(LogisticRegression),
    Mlp(Mlp),
    Gbdt(Gbdt),
}

impl Net {
    /// Logits for scaled rows (row-major).
    pub fn logits(&self, x_scaled: &[f32]) -> Result<Vec<f32>> {
        match self {
            Net::Logistic(m) => m.logits(x_scaled),
            Net::Mlp(m) => m.logits(x_scaled),
            Net::Gbdt(m) => m.logits(x_scaled),
        }
    }

    pub fn family(&self) -> &'static str {
        match self {
            Net::Logistic(_) => "logistic_regression",
            Net::Mlp(_) => "mlp",
            Net::Gbdt(_) => "gbdt",
        }
    }
}

/// A trained model: metadata, scaling, calibration and weights.
#[derive(Debug, Clone)]
pub struct ModelArtifact {
    pub meta: ModelMeta,
    net: Net,
    /// Right after training (never stored): the split model's calibrated probability for each
    /// test-window row, in the rows' order, so that a refit model can still be compared out of
    /// time on any part of its test window.
    pub out_of_time: Vec<f64>,
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
        Self::with_net(meta, Net::Logistic(model))
    }

    pub fn with_net(meta: ModelMeta, net: Net) -> Self {
        Self {
            meta,
            net,
            out_of_time: Vec::new(),
        }
    }

    /// The weights as safetensors bytes, with the version in the header.
    pub fn weights_bytes(&self) -> Result<Vec<u8>> {
        let dev = Device::Cpu;
        let tensors = match &self.net {
            Net::Logistic(m) => {
                let (w, b) = (m.weights()?, m.bias()?);
                vec![
                    (
                        "linear.weight".to_string(),
                        Tensor::from_slice(&w, (1, w.len()), &dev)?,
                    ),
                    ("linear.bias".to_string(), Tensor::from_slice(&[b], 1, &dev)?),
                ]
            }
            Net::Mlp(m) => m.tensors(),
            // the ensemble in perpetual's JSON, as bytes: safetensors holds the file like the others
            Net::Gbdt(m) => {
                let json = m.to_json()?;
                vec![(
                    "gbdt.json".to_string(),
                    Tensor::from_vec(json.clone(), json.len(), &dev)?,
                )]
            }
        };
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
        if meta.family == "gbdt" {
            let bytes: Vec<u8> = get("gbdt.json")?.to_vec1()?;
            let net = Gbdt::from_json(&bytes, meta.features.len())?;
            return Ok(Self::with_net(meta, Net::Gbdt(net)));
        }
        if meta.family == "mlp" {
            let net = Mlp::from_tensors(|n| get(n).cloned())?;
            if net.n_features() != meta.features.len() {
                return Err(Error::Artifact(format!(
                    "weights hold {} features, model.json lists {}",
                    net.n_features(),
                    meta.features.len()
                )));
            }
            return Ok(Self::with_net(meta, Net::Mlp(net)));
        }
        let w: Vec<f32> = get("linear.weight")?.flatten_all()?.to_vec1()?;
        let b: Vec<f32> = get("linear.bias")?.to_vec1()?;
        if w.len() != meta.features.len() || b.len() != 1 {
            return Err(Error::Artifact(format!(
                "weights hold {} features, model.json lists {}",
                w.len(),
                meta.features.len()
            )));
        }
        Ok(Self::with_net(
            meta,
            Net::Logistic(LogisticRegression::from_weights(&w, b[0])?),
        ))
    }

    pub fn net(&self) -> &Net {
        &self.net
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
        let logits = self.net.logits(&scaled)?;
        // each feature's share of the logit: what changes when it alone is set to the training
        // mean (scaled 0). For the linear model that is exactly w·z; for the trees the exact
        // TreeSHAP values (against the ensemble's expectation); for the MLP by occlusion
        let shares: Vec<f32> = match &self.net {
            Net::Logistic(m) => {
                let w = m.weights()?;
                (0..data.n_rows())
                    .flat_map(|i| (0..d).map(move |j| (i, j)))
                    .map(|(i, j)| w[j] * scaled[i * d + j])
                    .collect()
            }
            Net::Mlp(m) => {
                let mut occluded = Vec::with_capacity(data.n_rows() * d * d);
                for i in 0..data.n_rows() {
                    for j in 0..d {
                        let start = occluded.len();
                        occluded.extend_from_slice(&scaled[i * d..(i + 1) * d]);
                        occluded[start + j] = 0.0;
                    }
                }
                let without = m.logits(&occluded)?;
                without
                    .iter()
                    .enumerate()
                    .map(|(k, z)| logits[k / d.max(1)] - z)
                    .collect()
            }
            Net::Gbdt(m) => m.shap(&scaled),
        };
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
                        &shares[i * d..(i + 1) * d],
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
