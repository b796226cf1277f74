//! The crate's one error type.
//!
//! Callers map it once onto their own kinds (the services onto `tonic::Status`): `Config` and
//! `Shape` are the caller's mistake (INVALID_ARGUMENT), `Unsupported` a request this build or
//! device cannot serve (FAILED_PRECONDITION), `Io` / `Checkpoint` / `Torch` failures of the
//! environment or of a file.

use std::path::PathBuf;

/// Everything that can go wrong in `aiaa-nets`.
#[derive(Debug, thiserror::Error)]
pub enum NetsError {
    /// A config object is malformed: `context` says which object (`net_config`, `loss`, …),
    /// `key` the offending key (an unknown one, a missing one or one with a bad value).
    #[error("{context}: `{key}`: {message}")]
    Config {
        /// The object being read, e.g. `net_config` or `train.optimizer`.
        context: String,
        /// The key at fault.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A tensor has the wrong rank, size or element kind for the operation.
    #[error("shape: {0}")]
    Shape(String),
    /// The operation is not possible here (e.g. fp16 export without CUDA).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A checkpoint file is unreadable or does not fit the network / optimizer given.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// libtorch reported an error (including out-of-memory on a device).
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

impl NetsError {
    /// A [`NetsError::Config`] error.
    pub fn config(context: impl Into<String>, key: impl Into<String>, message: impl Into<String>) -> Self {
        NetsError::Config {
            context: context.into(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// An [`NetsError::Io`] error for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        NetsError::Io {
            path: path.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = NetsError> = std::result::Result<T, E>;
