//! `/scoring/`: MONAI Label's scoring tasks. `dice` scores annotator effort as MONAI Label
//! does: for every image holding both a `y` label (tag `final` by default) and a `y_pred`
//! label (tag `original`: the model's prediction stored by `save_label`), the Dice of their
//! foregrounds (voxels > 0), written into the image's info as `dice`. Labels on different
//! grids are skipped with a line in the task's details. `epistemic` scores a segmentation
//! model's uncertainty on every unlabelled image ([`super::epistemic`]). `POST /scoring/{method}`
//! starts it (params as a JSON body; 429 while one runs; an unknown method 404), `POST
//! /scoring/` every method; `GET /scoring/` (`all`, `check_if_running`) and `DELETE
//! /scoring/` as for `/train/` ([`crate::tasks`]).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use aiaa_proto::inference::v1::ModelInfo;

use super::epistemic;
use super::train::params;
use crate::app::App;
use crate::error::{GatewayError, Result};
use crate::labelstore::{self, FINAL, ORIGINAL};
use crate::params::flag;
use crate::response;

/// The scoring methods served, with their descriptions (`/info/`'s `scoring`).
pub const METHODS: &[(&str, &str)] = &[
    ("dice", "Compute Dice for predicated label vs submitted"),
    (
        "epistemic",
        "Compute a segmentation model's epistemic uncertainty by test-time augmentation",
    ),
];

fn tag(params: &Map<String, Value>, key: &str, default: &str) -> Result<String> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(default.to_string()),
        Some(Value::String(t)) => {
            labelstore::check_name(key, t)?;
            Ok(t.clone())
        }
        Some(other) => Err(GatewayError::BadRequest(format!(
            "{key} must be a label tag, not {other}"
        ))),
    }
}

/// What a scoring task runs, its params checked before it starts.
enum Job {
    Dice { y: String, y_pred: String },
    Epistemic(Box<ModelInfo>, epistemic::Options),
}

/// Starts scoring `method` in the background and answers its task (429 while one runs).
pub async fn start(app: &App, method: &str, params: Map<String, Value>) -> Result<Value> {
    let job = match method {
        "dice" => Job::Dice {
            y: tag(&params, "y", FINAL)?,
            y_pred: tag(&params, "y_pred", ORIGINAL)?,
        },
        "epistemic" => {
            let options = epistemic::Options::parse(&params)?;
            Job::Epistemic(Box::new(epistemic::model(app, &params).await?), options)
        }
        _ => {
            let known: Vec<&str> = METHODS.iter().map(|(m, _)| *m).collect();
            return Err(GatewayError::NotFound(format!(
                "no scoring method {method:?}; this server has {}",
                known.join(", ")
            )));
        }
    };
    let mut request = json!({"method": method});
    for (k, v) in &params {
        request[k] = v.clone();
    }
    let task = app.scoring.begin(method, request)?;
    let answer = task.json();
    let (app2, id) = (app.clone(), task.id.clone());
    tokio::spawn(crate::caller::inherit(async move {
        app2.scoring.update(&id, |t| t.status = "RUNNING");
        let outcome = match job {
            Job::Dice { y, y_pred } => score(&app2, &id, &y, &y_pred).await,
            Job::Epistemic(model, options) => epistemic::run(&app2, &id, &model, &options).await,
        };
        app2.scoring.finish(&id, outcome.map_err(|e| e.to_string()));
    }));
    Ok(answer)
}

/// The foreground of a stored label.
async fn foreground(app: &App, entry: &labelstore::Entry) -> Result<aiaa_imaging::Volume> {
    let bytes = labelstore::get(app, true, &entry.item_id).await?;
    let (name, limit) = (entry.name(), app.max_image_bytes);
    crate::work::cpu(move || crate::image::decode(Some(&name), &bytes, limit)).await
}

async fn score(app: &App, id: &str, y: &str, y_pred: &str) -> Result<Value> {
    let mut result = Map::new();
    for (image, object) in labelstore::objects(app).await? {
        if app.scoring.stopped(id) {
            break;
        }
        let (Some(truth), Some(pred)) = (object.labels.get(y), object.labels.get(y_pred)) else {
            continue;
        };
        let (truth, pred) = (foreground(app, truth).await?, foreground(app, pred).await?);
        if !aiaa_metrics::compare::same_grid(&truth, &pred, 1e-3) {
            app.scoring.update(id, |t| {
                t.note(format!(
                    "{image}: the {y} and {y_pred} labels lie on different grids; skipped"
                ))
            });
            continue;
        }
        let dice = crate::work::cpu(move || {
            let mask = |v: &aiaa_imaging::Volume| -> Vec<bool> {
                (0..v.voxel_count()).map(|i| v.voxels.get_f64(i) > 0.0).collect()
            };
            Ok(aiaa_metrics::compare::dice(&mask(&truth), &mask(&pred)))
        })
        .await?;
        let mut info = object.image.info.clone();
        info.insert("dice".into(), json!(dice));
        labelstore::set_info(app, false, &object.image.item_id, &info).await?;
        app.scoring
            .update(id, |t| t.note(format!("Dice Score for {image} is {dice}")));
        result.insert(image, json!(dice));
    }
    Ok(Value::Object(result))
}

/// `POST /scoring/{method}`.
pub async fn run_method(
    State(app): State<App>,
    Path(method): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response> {
    let params = params(&query, body).await?;
    Ok(response::json(&start(&app, &method, params).await?))
}

/// `POST /scoring/`: every method, each with its own params (`params[method]`).
pub async fn run_all(
    State(app): State<App>,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response> {
    let params = params(&query, body).await?;
    let mut answer = Map::new();
    for (method, _) in METHODS {
        let mut own = params.clone();
        if let Some(Value::Object(m)) = params.get(*method) {
            own.extend(m.clone());
        }
        own.remove(*method);
        let entry = match start(&app, method, own).await {
            Ok(task) => json!({"result": task, "detail": null}),
            Err(e) => json!({"result": null, "detail": e.to_string()}),
        };
        answer.insert(method.to_string(), entry);
    }
    Ok(response::json(&Value::Object(answer)))
}

/// `GET /scoring/`.
pub async fn status(
    State(app): State<App>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response> {
    let running = flag(&query, "check_if_running")?;
    match app.scoring.status(flag(&query, "all")?, running) {
        Some(v) => Ok(response::json(&v)),
        None if running => Err(GatewayError::NotFound(
            "No Scoring Tasks are currently Running".into(),
        )),
        None => Err(GatewayError::NotFound("No Scoring Tasks Found".into())),
    }
}

/// `DELETE /scoring/`: the running task, stopped between images; `null` when none runs.
pub async fn stop(State(app): State<App>) -> Result<Response> {
    Ok(response::json(
        &app.scoring
            .stop_running()
            .map(|(task, _)| task)
            .unwrap_or(Value::Null),
    ))
}
