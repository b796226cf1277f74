//! The AIAA REST gateway: the annotation API that the 3D Slicer, MITK and OHIF AIAA clients
//! speak (`shared/spec/aiaa-rest-v1.md`), translated to the services' gRPC contracts.
//!
//! - [`config`]: the [`GatewayArgs`] clap block;
//! - [`error`]: [`GatewayError`], mapped once to a JSON error answer;
//! - [`conn`]: the accept loop: connection cap, header/idle timeouts, body rate;
//! - [`multipart`]: a lenient, streaming multipart/form-data parser for the clients'
//!   requests; [`form`]: a request body read into a form under the limits (files spooled);
//! - [`geometry`]: client coordinates, points and polygons parsed and bounded;
//! - [`work`]: the bounded pool the CPU-heavy steps run on, off the async threads;
//! - [`response`]: answers built whole with an exact Content-Length (JSON, files, multipart);
//! - [`params`]: lenient params and query reading;
//! - [`image`]: decoding uploads and encoding masks;
//! - [`polygon`]: contour tracing, rasterisation and vertex edits;
//! - [`auth`]: the API key on every route, anonymous annotation from trusted networks;
//!   [`caller`]: who a backend call is made for (forwarded credentials, `x-aiaa-client`);
//! - [`labelstore`]: MONAI Label's datastore (images, labels by tag, info) on the datastore
//!   service; [`tasks`], [`training`]: its background tasks and the retrain loop;
//!   [`epistemic`]: a model's uncertainty by test-time augmentation;
//! - [`backend`]: lazily connected gRPC clients of the datastore and inference services;
//! - [`app`]: the route table and its layers; [`routes`]: the handlers;
//! - [`start`]: binds and serves until the shutdown token is cancelled.
//!
//! Every answer is built fully in memory and sent with its Content-Length (never chunked,
//! never compressed): the clients read raw sockets. HTTP/1.0 and HTTP/1.1 are both served.

pub mod app;
pub mod auth;
pub mod backend;
pub mod caller;
pub mod config;
pub mod conn;
pub mod epistemic;
pub mod error;
pub mod form;
pub mod geometry;
pub mod image;
pub mod labelstore;
pub mod multipart;
pub mod params;
pub mod polygon;
pub mod response;
pub mod routes;
pub mod tasks;
pub mod training;
pub mod work;

use std::net::SocketAddr;
use std::sync::Arc;

use aiaa_runtime::config::{AuthArgs, MessageArgs};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

pub use config::GatewayArgs;
pub use error::GatewayError;

/// Validates `args`, binds `args.listen` (port 0 picks a free port) and serves the REST API
/// until `shutdown` is cancelled; in-flight requests finish first. `auth.api_key`, when set,
/// protects every route but the probes and `/metrics` (see [`crate::auth`]) and is sent to the
/// backends for the anonymous callers of `args.anonymous_from`. `message` bounds the gRPC
/// messages exchanged with the backends.
pub async fn start(
    args: &GatewayArgs,
    message: &MessageArgs,
    auth: &AuthArgs,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<Result<(), GatewayError>>), GatewayError> {
    args.validate()
        .and_then(|()| message.validate())
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let backends = backend::Backends::new(
        &args.datastore_url,
        args.inference_url.as_deref(),
        args.backend_timeout,
        message.max_message_bytes,
    )?
    .with_training(args.trainer_url.as_deref(), args.registry_url.as_deref())?;
    let spool_dir = args.spool_dir.clone().unwrap_or_else(std::env::temp_dir);
    let app = app::App {
        backends,
        max_body_bytes: args.max_body_bytes,
        max_params_bytes: args.max_params_bytes,
        max_polygon_vertices: args.max_polygon_vertices,
        max_image_bytes: args.max_image_bytes,
        spool_dir: Arc::new(spool_dir),
        max_spool_bytes: args.max_spool_bytes,
        session_max_expiry: args.session_max_expiry,
        gate: Arc::new(auth::Gate::new(
            auth.api_key.clone(),
            args.anonymous_from.0.clone(),
        )?),
        training: tasks::TaskBoard::training(),
        scoring: tasks::TaskBoard::scoring(),
    };
    let max_connections =
        aiaa_runtime::server::connection_cap("gateway", args.max_connections, "--gateway-max-connections");
    let limits = conn::ConnLimits {
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        body_min_rate: args.body_min_rate,
        body_rate_window: args.body_rate_window,
        max_connections,
    };
    let listener = aiaa_runtime::server::bind(args.listen)
        .map_err(|e| GatewayError::Internal(format!("bind {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| GatewayError::Internal(format!("local address: {e}")))?;
    aiaa_runtime::telemetry::install_prometheus();
    // Trailing slashes are trimmed before routing: clients don't follow redirects.
    let service = NormalizePathLayer::trim_trailing_slash().layer(app::router(app));
    let task = tokio::spawn(async move {
        conn::serve(listener, service, limits, shutdown).await;
        Ok(())
    });
    tracing::info!(
        %addr,
        inference = ?args.inference_url,
        datastore = %args.datastore_url,
        max_connections,
        "gateway listening"
    );
    if routes::page::built() {
        tracing::info!("gateway: the annotation page is served at http://{addr}/");
    } else {
        tracing::warn!(
            "gateway: this binary was built without the annotation page (scripts/web.sh builds it; then rebuild)"
        );
    }
    match (&auth.api_key, args.anonymous_from.0.is_empty()) {
        (None, _) => tracing::info!("gateway: no API key configured, every REST route is open"),
        (Some(_), true) => {
            tracing::info!("gateway: every REST route but /livez, /readyz and /metrics needs the API key")
        }
        (Some(_), false) => tracing::warn!(
            networks = ?args.anonymous_from.0,
            "gateway: clients without credentials from these networks may annotate (sessions, models, inference) under the gateway's key"
        ),
    }
    Ok((addr, task))
}
