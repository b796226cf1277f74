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

impl RuntimeError {
    /// A config value is unusable: `flag` names the flag and its variable
    /// (`"--max-jobs (AIAA_MAX_JOBS)"`), `reason` says why.
    pub fn config(flag: impl Into<String>, reason: impl Into<String>) -> Self {
        RuntimeError::Config {
            flag: flag.into(),
            reason: reason.into(),
        }
    }
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

/// The gRPC metadata key that says which limit a RESOURCE_EXHAUSTED hit ([`Exhausted`]).
pub const REASON_KEY: &str = "aiaa-reason";

/// Why a service refused a call for want of a resource: the one vocabulary every service
/// signals on RESOURCE_EXHAUSTED (metadata [`REASON_KEY`]) and the gateway reads, so the
/// gateway's answer depends on the reason, not on which service gave it. RESOURCE_EXHAUSTED
/// without a reason is a size limit (the gateway's 413).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    /// Full right now (a queue, memory held by calls in flight): retry soon (503).
    Busy,
    /// The caller's own quota (429; waiting does not help).
    Quota,
    /// The store's disk is at its floor (507).
    InsufficientStorage,
}

impl Exhausted {
    /// The reason as it travels in [`REASON_KEY`].
    pub fn as_str(self) -> &'static str {
        match self {
            Exhausted::Busy => "busy",
            Exhausted::Quota => "quota",
            Exhausted::InsufficientStorage => "insufficient-storage",
        }
    }

    /// A RESOURCE_EXHAUSTED status with `message`, carrying this reason.
    pub fn status(self, message: impl Into<String>) -> Status {
        let mut status = Status::resource_exhausted(message);
        status.metadata_mut().insert(
            REASON_KEY,
            tonic::metadata::MetadataValue::from_static(self.as_str()),
        );
        status
    }

    /// The reason a RESOURCE_EXHAUSTED status carries, if any (`None` for other codes).
    pub fn of(status: &Status) -> Option<Exhausted> {
        if status.code() != tonic::Code::ResourceExhausted {
            return None;
        }
        match status.metadata().get(REASON_KEY)?.to_str().ok()? {
            "busy" => Some(Exhausted::Busy),
            "quota" => Some(Exhausted::Quota),
            "insufficient-storage" => Some(Exhausted::InsufficientStorage),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhausted_reasons_travel_in_the_status() {
        for reason in [Exhausted::Busy, Exhausted::Quota, Exhausted::InsufficientStorage] {
            let status = reason.status("limit");
            assert_eq!(status.code(), tonic::Code::ResourceExhausted);
            assert_eq!(Exhausted::of(&status), Some(reason));
        }
        assert_eq!(Exhausted::of(&Status::resource_exhausted("too big")), None);
        assert_eq!(Exhausted::of(&Status::unavailable("down")), None);
    }
}
