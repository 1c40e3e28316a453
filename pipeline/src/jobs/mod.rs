//! The jobs. Each takes the lake, the settings and the run's audit context, and returns a report
//! the CLI prints as its JSON summary line.

pub mod account;
pub mod act;
mod act_tables;
pub mod analytics;
pub mod backup;
pub mod benchmarks;
pub mod gdpr;
pub mod health_weights;
mod ingest;
pub mod lineage;
pub mod maintain;
#[cfg(test)]
mod properties;
pub mod publish;
pub mod quality;
pub mod registry;
pub mod report;
pub mod rollup;
mod score;
mod source_state;
mod train;
mod transform;
pub mod util;

pub use ingest::{IngestReport, TableLoad, ingest};
pub use score::{ScoreReport, TopAccount, score};
pub use train::{EvaluateReport, TrainReport, TrainingSetReport, evaluate, train, write_training_set};
pub use transform::{FeaturesReport, ViewInfo, describe_views, features, load_registry};
