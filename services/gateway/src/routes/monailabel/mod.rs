//! MONAI Label's REST API (0.8.5's wire shapes, which 3D Slicer's MONAI Label module, OHIF's
//! MONAI Label mode and `monailabel.client.MONAILabelClient` speak), served beside the AIAA
//! API on the same port and backed by the same services: the datastore service keeps its
//! images and labels ([`crate::labelstore`]), the inference service runs its `/infer`.
//!
//! - [`info`]: `GET /info/`;
//! - [`datastore`]: `/datastore/...` (images, labels by tag, their info; OHIF's raw
//!   `label.bin`); [`dataset`]: the labelled dataset as a ZIP archive;
//! - [`activelearning`]: `POST /activelearning/{strategy}` (`first`, `random`, `epistemic`);
//! - [`infer`]: `POST /infer/{model}`;
//! - [`auth`]: `/auth/`, `/auth/token`, `/auth/token/valid`;
//! - [`model`]: `/model/` (the served registry version's file, replaced or unloaded);
//! - [`scoring`]: `/scoring/` (Dice of the final label against the model's original;
//!   [`epistemic`] uncertainty);
//! - [`logs`]: `GET /logs/` (the gateway's recent log lines, admin);
//! - [`train`]: `/train/` (the fine-tune → publish → serve loop of [`crate::training`]).
//!
//! Errors keep the gateway's one JSON error answer, which also carries MONAI Label's
//! `detail`; the clients read status codes only.

pub mod activelearning;
pub mod auth;
pub mod dataset;
pub mod datastore;
pub mod epistemic;
pub mod infer;
pub mod info;
pub mod logs;
pub mod model;
pub mod scoring;
pub mod train;

use std::collections::HashMap;

use axum::body::Body;
use http::HeaderMap;
use serde_json::{Map, Value};

use crate::app::{App, MODEL_PARAMS_LIMIT, ParamsKind};
use crate::error::{GatewayError, Result};
use crate::form::Form;

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// A required query parameter, trimmed.
pub fn required<'a>(query: &'a HashMap<String, String>, key: &str, route: &str) -> Result<&'a str> {
    query
        .get(key)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad(format!("{route} needs the query parameter {key}=")))
}

/// A JSON object given as text (a form field or a body); empty text is `{}`.
pub fn object(what: &str, text: Option<&str>) -> Result<Map<String, Value>> {
    match text.map(str::trim).unwrap_or("") {
        "" => Ok(Map::new()),
        t => match serde_json::from_str::<Value>(t) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(other) => Err(bad(format!(
                "{what} must be a JSON object, not {}",
                crate::params::kind(&other)
            ))),
            Err(e) => Err(bad(format!("{what} is not JSON: {e}"))),
        },
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// The body as a form: multipart (spooled under the limits), or
/// `application/x-www-form-urlencoded` text fields (what the Slicer reviewer sends); no body
/// is an empty form.
pub async fn form(app: &App, headers: &HeaderMap, body: Body) -> Result<Form> {
    let ct = content_type(headers);
    if ct.starts_with("multipart/") {
        return app.form(headers, body, ParamsKind::Small).await;
    }
    let bytes = small_body(body).await?;
    if bytes.is_empty() {
        return Ok(Form::default());
    }
    if !ct.starts_with("application/x-www-form-urlencoded") {
        return Err(bad(format!(
            "the body must be multipart/form-data or application/x-www-form-urlencoded, not {ct:?}"
        )));
    }
    let parts = url::form_urlencoded::parse(&bytes)
        .map(|(k, v)| crate::multipart::Part {
            head: crate::multipart::PartHead {
                name: k.into_owned(),
                filename: None,
                content_type: None,
            },
            data: bytes::Bytes::copy_from_slice(v.as_bytes()),
        })
        .collect();
    Ok(Form::from_memory(parts))
}

/// A small body (a JSON object of params), at most [`MODEL_PARAMS_LIMIT`] bytes.
pub async fn small_body(body: Body) -> Result<bytes::Bytes> {
    axum::body::to_bytes(body, MODEL_PARAMS_LIMIT).await.map_err(|e| {
        if format!("{e:#}").contains("length limit") {
            GatewayError::FieldTooLarge(format!("the request body exceeds {MODEL_PARAMS_LIMIT} bytes"))
        } else {
            GatewayError::BadRequest(format!("the request body could not be read: {e}"))
        }
    })
}

/// The caller's name in MONAI Label's info objects (`user`, `client_id` defaults).
pub const USER: &str = "aiaa";
