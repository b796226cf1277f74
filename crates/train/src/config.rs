//! The train config (seed chapter 6.1), read strictly: every key is known or an error naming
//! it, every object is parsed by the crate that owns it, every transform is built, all before
//! any data is touched.
//!
//! Seed keys (top level): `num_channels`, `num_classes`, `batch_size`, `epochs`,
//! `num_workers`, `multi_gpu`, `network_input_size`, `num_training_epoch_per_valid`,
//! `use_scanning_window`, `net_config` ([`aiaa_nets::NetConfig`]), `train` (`loss`,
//! `optimizer`, `lr_policy`, `pre_transforms`) and `validate` (`metrics`, `pre_transforms`).
//!
//! Ours (all optional):
//! - `seed` (default 0): seeds the network's initialisation, the order of the training items
//!   in each epoch and every random transform (per sample, see [`aiaa_transforms::rng`]), so a
//!   run is reproducible and a resumed run continues the same sequence.
//! - `cache_data` (default: automatic): keep every decoded datalist file in memory (decoded
//!   once, shared by all samples that name it) instead of decoding it for every sample.
//!   Automatic means: cache when the decoded files take at most
//!   [`AUTO_CACHE_LIMIT_BYTES`].
//! - `checkpoint_interval_s` (default 60): the last checkpoint is written at the end of an
//!   epoch when this many seconds have passed since the previous one (0: after every
//!   epoch); it is also written after every validation, when training stops (Ctrl-C) and
//!   at the end.
//! - `validate.sliding_window`: `{"overlap": 0.25, "mode": "constant" | "gaussian",
//!   "sw_batch_size": 1}`, the sliding-window settings when `use_scanning_window` is true
//!   (defaults as MONAI's).
//! - `interaction`: `{"max_rounds", "no_click_probability", "sigma", "number_intensity_ch",
//!   "previous_mask", "damaged_mask_probability", "max_damage", "truncate_probability",
//!   "shift_probability", "max_shift", "shift_radius"}`,
//!   simulated clicks for an interactive model ([`crate::interaction`]); `num_channels` must
//!   be `number_intensity_ch + 2` (`+ 3` with `previous_mask`).
//!
//! Defaults of the seed's optional keys: `batch_size` 1, `num_workers` 2, `multi_gpu`
//! false, `num_training_epoch_per_valid` 1, `use_scanning_window` false, no `lr_policy`
//! (constant rate). `num_channels`, `num_classes`, `epochs`, `network_input_size`,
//! `net_config`, `train.loss`, `train.optimizer` and `train.pre_transforms` are required;
//! `validate` is needed only when the datalist has a `validation` list.
//!
//! The samples' keys are the seed's: the network input is the image under `image` (its
//! channels, after the transforms, must number `num_channels`), the target the label under
//! `label`.

use std::path::{Path, PathBuf};

use aiaa_nets::losses::Loss;
use aiaa_nets::lr_policy::LrPolicy;
use aiaa_nets::metric::MetricConfig;
use aiaa_nets::optim::OptimizerConfig;
use aiaa_nets::sliding_window::{BlendMode, SlidingWindow};
use aiaa_nets::{NetConfig, NetsError};
use aiaa_transforms::Pipeline;
use serde_json::{Map, Value};

use crate::error::{Result, TrainError};

/// `cache_data` left automatic caches the decoded datalist files when they need at most this
/// much memory.
pub const AUTO_CACHE_LIMIT_BYTES: u64 = 2 << 30;

/// Top-level keys, seed's and ours.
const TOP_KEYS: &[&str] = &[
    "num_channels",
    "num_classes",
    "batch_size",
    "epochs",
    "num_workers",
    "multi_gpu",
    "network_input_size",
    "num_training_epoch_per_valid",
    "use_scanning_window",
    "net_config",
    "train",
    "validate",
    "seed",
    "cache_data",
    "checkpoint_interval_s",
    "interaction",
];
const TRAIN_KEYS: &[&str] = &["loss", "optimizer", "lr_policy", "pre_transforms"];
const VALIDATE_KEYS: &[&str] = &["metrics", "pre_transforms", "sliding_window"];
const WINDOW_KEYS: &[&str] = &["overlap", "mode", "sw_batch_size"];

/// A parsed train config; see the module docs for each key.
#[derive(Debug)]
pub struct TrainConfig {
    /// The file it was read from (named in errors).
    pub file: PathBuf,
    /// The whole JSON as read (recorded in checkpoints and exports).
    pub json: Value,
    /// `num_channels`.
    pub num_channels: i64,
    /// `num_classes`.
    pub num_classes: i64,
    /// `batch_size`.
    pub batch_size: usize,
    /// `epochs` (total, counted from the start of training, also when resuming).
    pub epochs: u64,
    /// `num_workers`: data-loading threads.
    pub num_workers: usize,
    /// `multi_gpu`.
    pub multi_gpu: bool,
    /// `network_input_size` (i, j, k).
    pub network_input_size: [i64; 3],
    /// `num_training_epoch_per_valid`.
    pub num_training_epoch_per_valid: u64,
    /// `use_scanning_window`.
    pub use_scanning_window: bool,
    /// `net_config`.
    pub net: NetConfig,
    /// `train.loss`.
    pub loss: Loss,
    /// `train.optimizer`.
    pub optimizer: OptimizerConfig,
    /// `train.lr_policy`.
    pub lr_policy: LrPolicy,
    /// `train.pre_transforms`, as JSON (built with [`TrainConfig::train_pipeline`]).
    pub train_transforms: Value,
    /// `validate.pre_transforms`, as JSON (empty when there is no `validate`).
    pub validate_transforms: Value,
    /// `validate.metrics` (at least one when `validate` is present).
    pub metrics: Vec<MetricConfig>,
    /// `validate.sliding_window` (ours) with `roi_size` = `network_input_size`.
    pub sliding_window: SlidingWindow,
    /// `seed` (ours).
    pub seed: u64,
    /// `cache_data` (ours); `None` is automatic.
    pub cache_data: Option<bool>,
    /// `checkpoint_interval_s` (ours).
    pub checkpoint_interval_s: f64,
    /// `interaction` (ours): simulated clicks for interactive (deepgrow) models.
    pub interaction: Option<crate::interaction::Interaction>,
}

/// The `interaction` section (ours), checked against `num_channels`.
fn interaction(top: &Obj, num_channels: i64) -> Result<Option<crate::interaction::Interaction>> {
    let Some(v) = top.get("interaction") else {
        return Ok(None);
    };
    let i: crate::interaction::Interaction =
        serde_json::from_value(v.clone()).map_err(|e| top.error("interaction", e.to_string()))?;
    if !(0.0..=1.0).contains(&i.no_click_probability) {
        return Err(top.error("interaction", "no_click_probability must lie in [0, 1]"));
    }
    if !(i.sigma.is_finite() && i.sigma > 0.0) {
        return Err(top.error("interaction", "sigma must be > 0"));
    }
    if !(0.0..=1.0).contains(&i.damaged_mask_probability) {
        return Err(top.error("interaction", "damaged_mask_probability must lie in [0, 1]"));
    }
    if !(0.0..=1.0).contains(&i.truncate_probability) {
        return Err(top.error("interaction", "truncate_probability must lie in [0, 1]"));
    }
    if !(0.0..=1.0).contains(&i.shift_probability) {
        return Err(top.error("interaction", "shift_probability must lie in [0, 1]"));
    }
    if !(i.max_shift.is_finite() && i.max_shift >= 0.5) {
        return Err(top.error("interaction", "max_shift must be >= 0.5 (voxels)"));
    }
    if !(i.shift_radius.is_finite() && i.shift_radius >= 0.0) {
        return Err(top.error("interaction", "shift_radius must be >= 0 (voxels; 0: everywhere)"));
    }
    if i.damaged_mask_probability > 0.0 && !i.previous_mask {
        return Err(top.error(
            "interaction",
            "damaged_mask_probability needs previous_mask: true (the damaged mask is shown in that channel)",
        ));
    }
    if i.intensity_channels == 0 || i.input_channels() as i64 != num_channels {
        return Err(top.error(
            "interaction",
            format!(
                "num_channels ({num_channels}) must be number_intensity_ch ({}) + 2 guidance channels{}",
                i.intensity_channels,
                if i.previous_mask {
                    " + 1 previous-mask channel"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(Some(i))
}

/// Strict reader of one JSON object of the config, naming keys as paths.
struct Obj<'a> {
    file: &'a Path,
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(file: &'a Path, path: &str, value: &'a Value, allowed: &[&str]) -> Result<Self> {
        let map = value.as_object().ok_or_else(|| TrainError::Config {
            file: file.to_path_buf(),
            key: if path.is_empty() {
                "(top level)".into()
            } else {
                path.into()
            },
            message: format!("expected a JSON object, got {}", short(value)),
        })?;
        let obj = Obj {
            file,
            path: path.to_string(),
            map,
        };
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(obj.error(k, format!("unknown key (known here: {})", allowed.join(", "))));
        }
        Ok(obj)
    }

    fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn error(&self, key: &str, message: impl Into<String>) -> TrainError {
        TrainError::Config {
            file: self.file.to_path_buf(),
            key: self.key(key),
            message: message.into(),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn req(&self, key: &str) -> Result<&'a Value> {
        self.get(key)
            .ok_or_else(|| self.error(key, "required key is missing"))
    }

    fn uint(&self, key: &str, min: u64) -> Result<Option<u64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n >= min => Ok(Some(n)),
                _ => Err(self.error(key, format!("expected an integer >= {min}, got {}", short(v)))),
            },
        }
    }

    fn req_uint(&self, key: &str, min: u64) -> Result<u64> {
        self.uint(key, min)?
            .ok_or_else(|| self.error(key, "required key is missing"))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.error(key, format!("expected true or false, got {}", short(v)))),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .map(Some)
                .ok_or_else(|| self.error(key, format!("expected a number, got {}", short(v)))),
        }
    }

    /// Maps an `aiaa-nets` config error of the object at `key` onto a config error whose key
    /// path ends with the offending key.
    fn nets(&self, key: &str, e: NetsError) -> TrainError {
        match e {
            NetsError::Config {
                key: inner, message, ..
            } => {
                let path = if inner.is_empty() {
                    key.to_string()
                } else {
                    format!("{key}.{inner}")
                };
                self.error(&path, message)
            }
            other => self.error(key, other.to_string()),
        }
    }
}

/// A value shortened for an error message.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)])
    } else {
        s
    }
}

impl TrainConfig {
    /// The channels the transforms must give: `num_channels`, less the two guidance
    /// channels the click simulation adds for an interactive model.
    pub fn image_channels(&self) -> i64 {
        self.interaction
            .map_or(self.num_channels, |i| i.intensity_channels as i64)
    }

    /// Reads and checks the config file at `path`.
    pub fn read(path: &Path) -> Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| TrainError::Config {
            file: path.to_path_buf(),
            key: "(file)".into(),
            message: format!("not valid JSON: {e}"),
        })?;
        TrainConfig::from_json(json, path)
    }

    /// Checks a config given as JSON; `file` is named in errors.
    pub fn from_json(json: Value, file: &Path) -> Result<TrainConfig> {
        let top = Obj::new(file, "", &json, TOP_KEYS)?;
        let num_channels = top.req_uint("num_channels", 1)? as i64;
        let num_classes = top.req_uint("num_classes", 1)? as i64;
        let batch_size = top.uint("batch_size", 1)?.unwrap_or(1) as usize;
        let epochs = top.req_uint("epochs", 1)?;
        let num_workers = top.uint("num_workers", 1)?.unwrap_or(2) as usize;
        let multi_gpu = top.bool("multi_gpu")?.unwrap_or(false);
        let network_input_size = match top.req("network_input_size")? {
            Value::Array(a) if a.len() == 3 && a.iter().all(|x| x.as_u64().is_some_and(|n| n > 0)) => {
                std::array::from_fn(|i| a[i].as_u64().unwrap_or(1) as i64)
            }
            v => {
                return Err(top.error(
                    "network_input_size",
                    format!("expected three sizes > 0, got {}", short(v)),
                ));
            }
        };
        let num_training_epoch_per_valid = top.uint("num_training_epoch_per_valid", 1)?.unwrap_or(1);
        let use_scanning_window = top.bool("use_scanning_window")?.unwrap_or(false);
        let seed = top.uint("seed", 0)?.unwrap_or(0);
        let cache_data = top.bool("cache_data")?;
        let checkpoint_interval_s = top.float("checkpoint_interval_s")?.unwrap_or(60.0);
        if checkpoint_interval_s < 0.0 {
            return Err(top.error("checkpoint_interval_s", "must be >= 0"));
        }

        let net = NetConfig::from_json(top.req("net_config")?).map_err(|e| top.nets("net_config", e))?;
        net.check_spatial_size(&network_input_size)
            .map_err(|e| top.error("network_input_size", e.to_string()))?;

        let train = Obj::new(file, "train", top.req("train")?, TRAIN_KEYS)?;
        let loss = Loss::from_json(train.req("loss")?).map_err(|e| train.nets("loss", e))?;
        let optimizer =
            OptimizerConfig::from_json(train.req("optimizer")?).map_err(|e| train.nets("optimizer", e))?;
        let lr_policy = match train.get("lr_policy") {
            None => LrPolicy::Constant,
            Some(v) => LrPolicy::from_json(v).map_err(|e| train.nets("lr_policy", e))?,
        };
        let train_transforms = train.req("pre_transforms")?.clone();
        check_pipeline(file, "train.pre_transforms", &train_transforms)?;

        let mut validate_transforms = Value::Array(Vec::new());
        let mut metrics = Vec::new();
        let mut sliding_window = SlidingWindow::new(network_input_size);
        if let Some(v) = top.get("validate") {
            let val = Obj::new(file, "validate", v, VALIDATE_KEYS)?;
            validate_transforms = val.req("pre_transforms")?.clone();
            check_pipeline(file, "validate.pre_transforms", &validate_transforms)?;
            let list = match val.req("metrics")? {
                Value::Array(a) if !a.is_empty() => a,
                other => {
                    return Err(val.error(
                        "metrics",
                        format!("expected a non-empty list of metrics, got {}", short(other)),
                    ));
                }
            };
            for (i, m) in list.iter().enumerate() {
                let key = format!("metrics[{i}]");
                let cfg = MetricConfig::from_json(m).map_err(|e| val.nets(&key, e))?;
                if cfg.applied_key != "model" {
                    return Err(val.error(
                        &format!("{key}.applied_key"),
                        format!(
                            "{:?}: the metric reads the model output, \"model\"",
                            cfg.applied_key
                        ),
                    ));
                }
                metrics.push(cfg);
            }
            if metrics.iter().filter(|m| m.stopping_metric).count() > 1 {
                return Err(val.error("metrics", "more than one metric has stopping_metric true"));
            }
            if let Some(w) = val.get("sliding_window") {
                let sw = Obj::new(file, "validate.sliding_window", w, WINDOW_KEYS)?;
                if let Some(o) = sw.float("overlap")? {
                    if !(0.0..1.0).contains(&o) {
                        return Err(sw.error("overlap", format!("{o} is outside [0, 1)")));
                    }
                    sliding_window = sliding_window.with_overlap(o);
                }
                if let Some(m) = sw.get("mode") {
                    let mode = m.as_str().and_then(BlendMode::parse).ok_or_else(|| {
                        sw.error(
                            "mode",
                            format!("expected \"constant\" or \"gaussian\", got {}", short(m)),
                        )
                    })?;
                    sliding_window = sliding_window.with_mode(mode);
                }
                if let Some(b) = sw.uint("sw_batch_size", 1)? {
                    sliding_window = sliding_window.with_batch_size(b as usize);
                }
            }
        }
        let interaction = interaction(&top, num_channels)?;
        Ok(TrainConfig {
            file: file.to_path_buf(),
            json: json.clone(),
            num_channels,
            num_classes,
            batch_size,
            epochs,
            num_workers,
            multi_gpu,
            network_input_size,
            num_training_epoch_per_valid,
            use_scanning_window,
            net,
            loss,
            optimizer,
            lr_policy,
            train_transforms,
            validate_transforms,
            metrics,
            sliding_window,
            seed,
            cache_data,
            checkpoint_interval_s,
            interaction,
        })
    }

    /// Whether the config has a `validate` section.
    pub fn has_validation(&self) -> bool {
        !self.metrics.is_empty()
    }

    /// The index of the metric that selects the best model: the one with `stopping_metric`,
    /// else the first.
    pub fn stopping_metric(&self) -> usize {
        self.metrics.iter().position(|m| m.stopping_metric).unwrap_or(0)
    }

    /// The training pipeline, seeded with `seed`.
    pub fn train_pipeline(&self) -> Result<Pipeline> {
        Pipeline::from_json(&self.train_transforms, self.seed)
            .map_err(|e| self.transform_error("train.pre_transforms", e))
    }

    /// The validation pipeline (seeded too, so a random transform in it gives the same
    /// result at every validation).
    pub fn validate_pipeline(&self) -> Result<Pipeline> {
        Pipeline::from_json(&self.validate_transforms, self.seed)
            .map_err(|e| self.transform_error("validate.pre_transforms", e))
    }

    fn transform_error(&self, key: &str, e: aiaa_transforms::TransformError) -> TrainError {
        TrainError::Config {
            file: self.file.clone(),
            key: key.to_string(),
            message: e.to_string(),
        }
    }

    /// The label keys whose foreground a transform of `list` needs
    /// (`CropForegroundObject` and `AddExtremePointsChannel` fail on an empty label).
    pub fn foreground_fields(list: &Value) -> Vec<String> {
        let mut out = Vec::new();
        for t in list.as_array().into_iter().flatten() {
            let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
            if matches!(
                name,
                "transforms.CropForegroundObject" | "transforms.AddExtremePointsChannel"
            ) && let Some(f) = t.get("label_field").and_then(Value::as_str)
                && !out.iter().any(|o| o == f)
            {
                out.push(f.to_string());
            }
        }
        out
    }
}

/// Builds the list to check it (every transform known, every argument valid).
fn check_pipeline(file: &Path, key: &str, list: &Value) -> Result<()> {
    if !list.is_array() {
        return Err(TrainError::Config {
            file: file.to_path_buf(),
            key: key.into(),
            message: format!("expected a list of transforms, got {}", short(list)),
        });
    }
    Pipeline::from_json(list, 0).map_err(|e| TrainError::Config {
        file: file.to_path_buf(),
        key: key.into(),
        message: e.to_string(),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The seed's chapter 6.1 config with its structure restored (shared/spec/seed-configs.md),
    /// with a small network so the size checks pass.
    pub(crate) fn seed_config() -> Value {
        json!({
          "num_channels": 2,
          "num_classes": 2,
          "batch_size": 2,
          "epochs": 2000,
          "num_workers": 8,
          "multi_gpu": false,
          "network_input_size": [128, 128, 128],
          "num_training_epoch_per_valid": 10,
          "use_scanning_window": true,
          "net_config": {
            "name": "SegmAhnet3D",
            "if_from_scratch": true,
            "if_use_psp": false,
            "final_activation": "softmax"
          },
          "train": {
            "loss": {"name": "losses.dice_loss"},
            "optimizer": {"name": "Adam", "lr": 1e-3, "epsilon": 1e-4},
            "lr_policy": {"name": "lr_policy.DecayLRonStep", "decay_ratio": 0.1, "decay_freq": 50000},
            "pre_transforms": [
              {"name": "transforms.LoadNumpyFromFilename", "fields": ["image", "label"]},
              {"name": "transforms.NPRandomFlip3D", "applied_keys": ["image", "label"]},
              {"name": "transforms.NPRandomZoom3D", "applied_keys": ["image", "label"],
               "lower_limits": [0.8, 0.8, 0.8], "upper_limits": [1.2, 1.2, 1.2]},
              {"name": "transforms.VolumeTo4dArray", "fields": ["image", "label"]},
              {"name": "transforms.ScaleIntensityRange", "field": "image",
               "a_min": -1024, "a_max": 1024, "b_min": -1.0, "b_max": 1.0, "clip": true},
              {"name": "transforms.ScaleIntensityOscillation", "field": "image", "magnitude": 0.2},
              {"name": "transforms.CropForegroundObject", "size": [128, 128, 128],
               "image_field": "image", "label_field": "label", "pad": 20, "foreground_only": true},
              {"name": "transforms.NPRandomRot90_XY", "applied_keys": ["image", "label"]},
              {"name": "transforms.AddExtremePointsChannel", "image_field": "image",
               "label_field": "label", "sigma": 3, "pert": 3}
            ]
          },
          "validate": {
            "metrics": [
              {"name": "MetricAverageFromArrayDice", "tag": "mean_dice",
               "stopping_metric": true, "applied_key": "model"}
            ],
            "pre_transforms": [
              {"name": "transforms.LoadNumpyFromFilename", "fields": ["image", "label"]},
              {"name": "transforms.VolumeTo4dArray", "fields": ["image", "label"]},
              {"name": "transforms.ScaleIntensityRange", "field": "image",
               "a_min": -1024, "a_max": 1024, "b_min": -1.0, "b_max": 1.0, "clip": true},
              {"name": "transforms.CropForegroundObject", "size": [128, 128, 128],
               "image_field": "image", "label_field": "label", "pad": 20, "foreground_only": true},
              {"name": "transforms.AddExtremePointsChannel", "image_field": "image",
               "label_field": "label", "sigma": 3, "pert": 0}
            ]
          }
        })
    }

    fn err(v: Value) -> (String, String) {
        match TrainConfig::from_json(v, Path::new("cfg.json")) {
            Err(TrainError::Config { key, message, file }) => {
                assert_eq!(file, Path::new("cfg.json"));
                (key, message)
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn the_seed_config_parses() {
        let c = TrainConfig::from_json(seed_config(), Path::new("cfg.json")).unwrap();
        assert_eq!((c.num_channels, c.num_classes, c.batch_size), (2, 2, 2));
        assert_eq!(
            (c.epochs, c.num_workers, c.num_training_epoch_per_valid),
            (2000, 8, 10)
        );
        assert!(c.use_scanning_window && !c.multi_gpu);
        assert_eq!(c.network_input_size, [128; 3]);
        assert_eq!(c.metrics.len(), 1);
        assert_eq!(c.stopping_metric(), 0);
        assert_eq!(c.sliding_window.roi_size, [128; 3]);
        assert_eq!(c.train_pipeline().unwrap().len(), 9);
        assert_eq!(c.validate_pipeline().unwrap().len(), 5);
        assert_eq!(TrainConfig::foreground_fields(&c.train_transforms), vec!["label"]);
        assert_eq!(c.checkpoint_interval_s, 60.0);
        assert_eq!(c.cache_data, None);
    }

    #[test]
    fn errors_name_the_key() {
        let mut v = seed_config();
        v["num_workers "] = json!(1);
        assert_eq!(err(v).0, "num_workers ");

        let mut v = seed_config();
        v["net_config"]["name"] = json!("SegmUnet3D");
        assert_eq!(err(v).0, "net_config.name");

        let mut v = seed_config();
        v["train"]["loss"] = json!({"name": "losses.focal_loss"});
        let (key, msg) = err(v);
        assert_eq!(key, "train.loss.name");
        assert!(msg.contains("focal_loss"), "{msg}");

        let mut v = seed_config();
        v["train"]["optimizer"]["name"] = json!("Adagrad");
        assert_eq!(err(v).0, "train.optimizer.name");

        let mut v = seed_config();
        v["train"]["lr_policy"]["decay_freq"] = json!(0);
        assert_eq!(err(v).0, "train.lr_policy.decay_freq");

        let mut v = seed_config();
        v["train"]["pre_transforms"][2]["name"] = json!("transforms.NPRandomZoom4D");
        let (key, msg) = err(v);
        assert_eq!(key, "train.pre_transforms");
        assert!(msg.contains("#2") && msg.contains("NPRandomZoom4D"), "{msg}");

        let mut v = seed_config();
        v["validate"]["pre_transforms"][3]["pad"] = json!("twenty");
        let (key, msg) = err(v);
        assert_eq!(key, "validate.pre_transforms");
        assert!(msg.contains("#3") && msg.contains("pad"), "{msg}");

        let mut v = seed_config();
        v["validate"]["metrics"][0]["name"] = json!("MetricAverageFromArrayIoU");
        assert_eq!(err(v).0, "validate.metrics[0].name");

        let mut v = seed_config();
        v["validate"]["metrics"][0]["applied_key"] = json!("label");
        assert_eq!(err(v).0, "validate.metrics[0].applied_key");

        let mut v = seed_config();
        v["network_input_size"] = json!([128, 128, 100]);
        let (key, msg) = err(v);
        assert_eq!(key, "network_input_size");
        assert!(msg.contains("multiples"), "{msg}");

        let mut v = seed_config();
        v.as_object_mut().unwrap().remove("epochs");
        assert_eq!(err(v).0, "epochs");

        let mut v = seed_config();
        v["batch_size"] = json!(0);
        assert_eq!(err(v).0, "batch_size");

        let mut v = seed_config();
        v["validate"]["sliding_window"] = json!({"overlap": 1.5});
        assert_eq!(err(v).0, "validate.sliding_window.overlap");

        let mut v = seed_config();
        v["train"]["lr policy"] = json!({});
        assert_eq!(err(v).0, "train.lr policy");
    }
}
