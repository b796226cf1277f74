//! What each per-service binary (`aiaa-registry`, `aiaa-datastore`, `aiaa-inference`,
//! `aiaa-trainer`, `aiaa-gateway`: one per container image) shares with the others:
//!
//! - the serve loop: validate, log the effective configuration, start, print the one
//!   `aiaa: <service> listening on <addr>` line, wait for SIGINT / SIGTERM, drain, exit 0;
//! - the tool sub-commands a container or a Kubernetes pod needs from the image itself (no
//!   other binary can be installed there): `probe` (a `grpc.health.v1` or HTTP check, exit 0
//!   when healthy, 1 otherwise), `check-config` (flags and environment validated without
//!   starting, exit 0 or 2) and `env` (every environment variable the binary reads).
//!
//! `aiaa serve <service>` runs the same service start functions; only this loop is per binary.

use std::fmt::Debug;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{TelemetryArgs, parse_duration};

/// Any error a service's start or run may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The tool sub-commands of every service binary; without one, the binary serves.
#[derive(Debug, clap::Subcommand)]
pub enum Tool {
    /// Checks a running instance's health (gRPC: grpc.health.v1 SERVING; the gateway: HTTP
    /// 200 from /livez, or /readyz with --ready); exit 0 when healthy, 1 otherwise. For
    /// Docker HEALTHCHECK and Kubernetes exec probes.
    Probe(ProbeArgs),
    /// Validates the flags and environment (and, for inference, the engine pool and model
    /// configs) without starting; exit 0, or 2 naming the problem.
    CheckConfig,
    /// Prints every environment variable this binary reads, one per line.
    Env,
}

/// `probe`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// `host:port` (or `http://host:port`) to check; default: this service's own listen
    /// address, with 0.0.0.0 / [::] read as 127.0.0.1.
    pub address: Option<String>,
    /// How long to wait for the answer, e.g. `2s`.
    #[arg(long = "probe-timeout", default_value = "2s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Readiness instead of liveness (the gateway's /readyz: its backends are up too).
    #[arg(long)]
    pub ready: bool,
}

/// How a service reports its health.
#[derive(Clone, Copy, Debug)]
pub enum Health {
    /// `grpc.health.v1` on the gRPC port (the server as a whole, service name "").
    Grpc,
    /// HTTP `/livez` (liveness) and `/readyz` (readiness).
    Http,
}

/// A started service: its bound address, what it serves there, and a future that completes
/// once it has drained after the shutdown token was cancelled.
pub struct Started<'a> {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// What the address serves, for the listening line.
    pub what: &'static str,
    /// Completes when the service has stopped.
    pub done: Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send + 'a>>,
}

/// One service binary: its name, own listen address and kind of health check.
#[derive(Debug)]
pub struct Binary {
    /// The service's name in logs and the listening line, e.g. "registry".
    pub component: &'static str,
    /// The address it listens on (the probe's default target).
    pub listen: SocketAddr,
    /// How it reports health.
    pub health: Health,
}

impl Binary {
    /// Runs the binary: the tool sub-command when one is given, else `check` then `serve`
    /// until SIGINT / SIGTERM. `command` is the binary's clap command (for `env`), `config`
    /// its parsed arguments (logged at start, secrets redacted by their types).
    pub fn run<'a, S, Fut>(
        self,
        tool: Option<Tool>,
        command: clap::Command,
        telemetry: &TelemetryArgs,
        config: &dyn Debug,
        check: impl FnOnce() -> Result<(), BoxError>,
        serve: S,
    ) -> ExitCode
    where
        S: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<Started<'a>, BoxError>>,
    {
        let name = format!("aiaa-{}", self.component);
        match tool {
            Some(Tool::Env) => {
                for var in env_vars(&command) {
                    println!("{var}");
                }
                ExitCode::SUCCESS
            }
            Some(Tool::CheckConfig) => match telemetry
                .validate()
                .map_err(BoxError::from)
                .and_then(|()| check())
            {
                Ok(()) => {
                    println!("{name}: configuration ok");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{name}: {e}");
                    ExitCode::from(2)
                }
            },
            Some(Tool::Probe(args)) => {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("{name}: probe: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                match runtime.block_on(probe(self.health, self.listen, &args)) {
                    Ok(status) => {
                        println!("{name}: {status}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("{name}: unhealthy: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            None => match self.serve(telemetry, config, check, serve) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("{name}: {e}");
                    ExitCode::FAILURE
                }
            },
        }
    }

    fn serve<'a, S, Fut>(
        self,
        telemetry: &TelemetryArgs,
        config: &dyn Debug,
        check: impl FnOnce() -> Result<(), BoxError>,
        serve: S,
    ) -> Result<(), BoxError>
    where
        S: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = Result<Started<'a>, BoxError>>,
    {
        check()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        runtime.block_on(async move {
            let _telemetry = crate::telemetry::init(telemetry, &format!("aiaa-{}", self.component))?;
            tracing::info!(config = ?config, "effective configuration");
            let shutdown = crate::shutdown::on_signal();
            let started = serve(shutdown.clone()).await?;
            // One parseable line: harnesses and users read the bound address here.
            println!(
                "aiaa: {} listening on {} ({})",
                self.component, started.addr, started.what
            );
            println!("aiaa: ready; SIGINT / SIGTERM stops");
            started.done.await?;
            println!("aiaa: stopped");
            Ok(())
        })
    }
}

/// The store URL a service keeps its data under: its own sub-folder (or key prefix) of the
/// platform's store URL, so that every service can share one folder, volume or bucket.
pub fn service_store_url(base: &str, component: &str) -> String {
    format!("{}/{component}", base.trim_end_matches('/'))
}

/// The environment variables a clap command reads, in declaration order.
pub fn env_vars(command: &clap::Command) -> Vec<String> {
    command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|v| v.to_string_lossy().into_owned())
        .collect()
}

/// Where a probe connects: the given address, or the service's own with an unspecified IP
/// read as loopback.
fn target(given: Option<&str>, listen: SocketAddr) -> String {
    match given {
        Some(a) if a.contains("://") => a.to_string(),
        Some(a) => format!("http://{a}"),
        None => {
            let ip = if listen.ip().is_unspecified() {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            } else {
                listen.ip()
            };
            format!("http://{}", SocketAddr::new(ip, listen.port()))
        }
    }
}

/// Checks a running instance; `Ok` carries a one-line status.
pub async fn probe(health: Health, listen: SocketAddr, args: &ProbeArgs) -> Result<String, BoxError> {
    let url = target(args.address.as_deref(), listen);
    tokio::time::timeout(args.timeout, async {
        match health {
            Health::Grpc => probe_grpc(&url).await,
            Health::Http => probe_http(&url, if args.ready { "/readyz" } else { "/livez" }).await,
        }
    })
    .await
    .map_err(|_| format!("{url}: no answer within {:?}", args.timeout))?
}

async fn probe_grpc(url: &str) -> Result<String, BoxError> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("{url}: {e}"))?
        .connect()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| format!("{url}: {}", e.message()))?
        .into_inner()
        .status();
    match status {
        ServingStatus::Serving => Ok(format!("{url}: SERVING")),
        other => Err(format!("{url}: {}", other.as_str_name()).into()),
    }
}

async fn probe_http(url: &str, path: &str) -> Result<String, BoxError> {
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let uri: http::Uri = format!("{}{path}", url.trim_end_matches('/'))
        .parse()
        .map_err(|e| format!("{url}{path}: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<axum::body::Body>();
    let response = client.get(uri.clone()).await.map_err(|e| format!("{uri}: {e}"))?;
    if response.status().is_success() {
        Ok(format!("{uri}: {}", response.status()))
    } else {
        Err(format!("{uri}: {}", response.status()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_targets_loopback_for_an_unspecified_listen_address() {
        let any: SocketAddr = "0.0.0.0:5101".parse().unwrap();
        assert_eq!(target(None, any), "http://127.0.0.1:5101");
        let own: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        assert_eq!(target(None, own), "http://10.1.2.3:5000");
        assert_eq!(target(Some("registry:5101"), any), "http://registry:5101");
        assert_eq!(target(Some("https://x:1"), any), "https://x:1");
    }

    #[tokio::test]
    async fn a_probe_of_a_closed_port_fails_within_its_timeout() {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let args = ProbeArgs {
            address: None,
            timeout: Duration::from_secs(2),
            ready: false,
        };
        for health in [Health::Grpc, Health::Http] {
            let t0 = std::time::Instant::now();
            assert!(probe(health, free, &args).await.is_err());
            assert!(t0.elapsed() < Duration::from_secs(3));
        }
    }

    #[tokio::test]
    async fn a_probe_reports_a_serving_grpc_server_healthy_and_a_draining_one_not() {
        let shutdown = CancellationToken::new();
        let (health, service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = shutdown.clone();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                ),
        );
        let args = ProbeArgs {
            address: Some(addr.to_string()),
            timeout: Duration::from_secs(5),
            ready: false,
        };
        let ok = probe(Health::Grpc, addr, &args).await.unwrap();
        assert!(ok.ends_with("SERVING"), "{ok}");
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        let err = probe(Health::Grpc, addr, &args).await.unwrap_err().to_string();
        assert!(err.contains("NOT_SERVING"), "{err}");
        shutdown.cancel();
        let _ = server.await;
    }

    #[test]
    fn env_lists_the_variables_of_flattened_blocks() {
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(flatten)]
            telemetry: TelemetryArgs,
            #[command(subcommand)]
            tool: Option<Tool>,
        }
        let vars = env_vars(&<Cli as clap::CommandFactory>::command());
        assert_eq!(vars, ["AIAA_LOG_FORMAT", "AIAA_LOG", "AIAA_OTLP_ENDPOINT"]);
    }
}
