//! The records read back when the service starts (see the module docs of [`super`]): ended
//! jobs listed as they are, the others queued again, a job interrupted too often failed.

use std::sync::Arc;

use aiaa_proto::common::v1::{Job, JobState, Progress};
use aiaa_runtime::jobs::is_terminal;
use futures::StreamExt;
use object_store::ObjectStoreExt;

use super::driver::Ctx;
use super::record::Record;
use super::{Jobs, MAX_RESTARTS, RECORD_FILE, store_error};
use crate::error::Result;

impl Jobs {
    /// Reads every job record of the store (see the module docs); returns how many jobs
    /// were queued again.
    pub async fn recover(&self) -> Result<usize> {
        let inner = &self.inner;
        let mut records = Vec::new();
        let mut listing = inner.store.list(Some(&object_store::path::Path::from("jobs")));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(store_error("list the job records"))?;
            let parts: Vec<&str> = meta.location.as_ref().split('/').collect();
            if parts.len() != 3 || parts[2] != RECORD_FILE {
                continue;
            }
            let bytes = inner
                .store
                .get(&meta.location)
                .await
                .map_err(store_error(format!("read {}", meta.location)))?
                .bytes()
                .await
                .map_err(store_error(format!("read {}", meta.location)))?;
            match serde_json::from_slice::<Record>(&bytes) {
                Ok(r) if r.job.id == parts[1] => records.push(r),
                Ok(r) => {
                    tracing::warn!(path = %meta.location, id = %r.job.id, "a job record names another job; skipped")
                }
                Err(e) => {
                    tracing::warn!(path = %meta.location, error = %e, "an unreadable job record; skipped")
                }
            }
        }
        records.sort_by(|a, b| {
            a.job
                .created_at
                .cmp(&b.job.created_at)
                .then(a.job.id.cmp(&b.job.id))
        });
        let mut queued = 0;
        for mut record in records {
            let mut job = Job::from(&record.job);
            if is_terminal(job.state) {
                inner.table.restore(job);
                continue;
            }
            if job.state == JobState::Running as i32 {
                record.meta.restarts += 1;
                record.meta.recovered = true;
                let message = if record.meta.restarts > MAX_RESTARTS {
                    job.state = JobState::Failed as i32;
                    job.error = format!(
                        "the trainer service restarted {} times while this job ran; it is not resumed again \
                         (its outputs so far are under {})",
                        record.meta.restarts, record.meta.output_prefix
                    );
                    "given up after repeated service restarts".to_string()
                } else {
                    job.state = JobState::Queued as i32;
                    "the trainer service restarted while this job ran; it runs again (a training \
                     continues from its last checkpoint)"
                        .to_string()
                };
                job.progress = Some(Progress {
                    stage: "recovered".into(),
                    message,
                    ..job.progress.unwrap_or_default()
                });
                job.updated_at = aiaa_runtime::now_rfc3339();
            }
            let handle = inner.table.restore(job);
            let mut ctx = Ctx::new(Arc::clone(inner), handle, record.meta);
            ctx.persist().await;
            if is_terminal(ctx.handle.snapshot().state) {
                // Given up: its old child (if any) stops, its work folder goes.
                if ctx.meta.pid.is_some() {
                    self.spawn_task(async move {
                        ctx.stop_orphan().await;
                        ctx.persist().await;
                        let _ = tokio::fs::remove_dir_all(&ctx.meta.work_dir).await;
                    });
                } else {
                    let _ = tokio::fs::remove_dir_all(&ctx.meta.work_dir).await;
                }
                continue;
            }
            inner
                .active_prefixes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(ctx.meta.output_prefix.clone());
            queued += 1;
            self.spawn(ctx);
        }
        Ok(queued)
    }
}
