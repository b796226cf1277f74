//! The AIAA REST gateway: the annotation API that the 3D Slicer, MITK and OHIF AIAA clients
//! speak (`shared/spec/aiaa-rest-v1.md`), translated to the services' gRPC contracts.
//!
//! - [`config`]: the [`GatewayArgs`] clap block;
//! - [`error`]: [`GatewayError`], mapped once to a JSON error answer;
//! - [`multipart`]: a lenient multipart/form-data parser for the clients' requests;
//! - [`response`]: answers built whole with an exact Content-Length (JSON, files, multipart);
//! - [`params`]: lenient params and query reading;
//! - [`image`]: decoding uploads and encoding masks;
//! - [`polygon`]: contour tracing, rasterisation and vertex edits;
//! - [`backend`]: lazily connected gRPC clients of the datastore and inference services;
//! - [`app`]: the route table and its layers; [`routes`]: the handlers;
//! - [`start`]: binds and serves until the shutdown token is cancelled.
//!
//! Every answer is built fully in memory and sent with its Content-Length (never chunked,
//! never compressed): the clients read raw sockets. HTTP/1.0 and HTTP/1.1 are both served.

pub mod app;
pub mod backend;
pub mod config;
pub mod error;
pub mod image;
pub mod multipart;
pub mod params;
pub mod polygon;
pub mod response;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use aiaa_runtime::config::{AuthArgs, GrpcArgs};
use axum::extract::Request;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::normalize_path::NormalizePathLayer;

pub use config::GatewayArgs;
pub use error::GatewayError;

/// Validates `args`, binds `args.listen` (port 0 picks a free port) and serves the REST API
/// until `shutdown` is cancelled; in-flight requests finish first. `auth.api_key`, when set,
/// protects the admin API and is sent to the backends.
pub async fn start(
    args: &GatewayArgs,
    auth: &AuthArgs,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<Result<(), GatewayError>>), GatewayError> {
    args.validate()
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let backends = backend::Backends::new(
        &args.datastore_url,
        args.inference_url.as_deref(),
        auth.api_key.clone(),
        args.backend_timeout,
        GrpcArgs::default().max_message_bytes,
    )?;
    let app = app::App {
        backends,
        max_body_bytes: args.max_body_bytes,
        session_max_expiry: args.session_max_expiry,
        admin_key: auth.api_key.clone().map(Arc::new),
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| GatewayError::Internal(format!("bind {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| GatewayError::Internal(format!("local address: {e}")))?;
    aiaa_runtime::telemetry::install_prometheus();
    // Trailing slashes are trimmed before routing: clients don't follow redirects.
    let service = NormalizePathLayer::trim_trailing_slash().layer(app::router(app));
    let task = tokio::spawn(async move {
        let make = axum::ServiceExt::<Request>::into_make_service(service);
        axum::serve(listener, make)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(|e| GatewayError::Internal(format!("serve: {e}")))
    });
    tracing::info!(%addr, inference = ?args.inference_url, datastore = %args.datastore_url, "gateway listening");
    Ok((addr, task))
}
