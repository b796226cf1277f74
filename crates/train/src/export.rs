//! Export (the seed's `tlt-export`, chapter 7): a checkpoint becomes a TorchScript model and
//! the model config the inference service loads (seed 4.1.1 format plus our keys, see
//! `aiaa_engines::pool`). The engine it is for is an [`EngineKind`] of `aiaa-engines`, whose
//! class and model type the config and the registry record.
//!
//! The TorchScript module (`<model_name>.pt`) is the network traced in evaluation mode with
//! its final activation: it takes float32 `[N, num_channels, X, Y, Z]` (`N, C, i, j, k`) and
//! returns probabilities `[N, num_classes, X, Y, Z]`. fp16 needs a CUDA device (a clear error
//! elsewhere); the module still takes and returns float32.
//!
//! The model config (`config.json`) depends on the engine:
//! - `Dextr3dCroppedEngine` (annotation models: the pipelines add an extreme-points
//!   channel): `roi` = `network_input_size`, `padding` (mm around the points), `sigma` (of
//!   `AddExtremePointsChannel`), `thresh`, and as `pre_transforms` the validation
//!   `pre_transforms` as the engine runs them (`aiaa_engines::adapt`: loading, cropping
//!   and resizing dropped, the label key taken out of the other transforms' key lists, the
//!   extreme-points perturbation set to 0): they run on the engine's roi-sized crop, with
//!   the points under the label key;
//! - `SegmentationEngine` (other models): the validation `pre_transforms` adapted the same
//!   way (resizing kept), and `inference` = sliding window over `network_input_size`;
//! - `DeepgrowEngine` (models trained with simulated clicks, an `interaction` section):
//!   `roi` = `network_input_size`, `mode` `whole`, and from the interaction: `sigma`,
//!   `number_intensity_ch`, `previous_mask`, `automatic` (trained sometimes without
//!   clicks); the validation `pre_transforms` adapted (loading and resizing dropped: the
//!   engine resizes the image to `roi` and adds the guidance channels itself).
//!
//! All record the seed's `input_nodes` / `output_nodes` (from `--input_node_names` /
//! `--output_node_names`; a TorchScript module has one input and one output), `model_format`
//! `"torchscript"`, `output_activation` `"none"` (the module ends in its activation), and a
//! `training` block (checkpoint, epoch, step, best metric, network). Before anything is
//! written the export checks itself: the config's `pre_transforms` run on a synthetic
//! roi-sized sample (with a deepgrow model's guidance channels) must give `num_channels`
//! channels, and the traced module, loaded as the
//! inference service loads it (`aiaa-jit`: frozen and optimised for inference, warmed up on
//! that sample), must answer `[1, num_classes, roi]` probabilities for it, within 1e-3 of
//! the module as loaded. [`Exported::torchscript`] says which form will serve.

use std::path::{Path, PathBuf};

use aiaa_engines::{EngineError, adapt, engines};
use aiaa_imaging::Volume;
use aiaa_jit::{Form, Module, Policy};
use aiaa_nets::checkpoint::{self, CheckpointMeta};
use aiaa_nets::export::{ExportOptions, Precision, export_torchscript};
use aiaa_nets::{NetsError, Network};
use aiaa_transforms::Pipeline;
use serde_json::{Map, Value, json};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::config::TrainConfig;
use crate::data::volume_tensor;
use crate::error::{Result, TrainError};
use crate::interaction::Interaction;
use crate::trainer::{DeviceChoice, write_atomically};

/// The engine the exported model is for (one mapping of class names and model types, for
/// the whole platform).
pub use aiaa_engines::EngineKind;

/// What to export and how.
#[derive(Debug, Clone)]
pub struct ExportJob {
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Where `<model_name>.pt` and `config.json` go (created if missing).
    pub output_dir: PathBuf,
    /// The model file's base name (`model` gives `model.pt`).
    pub model_name: String,
    /// fp32 or fp16 (CUDA only).
    pub precision: Precision,
    /// The device to trace on.
    pub device: DeviceChoice,
    /// The engine; `None` picks it from the pipelines (extreme points: annotation).
    pub engine: Option<EngineKind>,
    /// `padding` (mm) of an annotation model; `None`: the `pad` of the training
    /// `CropForegroundObject` (voxels of the seed's 1 mm data), else 20.
    pub padding: Option<f64>,
    /// Label names.
    pub labels: Vec<String>,
    /// Description.
    pub description: Option<String>,
    /// Version recorded in the config.
    pub version: Option<String>,
    /// Foreground threshold.
    pub thresh: f64,
    /// The seed's input node name(s), recorded.
    pub input_node_names: Option<String>,
    /// The seed's output node name(s), recorded.
    pub output_node_names: Option<String>,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The TorchScript file.
    pub model_path: PathBuf,
    /// The model config file.
    pub config_path: PathBuf,
    /// The model config.
    pub config: Value,
    /// The TorchScript file's size.
    pub model_bytes: u64,
    /// The engine.
    pub engine: EngineKind,
    /// Which form of the module the inference service will serve (`frozen` unless freezing
    /// fails; the log says why).
    pub torchscript: Form,
}

fn first_arg(list: &Value, name: &str, arg: &str) -> Option<f64> {
    adapt::find(list, name)
        .and_then(|t| t.get(arg))
        .and_then(Value::as_f64)
}

fn nets(context: &str, e: NetsError) -> TrainError {
    match e {
        NetsError::Unsupported(m) => TrainError::Unsupported(m),
        other => TrainError::nets(context, other),
    }
}

/// Exports `job.checkpoint`; see the module docs.
pub fn export(job: &ExportJob) -> Result<Exported> {
    let ckpt = &job.checkpoint;
    let meta = checkpoint::read_meta(ckpt).map_err(|e| bad_checkpoint(ckpt, e))?;
    let cfg = TrainConfig::from_json(meta.train_config.clone(), ckpt)?;
    let device = export_device(job)?;
    let engine = job.engine.unwrap_or_else(|| default_engine(&cfg));
    if cfg.interaction.is_some() != (engine == EngineKind::Deepgrow) {
        return Err(TrainError::Unsupported(format!(
            "{}: {}",
            ckpt.display(),
            if engine == EngineKind::Deepgrow {
                "the deepgrow engine serves models trained with simulated clicks (an `interaction` section); \
                 this one was not"
                    .to_string()
            } else {
                format!(
                    "a model trained with simulated clicks (deepgrow) takes its clicks as guidance channels; \
                     the {engine} cannot serve it"
                )
            }
        )));
    }
    let validate = if cfg.has_validation() {
        &cfg.validate_transforms
    } else {
        &cfg.train_transforms
    };
    let pre = adapt::pre_transforms(validate, engine).transforms;
    let roi = cfg.network_input_size;

    // The engine's input for a synthetic roi-sized sample: the pre_transforms must give the
    // network's channels.
    let probe = probe_input(&pre, roi, engine, cfg.interaction.as_ref())?;
    if probe.channels as i64 != cfg.num_channels {
        return Err(TrainError::Config {
            file: ckpt.clone(),
            key: "validate.pre_transforms".into(),
            message: format!(
                "without loading and cropping, these transforms give {} channel(s) on the engine's input; \
                 the network takes num_channels {}",
                probe.channels, cfg.num_channels
            ),
        });
    }
    let model_file = format!("{}.pt", job.model_name);
    let model_path = job.output_dir.join(&model_file);
    let torchscript = write_model(job, &cfg, &probe, device, &model_path)?;
    let model_bytes = std::fs::metadata(&model_path)
        .map_err(|e| TrainError::io(&model_path, e))?
        .len();
    let config = model_config(job, &cfg, &meta, engine, validate, pre, &model_file);
    let config_path = job.output_dir.join("config.json");
    let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
    write_atomically(&config_path, text.as_bytes())?;
    Ok(Exported {
        model_path,
        config_path,
        config,
        model_bytes,
        engine,
        torchscript,
    })
}

fn bad_checkpoint(ckpt: &Path, e: NetsError) -> TrainError {
    TrainError::Checkpoint {
        path: ckpt.to_path_buf(),
        message: e.to_string(),
    }
}

/// Where to trace: fp16 needs a CUDA device (`auto` takes one for fp16), fp32 traces on the
/// CPU unless a device was named.
fn export_device(job: &ExportJob) -> Result<Device> {
    let device = match job.device {
        DeviceChoice::Cpu => Device::Cpu,
        DeviceChoice::Auto if job.precision == Precision::Fp16 && tch::Cuda::is_available() => {
            Device::Cuda(0)
        }
        DeviceChoice::Auto => Device::Cpu,
        DeviceChoice::Cuda(n) => Device::Cuda(n),
    };
    if job.precision == Precision::Fp16 && !device.is_cuda() {
        return Err(TrainError::Unsupported(format!(
            "fp16 export needs a CUDA device and this machine has {}; export FP32 (--trt_precision_mode FP32)",
            if tch::Cuda::is_available() {
                "one, but --device cpu was given".to_string()
            } else {
                "none".to_string()
            }
        )));
    }
    Ok(device)
}

/// The engine a config was trained for: deepgrow when it was trained with simulated
/// clicks, annotation when it adds extreme points, else segmentation.
fn default_engine(cfg: &TrainConfig) -> EngineKind {
    if cfg.interaction.is_some() {
        return EngineKind::Deepgrow;
    }
    let has_points = [&cfg.validate_transforms, &cfg.train_transforms]
        .iter()
        .any(|l| first_arg(l, adapt::EXTREME_POINTS, "sigma").is_some());
    if has_points {
        EngineKind::Dextr3dCropped
    } else {
        EngineKind::Segmentation
    }
}

/// The checkpoint's weights traced to TorchScript at `model_path`, through a temporary name:
/// nothing is left in place unless the module loads and answers `probe` as it should. The
/// form it will serve in.
fn write_model(
    job: &ExportJob,
    cfg: &TrainConfig,
    probe: &Volume,
    device: Device,
    model_path: &Path,
) -> Result<Form> {
    let ckpt = &job.checkpoint;
    let mut vs = VarStore::new(Device::Cpu);
    let _net = Network::new(&vs.root(), &cfg.net, cfg.num_channels, cfg.num_classes)
        .map_err(|e| nets("net_config", e))?;
    checkpoint::load_weights(ckpt, &mut vs, true).map_err(|e| bad_checkpoint(ckpt, e))?;
    std::fs::create_dir_all(&job.output_dir).map_err(|e| TrainError::io(&job.output_dir, e))?;
    let roi = cfg.network_input_size;
    let options = ExportOptions {
        precision: job.precision,
        device,
        example_size: Some(roi),
        include_activation: true,
    };
    // Trace into a temporary name: nothing is left in place unless the checks pass.
    let model_file = format!("{}.pt", job.model_name);
    let staging = job
        .output_dir
        .join(format!(".{model_file}.export-{}", std::process::id()));
    let traced = export_torchscript(
        &cfg.net,
        cfg.num_channels,
        cfg.num_classes,
        &vs,
        &options,
        &staging,
    )
    .map_err(|e| nets("export", e));
    let checked = traced.and_then(|_| check_module(&staging, probe, cfg.num_classes, roi, device));
    match checked {
        Err(e) => {
            let _ = std::fs::remove_file(&staging);
            Err(e)
        }
        Ok(form) => {
            std::fs::rename(&staging, model_path).map_err(|e| TrainError::io(model_path, e))?;
            Ok(form)
        }
    }
}

/// The inference service's model config for the exported model (see the module docs).
fn model_config(
    job: &ExportJob,
    cfg: &TrainConfig,
    meta: &CheckpointMeta,
    engine: EngineKind,
    validate: &Value,
    pre: Vec<Value>,
    model_file: &str,
) -> Value {
    let roi = cfg.network_input_size;
    let mut c = Map::new();
    c.insert("model_format".into(), json!("torchscript"));
    c.insert("model_path".into(), json!(model_file));
    c.insert("type".into(), json!(engine.model_type()));
    if let Some(v) = &job.version {
        c.insert("version".into(), json!(v));
    }
    c.insert(
        "description".into(),
        json!(job.description.clone().unwrap_or_else(|| format!(
            "{} {} trained with aiaa train ({} epochs, {} steps)",
            cfg.net.name.as_str(),
            engine.model_type(),
            meta.epoch,
            meta.step
        ))),
    );
    if !job.labels.is_empty() {
        c.insert("labels".into(), json!(job.labels));
    }
    c.insert("thresh".into(), json!(job.thresh));
    c.insert(
        "input_nodes".into(),
        json!({"image": job.input_node_names.clone().unwrap_or_else(|| "NV_INPUT_IMAGE".into())}),
    );
    c.insert(
        "output_nodes".into(),
        json!({"model": job.output_node_names.clone().unwrap_or_else(|| "NV_OUTPUT_LABEL".into())}),
    );
    c.insert("batch_size".into(), json!(1));
    c.insert("input_layout".into(), json!("ijk"));
    c.insert("output_activation".into(), json!("none"));
    match engine {
        EngineKind::Dextr3dCropped => {
            let padding = job
                .padding
                .or_else(|| first_arg(&cfg.train_transforms, "transforms.CropForegroundObject", "pad"))
                .unwrap_or(20.0);
            c.insert("roi".into(), json!(roi));
            c.insert("padding".into(), json!(padding));
            if let Some(s) = first_arg(validate, adapt::EXTREME_POINTS, "sigma") {
                c.insert("sigma".into(), json!(s));
            }
        }
        EngineKind::Deepgrow => {
            c.insert("roi".into(), json!(roi));
            c.insert("mode".into(), json!("whole"));
            if let Some(i) = &cfg.interaction {
                c.insert("sigma".into(), json!(i.sigma));
                c.insert("number_intensity_ch".into(), json!(i.intensity_channels));
                c.insert("previous_mask".into(), json!(i.previous_mask));
                // Trained without clicks now and then: it also segments automatically.
                c.insert("automatic".into(), json!(i.no_click_probability > 0.0));
            }
        }
        EngineKind::Segmentation => {
            let sw = &cfg.sliding_window;
            c.insert(
                "inference".into(),
                json!({"mode": "sliding_window", "roi_size": roi, "overlap": sw.overlap[0],
                       "blend": if sw.mode == aiaa_nets::sliding_window::BlendMode::Gaussian { "gaussian" } else { "constant" },
                       "sw_batch_size": sw.sw_batch_size}),
            );
        }
    }
    c.insert("pre_transforms".into(), Value::Array(pre));
    c.insert(
        "training".into(),
        json!({
            "checkpoint": job.checkpoint.file_name().map(|n| n.to_string_lossy().into_owned()),
            "epoch": meta.epoch,
            "step": meta.step,
            "best_metric": meta.best_metric,
            "net_config": cfg.net.to_json(),
            "num_channels": cfg.num_channels,
            "num_classes": cfg.num_classes,
            "precision": if job.precision == Precision::Fp16 { "fp16" } else { "fp32" },
        }),
    );
    Value::Object(c)
}

/// Runs `pre` on a synthetic roi-sized sample the way the engine warms up (an intensity
/// image; for annotation, six points under the label key; for deepgrow, a click in the
/// middle and its other guidance channels empty) and returns the network input.
fn probe_input(
    pre: &[Value],
    roi: [i64; 3],
    engine: EngineKind,
    clicks: Option<&Interaction>,
) -> Result<Volume> {
    let dims = roi.map(|d| d as usize);
    let list = Value::Array(pre.to_vec());
    let pipeline = Pipeline::from_json(&list, 0).map_err(|e| TrainError::transform("pre_transforms", e))?;
    let points =
        (engine == EngineKind::Dextr3dCropped).then(|| (adapt::points_key(&list), engines::six_points(dims)));
    let image = engines::synthetic_input(&pipeline, dims, points).map_err(|e| match e {
        EngineError::Transform(t) => {
            TrainError::transform("the exported pre_transforms on the engine's input", t)
        }
        other => TrainError::Internal(format!("the export's probe input: {other}")),
    })?;
    let Some(i) = clicks else {
        return Ok(image);
    };
    // The engine's guidance channels after the image's: a click in the middle, none of the
    // other sign, an empty previous mask.
    let n = image.voxel_count();
    let extra = i.input_channels() - i.intensity_channels;
    let mut all = image.voxels.as_f32().into_owned();
    let click = aiaa_transforms::guidance::Clicks {
        foreground: vec![dims.map(|d| (d / 2) as f64)],
        background: Vec::new(),
    };
    all.extend(click.guidance(dims, i.sigma));
    all.resize(all.len() + (extra - 2) * n, 0.0);
    Volume::new(
        dims,
        image.channels + extra,
        image.geometry,
        aiaa_imaging::Voxels::F32(all),
    )
    .map_err(|e| TrainError::Internal(format!("the export's probe input: {e}")))
}

/// The largest difference allowed between the served (frozen) module's answer and the
/// module's as loaded: what freezing's folding and oneDNN's kernels may change.
const FROZEN_TOLERANCE: f64 = 1e-3;

/// Loads the traced module as the inference service will (frozen and optimised, warmed up on
/// the probe input), runs it on the probe input and checks its answer, and that freezing did
/// not change it. The form that will serve.
fn check_module(
    path: &Path,
    probe: &Volume,
    num_classes: i64,
    roi: [i64; 3],
    device: Device,
) -> Result<Form> {
    let x = volume_tensor(probe).f_unsqueeze(0)?;
    let served =
        aiaa_jit::prepare("export", path, device, Policy::Freeze, &[x.shallow_clone()]).map_err(jit_error)?;
    let x = x.f_to_device(device)?;
    let y = served.module.forward(&x).map_err(jit_error)?;
    let want = vec![1, num_classes, roi[0], roi[1], roi[2]];
    if y.size() != want {
        return Err(TrainError::Unsupported(format!(
            "the exported module answers {:?} for a {:?} input; expected {want:?}",
            y.size(),
            x.size()
        )));
    }
    let (lo, hi) = (y.f_min()?.double_value(&[]), y.f_max()?.double_value(&[]));
    if !(lo >= -1e-6 && hi <= 1.0 + 1e-6) {
        return Err(TrainError::Unsupported(format!(
            "the exported module's output lies in [{lo}, {hi}], not probabilities"
        )));
    }
    if served.form != Form::Plain {
        let plain = Module::load(path, device).map_err(jit_error)?;
        let reference = plain.forward(&x).map_err(jit_error)?;
        let d = max_abs_diff(&y, &reference)?;
        if d.is_nan() || d > FROZEN_TOLERANCE {
            return Err(TrainError::Unsupported(format!(
                "the exported module answers differently once frozen for serving ({}): max |difference| {d:e} > {FROZEN_TOLERANCE:e}",
                served.form
            )));
        }
    }
    Ok(served.form)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    Ok(a.f_sub(b)?.f_abs()?.f_max()?.double_value(&[]))
}

fn jit_error(e: aiaa_jit::JitError) -> TrainError {
    TrainError::Unsupported(format!(
        "the exported module as the inference service runs it: {e}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_is_the_engines_input() {
        let validate = json!([
            {"name": "transforms.LoadNifty", "fields": ["image", "label"]},
            {"name": "transforms.VolumeTo4dArray", "fields": ["image", "label"]},
            {"name": "transforms.NormalizeIntensity", "fields": "image"},
            {"name": "transforms.AddExtremePointsChannel", "image_field": "image", "label_field": "label",
             "sigma": 3, "pert": 2}
        ]);
        let pre = adapt::pre_transforms(&validate, EngineKind::Dextr3dCropped).transforms;
        let probe = probe_input(&pre, [16, 16, 8], EngineKind::Dextr3dCropped, None).unwrap();
        assert_eq!((probe.channels, probe.dims), (2, [16, 16, 8]));
    }
}
