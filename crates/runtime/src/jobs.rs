//! A table of long-running jobs (conversion, training, export, evaluation): each has an id, a
//! state, progress and a cancel token; watchers get the current state and every change until
//! the job ends. The worker that runs a job holds its [`JobHandle`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aiaa_proto::common::v1::{Job, JobState, ListJobsRequest, Progress};
use futures::Stream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::now_rfc3339;

struct Entry {
    tx: watch::Sender<Job>,
    cancel: CancellationToken,
}

/// The jobs one service knows, shared between its handlers and its workers.
#[derive(Clone, Default)]
pub struct JobTable {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

/// Whether a job has ended.
pub fn is_terminal(state: i32) -> bool {
    matches!(
        JobState::try_from(state),
        Ok(JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    )
}

impl JobTable {
    /// A new, empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a QUEUED job of `kind` and returns the handle its worker updates it through.
    pub fn create(&self, kind: &str) -> JobHandle {
        let now = now_rfc3339();
        let job = Job {
            id: uuid::Uuid::new_v4().to_string(),
            kind: kind.to_string(),
            state: JobState::Queued as i32,
            created_at: now.clone(),
            updated_at: now,
            ..Default::default()
        };
        self.register(job)
    }

    /// Registers a job as it was persisted (a service restoring its jobs after a restart):
    /// its id, state and times are kept. A job with the same id is replaced.
    pub fn restore(&self, job: Job) -> JobHandle {
        self.register(job)
    }

    /// Enters `job` in the table (replacing one with its id) and returns its handle.
    fn register(&self, job: Job) -> JobHandle {
        let (tx, _) = watch::channel(job.clone());
        let cancel = CancellationToken::new();
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            job.id.clone(),
            Entry {
                tx: tx.clone(),
                cancel: cancel.clone(),
            },
        );
        JobHandle {
            id: job.id,
            tx,
            cancel,
        }
    }

    /// The job's current state.
    pub fn get(&self, id: &str) -> Option<Job> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id).map(|e| e.tx.borrow().clone())
    }

    /// Asks a job to stop; returns its state (an ended job is left as it is).
    pub fn cancel(&self, id: &str) -> Option<Job> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.get(id)?;
        entry.cancel.cancel();
        Some(entry.tx.borrow().clone())
    }

    /// Jobs matching the request's filters, newest first.
    pub fn list(&self, req: &ListJobsRequest) -> Vec<Job> {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut jobs: Vec<Job> = map
            .values()
            .map(|e| e.tx.borrow().clone())
            .filter(|j| req.kind.is_empty() || j.kind == req.kind)
            .filter(|j| req.state == 0 || j.state == req.state)
            .collect();
        jobs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        jobs
    }

    /// The current state, then every change, ending after the job ends.
    pub fn watch(&self, id: &str) -> Option<impl Stream<Item = Job> + Send + 'static> {
        let rx = {
            let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            map.get(id)?.tx.subscribe()
        };
        Some(futures::stream::unfold(
            (rx, true, false),
            |(mut rx, first, done)| async move {
                if done {
                    return None;
                }
                // The table keeps every sender, so `changed` only fails if the table is gone.
                if !first && rx.changed().await.is_err() {
                    return None;
                }
                let job = rx.borrow_and_update().clone();
                let ended = is_terminal(job.state);
                Some((job, (rx, false, ended)))
            },
        ))
    }
}

/// The worker's side of a job.
#[derive(Clone)]
pub struct JobHandle {
    id: String,
    tx: watch::Sender<Job>,
    cancel: CancellationToken,
}

impl JobHandle {
    /// The job's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Cancelled when a client asks the job to stop.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The job's current state.
    pub fn snapshot(&self) -> Job {
        self.tx.borrow().clone()
    }

    fn update(&self, f: impl FnOnce(&mut Job)) {
        self.tx.send_modify(|job| {
            if !is_terminal(job.state) {
                f(job);
                job.updated_at = now_rfc3339();
            }
        });
    }

    /// Marks it RUNNING.
    pub fn running(&self) {
        self.update(|j| j.state = JobState::Running as i32);
    }

    /// Records progress.
    pub fn progress(&self, progress: Progress) {
        self.update(|j| j.progress = Some(progress));
    }

    /// Ends it SUCCEEDED with a JSON result.
    pub fn succeed(&self, result_json: String) {
        self.update(|j| {
            j.state = JobState::Succeeded as i32;
            j.result_json = result_json;
        });
    }

    /// Ends it FAILED with the error and the tail of its log.
    pub fn fail(&self, error: String, log_tail: String) {
        self.update(|j| {
            j.state = JobState::Failed as i32;
            j.error = error;
            j.log_tail = log_tail;
        });
    }

    /// Ends it CANCELLED.
    pub fn cancelled(&self) {
        self.update(|j| j.state = JobState::Cancelled as i32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn watch_sees_every_state_until_the_end() {
        let table = JobTable::new();
        let h = table.create("convert");
        let watch = table.watch(h.id()).unwrap();
        let worker = tokio::spawn({
            let h = h.clone();
            async move {
                h.running();
                tokio::task::yield_now().await;
                h.succeed("{}".into());
                h.fail("late".into(), String::new()); // ignored: already ended
            }
        });
        let states: Vec<i32> = watch.map(|j| j.state).collect().await;
        worker.await.unwrap();
        assert_eq!(states.first(), Some(&(JobState::Queued as i32)));
        assert_eq!(states.last(), Some(&(JobState::Succeeded as i32)));
        assert_eq!(table.get(h.id()).unwrap().state, JobState::Succeeded as i32);
        assert!(table.cancel(h.id()).is_some());
        assert_eq!(table.list(&ListJobsRequest::default()).len(), 1);
        assert!(table.get("nope").is_none());
    }

    #[test]
    fn restored_jobs_keep_their_id_and_state() {
        let table = JobTable::new();
        let job = Job {
            id: "fixed-id".into(),
            kind: "training".into(),
            state: JobState::Queued as i32,
            created_at: "2020-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        let h = table.restore(job);
        assert_eq!(h.id(), "fixed-id");
        assert_eq!(table.get("fixed-id").unwrap().created_at, "2020-01-01T00:00:00Z");
        h.running();
        assert_eq!(table.get("fixed-id").unwrap().state, JobState::Running as i32);
    }
}
