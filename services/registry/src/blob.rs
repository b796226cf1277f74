//! Writing one blob while verifying it: bytes stream into an upload at the blob's content
//! address ([`HashingUpload`]); the upload completes only when the size and SHA-256 match
//! the manifest, otherwise it is aborted and nothing appears.

use aiaa_runtime::store::Store;
use aiaa_runtime::upload::HashingUpload;
use bytes::Bytes;

use crate::error::Result;
use crate::layout::{StoredFile, blob_path};

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
    upload: HashingUpload,
}

impl BlobWriter {
    /// Starts writing the blob for `file`.
    pub async fn create(store: &Store, file: &StoredFile) -> Result<Self> {
        let upload = HashingUpload::start(store, &blob_path(&file.sha256)).await?;
        Ok(Self {
            file: file.clone(),
            upload,
        })
    }

    /// Bytes still expected.
    pub fn remaining(&self) -> u64 {
        self.file.size - self.upload.size()
    }

    /// Appends bytes; refuses more than the declared size.
    pub async fn write(&mut self, data: Bytes) -> Result<std::result::Result<(), Mismatch>> {
        let after = self.upload.size() + data.len() as u64;
        if after > self.file.size {
            return Ok(Err(Mismatch::Size {
                expected: self.file.size,
                actual: after,
            }));
        }
        self.upload.write(data).await?;
        Ok(Ok(()))
    }

    /// Completes the blob if it matches, otherwise aborts it.
    pub async fn finish(self) -> Result<std::result::Result<(), Mismatch>> {
        let written = self.upload.size();
        let mismatch = if written != self.file.size {
            Some(Mismatch::Size {
                expected: self.file.size,
                actual: written,
            })
        } else {
            let actual = self.upload.sha256();
            (actual != self.file.sha256).then(|| Mismatch::Sha256 {
                expected: self.file.sha256.clone(),
                actual,
            })
        };
        match mismatch {
            Some(m) => {
                self.upload.abort().await;
                Ok(Err(m))
            }
            None => {
                self.upload.complete().await?;
                Ok(Ok(()))
            }
        }
    }

    /// Drops the upload; nothing becomes visible.
    pub async fn abort(self) {
        self.upload.abort().await;
    }
}
