//! Where a request's image comes from: sent inline (decoded here), a datastore image, or a
//! datastore session whose decoded volume is cached (least recently used first out, bounded
//! by bytes), so a viewer's repeated clicks on one session decode it once.
//!
//! Fetching and decoding are two steps so the caller can price the decode from the image's
//! header ([`aiaa_imaging::io::probe_bytes`]) before it runs: [`Images::fetch_session`],
//! [`Images::fetch_image`] and the inline bytes give a [`Source`] (already decoded when the
//! cache had it), [`Images::decode`] makes it a volume. Bytes fetched from the datastore are
//! counted into the request's [`Reservation`] as they arrive.
//!
//! Cached volumes leave with their session: a request that finds the session gone drops its
//! entries at once, and a sweeper asks the datastore every `--inference-cache-check-interval`
//! about the sessions it caches and drops those deleted or expired, so a deleted session's
//! volume does not stay in memory until the cache happens to evict it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use aiaa_imaging::io::ImageInfo;
use aiaa_imaging::{ReadOptions, Volume};
use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::datastore::v1::{GetRequest, GetResponse, ItemKind, SessionRef};
use aiaa_proto::framed::{self, FrameError};
use aiaa_runtime::client::AiaaChannel;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use lru::LruCache;

use crate::budget::Reservation;
use crate::error::{InferenceError, Result};

/// Cache key: (session id, image sha256).
type Key = (String, String);

/// Decoded session volumes by (session id, image sha256), bounded by bytes.
struct Cache {
    entries: LruCache<Key, Arc<Volume>>,
    bytes: u64,
    limit: u64,
}

impl Cache {
    fn get(&mut self, key: &Key) -> Option<Arc<Volume>> {
        let hit = self.entries.get(key).cloned();
        metrics::counter!("aiaa_inference_session_cache_total", "result" => if hit.is_some() { "hit" } else { "miss" })
            .increment(1);
        hit
    }

    fn put(&mut self, key: Key, vol: Arc<Volume>) {
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
        self.report();
    }

    /// Drops every entry of session `id`.
    fn forget(&mut self, id: &str) {
        let keys: Vec<Key> = self
            .entries
            .iter()
            .filter(|(k, _)| k.0 == id)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            if let Some(v) = self.entries.pop(&k) {
                self.bytes -= volume_bytes(&v);
            }
        }
        self.report();
    }

    fn sessions(&self) -> BTreeSet<String> {
        self.entries.iter().map(|(k, _)| k.0.clone()).collect()
    }

    fn report(&self) {
        metrics::gauge!("aiaa_inference_session_cache_bytes").set(self.bytes as f64);
        metrics::gauge!("aiaa_inference_session_cache_entries").set(self.entries.len() as f64);
    }
}

fn volume_bytes(v: &Volume) -> u64 {
    (v.voxel_count() * v.channels * v.voxel_type().size()) as u64
}

/// A request's image before decoding.
pub enum Source {
    /// Already decoded (a cached session volume).
    Decoded(Arc<Volume>),
    /// The file's bytes; `name` gives the format; a session's volume is cached under `key`
    /// once decoded.
    Encoded {
        /// A file name whose extension names the format.
        name: String,
        /// The file.
        bytes: Vec<u8>,
        /// The cache key of a session's image.
        key: Option<Key>,
    },
}

impl Source {
    /// What the image is (grid, channels, decoded type), from its header: cheap, nothing
    /// decoded.
    pub fn info(&self) -> Result<ImageInfo> {
        match self {
            Source::Decoded(v) => Ok(ImageInfo::from(&**v)),
            Source::Encoded { name, bytes, .. } => aiaa_imaging::io::probe_bytes(name, bytes)
                .map_err(|e| InferenceError::Invalid(format!("the image {name:?} could not be read: {e}"))),
        }
    }

    /// Whether decoding it costs memory (false for a cached volume).
    pub fn needs_decoding(&self) -> bool {
        matches!(self, Source::Encoded { .. })
    }
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
    /// `max_bytes`. Inside a tokio runtime, starts the sweeper that checks the cached
    /// sessions every `check_every` (it stops when the last clone is dropped).
    pub fn new(
        datastore: DatastoreServiceClient<AiaaChannel>,
        cache_bytes: u64,
        max_bytes: u64,
        check_every: Duration,
    ) -> Images {
        let images = Images {
            datastore,
            cache: Arc::new(Mutex::new(Cache {
                entries: LruCache::unbounded(),
                bytes: 0,
                limit: cache_bytes,
            })),
            max_bytes,
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (cache, ds) = (Arc::downgrade(&images.cache), images.datastore.clone());
            rt.spawn(sweep(cache, ds, check_every));
        }
        images
    }

    /// The largest image accepted.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Bytes of decoded volumes cached.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.lock().map(|c| c.bytes).unwrap_or(0)
    }

    /// Decodes a source (blocking work on a blocking thread, at most `opts.max_bytes`) and
    /// caches a session's volume.
    pub async fn decode(&self, source: Source, opts: ReadOptions) -> Result<Arc<Volume>> {
        let (name, bytes, key) = match source {
            Source::Decoded(v) => return Ok(v),
            Source::Encoded { name, bytes, key } => (name, bytes, key),
        };
        let vol = tokio::task::spawn_blocking(move || {
            aiaa_imaging::io::decode_bytes(&name, &bytes, &opts)
                .map_err(|e| InferenceError::Invalid(format!("the image {name:?} could not be read: {e}")))
        })
        .await
        .map_err(|e| InferenceError::Internal(format!("decoding task: {e}")))??;
        let vol = Arc::new(vol);
        if let (Some(key), Ok(mut c)) = (key, self.cache.lock()) {
            c.put(key, vol.clone());
        }
        Ok(vol)
    }

    /// A session's image: checked against the datastore (an expired session is NOT_FOUND
    /// even when cached, and its cached volumes go), then the cached volume or the file.
    pub async fn fetch_session(&self, id: &str, reservation: &mut Reservation) -> Result<Source> {
        let mut ds = self.datastore.clone();
        let what = format!("session {id:?}");
        let session = match ds.get_session(SessionRef { id: id.to_string() }).await {
            Ok(s) => s.into_inner(),
            Err(s) => {
                if s.code() == tonic::Code::NotFound
                    && let Ok(mut c) = self.cache.lock()
                {
                    c.forget(id);
                }
                return Err(datastore_error(&what, &s));
            }
        };
        let item = session.image.unwrap_or_default();
        let key = (id.to_string(), item.sha256.clone());
        if let Some(v) = self.cache.lock().ok().and_then(|mut c| c.get(&key)) {
            return Ok(Source::Decoded(v));
        }
        let stream = ds
            .get_session_image(SessionRef { id: id.to_string() })
            .await
            .map_err(|s| datastore_error(&what, &s))?
            .into_inner();
        let (format, bytes) = self.collect(stream, &what, reservation).await?;
        Ok(Source::Encoded {
            name: name_for(&format).to_string(),
            bytes,
            key: Some(key),
        })
    }

    /// A datastore image's file.
    pub async fn fetch_image(&self, id: &str, reservation: &mut Reservation) -> Result<Source> {
        let mut ds = self.datastore.clone();
        let what = format!("image {id:?}");
        let stream = ds
            .get(GetRequest {
                kind: ItemKind::Image as i32,
                id: id.to_string(),
            })
            .await
            .map_err(|s| datastore_error(&what, &s))?
            .into_inner();
        let (format, bytes) = self.collect(stream, &what, reservation).await?;
        let name = if aiaa_imaging::io::format_from_name(std::path::Path::new(id)).is_some() {
            id.to_string()
        } else {
            name_for(&format).to_string()
        };
        Ok(Source::Encoded {
            name,
            bytes,
            key: None,
        })
    }

    async fn collect(
        &self,
        stream: tonic::Streaming<GetResponse>,
        what: &str,
        reservation: &mut Reservation,
    ) -> Result<(String, Vec<u8>)> {
        let broken = |e: &FrameError| match e.status() {
            Some(status) => datastore_error(what, status),
            None => InferenceError::Internal(format!("the datastore's answer for {what}: {e}")),
        };
        let (item, mut body) = framed::receive::<GetResponse, _>(stream)
            .await
            .map_err(|e| broken(&e))?;
        if item.size > self.max_bytes {
            return Err(InferenceError::TooLarge(format!(
                "{what} has {} bytes, more than --inference-max-image-bytes {}",
                item.size, self.max_bytes
            )));
        }
        // Priced from the item's size before a byte arrives; more than that is reserved as
        // it comes.
        let fetching = || format!("{what} as stored");
        reservation.grow_by(item.size, &fetching).await?;
        let bytes = self
            .read_body(&mut body, item.size, reservation, what, &fetching, broken)
            .await?;
        Ok((item.format, bytes))
    }

    /// A streamed image into memory: at most --inference-max-image-bytes, every byte past the
    /// `reserved` already held counted into the request's reservation as it arrives (`what`
    /// names the image in errors, `reserving` in the budget's refusal).
    pub async fn read_body(
        &self,
        body: &mut (impl Stream<Item = std::result::Result<Bytes, FrameError>> + Unpin),
        reserved: u64,
        reservation: &mut Reservation,
        what: &str,
        reserving: &(dyn Fn() -> String + Sync),
        broken: impl Fn(&FrameError) -> InferenceError,
    ) -> Result<Vec<u8>> {
        let mut reserved = reserved;
        let mut bytes = Vec::with_capacity(reserved as usize);
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| broken(&e))?;
            let total = bytes.len() as u64 + piece.len() as u64;
            if total > self.max_bytes {
                return Err(InferenceError::TooLarge(format!(
                    "{what} exceeds --inference-max-image-bytes {}",
                    self.max_bytes
                )));
            }
            if total > reserved {
                reservation.grow_by(total - reserved, reserving).await?;
                reserved = total;
            }
            bytes.extend_from_slice(&piece);
        }
        Ok(bytes)
    }
}

/// Every `every`, asks the datastore about each cached session and drops the entries of
/// those that are gone (deleted or expired); ends when the cache is dropped.
async fn sweep(cache: Weak<Mutex<Cache>>, datastore: DatastoreServiceClient<AiaaChannel>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let ids = match cache.upgrade() {
            Some(c) => c.lock().map(|c| c.sessions()).unwrap_or_default(),
            None => return,
        };
        for id in ids {
            let mut ds = datastore.clone();
            let answer = ds.get_session(SessionRef { id: id.clone() }).await;
            if matches!(&answer, Err(s) if s.code() == tonic::Code::NotFound) {
                let Some(c) = cache.upgrade() else { return };
                if let Ok(mut c) = c.lock() {
                    c.forget(&id);
                }
                tracing::debug!(session = %id, "dropped the cached volume of a deleted or expired session");
            }
        }
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
        // A session's entries leave with it.
        c.put(("c".into(), "other sha".into()), vol(10));
        assert_eq!(c.sessions(), BTreeSet::from(["a".to_string(), "c".to_string()]));
        c.forget("c");
        assert_eq!(c.bytes, 100);
        assert_eq!(c.sessions(), BTreeSet::from(["a".to_string()]));
    }
}
