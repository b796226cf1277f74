//! `/` (what this server is and where its APIs start: MONAI Label's reviewer module checks
//! that the server root answers), `/livez` (the process answers), `/readyz` (the datastore, and the inference service when
//! one is configured, answer health SERVING) and `/metrics` (Prometheus text).

use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;

use crate::app::App;
use crate::error::{GatewayError, Result};
use crate::response;

/// The server root: its name and the entry points of its APIs.
pub async fn root() -> Response {
    response::json(&serde_json::json!({
        "name": "aiaa",
        "description": "AI-assisted annotation server: the AIAA API and MONAI Label's API",
        "apis": {"aiaa": "/v1/models", "monailabel": "/info/"},
        "health": {"live": "/livez", "ready": "/readyz", "metrics": "/metrics"},
    }))
}

/// Always 200 while the process serves.
pub async fn livez() -> Response {
    response::json(&serde_json::json!({"status": "ok"}))
}

/// 200 when the datastore is SERVING and the inference service (when configured) too, else
/// 503 naming why.
pub async fn readyz(State(app): State<App>) -> Result<Response> {
    app.backends
        .datastore_ready()
        .await
        .map_err(GatewayError::unavailable)?;
    let inference = app
        .backends
        .inference_ready()
        .await
        .map_err(GatewayError::unavailable)?;
    Ok(response::json(&serde_json::json!({
        "status": "ready",
        "inference": if inference { "serving" } else { "not configured" },
    })))
}

/// The process's metrics.
pub async fn metrics() -> Response {
    response::bytes(
        StatusCode::OK,
        "text/plain; version=0.0.4",
        Bytes::from(aiaa_runtime::telemetry::render_metrics()),
    )
}
