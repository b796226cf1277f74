//! The datastore's one error type, [`DatastoreError`], mapped once to `tonic::Status`.
//!
//! Every message names what it is about (the item, the field, the limit), so a client can
//! act on it without reading server logs.

use aiaa_runtime::RuntimeError;
use tonic::Status;

/// What can go wrong in the datastore.
#[derive(Debug, thiserror::Error)]
pub enum DatastoreError {
    /// A request field is missing or malformed (INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidArgument(String),
    /// An item, datalist, session or job does not exist (NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but the current state forbids it (FAILED_PRECONDITION).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A payload exceeds a configured limit (RESOURCE_EXHAUSTED).
    #[error("{what} exceeds the limit of {limit} bytes ({flag})")]
    TooLarge {
        /// What was too large, e.g. `image "train/im1.nii.gz"`.
        what: String,
        /// The limit in bytes.
        limit: u64,
        /// The flag that sets the limit.
        flag: &'static str,
    },
    /// The store's disk is nearly full (RESOURCE_EXHAUSTED with `aiaa-reason:
    /// insufficient-storage`: the gateway's 507).
    #[error("{0}")]
    InsufficientStorage(String),
    /// A client's session quota is spent (RESOURCE_EXHAUSTED with `aiaa-reason: quota`: the
    /// gateway's 429).
    #[error("{0}")]
    Quota(String),
    /// The client's stream ended with an error before it was complete (CANCELLED).
    #[error("{0}")]
    Interrupted(String),
    /// The object store failed (UNAVAILABLE, or INTERNAL when it is not transient).
    #[error("object store: {context}: {source}")]
    Store {
        /// What the datastore was doing.
        context: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A name or config problem reported by the shared runtime (mapped as the runtime maps it).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A bug or an unexpected local failure (INTERNAL).
    #[error("internal error: {0}")]
    Internal(String),
}

impl DatastoreError {
    /// Wraps an object-store error with what the datastore was doing.
    pub fn store(context: impl Into<String>, source: object_store::Error) -> Self {
        Self::Store {
            context: context.into(),
            source,
        }
    }
}

/// A datalist that does not read (the message names it, the entry and the field) is the
/// client's to fix.
impl From<aiaa_datalist::DatalistError> for DatastoreError {
    fn from(e: aiaa_datalist::DatalistError) -> Self {
        DatastoreError::InvalidArgument(e.to_string())
    }
}

pub use aiaa_runtime::error::{Exhausted, REASON_KEY};

/// Shorthand for results in this crate.
pub type Result<T, E = DatastoreError> = std::result::Result<T, E>;

impl From<DatastoreError> for Status {
    fn from(err: DatastoreError) -> Self {
        let msg = err.to_string();
        match err {
            DatastoreError::InvalidArgument(_) => Status::invalid_argument(msg),
            DatastoreError::NotFound(_) => Status::not_found(msg),
            DatastoreError::FailedPrecondition(_) => Status::failed_precondition(msg),
            DatastoreError::TooLarge { .. } => Status::resource_exhausted(msg),
            DatastoreError::InsufficientStorage(_) => Exhausted::InsufficientStorage.status(msg),
            DatastoreError::Quota(_) => Exhausted::Quota.status(msg),
            DatastoreError::Interrupted(_) => Status::cancelled(msg),
            DatastoreError::Store { source, .. } => {
                Status::new(aiaa_runtime::store::status_code(&source), msg)
            }
            DatastoreError::Runtime(e) => Status::from(e),
            DatastoreError::Internal(_) => Status::internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes() {
        let cases = [
            (DatastoreError::InvalidArgument("x".into()), Code::InvalidArgument),
            (DatastoreError::NotFound("x".into()), Code::NotFound),
            (
                DatastoreError::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (
                DatastoreError::TooLarge {
                    what: "image \"a\"".into(),
                    limit: 5,
                    flag: "--max-item-bytes",
                },
                Code::ResourceExhausted,
            ),
            (DatastoreError::Internal("x".into()), Code::Internal),
            (
                DatastoreError::store(
                    "get",
                    object_store::Error::NotFound {
                        path: "p".into(),
                        source: "s".into(),
                    },
                ),
                Code::NotFound,
            ),
            (
                DatastoreError::store(
                    "put",
                    object_store::Error::Generic {
                        store: "s",
                        source: "boom".into(),
                    },
                ),
                Code::Unavailable,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
        for (err, reason) in [
            (DatastoreError::Quota("q".into()), "quota"),
            (
                DatastoreError::InsufficientStorage("d".into()),
                "insufficient-storage",
            ),
        ] {
            let s = Status::from(err);
            assert_eq!(s.code(), Code::ResourceExhausted);
            assert_eq!(s.metadata().get(REASON_KEY).unwrap(), reason);
        }
        let s = Status::from(DatastoreError::TooLarge {
            what: "image \"a\"".into(),
            limit: 5,
            flag: "--max-item-bytes",
        });
        assert!(s.message().contains("limit of 5 bytes") && s.message().contains("--max-item-bytes"));
    }
}
