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

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiaa_proto::common::v1::{Job, JobState, ListJobsRequest, Progress};
use aiaa_proto::trainer::v1::{EvaluationRequest, ExportRequest, TrainingRequest};
use aiaa_runtime::config::Secret;
use aiaa_runtime::jobs::{JobHandle, JobTable, is_terminal};
use aiaa_runtime::names;
use aiaa_runtime::store::Store;
use futures::{Stream, StreamExt};
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::{Result, TrainerError};
use crate::runner::{Child, ChildSpec, LogTail, Outputs, Pipe, describe_exit, stop_orphan};
use crate::sources::{Fetcher, RegistryRef, Role, SourceSpec};
use aiaa_train::trainer::{BEST_CHECKPOINT, LAST_CHECKPOINT};
use aiaa_train::{TrainConfig, TrainError};

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
/// The record is rewritten at most this often for progress alone.
const PERSIST_EVERY: Duration = Duration::from_secs(5);
/// The keys export options may have.
const EXPORT_OPTION_KEYS: &[&str] = &["engine", "padding", "labels", "description", "version", "thresh"];
/// The summary file `aiaa evaluate` writes into its output folder.
const EVALUATE_SUMMARY: &str = "aiaa_evaluate_summary.json";

/// What a job does, as its request asked (persisted with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Spec {
    /// `aiaa train segmentation`.
    Training {
        /// The train config.
        config: SourceSpec,
        /// The datalist.
        datalist: SourceSpec,
        /// Weights to fine-tune from.
        checkpoint: Option<SourceSpec>,
        /// Continue the run stored under the output prefix.
        resume: bool,
        /// Top-level config keys replaced (already applied to an inline config).
        overrides: Option<Map<String, Value>>,
    },
    /// `aiaa export`.
    Export {
        /// The checkpoint.
        checkpoint: SourceSpec,
        /// Export options (JSON object; see [`EXPORT_OPTION_KEYS`]).
        options: Option<SourceSpec>,
        /// `FP32` or `FP16`.
        precision: String,
        /// `org/team/name:version` to push to.
        push_to: Option<String>,
    },
    /// `aiaa evaluate`.
    Evaluation {
        /// The model.
        model: SourceSpec,
        /// Its config (default: a registry model's engine config).
        config: Option<SourceSpec>,
        /// The datalist.
        datalist: SourceSpec,
        /// Surface-Dice tolerance (mm).
        nsd_tolerance_mm: f64,
    },
}

impl Spec {
    fn kind(&self) -> &'static str {
        match self {
            Spec::Training { .. } => KIND_TRAINING,
            Spec::Export { .. } => KIND_EXPORT,
            Spec::Evaluation { .. } => KIND_EVALUATION,
        }
    }
}

/// `Progress` as persisted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ProgressRecord {
    stage: String,
    done: u64,
    total: u64,
    unit: String,
    message: String,
}

/// `Job` as persisted (the state by name, e.g. `JOB_STATE_RUNNING`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct JobRecord {
    id: String,
    kind: String,
    state: String,
    progress: Option<ProgressRecord>,
    created_at: String,
    updated_at: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    log_tail: String,
    #[serde(default)]
    result_json: String,
    #[serde(default)]
    submitted_by: String,
}

impl From<&Job> for JobRecord {
    fn from(j: &Job) -> Self {
        JobRecord {
            id: j.id.clone(),
            kind: j.kind.clone(),
            state: JobState::try_from(j.state)
                .unwrap_or(JobState::Unspecified)
                .as_str_name()
                .to_string(),
            progress: j.progress.as_ref().map(|p| ProgressRecord {
                stage: p.stage.clone(),
                done: p.done,
                total: p.total,
                unit: p.unit.clone(),
                message: p.message.clone(),
            }),
            created_at: j.created_at.clone(),
            updated_at: j.updated_at.clone(),
            error: j.error.clone(),
            log_tail: j.log_tail.clone(),
            result_json: j.result_json.clone(),
            submitted_by: j.submitted_by.clone(),
        }
    }
}

impl From<&JobRecord> for Job {
    fn from(r: &JobRecord) -> Self {
        Job {
            id: r.id.clone(),
            kind: r.kind.clone(),
            state: JobState::from_str_name(&r.state).unwrap_or(JobState::Unspecified) as i32,
            progress: r.progress.as_ref().map(|p| Progress {
                stage: p.stage.clone(),
                done: p.done,
                total: p.total,
                unit: p.unit.clone(),
                message: p.message.clone(),
            }),
            created_at: r.created_at.clone(),
            updated_at: r.updated_at.clone(),
            error: r.error.clone(),
            log_tail: r.log_tail.clone(),
            result_json: r.result_json.clone(),
            submitted_by: r.submitted_by.clone(),
        }
    }
}

/// What the service keeps of a job besides its `Job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Meta {
    spec: Spec,
    /// Where outputs go, ending with '/'.
    output_prefix: String,
    /// The job's work folder.
    work_dir: PathBuf,
    /// The running child's process id.
    #[serde(default)]
    pid: Option<u32>,
    /// Service restarts that interrupted it.
    #[serde(default)]
    restarts: u32,
    /// It was interrupted (restart or shutdown): a training continues from its last
    /// checkpoint when there is one.
    #[serde(default)]
    recovered: bool,
}

/// `jobs/<id>/job.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    /// Format version of this file.
    format: u32,
    job: JobRecord,
    #[serde(flatten)]
    meta: Meta,
}

fn record_path(id: &str) -> object_store::path::Path {
    object_store::path::Path::from(format!("jobs/{id}/{RECORD_FILE}"))
}

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

/// An output prefix as given: empty, or a relative id, normalised to end with '/'.
fn output_prefix(given: &str) -> Result<Option<String>> {
    let folder = given.trim_end_matches('/');
    if folder.is_empty() {
        return Ok(None);
    }
    names::relative_id("output_prefix", folder)?;
    Ok(Some(format!("{folder}/")))
}

/// Applies top-level overrides to a config text.
fn apply_overrides(text: &str, overrides: Option<&Map<String, Value>>, what: &str) -> Result<Value> {
    let mut config: Value =
        serde_json::from_str(text).map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))?;
    if let Some(o) = overrides {
        let Value::Object(map) = &mut config else {
            return Err(invalid(format!("{what} must be a JSON object")));
        };
        for (k, v) in o {
            map.insert(k.clone(), v.clone());
        }
    }
    Ok(config)
}

/// Checks a train config entirely (every key and transform), as `aiaa train` will, and
/// refuses weights named by a path of the service's machine.
fn check_train_config(config: &Value, what: &str) -> Result<()> {
    let parsed = TrainConfig::from_json(config.clone(), Path::new(what)).map_err(|e| match e {
        TrainError::Config { .. } | TrainError::Transform { .. } | TrainError::Nets { .. } => {
            invalid(e.to_string())
        }
        other => TrainerError::Train(other),
    })?;
    if let Some(w) = parsed.net.pretrained_weights() {
        return Err(invalid(format!(
            "{what}: net_config names pretrained weights by a path of the trainer's machine ({w:?}); \
             give the weights as the request's checkpoint instead"
        )));
    }
    Ok(())
}

/// Checks export options and turns them into `aiaa export` flags.
fn export_flags(options: &Value, what: &str) -> Result<Vec<OsString>> {
    let Value::Object(map) = options else {
        return Err(invalid(format!(
            "{what} must be a JSON object with some of: {}",
            EXPORT_OPTION_KEYS.join(", ")
        )));
    };
    let mut flags: Vec<OsString> = Vec::new();
    for (k, v) in map {
        let bad = |expected: &str| invalid(format!("{what}: {k:?} must be {expected}"));
        match (k.as_str(), v) {
            ("engine", Value::String(s)) => {
                aiaa_train::export::EngineKind::parse(s)
                    .ok_or_else(|| bad("Dextr3dCroppedEngine or SegmentationEngine"))?;
                flags.extend(["--engine".into(), s.into()]);
            }
            ("padding", Value::Number(n)) => {
                flags.extend(["--padding".into(), n.to_string().into()]);
            }
            ("thresh", Value::Number(n)) => {
                flags.extend(["--thresh".into(), n.to_string().into()]);
            }
            ("description", Value::String(s)) => flags.extend(["--description".into(), s.into()]),
            ("version", Value::String(s)) => {
                names::segment("version", s)?;
                flags.extend(["--version".into(), s.into()]);
            }
            ("labels", Value::Array(a)) => {
                let labels: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
                let labels = labels.ok_or_else(|| bad("a list of label names"))?;
                if labels.iter().any(|l| l.contains(',')) {
                    return Err(bad("a list of label names without commas"));
                }
                flags.extend(["--labels".into(), labels.join(",").into()]);
            }
            ("engine" | "description" | "version", _) => return Err(bad("a string")),
            ("padding" | "thresh", _) => return Err(bad("a number")),
            ("labels", _) => return Err(bad("a list of label names")),
            _ => {
                return Err(invalid(format!(
                    "{what}: unknown key {k:?} (export options are {})",
                    EXPORT_OPTION_KEYS.join(", ")
                )));
            }
        }
    }
    Ok(flags)
}

/// The version an export's options name, if any.
fn option_version(options: &Value) -> Option<&str> {
    options.get("version").and_then(Value::as_str)
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

    /// Records a new job, QUEUED, and starts its worker.
    async fn create(&self, spec: Spec, prefix: Option<String>, submitted_by: &str) -> Result<Job> {
        let inner = &self.inner;
        let id = uuid::Uuid::new_v4().to_string();
        let prefix = prefix.unwrap_or_else(|| format!("jobs/{id}/"));
        {
            let mut active = inner.active_prefixes.lock().unwrap_or_else(|e| e.into_inner());
            if !active.insert(prefix.clone()) {
                return Err(TrainerError::FailedPrecondition(format!(
                    "another job that has not ended writes to output_prefix {prefix:?}"
                )));
            }
        }
        let now = aiaa_runtime::now_rfc3339();
        let job = Job {
            id: id.clone(),
            kind: spec.kind().to_string(),
            state: JobState::Queued as i32,
            progress: Some(Progress {
                stage: "queued".into(),
                message: "waiting for a slot (--trainer-max-jobs)".into(),
                ..Default::default()
            }),
            created_at: now.clone(),
            updated_at: now,
            submitted_by: submitted_by.to_string(),
            ..Default::default()
        };
        let meta = Meta {
            spec,
            output_prefix: prefix.clone(),
            work_dir: inner.settings.work_root.join(&id),
            pid: None,
            restarts: 0,
            recovered: false,
        };
        let record = Record {
            format: 1,
            job: JobRecord::from(&job),
            meta: meta.clone(),
        };
        if let Err(e) = write_record(&inner.store, &record).await {
            inner
                .active_prefixes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&prefix);
            return Err(e);
        }
        let handle = inner.table.restore(job.clone());
        tracing::info!(job = %id, kind = %job.kind, output = %prefix, submitted_by, "job queued");
        self.spawn(Ctx::new(Arc::clone(inner), handle, meta));
        Ok(job)
    }

    /// Checks a training request (see the module docs) and queues it, recording who asked.
    pub async fn submit_training(&self, req: &TrainingRequest, submitted_by: &str) -> Result<Job> {
        let config = SourceSpec::required("config", req.config.as_ref())?;
        let datalist = SourceSpec::required("datalist", req.datalist.as_ref())?;
        let checkpoint = SourceSpec::from_proto("checkpoint", req.checkpoint.as_ref())?;
        for (field, spec) in [("config", Some(&config)), ("checkpoint", checkpoint.as_ref())] {
            if let Some(SourceSpec::Datalist(_)) = spec {
                return Err(invalid(format!("{field} cannot be a datalist")));
            }
        }
        if let Some(SourceSpec::InlineJson(_)) = &checkpoint {
            return Err(invalid("checkpoint cannot be inline JSON"));
        }
        let overrides = match req.overrides_json.trim() {
            "" => None,
            text => match serde_json::from_str::<Value>(text) {
                Ok(Value::Object(m)) => Some(m),
                Ok(_) => {
                    return Err(invalid(
                        "overrides_json must be a JSON object of top-level config keys",
                    ));
                }
                Err(e) => return Err(invalid(format!("overrides_json is not valid JSON: {e}"))),
            },
        };
        let prefix = output_prefix(&req.output_prefix)?;
        if req.resume && checkpoint.is_some() {
            return Err(invalid(
                "resume continues the run under output_prefix; checkpoint starts a new one from other \
                 weights: give one of them",
            ));
        }
        if let Some(p) = &prefix {
            let last = object_store::path::Path::from(format!("{p}{LAST_CHECKPOINT}"));
            let exists = match self.inner.store.head(&last).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(store_error(format!("look at {last}"))(e)),
            };
            if req.resume && !exists {
                return Err(TrainerError::FailedPrecondition(format!(
                    "nothing to resume: output_prefix {p:?} holds no {LAST_CHECKPOINT}"
                )));
            }
            if !req.resume && exists {
                return Err(TrainerError::FailedPrecondition(format!(
                    "output_prefix {p:?} already holds a training run; set resume to continue it, or \
                     choose another prefix"
                )));
            }
        } else if req.resume {
            return Err(invalid(
                "resume continues the run stored under output_prefix: name it (e.g. jobs/<id>/)",
            ));
        }
        // An inline config is checked entirely now, with the overrides applied.
        let (config, overrides) = match config {
            SourceSpec::InlineJson(text) => {
                let merged = apply_overrides(&text, overrides.as_ref(), "config")?;
                check_train_config(&merged, "config")?;
                (SourceSpec::InlineJson(merged.to_string()), None)
            }
            other => (other, overrides),
        };
        self.create(
            Spec::Training {
                config,
                datalist,
                checkpoint,
                resume: req.resume,
                overrides,
            },
            prefix,
            submitted_by,
        )
        .await
    }

    /// Checks an export request and queues it, recording who asked.
    pub async fn submit_export(&self, req: &ExportRequest, submitted_by: &str) -> Result<Job> {
        let checkpoint = SourceSpec::required("checkpoint", req.checkpoint.as_ref())?;
        if matches!(checkpoint, SourceSpec::Datalist(_) | SourceSpec::InlineJson(_)) {
            return Err(invalid(
                "checkpoint must be a datastore item, a registry file or a trainer object",
            ));
        }
        let options = SourceSpec::from_proto("config", req.config.as_ref())?;
        if let Some(SourceSpec::Datalist(_)) = &options {
            return Err(invalid("config (the export options) cannot be a datalist"));
        }
        let precision = match req.precision.to_ascii_lowercase().as_str() {
            "" | "fp32" => "FP32",
            "fp16" => "FP16",
            other => return Err(invalid(format!("precision {other:?}: expected fp32 or fp16"))),
        };
        let push_to = match req.push_to.trim() {
            "" => None,
            r => {
                let parsed = RegistryRef::parse(r)?;
                if parsed.path.is_some() {
                    return Err(invalid(format!(
                        "push_to {r:?} names a model version, without a file path"
                    )));
                }
                Some(parsed.version_ref())
            }
        };
        if let Some(SourceSpec::InlineJson(text)) = &options {
            let value: Value = serde_json::from_str(text).map_err(|e| invalid(format!("config: {e}")))?;
            export_flags(&value, "config (export options)")?;
            if let (Some(v), Some(push)) = (option_version(&value), &push_to)
                && !push.ends_with(&format!(":{v}"))
            {
                return Err(invalid(format!(
                    "config names version {v:?} but push_to is {push}: give one version"
                )));
            }
        }
        self.create(
            Spec::Export {
                checkpoint,
                options,
                precision: precision.into(),
                push_to,
            },
            None,
            submitted_by,
        )
        .await
    }

    /// Checks an evaluation request and queues it, recording who asked.
    pub async fn submit_evaluation(&self, req: &EvaluationRequest, submitted_by: &str) -> Result<Job> {
        let model = SourceSpec::required("model", req.model.as_ref())?;
        if matches!(model, SourceSpec::Datalist(_) | SourceSpec::InlineJson(_)) {
            return Err(invalid(
                "model must be a registry model, a datastore item or a trainer object",
            ));
        }
        let config = SourceSpec::from_proto("config", req.config.as_ref())?;
        match (&config, &model) {
            (Some(SourceSpec::Datalist(_)), _) => return Err(invalid("config cannot be a datalist")),
            (None, SourceSpec::RegistryRef(_)) => {}
            (None, _) => {
                return Err(invalid(
                    "config is missing (only a registry model brings its own engine config)",
                ));
            }
            _ => {}
        }
        let datalist = SourceSpec::required("datalist", req.datalist.as_ref())?;
        let nsd = if req.nsd_tolerance_mm == 0.0 {
            1.0
        } else {
            req.nsd_tolerance_mm
        };
        if !nsd.is_finite() || nsd < 0.0 {
            return Err(invalid(format!(
                "nsd_tolerance_mm {} must be a finite number of mm > 0 (0 takes 1 mm)",
                req.nsd_tolerance_mm
            )));
        }
        self.create(
            Spec::Evaluation {
                model,
                config,
                datalist,
                nsd_tolerance_mm: nsd,
            },
            None,
            submitted_by,
        )
        .await
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

async fn write_record(store: &Store, record: &Record) -> Result<()> {
    let text = serde_json::to_vec_pretty(record).map_err(|e| TrainerError::Internal(e.to_string()))?;
    let path = record_path(&record.job.id);
    store
        .put(&path, PutPayload::from(text))
        .await
        .map_err(store_error(format!("write {path}")))?;
    Ok(())
}

/// How a job ends.
enum End {
    Succeeded(String),
    /// The error and the log tail.
    Failed(String, String),
    Cancelled,
}

/// How a running child was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancel,
    Shutdown,
}

/// What a job's inputs became: the child's arguments.
struct Prepared {
    args: Vec<OsString>,
    /// Training continues (`--resume`) from this step.
    resumed: bool,
}

/// What the child reported.
#[derive(Default)]
struct Report {
    summary: Option<Value>,
    metrics: Map<String, Value>,
    last_step: u64,
    last_checkpoint_step: Option<u64>,
}

/// One job's worker.
struct Ctx {
    inner: Arc<Inner>,
    handle: JobHandle,
    meta: Meta,
    last_persist: Instant,
}

impl Ctx {
    fn new(inner: Arc<Inner>, handle: JobHandle, meta: Meta) -> Ctx {
        Ctx {
            inner,
            handle,
            meta,
            last_persist: Instant::now(),
        }
    }

    fn id(&self) -> String {
        self.handle.id().to_string()
    }

    /// Writes the record as the job is now; `state` replaces its state in the record only.
    async fn persist_as(&mut self, state: Option<JobState>, message: Option<String>) {
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

    async fn persist(&mut self) {
        self.persist_as(None, None).await;
    }

    async fn persist_soon(&mut self) {
        if self.last_persist.elapsed() >= PERSIST_EVERY {
            self.persist().await;
        }
    }

    fn progress(&self, stage: &str, done: u64, total: u64, unit: &str, message: String) {
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
    async fn end(mut self, end: End) {
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
    async fn stop_orphan(&mut self) {
        if let Some(pid) = self.meta.pid.take() {
            let grace = self.inner.settings.grace;
            if stop_orphan(pid, &self.meta.work_dir, grace).await {
                tracing::info!(job = %self.id(), pid, "the job's process from before the restart has stopped");
            }
        }
    }

    /// Runs the job to its end (or until the service stops).
    async fn drive(mut self) {
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

    fn dirs(&self) -> (PathBuf, PathBuf, PathBuf) {
        let w = &self.meta.work_dir;
        (w.join("inputs"), w.join("data"), w.join("out"))
    }

    async fn prepare(&mut self) -> Result<Prepared> {
        let fetcher = self.inner.fetcher.clone();
        let settings = self.inner.settings.clone();
        let (inputs, data, out) = self.dirs();
        for d in [&inputs, &data, &out] {
            tokio::fs::create_dir_all(d)
                .await
                .map_err(|e| TrainerError::io(d, e))?;
        }
        let h = self.handle.clone();
        let files_progress = move |done: u64, total: u64| {
            h.progress(Progress {
                stage: "download".into(),
                done,
                total,
                unit: "files".into(),
                message: format!("datalist files {done}/{total}"),
            });
        };
        let device = settings.device.clone();
        match self.meta.spec.clone() {
            Spec::Training {
                config,
                datalist,
                checkpoint,
                resume,
                overrides,
            } => {
                let what = format!("config ({})", config.describe());
                let text = fetcher
                    .json_text(&config, Role::TrainConfig, &inputs.join("source"))
                    .await?;
                let merged = apply_overrides(&text, overrides.as_ref(), &what)?;
                check_train_config(&merged, &what)?;
                let config_file = inputs.join("config_train.json");
                tokio::fs::write(&config_file, merged.to_string())
                    .await
                    .map_err(|e| TrainerError::io(&config_file, e))?;
                let datalist_file = fetcher.datalist(&datalist, &data, &files_progress).await?;
                let last = out.join(LAST_CHECKPOINT);
                let continuing = resume || self.meta.recovered;
                if continuing && !last.is_file() {
                    self.progress("download", 0, 0, "", "fetching the last checkpoint".into());
                    let _ = tokio::fs::remove_dir_all(&out).await;
                    let found = fetcher.store_prefix(&self.meta.output_prefix, &out).await?;
                    tracing::info!(job = %self.id(), files = found.len(), "outputs restored from the store");
                }
                let resumed = continuing && last.is_file();
                if resume && !resumed {
                    return Err(TrainerError::FailedPrecondition(format!(
                        "nothing to resume: {} holds no {LAST_CHECKPOINT}",
                        self.meta.output_prefix
                    )));
                }
                if !resumed {
                    let _ = tokio::fs::remove_dir_all(&out).await;
                    tokio::fs::create_dir_all(&out)
                        .await
                        .map_err(|e| TrainerError::io(&out, e))?;
                }
                let mut args: Vec<OsString> = vec![
                    "train".into(),
                    "segmentation".into(),
                    "-e".into(),
                    config_file.into(),
                    "-d".into(),
                    datalist_file.into(),
                    "-r".into(),
                    out.clone().into(),
                    "--progress".into(),
                    "json".into(),
                    "--log_every".into(),
                    settings.log_every.to_string().into(),
                    "--device".into(),
                    device.into(),
                ];
                if resumed {
                    args.push("--resume".into());
                } else if let Some(c) = &checkpoint {
                    let file = fetcher
                        .file(c, Role::Checkpoint, &inputs.join("checkpoint"))
                        .await?;
                    args.extend(["-c".into(), file.into()]);
                }
                Ok(Prepared { args, resumed })
            }
            Spec::Export {
                checkpoint,
                options,
                precision,
                push_to,
            } => {
                let ckpt = fetcher
                    .file(&checkpoint, Role::Checkpoint, &inputs.join("checkpoint"))
                    .await?;
                let mut args: Vec<OsString> = vec![
                    "export".into(),
                    "--model_file_path".into(),
                    ckpt.into(),
                    "--output_dir".into(),
                    out.clone().into(),
                    "--trt_precision_mode".into(),
                    precision.into(),
                    "--device".into(),
                    device.into(),
                ];
                let mut option_version = None;
                if let Some(o) = &options {
                    let what = format!("config ({}, the export options)", o.describe());
                    let text = fetcher
                        .json_text(o, Role::ExportOptions, &inputs.join("options"))
                        .await?;
                    let value: Value =
                        serde_json::from_str(&text).map_err(|e| invalid(format!("{what}: {e}")))?;
                    args.extend(export_flags(&value, &what)?);
                    option_version = self::option_version(&value).map(str::to_string);
                }
                if let Some(push) = &push_to {
                    let r = RegistryRef::parse(push)?;
                    if let Some(v) = &option_version
                        && v != &r.version
                    {
                        return Err(invalid(format!(
                            "the export options name version {v:?} but push_to is {push}"
                        )));
                    }
                    if option_version.is_none() {
                        args.extend(["--version".into(), r.version.clone().into()]);
                    }
                    args.extend([
                        "--push".into(),
                        r.model.name.clone().into(),
                        "--org".into(),
                        r.model.org.clone().into(),
                        "--team".into(),
                        r.model.team.clone().into(),
                        "--registry".into(),
                        settings.registry_url.clone().into(),
                    ]);
                }
                Ok(Prepared { args, resumed: false })
            }
            Spec::Evaluation {
                model,
                config,
                datalist,
                nsd_tolerance_mm,
            } => {
                let model_file = fetcher.model(&model, &inputs.join("model")).await?;
                let config_source = match (&config, &model) {
                    (Some(c), _) => c.clone(),
                    (None, SourceSpec::RegistryRef(r)) => {
                        SourceSpec::RegistryRef(RegistryRef::parse(r)?.version_ref())
                    }
                    (None, _) => return Err(invalid("config is missing")),
                };
                let config_file = fetcher
                    .file(&config_source, Role::EvalConfig, &inputs.join("config"))
                    .await?;
                let datalist_file = fetcher.datalist(&datalist, &data, &files_progress).await?;
                let _ = tokio::fs::remove_dir_all(&out).await;
                let args: Vec<OsString> = vec![
                    "evaluate".into(),
                    "--model_save_path".into(),
                    model_file.into(),
                    "--config".into(),
                    config_file.into(),
                    "--output_path".into(),
                    out.clone().into(),
                    "--data_file".into(),
                    datalist_file.into(),
                    "--nsd_tolerance_mm".into(),
                    nsd_tolerance_mm.to_string().into(),
                    "--device".into(),
                    device.into(),
                ];
                Ok(Prepared { args, resumed: false })
            }
        }
    }

    async fn run(mut self, prepared: Prepared, cancel: &CancellationToken, shutdown: &CancellationToken) {
        let settings = self.inner.settings.clone();
        let (_, _, out) = self.dirs();
        let mut env = Vec::new();
        if let Some(k) = &settings.api_key {
            env.push(("AIAA_API_KEY".to_string(), k.expose().to_string()));
        }
        let spec = ChildSpec {
            program: settings.program.clone(),
            args: prepared.args,
            cwd: self.meta.work_dir.clone(),
            env,
        };
        let kind = self.meta.spec.kind();
        let mut child = match Child::spawn(&spec) {
            Ok(c) => c,
            Err(e) => {
                self.end(End::Failed(e.to_string(), String::new())).await;
                return;
            }
        };
        self.meta.pid = Some(child.pid());
        let stage = match kind {
            KIND_TRAINING => "train",
            KIND_EXPORT => "export",
            _ => "evaluate",
        };
        let started = if prepared.resumed {
            "continuing from the last checkpoint"
        } else {
            "started"
        };
        self.progress(
            stage,
            0,
            0,
            "",
            format!("{} {started} (pid {})", kind, child.pid()),
        );
        self.persist().await;
        tracing::info!(job = %self.id(), pid = child.pid(), kind, "job process started");

        let mut outputs = Outputs::new(out.clone(), self.meta.output_prefix.clone());
        let mut tail = LogTail::default();
        let mut report = Report::default();
        let mut stop: Option<Stop> = None;
        let mut kill_at: Option<tokio::time::Instant> = None;
        let mut killed = false;
        loop {
            let kill_timer = async {
                match kill_at {
                    Some(t) if !killed => tokio::time::sleep_until(t).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                line = child.next_line() => {
                    let Some((pipe, line)) = line else { break };
                    tail.push(&line);
                    self.on_line(kind, pipe, &line, &mut report, &mut outputs).await;
                }
                _ = cancel.cancelled(), if stop.is_none() => {
                    tracing::info!(job = %self.id(), "cancelling: SIGINT to the job's process");
                    stop = Some(Stop::Cancel);
                    child.interrupt();
                    kill_at = Some(tokio::time::Instant::now() + settings.grace);
                    self.progress("stopping", report.last_step, 0, "", "cancel requested: stopping at the next step and saving a checkpoint".into());
                }
                _ = shutdown.cancelled(), if stop.is_none() => {
                    tracing::info!(job = %self.id(), "service stopping: SIGINT to the job's process");
                    stop = Some(Stop::Shutdown);
                    child.interrupt();
                    kill_at = Some(tokio::time::Instant::now() + settings.grace);
                }
                _ = kill_timer => {
                    tracing::warn!(job = %self.id(), "the job's process did not stop in time; SIGKILL");
                    child.kill();
                    killed = true;
                }
            }
        }
        let status = child.wait(Duration::from_secs(10)).await;
        self.meta.pid = None;
        let uploaded = outputs.sync(&self.inner.store).await;
        let objects = match &uploaded {
            Ok(o) => o.clone(),
            Err(e) => {
                tracing::warn!(job = %self.id(), error = %e, "uploading the outputs failed");
                Vec::new()
            }
        };
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                self.end(End::Failed(e.to_string(), tail.text())).await;
                return;
            }
        };
        let prefix = self.meta.output_prefix.clone();
        let checkpoint_note = if objects.iter().any(|o| o.ends_with(LAST_CHECKPOINT)) {
            format!(
                "; last checkpoint {prefix}{LAST_CHECKPOINT} (step {}): SubmitTraining with resume=true and \
                 output_prefix={prefix:?} continues it",
                report.last_checkpoint_step.unwrap_or(report.last_step)
            )
        } else {
            String::new()
        };
        let end = match stop {
            Some(Stop::Shutdown) => {
                self.meta.recovered = true;
                let msg = format!(
                    "interrupted by the service's shutdown at step {}; runs again when it starts{checkpoint_note}",
                    report.last_step
                );
                self.persist_as(Some(JobState::Queued), Some(msg)).await;
                tracing::info!(job = %self.id(), "job interrupted by the shutdown; recorded to run again");
                return;
            }
            Some(Stop::Cancel) => {
                let how = if killed {
                    "killed after the grace period".to_string()
                } else {
                    describe_exit(&status)
                };
                self.progress(
                    "cancelled",
                    report.last_step,
                    0,
                    "",
                    format!("cancelled at step {} ({how}){checkpoint_note}", report.last_step),
                );
                End::Cancelled
            }
            None if status.success() => match uploaded {
                Ok(objects) => End::Succeeded(self.result(&objects, &report, &out).await.to_string()),
                Err(e) => End::Failed(format!("uploading the outputs: {e}"), tail.text()),
            },
            None => {
                let program = match kind {
                    KIND_TRAINING => "aiaa train",
                    KIND_EXPORT => "aiaa export",
                    _ => "aiaa evaluate",
                };
                let why = tail
                    .last_starting_with("Error: ")
                    .map(|l| format!(": {}", l.trim_start_matches("Error: ")))
                    .unwrap_or_default();
                let error = format!(
                    "{program} ended with {}{why}{checkpoint_note}",
                    describe_exit(&status)
                );
                End::Failed(error, tail.text())
            }
        };
        self.end(end).await;
    }

    /// One line of the child's output.
    async fn on_line(
        &mut self,
        kind: &str,
        pipe: Pipe,
        line: &str,
        report: &mut Report,
        outputs: &mut Outputs,
    ) {
        if kind != KIND_TRAINING || pipe != Pipe::Stdout {
            if pipe == Pipe::Stdout || line.starts_with("FAILED ") {
                let stage = if kind == KIND_EXPORT { "export" } else { "evaluate" };
                self.progress(stage, 0, 0, "", line.to_string());
                self.persist_soon().await;
            }
            return;
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let u = |k: &str| event.get(k).and_then(Value::as_u64).unwrap_or(0);
        let f = |k: &str| event.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        match event.get("event").and_then(Value::as_str).unwrap_or_default() {
            "start" => {
                let total = u("steps_per_epoch") * u("epochs");
                report.last_step = u("start_step");
                self.progress(
                    "train",
                    u("start_step"),
                    total,
                    "steps",
                    format!(
                        "training on {}: {} training and {} validation items, {} steps per epoch, from step {}",
                        event.get("device").and_then(Value::as_str).unwrap_or("?"),
                        u("training_items"),
                        u("validation_items"),
                        u("steps_per_epoch"),
                        u("start_step")
                    ),
                );
                self.persist().await;
            }
            "step" => {
                report.last_step = u("step");
                self.progress(
                    "train",
                    u("step"),
                    u("total_steps"),
                    "steps",
                    format!(
                        "epoch {}/{} step {}/{} loss {:.4} lr {:.3e} {:.2} it/s eta {}",
                        u("epoch"),
                        u("epochs"),
                        u("step"),
                        u("total_steps"),
                        f("loss"),
                        f("lr"),
                        f("it_per_s"),
                        aiaa_train::progress::hms(f("eta_s"))
                    ),
                );
                self.persist_soon().await;
            }
            "validation" => {
                if let Some(Value::Object(m)) = event.get("metrics") {
                    report.metrics = m.clone();
                }
                let metrics: Vec<String> = report
                    .metrics
                    .iter()
                    .map(|(k, v)| format!("{k} {:.4}", v.as_f64().unwrap_or(f64::NAN)))
                    .collect();
                let best = event.get("best").and_then(Value::as_bool).unwrap_or(false);
                let mut job = self.handle.snapshot().progress.unwrap_or_default();
                job.message = format!(
                    "validation at epoch {}: {}{}",
                    u("epoch"),
                    metrics.join(" "),
                    if best { " (best)" } else { "" }
                );
                self.handle.progress(job);
                self.sync(outputs).await;
            }
            "checkpoint" => {
                report.last_checkpoint_step = Some(u("step"));
                self.sync(outputs).await;
                self.persist().await;
            }
            "summary" => report.summary = Some(event),
            _ => {}
        }
    }

    async fn sync(&self, outputs: &mut Outputs) {
        if let Err(e) = outputs.sync(&self.inner.store).await {
            tracing::warn!(job = %self.id(), error = %e, "uploading outputs failed; retried at the next checkpoint");
        }
    }

    /// The result JSON of a successful job.
    async fn result(&self, objects: &[String], report: &Report, out: &Path) -> Value {
        let prefix = &self.meta.output_prefix;
        let mut result = json!({
            "output_prefix": prefix,
            "outputs": objects,
        });
        let has = |name: &str| {
            let path = format!("{prefix}{name}");
            objects.contains(&path).then_some(path)
        };
        match &self.meta.spec {
            Spec::Training { .. } => {
                result["best_checkpoint"] = json!(has(BEST_CHECKPOINT));
                result["last_checkpoint"] = json!(has(LAST_CHECKPOINT));
                result["metrics"] = Value::Object(report.metrics.clone());
                if let Some(s) = &report.summary {
                    for key in [
                        "outcome",
                        "epochs_done",
                        "steps_done",
                        "stopping_metric",
                        "best_metric",
                        "best_epoch",
                        "last_metric",
                        "last_loss",
                        "seconds_total",
                    ] {
                        result[key] = s.get(key).cloned().unwrap_or(Value::Null);
                    }
                }
            }
            Spec::Export { push_to, .. } => {
                result["model"] = json!(objects.iter().find(|o| o.ends_with(".pt")));
                result["config"] = json!(has("config.json"));
                result["pushed_to"] = json!(push_to);
            }
            Spec::Evaluation { .. } => {
                let summary = tokio::fs::read(out.join(EVALUATE_SUMMARY))
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                    .unwrap_or(Value::Null);
                result["summary"] = json!(has(EVALUATE_SUMMARY));
                result["metrics"] = json!({
                    "mean_dice": summary.get("mean_dice").cloned().unwrap_or(Value::Null),
                    "cases": summary.get("cases").cloned().unwrap_or(Value::Null),
                    "succeeded": summary.get("succeeded").cloned().unwrap_or(Value::Null),
                    "failed": summary.get("failed").and_then(Value::as_array).map(Vec::len),
                });
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let job = Job {
            id: "abc".into(),
            kind: KIND_TRAINING.into(),
            state: JobState::Running as i32,
            progress: Some(Progress {
                stage: "train".into(),
                done: 3,
                total: 10,
                unit: "steps".into(),
                message: "epoch 1".into(),
            }),
            created_at: "2025-01-01T00:00:00Z".into(),
            updated_at: "2025-01-01T00:00:01Z".into(),
            ..Default::default()
        };
        let record = Record {
            format: 1,
            job: JobRecord::from(&job),
            meta: Meta {
                spec: Spec::Training {
                    config: SourceSpec::InlineJson("{}".into()),
                    datalist: SourceSpec::Datalist("brain".into()),
                    checkpoint: None,
                    resume: false,
                    overrides: None,
                },
                output_prefix: "jobs/abc/".into(),
                work_dir: "/w/abc".into(),
                pid: Some(42),
                restarts: 1,
                recovered: true,
            },
        };
        let text = serde_json::to_string(&record).unwrap();
        assert!(
            text.contains("\"JOB_STATE_RUNNING\"") && text.contains("\"kind\":\"training\""),
            "{text}"
        );
        let back: Record = serde_json::from_str(&text).unwrap();
        assert_eq!(back, record);
        assert_eq!(Job::from(&back.job), job);
    }

    #[test]
    fn prefixes_and_overrides() {
        assert_eq!(output_prefix("").unwrap(), None);
        assert_eq!(output_prefix("runs/a/").unwrap().as_deref(), Some("runs/a/"));
        assert_eq!(output_prefix("runs/a").unwrap().as_deref(), Some("runs/a/"));
        assert!(output_prefix("../x").is_err());
        let o: Map<String, Value> = serde_json::from_str(r#"{"epochs": 1}"#).unwrap();
        let v = apply_overrides(r#"{"epochs": 600, "seed": 1}"#, Some(&o), "config").unwrap();
        assert_eq!(v, json!({"epochs": 1, "seed": 1}));
        assert!(apply_overrides("[1]", Some(&o), "config").is_err());
    }

    #[test]
    fn export_options() {
        let flags = export_flags(
            &json!({"engine": "SegmentationEngine", "labels": ["brain", "skull"], "thresh": 0.4, "version": "2"}),
            "o",
        )
        .unwrap();
        let flags: Vec<String> = flags.iter().map(|f| f.to_string_lossy().into_owned()).collect();
        assert!(
            flags.windows(2).any(|w| w == ["--labels", "brain,skull"]),
            "{flags:?}"
        );
        assert!(flags.windows(2).any(|w| w == ["--thresh", "0.4"]), "{flags:?}");
        for bad in [
            json!({"model_path": "x"}),
            json!({"labels": "a"}),
            json!({"engine": "Nope"}),
            json!([1]),
        ] {
            assert!(
                matches!(export_flags(&bad, "o"), Err(TrainerError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }

    use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
    use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
    use aiaa_proto::trainer::v1::{Source, source};

    /// Jobs over a local store whose datastore and registry cannot be reached, running
    /// `program` as their child.
    fn jobs(dir: &Path, program: &Path, shutdown: CancellationToken) -> (Jobs, Store) {
        let store = aiaa_runtime::store::open(dir.join("store").to_str().unwrap()).unwrap();
        let nowhere = "http://127.0.0.1:9";
        let fetcher = Fetcher::new(
            DatastoreServiceClient::new(aiaa_runtime::client::lazy(nowhere, None).unwrap()),
            RegistryServiceClient::new(aiaa_runtime::client::lazy(nowhere, None).unwrap()),
            store.clone(),
            1 << 20,
            Some(dir.join("files")),
        );
        let settings = Settings {
            program: program.to_path_buf(),
            device: "cpu".into(),
            log_every: 1,
            grace: Duration::from_secs(5),
            work_root: dir.join("work"),
            api_key: None,
            registry_url: nowhere.into(),
            max_jobs: 1,
        };
        (Jobs::new(store.clone(), fetcher, settings, shutdown), store)
    }

    async fn stored(store: &Store, id: &str) -> Value {
        let bytes = store.get(&record_path(id)).await.unwrap().bytes().await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn until_ended(jobs: &Jobs, id: &str) -> Job {
        let updates = jobs.watch(id).unwrap();
        let last = tokio::time::timeout(Duration::from_secs(30), updates.collect::<Vec<_>>())
            .await
            .unwrap();
        last.last().cloned().unwrap()
    }

    fn running(id: &str, spec: Spec, restarts: u32, dir: &Path) -> Record {
        Record {
            format: 1,
            job: JobRecord::from(&Job {
                id: id.into(),
                kind: spec.kind().into(),
                state: JobState::Running as i32,
                created_at: format!("2025-01-01T00:00:0{restarts}Z"),
                ..Default::default()
            }),
            meta: Meta {
                spec,
                output_prefix: format!("jobs/{id}/"),
                work_dir: dir.join("work").join(id),
                pid: None,
                restarts,
                recovered: false,
            },
        }
    }

    #[tokio::test]
    async fn recovery_queues_jobs_again_and_gives_up_after_repeated_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (jobs, store) = jobs(dir.path(), Path::new("/bin/false"), CancellationToken::new());
        let export = Spec::Export {
            checkpoint: SourceSpec::DatastoreId("runs/model.ckpt".into()),
            options: None,
            precision: "FP32".into(),
            push_to: None,
        };
        write_record(&store, &running("worn", export.clone(), MAX_RESTARTS, dir.path()))
            .await
            .unwrap();
        write_record(&store, &running("again", export.clone(), 0, dir.path()))
            .await
            .unwrap();
        let mut done = running("done", export, 0, dir.path());
        done.job.state = "JOB_STATE_SUCCEEDED".into();
        write_record(&store, &done).await.unwrap();
        assert_eq!(jobs.recover().await.unwrap(), 1);

        let worn = jobs.get("worn").unwrap();
        assert_eq!(worn.state, JobState::Failed as i32);
        assert!(worn.error.contains("restarted 4 times"), "{}", worn.error);
        assert_eq!(stored(&store, "worn").await["job"]["state"], "JOB_STATE_FAILED");
        assert_eq!(jobs.get("done").unwrap().state, JobState::Succeeded as i32);
        // Queued again, run again, and failed for a reason of its own (nothing to fetch from).
        let again = until_ended(&jobs, "again").await;
        assert_eq!(again.state, JobState::Failed as i32, "{again:?}");
        assert!(
            again.error.contains("preparing the job: datastore"),
            "{}",
            again.error
        );
        let rec = stored(&store, "again").await;
        assert_eq!(
            (rec["restarts"].as_u64(), rec["recovered"].as_bool()),
            (Some(1), Some(true))
        );
        assert!(jobs.get("nope").is_err());
    }

    /// Behaves like `aiaa train --progress json`: steps until SIGINT, then writes its last
    /// checkpoint and exits 130; with `--resume` it reports a summary and exits 0. (Python:
    /// its SIGINT handler works even where the test runs with SIGINT ignored, which a shell
    /// `trap` cannot override.)
    const FAKE_TRAIN: &str = r#"#!/usr/bin/env python3
import json, signal, sys, time
args = sys.argv[1:]
out = args[args.index("-r") + 1]
def say(**event):
    print(json.dumps(event), flush=True)
print("args ok", file=sys.stderr, flush=True)
if "--resume" in args:
    say(event="start", device="cpu", training_items=1, validation_items=0, steps_per_epoch=2, epochs=3, start_step=3)
    say(event="summary", outcome="completed", epochs_done=3, steps_done=6)
    sys.exit(0)
def stop(*_):
    with open(out + "/final_model.ckpt", "w") as f:
        f.write("x")
    say(event="checkpoint", kind="last", path=out + "/final_model.ckpt", epoch=1, step=3)
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
say(event="start", device="cpu", training_items=1, validation_items=0, steps_per_epoch=2, epochs=3, start_step=0)
step = 0
while True:
    step += 1
    say(event="step", epoch=1, epochs=3, step=step, total_steps=6, loss=0.5, lr=0.01, it_per_s=1, eta_s=3)
    time.sleep(0.1)
"#;

    fn tiny_train_config() -> Value {
        json!({
            "num_channels": 1, "num_classes": 2, "epochs": 3, "network_input_size": [8, 8, 8],
            "net_config": {"name": "UNet3D", "num_filters": 2, "levels": 2},
            "train": {
                "loss": {"name": "losses.dice_ce_loss"},
                "optimizer": {"name": "Adam", "lr": 1e-2},
                "pre_transforms": [{"name": "transforms.LoadNifty", "fields": ["image", "label"]}]
            }
        })
    }

    #[tokio::test]
    async fn a_shutdown_records_running_jobs_to_continue_from_their_checkpoint() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("fake-aiaa");
        std::fs::write(&program, FAKE_TRAIN).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let files = dir.path().join("files");
        std::fs::create_dir_all(&files).unwrap();
        std::fs::write(files.join("a.nii.gz"), b"not read by the service").unwrap();
        let image = files.join("a.nii.gz").canonicalize().unwrap();
        let shutdown = CancellationToken::new();
        let (jobs, store) = jobs(dir.path(), &program, shutdown.clone());
        let inline = |v: Value| {
            Some(Source {
                kind: Some(source::Kind::InlineJson(v.to_string())),
            })
        };
        let request = TrainingRequest {
            config: inline(tiny_train_config()),
            datalist: inline(json!({"training": [{"image": image, "label": image}]})),
            ..Default::default()
        };
        let job = jobs.submit_training(&request, "test").await.unwrap();
        // Relative paths name datastore items; absolute ones must lie under the file root.
        let elsewhere = TrainingRequest {
            datalist: inline(json!({"training": [{"image": "/etc/passwd", "label": image}]})),
            ..request.clone()
        };
        let other = jobs.submit_training(&elsewhere, "test").await.unwrap();
        let mut updates = Box::pin(jobs.watch(&job.id).unwrap());
        let stepping = async {
            while let Some(j) = updates.next().await {
                if j.progress.is_some_and(|p| p.stage == "train" && p.done >= 2) {
                    return;
                }
            }
            panic!("the job ended before it stepped: {:?}", jobs.get(&job.id));
        };
        tokio::time::timeout(Duration::from_secs(30), stepping)
            .await
            .unwrap_or_else(|_| panic!("no steps: {:?}", jobs.get(&job.id)));
        shutdown.cancel();
        jobs.wait().await;
        let rec = stored(&store, &job.id).await;
        assert_eq!(rec["job"]["state"], "JOB_STATE_QUEUED", "{rec}");
        assert_eq!(
            (rec["recovered"].as_bool(), rec["pid"].as_u64()),
            (Some(true), None)
        );
        assert!(
            store
                .head(&object_store::path::Path::from(format!(
                    "jobs/{}/final_model.ckpt",
                    job.id
                )))
                .await
                .is_ok(),
            "the checkpoint saved at the stop is uploaded"
        );
        assert_eq!(
            stored(&store, &other.id).await["job"]["state"],
            "JOB_STATE_QUEUED"
        );

        // The next start continues it from that checkpoint.
        let (jobs, _) = self::jobs(dir.path(), &program, CancellationToken::new());
        assert_eq!(jobs.recover().await.unwrap(), 2);
        let ended = until_ended(&jobs, &job.id).await;
        assert_eq!(ended.state, JobState::Succeeded as i32, "{ended:?}");
        let result: Value = serde_json::from_str(&ended.result_json).unwrap();
        assert_eq!(result["steps_done"], 6);
        assert_eq!(
            result["last_checkpoint"],
            format!("jobs/{}/final_model.ckpt", job.id).as_str()
        );
        let other = until_ended(&jobs, &other.id).await;
        assert_eq!(other.state, JobState::Failed as i32);
        assert!(
            other.error.contains("outside --trainer-file-root"),
            "{}",
            other.error
        );
    }

    #[test]
    fn train_configs_are_checked_in_the_service() {
        let err = check_train_config(&json!({"epochs": 1, "bogus": 2}), "config").unwrap_err();
        assert!(matches!(err, TrainerError::InvalidRequest(_)), "{err}");
        let recipe = TrainConfig::read(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../recipes/annotation_mri_brain/config_train.json"),
        );
        if recipe.is_ok() {
            let text = std::fs::read_to_string(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../recipes/annotation_mri_brain/config_train.json"),
            )
            .unwrap();
            let v: Value = serde_json::from_str(&text).unwrap();
            check_train_config(&v, "config").unwrap();
        }
    }
}
