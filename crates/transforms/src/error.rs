//! The crate's single error type.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = TransformError> = std::result::Result<T, E>;

/// Everything that can go wrong while building or running transforms.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The config names a transform we do not know.
    #[error("transform #{position} ({name:?}): unknown transform")]
    UnknownTransform { position: usize, name: String },
    /// A transform's JSON object is missing its `name`, or is not an object.
    #[error("transform #{position}: {reason}")]
    BadEntry { position: usize, reason: String },
    /// A transform's arguments are wrong: unknown, missing, mistyped or out of range.
    #[error("transform #{position} ({name}): argument {argument}: {reason}")]
    Argument {
        position: usize,
        name: String,
        argument: String,
        reason: String,
    },
    /// A transform failed on a sample.
    #[error("sample {sample:?}: transform #{position} ({name}): {source}")]
    Sample {
        sample: String,
        position: usize,
        name: String,
        #[source]
        source: Box<TransformError>,
    },
    /// A key the transform needs is not in the sample.
    #[error("key {0:?} is missing")]
    MissingKey(String),
    /// A key holds the wrong kind of item.
    #[error("key {key:?} holds {found}, expected {expected}")]
    WrongItem {
        key: String,
        expected: &'static str,
        found: &'static str,
    },
    /// The request cannot be carried out on this data (e.g. an empty foreground).
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing an image failed.
    #[error(transparent)]
    Imaging(#[from] aiaa_imaging::ImagingError),
    /// Filesystem failure outside the imaging readers.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A config file is not valid JSON of the expected shape.
    #[error("{0}")]
    Config(String),
}

impl TransformError {
    /// Shorthand for [`TransformError::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        TransformError::Invalid(msg.into())
    }

    /// The innermost error (below the sample/position wrapper).
    pub fn root(&self) -> &TransformError {
        match self {
            TransformError::Sample { source, .. } => source.root(),
            e => e,
        }
    }
}
