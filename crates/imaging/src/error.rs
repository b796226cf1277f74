//! The crate's single error type.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = ImagingError> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, writing or transforming volumes.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    /// Underlying IO failure on a named file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file's content is not a valid instance of its format.
    #[error("{path}: invalid {format} file: {reason}")]
    Format {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    /// The file is valid but uses a feature we do not support.
    #[error("{path}: unsupported {format} feature: {reason}")]
    Unsupported {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    /// The image would need more memory than the configured limit.
    #[error("{path}: image needs {needed} bytes, more than the limit of {limit} bytes")]
    TooLarge { path: PathBuf, needed: u64, limit: u64 },
    /// The file name does not identify a known format and the bytes did not either.
    #[error("{path}: unknown image format")]
    UnknownFormat { path: PathBuf },
    /// A DICOM series could not be assembled into a volume.
    #[error("{path}: DICOM series: {reason}")]
    Series { path: PathBuf, reason: String },
    /// Refused to replace an existing output file.
    #[error("{path}: output exists (use overwrite to replace it)")]
    OutputExists { path: PathBuf },
    /// Invalid arguments to an in-memory operation.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ImagingError {
    /// IO error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImagingError::Io {
            path: path.into(),
            source,
        }
    }

    /// Format error on `path`.
    pub fn format(path: impl Into<PathBuf>, format: &'static str, reason: impl Into<String>) -> Self {
        ImagingError::Format {
            path: path.into(),
            format,
            reason: reason.into(),
        }
    }

    /// Unsupported-feature error on `path`.
    pub fn unsupported(path: impl Into<PathBuf>, format: &'static str, reason: impl Into<String>) -> Self {
        ImagingError::Unsupported {
            path: path.into(),
            format,
            reason: reason.into(),
        }
    }
}
