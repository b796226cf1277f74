//! Per-client session quotas: how many live sessions, and how many bytes of session images,
//! one client may hold (`--max-sessions-per-client`, `--max-session-bytes-per-client`), so
//! one client (a buggy plugin, a script in a loop) cannot take the store from everyone else.
//!
//! A client is who the caller says on whose behalf it calls
//! ([`aiaa_runtime::auth::caller`]): the gateway sends `x-aiaa-client` (`key:<hash>` for a
//! caller with the API key, `anonymous:<ip>` for a trusted anonymous client, `open:<ip>`
//! without a key configured); a direct gRPC caller without it counts as `peer:<ip>`. Usage lives in memory, rebuilt from the session
//! records at start ([`Quotas::load`]), and is held from the moment an upload is admitted,
//! so concurrent uploads of one client cannot all slip under the limit. Expired sessions
//! stop counting at once, before the reaper removes them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::error::{DatastoreError, Result};

#[derive(Clone, Copy, Debug)]
struct Held {
    bytes: u64,
    expires_at_ms: u64,
}

#[derive(Default)]
struct Usage {
    /// client -> session id -> what it holds.
    clients: HashMap<String, BTreeMap<String, Held>>,
    /// session id -> client.
    owners: HashMap<String, String>,
}

impl Usage {
    fn live(&mut self, client: &str, now_ms: u64) -> (usize, u64) {
        let Some(held) = self.clients.get_mut(client) else {
            return (0, 0);
        };
        held.retain(|_, h| h.expires_at_ms > now_ms);
        (held.len(), held.values().map(|h| h.bytes).sum())
    }

    fn remove(&mut self, id: &str) {
        if let Some(client) = self.owners.remove(id)
            && let Some(held) = self.clients.get_mut(&client)
        {
            held.remove(id);
            if held.is_empty() {
                self.clients.remove(&client);
            }
        }
    }
}

/// The per-client limits and what each client holds.
#[derive(Clone)]
pub struct Quotas {
    max_sessions: usize,
    max_bytes: u64,
    usage: Arc<Mutex<Usage>>,
}

/// An admitted upload's hold on its client's quota; given back when dropped unless
/// [`Admission::keep`] made it the session's.
pub struct Admission {
    quotas: Quotas,
    id: String,
    /// Bytes the upload may still write within the client's quota.
    pub bytes_left: u64,
    kept: bool,
}

impl Admission {
    /// The session was stored: it holds `bytes` until `expires_at_ms` (or its deletion).
    pub fn keep(mut self, bytes: u64, expires_at_ms: u64) {
        self.quotas.set(&self.id, bytes, expires_at_ms);
        self.kept = true;
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if !self.kept {
            self.quotas.forget(&self.id);
        }
    }
}

impl Quotas {
    /// At most `max_sessions` live sessions and `max_bytes` of their images per client.
    pub fn new(max_sessions: usize, max_bytes: u64) -> Self {
        Self {
            max_sessions,
            max_bytes,
            usage: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits session `id` of `client` announcing `declared` bytes (0: unknown), or refuses
    /// it naming the limit; the admission holds a place until it is kept or dropped.
    pub fn admit(&self, client: &str, id: &str, declared: u64, now_ms: u64) -> Result<Admission> {
        let mut usage = self.lock();
        let (sessions, bytes) = usage.live(client, now_ms);
        if sessions >= self.max_sessions {
            return Err(DatastoreError::Quota(format!(
                "client {client:?} holds {sessions} live sessions, the most one client may hold (--max-sessions-per-client, AIAA_DATASTORE_MAX_SESSIONS_PER_CLIENT); delete some or let them expire"
            )));
        }
        let bytes_left = self.max_bytes.saturating_sub(bytes);
        if declared > bytes_left || bytes_left == 0 {
            let upload = format!("this upload announces {} MiB", declared.div_ceil(1 << 20));
            return Err(self.bytes_refused(client, bytes, &upload));
        }
        usage.clients.entry(client.to_string()).or_default().insert(
            id.to_string(),
            Held {
                bytes: declared,
                expires_at_ms: u64::MAX,
            },
        );
        usage.owners.insert(id.to_string(), client.to_string());
        Ok(Admission {
            quotas: self.clone(),
            id: id.to_string(),
            bytes_left,
            kept: false,
        })
    }

    /// The refusal for a client holding `held` bytes whose upload does not fit (`upload`
    /// says how).
    pub fn bytes_refused(&self, client: &str, held: u64, upload: &str) -> DatastoreError {
        DatastoreError::Quota(format!(
            "client {client:?} holds {} MiB of session images and {upload}; one client may hold {} MiB (--max-session-bytes-per-client, AIAA_DATASTORE_MAX_SESSION_BYTES_PER_CLIENT); delete sessions or let them expire",
            held >> 20,
            self.max_bytes >> 20
        ))
    }

    /// Bytes `client` holds in live sessions.
    pub fn held(&self, client: &str, now_ms: u64) -> u64 {
        self.lock().live(client, now_ms).1
    }

    /// Session `id` of `client` holds `bytes` until `expires_at_ms` (at start, from records).
    pub fn set_owned(&self, client: &str, id: &str, bytes: u64, expires_at_ms: u64) {
        let mut usage = self.lock();
        usage
            .clients
            .entry(client.to_string())
            .or_default()
            .insert(id.to_string(), Held { bytes, expires_at_ms });
        usage.owners.insert(id.to_string(), client.to_string());
    }

    fn set(&self, id: &str, bytes: u64, expires_at_ms: u64) {
        let mut usage = self.lock();
        let Some(client) = usage.owners.get(id).cloned() else {
            return;
        };
        if let Some(h) = usage.clients.get_mut(&client).and_then(|c| c.get_mut(id)) {
            *h = Held { bytes, expires_at_ms };
        }
    }

    /// Session `id` now expires at `expires_at_ms`.
    pub fn refreshed(&self, id: &str, expires_at_ms: u64) {
        let mut usage = self.lock();
        let Some(client) = usage.owners.get(id).cloned() else {
            return;
        };
        if let Some(h) = usage.clients.get_mut(&client).and_then(|c| c.get_mut(id)) {
            h.expires_at_ms = expires_at_ms;
        }
    }

    /// Session `id` is gone.
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_bytes_are_held_from_admission_and_freed_by_expiry_or_deletion() {
        let q = Quotas::new(3, 100);
        let a = q.admit("c", "s1", 40, 0).unwrap();
        let b = q.admit("c", "s2", 0, 0).unwrap();
        assert_eq!(b.bytes_left, 60);
        let x = q.admit("c", "x", 0, 0).unwrap();
        // Three held (still uploading): a fourth is refused, another client is not.
        let err = q.admit("c", "s3", 0, 0).err().unwrap().to_string();
        assert!(
            err.contains("--max-sessions-per-client") && err.contains("\"c\""),
            "{err}"
        );
        drop(q.admit("d", "t1", 0, 0).unwrap());
        drop(x);
        a.keep(40, 1_000);
        drop(b); // the upload failed: its place is free again
        let c = q.admit("c", "s3", 50, 0).unwrap();
        c.keep(50, 2_000);
        assert_eq!(q.held("c", 0), 90);
        let err = q.admit("c", "s4", 20, 0).err().unwrap().to_string();
        assert!(err.contains("--max-session-bytes-per-client"), "{err}");
        // s1 expired at 1000: it no longer counts; s3 deleted: neither.
        assert_eq!(q.held("c", 1_500), 50);
        q.forget("s3");
        assert_eq!(q.held("c", 1_500), 0);
        q.admit("c", "s5", 100, 1_500).unwrap().keep(100, 9_000);
        assert!(q.admit("c", "s6", 0, 1_500).is_err(), "no byte left");
    }
}
