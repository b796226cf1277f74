//! The inference service's error kind, mapped once to `tonic::Status`.

use tonic::Status;

/// What can go wrong in the engine pool.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// The request is malformed (params, points, image); the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// An engine or model config is wrong; the message names the file and the key.
    #[error("{0}")]
    Config(String),
    /// No such model, session or image.
    #[error("{0}")]
    NotFound(String),
    /// The request queue is full: retry later.
    #[error(
        "the inference queue is full ({depth} requests admitted, --inference-queue-depth); retry shortly"
    )]
    Busy {
        /// The configured depth.
        depth: usize,
    },
    /// The memory budget is held by requests in flight: retry later.
    #[error(
        "the inference memory budget is spent: this request needs about {}, and {} of {} are held by requests in flight (--inference-memory-budget, AIAA_INFERENCE_MEMORY_BUDGET); retry shortly",
        crate::budget::mib(*needed),
        crate::budget::mib(*in_use),
        crate::budget::mib(*budget)
    )]
    MemoryBusy {
        /// Bytes the request needs in all.
        needed: u64,
        /// Bytes held by other requests.
        in_use: u64,
        /// The whole budget.
        budget: u64,
    },
    /// A backend (datastore, registry) or the device worker is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// A size limit was exceeded; the message names it.
    #[error("{0}")]
    TooLarge(String),
    /// The model failed to load or run (libtorch's message).
    #[error("model {model:?}: {reason}")]
    Model {
        /// The model's name.
        model: String,
        /// libtorch's message.
        reason: String,
    },
    /// A transform failed (pre- or post-processing).
    #[error("{0}")]
    Transform(#[from] aiaa_transforms::TransformError),
    /// Reading or writing an image failed.
    #[error("{0}")]
    Imaging(#[from] aiaa_imaging::ImagingError),
    /// Anything else.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The engines' errors, mapped once: each kind to the same kind here.
impl From<aiaa_engines::EngineError> for InferenceError {
    fn from(e: aiaa_engines::EngineError) -> Self {
        use aiaa_engines::EngineError as E;
        match e {
            E::Invalid(m) => InferenceError::Invalid(m),
            E::Config(m) => InferenceError::Config(m),
            E::NotFound(m) => InferenceError::NotFound(m),
            E::Unavailable(m) => InferenceError::Unavailable(m),
            E::Model { model, reason } => InferenceError::Model { model, reason },
            E::Transform(t) => InferenceError::Transform(t),
            E::Imaging(i) => InferenceError::Imaging(i),
            E::Internal(m) => InferenceError::Internal(m),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = InferenceError> = std::result::Result<T, E>;

impl From<InferenceError> for Status {
    fn from(e: InferenceError) -> Self {
        let msg = e.to_string();
        match e {
            InferenceError::Invalid(_) | InferenceError::Imaging(_) | InferenceError::Transform(_) => {
                Status::invalid_argument(msg)
            }
            InferenceError::Config(_) => Status::failed_precondition(msg),
            InferenceError::NotFound(_) => Status::not_found(msg),
            InferenceError::Busy { .. } | InferenceError::MemoryBusy { .. } => {
                aiaa_runtime::error::Exhausted::Busy.status(msg)
            }
            InferenceError::Unavailable(_) => Status::unavailable(msg),
            // Not RESOURCE_EXHAUSTED: callers read that as "the queue is full, retry".
            InferenceError::TooLarge(_) => Status::out_of_range(msg),
            InferenceError::Model { .. } | InferenceError::Internal(_) => Status::internal(msg),
        }
    }
}

impl From<aiaa_runtime::RuntimeError> for InferenceError {
    fn from(e: aiaa_runtime::RuntimeError) -> Self {
        match e {
            aiaa_runtime::RuntimeError::MessageTooLarge(_) => InferenceError::TooLarge(e.to_string()),
            other => InferenceError::Config(other.to_string()),
        }
    }
}
