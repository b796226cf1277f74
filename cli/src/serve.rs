//! `aiaa up` (every service in one process, each on its own port, talking through the gRPC
//! contracts, storing under one folder or bucket) and `aiaa serve <service>` (one service, as
//! in a container). Both stop gracefully on SIGINT / SIGTERM. The REST gateway (the AIAA
//! annotation API on port 5000) reaches the datastore over gRPC like any other client. The
//! trainer runs its jobs as child processes of this binary (`aiaa train …`, `aiaa export …`,
//! `aiaa evaluate …`) and reaches the datastore and registry of the same process.

use aiaa_datastore::DatastoreArgs;
use aiaa_gateway::{GatewayArgs, GatewayError};
use aiaa_inference::InferenceArgs;
use aiaa_registry::RegistryArgs;
use aiaa_runtime::config::{AuthArgs, GrpcArgs, StoreArgs};
use aiaa_runtime::server::RunningServer;
use aiaa_trainer::{RunningTrainer, TrainerArgs};
use tokio_util::sync::CancellationToken;

/// Settings shared by `up` and `serve`.
#[derive(Debug, clap::Args)]
pub struct CommonServeArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    grpc: GrpcArgs,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    datastore: DatastoreArgs,
    #[command(flatten)]
    inference: InferenceArgs,
    #[command(flatten)]
    trainer: TrainerArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
}

/// `aiaa up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    common: CommonServeArgs,
}

/// The services `aiaa serve` can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// The model catalogue.
    Registry,
    /// Images, labels, datalists, sessions, conversion jobs.
    Datastore,
    /// The engine pool: annotation and segmentation models.
    Inference,
    /// Training, export and evaluation jobs, each in a child process.
    Trainer,
    /// The AIAA REST API that the viewers' clients speak.
    Gateway,
}

impl Service {
    /// Its name in logs, metrics and store paths.
    pub fn name(self) -> &'static str {
        match self {
            Service::Registry => "registry",
            Service::Datastore => "datastore",
            Service::Inference => "inference",
            Service::Trainer => "trainer",
            Service::Gateway => "gateway",
        }
    }
}

/// `aiaa serve <service>`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Which service to run.
    #[arg(value_enum)]
    pub service: Service,
    #[command(flatten)]
    common: CommonServeArgs,
}

/// Each service keeps its data under its own sub-folder (or key prefix) of the store URL,
/// as its own binary does.
fn sub_store(base: &str, service: Service) -> String {
    aiaa_runtime::service_main::service_store_url(base, service.name())
}

/// A started service: the gRPC ones share the runtime's server (the trainer also waits for
/// its jobs to stop); the gateway is plain HTTP.
enum Running {
    Grpc(RunningServer),
    Trainer(RunningTrainer),
    Http(tokio::task::JoinHandle<Result<(), GatewayError>>),
}

impl Running {
    async fn wait(self) -> anyhow::Result<()> {
        match self {
            Running::Grpc(server) => Ok(server.wait().await?),
            Running::Trainer(trainer) => Ok(trainer.wait().await?),
            Running::Http(task) => Ok(task.await??),
        }
    }
}

/// The addresses bound so far by the services of this process (maybe port 0).
#[derive(Clone, Copy, Debug, Default)]
struct Bound {
    registry: Option<std::net::SocketAddr>,
    datastore: Option<std::net::SocketAddr>,
    inference: Option<std::net::SocketAddr>,
    trainer: Option<std::net::SocketAddr>,
}

async fn start(
    service: Service,
    args: &CommonServeArgs,
    bound: Bound,
    shutdown: CancellationToken,
) -> anyhow::Result<(Running, std::net::SocketAddr)> {
    let (running, addr, what) = match service {
        Service::Registry | Service::Datastore => {
            let url = sub_store(&args.store.store_url, service);
            let store = aiaa_runtime::store::open(&url)?;
            let server = if let Service::Registry = service {
                aiaa_registry::start(&args.registry, store, &url, &args.grpc, &args.auth, shutdown).await?
            } else {
                aiaa_datastore::start(&args.datastore, store, &args.grpc, &args.auth, shutdown).await?
            };
            let addr = server.addr;
            (Running::Grpc(server), addr, "gRPC, health, reflection, /metrics")
        }
        Service::Inference => {
            let mut inference = args.inference.clone();
            // In one process inference talks to the services actually bound (maybe port 0).
            if let Some(ds) = bound.datastore {
                inference.datastore_url = format!("http://{ds}");
            }
            if let Some(reg) = bound.registry {
                inference.registry_url = format!("http://{reg}");
            }
            let server = aiaa_inference::start(&inference, &args.grpc, &args.auth, shutdown).await?;
            let addr = server.addr;
            (Running::Grpc(server), addr, "gRPC, health, reflection, /metrics")
        }
        Service::Trainer => {
            let url = sub_store(&args.store.store_url, service);
            let store = aiaa_runtime::store::open(&url)?;
            let mut trainer = args.trainer.clone();
            // In one process the trainer talks to the services actually bound (maybe port 0).
            if let Some(ds) = bound.datastore {
                trainer.datastore_url = format!("http://{ds}");
            }
            if let Some(reg) = bound.registry {
                trainer.registry_url = format!("http://{reg}");
            }
            let running = aiaa_trainer::start(&trainer, store, &args.grpc, &args.auth, shutdown).await?;
            let addr = running.addr;
            (
                Running::Trainer(running),
                addr,
                "gRPC, health, reflection, /metrics",
            )
        }
        Service::Gateway => {
            let mut gateway = args.gateway.clone();
            // In one process the gateway talks to the services actually bound (maybe port 0).
            if let Some(ds) = bound.datastore {
                gateway.datastore_url = format!("http://{ds}");
                gateway.session_max_expiry = args.datastore.session_max_expiry;
            }
            if let Some(inf) = bound.inference {
                gateway.inference_url = Some(format!("http://{inf}"));
            }
            if let Some(t) = bound.trainer {
                gateway.trainer_url = Some(format!("http://{t}"));
            }
            if let Some(reg) = bound.registry {
                gateway.registry_url = Some(format!("http://{reg}"));
            }
            let (addr, task) =
                aiaa_gateway::start(&gateway, &args.grpc.message, &args.auth, shutdown).await?;
            (Running::Http(task), addr, "AIAA REST, /livez, /readyz, /metrics")
        }
    };
    // One parseable line per service: the harness and users read the bound address here.
    println!("aiaa: {} listening on {addr} ({what})", service.name());
    Ok((running, addr))
}

/// Starts `services` in order and, on SIGTERM or Ctrl-C, stops them in two waves: the
/// gateway first, so that the requests it is draining can still call the services behind it,
/// then the gRPC services together, each draining its own calls.
async fn run(services: &[Service], args: &CommonServeArgs) -> anyhow::Result<()> {
    args.grpc.validate()?;
    tracing::info!(config = ?args, "effective configuration");
    let signal = aiaa_runtime::shutdown::on_signal();
    let front = CancellationToken::new();
    let back = CancellationToken::new();
    let mut running = Vec::new();
    let mut bound = Bound::default();
    for &service in services {
        let token = if matches!(service, Service::Gateway) {
            &front
        } else {
            &back
        };
        match start(service, args, bound, token.clone()).await {
            Ok((server, addr)) => {
                match service {
                    Service::Registry => bound.registry = Some(addr),
                    Service::Datastore => bound.datastore = Some(addr),
                    Service::Inference => bound.inference = Some(addr),
                    Service::Trainer => bound.trainer = Some(addr),
                    Service::Gateway => {}
                }
                running.push((service, server));
            }
            Err(e) => {
                front.cancel();
                back.cancel();
                for (_, server) in running {
                    let _ = server.wait().await;
                }
                return Err(e.context(format!("starting the {}", service.name())));
            }
        }
    }
    println!("aiaa: ready; data in {}; Ctrl-C stops", args.store.store_url);
    signal.cancelled().await;
    let (gateway, rest): (Vec<_>, Vec<_>) = running
        .into_iter()
        .partition(|(service, _)| matches!(service, Service::Gateway));
    front.cancel();
    let mut first_error = None;
    for (_, server) in gateway {
        first_error = first_error.or(server.wait().await.err());
    }
    // The services behind drain too when the gateway's stop failed.
    back.cancel();
    for (_, server) in rest {
        first_error = first_error.or(server.wait().await.err());
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    println!("aiaa: stopped");
    Ok(())
}

/// `aiaa up`.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    run(
        &[
            Service::Registry,
            Service::Datastore,
            Service::Inference,
            Service::Trainer,
            Service::Gateway,
        ],
        &args.common,
    )
    .await
}

/// `aiaa serve <service>`.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    run(&[args.service], &args.common).await
}
