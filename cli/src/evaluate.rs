//! `infer` and `evaluate`: the seed's `tlt-infer` and `tlt-evaluate` (same flags, seed
//! spellings with underscores; dashes are accepted too), run through `aiaa-evaluate` with a
//! progress bar on stderr. Failed cases are printed as they happen and listed at the end;
//! the exit status is 0 when the run completed, even with failed cases (they are in the
//! reports), and 1 when it could not run or `--fail_fast` stopped it. See docs/evaluate.md.

use std::path::PathBuf;

use aiaa_evaluate::{EvaluateOptions, Event, ModelSource, Observer, Options, Summary};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

/// The flags `tlt-infer` and `tlt-evaluate` share, plus ours.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// The TorchScript model, or a folder holding model.pt; replaces the config's
    /// model_path (which is used when this is absent).
    #[arg(long = "model_save_path", alias = "model-save-path")]
    pub model_save_path: Option<PathBuf>,
    /// The model config (the inference service's format, or the seed's inference /
    /// evaluation config).
    #[arg(long = "config")]
    pub config: PathBuf,
    /// Replaces the config's model_format (torchscript; the seed's trtmodel is refused with
    /// a message).
    #[arg(long = "model_format", alias = "model-format")]
    pub model_format: Option<String>,
    /// Where relative datalist paths start (default: the datalist's folder).
    #[arg(long = "file_root", alias = "file-root")]
    pub file_root: Option<PathBuf>,
    /// Output folder: predictions as <output>/<name>/<name>_<key>.nii.gz, reports, summary.
    #[arg(long = "output_path", alias = "output-path")]
    pub output_path: PathBuf,
    /// The datalist (JSON, the seed's datalist.json).
    #[arg(long = "data_file", alias = "data-file")]
    pub data_file: PathBuf,
    /// The datalist section to run over.
    #[arg(long = "data_list_key", alias = "data-list-key", default_value = "validation")]
    pub data_list_key: String,
    /// The seed's setup; only "standard" exists.
    #[arg(long = "setup", default_value = "standard", value_parser = ["standard"])]
    pub setup: String,
    /// The engine class (default: from the config's engine or type).
    #[arg(long = "engine")]
    pub engine: Option<String>,
    /// Where the model runs: auto, cpu, cuda, cuda:N.
    #[arg(long = "device", default_value = "auto")]
    pub device: String,
    /// libtorch's CPU threads (0: one per core).
    #[arg(long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Threads reading the files (0: half the cores, 2 to 8).
    #[arg(long = "workers", default_value_t = 0)]
    pub workers: usize,
    /// Cases in the engine at once (0: two per device).
    #[arg(long = "model_workers", alias = "model-workers", default_value_t = 0)]
    pub model_workers: usize,
    /// Decoded cases waiting for the model (the bounded queue).
    #[arg(long = "queue_depth", alias = "queue-depth", default_value_t = 4)]
    pub queue_depth: usize,
    /// Annotation models: largest random shift of each simulated click (voxels).
    #[arg(long = "pert", default_value_t = 0.0)]
    pub pert: f64,
    /// Seed of the click perturbation.
    #[arg(long = "seed", default_value_t = 0)]
    pub seed: u64,
    /// Stop at the first failed case instead of reporting and skipping it.
    #[arg(long = "fail_fast", alias = "fail-fast")]
    pub fail_fast: bool,
}

/// `aiaa infer`.
#[derive(Debug, Clone, clap::Args)]
pub struct InferArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `aiaa evaluate`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Tolerance of the normalized surface Dice (mm).
    #[arg(long = "nsd_tolerance_mm", alias = "nsd-tolerance-mm", default_value_t = 1.0)]
    pub nsd_tolerance_mm: f64,
    /// Resample a prediction onto its label's grid (nearest) when the grids differ, instead
    /// of failing the case.
    #[arg(long = "resample_prediction", alias = "resample-prediction")]
    pub resample_prediction: bool,
    /// Largest difference (mm, direction cosines) of two grids held equal.
    #[arg(long = "grid_tolerance", alias = "grid-tolerance", default_value_t = 1e-4)]
    pub grid_tolerance: f64,
    /// Runs the interactive click protocol instead: the initial prompt, then N corrective
    /// clicks, each scored (docs/interactive.md); writes <output_path>/interactive.json.
    #[arg(long = "interactive", value_name = "N")]
    pub interactive: Option<usize>,
    /// Where a corrective click goes in the largest error region: `centre` (the voxel
    /// farthest from its boundary) or `jitter` (a voxel within --click_jitter of it, seeded
    /// by --seed).
    #[arg(long = "click_rule", alias = "click-rule", default_value = "centre", value_parser = ["centre", "jitter"])]
    pub click_rule: String,
    /// The jittered rule's radius (voxels).
    #[arg(long = "click_jitter", alias = "click-jitter", default_value_t = 2)]
    pub click_jitter: usize,
}

impl CommonArgs {
    fn options(&self) -> Options {
        Options {
            source: ModelSource {
                model: self.model_save_path.clone(),
                config: self.config.clone(),
                model_format: self.model_format.clone(),
                engine: self.engine.clone(),
            },
            data_file: self.data_file.clone(),
            data_list_key: self.data_list_key.clone(),
            file_root: self.file_root.clone(),
            output: self.output_path.clone(),
            device: self.device.clone(),
            threads: self.threads,
            readers: self.workers,
            model_workers: self.model_workers,
            queue_depth: self.queue_depth,
            pert: self.pert,
            seed: self.seed,
            fail_fast: self.fail_fast,
        }
    }
}

/// The progress bar; failures are printed above it as they happen.
struct Bar(ProgressBar);

impl Observer for Bar {
    fn event(&self, e: &Event) {
        match e {
            Event::Started { total } => self.0.set_length(*total as u64),
            Event::Done { file, .. } => {
                self.0.inc(1);
                self.0.set_message(file.clone());
            }
            Event::Failed(f) => {
                self.0.inc(1);
                let line = format!("FAILED {} ({}): {}", f.file, f.stage, f.error);
                // A hidden bar (stderr is not a terminal) prints nothing.
                if self.0.is_hidden() {
                    eprintln!("{line}");
                } else {
                    self.0.println(line);
                }
            }
        }
    }
}

fn bar() -> anyhow::Result<Bar> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta}) {msg}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    Ok(Bar(bar))
}

fn print(s: &Summary) {
    let t = &s.throughput;
    eprintln!(
        "{}: {} of {} cases through {} ({} on {}) in {:.1} s (model loaded in {:.1} s): {:.3} cases/s",
        s.command,
        s.succeeded,
        s.cases,
        s.model,
        s.engine,
        s.devices.join(", "),
        t.wall_s,
        t.load_s,
        t.cases_per_s
    );
    match t.model_wait_share {
        Some(w) => eprintln!(
            "model busy {:.1} s of {:.1} s: it waited for data {:.1}% of the time (readers {}, model workers {}, writers {})",
            t.device_busy_s,
            t.model_span_s,
            100.0 * w,
            t.threads[0],
            t.threads[1],
            t.threads[2]
        ),
        None => eprintln!("no case reached the model"),
    }
    if let Some(d) = s.mean_dice {
        eprintln!("mean Dice over every file and class: {d:.4}");
    }
    if let Some(r) = &s.reports {
        eprintln!("reports: {} and {}", r[0].display(), r[1].display());
    }
    eprintln!("summary: {}", s.summary_file.display());
    if !s.failed.is_empty() {
        eprintln!("{} case(s) failed and were skipped:", s.failed.len());
        for f in &s.failed {
            eprintln!("  {} ({}): {}", f.file, f.stage, f.error);
        }
    }
}

/// Runs `aiaa infer`.
pub fn infer(args: InferArgs) -> anyhow::Result<()> {
    let bar = bar()?;
    let result = aiaa_evaluate::run_infer(&args.common.options(), &bar);
    bar.0.finish_and_clear();
    let summary = result.context("aiaa infer")?;
    print(&summary);
    Ok(())
}

/// Runs `aiaa evaluate`.
pub fn evaluate(args: EvaluateArgs) -> anyhow::Result<()> {
    let eval = EvaluateOptions {
        nsd_tolerance_mm: args.nsd_tolerance_mm,
        resample_prediction: args.resample_prediction,
        grid_tolerance: args.grid_tolerance,
    };
    if let Some(clicks) = args.interactive {
        return interactive(&args, &eval, clicks);
    }
    let bar = bar()?;
    let result = aiaa_evaluate::run_evaluate(&args.common.options(), &eval, &bar);
    bar.0.finish_and_clear();
    let summary = result.context("aiaa evaluate")?;
    print(&summary);
    Ok(())
}

/// `aiaa evaluate --interactive N`: the click protocol, a table of the mean Dice and NSD
/// after each click, then each case's line.
fn interactive(args: &EvaluateArgs, eval: &EvaluateOptions, clicks: usize) -> anyhow::Result<()> {
    let protocol = aiaa_evaluate::Protocol {
        clicks,
        rule: if args.click_rule == "jitter" {
            aiaa_evaluate::Rule::Jittered(args.click_jitter)
        } else {
            aiaa_evaluate::Rule::Centre
        },
        seed: args.common.seed,
        nsd_tolerance_mm: args.nsd_tolerance_mm,
    };
    let bar = bar()?;
    let result = aiaa_evaluate::run_interactive(&args.common.options(), eval, protocol, &bar);
    bar.0.finish_and_clear();
    let s = result.context("aiaa evaluate --interactive")?;
    println!(
        "{} ({}): {} case(s), {} corrective click(s), rule {}, NSD at {} mm",
        s.model,
        s.engine,
        s.cases.len(),
        s.clicks,
        s.rule,
        s.nsd_tolerance_mm
    );
    println!("click\tmean Dice\tmean NSD");
    for (c, (d, n)) in s.mean_dice.iter().zip(&s.mean_nsd).enumerate() {
        println!("{c}\t{d:.4}\t{n:.4}");
    }
    println!(
        "DSC AUC {:.4}, NSD AUC {:.4} (means over the cases, {} corrective predictions); median time per click {:.3} s",
        s.mean_dsc_auc, s.mean_nsd_auc, s.clicks, s.median_seconds_per_click
    );
    let clicks_to = |c: Option<usize>| c.map_or_else(|| "never".to_string(), |c| c.to_string());
    for c in &s.cases {
        println!(
            "{}: Dice {} ; clicks to 0.90: {}, to 0.95: {}{}",
            c.file,
            c.curve
                .steps
                .iter()
                .map(|s| format!("{:.4}", s.dice))
                .collect::<Vec<_>>()
                .join(" "),
            clicks_to(c.curve.clicks_to_090),
            clicks_to(c.curve.clicks_to_095),
            if c.ignored_background_clicks > 0 {
                format!(
                    "; {} background click(s) the model cannot take",
                    c.ignored_background_clicks
                )
            } else {
                String::new()
            }
        );
    }
    for f in &s.failed {
        eprintln!("FAILED {} ({}): {}", f.file, f.stage, f.error);
    }
    println!("results: {}", s.file.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn the_seeds_command_lines_parse() {
        // tlt-infer and tlt-evaluate as the seed writes them (6.4.2.5, 6.4.2.6).
        for cmd in ["infer", "evaluate"] {
            let cli = crate::Cli::try_parse_from([
                "aiaa",
                cmd,
                "--model_save_path",
                "/out/model.trt.pb",
                "--config",
                "/mnt/config_infer.json",
                "--model_format",
                "trtmodel",
                "--file_root",
                "/data",
                "--output_path",
                "/out/inference",
                "--data_file",
                "/data/datalist.json",
                "--setup",
                "standard",
            ]);
            assert!(cli.is_ok(), "{cli:?}");
        }
        let cli = crate::Cli::try_parse_from([
            "aiaa",
            "evaluate",
            "--config",
            "c.json",
            "--output-path",
            "o",
            "--data-file",
            "d.json",
            "--nsd_tolerance_mm",
            "2",
            "--resample_prediction",
            "--fail_fast",
            "--pert",
            "3",
            "--seed",
            "7",
        ])
        .unwrap();
        let crate::Command::Evaluate(a) = cli.command else {
            panic!("not evaluate")
        };
        assert_eq!(a.nsd_tolerance_mm, 2.0);
        assert!(a.resample_prediction && a.common.fail_fast);
        assert_eq!((a.common.pert, a.common.seed), (3.0, 7));
        assert!(a.common.model_save_path.is_none());
        // Only the seed's one setup.
        let bad = crate::Cli::try_parse_from([
            "aiaa",
            "infer",
            "--config",
            "c",
            "--output_path",
            "o",
            "--data_file",
            "d",
            "--setup",
            "mmar",
        ]);
        assert!(bad.is_err());
    }
}
