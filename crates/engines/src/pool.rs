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

use crate::error::{EngineError, Result};

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
        .map_err(|e| EngineError::Config(format!("engine pool {}: {e}", path.display())))?;
    let mut entries: Vec<PoolEntry> = serde_json::from_str(&text)
        .map_err(|e| EngineError::Config(format!("engine pool {}: {e}", path.display())))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    for (i, e) in entries.iter_mut().enumerate() {
        if e.name.trim().is_empty() {
            return Err(EngineError::Config(format!(
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
            return Err(EngineError::Config(format!(
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
    /// The folders its files must lie in (a config that came through the API), or `None`
    /// (the operator's own engine pool: trusted).
    pub roots: Option<Vec<PathBuf>>,
}

impl ModelConfig {
    /// Parses a trusted config (the engine pool's, a tool's); a relative `model_path` is
    /// resolved against `dir`.
    pub fn parse(text: &str, origin: &str, dir: &Path) -> Result<ModelConfig> {
        Self::parse_with(text, origin, dir, None)
    }

    /// Parses a config that came through the API: a relative `model_path` is resolved
    /// against `base`, and it and every other path in the config (a locator's, resolved
    /// against the model file's folder) must lie inside one of `roots` ([`confine`]).
    pub fn parse_confined(text: &str, origin: &str, base: &Path, roots: &[PathBuf]) -> Result<ModelConfig> {
        Self::parse_with(text, origin, base, Some(roots))
    }

    fn parse_with(text: &str, origin: &str, dir: &Path, roots: Option<&[PathBuf]>) -> Result<ModelConfig> {
        let bad = |msg: String| EngineError::Config(format!("model config {origin}: {msg}"));
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
        let written = model_path;
        let model_path = resolve(dir, written);
        let (model_path, dir) = match roots {
            None => (model_path, dir.to_path_buf()),
            Some(roots) => {
                let path = confine(&model_path, written, roots, "model_path")?;
                let folder = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (path, folder)
            }
        };
        let thresh = match json.get("thresh") {
            None => 0.5,
            Some(v) => v
                .as_f64()
                .filter(|t| (0.0..=1.0).contains(t))
                .ok_or_else(|| bad(format!("\"thresh\" must be a number in [0, 1], not {v}")))?,
        };
        Ok(ModelConfig {
            origin: origin.to_string(),
            dir,
            model_path,
            thresh,
            json,
            roots: roots.map(<[PathBuf]>::to_vec),
        })
    }

    /// Reads a config file.
    pub fn read(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| EngineError::Config(format!("model config {}: {e}", path.display())))?;
        ModelConfig::parse(
            &text,
            &path.display().to_string(),
            path.parent().unwrap_or(Path::new(".")),
        )
    }

    /// An error naming this config and `key`.
    pub fn error(&self, key: &str, msg: impl std::fmt::Display) -> EngineError {
        EngineError::Config(format!("model config {}: \"{key}\": {msg}", self.origin))
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

    /// Resolves a path written in this config under `key` (relative to the config's
    /// folder), confined to its roots when it has some.
    pub fn resolve(&self, key: &str, path: &str) -> Result<PathBuf> {
        let p = resolve(&self.dir, path);
        match &self.roots {
            None => Ok(p),
            Some(roots) => confine(&p, path, roots, key),
        }
    }
}

/// `path` as lexically normalised: absolute (from the working folder), `.` dropped, `..`
/// taking its parent away.
fn normalise(path: &Path) -> PathBuf {
    use std::path::Component;
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// `path` (its real location) when it lies inside one of `roots`, else an error naming
/// `key` and the flag. Checked twice: on the path as written (`..` resolved), then on the
/// real path (symbolic links followed) once it is known to exist, so a link cannot lead
/// out; a path outside is refused before the file system is asked about it, so the answer
/// never tells whether it exists. Errors show the path as the caller wrote it (`shown`),
/// never the server's folders.
pub fn confine(path: &Path, shown: &str, roots: &[PathBuf], key: &str) -> Result<PathBuf> {
    let outside = || {
        EngineError::Invalid(format!(
            "{key} {shown:?} is outside the folders models are loaded from (--inference-model-roots, AIAA_INFERENCE_MODEL_ROOTS)"
        ))
    };
    let written = normalise(path);
    if !roots.iter().any(|r| written.starts_with(normalise(r))) {
        return Err(outside());
    }
    let real = written
        .canonicalize()
        .map_err(|_| EngineError::Invalid(format!("{key} {shown:?}: no such file in the model folders")))?;
    if !roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|r| real.starts_with(r))
    {
        return Err(outside());
    }
    if !real.is_file() {
        return Err(EngineError::Invalid(format!("{key} {shown:?} is not a file")));
    }
    Ok(real)
}

fn resolve(dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_relative() {
        dir.join(p)
    } else {
        p.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A models folder with one file, and a secret file beside it.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models");
        std::fs::create_dir_all(models.join("m")).unwrap();
        std::fs::write(models.join("m/model.pt"), b"x").unwrap();
        std::fs::write(models.join("m/bbox.pt"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.pt"), b"x").unwrap();
        (dir, models)
    }

    #[test]
    fn api_configs_stay_inside_the_model_roots() {
        let (dir, models) = setup();
        let roots = vec![models.clone()];
        let parse = |json: &str| ModelConfig::parse_confined(json, "(test)", &models, &roots);
        // Relative to the first root; other paths relative to the model's own folder.
        let c = parse(r#"{"model_path": "m/model.pt"}"#).unwrap();
        assert_eq!(c.model_path, models.join("m/model.pt").canonicalize().unwrap());
        assert_eq!(
            c.resolve("locator.model_path", "bbox.pt").unwrap(),
            models.join("m/bbox.pt").canonicalize().unwrap()
        );
        let secret = dir.path().join("secret.pt");
        let outside = [
            format!(r#"{{"model_path": "{}"}}"#, secret.display()),
            r#"{"model_path": "../secret.pt"}"#.to_string(),
            r#"{"model_path": "m/../../secret.pt"}"#.to_string(),
            r#"{"model_path": "/etc/passwd"}"#.to_string(),
        ];
        for json in &outside {
            let e = parse(json).unwrap_err();
            assert!(matches!(e, EngineError::Invalid(_)), "{json}: {e}");
            assert!(e.to_string().contains("--inference-model-roots"), "{json}: {e}");
        }
        // A locator path out, absolute or relative.
        for p in ["../../secret.pt", "/etc/passwd"] {
            let e = c.resolve("locator.model_path", p).unwrap_err().to_string();
            assert!(
                e.contains("locator.model_path") && e.contains("--inference-model-roots"),
                "{e}"
            );
        }
        // A symbolic link inside that leads out is refused too.
        std::os::unix::fs::symlink(&secret, models.join("m/link.pt")).unwrap();
        let e = parse(r#"{"model_path": "m/link.pt"}"#).unwrap_err().to_string();
        assert!(e.contains("--inference-model-roots"), "{e}");
        // Missing inside the roots: said so (the roots are the admin's own folders).
        let e = parse(r#"{"model_path": "m/none.pt"}"#).unwrap_err().to_string();
        assert!(e.contains("no such file"), "{e}");
        // A folder is not a model file.
        let e = parse(r#"{"model_path": "m"}"#).unwrap_err().to_string();
        assert!(e.contains("not a file"), "{e}");
        // The operator's own configs are trusted as before.
        let trusted = ModelConfig::parse(r#"{"model_path": "../secret.pt"}"#, "(pool)", &models).unwrap();
        assert_eq!(trusted.model_path, models.join("../secret.pt"));
    }
}
