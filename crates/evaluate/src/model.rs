//! The model: `--model_save_path` and `--config` turned into an engine of [`aiaa_engines`],
//! the inference service's own, so `aiaa infer` predicts exactly what the annotation server
//! returns.
//!
//! * `--config` is a model config in the format the inference service reads (seed 4.1.1 plus
//!   the engines' keys, `crates/engines/src/pool.rs`), or the seed's inference /
//!   evaluation config (seed 8.1, 9.1), which is the same format with loaders and writers.
//! * `--model_save_path` is the TorchScript file to run, or a folder holding `model.pt`
//!   (else its only `.pt` / `.ts` file). When given it replaces the config's `model_path`
//!   (the command line names the model being evaluated, as `tlt-evaluate` does); when
//!   absent the config's `model_path` is used, and a config without one is an error naming
//!   both. A relative `model_path` in the config is relative to the config's folder.
//! * `--model_format` replaces the config's `model_format`; `"trtmodel"` is refused by the
//!   config reader with the message saying to export to TorchScript.
//!
//! The seed's offline configs (a training config's validation list copied into an
//! evaluation config, the seed's own 4.1.1 model config) are adapted as the engines adapt
//! them (`aiaa_engines::adapt`: loaders, label-driven crops dropped, the label field taken
//! out of the other transforms' keys, since the engine holds the clicks or nothing there),
//! each change logged and listed in the summary's `notes`; for an annotation model the
//! dropped `CropForegroundObject`'s `size` is the engine's `roi` when the config sets none.
//!
//! The engine class: `--engine` when given, else the config's `engine`, else by its `type`
//! ([`EngineKind::for_type`]: `annotation`: `Dextr3dCroppedEngine`, `deepgrow` / `deepedit`:
//! `DeepgrowEngine`, else `SegmentationEngine`), else
//! `Dextr3dCroppedEngine` when `pre_transforms` add an extreme-points channel (the seed's
//! annotation configs have no `type`), else `SegmentationEngine`. The class is written into
//! the adapted config as `engine`, so that config loads as the same engine on the server.

use std::path::{Path, PathBuf};

use aiaa_engines::adapt;
use aiaa_engines::device::Devices;
use aiaa_engines::engines::{self, Engine, EngineSpec};
use aiaa_engines::pool::ModelConfig;
use aiaa_engines::{EngineError, EngineKind};
use serde_json::{Map, Value, json};

use crate::error::{EvaluateError, Result};

/// What the model needs from each case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// DEXTR 3D: needs six or more extreme points, simulated from the label.
    Annotation,
    /// Whole-volume segmentation: needs the image only.
    Segmentation,
    /// Click models (deepgrow): foreground and background clicks refining the last mask;
    /// without clicks, their automatic answer.
    Interactive,
}

/// Where the model comes from.
#[derive(Clone, Debug, Default)]
pub struct ModelSource {
    /// `--model_save_path`: a TorchScript file or a folder holding one.
    pub model: Option<PathBuf>,
    /// `--config`: the model (engine) config.
    pub config: PathBuf,
    /// `--model_format`: replaces the config's.
    pub model_format: Option<String>,
    /// `--engine`: the engine class, else chosen from the config.
    pub engine: Option<String>,
}

/// The config after the adaptations of the module docs.
#[derive(Debug)]
pub struct Prepared {
    /// The model name (the config's folder, or its file stem when that is not `config`).
    pub name: String,
    /// The engine class.
    pub class: String,
    /// The model config as the engine gets it.
    pub config: ModelConfig,
    /// The adaptations made, one line each.
    pub notes: Vec<String>,
}

/// A loaded engine and what the writers and metrics need to know about it.
pub struct Model {
    /// The model's name.
    pub name: String,
    /// The engine class.
    pub class: String,
    /// Annotation or segmentation.
    pub kind: ModelKind,
    /// Label names (the config's `labels`); class `i + 1` is `labels[i]`.
    pub labels: Vec<String>,
    /// Sigma (voxels) of the extreme-points heat-map written as `extreme_points`.
    pub sigma: f64,
    /// The config's whole JSON (writers and channel names are read from it).
    pub json: Map<String, Value>,
    /// The TorchScript file run.
    pub model_path: PathBuf,
    /// Config adaptations.
    pub notes: Vec<String>,
    /// The engine.
    pub engine: Box<dyn Engine>,
    /// The devices it runs on.
    pub devices: Devices,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("name", &self.name)
            .field("class", &self.class)
            .field("kind", &self.kind)
            .field("model_path", &self.model_path)
            .finish()
    }
}

/// The TorchScript file `--model_save_path` names (a file, or a folder holding `model.pt`
/// or exactly one `.pt` / `.ts` file).
pub fn model_file(path: &Path) -> Result<PathBuf> {
    let flag = |reason: String| EvaluateError::Option {
        flag: "--model_save_path",
        reason,
    };
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(flag(format!("{} does not exist", path.display())));
    }
    let preferred = path.join("model.pt");
    if preferred.is_file() {
        return Ok(preferred);
    }
    let entries = std::fs::read_dir(path).map_err(|e| flag(format!("{}: {e}", path.display())))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("pt" | "ts")))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(flag(format!(
            "the folder {} holds no model.pt (nor any .pt / .ts file)",
            path.display()
        ))),
        _ => Err(flag(format!(
            "the folder {} holds several TorchScript files ({}); name the file",
            path.display(),
            found
                .iter()
                .map(|p| p.file_name().unwrap_or_default().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Reads and adapts the config (see the module docs); loads nothing.
pub fn prepare(src: &ModelSource) -> Result<Prepared> {
    let path = &src.config;
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| EvaluateError::Option {
        flag: "--config",
        reason: format!("{origin}: {e}"),
    })?;
    let mut json: Map<String, Value> = serde_json::from_str(&text)
        .map_err(|e| EvaluateError::Model(format!("model config {origin}: not a JSON object: {e}")))?;
    let mut notes = Vec::new();

    if let Some(m) = &src.model {
        let file = std::path::absolute(model_file(m)?).map_err(|e| EvaluateError::Option {
            flag: "--model_save_path",
            reason: format!("{}: {e}", m.display()),
        })?;
        if let Some(old) = json.get("model_path").and_then(Value::as_str) {
            notes.push(format!(
                "--model_save_path {} replaces the config's model_path {old:?}",
                file.display()
            ));
        }
        json.insert("model_path".into(), json!(file));
    } else if !json.contains_key("model_path") {
        return Err(EvaluateError::Model(format!(
            "model config {origin}: \"model_path\" is missing and no --model_save_path was given; name the TorchScript file with either"
        )));
    }
    if let Some(f) = &src.model_format {
        json.insert("model_format".into(), json!(f));
    }

    let class = match (&src.engine, json.get("engine").and_then(Value::as_str)) {
        (Some(c), _) => c.clone(),
        (None, Some(c)) => c.to_string(),
        (None, None) => match json.get("type").and_then(Value::as_str) {
            Some(t) => EngineKind::for_type(t)
                .map_err(|e| {
                    EvaluateError::Engine(EngineError::Config(format!("model config {origin}: {e}")))
                })?
                .class()
                .to_string(),
            None if json
                .get("pre_transforms")
                .and_then(|l| adapt::find(l, adapt::EXTREME_POINTS))
                .is_some() =>
            {
                EngineKind::Dextr3dCropped.class().to_string()
            }
            None => EngineKind::Segmentation.class().to_string(),
        },
    };
    let kind = EngineKind::require_class(&class)
        .map_err(|e| EvaluateError::Engine(EngineError::Config(format!("model config {origin}: {e}"))))?;

    // The seed's offline pre_transforms, as the engine runs them.
    let crop_size = json.get("pre_transforms").and_then(adapt::crop_roi);
    let adapted = json
        .get("pre_transforms")
        .filter(|l| l.is_array())
        .map(|l| adapt::pre_transforms(l, kind));
    if let Some(adapted) = adapted {
        notes.extend(adapted.notes);
        json.insert("pre_transforms".into(), Value::Array(adapted.transforms));
    }
    // Recorded: the engine would take it from the crop, which the adapted list no longer has.
    if let Some(size) = crop_size.filter(|_| kind == EngineKind::Dextr3dCropped && !json.contains_key("roi"))
    {
        notes.push(format!("roi set to CropForegroundObject's size {size:?}"));
        json.insert("roi".into(), json!(size));
    }
    // Recorded, so the adapted config loads as the same engine on the server too.
    json.insert("engine".into(), json!(class));
    let name = match path.file_stem().and_then(|s| s.to_str()) {
        Some("config") | None => path
            .canonicalize()
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "model".into()),
        Some(stem) => stem.to_string(),
    };
    let text = serde_json::to_string(&json).map_err(|e| EvaluateError::Model(format!("{origin}: {e}")))?;
    let config = ModelConfig::parse(&text, &origin, path.parent().unwrap_or(Path::new(".")))?;
    for n in &notes {
        tracing::info!(config = %origin, "{n}");
    }
    Ok(Prepared {
        name,
        class,
        config,
        notes,
    })
}

/// What an engine class takes: extreme points, clicks, or the image alone.
pub fn kind_of(class: &str) -> ModelKind {
    match EngineKind::from_class(class) {
        Some(k) if k.needs_points() => ModelKind::Annotation,
        Some(EngineKind::Deepgrow) => ModelKind::Interactive,
        _ => ModelKind::Segmentation,
    }
}

impl Model {
    /// Prepares the config and builds the engine on `devices` (loading the networks).
    pub fn load(src: &ModelSource, devices: &Devices) -> Result<Model> {
        let p = prepare(src)?;
        let labels: Vec<String> = p.config.get("labels")?.unwrap_or_default();
        let sigma = p
            .config
            .json
            .get("pre_transforms")
            .and_then(|l| adapt::find(l, adapt::EXTREME_POINTS))
            .and_then(|t| t.get("sigma"))
            .and_then(Value::as_f64)
            .or(p.config.get::<f64>("sigma")?)
            .unwrap_or(3.0);
        let version = p.config.text("version").unwrap_or_else(|| "1".into());
        let engine = engines::build(
            &EngineSpec {
                name: p.name.clone(),
                class: p.class.clone(),
                labels: labels.clone(),
                version,
                config: p.config.clone(),
            },
            devices,
        )?;
        Ok(Model {
            name: p.name,
            kind: kind_of(&p.class),
            class: p.class,
            labels,
            sigma,
            json: p.config.json.clone(),
            model_path: p.config.model_path.clone(),
            notes: p.notes,
            engine,
            devices: devices.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p
    }

    #[test]
    fn the_seeds_eval_config_becomes_an_annotation_engine_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("net.pt"), b"x").unwrap();
        let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/configs/config_eval_aiaa_Task09_Spleen.json");
        let p = prepare(&ModelSource {
            model: Some(dir.path().to_path_buf()),
            config: seed,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.class, "Dextr3dCroppedEngine");
        assert_eq!(p.config.model_path, dir.path().join("net.pt"));
        let names: Vec<&str> = p.config.json["pre_transforms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "transforms.ScaleIntensityRange",
                "transforms.AddExtremePointsChannel"
            ]
        );
        assert_eq!(p.config.json["roi"], json!([128, 128, 128]));
        assert_eq!(p.notes.len(), 3, "{:?}", p.notes);
        assert_eq!(p.name, "config_eval_aiaa_Task09_Spleen");
    }

    #[test]
    fn model_path_class_and_format_rules() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("a.pt"), b"x").unwrap();
        // No model_path and no --model_save_path.
        let c = write(d, "c.json", &json!({"type": "segmentation"}));
        let e = prepare(&ModelSource {
            config: c.clone(),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("c.json") && e.contains("model_path") && e.contains("--model_save_path"),
            "{e}"
        );
        // The config's relative model_path is kept (relative to the config) when no flag.
        let c = write(
            d,
            "seg.json",
            &json!({"model_path": "a.pt", "type": "segmentation"}),
        );
        let p = prepare(&ModelSource {
            config: c.clone(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.config.model_path, d.join("a.pt"));
        assert_eq!(p.class, "SegmentationEngine");
        assert!(p.notes.is_empty());
        // The flag replaces it, and says so; --engine wins over the type.
        let p = prepare(&ModelSource {
            model: Some(d.join("a.pt")),
            config: c.clone(),
            engine: Some("Dextr3dCroppedEngine".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.class, "Dextr3dCroppedEngine");
        assert!(p.notes[0].contains("replaces"), "{:?}", p.notes);
        // A deepgrow config gets the deepgrow engine, not a segmenter.
        let dg = write(d, "dg.json", &json!({"model_path": "a.pt", "type": "deepgrow"}));
        let p = prepare(&ModelSource {
            config: dg,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(p.class, "DeepgrowEngine");
        assert_eq!(kind_of(&p.class), ModelKind::Interactive);
        // trtmodel is refused with the reader's message.
        let e = prepare(&ModelSource {
            config: c.clone(),
            model_format: Some("trtmodel".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("TorchScript"), "{e}");
        // A folder with several models must be named precisely; a missing path says so.
        std::fs::write(d.join("b.ts"), b"x").unwrap();
        let e = model_file(d).unwrap_err().to_string();
        assert!(e.contains("several") && e.contains("a.pt, b.ts"), "{e}");
        let e = model_file(&d.join("nope")).unwrap_err().to_string();
        assert!(
            e.starts_with("--model_save_path") && e.contains("does not exist"),
            "{e}"
        );
        std::fs::write(d.join("model.pt"), b"x").unwrap();
        assert_eq!(model_file(d).unwrap(), d.join("model.pt"));
    }
}
