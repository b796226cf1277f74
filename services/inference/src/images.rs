//! Where a request's image comes from: sent inline (decoded here), a datastore image, or a
//! datastore session whose decoded volume is cached (least recently used first out, bounded
//! by bytes), so a viewer's repeated clicks on one session decode it once.

use std::sync::{Arc, Mutex};

use aiaa_imaging::{ReadOptions, Volume};
use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::datastore::v1::{GetRequest, ItemKind, SessionRef, get_response};
use aiaa_runtime::client::AiaaChannel;
use futures::StreamExt;
use lru::LruCache;

use crate::error::{InferenceError, Result};

/// Decoded session volumes by (session id, image sha256), bounded by bytes.
struct Cache {
    entries: LruCache<(String, String), Arc<Volume>>,
    bytes: u64,
    limit: u64,
}

impl Cache {
    fn get(&mut self, key: &(String, String)) -> Option<Arc<Volume>> {
        let hit = self.entries.get(key).cloned();
        metrics::counter!("aiaa_inference_session_cache_total", "result" => if hit.is_some() { "hit" } else { "miss" })
            .increment(1);
        hit
    }

    fn put(&mut self, key: (String, String), vol: Arc<Volume>) {
        let size = volume_bytes(&vol);
        if size > self.limit {
            return;
        }
        if let Some(old) = self.entries.put(key, vol) {
            self.bytes -= volume_bytes(&old);
        }
        self.bytes += size;
        while self.bytes > self.limit {
            match self.entries.pop_lru() {
                Some((_, v)) => self.bytes -= volume_bytes(&v),
                None => break,
            }
        }
        metrics::gauge!("aiaa_inference_session_cache_bytes").set(self.bytes as f64);
    }
}

fn volume_bytes(v: &Volume) -> u64 {
    (v.voxel_count() * v.channels * v.voxel_type().size()) as u64
}

/// The image sources of the service.
#[derive(Clone)]
pub struct Images {
    datastore: DatastoreServiceClient<AiaaChannel>,
    cache: Arc<Mutex<Cache>>,
    max_bytes: u64,
}

/// The file name that gives a datastore format's extension.
fn name_for(format: &str) -> &'static str {
    match format {
        "nifti" => "image.nii",
        "mha" => "image.mha",
        "png" => "image.png",
        "nrrd" => "image.nrrd",
        _ => "image.nii.gz",
    }
}

impl Images {
    /// Sources over `datastore`; at most `cache_bytes` of decoded sessions, images up to
    /// `max_bytes`.
    pub fn new(datastore: DatastoreServiceClient<AiaaChannel>, cache_bytes: u64, max_bytes: u64) -> Images {
        Images {
            datastore,
            cache: Arc::new(Mutex::new(Cache {
                entries: LruCache::unbounded(),
                bytes: 0,
                limit: cache_bytes,
            })),
            max_bytes,
        }
    }

    /// The largest image accepted.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Decodes an inline image (blocking work on a blocking thread).
    pub async fn decode(name: String, bytes: Vec<u8>) -> Result<Volume> {
        tokio::task::spawn_blocking(move || {
            aiaa_imaging::io::decode_bytes(&name, &bytes, &ReadOptions::default())
                .map_err(|e| InferenceError::Invalid(format!("the image {name:?} could not be read: {e}")))
        })
        .await
        .map_err(|e| InferenceError::Internal(format!("decoding task: {e}")))?
    }

    /// A session's volume: checked against the datastore (an expired session is NOT_FOUND
    /// even when cached), decoded once.
    pub async fn session(&self, id: &str) -> Result<Arc<Volume>> {
        let mut ds = self.datastore.clone();
        let session = ds
            .get_session(SessionRef { id: id.to_string() })
            .await
            .map_err(|s| datastore_error(&format!("session {id:?}"), &s))?
            .into_inner();
        let item = session.image.unwrap_or_default();
        let key = (id.to_string(), item.sha256.clone());
        if let Some(v) = self.cache.lock().ok().and_then(|mut c| c.get(&key)) {
            return Ok(v);
        }
        let stream = ds
            .get_session_image(SessionRef { id: id.to_string() })
            .await
            .map_err(|s| datastore_error(&format!("session {id:?}"), &s))?
            .into_inner();
        let (format, bytes) = self.collect(stream, &format!("session {id:?}")).await?;
        let vol = Arc::new(Self::decode(name_for(&format).to_string(), bytes).await?);
        if let Ok(mut c) = self.cache.lock() {
            c.put(key, vol.clone());
        }
        Ok(vol)
    }

    /// A datastore image.
    pub async fn image(&self, id: &str) -> Result<Volume> {
        let mut ds = self.datastore.clone();
        let stream = ds
            .get(GetRequest {
                kind: ItemKind::Image as i32,
                id: id.to_string(),
            })
            .await
            .map_err(|s| datastore_error(&format!("image {id:?}"), &s))?
            .into_inner();
        let (format, bytes) = self.collect(stream, &format!("image {id:?}")).await?;
        let name = if aiaa_imaging::io::format_from_name(std::path::Path::new(id)).is_some() {
            id.to_string()
        } else {
            name_for(&format).to_string()
        };
        Self::decode(name, bytes).await
    }

    async fn collect(
        &self,
        mut stream: tonic::Streaming<aiaa_proto::datastore::v1::GetResponse>,
        what: &str,
    ) -> Result<(String, Vec<u8>)> {
        let mut format = String::new();
        let mut bytes = Vec::new();
        while let Some(msg) = stream.next().await {
            match msg.map_err(|s| datastore_error(what, &s))?.kind {
                Some(get_response::Kind::Item(item)) => {
                    if item.size > self.max_bytes {
                        return Err(InferenceError::TooLarge(format!(
                            "{what} has {} bytes, more than --inference-max-image-bytes {}",
                            item.size, self.max_bytes
                        )));
                    }
                    format = item.format;
                    bytes.reserve(item.size as usize);
                }
                Some(get_response::Kind::Chunk(c)) => {
                    if bytes.len() as u64 + c.data.len() as u64 > self.max_bytes {
                        return Err(InferenceError::TooLarge(format!(
                            "{what} exceeds --inference-max-image-bytes {}",
                            self.max_bytes
                        )));
                    }
                    bytes.extend_from_slice(&c.data);
                }
                None => {}
            }
        }
        Ok((format, bytes))
    }
}

fn datastore_error(what: &str, s: &tonic::Status) -> InferenceError {
    match s.code() {
        tonic::Code::NotFound => InferenceError::NotFound(format!("{what}: {}", s.message())),
        tonic::Code::InvalidArgument => InferenceError::Invalid(format!("{what}: {}", s.message())),
        _ => InferenceError::Unavailable(format!("the datastore failed on {what}: {}", s.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_imaging::{Geometry, Voxels};
    use std::num::NonZeroUsize;

    fn vol(n: usize) -> Arc<Volume> {
        Arc::new(
            Volume::scalar(
                [n, 1, 1],
                Geometry::with_spacing([1.0; 3]),
                Voxels::U8(vec![0; n]),
            )
            .unwrap(),
        )
    }

    #[test]
    fn the_cache_stays_under_its_byte_limit_dropping_the_least_recently_used() {
        let mut c = Cache {
            entries: LruCache::new(NonZeroUsize::new(100).unwrap()),
            bytes: 0,
            limit: 250,
        };
        let k = |s: &str| (s.to_string(), String::new());
        c.put(k("a"), vol(100));
        c.put(k("b"), vol(100));
        assert!(c.get(&k("a")).is_some()); // a is now the most recent
        c.put(k("c"), vol(100)); // 300 > 250: b goes
        assert_eq!(c.bytes, 200);
        assert!(c.get(&k("b")).is_none());
        assert!(c.get(&k("a")).is_some() && c.get(&k("c")).is_some());
        c.put(k("huge"), vol(1000)); // larger than the whole cache: not kept
        assert_eq!(c.bytes, 200);
    }
}
