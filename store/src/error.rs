//! Errors of the store.

use std::path::PathBuf;

/// Everything that can go wrong in the store. `is_retryable` tells a caller whether the same
/// write may succeed later (a full disk, a busy buffer) or never will (a malformed batch).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("Parquet error on {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("object storage error on {path}: {source}")]
    Object {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// The storage cannot be set up as configured (a bad URL, settings the client refuses).
    #[error("{0}")]
    Storage(String),
    #[error("Arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("batch for table {table} does not match its schema: {reason}")]
    SchemaMismatch { table: &'static str, reason: String },
    #[error("{0}")]
    Tenant(String),
    #[error("the store is shutting down")]
    ShuttingDown,
    #[error("another process is using the data directory {0} (its LOCK file is held)")]
    Locked(PathBuf),
    #[error(
        "{} was written by a newer release of Sightline ({problem}); start that release, or \
         move the file aside to start this one without its data",
        path.display()
    )]
    NewerFormat { path: PathBuf, problem: String },
}

impl StoreError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether the caller may retry the same request later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Io { .. }
                | StoreError::Parquet { .. }
                | StoreError::Object { .. }
                | StoreError::ShuttingDown
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
