//! The cslake pipeline, laid out by the stages of the day: `ingest` → `features` → `train` →
//! `score` → `act` → `analytics`, each a folder named after its CLI command, over `lake` (the
//! catalog, storage, canonical schema, audit, personal data, lineage) and `settings` (the typed
//! configuration, a leaf). `day` runs a whole day or a range of days; `admin` holds housekeeping,
//! backups and data-subject requests; `demo` generates a realistic data set. Jobs emit `tracing`
//! events and report progress through [`Progress`]; they never print.

pub mod act;
pub mod admin;
pub mod analytics;
pub mod cluster;
pub mod day;
pub mod demo;
mod error;
pub mod features;
pub mod http;
pub mod ingest;
pub mod lake;
mod observe;
pub mod score;
pub mod settings;
pub mod train;
pub mod units;

pub use error::{Error, Result};
pub use lake::Lake;
pub use lake::ops::RunContext;
pub use observe::{NoProgress, Progress, add_secrets, fault_point, mask};
pub use settings::Settings;
