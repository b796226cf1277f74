//! `aiaa train segmentation`: the seed's `tlt-train segmentation` (chapter 6) with its flags
//! (`-e CONFIG -d DATALIST -r OUTDIR [-c CHECKPOINT] [--file_root ROOT]`, also spelt
//! `--config`, `--data_list`, `--model_dir`, `--checkpoint`), plus `--resume`, `--epochs N`,
//! `--dry-run`, `--device`, `--progress text|json`, `--log_every N`.
//!
//! Progress goes to stdout, one line per event (see `aiaa_train::progress`); the last line
//! is the summary. Ctrl-C (SIGINT) or SIGTERM stops at the next step boundary and writes the
//! last checkpoint (`--resume` continues from it); a second one exits at once. Exit status:
//! 0 when every epoch was trained (or the dry run passed), 130 when stopped, 1 on an error.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aiaa_train::progress::Outcome;
use aiaa_train::{DeviceChoice, Event, TrainJob, Trainer};
use anyhow::Context;

/// `aiaa train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(subcommand)]
    kind: TrainKind,
}

#[derive(Debug, clap::Subcommand)]
enum TrainKind {
    /// Trains a segmentation or annotation model (the seed's `tlt-train segmentation`).
    Segmentation(SegmentationArgs),
}

/// How progress lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressFormat {
    /// `key value` lines for people.
    Text,
    /// One JSON object per line, for programs.
    Json,
}

/// The flags of `aiaa train segmentation`.
#[derive(Debug, clap::Args)]
pub struct SegmentationArgs {
    /// The train config JSON (seed 6.1).
    #[arg(short = 'e', long = "config", visible_alias = "train_config")]
    config: PathBuf,
    /// The datalist JSON (seed 5.2): training and validation items.
    #[arg(short = 'd', long = "data_list", visible_aliases = ["datalist", "data-list"])]
    data_list: PathBuf,
    /// Output folder: checkpoints, TensorBoard events, summary.
    #[arg(short = 'r', long = "model_dir", visible_aliases = ["model-dir", "train_output_dir"])]
    model_dir: PathBuf,
    /// Weights to start from (fine-tuning): a checkpoint file, or a folder with model.ckpt.
    #[arg(short = 'c', long = "checkpoint")]
    checkpoint: Option<PathBuf>,
    /// Root folder of the datalist's relative paths (default: the datalist's folder).
    #[arg(long = "file_root", visible_alias = "file-root")]
    file_root: Option<PathBuf>,
    /// Continue the run in the output folder from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Overrides the config's `epochs` (total, counted from the start of the run).
    #[arg(long)]
    epochs: Option<u64>,
    /// Check config, datalist and data, run two steps and one validation sample; write nothing.
    #[arg(long = "dry-run", visible_alias = "dry_run")]
    dry_run: bool,
    /// auto (CUDA when present), cpu, cuda or cuda:N.
    #[arg(long, env = "AIAA_TRAIN_DEVICE", default_value = "auto")]
    device: DeviceChoice,
    /// Progress line format.
    #[arg(long, value_enum, default_value = "text")]
    progress: ProgressFormat,
    /// A progress line every N steps (0: about every 10 seconds).
    #[arg(long = "log_every", visible_alias = "log-every", default_value_t = 10)]
    log_every: u64,
    /// libtorch's intra-op threads (default: libtorch's choice, usually the physical cores).
    #[arg(
        long = "torch_threads",
        visible_alias = "torch-threads",
        env = "AIAA_TORCH_THREADS"
    )]
    torch_threads: Option<usize>,
}

/// Sets `stop` on the first SIGINT or SIGTERM; exits at once on the second.
fn watch_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("aiaa-signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                else {
                    return;
                };
                loop {
                    tokio::select! {
                        r = tokio::signal::ctrl_c() => if r.is_err() { return },
                        _ = term.recv() => {}
                    }
                    if stop.swap(true, Ordering::SeqCst) {
                        eprintln!("aiaa train: interrupted again, exiting without a checkpoint");
                        std::process::exit(130);
                    }
                    eprintln!(
                        "aiaa train: stopping at the next step boundary and saving the last checkpoint \
                         (interrupt again to exit at once)"
                    );
                }
            });
        })
        .context("start the signal watcher")?;
    Ok(())
}

/// `aiaa train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let TrainKind::Segmentation(a) = args.kind;
    let cpu_replicas = match std::env::var(aiaa_train::trainer::CPU_REPLICAS_ENV) {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=16).contains(n))
            .with_context(|| {
                format!(
                    "{}={v:?}: expected a replica count from 1 to 16",
                    aiaa_train::trainer::CPU_REPLICAS_ENV
                )
            })?,
        Err(_) => 0,
    };
    let job = TrainJob {
        config: a.config,
        datalist: a.data_list,
        output_dir: a.model_dir,
        checkpoint: a.checkpoint,
        file_root: a.file_root,
        resume: a.resume,
        epochs: a.epochs,
        dry_run: a.dry_run,
        device: a.device,
        log_every: a.log_every,
        torch_threads: a.torch_threads,
        cpu_replicas,
    };
    let format = a.progress;
    // A closed stdout (a parent that stopped reading) must not end the run: lines are
    // written without panicking, and the run goes on to its checkpoints.
    let mut print = move |e: &Event| {
        let line = match format {
            ProgressFormat::Text => e.to_text(),
            ProgressFormat::Json => e.to_json(),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    };
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(Arc::clone(&stop))?;
    let trainer = Trainer::prepare(job, &mut print)?;
    let summary = trainer.run(&stop, &mut print)?;
    if summary.outcome == Outcome::Stopped {
        std::process::exit(130);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        c: Sub,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Sub {
        Train(super::TrainArgs),
    }

    fn parse(args: &[&str]) -> super::SegmentationArgs {
        let Sub::Train(t) = Cli::try_parse_from(args).unwrap().c;
        let super::TrainKind::Segmentation(s) = t.kind;
        s
    }

    /// The seed's two spellings (chapter 6.1 and the 6.4.2.3.2 fine-tuning example).
    #[test]
    fn the_seed_flags_parse() {
        let s = parse(&[
            "aiaa",
            "train",
            "segmentation",
            "-e",
            "c.json",
            "-d",
            "d.json",
            "-r",
            "out",
            "-c",
            "m.ckpt",
            "--file_root",
            "/data",
        ]);
        assert_eq!(s.config.to_str(), Some("c.json"));
        assert_eq!(s.checkpoint.as_deref().and_then(|p| p.to_str()), Some("m.ckpt"));
        assert_eq!(s.file_root.as_deref().and_then(|p| p.to_str()), Some("/data"));
        let s = parse(&[
            "aiaa",
            "train",
            "segmentation",
            "--config",
            "c.json",
            "--file_root",
            "/data",
            "--data_list",
            "d.json",
            "--checkpoint",
            "pre/model.ckpt",
            "--model_dir",
            "out",
            "--resume",
            "--epochs",
            "3",
            "--dry-run",
            "--device",
            "cpu",
        ]);
        assert_eq!(s.model_dir.to_str(), Some("out"));
        assert!(s.resume && s.dry_run);
        assert_eq!(s.epochs, Some(3));
        assert_eq!(s.device, aiaa_train::DeviceChoice::Cpu);
    }
}
