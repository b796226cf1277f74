//! The crate's one error type.

/// What can go wrong loading, freezing or running a TorchScript module. Each variant holds
/// libtorch's message without its C++ backtrace.
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    /// The file is not a TorchScript module libtorch can load (or cannot be read).
    #[error("loading {path}: {reason}")]
    Load {
        /// The file.
        path: String,
        /// libtorch's reason.
        reason: String,
    },
    /// `torch::jit::freeze` failed.
    #[error("freezing: {0}")]
    Freeze(String),
    /// `torch::jit::optimize_for_inference` failed.
    #[error("optimizing for inference: {0}")]
    Optimize(String),
    /// The forward pass failed.
    #[error("{0}")]
    Forward(String),
    /// Reading the graph failed.
    #[error("reading the graph: {0}")]
    Graph(String),
    /// Data that does not fit the tensor shape asked for (or a shape libtorch refuses).
    #[error("making a tensor: {0}")]
    Shape(String),
    /// A device this crate does not run on (only the CPU and CUDA devices).
    #[error("unsupported device {0}")]
    Device(String),
}

/// The crate's result type.
pub type Result<T, E = JitError> = std::result::Result<T, E>;
