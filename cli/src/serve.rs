//! `aiaa up` (every service in one process, each on its own port, talking through the gRPC
//! contracts, storing under one folder or bucket) and `aiaa serve <service>` (one service, as
//! in a container). Both stop gracefully on SIGINT / SIGTERM.

use aiaa_datastore::DatastoreArgs;
use aiaa_registry::RegistryArgs;
use aiaa_runtime::config::{AuthArgs, GrpcArgs, StoreArgs};
use aiaa_runtime::server::RunningServer;
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
}

/// `aiaa up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    common: CommonServeArgs,
}

/// The services `aiaa serve` can run.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Service {
    /// The model catalogue.
    Registry,
    /// Images, labels, datalists, sessions, conversion jobs.
    Datastore,
}

impl Service {
    /// Its name in logs, metrics and store paths.
    pub fn name(self) -> &'static str {
        match self {
            Service::Registry => "registry",
            Service::Datastore => "datastore",
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

/// Each service keeps its data under its own sub-folder (or key prefix) of the store URL.
fn sub_store(base: &str, service: Service) -> String {
    format!("{}/{}", base.trim_end_matches('/'), service.name())
}

async fn start(
    service: Service,
    args: &CommonServeArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    let url = sub_store(&args.store.store_url, service);
    let store = aiaa_runtime::store::open(&url)?;
    let server = match service {
        Service::Registry => {
            aiaa_registry::start(&args.registry, store, &url, &args.grpc, &args.auth, shutdown).await?
        }
        Service::Datastore => {
            aiaa_datastore::start(&args.datastore, store, &args.grpc, &args.auth, shutdown).await?
        }
    };
    // One parseable line per service: the harness and users read the bound address here.
    println!(
        "aiaa: {} listening on {} (gRPC, health, reflection, /metrics)",
        service.name(),
        server.addr
    );
    Ok(server)
}

async fn run(services: &[Service], args: &CommonServeArgs) -> anyhow::Result<()> {
    args.grpc.validate()?;
    tracing::info!(config = ?args, "effective configuration");
    let shutdown = aiaa_runtime::shutdown::on_signal();
    let mut running = Vec::new();
    for &service in services {
        match start(service, args, shutdown.clone()).await {
            Ok(server) => running.push(server),
            Err(e) => {
                shutdown.cancel();
                for server in running {
                    let _ = server.wait().await;
                }
                return Err(e.context(format!("starting the {}", service.name())));
            }
        }
    }
    println!("aiaa: ready; data in {}; Ctrl-C stops", args.store.store_url);
    shutdown.cancelled().await;
    for server in running {
        server.wait().await?;
    }
    println!("aiaa: stopped");
    Ok(())
}

/// `aiaa up`.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    run(&[Service::Registry, Service::Datastore], &args.common).await
}

/// `aiaa serve <service>`.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    run(&[args.service], &args.common).await
}
