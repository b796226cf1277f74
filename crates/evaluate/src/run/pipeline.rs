//! The three stages of a run (see the parent module's docs): reader threads, model workers
//! and writers, joined by bounded queues, and the collection of what they report. One
//! [`Pipeline`] holds what every stage reads (the model, the list, the run's settings) and
//! what they share (the stop flag, the next case, the timings).

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aiaa_engines::Timings;
use aiaa_imaging::resample::{Interpolation, resample_like};
use aiaa_imaging::{ReadOptions, Volume};
use aiaa_metrics::{Classes, MetricOptions};
use serde_json::{Map, Value, json};

use super::{CaseResult, CaseSeconds, EvaluateOptions, Event, Failure, Observer, Options};
use crate::clicks;
use crate::datalist::Case;
use crate::model::{Model, ModelKind};
use crate::outputs::{CaseOutputs, Writers};

/// A case read and ready for the model.
struct Ready {
    case: Case,
    image: Volume,
    label: Option<Volume>,
    points: Option<Vec<[usize; 3]>>,
    seconds: CaseSeconds,
}

/// A case through the model.
struct Predicted {
    ready: Ready,
    mask: Volume,
}

/// What a writer (or a stage that gave up on a case) reports.
enum Message {
    Done(Box<CaseResult>),
    Failed(Failure),
}

fn fail(case: &Case, stage: &'static str, error: impl ToString) -> Message {
    Message::Failed(Failure {
        index: case.index,
        file: case.name.clone(),
        stage,
        error: error.to_string(),
    })
}

/// What the stages did: the cases through and failed (in the order they finished; with
/// `fail_fast`, the failure that stopped the run first), and their timings.
pub(super) struct Outcome {
    pub results: Vec<CaseResult>,
    pub failed: Vec<Failure>,
    /// When the last engine call ended (none when no case reached the model).
    pub last_model_end: Option<Instant>,
    /// Time the model workers waited for a decoded case, all together.
    pub queue_wait: Duration,
}

/// One run over a list: its inputs and settings, and the state its stages share.
pub(super) struct Pipeline<'a> {
    model: &'a Model,
    cases: &'a [Case],
    opts: &'a Options,
    writers: &'a Writers,
    /// Threads of each stage: readers, model workers, writers.
    pub threads: [usize; 3],
    /// Whether cases need their label read (evaluation, clicks, a label writer).
    need_label: bool,
    /// The metrics, when evaluating.
    metrics: Option<MetricOptions>,
    classes: Classes,
    /// Resample a label on another grid than the image (for clicks).
    resample: bool,
    grid_tolerance: f64,
    stop: AtomicBool,
    next: AtomicUsize,
    last_model_end: Mutex<Option<Instant>>,
    queue_wait: Mutex<Duration>,
}

impl<'a> Pipeline<'a> {
    /// The settings of a run of `model` over `cases`, from the options.
    pub fn new(
        model: &'a Model,
        cases: &'a [Case],
        opts: &'a Options,
        eval: Option<&EvaluateOptions>,
        writers: &'a Writers,
    ) -> Self {
        Pipeline {
            model,
            cases,
            opts,
            writers,
            threads: threads(opts, model.devices.count()),
            need_label: eval.is_some()
                || model.kind == ModelKind::Annotation
                || writers.keys().contains(&"label"),
            metrics: eval.map(|e| MetricOptions {
                nsd_tolerance_mm: e.nsd_tolerance_mm,
                resample_prediction: e.resample_prediction,
                grid_tolerance: e.grid_tolerance,
            }),
            classes: if model.labels.len() <= 1 {
                Classes::Binary
            } else {
                Classes::first_n(model.labels.len() as u32)
            },
            resample: eval.is_some_and(|e| e.resample_prediction),
            grid_tolerance: eval.map_or(aiaa_metrics::compare::DEFAULT_GRID_TOLERANCE, |e| {
                e.grid_tolerance
            }),
            stop: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            last_model_end: Mutex::new(None),
            queue_wait: Mutex::new(Duration::ZERO),
        }
    }

    /// Runs every case through the stages; reports each to `observer` as it ends.
    pub fn run(self, observer: &dyn Observer) -> Outcome {
        let [n_readers, n_model, n_writers] = self.threads;
        let (results, failed) = std::thread::scope(|s| {
            let (ready_tx, ready_rx) = sync_channel::<Ready>(self.opts.queue_depth);
            let (pred_tx, pred_rx) = sync_channel::<Predicted>(self.opts.queue_depth);
            let (msg_tx, msg_rx) = channel::<Message>();
            let ready_rx = Arc::new(Mutex::new(ready_rx));
            let pred_rx = Arc::new(Mutex::new(pred_rx));
            let this = &self;
            for _ in 0..n_readers {
                let (tx, msg) = (ready_tx.clone(), msg_tx.clone());
                s.spawn(move || this.read_cases(&tx, &msg));
            }
            drop(ready_tx);
            for _ in 0..n_model {
                let (rx, tx, msg) = (ready_rx.clone(), pred_tx.clone(), msg_tx.clone());
                s.spawn(move || this.predict_cases(&rx, &tx, &msg));
            }
            drop(pred_tx);
            for _ in 0..n_writers {
                let (rx, msg) = (pred_rx.clone(), msg_tx.clone());
                s.spawn(move || this.finish_cases(&rx, &msg));
            }
            drop(msg_tx);
            this.collect(msg_rx, observer)
        });
        Outcome {
            results,
            failed,
            last_model_end: self
                .last_model_end
                .into_inner()
                .unwrap_or_else(|e| e.into_inner()),
            queue_wait: self.queue_wait.into_inner().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// A reader thread: takes the next case until the list ends or the run stops.
    fn read_cases(&self, tx: &SyncSender<Ready>, msg: &Sender<Message>) {
        while !self.stop.load(Ordering::Relaxed) {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(case) = self.cases.get(i) else { break };
            let sent = match self.read_case(case) {
                Ok(r) => tx.send(r).is_ok(),
                Err(m) => msg.send(m).is_ok(),
            };
            if !sent {
                break;
            }
        }
    }

    /// A model worker: runs the engine on each case read (drained unused once stopped).
    fn predict_cases(&self, rx: &Mutex<Receiver<Ready>>, tx: &SyncSender<Predicted>, msg: &Sender<Message>) {
        let model = self.model;
        loop {
            let t = Instant::now();
            let Some(mut ready) = next_item(rx) else { break };
            *self.queue_wait.lock().unwrap_or_else(|e| e.into_inner()) += t.elapsed();
            if self.stop.load(Ordering::Relaxed) {
                continue;
            }
            let params = match &ready.points {
                Some(p) => Map::from_iter([("points".to_string(), json!(p))]),
                None => Map::new(),
            };
            let t = Instant::now();
            let mut timings = Timings::default();
            let out = model.engine.infer(&ready.image, &params, &mut timings);
            ready.seconds.model = t.elapsed().as_secs_f64();
            ready.seconds.forward = stage_seconds(&timings, &model.name, "infer");
            *self.last_model_end.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            let sent = match out {
                Ok(o) => tx.send(Predicted { ready, mask: o.mask }).is_ok(),
                Err(e) => msg.send(fail(&ready.case, "model", e)).is_ok(),
            };
            if !sent {
                break;
            }
        }
    }

    /// A writer thread: writes each predicted case and computes its metrics.
    fn finish_cases(&self, rx: &Mutex<Receiver<Predicted>>, msg: &Sender<Message>) {
        while let Some(p) = next_item(rx) {
            if self.stop.load(Ordering::Relaxed) {
                continue;
            }
            if msg.send(self.finish_case(p)).is_err() {
                break;
            }
        }
    }

    /// Gathers what the stages report until they are all done; the first failure stops the
    /// run under `fail_fast` (and comes first in the failures).
    fn collect(&self, msgs: Receiver<Message>, observer: &dyn Observer) -> (Vec<CaseResult>, Vec<Failure>) {
        let (mut results, mut failed) = (Vec::new(), Vec::new());
        for m in msgs {
            match m {
                Message::Done(r) => {
                    observer.event(&Event::Done {
                        index: r.index,
                        file: r.file.clone(),
                    });
                    results.push(*r);
                }
                Message::Failed(f) => {
                    tracing::warn!(file = %f.file, stage = f.stage, "case failed: {}", f.error);
                    observer.event(&Event::Failed(f.clone()));
                    if self.opts.fail_fast && !self.stop.swap(true, Ordering::Relaxed) {
                        failed.insert(0, f);
                    } else {
                        failed.push(f);
                    }
                }
            }
        }
        (results, failed)
    }

    /// Reads a case and simulates its clicks.
    fn read_case(&self, case: &Case) -> Result<Ready, Message> {
        let t = Instant::now();
        let image = read_volume(&case.image).map_err(|e| fail(case, "read", e))?;
        if image.channels != 1 {
            return Err(fail(
                case,
                "read",
                format!(
                    "{}: {} channels; a single-channel image is expected",
                    case.image.display(),
                    image.channels
                ),
            ));
        }
        let label = match (&case.label, self.need_label) {
            (Some(p), true) => Some(read_volume(p).map_err(|e| fail(case, "read", e))?),
            (None, _) if self.model.kind == ModelKind::Annotation => {
                return Err(fail(
                    case,
                    "read",
                    "no label: the clicks of an annotation model are simulated from it",
                ));
            }
            (None, _) if self.metrics.is_some() => {
                return Err(fail(case, "read", "no label: evaluation needs the ground truth"));
            }
            _ => None,
        };
        let points = match (self.model.kind, &label) {
            (ModelKind::Annotation, Some(l)) => Some(self.clicks(case, &image, l)?),
            _ => None,
        };
        Ok(Ready {
            case: case.clone(),
            image,
            label,
            points,
            seconds: CaseSeconds {
                read: t.elapsed().as_secs_f64(),
                ..CaseSeconds::default()
            },
        })
    }

    /// The simulated clicks on `image` from `label` (resampled onto the image's grid when
    /// asked to and needed).
    fn clicks(&self, case: &Case, image: &Volume, label: &Volume) -> Result<Vec<[usize; 3]>, Message> {
        let same = label.dims == image.dims && label.geometry.approx_eq(&image.geometry, self.grid_tolerance);
        let resampled;
        let on_image = if same {
            label
        } else if self.resample {
            resampled =
                resample_like(label, image, Interpolation::Nearest).map_err(|e| fail(case, "clicks", e))?;
            &resampled
        } else {
            return Err(fail(
                case,
                "clicks",
                format!(
                    "the label {} lies on another grid ({}) than the image ({}), so its voxels are not the image's; pass --resample_prediction to resample it onto the image's grid",
                    case.label.as_deref().unwrap_or(Path::new("")).display(),
                    aiaa_metrics::compare::describe_grid(label),
                    aiaa_metrics::compare::describe_grid(image)
                ),
            ));
        };
        clicks::simulate(on_image, self.opts.pert, self.opts.seed, case.index).ok_or_else(|| {
            fail(
                case,
                "clicks",
                "the label has no foreground: there is nothing to click on",
            )
        })
    }

    /// Writes a predicted case and computes its metrics.
    fn finish_case(&self, p: Predicted) -> Message {
        let Predicted { ready, mask } = p;
        let mut seconds = ready.seconds;
        let case = &ready.case;
        let t = Instant::now();
        let file_name = case
            .image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let outputs = CaseOutputs {
            image: &ready.image,
            label: ready.label.as_ref(),
            mask: &mask,
            points: ready.points.as_deref(),
            sigma: self.model.sigma,
        };
        let written = match self.writers.write(&self.opts.output, &file_name, &outputs) {
            Ok(w) => w,
            Err(e) => return fail(case, "write", e),
        };
        seconds.write = t.elapsed().as_secs_f64();
        let metrics = match &self.metrics {
            None => None,
            Some(m) => {
                let t = Instant::now();
                let Some(label) = &ready.label else {
                    return fail(case, "read", "no label: evaluation needs the ground truth");
                };
                let pair = match aiaa_metrics::evaluate(&mask, label, &self.classes, m) {
                    Ok(p) => p,
                    Err(e) => return fail(case, "metrics", e),
                };
                seconds.metrics = t.elapsed().as_secs_f64();
                Some(pair)
            }
        };
        Message::Done(Box::new(CaseResult {
            index: case.index,
            file: case.name.clone(),
            outputs: written,
            points: ready.points,
            metrics,
            seconds,
        }))
    }
}

/// The stages' thread counts: readers, model workers, writers.
fn threads(opts: &Options, devices: usize) -> [usize; 3] {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let readers = if opts.readers > 0 {
        opts.readers
    } else {
        (cores / 2).clamp(2, 8)
    };
    let model = if opts.model_workers > 0 {
        opts.model_workers
    } else {
        2 * devices.max(1)
    };
    [readers, model, 2]
}

fn next_item<T>(rx: &Mutex<Receiver<T>>) -> Option<T> {
    rx.lock().unwrap_or_else(|e| e.into_inner()).recv().ok()
}

fn stage_seconds(t: &Timings, model: &str, stage: &str) -> f64 {
    let Value::Object(m) = t.report(model) else {
        return 0.0;
    };
    m.get(stage).and_then(Value::as_f64).unwrap_or(0.0)
}

fn read_volume(path: &Path) -> Result<Volume, String> {
    aiaa_imaging::io::read_volume(path, &ReadOptions::default()).map_err(|e| e.to_string())
}
