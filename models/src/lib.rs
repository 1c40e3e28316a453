//! Churn models for cslake: logistic regression and a small MLP on candle, gradient-boosted trees
//! on perpetual.
//!
//! This crate never sees the lake or DataFusion: it takes plain matrices ([`Dataset`]) and returns
//! trained models, metrics and explanations. The pipeline turns feature tables into datasets.

mod artifact;
mod calibration;
mod dataset;
mod explain;
mod gbdt;
mod logistic;
mod metrics;
mod mlp;
mod scaling;
mod train;

pub use artifact::{ModelArtifact, ModelMeta, Net, Prediction, Refit};
pub use calibration::Platt;
pub use dataset::Dataset;
pub use explain::Contribution;
pub use gbdt::{Gbdt, GbdtConfig};
pub use logistic::{LogisticConfig, LogisticRegression, TrainReport};
pub use metrics::{Fold, Metrics, ReliabilityBin, auc_difference};
pub use mlp::{Mlp, MlpConfig};
pub use scaling::{FeatureScaling, Scaler, Transform};
pub use train::{Family, TrainOptions, backtest, reference, reference_gbdt, train_out_of_time};

/// Errors from training, scoring and loading models.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("model artifact: {0}")]
    Artifact(String),
    #[error("the training set is unusable: {0}")]
    Data(String),
    #[error(
        "feature '{feature}' is required by model {version} but missing from the input (the feature views changed since it was trained: run `cslake train`)"
    )]
    MissingFeature { feature: String, version: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
