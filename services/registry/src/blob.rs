//! Writing one blob while verifying it: bytes stream into a multipart upload at the blob's
//! content address and are hashed on the way; the upload completes only when the size and
//! SHA-256 match the manifest, otherwise it is aborted and nothing appears. Memory stays
//! bounded by the upload's part buffer times its concurrency.

use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::layout::{StoredFile, blob_path};
use aiaa_runtime::store::Store;

/// Parts uploaded at once per blob (each part buffers 5 MiB).
const UPLOAD_CONCURRENCY: usize = 4;

/// Why a blob was refused.
#[derive(Debug)]
pub enum Mismatch {
    /// More or fewer bytes than declared.
    Size {
        /// Declared.
        expected: u64,
        /// Received (so far, for "too many").
        actual: u64,
    },
    /// The bytes hash differently.
    Sha256 {
        /// Declared.
        expected: String,
        /// Computed.
        actual: String,
    },
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mismatch::Size { expected, actual } if actual > expected => {
                write!(f, "more bytes than the declared size {expected}")
            }
            Mismatch::Size { expected, actual } => {
                write!(f, "{actual} bytes received, the manifest declares {expected}")
            }
            Mismatch::Sha256 { expected, actual } => {
                write!(
                    f,
                    "sha256 of the bytes is {actual}, the manifest declares {expected}"
                )
            }
        }
    }
}

/// A blob being written.
pub struct BlobWriter {
    file: StoredFile,
    hasher: Sha256,
    written: u64,
    upload: WriteMultipart,
}

impl BlobWriter {
    /// Starts writing the blob for `file`.
    pub async fn create(store: &Store, file: &StoredFile) -> Result<Self> {
        let upload = store.put_multipart(&blob_path(&file.sha256)).await?;
        Ok(Self {
            file: file.clone(),
            hasher: Sha256::new(),
            written: 0,
            upload: WriteMultipart::new(upload),
        })
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.file.size - self.written
    }

    /// Appends bytes; refuses more than the declared size.
    pub async fn write(&mut self, data: &[u8]) -> Result<std::result::Result<(), Mismatch>> {
        let after = self.written + data.len() as u64;
        if after > self.file.size {
            return Ok(Err(Mismatch::Size {
                expected: self.file.size,
                actual: after,
            }));
        }
        self.hasher.update(data);
        self.written = after;
        self.upload.wait_for_capacity(UPLOAD_CONCURRENCY).await?;
        self.upload.write(data);
        Ok(Ok(()))
    }

    /// Completes the blob if it matches, otherwise aborts it.
    pub async fn finish(self) -> Result<std::result::Result<(), Mismatch>> {
        let mismatch = if self.written != self.file.size {
            Some(Mismatch::Size {
                expected: self.file.size,
                actual: self.written,
            })
        } else {
            let actual = hex::encode(self.hasher.clone().finalize());
            (actual != self.file.sha256).then(|| Mismatch::Sha256 {
                expected: self.file.sha256.clone(),
                actual,
            })
        };
        match mismatch {
            Some(m) => {
                self.upload.abort().await?;
                Ok(Err(m))
            }
            None => {
                self.upload.finish().await?;
                Ok(Ok(()))
            }
        }
    }

    /// Drops the upload; nothing becomes visible.
    pub async fn abort(self) {
        if let Err(e) = self.upload.abort().await {
            tracing::warn!(path = %self.file.path, error = %e, "aborting a blob upload failed");
        }
    }
}
