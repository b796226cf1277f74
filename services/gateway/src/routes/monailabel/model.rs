//! `/model/`: MONAI Label's model file routes over the registry. A model's file is the
//! TorchScript file (`model.pt`, else the only `.pt`) of the registry version it serves
//! ([`ModelInfo::registry_ref`]); a model loaded from a file or an upload has none here (404,
//! saying so; the admin API `/admin/model/{name}` manages those).
//!
//! - `GET /model/{model}`: the file, as `<model>.pt` (`Content-Disposition`);
//! - `GET /model/info/{model}`: `checksum` (`SHA256:<hex>`), `modified_time` (the version's
//!   creation, epoch seconds), `version`, and `train_stats` when `/train/` ran;
//! - `PUT /model/{model}` (a `file` part): the next registry version with that file in place
//!   of the old one (its other files, e.g. deepbet's `bbox_model.pt`, carried over; the
//!   checkpoint is not, as it no longer matches the weights), loaded in place; answers
//!   `checksum` and `modified_time`;
//! - `DELETE /model/{model}`: unloads the model (its registry versions stay); `{}`.

use aiaa_proto::common::v1::Chunk;
use aiaa_proto::inference::v1::{LoadModelRequest, ModelInfo, UnloadModelRequest, load_model_request};
use aiaa_proto::registry::v1::{
    DownloadRequest, GetManifestRequest, Manifest, ModelFile, ModelName, PushHeader, PushRequest,
    push_request,
};
use aiaa_runtime::registry::{TRAIN_CHECKPOINT, TRAIN_CONFIG};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::HeaderMap;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::app::{App, ParamsKind};
use crate::error::{GatewayError, Result, Subject};
use crate::response;
use crate::routes::models;
use crate::training::{next_version, split_ref};

fn reg_err(s: tonic::Status) -> GatewayError {
    GatewayError::from_status("registry", Subject::Other, &s)
}

/// The served model and the manifest of its registry version.
async fn served(app: &App, model: &str) -> Result<(ModelInfo, ModelName, Manifest)> {
    let info = models::fetch(app, "", "")
        .await?
        .into_iter()
        .find(|m| m.name == model)
        .ok_or_else(|| {
            GatewayError::NotFound(format!("model {model:?} is not served (GET /info/ lists them)"))
        })?;
    if info.registry_ref.is_empty() {
        return Err(GatewayError::NotFound(format!(
            "Model File NOT Found for {model}: it was loaded from a file, not from the registry (see /admin/model/{model})"
        )));
    }
    let (_, mut registry) = app.backends.training()?;
    let (name, version) = split_ref(&info.registry_ref).map_err(GatewayError::Internal)?;
    let manifest = registry
        .get_manifest(GetManifestRequest {
            model: Some(name.clone()),
            version,
        })
        .await
        .map_err(reg_err)?
        .into_inner();
    Ok((info, name, manifest))
}

/// The version's TorchScript file: `model.pt`, else its only `.pt`.
fn model_file<'a>(model: &str, m: &'a Manifest) -> Result<&'a ModelFile> {
    let pts: Vec<&ModelFile> = m.files.iter().filter(|f| f.path.ends_with(".pt")).collect();
    pts.iter()
        .find(|f| f.path == "model.pt")
        .or(if pts.len() == 1 { pts.first() } else { None })
        .copied()
        .ok_or_else(|| {
            GatewayError::NotFound(format!(
                "Model File NOT Found for {model}: its version has no model.pt"
            ))
        })
}

async fn download(app: &App, name: &ModelName, version: &str, file: &ModelFile) -> Result<Bytes> {
    if file.size > app.max_body_bytes as u64 {
        return Err(GatewayError::FieldTooLarge(format!(
            "{} is {} bytes, more than the gateway passes on ({} bytes, --gateway-max-body-bytes)",
            file.path, file.size, app.max_body_bytes
        )));
    }
    let (_, mut registry) = app.backends.training()?;
    let mut stream = registry
        .download(DownloadRequest {
            model: Some(name.clone()),
            version: version.to_string(),
            path: file.path.clone(),
        })
        .await
        .map_err(reg_err)?
        .into_inner();
    let mut data = BytesMut::with_capacity(file.size as usize);
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk.map_err(reg_err)?.data);
        if data.len() as u64 > file.size {
            return Err(GatewayError::Internal(format!(
                "the registry sent more than {} bytes of {}",
                file.size, file.path
            )));
        }
    }
    Ok(data.freeze())
}

fn epoch_seconds(rfc3339: &str) -> u64 {
    humantime::parse_rfc3339_weak(rfc3339)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// `GET /model/{model}`.
pub async fn get(State(app): State<App>, Path(model): Path<String>) -> Result<Response> {
    let (_, name, manifest) = served(&app, &model).await?;
    let file = model_file(&model, &manifest)?;
    let data = download(&app, &name, &manifest.version, file).await?;
    Ok(response::attachment(&format!("{model}.pt"), data))
}

/// `GET /model/info/{model}`.
pub async fn info(State(app): State<App>, Path(model): Path<String>) -> Result<Response> {
    let (info, _, manifest) = served(&app, &model).await?;
    let file = model_file(&model, &manifest)?;
    let mut answer = json!({
        "checksum": format!("SHA256:{}", file.sha256),
        "modified_time": epoch_seconds(&manifest.created_at),
        "version": manifest.version,
        "registry_ref": info.registry_ref,
    });
    if let Some(stats) = app.training.stats().get(&model) {
        answer["train_stats"] = stats.clone();
    }
    Ok(response::json(&answer))
}

/// `PUT /model/{model}`.
pub async fn put(
    State(app): State<App>,
    Path(model): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let form = app.form(&headers, body, ParamsKind::Small).await?;
    let part = form
        .field("file")
        .ok_or_else(|| {
            GatewayError::BadRequest(
                "PUT /model/{model} needs the model file as a multipart part named file".into(),
            )
        })?
        .clone();
    let (info, name, old) = served(&app, &model).await?;
    let replaced = model_file(&model, &old)?.clone();
    let data = crate::work::cpu(move || {
        part.read_blocking()
            .map_err(|e| GatewayError::Storage(format!("reading the uploaded model: {e}")))
    })
    .await?;
    if data.is_empty() {
        return Err(GatewayError::BadRequest(
            "the uploaded model file is empty".into(),
        ));
    }
    let sha = hex::encode(Sha256::digest(&data));
    // Every other file of the old version but the training files comes along.
    let mut files: Vec<(ModelFile, Bytes)> = Vec::new();
    for f in &old.files {
        if f.path == replaced.path {
            let new = ModelFile {
                path: f.path.clone(),
                size: data.len() as u64,
                sha256: sha.clone(),
            };
            files.push((new, data.clone()));
        } else if f.path != TRAIN_CHECKPOINT && f.path != TRAIN_CONFIG {
            files.push((f.clone(), download(&app, &name, &old.version, f).await?));
        }
    }
    let (_, mut registry) = app.backends.training()?;
    let version = next_version(&mut registry, &name)
        .await
        .map_err(GatewayError::Internal)?;
    let manifest = Manifest {
        version: version.clone(),
        files: files.iter().map(|(f, _)| f.clone()).collect(),
        created_at: String::new(),
        ..old.clone()
    };
    let mut messages = vec![PushRequest {
        kind: Some(push_request::Kind::Header(PushHeader {
            manifest: Some(manifest),
        })),
    }];
    for (_, bytes) in files {
        for piece in bytes.chunks(1 << 20) {
            messages.push(PushRequest {
                kind: Some(push_request::Kind::Chunk(Chunk {
                    data: Bytes::copy_from_slice(piece),
                })),
            });
        }
    }
    let pushed = registry
        .push(futures::stream::iter(messages))
        .await
        .map_err(reg_err)?
        .into_inner();
    let reference = format!("{}/{}/{}:{version}", name.org, name.team, name.name);
    let mut inference = app.backends.inference()?;
    inference
        .load_model(LoadModelRequest {
            name: info.name.clone(),
            source: Some(load_model_request::Source::RegistryRef(reference)),
            engine: String::new(),
            labels: Vec::new(),
        })
        .await
        .map_err(|s| GatewayError::from_status("inference", Subject::Model, &s))?;
    Ok(response::json(&json!({
        "checksum": format!("SHA256:{sha}"),
        "modified_time": epoch_seconds(&pushed.created_at),
        "version": version,
    })))
}

/// `DELETE /model/{model}`.
pub async fn delete(State(app): State<App>, Path(model): Path<String>) -> Result<Response> {
    let mut inference = app.backends.inference()?;
    let gone = inference
        .unload_model(UnloadModelRequest { name: model.clone() })
        .await
        .map_err(|s| GatewayError::from_status("inference", Subject::Model, &s))?
        .into_inner();
    if !gone.unloaded {
        return Err(GatewayError::NotFound(format!(
            "Model File NOT Found for {model}"
        )));
    }
    Ok(response::json(&json!({})))
}
