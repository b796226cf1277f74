//! The engines: what turns a request (an image and its params) into a mask with a loaded
//! model. The set is open: [`ENGINES`] maps a seed engine class to its constructor, so a new
//! engine (deepgrow, classification) is one module and one line here, and the gateway only
//! sees the [`ModelInfo`] it publishes.
//!
//! - [`dextr3d`]: `Dextr3dCroppedEngine`, annotation from six or more extreme points;
//! - [`segmentation`]: `SegmentationEngine`, automatic segmentation of the whole volume
//!   (network input by sliding window, by resizing, or whole), with an optional locator
//!   network that first finds the region to segment.
//!
//! Every engine runs on a blocking thread; only the forward pass goes to the device's owner
//! thread ([`crate::device`]). Stage times go into [`Timings`].

pub mod dextr3d;
pub mod grid;
pub mod segmentation;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aiaa_imaging::Volume;
use aiaa_imaging::io::ImageInfo;
use aiaa_proto::inference::v1::ModelInfo;
use aiaa_transforms::{Data, Image, Kind, Pipeline};
use serde_json::{Map, Value, json};

use crate::device::Devices;
use crate::error::{InferenceError, Result};
use crate::pool::ModelConfig;

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
    /// The most memory (bytes) the engine holds at once while it answers a request on an
    /// image of `image`'s size with `params`, beyond the image itself and the encoded
    /// result: the budget ([`crate::budget`]) is taken before the work starts. Checks the
    /// params it reads (points inside the image), so a bad request fails here, early.
    fn working_bytes(&self, image: &ImageInfo, params: &Map<String, Value>) -> Result<u64>;
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

type Build = fn(&EngineSpec, &Devices) -> Result<Box<dyn Engine>>;

/// Engine classes by name: the seed's class names and ours.
pub const ENGINES: &[(&str, Build)] = &[
    ("Dextr3dCroppedEngine", dextr3d::Dextr3d::build),
    ("Dextr3DEngine", dextr3d::Dextr3d::build),
    ("SegmentationEngine", segmentation::Segmentation::build),
];

/// Builds the engine `spec.class` names (loading and warming up its networks).
pub fn build(spec: &EngineSpec, devices: &Devices) -> Result<Box<dyn Engine>> {
    let (_, make) = ENGINES.iter().find(|(n, _)| *n == spec.class).ok_or_else(|| {
        InferenceError::Config(format!(
            "model {:?}: unknown engine class {:?}; known: {}",
            spec.name,
            spec.class,
            ENGINES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ))
    })?;
    make(spec, devices)
}

/// The default engine class of a config without one: its `type`.
pub fn class_for_type(model_type: &str) -> &'static str {
    match model_type {
        "annotation" => "Dextr3dCroppedEngine",
        _ => "SegmentationEngine",
    }
}

/// Wall-clock time per stage of one request (`decode`, `pre`, `infer`, `post`, `encode`),
/// reported in the result params and as the histogram `aiaa_inference_stage_seconds`.
#[derive(Debug, Default)]
pub struct Timings {
    stages: Vec<(&'static str, Duration)>,
}

impl Timings {
    /// Runs `f`, adding its time to `stage`.
    pub fn time<T>(&mut self, stage: &'static str, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let out = f();
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
        _ => Err(InferenceError::Internal(format!(
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
    let bad = |msg: String| InferenceError::Invalid(format!("params.{key}: {msg}"));
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
