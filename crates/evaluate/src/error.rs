//! The crate's single error type. Messages name the file and the field at fault.

use std::path::PathBuf;

/// What can stop `aiaa infer` / `aiaa evaluate` as a whole. A problem with one case of the
/// list is not an error of the run: it is reported in the [`crate::Summary`] and skipped,
/// unless `fail_fast` turns it into [`EvaluateError::CaseFailed`].
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// An option is out of range; the message names the flag.
    #[error("{flag}: {reason}")]
    Option {
        /// The flag (seed spelling).
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The datalist is unreadable or malformed; the message names the file and the entry
    /// (e.g. `validation[3].image: missing`).
    #[error(transparent)]
    Datalist(#[from] aiaa_datalist::DatalistError),
    /// The model or its config cannot be used; the message names the file and the key.
    #[error("{0}")]
    Model(String),
    /// The engine failed to load (libtorch's or the config's message).
    #[error(transparent)]
    Engine(#[from] aiaa_engines::EngineError),
    /// A case failed and `fail_fast` was asked for.
    #[error("{file}: {stage}: {reason} (stopped by --fail_fast)")]
    CaseFailed {
        /// The case's image as the datalist names it.
        file: String,
        /// Where it failed: `read`, `clicks`, `model`, `write` or `metrics`.
        stage: &'static str,
        /// The reason.
        reason: String,
    },
    /// Writing a summary or report failed.
    #[error(transparent)]
    Metrics(#[from] aiaa_metrics::MetricsError),
    /// Writing a file failed.
    #[error(transparent)]
    Imaging(#[from] aiaa_imaging::ImagingError),
    /// A file or folder could not be created.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A case cannot go through the interactive protocol (no label, a label on another
    /// grid, an empty reference); the message says which.
    #[error("{0}")]
    Case(String),
    /// A worker thread could not start or died.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The crate's result type.
pub type Result<T, E = EvaluateError> = std::result::Result<T, E>;
