//! The crate's single error type.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

/// Everything that can go wrong while comparing segmentations or writing reports.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The prediction and the reference are not on the same voxel grid (sizes differ, or
    /// spacing, origin or direction differ by more than the tolerance).
    #[error(
        "prediction grid ({prediction}) differs from reference grid ({reference}) by more than \
         {tolerance}; enable resample_prediction to resample the prediction onto the reference grid \
         (nearest neighbour)"
    )]
    GridMismatch {
        /// The prediction's grid, described.
        prediction: String,
        /// The reference's grid, described.
        reference: String,
        /// The tolerance used (mm for spacing and origin, cosine units for direction).
        tolerance: f64,
    },
    /// A segmentation has more than one channel (one label volume is expected).
    #[error("{side} has {channels} channels; expected a single-channel label volume or mask")]
    MultiChannel {
        /// `"prediction"` or `"reference"`.
        side: &'static str,
        /// Its channel count.
        channels: usize,
    },
    /// A voxel value that is not a label: NaN, or (for label volumes) not an integer.
    #[error(
        "{side} contains {value}, which is not a label value (labels must be integers; threshold \
             probability maps first)"
    )]
    InvalidLabel {
        /// `"prediction"` or `"reference"`.
        side: &'static str,
        /// The offending value.
        value: f64,
    },
    /// Invalid options or arguments (bad tolerance, too many classes, buffer sizes...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Resampling, reading or writing through `aiaa-imaging` failed.
    #[error(transparent)]
    Imaging(#[from] aiaa_imaging::ImagingError),
    /// IO failure on a named file or folder (reports).
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A report could not be encoded as JSON.
    #[error("encoding the JSON report: {0}")]
    Json(#[from] serde_json::Error),
}
