//! Conversion jobs (the seed's `tlt-dataconvert`, as a job): every item under a source
//! prefix is downloaded into a temporary folder, converted with [`aiaa_imaging::convert`]
//! (DICOM series, NIfTI, MHA/MHD to NIfTI or MHA/MHD, optionally resampled to an isotropic
//! spacing; labels with nearest neighbour), and the results are uploaded under the output
//! prefix, mirroring the source tree. Jobs wait for one of `--max-convert-jobs` slots, check
//! for cancellation between files, and end CANCELLED when the datastore shuts down.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aiaa_imaging::ReadOptions;
use aiaa_imaging::convert::{self, ConvertOptions, INPUT_SUFFIXES, Input, OUTPUT_SUFFIXES};
use aiaa_proto::common::v1::{Job, ListJobsRequest, Progress};
use aiaa_proto::datastore::v1::ConvertRequest;
use aiaa_runtime::jobs::{JobHandle, JobTable};
use aiaa_runtime::names;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::error::{DatastoreError, Result};
use crate::items::{Items, Kind, StoredItem};

/// The job kind in `Job.kind`.
pub const JOB_KIND: &str = "convert";

/// Lines of the job log kept for a failed job's `log_tail`.
const LOG_TAIL_LINES: usize = 20;

/// A validated conversion request.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Kind of the sources (and of the outputs).
    pub kind: Kind,
    /// The prefix as asked.
    pub source_prefix: String,
    /// The folder the source tree is mirrored from (the prefix up to its last '/').
    pub source_root: String,
    /// Output ids start with this (always ends with '/').
    pub output_prefix: String,
    /// Output suffix, e.g. ".nii.gz".
    pub output_extension: String,
    /// Isotropic spacing in mm, if resampling.
    pub resolution: Option<f64>,
    /// Replace existing outputs.
    pub overwrite: bool,
    /// Every item under the prefix (companions like `.raw` included).
    pub sources: Vec<StoredItem>,
}

/// The conversion jobs of one datastore.
#[derive(Clone)]
pub struct Converter {
    items: Items,
    jobs: JobTable,
    slots: Arc<Semaphore>,
    work_dir: Option<PathBuf>,
    max_image_bytes: u64,
    shutdown: CancellationToken,
}

fn invalid(msg: String) -> DatastoreError {
    DatastoreError::InvalidArgument(msg)
}

/// Whether the item is an input the imaging conversion reads (by name, or DICOM by bytes).
fn convertible(item: &StoredItem) -> bool {
    input_suffix(&local_name(item)).is_some()
}

/// The suffix of `name` among [`INPUT_SUFFIXES`] (`.nii.gz` before `.nii`).
fn input_suffix(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let mut found: Option<&'static str> = None;
    for suffix in INPUT_SUFFIXES {
        if lower.ends_with(suffix) && found.is_none_or(|f| suffix.len() > f.len()) {
            found = Some(suffix);
        }
    }
    found
}

/// The file name an item gets in the work folder: its id, plus `.dcm` for DICOM detected
/// from the bytes under another name.
fn local_name(item: &StoredItem) -> String {
    if item.format == "dicom" && input_suffix(&item.id).is_none() {
        format!("{}.dcm", item.id)
    } else {
        item.id.clone()
    }
}

impl Converter {
    /// Jobs over `items`, at most `max_jobs` running at once, working in `work_dir` (the
    /// system's temporary folder when `None`), each image decoded to at most
    /// `max_image_bytes`, all cancelled when `shutdown` is.
    pub fn new(
        items: Items,
        max_jobs: usize,
        work_dir: Option<PathBuf>,
        max_image_bytes: u64,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            items,
            jobs: JobTable::new(),
            slots: Arc::new(Semaphore::new(max_jobs.max(1))),
            work_dir,
            max_image_bytes,
            shutdown,
        }
    }

    /// Validates a request and lists its sources.
    pub async fn plan(&self, req: &ConvertRequest) -> Result<Plan> {
        let kind = Kind::from_proto(req.kind, "kind")?;
        if req.source_prefix.is_empty() {
            return Err(invalid("source_prefix is missing".into()));
        }
        names::relative_id("source_prefix", req.source_prefix.trim_end_matches('/'))?;
        if req.output_prefix.is_empty() {
            return Err(invalid("output_prefix is missing".into()));
        }
        let output_folder = req.output_prefix.trim_end_matches('/');
        names::relative_id("output_prefix", output_folder)?;
        let extension = req.output_extension.to_ascii_lowercase();
        if !OUTPUT_SUFFIXES.contains(&extension.as_str()) {
            return Err(invalid(format!(
                "output_extension {:?} is not one of {}",
                req.output_extension,
                OUTPUT_SUFFIXES.join(", ")
            )));
        }
        if !req.resolution.is_finite() || req.resolution < 0.0 {
            return Err(invalid(format!(
                "resolution {} must be a finite number of mm, >= 0 (0 keeps the spacing)",
                req.resolution
            )));
        }
        let sources = self.items.list(kind, &req.source_prefix).await?;
        if sources.is_empty() {
            return Err(DatastoreError::NotFound(format!(
                "no {} items have ids starting with {:?}",
                kind.noun(),
                req.source_prefix
            )));
        }
        if !sources.iter().any(convertible) {
            return Err(invalid(format!(
                "none of the {} {} items under {:?} is a convertible file ({})",
                sources.len(),
                kind.noun(),
                req.source_prefix,
                INPUT_SUFFIXES.join(", ")
            )));
        }
        let source_root = match req.source_prefix.rfind('/') {
            Some(pos) => req.source_prefix[..=pos].to_string(),
            None => String::new(),
        };
        Ok(Plan {
            kind,
            source_prefix: req.source_prefix.clone(),
            source_root,
            output_prefix: format!("{output_folder}/"),
            output_extension: extension,
            resolution: (req.resolution > 0.0).then_some(req.resolution),
            overwrite: req.overwrite,
            sources,
        })
    }

    /// Validates a request and starts its job.
    pub async fn submit(&self, req: &ConvertRequest) -> Result<Job> {
        let plan = self.plan(req).await?;
        let handle = self.jobs.create(JOB_KIND);
        let job = handle.snapshot();
        tracing::info!(job = %job.id, prefix = %plan.source_prefix, sources = plan.sources.len(), "convert job queued");
        let this = self.clone();
        tokio::spawn(async move { this.run(handle, plan).await });
        Ok(job)
    }

    /// A job's state.
    pub fn get(&self, id: &str) -> Result<Job> {
        self.jobs.get(id).ok_or_else(|| job_not_found(id))
    }

    /// A job's state, then every change until it ends.
    pub fn watch(&self, id: &str) -> Result<impl Stream<Item = Job> + Send + 'static> {
        self.jobs.watch(id).ok_or_else(|| job_not_found(id))
    }

    /// Asks a job to stop.
    pub fn cancel(&self, id: &str) -> Result<Job> {
        self.jobs.cancel(id).ok_or_else(|| job_not_found(id))
    }

    /// Jobs matching the filters, newest first.
    pub fn list(&self, req: &ListJobsRequest) -> Vec<Job> {
        self.jobs.list(req)
    }

    async fn run(self, handle: JobHandle, plan: Plan) {
        let cancel = handle.cancel_token().clone();
        // Shutdown cancels every job.
        let stop = {
            let cancel = cancel.clone();
            let shutdown = self.shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = shutdown.cancelled() => cancel.cancel(),
                    _ = cancel.cancelled() => {}
                }
            })
        };
        let slot = tokio::select! {
            slot = self.slots.clone().acquire_owned() => slot.ok(),
            _ = cancel.cancelled() => None,
        };
        let mut log = Vec::new();
        let outcome = match slot {
            Some(_slot) => {
                handle.running();
                self.work(&handle, &plan, &mut log).await
            }
            None => Err(JobEnd::Cancelled),
        };
        stop.abort();
        match outcome {
            Ok(result) => {
                tracing::info!(job = handle.id(), "convert job succeeded");
                handle.succeed(result.to_string());
            }
            Err(JobEnd::Cancelled) => {
                let why = if self.shutdown.is_cancelled() {
                    "the datastore is shutting down"
                } else {
                    "a client"
                };
                tracing::info!(job = handle.id(), "convert job cancelled by {why}");
                handle.cancelled();
            }
            Err(JobEnd::Failed(message)) => {
                tracing::warn!(job = handle.id(), error = %message, "convert job failed");
                log.push(format!("error: {message}"));
                let tail = log[log.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
                handle.fail(message, tail);
            }
        }
    }

    /// Runs the job in a temporary work folder; its path never reaches the job's error or
    /// log (clients see item ids, not the server's folders).
    async fn work(
        &self,
        handle: &JobHandle,
        plan: &Plan,
        log: &mut Vec<String>,
    ) -> Result<serde_json::Value, JobEnd> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("aiaa-convert-");
        let tmp = match &self.work_dir {
            Some(dir) => builder.tempdir_in(dir),
            None => builder.tempdir(),
        }
        .map_err(|e| JobEnd::Failed(format!("create a work folder: {e}")))?;
        let outcome = self.work_in(handle, plan, log, tmp.path()).await;
        for line in log.iter_mut() {
            *line = redact(line, tmp.path());
        }
        outcome.map_err(|e| match e {
            JobEnd::Failed(message) => JobEnd::Failed(redact(&message, tmp.path())),
            other => other,
        })
    }

    async fn work_in(
        &self,
        handle: &JobHandle,
        plan: &Plan,
        log: &mut Vec<String>,
        work: &Path,
    ) -> Result<serde_json::Value, JobEnd> {
        let cancel = handle.cancel_token().clone();
        let check = |c: &CancellationToken| {
            if c.is_cancelled() {
                Err(JobEnd::Cancelled)
            } else {
                Ok(())
            }
        };
        let in_dir = work.join("in");
        let out_dir = work.join("out");

        // 1. Download.
        let total = plan.sources.len() as u64;
        let mut source_of: HashMap<PathBuf, String> = HashMap::new();
        let mut suffixes = BTreeSet::new();
        for (done, item) in plan.sources.iter().enumerate() {
            check(&cancel)?;
            let name = local_name(item);
            let rel = name.strip_prefix(plan.source_root.as_str()).unwrap_or(&name);
            let local = in_dir.join(rel);
            self.download(plan.kind, &item.id, &local).await?;
            if let Some(suffix) = input_suffix(&name) {
                suffixes.insert(suffix);
            }
            source_of.insert(local, item.id.clone());
            handle.progress(progress("download", done as u64 + 1, total, "files", &item.id));
        }
        log.push(format!("downloaded {total} items under {:?}", plan.source_prefix));

        // 2. Plan the conversion per input suffix (the imaging planner takes one at a time).
        let mut tasks: Vec<(Input, PathBuf, ConvertOptions)> = Vec::new();
        let mut skipped = Vec::new();
        for suffix in suffixes {
            let options = ConvertOptions {
                input_dir: in_dir.clone(),
                output_dir: out_dir.clone(),
                input_suffix: suffix.to_string(),
                output_suffix: plan.output_extension.clone(),
                spacing: plan.resolution.map(|r| [r; 3]),
                label: plan.kind == Kind::Label,
                overwrite: true,
                read: ReadOptions {
                    max_bytes: self.max_image_bytes,
                },
            };
            let planned = {
                let options = options.clone();
                tokio::task::spawn_blocking(move || convert::plan(&options))
                    .await
                    .map_err(|e| JobEnd::Failed(format!("conversion planner: {e}")))?
                    .map_err(|e| {
                        JobEnd::Failed(format!(
                            "plan {suffix} inputs: {}",
                            strip(&e.to_string(), &in_dir)
                        ))
                    })?
            };
            let (jobs, skip) = planned;
            for (path, why) in skip {
                let source = source_id(&source_of, &in_dir, &path);
                log.push(format!("skipped {source}: {why}"));
                skipped.push(json!({"source": source, "reason": why}));
            }
            for (input, output) in jobs {
                tasks.push((input, output, options.clone()));
            }
        }
        if tasks.is_empty() {
            return Err(JobEnd::Failed(format!(
                "nothing to convert under {:?}",
                plan.source_prefix
            )));
        }

        // 3. Map outputs to item ids; refuse clashes and (without overwrite) existing items.
        let mut outputs = Vec::with_capacity(tasks.len());
        let mut seen = BTreeSet::new();
        for (input, output, _) in &tasks {
            let rel = output
                .strip_prefix(&out_dir)
                .map_err(|_| JobEnd::Failed("an output fell outside the work folder".into()))?;
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let id = format!("{}{}", plan.output_prefix, rel.join("/"));
            Items::check_id(plan.kind, &id).map_err(|e| JobEnd::Failed(e.to_string()))?;
            let source = match input {
                Input::File(p) => source_id(&source_of, &in_dir, p),
                Input::Series(s) => {
                    let first = s.files.first().map(PathBuf::as_path).unwrap_or(Path::new(""));
                    let id = source_id(&source_of, &in_dir, first);
                    id.rsplit_once('/').map_or(id.clone(), |(dir, _)| dir.to_string())
                }
            };
            if !seen.insert(id.clone()) {
                return Err(JobEnd::Failed(format!(
                    "two sources map to the output {} {id:?}",
                    plan.kind.noun()
                )));
            }
            if !plan.overwrite && self.items.stat(plan.kind, &id).await.is_ok() {
                return Err(JobEnd::Failed(format!(
                    "output {} {id:?} exists (set overwrite to replace it)",
                    plan.kind.noun()
                )));
            }
            outputs.push((source, id, output.clone()));
        }

        // 4. Convert, one file at a time, checking for cancellation in between.
        let total = tasks.len() as u64;
        let converted = {
            let handle = handle.clone();
            let cancel = cancel.clone();
            let in_dir = in_dir.clone();
            tokio::task::spawn_blocking(move || -> Result<(), JobEnd> {
                for (done, (input, output, options)) in tasks.iter().enumerate() {
                    if cancel.is_cancelled() {
                        return Err(JobEnd::Cancelled);
                    }
                    convert::convert_one(input, output, options).map_err(|e| {
                        JobEnd::Failed(format!("convert: {}", strip(&e.to_string(), &in_dir)))
                    })?;
                    let shown = input
                        .path()
                        .strip_prefix(&in_dir)
                        .unwrap_or(input.path())
                        .display()
                        .to_string();
                    handle.progress(progress("convert", done as u64 + 1, total, "files", &shown));
                }
                Ok(())
            })
            .await
            .map_err(|e| JobEnd::Failed(format!("conversion worker: {e}")))?
        };
        converted?;
        log.push(format!("converted {total} inputs"));

        // 5. Upload.
        let mut results = Vec::with_capacity(outputs.len());
        for (done, (source, id, output)) in outputs.iter().enumerate() {
            check(&cancel)?;
            let file = tokio::fs::File::open(output)
                .await
                .map_err(|e| JobEnd::Failed(format!("open the converted {id:?}: {e}")))?;
            let body = tokio_util::io::ReaderStream::with_capacity(file, aiaa_proto::CHUNK_SIZE)
                .map_err(|e| DatastoreError::Internal(format!("read a converted file: {e}")));
            let metadata = HashMap::from([
                ("converted_from".to_string(), source.clone()),
                ("convert_job".to_string(), handle.id().to_string()),
            ]);
            let stored = self
                .items
                .put(
                    plan.kind,
                    id,
                    &metadata,
                    &crate::blob::Expect::default(),
                    body.boxed(),
                )
                .await
                .map_err(|e| JobEnd::Failed(e.to_string()))?;
            handle.progress(progress("upload", done as u64 + 1, total, "files", id));
            log.push(format!("{source} -> {id}"));
            results
                .push(json!({"source": source, "output": id, "size": stored.size, "sha256": stored.sha256}));
        }
        Ok(json!({"outputs": results, "skipped": skipped}))
    }

    async fn download(&self, kind: Kind, id: &str, local: &Path) -> Result<(), JobEnd> {
        let fail = |e: String| JobEnd::Failed(format!("download {} {id:?}: {e}", kind.noun()));
        if let Some(dir) = local.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| fail(e.to_string()))?;
        }
        let (_, mut bytes) = self.items.open(kind, id).await.map_err(|e| fail(e.to_string()))?;
        let mut file = tokio::fs::File::create(local)
            .await
            .map_err(|e| fail(e.to_string()))?;
        while let Some(piece) = bytes.next().await {
            let piece: Bytes = piece.map_err(|e| fail(e.to_string()))?;
            file.write_all(&piece).await.map_err(|e| fail(e.to_string()))?;
        }
        file.flush().await.map_err(|e| fail(e.to_string()))?;
        Ok(())
    }
}

/// How a job's work ended when it did not succeed.
enum JobEnd {
    Cancelled,
    Failed(String),
}

fn job_not_found(id: &str) -> DatastoreError {
    DatastoreError::NotFound(format!("job {id:?} not found"))
}

fn progress(stage: &str, done: u64, total: u64, unit: &str, message: &str) -> Progress {
    Progress {
        stage: stage.into(),
        done,
        total,
        unit: unit.into(),
        message: message.into(),
    }
}

/// The item id a downloaded file came from.
fn source_id(source_of: &HashMap<PathBuf, String>, in_dir: &Path, path: &Path) -> String {
    source_of
        .get(path)
        .cloned()
        .unwrap_or_else(|| path.strip_prefix(in_dir).unwrap_or(path).display().to_string())
}

/// Error messages without the temporary folder's path.
fn strip(message: &str, in_dir: &Path) -> String {
    let root = in_dir.display().to_string();
    message.replace(&format!("{root}/"), "").replace(&root, "")
}

/// `message` with the work folder's paths taken out: inputs and outputs by their paths
/// relative to the source and output folders, anything else in it as `<work folder>`.
fn redact(message: &str, work: &Path) -> String {
    let root = work.display().to_string();
    message
        .replace(&format!("{root}/in/"), "")
        .replace(&format!("{root}/out/"), "")
        .replace(&root, "<work folder>")
}
