//! The admin model API, `GET/PUT/DELETE /admin/model/{name}`, protected by the API key when
//! one is configured (`Authorization: Bearer <key>`, checked by [`crate::auth`] like every
//! route; a wrong or missing key answers 401, also from a network trusted for anonymous
//! annotation).
//! PUT takes multipart `config` (the model's engine config JSON) with `data` (the TorchScript
//! file, streamed to the inference service's UploadModel), or `config` alone whose
//! `model_path` the inference service can read, or `registry` (a registry reference
//! `org/team/name:version`).

use aiaa_proto::framed;
use aiaa_proto::inference::v1::{
    LoadModelRequest, UnloadModelRequest, UploadModelHeader, UploadModelRequest, load_model_request,
};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use http::HeaderMap;

use crate::app::{App, ParamsKind};
use crate::backend::timed;
use crate::error::{GatewayError, Result, Subject};
use crate::response;
use crate::routes::infer::upload_chunks;
use crate::routes::models::{fetch, model_json};

fn inf_err(status: tonic::Status) -> GatewayError {
    GatewayError::from_status("inference", Subject::Model, &status)
}

/// `GET /admin/model/{name}`.
pub async fn get(State(app): State<App>, Path(name): Path<String>) -> Result<Response> {
    let models = fetch(&app, "", "").await?;
    let model = models
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| GatewayError::NotFound(format!("model {name:?} is not loaded")))?;
    Ok(response::json(&model_json(model)))
}

/// `PUT /admin/model/{name}`.
pub async fn put(
    State(app): State<App>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let form = app.form(&headers, body, ParamsKind::Small).await?;
    if let Some(data) = form.field("data") {
        let config = form
            .text("config")
            .map_err(GatewayError::BadRequest)?
            .ok_or_else(|| {
                GatewayError::BadRequest(
                    "a model file (\"data\") needs its engine config as field \"config\"".into(),
                )
            })?;
        serde_json::from_str::<serde_json::Value>(config)
            .map_err(|e| GatewayError::BadRequest(format!("config is not valid JSON: {e}")))?;
        if data.is_empty() {
            return Err(GatewayError::BadRequest(
                "the model file (\"data\") is empty".into(),
            ));
        }
        let header = UploadModelHeader {
            name,
            config_json: config.to_string(),
            filename: data.base_filename().unwrap_or("model.pt").to_string(),
            engine: String::new(),
            labels: Vec::new(),
            size: data.len(),
        };
        let stream = framed::send::<UploadModelRequest>(header, upload_chunks(data));
        let mut client = app.backends.inference()?;
        let info = timed("inference", app.backends.timeout, async move {
            client.upload_model(stream).await.map_err(inf_err)
        })
        .await?
        .into_inner();
        return Ok(response::json(&model_json(&info)));
    }
    let source = if let Some(config) = form.text("config").map_err(GatewayError::BadRequest)? {
        serde_json::from_str::<serde_json::Value>(config)
            .map_err(|e| GatewayError::BadRequest(format!("config is not valid JSON: {e}")))?;
        load_model_request::Source::ConfigJson(config.to_string())
    } else if let Some(reference) = form.text("registry").map_err(GatewayError::BadRequest)? {
        load_model_request::Source::RegistryRef(reference.trim().to_string())
    } else {
        return Err(GatewayError::BadRequest(
            "send the model's engine config as field \"config\" (with the model file as \"data\" or a model_path the inference service reads) or a registry reference as field \"registry\"".into(),
        ));
    };
    let mut client = app.backends.inference()?;
    let request = LoadModelRequest {
        name,
        source: Some(source),
        engine: String::new(),
        labels: Vec::new(),
    };
    let info = timed("inference", app.backends.timeout, async move {
        client.load_model(request).await.map_err(inf_err)
    })
    .await?
    .into_inner();
    Ok(response::json(&model_json(&info)))
}

/// `DELETE /admin/model/{name}`.
pub async fn delete(State(app): State<App>, Path(name): Path<String>) -> Result<Response> {
    let mut client = app.backends.inference()?;
    let request = UnloadModelRequest { name: name.clone() };
    let unloaded = timed("inference", app.backends.timeout, async move {
        client.unload_model(request).await.map_err(inf_err)
    })
    .await?
    .into_inner()
    .unloaded;
    if !unloaded {
        return Err(GatewayError::NotFound(format!("model {name:?} is not loaded")));
    }
    Ok(response::json(
        &serde_json::json!({"name": name, "unloaded": true, "success": true}),
    ))
}
