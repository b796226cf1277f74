//! `aiaa-inference`: the engine pool as a binary of its own (one per container image; links
//! libtorch, CUDA when the image carries it). The same flags and environment as `aiaa serve
//! inference`, plus the `probe`, `check-config` (which also reads and checks the engine pool
//! and model configs, without loading weights) and `env` sub-commands of every service binary.

use std::process::ExitCode;

use aiaa_inference::InferenceArgs;
use aiaa_runtime::config::{AuthArgs, GrpcArgs, TelemetryArgs};
use aiaa_runtime::service_main::{Binary, Health, Started, Tool};
use clap::{CommandFactory, Parser};

/// The AIAA inference service (gRPC): annotation and segmentation models on TorchScript.
#[derive(Debug, Parser)]
#[command(name = "aiaa-inference", version, about)]
struct Cli {
    #[command(subcommand)]
    tool: Option<Tool>,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    #[command(flatten)]
    grpc: GrpcArgs,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(flatten)]
    inference: InferenceArgs,
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    let tool = cli.tool.take();
    if tool.is_none() {
        // Serving: libtorch's OpenMP workers spin briefly (see aiaa_jit::openmp); this
        // returns unless it restarts the process.
        aiaa_jit::restart_with_serving_spin();
    }
    let binary = Binary {
        component: "inference",
        listen: cli.inference.listen,
        health: Health::Grpc,
    };
    binary.run(
        tool,
        Cli::command(),
        &cli.telemetry,
        &cli,
        || {
            cli.grpc.validate()?;
            Ok(aiaa_inference::check_config(&cli.inference)?)
        },
        |shutdown| async {
            let server = aiaa_inference::start(&cli.inference, &cli.grpc, &cli.auth, shutdown).await?;
            Ok(Started {
                addr: server.addr,
                what: "gRPC, health, reflection, /metrics",
                done: Box::pin(async { Ok(server.wait().await?) }),
            })
        },
    )
}
