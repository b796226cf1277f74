//! Annotation sessions: an image uploaded once and then referred to by a session id until
//! the session expires.
//!
//! Layout: the image at `sessions/<id>/image` and the record (which keeps the expiry) at
//! `sessions/<id>/session.json`, so a restarted datastore still knows every session. An
//! expired session answers NOT_FOUND at once; the reaper ([`Sessions::spawn_reaper`]) removes
//! its data later, together with images whose record never got written (an upload that died
//! between the image and the record).
//!
//! Each session counts against its client's quota ([`crate::quota`]) from the moment its
//! upload is admitted until it is deleted or expires; uploads stop while the store's disk
//! is at its floor ([`crate::disk`]).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aiaa_proto::datastore::v1::Session;
use aiaa_runtime::names;
use aiaa_runtime::store::Store;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use object_store::ObjectStore;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::blob::{self, Limit};
use crate::disk::Disk;
use crate::error::{DatastoreError, Result};
use crate::format;
use crate::items::{Kind, StoredItem, check_metadata};
use crate::quota::Quotas;

/// Images without a record younger than this are left alone by the reaper (their record may
/// be on its way).
pub const ORPHAN_GRACE: Duration = Duration::from_secs(600);

/// Longest accepted upload file name.
pub const MAX_FILENAME: usize = 255;

/// How long sessions live.
#[derive(Clone, Copy, Debug)]
pub struct Expiry {
    /// Lifetime when a request asks for 0 seconds.
    pub default: Duration,
    /// Longest lifetime a request may ask for.
    pub max: Duration,
}

/// The record of a session.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredSession {
    /// Session id (a UUID).
    pub id: String,
    /// The uploaded image.
    pub image: StoredItem,
    /// The uploaded file's name, as given.
    #[serde(default)]
    pub filename: String,
    /// When it was created, RFC 3339.
    pub created_at: String,
    /// When it expires, milliseconds since the Unix epoch (authoritative).
    pub expires_at_ms: u64,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The client it counts against ([`crate::quota`]); empty for sessions older than quotas.
    #[serde(default)]
    pub client: String,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

impl StoredSession {
    /// Whether it has expired at `now` (ms since the epoch).
    pub fn expired_at(&self, now: u64) -> bool {
        now >= self.expires_at_ms
    }

    /// The contract's view.
    pub fn to_proto(&self) -> Session {
        Session {
            id: self.id.clone(),
            image: Some(self.image.to_proto()),
            created_at: self.created_at.clone(),
            expires_at: rfc3339_ms(self.expires_at_ms),
            metadata: self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// The session store.
#[derive(Clone)]
pub struct Sessions {
    store: Store,
    expiry: Expiry,
    limit: Limit,
    disk: Disk,
    quotas: Quotas,
}

fn not_found(id: &str) -> DatastoreError {
    DatastoreError::NotFound(format!("session {id:?} not found (it may have expired)"))
}

impl Sessions {
    /// Sessions on `store`; images are held to `limit`, written while `disk` has room, and
    /// count against their client's `quotas`.
    pub fn new(store: Store, expiry: Expiry, limit: Limit, disk: Disk, quotas: Quotas) -> Self {
        Self {
            store,
            expiry,
            limit,
            disk,
            quotas,
        }
    }

    fn image_path(id: &str) -> Result<object_store::path::Path> {
        blob::path(&format!("sessions/{id}/image"))
    }

    fn record_path(id: &str) -> Result<object_store::path::Path> {
        blob::path(&format!("sessions/{id}/session.json"))
    }

    fn check_id(id: &str) -> Result<()> {
        names::segment("session id", id)?;
        Ok(())
    }

    /// The lifetime a request asks for: 0 takes the default; more than the maximum is refused.
    pub fn lifetime(&self, expiry_seconds: u64) -> Result<Duration> {
        if expiry_seconds == 0 {
            return Ok(self.expiry.default);
        }
        let asked = Duration::from_secs(expiry_seconds);
        if asked > self.expiry.max {
            return Err(DatastoreError::InvalidArgument(format!(
                "expiry_seconds {expiry_seconds} is more than the maximum of {} seconds (--session-max-expiry)",
                self.expiry.max.as_secs()
            )));
        }
        Ok(asked)
    }

    /// Creates a session from an uploaded image, for `client`.
    pub async fn create<S>(
        &self,
        client: &str,
        expiry_seconds: u64,
        filename: &str,
        metadata: &HashMap<String, String>,
        expect: &blob::Expect,
        body: S,
    ) -> Result<StoredSession>
    where
        S: Stream<Item = Result<Bytes>> + Send + Unpin,
    {
        let lifetime = self.lifetime(expiry_seconds)?;
        if filename.len() > MAX_FILENAME || filename.chars().any(char::is_control) {
            return Err(DatastoreError::InvalidArgument(format!(
                "filename must be at most {MAX_FILENAME} bytes without control characters"
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let what = format!("the image of session {id:?}");
        let metadata = check_metadata(&format!("session {id:?}"), metadata)?;
        let image_path = Self::image_path(&id)?;
        let admission = self.quotas.admit(client, &id, expect.size, now_ms())?;
        // The client's quota binds when it has less room left than one image may take.
        let by_quota = admission.bytes_left < self.limit.bytes;
        let limit = Limit {
            bytes: self.limit.bytes.min(admission.bytes_left),
            ..self.limit
        };
        let written =
            match blob::write(&self.store, &image_path, body, limit, &self.disk, expect, &what).await {
                Err(DatastoreError::TooLarge { .. }) if by_quota => {
                    let held = self.quotas.held(client, now_ms()).saturating_sub(expect.size);
                    let upload = format!("this upload is larger than the {} MiB left", limit.bytes >> 20);
                    return Err(self.quotas.bytes_refused(client, held, &upload));
                }
                other => other?,
            };
        let created_at = aiaa_runtime::now_rfc3339();
        let record = StoredSession {
            image: StoredItem {
                kind: Kind::Image,
                id: id.clone(),
                format: format::detect(filename, &written.leading).to_string(),
                size: written.size,
                sha256: written.sha256,
                created_at: created_at.clone(),
                metadata: BTreeMap::new(),
                e_tag: written.e_tag,
            },
            id: id.clone(),
            filename: filename.to_string(),
            created_at,
            expires_at_ms: now_ms() + lifetime.as_millis() as u64,
            metadata,
            client: client.to_string(),
        };
        if let Err(err) = blob::write_json(
            &self.store,
            &Self::record_path(&id)?,
            &record,
            &format!("session {id:?}"),
        )
        .await
        {
            let _ = blob::delete(&self.store, &image_path, &what).await;
            return Err(err);
        }
        admission.keep(record.image.size, record.expires_at_ms);
        tracing::info!(session = %id, client, size = record.image.size, format = %record.image.format, "session created");
        Ok(record)
    }

    async fn read(&self, id: &str) -> Result<Option<StoredSession>> {
        blob::read_json(&self.store, &Self::record_path(id)?, &format!("session {id:?}")).await
    }

    /// A live session.
    pub async fn get(&self, id: &str) -> Result<StoredSession> {
        Self::check_id(id)?;
        match self.read(id).await? {
            Some(s) if !s.expired_at(now_ms()) => Ok(s),
            _ => Err(not_found(id)),
        }
    }

    /// Pushes a live session's expiry to now + the asked lifetime.
    pub async fn refresh(&self, id: &str, expiry_seconds: u64) -> Result<StoredSession> {
        let lifetime = self.lifetime(expiry_seconds)?;
        let mut session = self.get(id).await?;
        session.expires_at_ms = now_ms() + lifetime.as_millis() as u64;
        blob::write_json(
            &self.store,
            &Self::record_path(id)?,
            &session,
            &format!("session {id:?}"),
        )
        .await?;
        self.quotas.refreshed(id, session.expires_at_ms);
        Ok(session)
    }

    /// A live session and its image's bytes.
    pub async fn open_image(&self, id: &str) -> Result<(StoredSession, BoxStream<'static, Result<Bytes>>)> {
        let session = self.get(id).await?;
        let what = format!("the image of session {id:?}");
        match blob::open(
            &self.store,
            &Self::image_path(id)?,
            session.image.e_tag.clone(),
            &what,
        )
        .await?
        {
            Some(bytes) => Ok((session, bytes)),
            None => Err(not_found(id)),
        }
    }

    /// Deletes a session and its image; `false` when there was no live session (an expired
    /// one's data is removed all the same).
    pub async fn delete(&self, id: &str) -> Result<bool> {
        Self::check_id(id)?;
        let live = matches!(self.read(id).await?, Some(s) if !s.expired_at(now_ms()));
        self.remove(id).await?;
        if live {
            tracing::info!(session = %id, "session deleted");
        }
        Ok(live)
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.quotas.forget(id);
        blob::delete(
            &self.store,
            &Self::image_path(id)?,
            &format!("the image of session {id:?}"),
        )
        .await?;
        blob::delete(&self.store, &Self::record_path(id)?, &format!("session {id:?}")).await?;
        Ok(())
    }

    /// Rebuilds the quotas' usage from the stored records of live sessions (at start);
    /// returns how many sessions it counted.
    pub async fn load_quotas(&self) -> Result<usize> {
        let root = blob::path("sessions")?;
        let mut listing = self.store.list(Some(&root));
        let mut ids = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| DatastoreError::store("list sessions", e))?;
            if let Some(id) = meta
                .location
                .as_ref()
                .strip_prefix("sessions/")
                .and_then(|rest| rest.strip_suffix("/session.json"))
            {
                ids.push(id.to_string());
            }
        }
        let now = now_ms();
        let mut counted = 0;
        for id in ids {
            if let Ok(Some(s)) = self.read(&id).await
                && !s.expired_at(now)
            {
                self.quotas
                    .set_owned(&s.client, &s.id, s.image.size, s.expires_at_ms);
                counted += 1;
            }
        }
        Ok(counted)
    }

    /// One reaper pass: removes expired sessions and old orphaned images; returns how many
    /// sessions (or orphans) it removed.
    pub async fn reap(&self) -> Result<usize> {
        let root = blob::path("sessions")?;
        let mut listing = self.store.list(Some(&root));
        let mut records = Vec::new();
        let mut images = BTreeMap::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| DatastoreError::store("list sessions", e))?;
            let location = meta.location.as_ref();
            let Some(rest) = location.strip_prefix("sessions/") else {
                continue;
            };
            match rest.split_once('/') {
                Some((id, "session.json")) => records.push(id.to_string()),
                Some((id, "image")) => {
                    images.insert(id.to_string(), meta.last_modified);
                }
                _ => {}
            }
        }
        let now = now_ms();
        let mut removed = 0;
        for id in &records {
            images.remove(id);
            // Read again right before removing: a refresh may have landed since the listing.
            match self.read(id).await {
                Ok(Some(s)) if s.expired_at(now) => {
                    self.remove(id).await?;
                    tracing::info!(session = %id, "expired session removed");
                    removed += 1;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "unreadable session record; left in place")
                }
            }
        }
        let grace = orphan_cutoff_ms();
        for (id, modified) in images {
            if modified.timestamp_millis() < grace {
                blob::delete(
                    &self.store,
                    &Self::image_path(&id)?,
                    &format!("the orphaned image of session {id:?}"),
                )
                .await?;
                tracing::info!(session = %id, "orphaned session image removed");
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Runs [`Sessions::reap`] every `interval` until `shutdown` is cancelled.
    pub fn spawn_reaper(self, interval: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticks.tick() => {
                        if let Err(e) = self.reap().await {
                            tracing::warn!(error = %e, "session reaper pass failed");
                        }
                    }
                }
            }
            tracing::debug!("session reaper stopped");
        })
    }
}

/// Orphaned images last modified before this instant (ms since the epoch) are removed.
fn orphan_cutoff_ms() -> i64 {
    now_ms().saturating_sub(ORPHAN_GRACE.as_millis() as u64) as i64
}
