//! The trainer's jobs: training, export and evaluation, each run as a child process of the
//! `aiaa` binary, queued, followed, cancelled, persisted and recovered.
//!
//! Life of a job:
//!
//! 1. Submitted: the request is checked (names, JSON, an inline train config entirely, the
//!    output prefix), the job is recorded in the store as `jobs/<id>/job.json` (written
//!    whole) and is QUEUED.
//! 2. It waits for one of `--trainer-max-jobs` slots, then is RUNNING: its inputs are fetched
//!    into `<work>/<id>/` ([`crate::sources`]), then the child runs there (`aiaa train
//!    segmentation … --progress json`, `aiaa export …`, `aiaa evaluate …`). Training's JSON
//!    progress lines become the job's `Progress`; every line of both streams goes into a
//!    tail of the last 50 lines, the `log_tail` of a failed job.
//! 3. Outputs go to the store under the output prefix (`jobs/<id>/` by default): training
//!    uploads its folder after every checkpoint and validation event (changed files,
//!    whole), and everything at the end.
//! 4. It ends SUCCEEDED (`result_json` lists the output objects and the final metrics),
//!    FAILED (`error` says why, `log_tail` what the child printed) or CANCELLED: CancelJob
//!    sends SIGINT (training stops at the next step boundary and saves its last checkpoint,
//!    which is uploaded), then SIGKILL after `--trainer-cancel-grace`. The work folder is
//!    removed.
//!
//! The record is rewritten on every state change, after every checkpoint, and otherwise at
//! most every few seconds. When the service stops (SIGTERM, Ctrl-C) running jobs are
//! interrupted the same way, their outputs uploaded, and their record set back to QUEUED so
//! that the next start continues them. When the service starts, it reads every record:
//! ended jobs are listed as they are; QUEUED jobs queue again; a job still RUNNING (the
//! service was killed) queues again as recovered, after its old child (if it still runs:
//! found by pid and work folder) has been stopped with SIGINT. A recovered training
//! continues from its last checkpoint (`--resume`), taken from the work folder or, when
//! that is gone, from the store; without any checkpoint it starts over. A job interrupted
//! by more than three restarts fails instead, with that reason.
//!
//! The module by role: `record` (what is persisted), `submit` (requests checked and
//! queued), `recovery` (the records read back at start), `driver` (a job's worker: slot,
//! state, persistence, end), `inputs` (inputs fetched, the child's command line),
//! `follow` (the child run and followed: progress, stop, outcome, result).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiaa_proto::common::v1::{Job, JobState, ListJobsRequest};
use aiaa_runtime::config::Secret;
use aiaa_runtime::jobs::{JobTable, is_terminal};
use aiaa_runtime::store::Store;
use futures::{Stream, StreamExt};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Result, TrainerError};
use crate::sources::Fetcher;

mod driver;
mod follow;
mod inputs;
mod record;
mod recovery;
mod submit;
#[cfg(test)]
mod tests;

use driver::Ctx;
pub use record::{ClickProtocol, Spec};

/// The record's file name in the job's folder of the store (`jobs/<id>/job.json`).
pub const RECORD_FILE: &str = "job.json";
/// `Job.kind` of training jobs.
pub const KIND_TRAINING: &str = "training";
/// `Job.kind` of export jobs.
pub const KIND_EXPORT: &str = "export";
/// `Job.kind` of evaluation jobs.
pub const KIND_EVALUATION: &str = "evaluation";
/// Restarts of the service a running job survives; one more fails it.
pub const MAX_RESTARTS: u32 = 3;

/// How jobs run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The program (`aiaa`).
    pub program: PathBuf,
    /// `--device` of the children.
    pub device: String,
    /// `--log_every` of training.
    pub log_every: u64,
    /// SIGINT to SIGKILL.
    pub grace: Duration,
    /// Folder of the work folders.
    pub work_root: PathBuf,
    /// The API key (given to export's registry push).
    pub api_key: Option<Secret>,
    /// The registry export pushes to.
    pub registry_url: String,
    /// Jobs at once.
    pub max_jobs: usize,
}

/// What every job's worker shares.
struct Inner {
    table: JobTable,
    store: Store,
    fetcher: Fetcher,
    slots: Arc<Semaphore>,
    settings: Settings,
    shutdown: CancellationToken,
    /// Output prefixes of jobs that have not ended.
    active_prefixes: Mutex<HashSet<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The jobs of one trainer service.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

fn invalid(msg: impl Into<String>) -> TrainerError {
    TrainerError::InvalidRequest(msg.into())
}

fn not_found(id: &str) -> TrainerError {
    TrainerError::NotFound(format!("no job {id:?} (ListJobs shows the jobs)"))
}

fn store_error(context: impl Into<String>) -> impl FnOnce(object_store::Error) -> TrainerError {
    let context = context.into();
    move |source| TrainerError::Store { context, source }
}

impl Jobs {
    /// A job manager over `store` (records and outputs), fetching inputs with `fetcher`;
    /// running jobs are interrupted when `shutdown` is cancelled.
    pub fn new(store: Store, fetcher: Fetcher, settings: Settings, shutdown: CancellationToken) -> Jobs {
        Jobs {
            inner: Arc::new(Inner {
                table: JobTable::new(),
                store,
                fetcher,
                slots: Arc::new(Semaphore::new(settings.max_jobs.max(1))),
                settings,
                shutdown,
                active_prefixes: Mutex::default(),
                tasks: Mutex::default(),
            }),
        }
    }

    fn spawn(&self, ctx: Ctx) {
        self.spawn_task(ctx.drive());
    }

    /// Runs `work` as a task that [`Jobs::wait`] waits for.
    fn spawn_task(&self, work: impl Future<Output = ()> + Send + 'static) {
        let task = tokio::spawn(work);
        let mut tasks = self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// A job's state.
    pub fn get(&self, id: &str) -> Result<Job> {
        self.inner.table.get(id).ok_or_else(|| not_found(id))
    }

    /// A job's state, then every change until it ends (or the service stops).
    pub fn watch(&self, id: &str) -> Result<impl Stream<Item = Job> + Send + 'static> {
        let updates = self.inner.table.watch(id).ok_or_else(|| not_found(id))?;
        Ok(updates.take_until(self.inner.shutdown.clone().cancelled_owned()))
    }

    /// Asks a job to stop; a queued job ends CANCELLED at once (and is answered so), a
    /// running one after its child saved and stopped; an ended job is left as it is.
    pub async fn cancel(&self, id: &str) -> Result<Job> {
        let before = self.inner.table.cancel(id).ok_or_else(|| not_found(id))?;
        if before.state == JobState::Queued as i32
            && let Some(updates) = self.inner.table.watch(id)
        {
            let ended = updates.filter(|j| futures::future::ready(is_terminal(j.state)));
            let _ = tokio::time::timeout(Duration::from_secs(2), Box::pin(ended).next()).await;
        }
        self.get(id)
    }

    /// Jobs matching the filters, newest first.
    pub fn list(&self, req: &ListJobsRequest) -> Vec<Job> {
        self.inner.table.list(req)
    }

    /// Waits until every job's worker has finished (after the shutdown token was cancelled,
    /// running jobs are interrupted and recorded for the next start).
    pub async fn wait(&self) {
        let tasks: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
    }
}
