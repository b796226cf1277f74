//! Requests checked and queued: each `Submit*` is checked entirely (names, JSON, an inline
//! train config as `aiaa train` would read it, export options, the output prefix) before
//! the job is recorded QUEUED and its worker started.

use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;

use aiaa_proto::common::v1::{Job, JobState, Progress};
use aiaa_proto::trainer::v1::{EvaluationRequest, ExportRequest, TrainingRequest};
use aiaa_runtime::names;
use aiaa_train::trainer::LAST_CHECKPOINT;
use aiaa_train::{TrainConfig, TrainError};
use object_store::ObjectStoreExt;
use serde_json::{Map, Value};

use super::driver::Ctx;
use super::record::{ClickProtocol, JobRecord, Meta, Record, Spec, write_record};
use super::{Jobs, invalid, store_error};
use crate::error::{Result, TrainerError};
use crate::sources::{RegistryRef, SourceSpec};

/// The keys export options may have.
const EXPORT_OPTION_KEYS: &[&str] = &["engine", "padding", "labels", "description", "version", "thresh"];

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
pub(super) fn apply_overrides(
    text: &str,
    overrides: Option<&Map<String, Value>>,
    what: &str,
) -> Result<Value> {
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
pub(super) fn check_train_config(config: &Value, what: &str) -> Result<()> {
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
pub(super) fn export_flags(options: &Value, what: &str) -> Result<Vec<OsString>> {
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
pub(super) fn option_version(options: &Value) -> Option<&str> {
    options.get("version").and_then(Value::as_str)
}

impl Jobs {
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
        if req.with_checkpoint && req.push_to.trim().is_empty() {
            return Err(invalid(
                "with_checkpoint adds the checkpoint to the pushed version: it needs push_to",
            ));
        }
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
                with_checkpoint: req.with_checkpoint,
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
        let interactive = click_protocol(req)?;
        self.create(
            Spec::Evaluation {
                model,
                config,
                datalist,
                nsd_tolerance_mm: nsd,
                interactive,
            },
            None,
            submitted_by,
        )
        .await
    }
}

/// Most corrective clicks an interactive evaluation may ask for per case.
const MAX_CLICKS: u32 = 100;
/// Largest radius of the jittered click rule (voxels).
const MAX_JITTER: u32 = 64;

/// The interactive protocol of an evaluation request (`None`: the standard evaluation).
fn click_protocol(req: &EvaluationRequest) -> Result<Option<ClickProtocol>> {
    let rule = req.click_rule.trim();
    if req.interactive_clicks == 0 {
        if !rule.is_empty() || req.click_jitter != 0 {
            return Err(invalid(
                "click_rule and click_jitter apply to interactive evaluations only (interactive_clicks > 0)",
            ));
        }
        return Ok(None);
    }
    if req.interactive_clicks > MAX_CLICKS {
        return Err(invalid(format!(
            "interactive_clicks {} is more than {MAX_CLICKS}",
            req.interactive_clicks
        )));
    }
    let rule = match rule {
        "" | "centre" => "centre",
        "jitter" => "jitter",
        other => {
            return Err(invalid(format!(
                "click_rule {other:?} is not a rule: use centre or jitter"
            )));
        }
    };
    if req.click_jitter > MAX_JITTER {
        return Err(invalid(format!(
            "click_jitter {} is more than {MAX_JITTER} voxels",
            req.click_jitter
        )));
    }
    Ok(Some(ClickProtocol {
        clicks: req.interactive_clicks,
        rule: rule.to_string(),
        jitter: if req.click_jitter == 0 {
            2
        } else {
            req.click_jitter
        },
        seed: req.seed,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::*;

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
    fn click_protocols_are_checked() {
        let req = |clicks, rule: &str, jitter| EvaluationRequest {
            interactive_clicks: clicks,
            click_rule: rule.into(),
            click_jitter: jitter,
            seed: 7,
            ..Default::default()
        };
        assert_eq!(click_protocol(&req(0, "", 0)).unwrap(), None);
        let p = click_protocol(&req(5, "", 0)).unwrap().unwrap();
        assert_eq!((p.clicks, p.rule.as_str(), p.jitter, p.seed), (5, "centre", 2, 7));
        let p = click_protocol(&req(3, "jitter", 4)).unwrap().unwrap();
        assert_eq!((p.rule.as_str(), p.jitter), ("jitter", 4));
        for (bad, says) in [
            (req(0, "jitter", 0), "interactive_clicks > 0"),
            (req(101, "", 0), "more than 100"),
            (req(2, "random", 0), "\"random\" is not a rule"),
            (req(2, "jitter", 65), "more than 64 voxels"),
        ] {
            let err = click_protocol(&bad).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
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
