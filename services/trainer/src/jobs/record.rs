//! What the service persists of a job: `jobs/<id>/job.json`, the `Job` with its state by
//! name, what the job does ([`Spec`]) and where it works ([`Meta`]).

use std::path::PathBuf;

use aiaa_proto::common::v1::{Job, JobState, Progress};
use aiaa_runtime::store::Store;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{KIND_EVALUATION, KIND_EXPORT, KIND_TRAINING, RECORD_FILE, store_error};
use crate::error::{Result, TrainerError};
use crate::sources::SourceSpec;

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
        /// Export options (JSON object; see `EXPORT_OPTION_KEYS`).
        options: Option<SourceSpec>,
        /// `FP32` or `FP16`.
        precision: String,
        /// `org/team/name:version` to push to.
        push_to: Option<String>,
        /// The pushed version also holds the checkpoint and its train config.
        #[serde(default)]
        with_checkpoint: bool,
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
        /// The interactive click protocol instead of one prediction per case (absent in
        /// records written before it existed).
        #[serde(default)]
        interactive: Option<ClickProtocol>,
    },
}

/// `aiaa evaluate --interactive`'s settings of an evaluation job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClickProtocol {
    /// Corrective clicks per case.
    pub clicks: u32,
    /// `centre` or `jitter`.
    pub rule: String,
    /// The jittered rule's radius (voxels).
    pub jitter: u32,
    /// The jittered rule's seed.
    pub seed: u64,
}

impl Spec {
    /// `Job.kind` of this job.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Spec::Training { .. } => KIND_TRAINING,
            Spec::Export { .. } => KIND_EXPORT,
            Spec::Evaluation { .. } => KIND_EVALUATION,
        }
    }
}

/// `Progress` as persisted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct ProgressRecord {
    pub(super) stage: String,
    pub(super) done: u64,
    pub(super) total: u64,
    pub(super) unit: String,
    pub(super) message: String,
}

/// `Job` as persisted (the state by name, e.g. `JOB_STATE_RUNNING`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct JobRecord {
    pub(super) id: String,
    pub(super) kind: String,
    pub(super) state: String,
    pub(super) progress: Option<ProgressRecord>,
    pub(super) created_at: String,
    pub(super) updated_at: String,
    #[serde(default)]
    pub(super) error: String,
    #[serde(default)]
    pub(super) log_tail: String,
    #[serde(default)]
    pub(super) result_json: String,
    #[serde(default)]
    pub(super) submitted_by: String,
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
pub(super) struct Meta {
    pub(super) spec: Spec,
    /// Where outputs go, ending with '/'.
    pub(super) output_prefix: String,
    /// The job's work folder.
    pub(super) work_dir: PathBuf,
    /// The running child's process id.
    #[serde(default)]
    pub(super) pid: Option<u32>,
    /// Service restarts that interrupted it.
    #[serde(default)]
    pub(super) restarts: u32,
    /// It was interrupted (restart or shutdown): a training continues from its last
    /// checkpoint when there is one.
    #[serde(default)]
    pub(super) recovered: bool,
}

/// `jobs/<id>/job.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Record {
    /// Format version of this file.
    pub(super) format: u32,
    pub(super) job: JobRecord,
    #[serde(flatten)]
    pub(super) meta: Meta,
}

pub(super) fn record_path(id: &str) -> object_store::path::Path {
    object_store::path::Path::from(format!("jobs/{id}/{RECORD_FILE}"))
}

/// Writes `record` whole to `jobs/<id>/job.json`.
pub(super) async fn write_record(store: &Store, record: &Record) -> Result<()> {
    let text = serde_json::to_vec_pretty(record).map_err(|e| TrainerError::Internal(e.to_string()))?;
    let path = record_path(&record.job.id);
    store
        .put(&path, PutPayload::from(text))
        .await
        .map_err(store_error(format!("write {path}")))?;
    Ok(())
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
}
