//! `aiaa`: the platform's one command. `up` runs every service in one process; `serve` runs
//! one; `pull`/`push` move models (the seed's `tlt-pull`); `status` shows what is stored;
//! `convert` converts volumes (the seed's `tlt-dataconvert`); `infer` and `evaluate` run a
//! model over a datalist (the seed's `tlt-infer` and `tlt-evaluate`); `train` and `export`
//! train a model and export it for the inference service (the seed's `tlt-train` and
//! `tlt-export`); `datalist from-msd` writes a datalist from Decathlon task folders.

mod convert;
mod datalist;
mod evaluate;
mod export;
mod models;
mod serve;
mod status;
mod train;

use aiaa_runtime::config::TelemetryArgs;
use clap::{Parser, Subcommand};

/// AI-assisted annotation for 3D medical images.
#[derive(Debug, Parser)]
#[command(name = "aiaa", version, about)]
struct Cli {
    #[command(flatten)]
    telemetry: TelemetryArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every service in one process, each on its own port, storing under one folder.
    Up(serve::UpArgs),
    /// Runs one service.
    Serve(serve::ServeArgs),
    /// Downloads a model version, or lists models (-lm) or versions (-lv), as tlt-pull.
    Pull(models::PullArgs),
    /// Uploads files as a new model version.
    Push(models::PushArgs),
    /// Shows what the running services hold.
    Status(status::StatusArgs),
    /// Converts DICOM series and volumes to NIfTI or MHA, as tlt-dataconvert.
    Convert(convert::ConvertArgs),
    /// Runs a model over a datalist and writes its predictions, as tlt-infer.
    Infer(evaluate::InferArgs),
    /// Runs a model over a datalist and writes Dice, NSD and HD95 reports, as tlt-evaluate.
    Evaluate(evaluate::EvaluateArgs),
    /// Trains a model from a train config and a datalist, as tlt-train.
    Train(train::TrainArgs),
    /// Exports a checkpoint to TorchScript plus its model config (optionally pushed), as
    /// tlt-export.
    Export(export::ExportArgs),
    /// Writes datalists, e.g. from a Medical Segmentation Decathlon task folder.
    Datalist(datalist::DatalistArgs),
}

/// The seed writes `-lm` and `-lv` as single flags; clap would read them as `-l -m`.
fn seed_compatible_args() -> Vec<String> {
    std::env::args()
        .map(|a| match a.as_str() {
            "-lm" => "--list-models".to_string(),
            "-lv" => "--list-versions".to_string(),
            _ => a,
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_from(seed_compatible_args());
    // Before any thread starts: the processes that serve models run libtorch's OpenMP
    // workers with a short spin (see aiaa_jit::openmp); this returns unless it restarts.
    if matches!(&cli.command, Command::Up(_))
        || matches!(&cli.command, Command::Serve(s) if s.service == serve::Service::Inference)
    {
        aiaa_jit::restart_with_serving_spin();
    }
    let service_name = match &cli.command {
        Command::Up(_) => "aiaa".to_string(),
        Command::Serve(s) => format!("aiaa-{}", s.service.name()),
        _ => "aiaa-cli".to_string(),
    };
    match cli.command {
        Command::Convert(args) => {
            let _telemetry = aiaa_runtime::telemetry::init(&cli.telemetry, &service_name)?;
            return convert::run(args);
        }
        Command::Infer(args) => {
            let _telemetry = aiaa_runtime::telemetry::init(&cli.telemetry, &service_name)?;
            return evaluate::infer(args);
        }
        Command::Evaluate(args) => {
            let _telemetry = aiaa_runtime::telemetry::init(&cli.telemetry, &service_name)?;
            return evaluate::evaluate(args);
        }
        Command::Train(args) => {
            let _telemetry = aiaa_runtime::telemetry::init(&cli.telemetry, &service_name)?;
            return train::run(args);
        }
        Command::Datalist(args) => {
            let _telemetry = aiaa_runtime::telemetry::init(&cli.telemetry, &service_name)?;
            return datalist::run(args);
        }
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let _telemetry = aiaa_runtime::telemetry::init(&cli.telemetry, &service_name)?;
        match cli.command {
            Command::Up(args) => serve::up(args).await,
            Command::Serve(args) => serve::serve(args).await,
            Command::Pull(args) => models::pull(args).await,
            Command::Push(args) => models::push(args).await,
            Command::Status(args) => status::run(args).await,
            Command::Export(args) => export::run(args).await,
            Command::Convert(_)
            | Command::Infer(_)
            | Command::Evaluate(_)
            | Command::Train(_)
            | Command::Datalist(_) => {
                unreachable!("handled above")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every flattened block of every service fits in one command: no two flags share a
    /// name or an id (clap only checks this when the command is built).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }

    /// The help's summary names no subset of the commands (it listed six of eleven once);
    /// every command is listed with a line of its own.
    #[test]
    fn the_help_lists_every_command() {
        let mut cmd = super::Cli::command();
        let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
        let help = cmd.render_help().to_string();
        let names: Vec<String> = cmd.get_subcommands().map(|c| c.get_name().to_string()).collect();
        assert!(names.len() >= 11, "{names:?}");
        let named = names.iter().filter(|n| {
            about
                .split(|c: char| !c.is_alphanumeric())
                .any(|w| w == n.as_str())
        });
        assert_eq!(named.count(), 0, "the summary names some commands: {about:?}");
        for name in &names {
            assert!(
                help.lines()
                    .any(|l| l.trim_start().starts_with(&format!("{name} "))),
                "{name} missing:\n{help}"
            );
        }
    }

    #[test]
    fn seed_style_flags_parse() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from([
            "aiaa",
            "pull",
            "--list-models",
            "-k",
            "key",
            "-o",
            "nvtltea",
            "-t",
            "med",
        ]);
        assert!(cli.is_ok(), "{cli:?}");
    }
}
