//! `aiaa-gateway`: the AIAA REST API that viewers' clients speak, as a binary of its own (one
//! per container image; no libtorch). The same flags and environment as `aiaa serve
//! gateway`, plus the `probe` (HTTP /livez, or /readyz with --ready), `check-config` and
//! `env` sub-commands of every service binary.

use std::process::ExitCode;

use aiaa_gateway::GatewayArgs;
use aiaa_runtime::config::{AuthArgs, MessageArgs, TelemetryArgs};
use aiaa_runtime::service_main::{Binary, Health, Started, Tool};
use clap::{CommandFactory, Parser};

/// The AIAA REST gateway (HTTP): models, sessions, segmentation, dextr3d, deepgrow, polygons.
#[derive(Debug, Parser)]
#[command(name = "aiaa-gateway", version, about)]
struct Cli {
    #[command(subcommand)]
    tool: Option<Tool>,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(flatten)]
    message: MessageArgs,
    #[command(flatten)]
    gateway: GatewayArgs,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let tool = cli.tool.take();
    let binary = Binary {
        component: "gateway",
        listen: cli.gateway.listen,
        health: Health::Http,
    };
    binary.run(
        tool,
        Cli::command(),
        &cli.telemetry,
        &cli,
        || {
            cli.message.validate()?;
            Ok(cli.gateway.validate()?)
        },
        |shutdown| async {
            let (addr, task) = aiaa_gateway::start(&cli.gateway, &cli.message, &cli.auth, shutdown).await?;
            Ok(Started {
                addr,
                what: "AIAA REST, /livez, /readyz, /metrics",
                done: Box::pin(async { Ok(task.await??) }),
            })
        },
    )
}
