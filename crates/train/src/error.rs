//! The crate's one error type.
//!
//! Every error says where the problem is: the config or datalist file and the key or item,
//! the sample and transform, the checkpoint file. Callers map it once onto their own kinds
//! (`aiaa train` prints it; the trainer service maps `Config`, `Datalist`, `Data` and
//! `Transform` to INVALID_ARGUMENT, `Unsupported` and `Checkpoint` to FAILED_PRECONDITION,
//! the rest to INTERNAL).

use std::path::PathBuf;

/// Everything that can go wrong in `aiaa-train`.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The train config is malformed: `key` is the offending key as a path
    /// (`train.optimizer.lr`, `validate.pre_transforms`, …).
    #[error("train config {}: `{key}`: {message}", file.display())]
    Config {
        /// The config file.
        file: PathBuf,
        /// The key at fault.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The datalist is malformed, or one of its items is unusable: `item` is e.g.
    /// `training[3]`, `key` the item's key (`image`, `label`) or empty for the item itself.
    #[error("datalist {}: {item}{}: {message}", file.display(), if key.is_empty() { String::new() } else { format!(" `{key}`") })]
    Datalist {
        /// The datalist file.
        file: PathBuf,
        /// The item, e.g. `training[3]`, or the list (`training`).
        item: String,
        /// The key of the item at fault (may be empty).
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A sample did not come out of its pipeline as the network needs it.
    #[error("sample {sample}: {message}")]
    Data {
        /// The sample (its datalist item and file name).
        sample: String,
        /// What is wrong.
        message: String,
    },
    /// A transform failed; `context` names the pipeline (`train.pre_transforms`, …).
    #[error("{context}: {source}")]
    Transform {
        /// Which pipeline.
        context: String,
        /// The transform error (it names the sample, position and transform).
        #[source]
        source: aiaa_transforms::TransformError,
    },
    /// The networks crate failed; `context` says at what (`net_config`, checkpoint, …).
    #[error("{context}: {source}")]
    Nets {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: aiaa_nets::NetsError,
    },
    /// A checkpoint is missing or unusable for what was asked.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The request cannot be carried out here (e.g. fp16 export without CUDA).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A file-system operation failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// libtorch reported an error.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    /// A bug or an unexpected local failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl TrainError {
    /// An [`TrainError::Io`] error for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.into(),
            source,
        }
    }

    /// Wraps a [`aiaa_nets::NetsError`] with what was being done.
    pub fn nets(context: impl Into<String>, source: aiaa_nets::NetsError) -> Self {
        TrainError::Nets {
            context: context.into(),
            source,
        }
    }

    /// Wraps a [`aiaa_transforms::TransformError`] with the pipeline's name.
    pub fn transform(context: impl Into<String>, source: aiaa_transforms::TransformError) -> Self {
        TrainError::Transform {
            context: context.into(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

/// The datalist reader's errors as training reports them: a file that cannot be read as
/// [`TrainError::Io`], anything else as [`TrainError::Datalist`] (`(file)` for the whole
/// file).
impl From<aiaa_datalist::DatalistError> for TrainError {
    fn from(e: aiaa_datalist::DatalistError) -> Self {
        match e {
            aiaa_datalist::DatalistError::Read { file, source } => TrainError::io(file, source),
            aiaa_datalist::DatalistError::Invalid {
                file,
                at,
                field,
                message,
            } => TrainError::Datalist {
                file,
                item: if at.is_empty() { "(file)".into() } else { at },
                key: field,
                message,
            },
        }
    }
}
