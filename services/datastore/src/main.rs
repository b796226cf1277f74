//! `aiaa-datastore`: images, labels, datalists, sessions and conversion jobs as a binary of
//! its own (one per container image; no libtorch). The same flags and environment as
//! `aiaa serve datastore`, plus the `probe`, `check-config` and `env` sub-commands of every
//! service binary.

use std::process::ExitCode;

use aiaa_datastore::DatastoreArgs;
use aiaa_runtime::config::{AuthArgs, GrpcArgs, StoreArgs, TelemetryArgs};
use aiaa_runtime::service_main::{Binary, Health, Started, Tool, service_store_url};
use clap::{CommandFactory, Parser};

/// The AIAA datastore (gRPC): images, labels, datalists, sessions, conversion jobs.
#[derive(Debug, Parser)]
#[command(name = "aiaa-datastore", version, about)]
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
    datastore: DatastoreArgs,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let tool = cli.tool.take();
    let url = service_store_url(&cli.store.store_url, "datastore");
    let binary = Binary {
        component: "datastore",
        listen: cli.datastore.listen,
        health: Health::Grpc,
    };
    binary.run(
        tool,
        Cli::command(),
        &cli.telemetry,
        &cli,
        || {
            cli.grpc.validate()?;
            cli.datastore.validate()?;
            aiaa_runtime::store::open(&url)?;
            Ok(())
        },
        |shutdown| async {
            let store = aiaa_runtime::store::open(&url)?;
            let server = aiaa_datastore::start(&cli.datastore, store, &cli.grpc, &cli.auth, shutdown).await?;
            Ok(Started {
                addr: server.addr,
                what: "gRPC, health, reflection, /metrics",
                done: Box::pin(async { Ok(server.wait().await?) }),
            })
        },
    )
}
