//! The axum application: shared state, the route table, multipart bodies read under the
//! limits ([`crate::form`]), and the layers every request goes through (trailing-slash normalisation, a
//! span whose parent is the caller's W3C trace context, request counts and latencies,
//! panics turned into a 500 JSON answer). Unknown routes answer 404 JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiaa_runtime::config::Secret;
use aiaa_runtime::telemetry;
use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http::HeaderMap;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::backend::Backends;
use crate::error::{GatewayError, Result};
use crate::form::{self, Form, FormLimits};
use crate::routes;

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    /// The gRPC backends.
    pub backends: Backends,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Largest `params` of the polygon endpoints, in bytes.
    pub max_params_bytes: usize,
    /// Most polygon vertices in one request or answer.
    pub max_polygon_vertices: usize,
    /// Largest image the gateway decodes itself, in decoded bytes.
    pub max_image_bytes: u64,
    /// Where uploads are spooled.
    pub spool_dir: Arc<PathBuf>,
    /// Most bytes spooled at once.
    pub max_spool_bytes: u64,
    /// Longest session lifetime asked of the datastore.
    pub session_max_expiry: Duration,
    /// The admin API key, when one is configured.
    pub admin_key: Option<Arc<Secret>>,
}

/// Most bytes of `params` on the model endpoints: they travel to the inference service
/// inside one gRPC message.
pub const MODEL_PARAMS_LIMIT: usize = 1 << 20;

/// Which `params` limit a form gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamsKind {
    /// The model endpoints, the sessions and the admin API: [`MODEL_PARAMS_LIMIT`].
    Small,
    /// The polygon endpoints: `--gateway-max-params-bytes`.
    Polygons,
}

impl App {
    /// Reads and parses a multipart/form-data body under the limits (see [`crate::form`]).
    pub async fn form(&self, headers: &HeaderMap, body: Body, kind: ParamsKind) -> Result<Form> {
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let (params, params_source) = match kind {
            ParamsKind::Polygons => (
                self.max_params_bytes,
                "--gateway-max-params-bytes, AIAA_GATEWAY_MAX_PARAMS_BYTES",
            ),
            ParamsKind::Small if self.max_params_bytes < MODEL_PARAMS_LIMIT => (
                self.max_params_bytes,
                "--gateway-max-params-bytes, AIAA_GATEWAY_MAX_PARAMS_BYTES",
            ),
            ParamsKind::Small => (
                MODEL_PARAMS_LIMIT,
                "the limit of this endpoint, whose params travel in one gRPC message",
            ),
        };
        let limits = FormLimits {
            body: self.max_body_bytes,
            params,
            params_source,
            spool_dir: self.spool_dir.as_ref().clone(),
            spool_budget: self.max_spool_bytes,
        };
        form::read(&content_type, declared, body, &limits).await
    }
}

/// 404 JSON for an unknown route (or a known path with another method).
async fn no_route(req: Request) -> GatewayError {
    GatewayError::NotFound(format!("no such endpoint: {} {}", req.method(), req.uri().path()))
}

/// Per-request span (child of the caller's trace), count and latency.
async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let span = tracing::info_span!(
        "http",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        http.method = %method,
        http.route = %route,
        http.status = tracing::field::Empty,
    );
    telemetry::extract(req.headers(), &span);
    let start = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16().to_string();
    span.record("http.status", status.as_str());
    metrics::counter!("aiaa_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("aiaa_http_duration_seconds", "route" => route).record(start.elapsed().as_secs_f64());
    response
}

/// The route table with its layers (before trailing-slash normalisation).
pub fn router(app: App) -> Router {
    Router::new()
        .route("/livez", get(routes::health::livez))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .route("/v1/models", get(routes::models::list))
        .route("/session", put(routes::sessions::create))
        .route(
            "/session/{id}",
            get(routes::sessions::info).delete(routes::sessions::delete),
        )
        .route("/v1/segmentation", post(routes::infer::segmentation))
        .route("/v1/dextr3d", post(routes::infer::dextr3d))
        .route("/v1/deepgrow", post(routes::infer::deepgrow))
        .route("/v1/inference", post(routes::infer::inference))
        .route("/v1/mask2polygon", post(routes::polygons::mask2polygon))
        .route("/v1/fixpolygon", post(routes::polygons::fixpolygon))
        .route(
            "/admin/model/{name}",
            get(routes::admin::get)
                .put(routes::admin::put)
                .delete(routes::admin::delete),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(axum::middleware::from_fn(observe))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked");
                GatewayError::Internal("the handler panicked; the gateway keeps serving".into())
                    .into_response()
            },
        ))
        .with_state(app)
}
