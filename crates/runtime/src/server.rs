//! One gRPC server bootstrap for every service. [`start`] serves the given tonic routes plus:
//! `grpc.health.v1` (each named service SERVING once bound, NOT_SERVING while draining),
//! gRPC reflection over every `aiaa.*.v1` contract, Prometheus `/metrics` on the same port
//! (plain HTTP/1.1), a span per call whose parent is the caller's W3C trace context, call
//! counts and latencies, a panic in a handler turned into INTERNAL, API-key checks on
//! every call but health, reflection and `/metrics` when a key is set (see [`auth`]), a cap
//! on open connections (`--grpc-max-connections`, kept under the
//! file-descriptor limit, which is raised to its hard limit first: at that limit every server
//! of the process would stop answering), and a graceful shutdown that stops accepting, drains
//! in-flight calls (bounded by the drain timeout) and returns.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

use crate::RuntimeError;
use crate::auth::{self, ApiKeyCheck};
use crate::config::{AuthArgs, GrpcArgs};
use crate::telemetry;

/// What a service hands to [`start`].
pub struct ServerSpec {
    /// The component's name in logs and metrics, e.g. "registry".
    pub component: &'static str,
    /// The tonic routes of the service's own gRPC services.
    pub routes: Routes,
    /// Fully-qualified gRPC service names reported by health, e.g.
    /// `aiaa.registry.v1.RegistryService`.
    pub service_names: Vec<&'static str>,
    /// Whether the services are SERVING as soon as the socket is bound (inference waits for
    /// its models and reports SERVING itself through [`RunningServer::health`]).
    pub serving_at_start: bool,
}

/// A started server.
pub struct RunningServer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Updates health status.
    pub health: HealthReporter,
    task: JoinHandle<Result<(), RuntimeError>>,
}

impl RunningServer {
    /// Waits until the server has shut down (after its token is cancelled).
    pub async fn wait(self) -> Result<(), RuntimeError> {
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(RuntimeError::Io(std::io::Error::other(e.to_string()))),
        }
    }
}

/// Pending connections the kernel queues for a listener before the server accepts them.
/// std's and tokio's `bind` ask for 128: a burst of a few hundred connects (a client pool
/// opening at once, or a flood the cap is meant to refuse) overflows that before the accept
/// loop runs, and the kernel then drops SYNs, so a well-behaved client's connect waits a
/// whole SYN retransmission (1 s). The kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds a TCP listener on `addr` (port 0 picks a free port) with [`LISTEN_BACKLOG`]; every
/// server of the platform binds through here.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std and tokio do: a restarted server rebinds at once despite TIME_WAIT sockets.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Binds `addr` (port 0 picks a free port) and starts serving until `shutdown` is cancelled.
pub async fn start(
    addr: SocketAddr,
    spec: ServerSpec,
    grpc: &GrpcArgs,
    auth_args: &AuthArgs,
    shutdown: CancellationToken,
) -> Result<RunningServer, RuntimeError> {
    grpc.validate()?;
    let listener = bind(addr)
        .map_err(|e| RuntimeError::Io(std::io::Error::new(e.kind(), format!("bind {addr}: {e}"))))?;
    let addr = listener.local_addr()?;
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(aiaa_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| RuntimeError::Io(std::io::Error::other(format!("reflection: {e}"))))?;
    let status = if spec.serving_at_start {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in &spec.service_names {
        health.set_service_status(*name, status).await;
    }
    health.set_service_status("", status).await;

    let component = spec.component;
    let check = ApiKeyCheck::new(auth_args.api_key.clone());
    let router = spec
        .routes
        .add_service(health_service)
        .add_service(reflection)
        .into_axum_router()
        .route(
            "/metrics",
            axum::routing::get(|| async { telemetry::render_metrics() }),
        )
        .layer(axum::middleware::from_fn_with_state(check, auth::middleware))
        .layer(axum::middleware::from_fn(peer_address))
        .layer(axum::middleware::from_fn(move |req, next| {
            observe(component, req, next)
        }))
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked");
                tonic::Status::internal("internal error: the handler panicked; the service keeps serving")
                    .into_http::<axum::body::Body>()
            },
        ));

    let drain = grpc.drain_timeout;
    let names = spec.service_names.clone();
    let health_for_shutdown = health.clone();
    let (alive, mut lingering) = tokio::sync::mpsc::channel::<()>(1);
    let max_connections = connection_cap(component, grpc.max_connections, "--grpc-max-connections");
    let listener = crate::linger::LingeringListener::new(listener, alive, max_connections, component);
    let task = tokio::spawn(async move {
        let stop = shutdown.clone();
        let service = router.into_make_service_with_connect_info::<Peer>();
        let serve = axum::serve(listener, service).with_graceful_shutdown(async move {
            stop.cancelled().await;
            for name in &names {
                health_for_shutdown
                    .set_service_status(*name, ServingStatus::NotServing)
                    .await;
            }
            health_for_shutdown
                .set_service_status("", ServingStatus::NotServing)
                .await;
            tracing::info!(component, "draining in-flight calls");
        });
        let mut serve = Box::pin(serve.into_future());
        let served = tokio::select! {
            r = &mut serve => r.map_err(RuntimeError::Io),
            _ = async { shutdown.cancelled().await; tokio::time::sleep(drain).await } => {
                tracing::warn!(component, ?drain, "drain timeout reached; closing remaining calls");
                Ok(())
            }
        };
        // The closed connections' last bytes reach their clients (see `linger`); dropping the
        // server drops the listener and, after a drain timeout, the connections left.
        drop(serve);
        let _ = tokio::time::timeout(crate::linger::LINGER, lingering.recv()).await;
        served
    });
    tracing::info!(component, %addr, "gRPC server listening");
    Ok(RunningServer { addr, health, task })
}

/// Raises the process's soft file-descriptor limit to its hard limit (once; as Go's runtime
/// does) and returns the soft limit then in force, if it can be read.
pub fn raise_fd_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
            return Some(hard);
        }
        Some(soft)
    })
}

/// The connection cap a server of `component` uses: `configured` (named by `flag` in the
/// log), lowered to an eighth of the file-descriptor limit (at least 16) when that is
/// smaller, so that the servers of one process together stay well inside it.
pub fn connection_cap(component: &str, configured: usize, flag: &str) -> usize {
    let Some(limit) = raise_fd_limit() else {
        return configured;
    };
    let share = usize::try_from(limit / 8).unwrap_or(usize::MAX).max(16);
    if configured > share {
        tracing::warn!(
            component,
            configured,
            used = share,
            fd_limit = limit,
            "{flag} lowered to an eighth of the file-descriptor limit (raise `ulimit -n` to allow more)"
        );
        return share;
    }
    configured
}

/// Per-call span (child of the caller's trace), log line, count and latency.
/// A connection's peer address, as the listener accepted it.
#[derive(Clone, Copy, Debug)]
struct Peer(SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, crate::linger::LingeringListener>>
    for Peer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::linger::LingeringListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Hands the peer's address to the handlers the way tonic looks for it
/// (`tonic::Request::remote_addr`), as tonic's own server would.
async fn peer_address(mut req: Request, next: Next) -> Response {
    if let Some(axum::extract::ConnectInfo(Peer(remote))) = req
        .extensions()
        .get::<axum::extract::ConnectInfo<Peer>>()
        .copied()
    {
        req.extensions_mut()
            .insert(tonic::transport::server::TcpConnectInfo {
                local_addr: None,
                remote_addr: Some(remote),
            });
    }
    next.run(req).await
}

async fn observe(component: &'static str, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let span = tracing::info_span!(
        "rpc",
        otel.name = %path,
        otel.kind = "server",
        rpc.system = "grpc",
        component,
        grpc.status = tracing::field::Empty,
    );
    telemetry::extract(req.headers(), &span);
    let start = Instant::now();
    let response = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed().as_secs_f64();
    // Errors answered before any message carry grpc-status in the headers; streamed answers
    // carry it in trailers, which complete later: those count as "0" here.
    let code = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .to_string();
    span.record("grpc.status", code.as_str());
    metrics::counter!("aiaa_rpc_calls_total", "component" => component, "path" => path.clone(), "grpc_status" => code)
        .increment(1);
    metrics::histogram!("aiaa_rpc_duration_seconds", "component" => component, "path" => path)
        .record(elapsed);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A gRPC service whose every call panics.
    #[derive(Clone)]
    struct Panicker;

    impl tonic::server::NamedService for Panicker {
        const NAME: &'static str = "test.Panicker";
    }

    impl tower::Service<http::Request<tonic::body::Body>> for Panicker {
        type Response = http::Response<tonic::body::Body>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<tonic::body::Body>) -> Self::Future {
            panic!("a handler bug");
        }
    }

    /// A burst of 600 connects while nobody accepts: all are queued by the kernel at once.
    /// With std's backlog of 128 the 130th SYN is dropped and its connect waits a 1 s
    /// retransmission.
    #[tokio::test]
    async fn a_burst_of_connects_is_queued_while_the_server_is_busy() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let started = Instant::now();
        let mut held = Vec::new();
        let burst = async {
            for _ in 0..600 {
                held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
            }
        };
        let queued = tokio::time::timeout(std::time::Duration::from_secs(5), burst).await;
        let took = started.elapsed();
        assert!(queued.is_ok(), "{} of 600 connects done in 5 s", held.len());
        assert!(
            took < std::time::Duration::from_millis(900),
            "600 connects took {took:?}"
        );
        drop(listener);
    }

    async fn raw(addr: SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_and_the_server_keeps_serving() {
        let shutdown = CancellationToken::new();
        let spec = ServerSpec {
            component: "test",
            routes: Routes::new(Panicker),
            service_names: vec!["test.Panicker"],
            serving_at_start: true,
        };
        let server = start(
            "127.0.0.1:0".parse().unwrap(),
            spec,
            &GrpcArgs::default(),
            &AuthArgs::default(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        let call = "POST /test.Panicker/Call HTTP/1.1\r\nHost: x\r\ncontent-type: application/grpc\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        for _ in 0..3 {
            let answer = raw(server.addr, call).await;
            assert!(answer.contains("grpc-status: 13"), "{answer}");
        }
        let metrics = raw(
            server.addr,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        shutdown.cancel();
        server.wait().await.unwrap();
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_the_others_keep_working() {
        let shutdown = CancellationToken::new();
        let spec = ServerSpec {
            component: "test",
            routes: Routes::new(Panicker),
            service_names: vec!["test.Panicker"],
            serving_at_start: true,
        };
        let grpc = GrpcArgs {
            max_connections: 2,
            ..Default::default()
        };
        let server = start(
            "127.0.0.1:0".parse().unwrap(),
            spec,
            &grpc,
            &AuthArgs::default(),
            shutdown.clone(),
        )
        .await
        .unwrap();
        // Two idle connections take the two places.
        let first = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let _second = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // A third is closed at once, without an answer.
        let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), third.read(&mut buf))
            .await
            .expect("the connection over the cap must be closed at once");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        // One of the first closes: its place is free again.
        drop(first);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
            let _ = s
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            if out.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(Instant::now() < deadline, "no place freed: {out:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        shutdown.cancel();
        drop(_second);
        server.wait().await.unwrap();
    }
}
