//! Streamed data objects: a write that hashes and size-checks the bytes as they arrive and
//! publishes the object whole or not at all (a multipart upload completed only when the
//! stream ended cleanly, aborted otherwise), and a read that streams the object in
//! [`aiaa_proto::CHUNK_SIZE`] pieces. Memory stays bounded by a few upload parts.

use aiaa_runtime::store::Store;
use aiaa_runtime::upload::HashingUpload;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, ObjectStore, ObjectStoreExt};

use crate::disk::{CHECK_EVERY, Disk};
use crate::error::{DatastoreError, Result};
use crate::format::SNIFF_BYTES;

/// A size limit enforced while streaming.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    /// Largest accepted payload in bytes.
    pub bytes: u64,
    /// The flag that sets it, named in the error.
    pub flag: &'static str,
}

/// What the client declared about a payload; checked before it is published.
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// The declared size (0: unchecked).
    pub size: u64,
    /// The declared lower-case hex SHA-256 (empty: unchecked).
    pub sha256: String,
}

impl Expect {
    /// Checks a finished stream against the declaration; names the payload and the difference.
    fn check(&self, what: &str, size: u64, sha256: &str) -> Result<()> {
        if self.size != 0 && self.size != size {
            return Err(DatastoreError::InvalidArgument(format!(
                "{what}: {size} bytes arrived but the header declares {}; nothing was stored",
                self.size
            )));
        }
        if !self.sha256.is_empty() && !self.sha256.eq_ignore_ascii_case(sha256) {
            return Err(DatastoreError::InvalidArgument(format!(
                "{what}: the bytes hash to sha256 {sha256} but the header declares {}; nothing was stored",
                self.sha256
            )));
        }
        Ok(())
    }
}

/// What a completed write stored.
#[derive(Debug, Clone)]
pub struct Written {
    /// Bytes written.
    pub size: u64,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    /// The first [`SNIFF_BYTES`] bytes, for format detection.
    pub leading: Vec<u8>,
    /// The stored object's entity tag, when the store reports one.
    pub e_tag: Option<String>,
}

/// Parses an object path built from validated parts.
pub fn path(text: &str) -> Result<Path> {
    Path::parse(text).map_err(|e| DatastoreError::Internal(format!("object path {text:?}: {e}")))
}

/// Streams `body` into `location`, publishing it only if the stream ends cleanly, is not
/// empty, stays within `limit` and leaves the disk its floor (`disk`, checked before and
/// while the bytes arrive). `what` names the payload in errors (`image "a.nii"`).
pub async fn write<S>(
    store: &Store,
    location: &Path,
    mut body: S,
    limit: Limit,
    disk: &Disk,
    expect: &Expect,
    what: &str,
) -> Result<Written>
where
    S: Stream<Item = Result<Bytes>> + Send + Unpin,
{
    disk.check(what, expect.size)?;
    let mut checked_at = 0;
    let mut upload = HashingUpload::start(store, location)
        .await
        .map_err(|e| DatastoreError::store(format!("start the upload of {what}"), e))?;
    let mut leading = Vec::new();
    let received = async {
        while let Some(piece) = body.next().await {
            let piece = piece?;
            if upload.size() + piece.len() as u64 > limit.bytes {
                return Err(DatastoreError::TooLarge {
                    what: what.to_string(),
                    limit: limit.bytes,
                    flag: limit.flag,
                });
            }
            if upload.size() + piece.len() as u64 >= checked_at + CHECK_EVERY {
                disk.check(what, piece.len() as u64)?;
                checked_at = upload.size();
            }
            if leading.len() < SNIFF_BYTES {
                let take = (SNIFF_BYTES - leading.len()).min(piece.len());
                leading.extend_from_slice(&piece[..take]);
            }
            upload
                .write(piece)
                .await
                .map_err(|e| DatastoreError::store(format!("upload {what}"), e))?;
        }
        if upload.size() == 0 {
            return Err(DatastoreError::InvalidArgument(format!(
                "{what} is empty: no bytes followed the header"
            )));
        }
        let sha256 = upload.sha256();
        expect.check(what, upload.size(), &sha256)?;
        Ok(sha256)
    }
    .await;
    match received {
        Ok(sha256) => {
            let size = upload.size();
            let done = upload
                .complete()
                .await
                .map_err(|e| DatastoreError::store(format!("complete the upload of {what}"), e))?;
            Ok(Written {
                size,
                sha256,
                leading,
                e_tag: done.e_tag,
            })
        }
        Err(err) => {
            upload.abort().await;
            Err(err)
        }
    }
}

/// Opens `location` for streaming, if its entity tag still is `e_tag` (when given). `Ok(None)`
/// when the object is missing or was replaced since `e_tag` was recorded.
pub async fn open(
    store: &Store,
    location: &Path,
    e_tag: Option<String>,
    what: &str,
) -> Result<Option<BoxStream<'static, Result<Bytes>>>> {
    let options = GetOptions {
        if_match: e_tag,
        ..Default::default()
    };
    match store.get_opts(location, options).await {
        Ok(found) => {
            let what = what.to_string();
            let bytes = found
                .into_stream()
                .map_err(move |e| DatastoreError::store(format!("read {what}"), e));
            Ok(Some(
                aiaa_runtime::chunks::rechunk(bytes, aiaa_proto::CHUNK_SIZE).boxed(),
            ))
        }
        Err(object_store::Error::NotFound { .. } | object_store::Error::Precondition { .. }) => Ok(None),
        Err(e) => Err(DatastoreError::store(format!("read {what}"), e)),
    }
}

/// Deletes `location`; `Ok(false)` when it did not exist (some stores do not tell on delete,
/// so the object is looked up first).
pub async fn delete(store: &Store, location: &Path, what: &str) -> Result<bool> {
    match store.head(location).await {
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(DatastoreError::store(format!("look up {what}"), e)),
    }
    match store.delete(location).await {
        Ok(()) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(DatastoreError::store(format!("delete {what}"), e)),
    }
}

/// Reads a small JSON object; `Ok(None)` when missing.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    store: &Store,
    location: &Path,
    what: &str,
) -> Result<Option<T>> {
    let found = match store.get(location).await {
        Ok(found) => found,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(DatastoreError::store(format!("read {what}"), e)),
    };
    let bytes = found
        .bytes()
        .await
        .map_err(|e| DatastoreError::store(format!("read {what}"), e))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| DatastoreError::Internal(format!("{what}: stored record {location} is not valid: {e}")))
}

/// Writes a small JSON object (atomically replacing any previous one).
pub async fn write_json<T: serde::Serialize>(
    store: &Store,
    location: &Path,
    value: &T,
    what: &str,
) -> Result<()> {
    let bytes =
        serde_json::to_vec_pretty(value).map_err(|e| DatastoreError::Internal(format!("{what}: {e}")))?;
    store
        .put(location, bytes.into())
        .await
        .map_err(|e| DatastoreError::store(format!("write {what}"), e))?;
    Ok(())
}
