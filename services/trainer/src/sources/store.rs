//! Downloading objects of the trainer's own store (one object, or every object under a
//! prefix).

use std::path::Path;

use futures::StreamExt;
use object_store::ObjectStoreExt;

use crate::error::{Result, TrainerError};

use super::{Fetcher, invalid, safe_relative, write_stream};

impl Fetcher {
    /// Downloads an object of the trainer's store to `target`.
    pub async fn store_object(&self, path: &str, target: &Path) -> Result<()> {
        let location = object_store::path::Path::parse(path)
            .map_err(|e| invalid(format!("trainer object {path:?}: {e}")))?;
        let got = self.store.get(&location).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                TrainerError::NotFound(format!("the trainer's store has no object {path:?}"))
            }
            other => TrainerError::Store {
                context: format!("read {path}"),
                source: other,
            },
        })?;
        if got.meta.size > self.max_bytes {
            return Err(TrainerError::FailedPrecondition(format!(
                "trainer object {path:?} has {} bytes, more than --trainer-max-source-bytes {}",
                got.meta.size, self.max_bytes
            )));
        }
        let body = got.into_stream().map(|r| {
            r.map_err(|e| TrainerError::Store {
                context: format!("read {path}"),
                source: e,
            })
        });
        write_stream(
            body,
            target,
            &format!("trainer object {path:?}"),
            self.max_bytes,
            None,
        )
        .await?;
        Ok(())
    }

    /// Downloads every object under `prefix` of the trainer's store into `dir`, mirroring the
    /// tree (skipping `job.json`); returns the relative paths.
    pub async fn store_prefix(&self, prefix: &str, dir: &Path) -> Result<Vec<String>> {
        let folder = prefix.trim_end_matches('/');
        let location = object_store::path::Path::parse(folder)
            .map_err(|e| invalid(format!("output prefix {prefix:?}: {e}")))?;
        let mut listing = self.store.list(Some(&location));
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| TrainerError::Store {
                context: format!("list {prefix}"),
                source: e,
            })?;
            let full = meta.location.to_string();
            let Some(rel) = full.strip_prefix(folder).map(|r| r.trim_start_matches('/')) else {
                continue;
            };
            if rel.is_empty() || rel == crate::jobs::RECORD_FILE {
                continue;
            }
            found.push(rel.to_string());
        }
        for rel in &found {
            let target = dir.join(safe_relative(prefix, rel)?);
            self.store_object(&format!("{folder}/{rel}"), &target).await?;
        }
        Ok(found)
    }
}
