//! `/train/`: MONAI Label's train task over [`crate::training`]. `POST /train/{model}` with
//! the params as a JSON body (`max_epochs`, `val_split`, `train_batch_size`; others are kept
//! in the task's request) starts it and answers the task; a second one while it runs is 429
//! (`enqueue` is not supported: 400); `POST /train/` (deprecated in MONAI Label) starts every
//! trainer and answers `{model: {result, detail}}`; `GET /train/` answers the last task
//! (`all=true`: every one; `check_if_running=true`: the running one), 404 when there is none;
//! `DELETE /train/` stops the running task and answers it (`null` when none runs).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{object, small_body};
use crate::app::App;
use crate::error::{GatewayError, Result};
use crate::response;
use crate::routes::models;
use crate::training;

/// A task request's params: the JSON body; `run_sync` and `enqueue` are refused.
pub async fn params(query: &HashMap<String, String>, body: Body) -> Result<Map<String, Value>> {
    if crate::params::flag(query, "run_sync")? {
        return Err(GatewayError::BadRequest(
            "run_sync=true is not supported: the task runs in the background; GET follows it".into(),
        ));
    }
    if crate::params::flag(query, "enqueue")? {
        return Err(GatewayError::BadRequest(
            "enqueue=true is not supported: one task of a kind runs at a time; GET ?check_if_running=true says when it ends".into(),
        ));
    }
    let bytes = small_body(body).await?;
    object("the train params (the body)", std::str::from_utf8(&bytes).ok())
}

/// `POST /train/{model}`.
pub async fn run_model(
    State(app): State<App>,
    Path(model): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response> {
    let params = params(&query, body).await?;
    Ok(response::json(&training::start(&app, &model, params).await?))
}

/// `POST /train/`: every trainer, each with its own params (`params[model]`) over the rest.
pub async fn run_all(
    State(app): State<App>,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Result<Response> {
    let params = params(&query, body).await?;
    let trainers: Vec<String> = models::fetch(&app, "", "")
        .await?
        .into_iter()
        .filter(|m| m.trainable)
        .map(|m| m.name)
        .collect();
    let mut answer = Map::new();
    for model in trainers {
        let mut own = params.clone();
        if let Some(Value::Object(m)) = params.get(&model) {
            own.extend(m.clone());
        }
        let entry = match training::start(&app, &model, own).await {
            Ok(task) => json!({"result": task, "detail": null}),
            Err(e) => json!({"result": null, "detail": e.to_string()}),
        };
        answer.insert(model, entry);
    }
    Ok(response::json(&Value::Object(answer)))
}

/// `GET /train/`.
pub async fn status(
    State(app): State<App>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response> {
    let all = crate::params::flag(&query, "all")?;
    let running = crate::params::flag(&query, "check_if_running")?;
    match app.training.status(all, running) {
        Some(v) => Ok(response::json(&v)),
        None if running => Err(GatewayError::NotFound(
            "No Train Tasks are currently Running".into(),
        )),
        None => Err(GatewayError::NotFound("No Train Tasks Found".into())),
    }
}

/// `DELETE /train/`.
pub async fn stop(State(app): State<App>) -> Result<Response> {
    Ok(response::json(
        &training::stop(&app).await?.unwrap_or(Value::Null),
    ))
}
