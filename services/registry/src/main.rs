//! `aiaa-registry`: the model catalogue as a binary of its own (one per container image;
//! no libtorch). The same flags and environment as `aiaa serve registry`, plus the `probe`,
//! `check-config` and `env` sub-commands of every service binary.

use std::process::ExitCode;

use aiaa_registry::RegistryArgs;
use aiaa_runtime::config::{AuthArgs, GrpcArgs, StoreArgs, TelemetryArgs};
use aiaa_runtime::service_main::{Binary, Health, Started, Tool, service_store_url};
use clap::{CommandFactory, Parser};

/// The AIAA model registry (gRPC): org/team/name models with immutable versions.
#[derive(Debug, Parser)]
#[command(name = "aiaa-registry", version, about)]
struct Cli {
    #[command(subcommand)]
    tool: Option<Tool>,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    grpc: GrpcArgs,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let tool = cli.tool.take();
    let url = service_store_url(&cli.store.store_url, "registry");
    let binary = Binary {
        component: "registry",
        listen: cli.registry.addr,
        health: Health::Grpc,
    };
    binary.run(
        tool,
        Cli::command(),
        &cli.telemetry,
        &cli,
        || {
            cli.grpc.validate()?;
            aiaa_runtime::store::open(&url)?;
            Ok(())
        },
        |shutdown| async {
            let store = aiaa_runtime::store::open(&url)?;
            let server =
                aiaa_registry::start(&cli.registry, store, &url, &cli.grpc, &cli.auth, shutdown).await?;
            Ok(Started {
                addr: server.addr,
                what: "gRPC, health, reflection, /metrics",
                done: Box::pin(async { Ok(server.wait().await?) }),
            })
        },
    )
}
