//! The registry's error kind, mapped once to `tonic::Status`.

use tonic::Status;

/// What can go wrong in the catalogue.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// A model, version or file does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The version exists already (versions are immutable).
    #[error("{model} version {version} already exists; versions are immutable, push a new one")]
    AlreadyExists {
        /// org/team/name.
        model: String,
        /// The version.
        version: String,
    },
    /// Bytes sent in a push differ from what its manifest declares.
    #[error("file {path:?}: {reason}")]
    PushMismatch {
        /// The file's path in the manifest.
        path: String,
        /// What differs.
        reason: String,
    },
    /// A stored or upstream file does not match its manifest: corrupted data.
    #[error(
        "checksum mismatch for {path:?} from {source_name}: manifest says sha256 {expected}, the bytes hash to {actual}"
    )]
    Corrupted {
        /// The file's path in the manifest.
        path: String,
        /// Where it came from (the upstream URL).
        source_name: String,
        /// The manifest's sha256.
        expected: String,
        /// The bytes' sha256.
        actual: String,
    },
    /// An upstream catalogue cannot be used.
    #[error("upstream {url}: {reason}")]
    Upstream {
        /// Its URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A limit was exceeded; the message names it.
    #[error("{0}")]
    TooLarge(String),
    /// The client went away mid-stream.
    #[error("cancelled: {0}")]
    Cancelled(String),
    /// The object store failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// A stored manifest cannot be read.
    #[error("stored manifest {path}: {reason}")]
    BadManifest {
        /// Its object path.
        path: String,
        /// Why.
        reason: String,
    },
}

impl From<aiaa_runtime::RuntimeError> for RegistryError {
    fn from(e: aiaa_runtime::RuntimeError) -> Self {
        match e {
            aiaa_runtime::RuntimeError::MessageTooLarge(_) => RegistryError::TooLarge(e.to_string()),
            other => RegistryError::Invalid(other.to_string()),
        }
    }
}

impl From<RegistryError> for Status {
    fn from(err: RegistryError) -> Self {
        let msg = err.to_string();
        match err {
            RegistryError::Invalid(_) | RegistryError::PushMismatch { .. } => Status::invalid_argument(msg),
            RegistryError::NotFound(_) => Status::not_found(msg),
            RegistryError::AlreadyExists { .. } => Status::already_exists(msg),
            RegistryError::Corrupted { .. } => Status::data_loss(msg),
            RegistryError::Upstream { .. } => Status::failed_precondition(msg),
            RegistryError::TooLarge(_) => Status::resource_exhausted(msg),
            RegistryError::Cancelled(_) => Status::cancelled(msg),
            RegistryError::Store(e) => Status::new(aiaa_runtime::store::status_code(&e), msg),
            RegistryError::BadManifest { .. } => Status::internal(msg),
        }
    }
}

/// Result with [`RegistryError`].
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
