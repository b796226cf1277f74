//! Checkpoints: network weights, optimizer state, epoch, step, best metric and the train config
//! in one safetensors file, written atomically (a temporary file in the same folder, synced,
//! then renamed over the target), so a crash leaves the previous checkpoint or the new one,
//! never half of one.
//!
//! File layout (readable by any safetensors reader, e.g. Python's `safetensors.torch.load_file`):
//! - `model/<variable>`: every var-store variable (batch-norm running statistics included),
//!   on the CPU, in its own kind;
//! - `optimizer/<buffer>/<variable>`: the optimizer's buffers (see [`crate::optim`]);
//! - `__aiaa_checkpoint__`: a `u8` tensor holding the UTF-8 JSON of [`CheckpointMeta`] plus the
//!   optimizer's description (`{"format": "aiaa-nets-checkpoint", "version": 1, …}`).
//!
//! [`load`] resumes: every variable and optimizer buffer must be present with its shape, and
//! the next optimizer step is then identical to the one the saved run would have taken.
//! [`load_weights`] fine-tunes: weights only, from one of our checkpoints or a plain
//! safetensors weights file (names without the `model/` prefix, e.g. `VarStore::save`'s);
//! non-strict loading skips variables the file lacks or has with another shape.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value, json};
use tch::{Device, Tensor, nn::VarStore};

use crate::error::{NetsError, Result};
use crate::optim::Optimizer;

const META_KEY: &str = "__aiaa_checkpoint__";
const FORMAT: &str = "aiaa-nets-checkpoint";
const VERSION: u64 = 1;
const MODEL: &str = "model/";
const OPTIM: &str = "optimizer/";

/// What a checkpoint records besides tensors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckpointMeta {
    /// Epochs completed.
    pub epoch: u64,
    /// Optimizer steps completed (global step).
    pub step: u64,
    /// The best validation metric so far, if any.
    pub best_metric: Option<f64>,
    /// The train config the run uses (seed chapter 6 JSON), to rebuild network and optimizer.
    pub train_config: Value,
    /// Anything else the trainer wants back on resume (e.g. its random-generator state).
    pub extra: Value,
}

fn bad(path: &Path, message: impl Into<String>) -> NetsError {
    NetsError::Checkpoint {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Writes a checkpoint of `vs` (and `optimizer`, when given) to `path`, atomically.
pub fn save(
    path: impl AsRef<Path>,
    vs: &VarStore,
    optimizer: Option<&Optimizer>,
    meta: &CheckpointMeta,
) -> Result<()> {
    let path = path.as_ref();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in vars {
        tensors.push((
            format!("{MODEL}{name}"),
            t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?,
        ));
    }
    let optimizer_meta = match optimizer {
        Some(opt) => {
            let (m, bufs) = opt.state()?;
            tensors.extend(bufs.into_iter().map(|(n, t)| (format!("{OPTIM}{n}"), t)));
            m
        }
        None => Value::Null,
    };
    let header = json!({
        "format": FORMAT,
        "version": VERSION,
        "epoch": meta.epoch,
        "step": meta.step,
        "best_metric": meta.best_metric,
        "train_config": meta.train_config,
        "extra": meta.extra,
        "optimizer": optimizer_meta,
    });
    let bytes = serde_json::to_vec(&header).map_err(|e| bad(path, format!("metadata: {e}")))?;
    tensors.push((META_KEY.to_string(), Tensor::f_from_slice(&bytes)?));
    write_atomically(path, |tmp| Tensor::write_safetensors(&tensors, tmp))?;
    tracing::debug!(path = %path.display(), epoch = meta.epoch, step = meta.step, "checkpoint saved");
    Ok(())
}

/// Runs libtorch's `write` on a temporary path next to `path` and makes it `path` whole or
/// not at all ([`aiaa_files::write_with`]).
pub(crate) fn write_atomically(
    path: &Path,
    write: impl FnOnce(&Path) -> std::result::Result<(), tch::TchError>,
) -> Result<()> {
    aiaa_files::write_with(path, |tmp| write(tmp).map_err(std::io::Error::other))
        .map_err(|e| NetsError::io(path, e))
}

/// A checkpoint file's tensors, split by prefix, and its header.
struct Contents {
    header: Option<Value>,
    model: HashMap<String, Tensor>,
    optimizer: Vec<(String, Tensor)>,
}

fn read(path: &Path) -> Result<Contents> {
    if !path.is_file() {
        return Err(NetsError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such checkpoint file"),
        ));
    }
    let all = Tensor::read_safetensors(path).map_err(|e| bad(path, format!("unreadable: {e}")))?;
    let mut header = None;
    let mut model = HashMap::new();
    let mut optimizer = Vec::new();
    let mut plain = HashMap::new();
    for (name, t) in all {
        if name == META_KEY {
            let bytes = Vec::<u8>::try_from(&t)?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(path, format!("metadata: {e}")))?;
            if v["format"] != FORMAT {
                return Err(bad(path, "metadata of an unknown format"));
            }
            if v["version"].as_u64() != Some(VERSION) {
                return Err(bad(
                    path,
                    format!("version {} (this build reads {VERSION})", v["version"]),
                ));
            }
            header = Some(v);
        } else if let Some(n) = name.strip_prefix(MODEL) {
            model.insert(n.to_string(), t);
        } else if let Some(n) = name.strip_prefix(OPTIM) {
            optimizer.push((n.to_string(), t));
        } else {
            plain.insert(name, t);
        }
    }
    if header.is_none() {
        // A plain weights file: every tensor is a variable.
        model.extend(plain);
    }
    Ok(Contents {
        header,
        model,
        optimizer,
    })
}

fn meta_of(path: &Path, header: &Value) -> Result<CheckpointMeta> {
    Ok(CheckpointMeta {
        epoch: header["epoch"].as_u64().ok_or_else(|| bad(path, "no epoch"))?,
        step: header["step"].as_u64().ok_or_else(|| bad(path, "no step"))?,
        best_metric: header["best_metric"].as_f64(),
        train_config: header["train_config"].clone(),
        extra: header["extra"].clone(),
    })
}

/// Reads only a checkpoint's metadata (to rebuild the network before loading it).
pub fn read_meta(path: impl AsRef<Path>) -> Result<CheckpointMeta> {
    let path = path.as_ref();
    let c = read(path)?;
    let header = c
        .header
        .ok_or_else(|| bad(path, "a plain weights file, not a checkpoint"))?;
    meta_of(path, &header)
}

/// Resumes from a checkpoint: loads every variable of `vs` (all must be present, same shapes)
/// and, when given, the optimizer's state (which the checkpoint must hold); returns the
/// metadata.
pub fn load(
    path: impl AsRef<Path>,
    vs: &mut VarStore,
    optimizer: Option<&mut Optimizer>,
) -> Result<CheckpointMeta> {
    let path = path.as_ref();
    let c = read(path)?;
    let header = c
        .header
        .as_ref()
        .ok_or_else(|| bad(path, "a plain weights file, not a checkpoint"))?;
    let meta = meta_of(path, header)?;
    copy_into(path, vs, &c.model, true)?;
    if let Some(opt) = optimizer {
        let state = &header["optimizer"];
        if state.is_null() {
            return Err(bad(path, "holds no optimizer state"));
        }
        opt.load_state(state, &c.optimizer)
            .map_err(|e| bad(path, e.to_string()))?;
    }
    Ok(meta)
}

/// What [`load_weights`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeightsReport {
    /// Variables loaded.
    pub loaded: Vec<String>,
    /// Variables of the network the file lacks (kept as initialised).
    pub missing: Vec<String>,
    /// Variables present with another shape (kept as initialised).
    pub mismatched: Vec<String>,
    /// Tensors of the file the network has no variable for.
    pub unused: Vec<String>,
}

/// Loads weights only (fine-tuning, `pretrain_weight_name`) from a checkpoint or a plain
/// safetensors weights file. `strict` requires every variable with its shape; otherwise
/// those missing or mismatched are reported and left alone.
pub fn load_weights(path: impl AsRef<Path>, vs: &mut VarStore, strict: bool) -> Result<WeightsReport> {
    let path = path.as_ref();
    let c = read(path)?;
    let report = copy_into(path, vs, &c.model, strict)?;
    if !report.missing.is_empty() || !report.mismatched.is_empty() {
        tracing::warn!(
            path = %path.display(),
            missing = ?report.missing,
            mismatched = ?report.mismatched,
            "weights file covers only part of the network; the rest keeps its initialisation"
        );
    }
    Ok(report)
}

fn copy_into(
    path: &Path,
    vs: &mut VarStore,
    src: &HashMap<String, Tensor>,
    strict: bool,
) -> Result<WeightsReport> {
    let vars = vs.variables();
    let mut report = WeightsReport::default();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in &names {
        match src.get(name.as_str()) {
            None => report.missing.push(name.to_string()),
            Some(t) if t.size() != vars[name.as_str()].size() => report.mismatched.push(name.to_string()),
            Some(_) => report.loaded.push(name.to_string()),
        }
    }
    report.unused = src
        .keys()
        .filter(|k| !vars.contains_key(k.as_str()))
        .cloned()
        .collect();
    report.unused.sort();
    if strict && (!report.missing.is_empty() || !report.mismatched.is_empty()) {
        let mut msg = String::from("does not fit the network:");
        if !report.missing.is_empty() {
            msg += &format!(" missing {}", report.missing.join(", "));
        }
        for n in &report.mismatched {
            msg += &format!(
                " {n} is {:?}, expected {:?};",
                src[n.as_str()].size(),
                vars[n.as_str()].size()
            );
        }
        return Err(bad(path, msg));
    }
    tch::no_grad(|| -> Result<()> {
        for name in &report.loaded {
            let mut dst = vars[name.as_str()].shallow_clone();
            dst.f_copy_(&src[name.as_str()])?;
        }
        Ok(())
    })?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_round_trip_and_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.ckpt");
        let vs = VarStore::new(Device::Cpu);
        let _a = vs.root().randn("a", &[2, 3], 0.0, 1.0);
        let _b = vs.root().zeros_no_train("b", &[4]);
        let meta = CheckpointMeta {
            epoch: 3,
            step: 42,
            best_metric: Some(0.5),
            train_config: json!({"num_classes": 2}),
            extra: json!({"rng": [1, 2]}),
        };
        save(&path, &vs, None, &meta).unwrap();
        assert_eq!(read_meta(&path).unwrap(), meta);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut other = VarStore::new(Device::Cpu);
        let a2 = other.root().zeros("a", &[2, 3]);
        let _c = other.root().zeros("c", &[5]);
        let _b2 = other.root().zeros_no_train("b", &[5]);
        assert!(matches!(
            load(&path, &mut other, None),
            Err(NetsError::Checkpoint { .. })
        ));
        let report = load_weights(&path, &mut other, false).unwrap();
        assert_eq!(report.loaded, vec!["a".to_string()]);
        assert_eq!(report.missing, vec!["c".to_string()]);
        assert_eq!(report.mismatched, vec!["b".to_string()]);
        assert!(report.unused.is_empty());
        let a = &vs.variables()["a"];
        assert!(a2.equal(a));
        assert!(a2.requires_grad(), "loading keeps variables trainable");

        // A plain weights file (VarStore::save) loads too.
        let plain = dir.path().join("plain.safetensors");
        vs.save(&plain).unwrap();
        let mut third = VarStore::new(Device::Cpu);
        let a3 = third.root().zeros("a", &[2, 3]);
        let _ = third.root().zeros_no_train("b", &[4]);
        load_weights(&plain, &mut third, true).unwrap();
        assert!(a3.equal(a));
        assert!(matches!(read_meta(&plain), Err(NetsError::Checkpoint { .. })));
        assert!(matches!(
            read_meta(dir.path().join("none")),
            Err(NetsError::Io { .. })
        ));
    }
}
