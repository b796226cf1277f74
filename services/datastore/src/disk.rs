//! The disk guard: uploads to a local store are refused with INSUFFICIENT STORAGE (the
//! gateway's 507) while the store's file system has less than `--min-free-bytes` left, so a
//! crowd of uploads cannot fill the disk the sessions, models and jobs of everyone share.
//! Checked before an upload starts (against its declared size) and every
//! [`CHECK_EVERY`] bytes while it streams; an S3 store reports no free space and is not
//! guarded (its quotas are the bucket's).

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{DatastoreError, Result};

/// Bytes written between two checks of a streaming upload.
pub const CHECK_EVERY: u64 = 16 << 20;

/// The free-space floor of a local store.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    root: Option<Arc<PathBuf>>,
    min_free: u64,
}

impl Disk {
    /// A guard keeping `min_free` bytes free on the file system of `root` (`None`: no guard).
    pub fn new(root: Option<PathBuf>, min_free: u64) -> Self {
        Self {
            root: root.map(Arc::new),
            min_free,
        }
    }

    /// Refuses `what` when writing `incoming` more bytes would leave less than the floor.
    pub fn check(&self, what: &str, incoming: u64) -> Result<()> {
        let Some(root) = &self.root else {
            return Ok(());
        };
        let free = match aiaa_runtime::store::free_bytes(root) {
            Ok(free) => free,
            Err(e) => {
                // A store whose free space cannot be read is not refused for it.
                tracing::warn!(store = %root.display(), error = %e, "cannot read the store's free space");
                return Ok(());
            }
        };
        if free.saturating_sub(incoming) < self.min_free {
            return Err(DatastoreError::InsufficientStorage(format!(
                "{what}: the store's disk is nearly full ({} MiB free{}, and the datastore keeps {} MiB free: --min-free-bytes, AIAA_DATASTORE_MIN_FREE_BYTES); nothing was stored",
                free >> 20,
                if incoming > 0 {
                    format!(", {} MiB more announced", incoming.div_ceil(1 << 20))
                } else {
                    String::new()
                },
                self.min_free >> 20
            )));
        }
        Ok(())
    }
}
