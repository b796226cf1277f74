//! The engines' single error type, in plain Rust terms: a service maps it once to its own
//! (the inference service's `InferenceError`, then gRPC codes); a tool prints it.

/// What can go wrong while configuring, loading or running an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request is malformed (params, points, image), or a path is outside the model
    /// roots; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// An engine or model config is wrong; the message names the file and the key.
    #[error("{0}")]
    Config(String),
    /// The model was unloaded while a request was on its way to the device.
    #[error("{0}")]
    NotFound(String),
    /// The device worker stopped.
    #[error("{0}")]
    Unavailable(String),
    /// The model failed to run (libtorch's message).
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

/// The crate's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
