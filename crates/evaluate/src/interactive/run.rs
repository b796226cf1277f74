//! `aiaa evaluate --interactive N` over a datalist: each case's image and label read, the
//! click protocol run through the model's engine in-process (as the annotation server runs
//! it), the curves, their means over the cases and the time per click written to
//! `<output>/interactive.json` (see the parent module for the protocol).
//!
//! How each kind of model takes the protocol's prompt: a DEXTR 3D (annotation) engine gets
//! `params.points`, the six extreme points followed by every foreground click so far (its
//! engine takes six or more points); it cannot take a background click, which is counted
//! (`ignored_background_clicks`) and changes nothing. A deepgrow (click) engine gets every
//! click so far as `params.foreground` / `params.background` and its own last answer as the
//! previous mask, as a viewer's session keeps it. A segmentation model takes no clicks and
//! is refused.

use std::path::PathBuf;
use std::time::Instant;

use aiaa_engines::{Context, Timings};
use aiaa_imaging::io::read_volume;
use aiaa_imaging::{ReadOptions, Volume};
use aiaa_metrics::compare::same_grid;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::{Curve, Interaction, Prompt, Protocol, Rule, run_case};
use crate::datalist;
use crate::error::{EvaluateError, Result};
use crate::model::{Model, ModelKind};
use crate::run::{EvaluateOptions, Event, Failure, Observer, Options};

/// One case's protocol.
#[derive(Clone, Debug, Serialize)]
pub struct CaseCurve {
    /// Position in the datalist section.
    pub index: usize,
    /// The image as the datalist names it.
    pub file: String,
    /// Background clicks the model could not take.
    pub ignored_background_clicks: usize,
    /// The scores.
    #[serde(flatten)]
    pub curve: Curve,
}

/// What an interactive evaluation did.
#[derive(Clone, Debug, Serialize)]
pub struct InteractiveSummary {
    /// The model's name.
    pub model: String,
    /// The engine class.
    pub engine: String,
    /// Corrective clicks per case.
    pub clicks: usize,
    /// `centre` or `jitter R`.
    pub rule: String,
    /// The jittered rule's seed.
    pub seed: u64,
    /// NSD tolerance (mm).
    pub nsd_tolerance_mm: f64,
    /// Mean Dice over the cases after each click (index 0: the initial prompt).
    pub mean_dice: Vec<f64>,
    /// Mean NSD after each click.
    pub mean_nsd: Vec<f64>,
    /// Mean area under the Dice curve of the corrective clicks.
    pub mean_dsc_auc: f64,
    /// Mean area under the NSD curve.
    pub mean_nsd_auc: f64,
    /// The median time of one prediction, over every prediction of every case (s).
    pub median_seconds_per_click: f64,
    /// Every case that went through.
    pub cases: Vec<CaseCurve>,
    /// Cases that failed.
    pub failed: Vec<Failure>,
    /// Where this summary was written.
    pub file: PathBuf,
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = v.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// The initial prompt the model takes: six extreme points for DEXTR 3D, a click for
/// deepgrow; a model that takes no clicks is refused.
fn prompt_for(model: &Model) -> Result<Prompt> {
    match model.kind {
        ModelKind::Annotation => Ok(Prompt::ExtremePoints),
        ModelKind::Interactive => Ok(Prompt::Click),
        ModelKind::Segmentation => Err(EvaluateError::Option {
            flag: "--interactive",
            reason: format!(
                "{} ({}) takes no clicks: the protocol needs an interactive model (DEXTR 3D or deepgrow)",
                model.name, model.class
            ),
        }),
    }
}

/// A case's image and label, which must share the image's grid (the clicks are its voxels).
fn read_case(case: &datalist::Case, eval: &EvaluateOptions) -> Result<(Volume, Volume)> {
    let image = read_volume(&case.image, &ReadOptions::default())?;
    let label_path = case
        .label
        .as_ref()
        .ok_or_else(|| EvaluateError::Case("the entry has no label: the protocol clicks from it".into()))?;
    let label = read_volume(label_path, &ReadOptions::default())?;
    if !same_grid(&image, &label, eval.grid_tolerance) {
        return Err(EvaluateError::Case(format!(
            "the label {} is not on the image's grid ({:?} against {:?} voxels, or another geometry): clicks are voxels of the image",
            label_path.display(),
            label.dims,
            image.dims
        )));
    }
    Ok((image, label))
}

/// Runs the click protocol over the datalist section of `opts` with the model it names.
pub fn run_interactive(
    opts: &Options,
    eval: &EvaluateOptions,
    protocol: Protocol,
    observer: &dyn Observer,
) -> Result<InteractiveSummary> {
    if opts.output.as_os_str().is_empty() {
        return Err(EvaluateError::Option {
            flag: "--output_path",
            reason: "is required".into(),
        });
    }
    let cases = datalist::read(&opts.data_file, &opts.data_list_key, opts.file_root.as_deref())?;
    let devices = aiaa_engines::Devices::start(&aiaa_engines::parse_devices(&opts.device)?, opts.threads)?;
    let model = Model::load(&opts.source, &devices)?;
    let prompt = prompt_for(&model)?;
    observer.event(&Event::Started { total: cases.len() });
    let (mut done, mut failed, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for case in &cases {
        let fail = |stage: &'static str, error: String| Failure {
            index: case.index,
            file: case.name.clone(),
            stage,
            error,
        };
        let (image, label) = match read_case(case, eval) {
            Ok(v) => v,
            Err(e) => {
                let f = fail("read", e.to_string());
                observer.event(&Event::Failed(f.clone()));
                failed.push(f);
                continue;
            }
        };
        let image = std::sync::Arc::new(image);
        let mut ignored = 0;
        let mut last: Option<Volume> = None;
        let predict = |i: &Interaction| -> Result<Vec<bool>> {
            // Clicks go out as voxel indices, as a viewer sends them.
            let voxels =
                |pts: &[[f64; 3]]| Value::Array(pts.iter().map(|p| json!(p.map(|x| x as usize))).collect());
            let mut params = Map::new();
            let mut context = Context::default();
            if prompt == Prompt::ExtremePoints {
                let mut points: Vec<Value> = i.extreme_points.iter().map(|p| json!(p)).collect();
                points.extend(i.clicks.foreground.iter().map(|p| json!(p.map(|x| x as usize))));
                ignored = i.clicks.background.len();
                params.insert("points".into(), Value::Array(points));
            } else {
                params.insert("foreground".into(), voxels(&i.clicks.foreground));
                params.insert("background".into(), voxels(&i.clicks.background));
                context.previous = last.as_ref();
            }
            let t0 = Instant::now();
            let out = model.engine.infer_in(
                std::sync::Arc::clone(&image),
                &params,
                &context,
                &mut Timings::default(),
            )?;
            times.push(t0.elapsed().as_secs_f64());
            let mask = out.mask.voxels.to_f32_vec().iter().map(|v| *v > 0.0).collect();
            if prompt == Prompt::Click {
                last = Some(out.mask);
            }
            Ok(mask)
        };
        match run_case(&label, prompt, &protocol, case.index, predict) {
            Ok(curve) => {
                observer.event(&Event::Done {
                    index: case.index,
                    file: case.name.clone(),
                });
                done.push(CaseCurve {
                    index: case.index,
                    file: case.name.clone(),
                    ignored_background_clicks: ignored,
                    curve,
                });
            }
            Err(e) => {
                let f = fail("model", e.to_string());
                observer.event(&Event::Failed(f.clone()));
                failed.push(f);
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let per_click = |f: fn(&super::Step) -> f64| -> Vec<f64> {
        (0..=protocol.clicks)
            .map(|c| mean(done.iter().filter_map(|d| d.curve.steps.get(c)).map(f)))
            .collect()
    };
    let summary = InteractiveSummary {
        model: model.name.clone(),
        engine: model.class.clone(),
        clicks: protocol.clicks,
        rule: match protocol.rule {
            Rule::Centre => "centre".into(),
            Rule::Jittered(r) => format!("jitter {r}"),
        },
        seed: protocol.seed,
        nsd_tolerance_mm: protocol.nsd_tolerance_mm,
        mean_dice: per_click(|s| s.dice),
        mean_nsd: per_click(|s| s.nsd),
        mean_dsc_auc: mean(done.iter().map(|d| d.curve.dsc_auc)),
        mean_nsd_auc: mean(done.iter().map(|d| d.curve.nsd_auc)),
        median_seconds_per_click: times.get(times.len() / 2).copied().unwrap_or(0.0),
        cases: done,
        failed,
        file: opts.output.join("interactive.json"),
    };
    std::fs::create_dir_all(&opts.output).map_err(|source| EvaluateError::Io {
        path: opts.output.clone(),
        source,
    })?;
    let text = serde_json::to_string_pretty(&summary).map_err(aiaa_metrics::MetricsError::from)? + "\n";
    aiaa_imaging::io::write_atomic(&summary.file, text.as_bytes())?;
    Ok(summary)
}
