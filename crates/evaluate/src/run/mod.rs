//! The run: every case of the list through read → model → write (+ metrics), in three
//! stages of threads joined by bounded queues, so a long list keeps the model busy.
//!
//! ```text
//!  readers (--workers) ──[queue: --queue_depth]──▶ model workers ──[queue]──▶ writers
//!  read image + label,                              engine.infer:            config writers,
//!  simulate the clicks                              pre, forward, post       metrics
//! ```
//!
//! * **Readers** decode the files (gzip and all) in parallel, ahead of the model, and block
//!   when the queue is full, so memory stays bounded (at most `queue_depth` decoded cases
//!   wait, plus one per thread).
//! * **Model workers** (two per device by default) run the engine exactly as the server
//!   does: while one worker's case is in the forward pass on the device's owner thread, the
//!   other prepares its case (crop, resize, normalisation) or maps its output back, so the
//!   device goes from one forward pass to the next.
//! * **Writers** run the config's writers and, for `evaluate`, the metrics.
//!
//! **How long the model waited for data** is measured on the device itself: the device
//! threads add up the time spent in forward passes ([`Devices::busy`]); over the span from
//! the start of the run (model loaded) to the end of the last engine call, the share of the
//! devices' time not spent in a forward pass is `model_wait_share`. It includes filling the
//! pipeline (reading the first case) and the engines' own pre- and post-processing of a case
//! when no other case is ready: everything that is not the model computing.
//!
//! **Failures**: a case that cannot be read (missing or corrupt file), has no label where
//! one is needed, has no foreground to click on, fails in the engine, cannot be written or
//! cannot be compared (grids differ) is a [`Failure`]: reported to the [`Observer`] (the
//! CLI prints it on stderr), logged, listed in the summary and the reports, and skipped. With
//! `fail_fast` the first failure stops the run with [`EvaluateError::CaseFailed`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aiaa_engines::device::{Devices, parse_devices};
use aiaa_metrics::{MetricOptions, PairMetrics, Report};
use serde::Serialize;

use crate::datalist::{self, Case};
use crate::error::{EvaluateError, Result};
use crate::model::{Model, ModelSource};
use crate::outputs::Writers;

mod pipeline;

use pipeline::{Outcome, Pipeline};

/// Options shared by `infer` and `evaluate` (the seed's flags and ours).
#[derive(Clone, Debug)]
pub struct Options {
    /// The model and its config.
    pub source: ModelSource,
    /// `--data_file`: the datalist.
    pub data_file: PathBuf,
    /// `--data_list_key`: the datalist section (`validation`).
    pub data_list_key: String,
    /// `--file_root`: where relative datalist paths start (else the datalist's folder).
    pub file_root: Option<PathBuf>,
    /// `--output_path`: where outputs and reports go.
    pub output: PathBuf,
    /// `--device`: auto, cpu, cuda, cuda:N.
    pub device: String,
    /// `--threads`: libtorch's CPU threads (0: its default).
    pub threads: usize,
    /// `--workers`: reader threads (0: automatic).
    pub readers: usize,
    /// `--model_workers`: cases in the engine at once (0: two per device).
    pub model_workers: usize,
    /// `--queue_depth`: decoded cases waiting for the model.
    pub queue_depth: usize,
    /// `--pert`: largest click perturbation (voxels).
    pub pert: f64,
    /// `--seed`: the perturbation's seed.
    pub seed: u64,
    /// `--fail_fast`: stop at the first failed case.
    pub fail_fast: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            source: ModelSource::default(),
            data_file: PathBuf::new(),
            data_list_key: "validation".into(),
            file_root: None,
            output: PathBuf::new(),
            device: "auto".into(),
            threads: 0,
            readers: 0,
            model_workers: 0,
            queue_depth: 4,
            pert: 0.0,
            seed: 0,
            fail_fast: false,
        }
    }
}

/// What `evaluate` adds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvaluateOptions {
    /// `--nsd_tolerance_mm`.
    pub nsd_tolerance_mm: f64,
    /// `--resample_prediction`: resample the prediction onto the label's grid (nearest)
    /// when they differ, instead of failing the case (and, for clicks, the label onto the
    /// image's grid).
    pub resample_prediction: bool,
    /// `--grid_tolerance`: largest difference (mm, cosines) of two grids held equal.
    pub grid_tolerance: f64,
}

impl Default for EvaluateOptions {
    fn default() -> Self {
        let m = MetricOptions::default();
        EvaluateOptions {
            nsd_tolerance_mm: m.nsd_tolerance_mm,
            resample_prediction: m.resample_prediction,
            grid_tolerance: m.grid_tolerance,
        }
    }
}

/// A case that failed, and where.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    /// Position in the datalist section.
    pub index: usize,
    /// The image as the datalist names it.
    pub file: String,
    /// `read`, `clicks`, `model`, `write` or `metrics`.
    pub stage: &'static str,
    /// Why.
    pub error: String,
}

/// Seconds one case spent in each stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct CaseSeconds {
    /// Reading the files and simulating the clicks.
    pub read: f64,
    /// The engine call (pre, forward, post).
    pub model: f64,
    /// The forward passes alone, as the engine timed them (queueing for the device
    /// included).
    pub forward: f64,
    /// Writing the outputs.
    pub write: f64,
    /// Computing the metrics.
    pub metrics: f64,
}

/// A case that went through.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseResult {
    /// Position in the datalist section.
    pub index: usize,
    /// The image as the datalist names it.
    pub file: String,
    /// The files written.
    pub outputs: Vec<PathBuf>,
    /// The clicks sent (annotation models), voxel indices of the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub points: Option<Vec<[usize; 3]>>,
    /// The metrics (`evaluate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<PairMetrics>,
    /// Stage times.
    pub seconds: CaseSeconds,
}

/// Time and throughput of the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Throughput {
    /// Wall time of the run, model loading excluded (s).
    pub wall_s: f64,
    /// Model loading (s).
    pub load_s: f64,
    /// Cases finished (succeeded or failed) per second of `wall_s`.
    pub cases_per_s: f64,
    /// Time the devices spent in forward passes (s).
    pub device_busy_s: f64,
    /// From the start to the end of the last engine call, times the number of devices (s).
    pub model_span_s: f64,
    /// `1 - device_busy_s / model_span_s`: the share of the devices' time spent waiting
    /// for data (see the module docs); `null` when no case reached the model.
    pub model_wait_share: Option<f64>,
    /// Sum over cases of each stage's time (s): read, model, write, metrics.
    pub read_s: f64,
    /// See `read_s`.
    pub model_s: f64,
    /// See `read_s`.
    pub write_s: f64,
    /// See `read_s`.
    pub metrics_s: f64,
    /// Time the model workers waited for a decoded case, all together (s).
    pub model_queue_wait_s: f64,
    /// Threads of each stage: readers, model workers, writers.
    pub threads: [usize; 3],
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// `infer` or `evaluate`.
    pub command: &'static str,
    /// The model's name.
    pub model: String,
    /// The engine class.
    pub engine: String,
    /// The TorchScript file run.
    pub model_path: PathBuf,
    /// The devices.
    pub devices: Vec<String>,
    /// Cases in the list.
    pub cases: usize,
    /// Cases that went through.
    pub succeeded: usize,
    /// Cases that failed (datalist order).
    pub failed: Vec<Failure>,
    /// Cases that went through (datalist order).
    pub results: Vec<CaseResult>,
    /// Mean Dice over every file and class (`evaluate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_dice: Option<f64>,
    /// The report files (`evaluate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reports: Option<[PathBuf; 4]>,
    /// Where this summary was written.
    pub summary_file: PathBuf,
    /// Time and throughput.
    pub throughput: Throughput,
    /// How the config was adapted.
    pub notes: Vec<String>,
    /// The evaluation report (`evaluate`).
    #[serde(skip)]
    pub report: Option<Report>,
}

/// Progress of a run, for a progress bar or a job's status.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The model is loaded; `total` cases follow.
    Started {
        /// Cases in the list.
        total: usize,
    },
    /// A case went through.
    Done {
        /// Its position.
        index: usize,
        /// Its image as the datalist names it.
        file: String,
    },
    /// A case failed (and is skipped unless `fail_fast`).
    Failed(Failure),
}

/// Receives [`Event`]s, from the thread that runs the job.
pub trait Observer {
    /// One event.
    fn event(&self, e: &Event);
}

/// An observer that ignores everything.
#[derive(Debug, Default)]
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _: &Event) {}
}

/// `tlt-infer`: runs the model over the list and writes the config's writers.
pub fn run_infer(opts: &Options, observer: &dyn Observer) -> Result<Summary> {
    run(opts, None, observer)
}

/// `tlt-evaluate`: runs the model over the list, writes the config's writers and the
/// reports (Dice, NSD, HD95 per file and class) into the output folder.
pub fn run_evaluate(opts: &Options, eval: &EvaluateOptions, observer: &dyn Observer) -> Result<Summary> {
    run(opts, Some(eval), observer)
}

fn check(opts: &Options, eval: Option<&EvaluateOptions>) -> Result<()> {
    let flag = |flag: &'static str, reason: &str| {
        Err(EvaluateError::Option {
            flag,
            reason: reason.to_string(),
        })
    };
    if opts.queue_depth == 0 {
        return flag("--queue_depth", "must be at least 1");
    }
    if !(opts.pert.is_finite() && opts.pert >= 0.0) {
        return flag("--pert", "must be a number of voxels >= 0");
    }
    if opts.output.as_os_str().is_empty() {
        return flag("--output_path", "is required");
    }
    if let Some(e) = eval {
        if !(e.nsd_tolerance_mm.is_finite() && e.nsd_tolerance_mm >= 0.0) {
            return flag("--nsd_tolerance_mm", "must be a number of mm >= 0");
        }
        if !(e.grid_tolerance.is_finite() && e.grid_tolerance >= 0.0) {
            return flag("--grid_tolerance", "must be >= 0");
        }
    }
    Ok(())
}

fn run(opts: &Options, eval: Option<&EvaluateOptions>, observer: &dyn Observer) -> Result<Summary> {
    check(opts, eval)?;
    let cases = datalist::read(&opts.data_file, &opts.data_list_key, opts.file_root.as_deref())?;
    let t0 = Instant::now();
    let devices = Devices::start(&parse_devices(&opts.device)?, opts.threads)?;
    let model = Model::load(&opts.source, &devices)?;
    let load_s = t0.elapsed().as_secs_f64();
    tracing::info!(model = %model.name, engine = %model.class, devices = ?devices.names(), load_s, "model loaded");
    let mut summary = run_cases(&model, &cases, opts, eval, observer)?;
    summary.throughput.load_s = load_s;
    write_summary(&summary)?;
    Ok(summary)
}

/// Runs an already loaded model over `cases` (see the module docs); writes outputs and,
/// with `eval`, the reports under `opts.output`, but not the summary file.
pub fn run_cases(
    model: &Model,
    cases: &[Case],
    opts: &Options,
    eval: Option<&EvaluateOptions>,
    observer: &dyn Observer,
) -> Result<Summary> {
    check(opts, eval)?;
    let writers = Writers::from_config(&model.json, &opts.source.config.display().to_string())?;
    if !writers.is_empty() {
        check_output_names(cases, &opts.output)?;
    }
    std::fs::create_dir_all(&opts.output).map_err(|source| EvaluateError::Io {
        path: opts.output.clone(),
        source,
    })?;
    let pipeline = Pipeline::new(model, cases, opts, eval, &writers);
    let threads = pipeline.threads;
    observer.event(&Event::Started { total: cases.len() });
    let start = Instant::now();
    let busy0 = model.devices.busy();
    let mut outcome = pipeline.run(observer);

    if opts.fail_fast
        && let Some(f) = outcome.failed.first()
    {
        return Err(EvaluateError::CaseFailed {
            file: f.file.clone(),
            stage: f.stage,
            reason: f.error.clone(),
        });
    }
    outcome.results.sort_by_key(|r| r.index);
    outcome.failed.sort_by_key(|f| f.index);
    let throughput = throughput(model, cases.len(), &outcome, start, busy0, threads);
    let (report, reports, mean_dice) = match eval {
        None => (None, None, None),
        Some(e) => {
            let (report, files, mean) = evaluation_reports(model, e, &outcome, cases.len(), &opts.output)?;
            (Some(report), Some(files), mean)
        }
    };
    let command = if eval.is_some() { "evaluate" } else { "infer" };
    Ok(Summary {
        command,
        model: model.name.clone(),
        engine: model.class.clone(),
        model_path: model.model_path.clone(),
        devices: model.devices.names(),
        cases: cases.len(),
        succeeded: outcome.results.len(),
        failed: outcome.failed,
        results: outcome.results,
        mean_dice,
        reports,
        summary_file: opts.output.join(format!("aiaa_{command}_summary.json")),
        throughput,
        notes: model.notes.clone(),
        report,
    })
}

/// Refuses a list in which two entries would write under one folder (the writers name it
/// after the image's file name).
fn check_output_names(cases: &[Case], output: &Path) -> Result<()> {
    let mut seen: std::collections::HashMap<String, &Case> = std::collections::HashMap::new();
    for c in cases {
        if let Some(first) = seen.insert(c.input_name(), c) {
            return Err(EvaluateError::Option {
                flag: "--data_file",
                reason: format!(
                    "{} and {} would both write under {}/{}/ (the same image file name); rename one",
                    first.name,
                    c.name,
                    output.display(),
                    c.input_name()
                ),
            });
        }
    }
    Ok(())
}

/// The run's times (see [`Throughput`]), from `start` and the devices' busy time at the
/// start, `busy0`; model loading is not in them.
fn throughput(
    model: &Model,
    cases: usize,
    outcome: &Outcome,
    start: Instant,
    busy0: Duration,
    threads: [usize; 3],
) -> Throughput {
    let wall = start.elapsed();
    let busy = model.devices.busy().saturating_sub(busy0);
    let span = outcome
        .last_model_end
        .map(|end| end.duration_since(start).as_secs_f64() * model.devices.count().max(1) as f64);
    let sum = |f: fn(&CaseSeconds) -> f64| outcome.results.iter().map(|r| f(&r.seconds)).sum::<f64>();
    Throughput {
        wall_s: wall.as_secs_f64(),
        load_s: 0.0,
        cases_per_s: cases as f64 / wall.as_secs_f64().max(1e-9),
        device_busy_s: busy.as_secs_f64(),
        model_span_s: span.unwrap_or(0.0),
        model_wait_share: span
            .filter(|s| *s > 0.0)
            .map(|s| (1.0 - busy.as_secs_f64() / s).clamp(0.0, 1.0)),
        read_s: sum(|s| s.read),
        model_s: sum(|s| s.model),
        write_s: sum(|s| s.write),
        metrics_s: sum(|s| s.metrics),
        model_queue_wait_s: outcome.queue_wait.as_secs_f64(),
        threads,
    }
}

/// The evaluation report of the cases through, written with the failures under `output`:
/// the report, its four files (raw and summary, text and JSON) and the mean Dice over every
/// file and class.
fn evaluation_reports(
    model: &Model,
    eval: &EvaluateOptions,
    outcome: &Outcome,
    cases: usize,
    output: &Path,
) -> Result<(Report, [PathBuf; 4], Option<f64>)> {
    let mut report = Report::new(eval.nsd_tolerance_mm);
    for (i, name) in model.labels.iter().enumerate() {
        report.class_names.insert(i as u32 + 1, name.clone());
    }
    for r in &outcome.results {
        if let Some(m) = &r.metrics {
            report.push(r.file.clone(), m.clone());
        }
    }
    let files = crate::reports::write(&report, &outcome.failed, cases, output)?;
    let dice: Vec<f64> = report
        .files
        .iter()
        .flat_map(|f| &f.classes)
        .map(|c| c.dice)
        .collect();
    let mean = (!dice.is_empty()).then(|| dice.iter().sum::<f64>() / dice.len() as f64);
    let files = [
        files.raw_text,
        files.summary_text,
        files.raw_json,
        files.summary_json,
    ];
    Ok((report, files, mean))
}

/// Writes `summary.summary_file` (JSON, atomically).
pub fn write_summary(summary: &Summary) -> Result<()> {
    let text = serde_json::to_string_pretty(summary).map_err(aiaa_metrics::MetricsError::from)? + "\n";
    aiaa_imaging::io::write_atomic(&summary.summary_file, text.as_bytes())?;
    Ok(())
}
