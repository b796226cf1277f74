//! The service's one error type: the training core's errors ([`aiaa_train::TrainError`],
//! unchanged) and what only the service meets (requests, the store, the other services).

use std::path::PathBuf;

/// Everything that can go wrong in `aiaa-trainer`.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// The training core: a config, datalist, sample, checkpoint, file or libtorch problem.
    #[error(transparent)]
    Train(#[from] aiaa_train::TrainError),
    /// A request is malformed (INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidRequest(String),
    /// A job, datalist, item, model or object does not exist (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the current state forbids it (FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The datastore or the registry failed or cannot be reached (UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// The object store failed.
    #[error("object store: {context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A name or config problem reported by the shared runtime.
    #[error(transparent)]
    Runtime(#[from] aiaa_runtime::RuntimeError),
    /// A bug or an unexpected local failure (INTERNAL).
    #[error("internal error: {0}")]
    Internal(String),
}

/// A datalist in a request that does not read (the message names it, the entry and the
/// field) is the caller's to fix.
impl From<aiaa_datalist::DatalistError> for TrainerError {
    fn from(e: aiaa_datalist::DatalistError) -> Self {
        TrainerError::InvalidRequest(e.to_string())
    }
}

impl TrainerError {
    /// A file-system error for `path` (the core's [`aiaa_train::TrainError::Io`]).
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainerError::Train(aiaa_train::TrainError::io(path, source))
    }
}

/// The service's result type.
pub type Result<T, E = TrainerError> = std::result::Result<T, E>;
