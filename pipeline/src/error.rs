//! The crate's error: one enum with what a caller needs to tell failures apart, and the exit code
//! each maps to.

/// Errors from jobs. The CLI maps them to exit codes with [`Error::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `cslake.toml` (or a file it names) says something that cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// A secret or credential is read from an environment variable that is not set.
    #[error("{what}: the environment variable {var} is not set ({why})")]
    MissingEnv {
        var: String,
        what: String,
        /// What it should hold, or why it comes from the environment.
        why: String,
    },
    /// `[access]` refuses the actor this command.
    #[error("access denied: {0}")]
    Denied(String),
    /// The command line asks for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),
    /// The command line names something the lake does not hold.
    #[error("no {what} '{name}'{hint}")]
    NotFound {
        what: &'static str,
        name: String,
        /// Where to look for the right name (starts with a space or is empty).
        hint: String,
    },
    #[error(
        "{origin}: the {table} data has no column '{column}' (looked for: {expected}; found: {found}). \
         Map it in cslake.toml under [ingest.tables.{table}.columns]"
    )]
    MissingColumn {
        origin: String,
        table: String,
        column: String,
        expected: String,
        found: String,
    },
    #[error("{origin}: {message}")]
    Input { origin: String, message: String },
    #[error(
        "{rejected} of {read} rows ({share:.2}%) were rejected, above the allowed {threshold:.2}%; nothing was \
         loaded into core tables. The reasons are in ops.quarantine (cslake query \"SELECT * FROM quarantine WHERE _run_id = '{run_id}'\"). First: {first}"
    )]
    RejectedAboveThreshold {
        rejected: usize,
        read: usize,
        share: f64,
        threshold: f64,
        run_id: String,
        first: String,
    },
    #[error("{0}")]
    Job(String),
    /// The audit row of a run could not be written.
    #[error("writing ops.runs: {0}")]
    Audit(Box<Error>),
    /// A failure with what was being done when it happened; the exit code is the cause's.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
    /// Data that fails a configured quality check (features, source freshness).
    #[error("data quality: {0}")]
    Quality(String),
    /// An API call that failed for good (after retries where retrying makes sense).
    #[error("source '{name}': {message}")]
    Http {
        name: String,
        message: String,
        /// The server answered and refused the request (a 4xx, or a body it could not read):
        /// sending it again will not help. Otherwise it could not be reached or kept failing.
        refused: bool,
    },
    /// 401/403: retrying cannot help, the configured credentials must change.
    #[error("source '{name}': credentials rejected: {message}")]
    Credentials { name: String, message: String },
    #[error("no churn model has been trained yet: run `cslake train --as-of DATE` first")]
    NoModel,
    #[error(transparent)]
    Sink(Box<cslake_sinks::Error>),
    #[error(transparent)]
    Features(Box<cslake_features::Error>),
    #[error(transparent)]
    Model(Box<cslake_models::Error>),
    #[error("query: {0}")]
    DataFusion(Box<deltalake::datafusion::error::DataFusionError>),
    #[error("{0}")]
    Arrow(Box<deltalake::arrow::error::ArrowError>),
    #[error("Delta: {0}")]
    Delta(Box<deltalake::DeltaTableError>),
    #[error("storage: {0}")]
    Store(Box<object_store::Error>),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// 2 for usage and configuration errors, 3 for input rejected, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_)
            | Error::MissingEnv { .. }
            | Error::Usage(_)
            | Error::Denied(_)
            | Error::NotFound { .. }
            | Error::Credentials { .. } => 2,
            Error::Features(e) => match e.as_ref() {
                cslake_features::Error::Health { .. } | cslake_features::Error::View { .. } => 2,
                // a view's SQL that does not plan is the user's SQL to fix, not a failed job
                cslake_features::Error::Query { source, .. } => {
                    use deltalake::datafusion::error::DataFusionError as E;
                    match source.find_root() {
                        E::Plan(_) | E::SchemaError(..) | E::SQL(..) => 2,
                        _ => 1,
                    }
                }
                _ => 1,
            },
            // SQL that does not parse or plan (`cslake query`) is the user's to fix
            Error::DataFusion(e)
                if matches!(
                    e.find_root(),
                    deltalake::datafusion::error::DataFusionError::Plan(_)
                        | deltalake::datafusion::error::DataFusionError::SQL(..)
                        | deltalake::datafusion::error::DataFusionError::SchemaError(..)
                ) =>
            {
                2
            }
            Error::Context { source, .. } => source.exit_code(),
            Error::MissingColumn { .. }
            | Error::Input { .. }
            | Error::RejectedAboveThreshold { .. }
            | Error::Quality(_) => 3,
            _ => 1,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors of the crates below are boxed: they are large, and `Result` is on every path.
macro_rules! boxed_from {
    ($($variant:ident: $ty:ty),* $(,)?) => {$(
        impl From<$ty> for Error {
            fn from(e: $ty) -> Self {
                Error::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_from!(
    Sink: cslake_sinks::Error,
    Features: cslake_features::Error,
    Model: cslake_models::Error,
    DataFusion: deltalake::datafusion::error::DataFusionError,
    Arrow: deltalake::arrow::error::ArrowError,
    Delta: deltalake::DeltaTableError,
    Store: object_store::Error,
);

impl Error {
    pub(crate) fn audit(e: Error) -> Error {
        Error::Audit(Box::new(e))
    }

    /// This error, with what was being done when it happened.
    pub fn context(self, context: impl Into<String>) -> Error {
        Error::Context {
            context: context.into(),
            source: Box::new(self),
        }
    }
}
