//! Streaming a payload into the object store whole or not at all: bytes go into a multipart
//! upload and through SHA-256 as they arrive; the caller checks size and hash (against a
//! manifest, a declared header, a limit) and then completes the upload, or aborts it so that
//! nothing appears. Memory stays bounded by a few upload parts (5 MiB each).

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutResult, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::store::Store;

/// Upload parts in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// An upload in progress.
pub struct HashingUpload {
    upload: WriteMultipart,
    hasher: Sha256,
    size: u64,
}

impl HashingUpload {
    /// Starts an upload to `location`; nothing is visible there until [`Self::complete`].
    pub async fn start(store: &Store, location: &Path) -> Result<Self, object_store::Error> {
        let upload = store.put_multipart(location).await?;
        Ok(Self {
            upload: WriteMultipart::new(upload),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Appends bytes, waiting while too many parts are in flight.
    pub async fn write(&mut self, data: Bytes) -> Result<(), object_store::Error> {
        self.hasher.update(&data);
        self.size += data.len() as u64;
        self.upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        self.upload.put(data);
        Ok(())
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Lower-case hex SHA-256 of the bytes written so far.
    pub fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    /// Publishes the object.
    pub async fn complete(self) -> Result<PutResult, object_store::Error> {
        self.upload.finish().await
    }

    /// Drops the upload; nothing appears. Failures are logged, not returned: the caller is
    /// already on an error path.
    pub async fn abort(self) {
        if let Err(e) = self.upload.abort().await {
            tracing::warn!(error = %e, "aborting an upload failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn completes_or_leaves_nothing() {
        let store = crate::store::open("memory://upload-test").unwrap();
        let path = Path::from("a");
        let mut up = HashingUpload::start(&store, &path).await.unwrap();
        up.write(Bytes::from_static(b"hello ")).await.unwrap();
        up.write(Bytes::from_static(b"world")).await.unwrap();
        assert_eq!(up.size(), 11);
        assert_eq!(up.sha256(), hex::encode(Sha256::digest(b"hello world")));
        up.abort().await;
        assert!(
            store.head(&path).await.is_err(),
            "an aborted upload must leave nothing"
        );
        let mut up = HashingUpload::start(&store, &path).await.unwrap();
        up.write(Bytes::from_static(b"x")).await.unwrap();
        up.complete().await.unwrap();
        assert_eq!(
            store.get(&path).await.unwrap().bytes().await.unwrap().as_ref(),
            b"x"
        );
    }
}
