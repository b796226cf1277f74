//! A job's worker ([`Ctx`]): it waits for a slot, fetches the inputs ([`super::inputs`]),
//! runs the child ([`super::follow`]), keeps the job's state and record current, and ends
//! the job.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiaa_proto::common::v1::{JobState, Progress};
use aiaa_runtime::jobs::JobHandle;

use super::Inner;
use super::record::{JobRecord, Meta, Record, write_record};
use crate::runner::stop_orphan;

/// The record is rewritten at most this often for progress alone.
const PERSIST_EVERY: Duration = Duration::from_secs(5);

/// How a job ends.
pub(super) enum End {
    Succeeded(String),
    /// The error and the log tail.
    Failed(String, String),
    Cancelled,
}

/// One job's worker.
pub(super) struct Ctx {
    pub(super) inner: Arc<Inner>,
    pub(super) handle: JobHandle,
    pub(super) meta: Meta,
    last_persist: Instant,
}

impl Ctx {
    pub(super) fn new(inner: Arc<Inner>, handle: JobHandle, meta: Meta) -> Ctx {
        Ctx {
            inner,
            handle,
            meta,
            last_persist: Instant::now(),
        }
    }

    pub(super) fn id(&self) -> String {
        self.handle.id().to_string()
    }

    /// Writes the record as the job is now; `state` replaces its state in the record only.
    pub(super) async fn persist_as(&mut self, state: Option<JobState>, message: Option<String>) {
        let mut job = self.handle.snapshot();
        if let Some(s) = state {
            job.state = s as i32;
        }
        if let Some(m) = message {
            job.progress.get_or_insert_with(Progress::default).message = m;
        }
        let record = Record {
            format: 1,
            job: JobRecord::from(&job),
            meta: self.meta.clone(),
        };
        if let Err(e) = write_record(&self.inner.store, &record).await {
            tracing::warn!(job = %job.id, error = %e, "could not write the job record");
        }
        self.last_persist = Instant::now();
    }

    pub(super) async fn persist(&mut self) {
        self.persist_as(None, None).await;
    }

    pub(super) async fn persist_soon(&mut self) {
        if self.last_persist.elapsed() >= PERSIST_EVERY {
            self.persist().await;
        }
    }

    pub(super) fn progress(&self, stage: &str, done: u64, total: u64, unit: &str, message: String) {
        self.handle.progress(Progress {
            stage: stage.into(),
            done,
            total,
            unit: unit.into(),
            message,
        });
    }

    /// Ends the job: the record is written with its final state and the work folder removed
    /// first, so that a client that sees the end finds the record and the outputs in place.
    pub(super) async fn end(mut self, end: End) {
        self.meta.pid = None;
        let mut job = self.handle.snapshot();
        job.updated_at = aiaa_runtime::now_rfc3339();
        match &end {
            End::Succeeded(result) => {
                job.state = JobState::Succeeded as i32;
                job.result_json = result.clone();
            }
            End::Failed(error, tail) => {
                job.state = JobState::Failed as i32;
                job.error = error.clone();
                job.log_tail = tail.clone();
            }
            End::Cancelled => job.state = JobState::Cancelled as i32,
        }
        let record = Record {
            format: 1,
            job: JobRecord::from(&job),
            meta: self.meta.clone(),
        };
        if let Err(e) = write_record(&self.inner.store, &record).await {
            tracing::warn!(job = %job.id, error = %e, "could not write the job record");
        }
        if let Err(e) = tokio::fs::remove_dir_all(&self.meta.work_dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(job = %job.id, error = %e, "could not remove the work folder");
        }
        self.inner
            .active_prefixes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.meta.output_prefix);
        tracing::info!(job = %job.id, state = %record.job.state, error = %job.error, "job ended");
        match end {
            End::Succeeded(result) => self.handle.succeed(result),
            End::Failed(error, tail) => self.handle.fail(error, tail),
            End::Cancelled => self.handle.cancelled(),
        }
    }

    /// Stops the child recorded by an earlier run of the service, if it still runs.
    pub(super) async fn stop_orphan(&mut self) {
        if let Some(pid) = self.meta.pid.take() {
            let grace = self.inner.settings.grace;
            if stop_orphan(pid, &self.meta.work_dir, grace).await {
                tracing::info!(job = %self.id(), pid, "the job's process from before the restart has stopped");
            }
        }
    }

    /// Runs the job to its end (or until the service stops).
    pub(super) async fn drive(mut self) {
        let cancel = self.handle.cancel_token().clone();
        let shutdown = self.inner.shutdown.clone();
        // A child left by an earlier run of the service stops first, even while this job
        // waits for a slot: two processes never work in one folder.
        self.stop_orphan().await;
        let slots = Arc::clone(&self.inner.slots);
        let _permit = tokio::select! {
            p = slots.acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = cancel.cancelled() => {
                self.progress("cancelled", 0, 0, "", "cancelled while queued".into());
                self.end(End::Cancelled).await;
                return;
            }
            _ = shutdown.cancelled() => return,
        };
        self.handle.running();
        self.progress("prepare", 0, 0, "", "fetching the inputs".into());
        self.persist().await;
        let prepared = tokio::select! {
            r = self.prepare() => r,
            _ = cancel.cancelled() => {
                self.progress("cancelled", 0, 0, "", "cancelled while fetching the inputs".into());
                self.end(End::Cancelled).await;
                return;
            }
            _ = shutdown.cancelled() => {
                self.persist_as(Some(JobState::Queued), Some("interrupted by the service's shutdown; runs when it starts again".into())).await;
                return;
            }
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(job = %self.id(), error = %e, "the job's inputs are unusable");
                self.end(End::Failed(format!("preparing the job: {e}"), String::new()))
                    .await;
                return;
            }
        };
        self.run(prepared, &cancel, &shutdown).await;
    }

    /// The work folder's `inputs/`, `data/` and `out/`.
    pub(super) fn dirs(&self) -> (PathBuf, PathBuf, PathBuf) {
        let w = &self.meta.work_dir;
        (w.join("inputs"), w.join("data"), w.join("out"))
    }
}
