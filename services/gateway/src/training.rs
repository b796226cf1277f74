//! MONAI Label's train task (`/train/`): fine-tune a served model on the datastore's final
//! labels and serve the result, with the platform's own services.
//!
//! A model is trainable when it was loaded from a registry version that holds a checkpoint
//! and its train config ([`ModelInfo::trainable`]). One task runs at a time (MONAI Label's
//! rule); it goes through these stages, each a job of a service that keeps its own state:
//!
//! 1. `train`: a training job of the trainer service, from the version's train config and
//!    checkpoint, over every image with a `final` label (the datastore item ids; a
//!    `val_split` share of them validates, none when there are too few);
//! 2. `export`: an export job that pushes the best checkpoint as the next version of the
//!    same registry model, with its checkpoint and train config (so it is trainable again);
//! 3. `load`: the inference service loads that version under the model's name; the old one
//!    serves until the new one is ready (no request sees a missing model).
//!
//! The task's record (`GET /train/`) is MONAI Label's: `id`, `status` (`SUBMITTED`,
//! `RUNNING`, `DONE`, `ERROR`, `STOPPED`), `request`, `start_ts`, `end_ts`, `details` (the
//! last lines of progress), `result`. `train_stats` of `/info/` keeps each model's last run.
//! Tasks live in the gateway's memory: a gateway restart forgets them, while the jobs and
//! the published versions stay with the trainer and the registry.

use std::time::Instant;

use aiaa_proto::common::v1::{Job, JobRef, JobState};
use aiaa_proto::inference::v1::{LoadModelRequest, ModelInfo};
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_proto::registry::v1::{ListVersionsRequest, ModelName};
use aiaa_proto::trainer::v1::{ExportRequest, Source, TrainingRequest, source};
use futures::StreamExt;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::backend::{BackendChannel, timed};
use crate::error::{GatewayError, Result, Subject};
use crate::labelstore::{self, FINAL};

/// The options of a train request MONAI Label's clients send, with their defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Epochs of the fine-tune (`max_epochs`).
    pub max_epochs: u64,
    /// Share of the labelled images that validates (`val_split`).
    pub val_split: f64,
    /// Samples per step (`train_batch_size`); `None` keeps the train config's.
    pub batch_size: Option<u64>,
}

impl TrainOptions {
    /// The defaults `/info/` shows under `trainers.<model>.config`.
    pub fn defaults_json() -> Value {
        json!({"max_epochs": 10, "val_split": 0.2, "train_batch_size": 1})
    }

    /// Reads the request's params (unknown keys, such as `name` or `device`, are kept in
    /// the task's `request` but do not change the run).
    pub fn parse(params: &Map<String, Value>) -> Result<Self> {
        let bad = |m: String| GatewayError::BadRequest(m);
        let max_epochs = match params.get("max_epochs") {
            None | Some(Value::Null) => 10,
            Some(v) => v.as_u64().filter(|n| (1..=100_000).contains(n)).ok_or_else(|| {
                bad(format!(
                    "max_epochs must be a whole number from 1 to 100000, not {v}"
                ))
            })?,
        };
        let val_split = match params.get("val_split") {
            None | Some(Value::Null) => 0.2,
            Some(v) => v
                .as_f64()
                .filter(|x| (0.0..1.0).contains(x))
                .ok_or_else(|| bad(format!("val_split must be a number in [0, 1), not {v}")))?,
        };
        let batch_size = match params.get("train_batch_size") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|n| (1..=1024).contains(n)).ok_or_else(|| {
                bad(format!(
                    "train_batch_size must be a whole number from 1 to 1024, not {v}"
                ))
            })?),
        };
        Ok(Self {
            max_epochs,
            val_split,
            batch_size,
        })
    }
}

/// The training and validation pairs (datastore item ids) of the labelled images: the last
/// `floor(n * val_split)` by id validate, at least one image trains.
pub fn split(pairs: Vec<(String, String)>, val_split: f64) -> (Vec<Value>, Vec<Value>) {
    let n = pairs.len();
    let val = ((n as f64 * val_split).floor() as usize).min(n.saturating_sub(1));
    let as_json = |(image, label): (String, String)| json!({"image": image, "label": label});
    let mut all: Vec<Value> = pairs.into_iter().map(as_json).collect();
    let validation = all.split_off(n - val);
    (all, validation)
}

/// Checks that `model` can be trained now and starts its task in the background (under the
/// caller's credentials); returns the task as MONAI Label does.
pub async fn start(app: &App, model: &str, params: Map<String, Value>) -> Result<Value> {
    let (_, _) = app.backends.training()?;
    let info = crate::routes::models::fetch(app, "", "")
        .await?
        .into_iter()
        .find(|m| m.name == model)
        .ok_or_else(|| {
            GatewayError::NotFound(format!("model {model:?} is not served (GET /info/ lists them)"))
        })?;
    if !info.trainable {
        return Err(GatewayError::BadRequest(format!(
            "model {model:?} cannot be trained here: only models loaded from a registry version that holds \
             a checkpoint and its train config are (GET /info/ lists them under trainers)"
        )));
    }
    let options = TrainOptions::parse(&params)?;
    let objects = labelstore::objects(app).await?;
    let pairs: Vec<(String, String)> = objects
        .values()
        .filter_map(|o| Some((o.image.item_id.clone(), o.labels.get(FINAL)?.item_id.clone())))
        .collect();
    if pairs.is_empty() {
        return Err(GatewayError::BadRequest(
            "no image of the datastore has a final label yet: save one (PUT /datastore/label?tag=final) and train again"
                .into(),
        ));
    }
    let mut request = json!({"model": model});
    for (k, v) in &params {
        request[k] = v.clone();
    }
    let task = app.training.begin(model, request)?;
    let answer = task.json();
    let app2 = app.clone();
    let id = task.id.clone();
    tokio::spawn(crate::caller::inherit(async move {
        let outcome = run(&app2, &id, &info, &options, pairs).await;
        if let Err(e) = &outcome {
            tracing::warn!(task = %id, error = %e, "train task failed");
        }
        app2.training.finish(&id, outcome);
    }));
    Ok(answer)
}

/// Stops the running task (its job is cancelled: a training saves its last checkpoint);
/// `None` when nothing runs.
pub async fn stop(app: &App) -> Result<Option<Value>> {
    let Some((task, job)) = app.training.stop_running() else {
        return Ok(None);
    };
    if let Some(id) = job {
        let (mut trainer, _) = app.backends.training()?;
        timed("trainer", app.backends.timeout, async {
            trainer
                .cancel_job(JobRef { id })
                .await
                .map_err(|s| GatewayError::from_status("trainer", Subject::Other, &s))
        })
        .await?;
    }
    Ok(Some(task))
}

fn registry_source(reference: &str) -> Option<Source> {
    Some(Source {
        kind: Some(source::Kind::RegistryRef(reference.to_string())),
    })
}

fn trainer_err(s: tonic::Status) -> String {
    format!("trainer: {}", s.message())
}

/// The stages of a task; an error is the task's error line.
async fn run(
    app: &App,
    id: &str,
    info: &ModelInfo,
    options: &TrainOptions,
    pairs: Vec<(String, String)>,
) -> std::result::Result<Value, String> {
    let started = Instant::now();
    let start_ts = labelstore::now_ts();
    let (mut trainer, mut registry) = app.backends.training().map_err(|e| e.to_string())?;
    let (training, validation) = split(pairs, options.val_split);
    let mut overrides = json!({"epochs": options.max_epochs});
    if !validation.is_empty() {
        overrides["num_training_epoch_per_valid"] = json!(1);
    }
    if let Some(b) = options.batch_size {
        overrides["batch_size"] = json!(b);
    }
    let n_train = training.len();
    let datalist = json!({"training": training, "validation": validation});
    let reference = info.registry_ref.clone();
    app.training.update(id, |t| {
        t.status = "RUNNING";
        t.note(format!(
            "fine-tuning {reference} on {n_train} labelled image(s), {} validating, {} epochs",
            datalist["validation"].as_array().map_or(0, Vec::len),
            options.max_epochs
        ));
    });
    let job = trainer
        .submit_training(TrainingRequest {
            config: registry_source(&reference),
            datalist: Some(Source {
                kind: Some(source::Kind::InlineJson(datalist.to_string())),
            }),
            checkpoint: registry_source(&reference),
            output_prefix: String::new(),
            resume: false,
            overrides_json: overrides.to_string(),
        })
        .await
        .map_err(trainer_err)?
        .into_inner();
    let trained = follow(app, id, job).await?;
    let result: Value = serde_json::from_str(&trained.result_json).unwrap_or(Value::Null);
    let best = result["best_checkpoint"]
        .as_str()
        .ok_or_else(|| format!("training job {} wrote no best checkpoint: {result}", trained.id))?
        .to_string();

    let (name, _) = split_ref(&reference)?;
    let next = next_version(&mut registry, &name).await?;
    let new_ref = format!("{}/{}/{}:{next}", name.org, name.team, name.name);
    app.training
        .update(id, |t| t.note(format!("publishing {new_ref}")));
    let export = trainer
        .submit_export(ExportRequest {
            checkpoint: Some(Source {
                kind: Some(source::Kind::TrainerObject(best)),
            }),
            config: Some(Source {
                kind: Some(source::Kind::InlineJson(
                    json!({
                        "engine": info.engine,
                        "labels": info.labels,
                        "description": info.description,
                        "padding": info.padding,
                    })
                    .to_string(),
                )),
            }),
            precision: "fp32".into(),
            push_to: new_ref.clone(),
            with_checkpoint: true,
        })
        .await
        .map_err(trainer_err)?
        .into_inner();
    follow(app, id, export).await?;
    if app.training.stopped(id) {
        return Err("stopped".into());
    }

    app.training
        .update(id, |t| t.note(format!("loading {new_ref} as {}", info.name)));
    let mut inference = app.backends.inference().map_err(|e| e.to_string())?;
    let loaded = inference
        .load_model(LoadModelRequest {
            name: info.name.clone(),
            source: Some(aiaa_proto::inference::v1::load_model_request::Source::RegistryRef(new_ref.clone())),
            engine: String::new(),
            labels: Vec::new(),
        })
        .await
        .map_err(|s| format!("inference service: loading {new_ref}: {}", s.message()))?
        .into_inner();
    app.training.update(id, |t| {
        t.note(format!("{} serves version {}", loaded.name, loaded.version))
    });

    let total = started.elapsed().as_secs();
    let stats = json!({
        "epoch": result["epochs_done"],
        "total_epochs": options.max_epochs,
        "best_metric": result["best_metric"],
        "key_metric_name": result["stopping_metric"],
        "last_loss": result["last_loss"],
        "start_ts": start_ts,
        "total_time": humantime::format_duration(std::time::Duration::from_secs(total)).to_string(),
        "training_job": trained.id,
        "version": loaded.version,
        "registry_ref": new_ref,
    });
    app.training.set_stats(&info.name, stats.clone());
    Ok(json!({
        "model": info.name,
        "version": loaded.version,
        "registry_ref": new_ref,
        "train": result,
        "stats": stats,
    }))
}

/// `org/team/name:version` split into the model and the version.
pub fn split_ref(reference: &str) -> std::result::Result<(ModelName, String), String> {
    let (model, version) = reference
        .rsplit_once(':')
        .ok_or_else(|| format!("registry reference {reference:?} has no version"))?;
    let parts: Vec<&str> = model.split('/').collect();
    let [org, team, name] = parts[..] else {
        return Err(format!(
            "registry reference {reference:?} is not org/team/name:version"
        ));
    };
    Ok((
        ModelName {
            org: org.into(),
            team: team.into(),
            name: name.into(),
        },
        version.to_string(),
    ))
}

/// One past the highest whole-number version of `name` in the registry (1 for none).
pub async fn next_version(
    registry: &mut RegistryServiceClient<BackendChannel>,
    name: &ModelName,
) -> std::result::Result<String, String> {
    let versions = registry
        .list_versions(ListVersionsRequest {
            model: Some(name.clone()),
        })
        .await
        .map_err(|s| format!("registry: {}", s.message()))?
        .into_inner()
        .versions;
    let highest = versions
        .iter()
        .filter_map(|v| v.version.parse::<u64>().ok())
        .max();
    Ok((highest.unwrap_or(0) + 1).to_string())
}

/// Follows a job to its end, noting its progress in the task; its final state unless it
/// succeeded.
async fn follow(app: &App, id: &str, job: Job) -> std::result::Result<Job, String> {
    let (mut trainer, _) = app.backends.training().map_err(|e| e.to_string())?;
    let job_id = job.id.clone();
    app.training.update(id, |t| {
        t.job = Some(job_id.clone());
        t.note(format!("{} job {job_id} queued", job.kind));
    });
    // The stop may have come between the submission and now.
    if app.training.stopped(id) {
        let _ = trainer.cancel_job(JobRef { id: job_id.clone() }).await;
    }
    let mut stream = trainer
        .watch_job(JobRef { id: job_id.clone() })
        .await
        .map_err(trainer_err)?
        .into_inner();
    let mut last = job;
    while let Some(next) = stream.next().await {
        let j = next.map_err(trainer_err)?;
        if let Some(p) = &j.progress
            && !p.message.is_empty()
        {
            let line = format!("{}: {}", j.kind, p.message);
            app.training.update(id, |t| t.note(line));
        }
        last = j;
    }
    match JobState::try_from(last.state).unwrap_or(JobState::Unspecified) {
        JobState::Succeeded => Ok(last),
        JobState::Cancelled => Err(format!("{} job {job_id} was cancelled", last.kind)),
        JobState::Failed => Err(format!("{} job {job_id} failed: {}", last.kind, last.error)),
        other => Err(format!(
            "{} job {job_id} ended {}",
            last.kind,
            other.as_str_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("i{i}"), format!("l{i}"))).collect()
    }

    #[test]
    fn the_split_keeps_one_image_training() {
        let (t, v) = split(pairs(1), 0.2);
        assert_eq!((t.len(), v.len()), (1, 0));
        let (t, v) = split(pairs(10), 0.2);
        assert_eq!((t.len(), v.len()), (8, 2));
        assert_eq!(v[0]["image"], "i8");
        let (t, v) = split(pairs(2), 0.9);
        assert_eq!((t.len(), v.len()), (1, 1));
    }

    #[test]
    fn options_are_checked_by_name() {
        let o = TrainOptions::parse(&Map::new()).unwrap();
        assert_eq!(o.max_epochs, 10);
        let m = |v: Value| v.as_object().unwrap().clone();
        let o = TrainOptions::parse(&m(json!({"max_epochs": 3, "val_split": 0.0, "name": "x"}))).unwrap();
        assert_eq!((o.max_epochs, o.val_split, o.batch_size), (3, 0.0, None));
        for bad in [
            json!({"max_epochs": 0}),
            json!({"val_split": 1.5}),
            json!({"train_batch_size": "2"}),
        ] {
            let e = TrainOptions::parse(&m(bad.clone())).unwrap_err().to_string();
            let key = bad.as_object().unwrap().keys().next().unwrap().clone();
            assert!(e.contains(&key), "{e}");
        }
    }
}
