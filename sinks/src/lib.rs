//! Writing Arrow batches out of cslake: Delta tables (append, merge on keys, insert new keys,
//! replace a partition), files (Parquet, CSV, NDJSON), e-mail over SMTP, PostgreSQL tables for BI tools
//! and reports (PDF and HTML). Sinks never decide
//! *what* to write.

mod delta;
pub mod email;
mod files;
pub mod postgres;
pub mod report;

pub use delta::{DeltaTarget, WriteStats};
pub use files::{FileFormat, FileWriter};

/// Errors from writing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
    #[error("Delta table {table}: {message}")]
    Table { table: String, message: String },
    #[error("writing {path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    #[error("{0}")]
    DataFusion(#[from] deltalake::datafusion::error::DataFusionError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A commit lost to another writer's: the write, read again, may be retried.
    pub fn is_conflict(&self) -> bool {
        use deltalake::kernel::transaction::TransactionError;
        matches!(
            self,
            Error::Delta {
                source: deltalake::DeltaTableError::Transaction {
                    source: TransactionError::CommitConflict(_) | TransactionError::MaxCommitAttempts(_)
                },
                ..
            }
        )
    }
}

#[cfg(test)]
mod conflict_tests {
    use deltalake::kernel::transaction::{CommitConflictError, TransactionError};

    use super::Error;

    #[test]
    fn a_lost_commit_is_a_conflict_and_other_errors_are_not() {
        let lost = Error::Delta {
            table: "ops.runs".into(),
            source: deltalake::DeltaTableError::from(TransactionError::CommitConflict(
                CommitConflictError::ConcurrentDeleteRead,
            )),
        };
        assert!(lost.is_conflict(), "{lost}");
        let other = Error::Table {
            table: "ops.runs".into(),
            message: "no such column".into(),
        };
        assert!(!other.is_conflict());
    }
}
