//! The engines: what turns a request (an image and its params) into a mask with a loaded
//! model. The set is open: [`build`] maps each [`EngineKind`] to its constructor, so a new
//! engine (deepgrow, classification) is one module here and one variant of [`EngineKind`],
//! and the services only see the [`ModelInfo`] it publishes.
//!
//! - [`dextr3d`]: `Dextr3dCroppedEngine`, annotation from six or more extreme points;
//! - [`segmentation`]: `SegmentationEngine`, automatic segmentation of the whole volume
//!   (network input by sliding window, by resizing, or whole), with an optional locator
//!   network that first finds the region to segment;
//! - [`deepgrow`]: `DeepgrowEngine`, foreground and background clicks refining the last
//!   mask (kept per session, or sent with the request: [`Context`]).
//!
//! Every engine runs on a blocking thread; only the forward pass goes to the device's owner
//! thread ([`crate::device`]). Stage times go into [`Timings`].
//!
//! An engine warms its networks up as it loads them, with an input of every shape it will
//! send ([`warm_input`]: a synthetic image through the engine's own transforms), so the
//! first request after the service reports SERVING is not the slow one.

pub mod deepgrow;
pub mod dextr3d;
pub mod grid;
pub mod segmentation;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aiaa_imaging::io::ImageInfo;
use aiaa_imaging::{Geometry, Volume, Voxels};
use aiaa_jit::Form;
use aiaa_transforms::{Data, Image, Kind, Pipeline};
use serde_json::{Map, Value, json};

use crate::device::Devices;
use crate::error::{EngineError, Result};
use crate::kind::EngineKind;
use crate::pool::{ModelConfig, PoolEntry};
use crate::tensor::{Layout, to_tensor};

/// What a loaded model is, as the services list it (the inference service's `ModelInfo`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelInfo {
    /// The model's name in the pool.
    pub name: String,
    /// The model type clients see (`annotation`, `segmentation`; a config's `type`).
    pub model_type: String,
    /// Label names.
    pub labels: Vec<String>,
    /// The config's `description`.
    pub description: String,
    /// The version.
    pub version: String,
    /// The network input size `[x, y, z]` (empty: the whole image).
    pub roi: Vec<i32>,
    /// Millimetres around the points (annotation).
    pub padding: f64,
    /// The extreme-points Gaussian's sigma, voxels (annotation).
    pub sigma: f64,
    /// The engine class as configured.
    pub engine: String,
    /// Which form of its TorchScript serves: frozen and optimised for inference unless that
    /// failed (the log says why); the least optimised over its networks.
    pub torchscript: Form,
}

/// What an engine is built from.
#[derive(Clone, Debug)]
pub struct EngineSpec {
    /// The model's name in the pool.
    pub name: String,
    /// The engine class.
    pub class: String,
    /// Label names (from the pool entry, else the config's `labels`).
    pub labels: Vec<String>,
    /// The version (the registry's, else the config's `version`, else `"1"`).
    pub version: String,
    /// The model config.
    pub config: ModelConfig,
}

impl EngineSpec {
    /// One entry of `engine_pool.json`, its config read (the operator's: trusted); the
    /// version is the config's `version`, else `"1"`.
    pub fn from_pool_entry(entry: &PoolEntry) -> Result<EngineSpec> {
        let config = ModelConfig::read(&entry.config_file)?;
        Ok(EngineSpec {
            name: entry.name.clone(),
            class: entry.class.clone(),
            labels: entry.labels.clone(),
            version: version_of(&config),
            config,
        })
    }

    /// A model config given as JSON text through an API: its files must lie in `roots`
    /// ([`ModelConfig::parse_confined`]; a relative `model_path` starts at `base`); the class
    /// is `class`, else the config's ([`class_for`]).
    pub fn confined(
        name: &str,
        json: &str,
        class: &str,
        labels: Vec<String>,
        base: &Path,
        roots: &[PathBuf],
    ) -> Result<EngineSpec> {
        let config = ModelConfig::parse_confined(json, &format!("of model {name:?}"), base, roots)?;
        Ok(EngineSpec {
            name: name.to_string(),
            class: class_for(class, &config)?,
            labels,
            version: version_of(&config),
            config,
        })
    }
}

/// A config's `version`, else `"1"`.
pub fn version_of(config: &ModelConfig) -> String {
    config.text("version").unwrap_or_else(|| "1".into())
}

/// A loaded model that answers requests.
pub trait Engine: Send + Sync {
    /// What the model is, as `ListModels` reports it.
    fn info(&self) -> &ModelInfo;
    /// Runs the model on `image` with the request's `params`; the mask lies on `image`'s
    /// grid.
    fn infer(&self, image: &Volume, params: &Map<String, Value>, timings: &mut Timings) -> Result<Outcome>;
    /// [`Engine::infer`] on a shared image: an engine that transforms the whole image uses
    /// it without a copy when no one else holds it (an inline image; a cached session
    /// volume is copied).
    fn infer_shared(
        &self,
        image: Arc<Volume>,
        params: &Map<String, Value>,
        timings: &mut Timings,
    ) -> Result<Outcome> {
        self.infer(&image, params, timings)
    }
    /// [`Engine::infer_shared`] with what the request carries besides its image and params
    /// ([`Context`]): only interactive engines read it.
    fn infer_in(
        &self,
        image: Arc<Volume>,
        params: &Map<String, Value>,
        context: &Context,
        timings: &mut Timings,
    ) -> Result<Outcome> {
        let _ = context;
        self.infer_shared(image, params, timings)
    }
    /// The most memory (bytes) the engine holds at once while it answers a request on an
    /// image of `image`'s size with `params`, beyond the image itself and the encoded
    /// result: a service's memory budget (the inference service's `budget`) is taken
    /// before the work starts. Checks the params it reads (points inside the image), so a
    /// bad request fails here, early.
    fn working_bytes(&self, image: &ImageInfo, params: &Map<String, Value>) -> Result<u64>;
}

/// What a request carries besides its image and params.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context<'a> {
    /// The session the image is held in: an interactive engine keeps its last answer per
    /// session (and label), so the next click refines it.
    pub session: Option<&'a str>,
    /// A previous mask sent with the request (a `label` part), on the image's grid.
    pub previous: Option<&'a Volume>,
}

/// Bytes a forward pass holds per voxel of its input (the input and output tensors, their
/// copies in and out, the network's activations): measured on the served networks (deepbet
/// on 256³: about 700 MB over the volume's own copies, some 44 bytes a voxel) and rounded up,
/// so that an estimate errs on the side of refusing.
pub const FORWARD_BYTES_PER_VOXEL: u64 = 64;

/// An engine's answer.
#[derive(Debug)]
pub struct Outcome {
    /// Integer labels on the request image's grid.
    pub mask: Volume,
    /// Result params (e.g. `points`).
    pub params: Map<String, Value>,
}

/// The engine `spec` asks for: its class must be known, and a config typed as interactive
/// (`deepgrow`, `deepedit`) must name the deepgrow engine (a whole-volume segmenter would
/// be advertised as deepgrow and ignore the clicks). Checks without loading anything.
pub fn kind_of(spec_name: &str, class: &str, config: &ModelConfig) -> Result<EngineKind> {
    let in_model = |e: EngineError| match e {
        EngineError::Config(msg) => EngineError::Config(format!("model {spec_name:?}: {msg}")),
        e => e,
    };
    let kind = EngineKind::require_class(class).map_err(in_model)?;
    let typed = config.text("type").unwrap_or_default();
    if EngineKind::from_type(&typed) == Some(EngineKind::Deepgrow) && kind != EngineKind::Deepgrow {
        return Err(in_model(EngineError::Config(format!(
            "type {typed:?} is an interactive model, which engine class {class:?} cannot serve; use {}",
            EngineKind::Deepgrow.class()
        ))));
    }
    Ok(kind)
}

/// Builds the engine `spec.class` names (loading and warming up its networks).
pub fn build(spec: &EngineSpec, devices: &Devices) -> Result<Box<dyn Engine>> {
    match kind_of(&spec.name, &spec.class, &spec.config)? {
        EngineKind::Dextr3dCropped => dextr3d::Dextr3d::build(spec, devices),
        EngineKind::Segmentation => segmentation::Segmentation::build(spec, devices),
        EngineKind::Deepgrow => deepgrow::Deepgrow::build(spec, devices),
    }
}

/// The engine class of a model: `requested` when not empty, else the config's `engine`,
/// else the class for the config's `type` ([`EngineKind::for_type`]).
pub fn class_for(requested: &str, config: &ModelConfig) -> Result<String> {
    if !requested.is_empty() {
        return Ok(requested.to_string());
    }
    match config.text("engine") {
        Some(class) => Ok(class),
        None => EngineKind::for_type(&config.text("type").unwrap_or_default())
            .map(|k| k.class().to_string())
            .map_err(|e| EngineError::Config(format!("model config {}: {e}", config.origin))),
    }
}

/// Wall-clock time per stage of one request (`decode`, `pre`, `infer`, `post`, `encode`),
/// reported in the result params and as the histogram `aiaa_inference_stage_seconds`.
#[derive(Debug, Default)]
pub struct Timings {
    stages: Vec<(&'static str, Duration)>,
}

impl Timings {
    /// Runs `f` in a span named after `stage` (so a request's trace shows its stages, on
    /// whichever thread they run), adding its time to `stage`.
    pub fn time<T>(&mut self, stage: &'static str, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let out = tracing::info_span!("stage", otel.name = stage, stage).in_scope(f);
        self.add(stage, t0.elapsed());
        out
    }

    /// Adds `d` to `stage`.
    pub fn add(&mut self, stage: &'static str, d: Duration) {
        match self.stages.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, t)) => *t += d,
            None => self.stages.push((stage, d)),
        }
    }

    /// Records the histograms and returns `{"decode": s, ..., "total": s}` in seconds.
    pub fn report(&self, model: &str) -> Value {
        let mut m = Map::new();
        let mut total = Duration::ZERO;
        for (stage, d) in &self.stages {
            metrics::histogram!("aiaa_inference_stage_seconds", "stage" => *stage, "model" => model.to_string())
                .record(d.as_secs_f64());
            m.insert((*stage).to_string(), json!(round_ms(*d)));
            total += *d;
        }
        m.insert("total".into(), json!(round_ms(total)));
        Value::Object(m)
    }
}

fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 1e4
}

/// Builds one of the config's transform lists (empty when absent). The seed's
/// `transforms.SplitAcrossChannels` is dropped from `post_transforms`: it splits the network
/// output into named channels for the offline writers, which the engines do themselves.
pub fn transforms(config: &ModelConfig, key: &str) -> Result<Pipeline> {
    let list = match config.json.get(key) {
        None | Some(Value::Null) => Value::Array(Vec::new()),
        Some(Value::Array(items)) if key == "post_transforms" => Value::Array(
            items
                .iter()
                .filter(|t| t.get("name").and_then(Value::as_str) != Some("transforms.SplitAcrossChannels"))
                .cloned()
                .collect(),
        ),
        Some(v) => v.clone(),
    };
    Pipeline::from_json(&list, 0).map_err(|e| config.error(key, e))
}

/// The config's `pre_transforms` as an engine of `kind` runs them: offline lists (a training
/// config's validation section, the seed's inference and evaluation configs) adapted by
/// [`crate::adapt`], each change logged for `model`.
pub fn pre_transforms(model: &str, config: &ModelConfig, kind: EngineKind) -> Result<Pipeline> {
    let Some(list @ Value::Array(_)) = config.json.get("pre_transforms") else {
        // Absent (none), or not a list: the plain reader says so.
        return transforms(config, "pre_transforms");
    };
    let adapted = crate::adapt::pre_transforms(list, kind);
    for note in &adapted.notes {
        tracing::info!(model = %model, "{note}");
    }
    Pipeline::from_json(&Value::Array(adapted.transforms), 0).map_err(|e| {
        if adapted.notes.is_empty() {
            config.error("pre_transforms", e)
        } else {
            // The numbers in `e` count the adapted list, not the file's: say how it was adapted.
            config.error(
                "pre_transforms",
                format!(
                    "{e} (in the list as adapted for the engine: {})",
                    adapted.notes.join("; ")
                ),
            )
        }
    })
}

/// A transform list given inline (e.g. a locator's), under `key` of `block`.
pub fn transforms_in(config: &ModelConfig, block: &Map<String, Value>, key: &str) -> Result<Pipeline> {
    let list = block.get(key).cloned().unwrap_or(Value::Array(Vec::new()));
    Pipeline::from_json(&list, 0).map_err(|e| config.error(key, e))
}

/// A sample holding one intensity image under `image`.
pub fn sample(image: Volume) -> Data {
    let mut d = Data::named("request");
    d.insert_image("image", Image::new(image, Kind::Intensity));
    d
}

/// The image under `key`, taken out of the sample.
pub fn take_image(d: &mut Data, key: &str) -> Result<Image> {
    match d.remove(key) {
        Some(aiaa_transforms::Item::Image(im)) => Ok(*im),
        _ => Err(EngineError::Internal(format!(
            "the transforms left no image under {key:?}"
        ))),
    }
}

/// How the network's raw output becomes probabilities (`"output_activation"`): `none`
/// (the module already ends in its activation, the default, as the seed's exported graphs
/// and ours do), `softmax` over channels or `sigmoid`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// Already probabilities.
    #[default]
    None,
    /// Softmax over the channel axis.
    Softmax,
    /// Element-wise sigmoid.
    Sigmoid,
}

impl Activation {
    /// Applies it to a `[N, K, ...]` tensor.
    pub fn apply(self, t: tch::Tensor) -> tch::Tensor {
        match self {
            Activation::None => t,
            Activation::Softmax => t.softmax(1, tch::Kind::Float),
            Activation::Sigmoid => t.sigmoid(),
        }
    }
}

/// A smooth bright blob of `dims` voxels (one `f32` channel, unit spacing): the image an
/// engine's warm-up inputs are made from. Not constant, so that percentile and z-score
/// normalisations have something to normalise.
pub fn warm_volume(dims: [usize; 3]) -> Result<Volume> {
    let centre = dims.map(|d| (d as f64 - 1.0) / 2.0);
    let mut v = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let r2: f64 = [i, j, k]
                    .iter()
                    .zip(centre)
                    .zip(dims)
                    .map(|((&x, c), d)| ((x as f64 - c) / (d as f64 / 3.0)).powi(2))
                    .sum();
                v.push((100.0 * (-r2).exp()) as f32);
            }
        }
    }
    Ok(Volume::scalar(dims, Geometry::default(), Voxels::F32(v))?)
}

/// A network input like the ones a request produces: a [`warm_volume`] of `dims` (with
/// `points` under their key, for engines that take them) through `pipeline`, the volume
/// the network's tensor is made from. Used for the warm-up at load and by the trainer's
/// export to check its config.
pub fn synthetic_input(
    pipeline: &Pipeline,
    dims: [usize; 3],
    points: Option<(&str, Vec<[f64; 3]>)>,
) -> Result<Volume> {
    let mut d = sample(warm_volume(dims)?);
    if let Some((key, pts)) = points {
        d.insert(key.to_string(), aiaa_transforms::Item::Points(pts));
    }
    pipeline.run(&mut d, 0)?;
    Ok(take_image(&mut d, "image")?.vol)
}

/// Six extreme points of a [`warm_volume`]'s blob, on the box 15% in from its faces.
pub fn six_points(dims: [usize; 3]) -> Vec<[f64; 3]> {
    let at = |a: usize, f: f64| (dims[a] as f64 - 1.0) * f;
    let mid = [at(0, 0.5), at(1, 0.5), at(2, 0.5)];
    let mut pts = Vec::with_capacity(6);
    for a in 0..3 {
        for f in [0.15, 0.85] {
            let mut p = mid;
            p[a] = at(a, f);
            pts.push(p);
        }
    }
    pts
}

/// The warm-up input at load: a [`synthetic_input`] as a `[1, C, ...]` tensor in `layout`.
/// `None`, with a warning, when the transforms refuse it: the model then loads without a
/// warm-up rather than not at all.
pub fn warm_input(
    model: &str,
    pipeline: &Pipeline,
    dims: [usize; 3],
    layout: Layout,
    points: Option<(&str, Vec<[f64; 3]>)>,
) -> Option<tch::Tensor> {
    synthetic_input(pipeline, dims, points)
        .and_then(|vol| to_tensor(&vol, layout))
        .map_err(|e| {
            tracing::warn!(model = %model, error = %e, "no warm-up input: the transforms refused a synthetic image; loading without a warm-up")
        })
        .ok()
}

/// The label names, for `ModelInfo`.
pub fn labels_of(spec: &EngineSpec) -> Result<Vec<String>> {
    if !spec.labels.is_empty() {
        return Ok(spec.labels.clone());
    }
    Ok(spec.config.get::<Vec<String>>("labels")?.unwrap_or_default())
}

/// Points `[[x, y, z], ...]` from the params (a JSON array, or a string holding one), as
/// voxel indices that must lie inside `dims`.
pub fn points(params: &Map<String, Value>, key: &str, dims: [usize; 3]) -> Result<Vec<[f64; 3]>> {
    let bad = |msg: String| EngineError::Invalid(format!("params.{key}: {msg}"));
    let raw = params
        .get(key)
        .ok_or_else(|| bad("missing; send [[x, y, z], ...] in voxel indices".into()))?;
    let parsed;
    let v = match raw {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).map_err(|e| bad(format!("not a JSON array: {e}")))?;
            &parsed
        }
        v => v,
    };
    let list = v
        .as_array()
        .ok_or_else(|| bad("must be a list of [x, y, z]".into()))?;
    list.iter()
        .enumerate()
        .map(|(n, p)| {
            let xyz = p
                .as_array()
                .filter(|a| a.len() == 3)
                .and_then(|a| {
                    let c: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
                    (c.len() == 3).then(|| [c[0], c[1], c[2]])
                })
                .ok_or_else(|| bad(format!("point {n} is {p}; expected three numbers [x, y, z]")))?;
            for a in 0..3 {
                if !(xyz[a] >= 0.0 && xyz[a] <= dims[a] as f64 - 1.0) {
                    return Err(bad(format!(
                        "point {n} {p} lies outside the image of {} x {} x {} voxels",
                        dims[0], dims[1], dims[2]
                    )));
                }
            }
            Ok(xyz)
        })
        .collect()
}

/// The extreme points of a mask as `[[x, y, z], ...]` (empty for an empty mask), the AIAA
/// API's `points` of a segmentation result.
pub fn extreme_points_json(mask: &Volume) -> Value {
    match aiaa_transforms::extreme::extreme_points(mask) {
        Some(pts) => json!(pts.iter().map(|p| json!([p[0], p[1], p[2]])).collect::<Vec<_>>()),
        None => json!([]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ModelConfig {
        ModelConfig::parse(json, "(test)", Path::new("/models")).unwrap()
    }

    #[test]
    fn interactive_configs_get_the_deepgrow_engine_and_no_other() {
        let c = config(r#"{"model_path": "m.pt", "type": "deepgrow"}"#);
        assert_eq!(class_for("", &c).unwrap(), "DeepgrowEngine");
        let c = config(r#"{"model_path": "m.pt", "type": "deepedit"}"#);
        assert_eq!(class_for("", &c).unwrap(), "DeepgrowEngine");
        assert_eq!(kind_of("dg", "DeepEditEngine", &c).unwrap(), EngineKind::Deepgrow);
        // Not as a segmenter: checked before any file is read.
        let e = kind_of("dg", "SegmentationEngine", &c).unwrap_err().to_string();
        assert!(
            e.contains("\"dg\"") && e.contains("interactive") && e.contains("DeepgrowEngine"),
            "{e}"
        );
        let spec = EngineSpec {
            name: "dg".into(),
            class: "SegmentationEngine".into(),
            labels: vec![],
            version: "1".into(),
            config: c,
        };
        let devices = Devices::start(&[], 0).unwrap();
        let e = build(&spec, &devices).err().unwrap().to_string();
        assert!(e.contains("interactive"), "{e}");
    }

    #[test]
    fn classes_come_from_the_request_the_config_or_the_type() {
        let c = config(r#"{"model_path": "m.pt", "type": "annotation"}"#);
        assert_eq!(class_for("", &c).unwrap(), "Dextr3dCroppedEngine");
        assert_eq!(class_for("SegmentationEngine", &c).unwrap(), "SegmentationEngine");
        let c = config(r#"{"model_path": "m.pt", "engine": "Dextr3DEngine"}"#);
        assert_eq!(class_for("", &c).unwrap(), "Dextr3DEngine");
        assert_eq!(
            kind_of("m", "Dextr3DEngine", &c).unwrap(),
            EngineKind::Dextr3dCropped
        );
        let c = config(r#"{"model_path": "m.pt"}"#);
        assert_eq!(class_for("", &c).unwrap(), "SegmentationEngine");
        let e = kind_of("m", "Nope", &c).unwrap_err().to_string();
        assert!(e.contains("unknown engine class \"Nope\""), "{e}");
    }
}
