//! `aiaa-trainer`: the training, export and evaluation job service as a binary of its own
//! (one per container image; links libtorch). Its jobs run as child processes of the full
//! `aiaa` command (`aiaa train …`): `--trainer-command` (AIAA_TRAINER_COMMAND), by default
//! the `aiaa` next to this binary. The same flags and environment as `aiaa serve trainer`,
//! plus the `probe`, `check-config` and `env` sub-commands of every service binary.

use std::process::ExitCode;

use aiaa_runtime::config::{AuthArgs, GrpcArgs, StoreArgs, TelemetryArgs};
use aiaa_runtime::service_main::{Binary, Health, Started, Tool, service_store_url};
use aiaa_trainer::TrainerArgs;
use clap::{CommandFactory, Parser};

/// The AIAA trainer (gRPC): training, export and evaluation jobs, each a child process.
#[derive(Debug, Parser)]
#[command(name = "aiaa-trainer", version, about)]
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
    trainer: TrainerArgs,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let tool = cli.tool.take();
    let url = service_store_url(&cli.store.store_url, "trainer");
    let binary = Binary {
        component: "trainer",
        listen: cli.trainer.listen,
        health: Health::Grpc,
    };
    binary.run(
        tool,
        Cli::command(),
        &cli.telemetry,
        &cli,
        || {
            cli.grpc.validate()?;
            cli.trainer.validate()?;
            cli.trainer.command()?;
            aiaa_runtime::store::open(&url)?;
            Ok(())
        },
        |shutdown| async {
            let store = aiaa_runtime::store::open(&url)?;
            let running = aiaa_trainer::start(&cli.trainer, store, &cli.grpc, &cli.auth, shutdown).await?;
            Ok(Started {
                addr: running.addr,
                what: "gRPC, health, reflection, /metrics",
                done: Box::pin(async { Ok(running.wait().await?) }),
            })
        },
    )
}
