//! The seed's engine pool file (`engine_pool.json`, seed 4.1) and per-model config (seed
//! 4.1.1), read as the seed writes them, plus the keys our engines add.
//!
//! `engine_pool.json` is a list of `{"name", "class", "module", "config_file", "labels"}`;
//! a relative `config_file` is relative to the pool file. A model config keeps the seed's
//! keys (`model_format`, `model_path`, `thresh`, `input_nodes`, `output_nodes`,
//! `batch_size`, `pre_transforms`, `post_transforms`, `writers`, `result_dir`); a relative
//! `model_path` is relative to the config file. Ours, all optional: `type`, `description`,
//! `version`, `labels`, `roi`, `padding`, `sigma`, `input_layout`, `output_activation`, and
//! the segmentation engine's `inference` and `locator` blocks (see [`crate::engines`]).
//!
//! `model_format` must be `"torchscript"`. The seed's `"trtmodel"` (a TensorFlow-TensorRT
//! graph) is refused with a message saying to export the model to TorchScript: accepting
//! the name for a file it cannot read would only move the error to the first request.
//! `input_nodes` / `output_nodes` are recorded (a TorchScript module has one input and one
//! output) so a seed config loads unchanged; `writers` are for the offline tools, not the
//! server.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::{InferenceError, Result};

/// One entry of `engine_pool.json`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    /// The model's unique name.
    pub name: String,
    /// The engine class, e.g. `Dextr3dCroppedEngine`.
    pub class: String,
    /// The seed's Python module of the engine (recorded; `class` picks the engine).
    #[serde(default)]
    pub module: Option<String>,
    /// The model config file.
    pub config_file: PathBuf,
    /// The label names.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Reads and checks `engine_pool.json`; relative config files are resolved against its
/// folder. Names must be unique.
pub fn read_pool(path: &Path) -> Result<Vec<PoolEntry>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InferenceError::Config(format!("engine pool {}: {e}", path.display())))?;
    let mut entries: Vec<PoolEntry> = serde_json::from_str(&text)
        .map_err(|e| InferenceError::Config(format!("engine pool {}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for (i, e) in entries.iter_mut().enumerate() {
        if e.name.trim().is_empty() {
            return Err(InferenceError::Config(format!(
                "engine pool {}: entry {i} has an empty \"name\"",
                path.display()
            )));
        }
        if e.config_file.is_relative() {
            e.config_file = dir.join(&e.config_file);
        }
    }
    for (i, e) in entries.iter().enumerate() {
        if entries[..i].iter().any(|o| o.name == e.name) {
            return Err(InferenceError::Config(format!(
                "engine pool {}: the name {:?} appears twice; names must be unique",
                path.display(),
                e.name
            )));
        }
    }
    Ok(entries)
}

/// A model config: the seed's keys, typed, and the whole JSON for the engine's own keys.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    /// Where the config came from (named in errors), or `"(request)"`.
    pub origin: String,
    /// The config's folder: relative paths in it start here.
    pub dir: PathBuf,
    /// The TorchScript file, resolved.
    pub model_path: PathBuf,
    /// Foreground threshold on the prediction.
    pub thresh: f64,
    /// The whole JSON object.
    pub json: Map<String, Value>,
}

impl ModelConfig {
    /// Parses a config; a relative `model_path` is resolved against `dir`.
    pub fn parse(text: &str, origin: &str, dir: &Path) -> Result<ModelConfig> {
        let bad = |msg: String| InferenceError::Config(format!("model config {origin}: {msg}"));
        let json: Map<String, Value> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        match json.get("model_format").and_then(Value::as_str) {
            Some("torchscript") | None => {}
            Some("trtmodel") => {
                return Err(bad(
                    "model_format \"trtmodel\" is a TensorFlow-TensorRT graph, which this server cannot run; export the model to TorchScript (aiaa export) and set \"model_format\": \"torchscript\"".into(),
                ));
            }
            Some(other) => {
                return Err(bad(format!(
                    "model_format {other:?} is not supported (use \"torchscript\")"
                )));
            }
        }
        let model_path = json
            .get("model_path")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("\"model_path\" (the TorchScript file) is missing".into()))?;
        let model_path = resolve(dir, model_path);
        let thresh = match json.get("thresh") {
            None => 0.5,
            Some(v) => v
                .as_f64()
                .filter(|t| (0.0..=1.0).contains(t))
                .ok_or_else(|| bad(format!("\"thresh\" must be a number in [0, 1], not {v}")))?,
        };
        Ok(ModelConfig {
            origin: origin.to_string(),
            dir: dir.to_path_buf(),
            model_path,
            thresh,
            json,
        })
    }

    /// Reads a config file.
    pub fn read(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| InferenceError::Config(format!("model config {}: {e}", path.display())))?;
        ModelConfig::parse(
            &text,
            &path.display().to_string(),
            path.parent().unwrap_or(Path::new(".")),
        )
    }

    /// An error naming this config and `key`.
    pub fn error(&self, key: &str, msg: impl std::fmt::Display) -> InferenceError {
        InferenceError::Config(format!("model config {}: \"{key}\": {msg}", self.origin))
    }

    /// Deserializes the optional key `key`.
    pub fn get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| self.error(key, e)),
        }
    }

    /// A string key.
    pub fn text(&self, key: &str) -> Option<String> {
        self.json.get(key).and_then(Value::as_str).map(str::to_string)
    }

    /// Resolves a path written in this config (relative to the config's folder).
    pub fn resolve(&self, path: &str) -> PathBuf {
        resolve(&self.dir, path)
    }
}

fn resolve(dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_relative() {
        dir.join(p)
    } else {
        p.to_path_buf()
    }
}
