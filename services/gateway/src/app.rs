//! The axum application: shared state, the route table ([`ROUTES`], the one list of the REST
//! API: the router is built from it, and so is the authentication test of every route),
//! multipart bodies read under the limits ([`crate::form`]), and the layers every request
//! goes through (trailing-slash normalisation, a span whose parent is the caller's W3C trace
//! context, request counts and latencies, panics turned into a 500 JSON answer, and on each
//! route the authentication of [`crate::auth`]). Unknown routes answer 404 JSON.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiaa_runtime::telemetry;
use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, head, post, put};
use http::HeaderMap;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::auth::{self, Access, Gate};
use crate::backend::Backends;
use crate::error::{GatewayError, Result};
use crate::form::{self, Form, FormLimits};
use crate::routes;
use crate::tasks::TaskBoard;

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
    /// Who may call what (the API key, the trusted networks).
    pub gate: Arc<Gate>,
    /// MONAI Label's train tasks.
    pub training: TaskBoard,
    /// MONAI Label's scoring tasks.
    pub scoring: TaskBoard,
}

/// One REST route: method, path (axum syntax, no trailing slash) and who may call it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// `GET`, `HEAD`, `PUT`, `POST` or `DELETE`.
    pub method: &'static str,
    /// The path, e.g. `/session/{id}`.
    pub path: &'static str,
    /// Who may call it when an API key is configured.
    pub access: Access,
    /// `METHOD /path`, for messages.
    pub name: &'static str,
}

macro_rules! route {
    ($access:ident $method:literal $path:literal) => {
        Route {
            method: $method,
            path: $path,
            access: Access::$access,
            name: concat!($method, " ", $path),
        }
    };
}

/// Every route of the REST API. The router is built from this list (a route missing from
/// it is not served), and `tests/tests/auth_matrix.rs` calls each one with and without the
/// key, so a new route cannot be left open by mistake.
pub const ROUTES: &[Route] = &[
    route!(Open "GET" "/"),
    route!(Open "GET" "/assets/{file}"),
    route!(Open "GET" "/livez"),
    route!(Open "GET" "/readyz"),
    route!(Open "GET" "/metrics"),
    route!(Annotate "GET" "/v1/models"),
    route!(Annotate "PUT" "/session"),
    route!(Annotate "GET" "/session/{id}"),
    route!(Annotate "DELETE" "/session/{id}"),
    route!(Annotate "POST" "/v1/segmentation"),
    route!(Annotate "POST" "/v1/dextr3d"),
    route!(Annotate "POST" "/v1/deepgrow"),
    route!(Annotate "POST" "/v1/inference"),
    route!(Annotate "POST" "/v1/mask2polygon"),
    route!(Annotate "POST" "/v1/fixpolygon"),
    route!(Admin "GET" "/admin/model/{name}"),
    route!(Admin "PUT" "/admin/model/{name}"),
    route!(Admin "DELETE" "/admin/model/{name}"),
    // MONAI Label's API (routes::monailabel).
    route!(Open "GET" "/auth"),
    route!(Open "POST" "/auth/token"),
    route!(Annotate "GET" "/auth/token/valid"),
    route!(Annotate "GET" "/info"),
    route!(Annotate "POST" "/infer/{model}"),
    route!(Annotate "POST" "/activelearning/{strategy}"),
    route!(Annotate "GET" "/datastore"),
    route!(Annotate "PUT" "/datastore"),
    route!(Admin "DELETE" "/datastore"),
    route!(Annotate "PUT" "/datastore/image"),
    route!(Annotate "GET" "/datastore/image"),
    route!(Annotate "HEAD" "/datastore/image"),
    route!(Admin "DELETE" "/datastore/image"),
    route!(Annotate "GET" "/datastore/image/info"),
    route!(Annotate "PUT" "/datastore/image/info"),
    route!(Annotate "PUT" "/datastore/label"),
    route!(Annotate "GET" "/datastore/label"),
    route!(Annotate "HEAD" "/datastore/label"),
    route!(Admin "DELETE" "/datastore/label"),
    route!(Annotate "GET" "/datastore/label/info"),
    route!(Annotate "PUT" "/datastore/label/info"),
    route!(Annotate "PUT" "/datastore/updatelabelinfo"),
    route!(Annotate "GET" "/datastore/dataset"),
    route!(Admin "GET" "/logs"),
    route!(Annotate "GET" "/train"),
    route!(Admin "POST" "/train"),
    route!(Admin "POST" "/train/{model}"),
    route!(Admin "DELETE" "/train"),
    route!(Admin "GET" "/model/{model}"),
    route!(Admin "GET" "/model/info/{model}"),
    route!(Admin "PUT" "/model/{model}"),
    route!(Admin "DELETE" "/model/{model}"),
    route!(Annotate "GET" "/scoring"),
    route!(Annotate "POST" "/scoring"),
    route!(Annotate "POST" "/scoring/{method}"),
    route!(Annotate "DELETE" "/scoring"),
];

/// The handler of a route of [`ROUTES`].
fn handler(route: &Route) -> MethodRouter<App> {
    use routes::monailabel as ml;
    use routes::{admin, health, infer, models, page, polygons, sessions};
    match (route.method, route.path) {
        ("GET", "/") => get(page::root),
        ("GET", "/assets/{file}") => get(page::asset),
        ("GET", "/livez") => get(health::livez),
        ("GET", "/readyz") => get(health::readyz),
        ("GET", "/metrics") => get(health::metrics),
        ("GET", "/v1/models") => get(models::list),
        ("PUT", "/session") => put(sessions::create),
        ("GET", "/session/{id}") => get(sessions::info),
        ("DELETE", "/session/{id}") => delete(sessions::delete),
        ("POST", "/v1/segmentation") => post(infer::segmentation),
        ("POST", "/v1/dextr3d") => post(infer::dextr3d),
        ("POST", "/v1/deepgrow") => post(infer::deepgrow),
        ("POST", "/v1/inference") => post(infer::inference),
        ("POST", "/v1/mask2polygon") => post(polygons::mask2polygon),
        ("POST", "/v1/fixpolygon") => post(polygons::fixpolygon),
        ("GET", "/admin/model/{name}") => get(admin::get),
        ("PUT", "/admin/model/{name}") => put(admin::put),
        ("DELETE", "/admin/model/{name}") => delete(admin::delete),
        ("GET", "/auth") => get(ml::auth::status),
        ("POST", "/auth/token") => post(ml::auth::token),
        ("GET", "/auth/token/valid") => get(ml::auth::valid),
        ("GET", "/info") => get(ml::info::info),
        ("POST", "/infer/{model}") => post(ml::infer::infer),
        ("POST", "/activelearning/{strategy}") => post(ml::activelearning::next_sample),
        ("GET", "/datastore") => get(ml::datastore::list),
        ("PUT", "/datastore" | "/datastore/image") => put(ml::datastore::put_image),
        ("DELETE", "/datastore" | "/datastore/image") => delete(ml::datastore::delete_image),
        ("GET", "/datastore/image") => get(ml::datastore::get_image),
        ("HEAD", "/datastore/image") => head(ml::datastore::head_image),
        ("GET", "/datastore/image/info") => get(ml::datastore::get_image_info),
        ("PUT", "/datastore/image/info") => put(ml::datastore::put_image_info),
        ("PUT", "/datastore/label") => put(ml::datastore::put_label),
        ("GET", "/datastore/label") => get(ml::datastore::get_label),
        ("HEAD", "/datastore/label") => head(ml::datastore::head_label),
        ("DELETE", "/datastore/label") => delete(ml::datastore::delete_label),
        ("GET", "/datastore/label/info") => get(ml::datastore::get_label_info),
        ("PUT", "/datastore/label/info") => put(ml::datastore::put_label_info),
        ("PUT", "/datastore/updatelabelinfo") => put(ml::datastore::put_update_label_info),
        ("GET", "/datastore/dataset") => get(ml::dataset::download),
        ("GET", "/logs") => get(ml::logs::get),
        ("GET", "/train") => get(ml::train::status),
        ("POST", "/train") => post(ml::train::run_all),
        ("POST", "/train/{model}") => post(ml::train::run_model),
        ("DELETE", "/train") => delete(ml::train::stop),
        ("GET", "/model/{model}") => get(ml::model::get),
        ("GET", "/model/info/{model}") => get(ml::model::info),
        ("PUT", "/model/{model}") => put(ml::model::put),
        ("DELETE", "/model/{model}") => delete(ml::model::delete),
        ("GET", "/scoring") => get(ml::scoring::status),
        ("POST", "/scoring") => post(ml::scoring::run_all),
        ("POST", "/scoring/{method}") => post(ml::scoring::run_method),
        ("DELETE", "/scoring") => delete(ml::scoring::stop),
        (method, path) => panic!("{method} {path} is in ROUTES but has no handler"),
    }
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

/// The route table with its layers (before trailing-slash normalisation): each route of
/// [`ROUTES`] behind its authentication ([`auth::middleware`]); unknown routes 404.
pub fn router(app: App) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        let guard = auth::Guard {
            gate: app.gate.clone(),
            access: route.access,
            route: route.name,
        };
        let method_router =
            handler(route).route_layer(axum::middleware::from_fn_with_state(guard, auth::middleware));
        router = router.route(route.path, method_router);
    }
    router
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

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_runtime::config::Secret;
    use tower::ServiceExt;

    fn app(key: Option<&str>) -> App {
        App {
            backends: Backends::new("http://127.0.0.1:1", None, Duration::from_secs(1), 1 << 20).unwrap(),
            max_body_bytes: 1 << 20,
            max_params_bytes: 1 << 20,
            max_polygon_vertices: 1000,
            max_image_bytes: 1 << 20,
            spool_dir: Arc::new(std::env::temp_dir()),
            max_spool_bytes: 1 << 20,
            session_max_expiry: Duration::from_secs(60),
            gate: Arc::new(Gate::new(key.map(Secret::new), Vec::new()).unwrap()),
            training: TaskBoard::training(),
            scoring: TaskBoard::scoring(),
        }
    }

    fn request(method: &str, path: &str) -> http::Request<Body> {
        http::Request::builder()
            .method(method)
            .uri(path.replace("{id}", "x").replace("{name}", "x"))
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn every_route_is_listed_once_and_has_a_handler() {
        for (i, route) in ROUTES.iter().enumerate() {
            assert!(
                !ROUTES[..i]
                    .iter()
                    .any(|r| (r.method, r.path) == (route.method, route.path)),
                "{route:?}"
            );
            assert_eq!(route.name, format!("{} {}", route.method, route.path));
            // Panics for a route without a handler.
            let _ = handler(route);
        }
        let open: Vec<&str> = ROUTES
            .iter()
            .filter(|r| r.access == Access::Open)
            .map(|r| r.path)
            .collect();
        assert_eq!(
            open,
            [
                "/",
                "/assets/{file}",
                "/livez",
                "/readyz",
                "/metrics",
                "/auth",
                "/auth/token"
            ]
        );
        assert!(
            ROUTES
                .iter()
                .filter(|r| r.path.starts_with("/admin/"))
                .all(|r| r.access == Access::Admin)
        );
    }

    #[tokio::test]
    async fn with_a_key_every_route_but_the_open_ones_answers_401_without_it() {
        let router = router(app(Some("k1")));
        for route in ROUTES {
            let answer = router
                .clone()
                .oneshot(request(route.method, route.path))
                .await
                .unwrap();
            if route.access == Access::Open {
                assert_ne!(answer.status().as_u16(), 401, "{route:?}");
            } else {
                assert_eq!(answer.status().as_u16(), 401, "{route:?}");
                assert_eq!(
                    answer.headers()[http::header::WWW_AUTHENTICATE],
                    "Bearer realm=\"aiaa\""
                );
            }
        }
        // Unknown routes keep their 404.
        let answer = router
            .clone()
            .oneshot(request("GET", "/v2/nothing"))
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 404);
        let answer = router.oneshot(request("POST", "/v1/models")).await.unwrap();
        assert_eq!(answer.status().as_u16(), 404);
        // Without a key nothing answers 401.
        let open = super::router(app(None));
        for route in ROUTES {
            let answer = open
                .clone()
                .oneshot(request(route.method, route.path))
                .await
                .unwrap();
            assert_ne!(answer.status().as_u16(), 401, "{route:?}");
        }
    }
}
