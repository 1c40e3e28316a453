//! The cslake feature registry.
//!
//! Feature views are `SELECT`s in `sql/features/*.sql`, each with a comment header naming the view,
//! its sources and a readable label per feature column. Views are computed *as of* a date D: the SQL
//! sees `{{as_of}}` as a date literal and must only use facts dated on or before it. This crate runs
//! views on a DataFusion `SessionContext` it is handed (with the lake tables registered) and never
//! writes anything.

mod attributes;
mod days;
mod event_metrics;
mod health;
mod registry;
mod render;
mod state;
mod training;

pub use attributes::{ATTRIBUTES_VIEW, Attribute, STATIC_COLUMNS, view as attributes_view};
pub use days::on_days;
pub use event_metrics::{
    EVENT_METRICS_STATE, EVENT_METRICS_VIEW, EventMetric, columns as event_metric_columns,
    slug as event_type_slug, view as event_metrics_view,
};
pub use health::{DEFAULT_PROFILES, HealthProfile, HealthProfiles, HealthResult, Measure};
pub use registry::{FeatureView, Maintenance, ROLLUPS, Registry, ViewState, shared_states};
pub use render::render;
pub use state::{Computed, ComputedState, PreviousStates, compute_kept, compute_state};
pub use training::{
    ChurnDefinition, FEATURE_TYPE, Knowledge, LabelSpec, Target, compute_all, compute_view, feature_vector,
    register_rollups, register_spine, restrict_knowledge, training_set, training_sets,
};

/// Errors from feature views, labels and health profiles.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("feature view '{view}' ({path}): {message}")]
    View {
        view: String,
        path: String,
        message: String,
    },
    #[error("feature view '{view}' failed as of {as_of}: {source}")]
    Query {
        view: String,
        as_of: String,
        #[source]
        source: datafusion::error::DataFusionError,
    },
    #[error("health profile '{profile}': {message}")]
    Health { profile: String, message: String },
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
