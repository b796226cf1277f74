//! The runtime's error kind, mapped once to `tonic::Status`.

use tonic::Status;

/// What can go wrong in the shared runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A config value is unusable; names the flag.
    #[error("invalid configuration: {flag}: {reason}")]
    Config {
        /// The flag (or env var) at fault.
        flag: String,
        /// Why.
        reason: String,
    },
    /// An object-store URL could not be opened.
    #[error("object store {url:?}: {reason}")]
    Store {
        /// The URL as given (credentials are never part of it).
        url: String,
        /// Why.
        reason: String,
    },
    /// A name or id is not acceptable.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// What kind of name ("model name", "item id", ...).
        what: &'static str,
        /// The value (truncated when long).
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A gRPC message exceeded the server's size limit.
    #[error(
        "{0}; the limit is set by --max-message-bytes (AIAA_MAX_MESSAGE_BYTES); send payloads as chunks of at most 1 MiB"
    )]
    MessageTooLarge(String),
    /// Telemetry could not be set up.
    #[error("telemetry: {0}")]
    Telemetry(String),
    /// A socket could not be bound or served.
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    /// A remote call failed.
    #[error("connect to {addr}: {reason}")]
    Connect {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
}

impl From<RuntimeError> for Status {
    fn from(err: RuntimeError) -> Self {
        match &err {
            RuntimeError::InvalidName { .. } | RuntimeError::Config { .. } => {
                Status::invalid_argument(err.to_string())
            }
            RuntimeError::Store { .. } => Status::failed_precondition(err.to_string()),
            RuntimeError::Connect { .. } => Status::unavailable(err.to_string()),
            RuntimeError::MessageTooLarge(_) => Status::resource_exhausted(err.to_string()),
            RuntimeError::Telemetry(_) | RuntimeError::Io(_) => Status::internal(err.to_string()),
        }
    }
}

/// Recognises tonic's "decoded message length too large" error on a request stream, so that
/// services answer RESOURCE_EXHAUSTED naming the limit instead of a generic stream failure.
pub fn oversized_message(status: &Status) -> Option<RuntimeError> {
    (status.code() == tonic::Code::OutOfRange && status.message().contains("too large"))
        .then(|| RuntimeError::MessageTooLarge(status.message().to_string()))
}
