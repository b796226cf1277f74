//! The train config's `net_config` object (seed chapter 6.1), read strictly.
//!
//! ```json
//! "net_config": {
//!   "name": "SegmAhnet3D",
//!   "if_from_scratch": false,
//!   "if_use_psp": false,
//!   "pretrain_weight_name": "/var/tmp/...",
//!   "final_activation": "softmax",
//!   "num_filters": 16,
//!   "levels": 4
//! }
//! ```
//!
//! Seed keys:
//! - `name`: `"SegmAhnet3D"` (the seed's network, see [`crate::networks::SegmAhnet3D`]) or
//!   `"UNet3D"` (ours, [`crate::networks::UNet3D`]). Nothing else is accepted, not even
//!   look-alikes such as `"SegmUnet3D"`: the seed names only `SegmAhnet3D`, and one spelling per
//!   network keeps configs, checkpoints and exported models unambiguous.
//! - `if_from_scratch` (default `true`): `false` asks the trainer to initialise the network from
//!   `pretrain_weight_name` (our checkpoint or weights file; variables absent from it keep their
//!   random initialisation), which must then be given.
//! - `if_use_psp` (default `false`): adds the pyramid-pooling module to `SegmAhnet3D`; an error
//!   for `UNet3D`.
//! - `pretrain_weight_name`: see `if_from_scratch`; ignored when training from scratch.
//! - `final_activation` (default `"softmax"`): `"softmax"`, `"sigmoid"` or `"none"`, applied
//!   by [`crate::networks::apply_final_activation`] and in exported models.
//!
//! Our extensions:
//! - `num_filters` (default 16): the width of the first level; level `l` has
//!   `num_filters * 2^l` channels. 16 with 4 levels (16 … 256 channels) is MONAI's usual 3D U-Net
//!   size for a GPU; 4 to 8 with 2 levels trains on a CPU.
//! - `levels` (default 4, 1 to 6): the number of 2x down-samplings; input sizes must be
//!   divisible by [`NetConfig::spatial_divisor`].
//! - `norm` (default `"instance"`): `"instance"` or `"batch"` normalisation after each conv.
//! - `downsample` (default `"maxpool"`, `UNet3D` only): `"maxpool"` or `"strided"` (a 3x3x3
//!   stride-2 conv).
//!
//! `num_channels` and `num_classes` live at the top level of the train config and are passed
//! to [`crate::networks::Network::new`] separately.

use serde_json::{Value, json};

use crate::error::{NetsError, Result};
use crate::fields::Fields;

/// Which network `net_config.name` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetName {
    /// `"SegmAhnet3D"`: the anisotropic hybrid network of the seed.
    SegmAhnet3D,
    /// `"UNet3D"`: a plain 3D U-Net.
    UNet3D,
}

impl NetName {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NetName::SegmAhnet3D => "SegmAhnet3D",
            NetName::UNet3D => "UNet3D",
        }
    }
}

/// The activation applied to the network's logits (`final_activation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalActivation {
    /// Softmax over the class channel.
    Softmax,
    /// Element-wise sigmoid.
    Sigmoid,
    /// Logits unchanged.
    None,
}

impl FinalActivation {
    /// Parses `"softmax"`, `"sigmoid"` or `"none"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "softmax" => Some(FinalActivation::Softmax),
            "sigmoid" => Some(FinalActivation::Sigmoid),
            "none" => Some(FinalActivation::None),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FinalActivation::Softmax => "softmax",
            FinalActivation::Sigmoid => "sigmoid",
            FinalActivation::None => "none",
        }
    }
}

/// Normalisation after each convolution (`norm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// Instance normalisation with a learned scale and shift (good for batches of 1 or 2).
    Instance,
    /// Batch normalisation with running statistics used at evaluation.
    Batch,
}

/// How `UNet3D` halves the resolution (`downsample`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Downsample {
    /// 2x2x2 max pooling.
    MaxPool,
    /// A 3x3x3 convolution with stride 2, then normalisation and ReLU.
    Strided,
}

/// The parsed `net_config` object. See the module docs for each key.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConfig {
    /// `name`.
    pub name: NetName,
    /// `if_from_scratch`.
    pub if_from_scratch: bool,
    /// `if_use_psp`.
    pub if_use_psp: bool,
    /// `pretrain_weight_name`.
    pub pretrain_weight_name: Option<String>,
    /// `final_activation`.
    pub final_activation: FinalActivation,
    /// `num_filters`: channels of the first level.
    pub num_filters: i64,
    /// `levels`: number of down-samplings.
    pub levels: usize,
    /// `norm`.
    pub norm: NormKind,
    /// `downsample`.
    pub downsample: Downsample,
}

/// The default `num_filters`.
pub const DEFAULT_NUM_FILTERS: i64 = 16;
/// The default `levels`.
pub const DEFAULT_LEVELS: usize = 4;
/// The in-plane pooling factors of the pyramid-pooling module (besides a global branch).
pub const PSP_POOL_FACTORS: [i64; 2] = [2, 4];

impl NetConfig {
    /// A config for `name` with every other key at its default.
    pub fn new(name: NetName) -> Self {
        NetConfig {
            name,
            if_from_scratch: true,
            if_use_psp: false,
            pretrain_weight_name: None,
            final_activation: FinalActivation::Softmax,
            num_filters: DEFAULT_NUM_FILTERS,
            levels: DEFAULT_LEVELS,
            norm: NormKind::Instance,
            downsample: Downsample::MaxPool,
        }
    }

    /// Reads a `net_config` object; unknown keys and bad values are errors naming the key.
    pub fn from_json(value: &Value) -> Result<Self> {
        let mut f = Fields::new(value, "net_config")?;
        let name = match f.req_str("name")? {
            "SegmAhnet3D" => NetName::SegmAhnet3D,
            "UNet3D" => NetName::UNet3D,
            other => {
                return Err(f.error(
                    "name",
                    format!("unknown network {other:?} (known: SegmAhnet3D, UNet3D)"),
                ));
            }
        };
        let mut cfg = NetConfig::new(name);
        if let Some(b) = f.bool("if_from_scratch")? {
            cfg.if_from_scratch = b;
        }
        if let Some(b) = f.bool("if_use_psp")? {
            if b && name == NetName::UNet3D {
                return Err(f.error("if_use_psp", "pyramid pooling exists only in SegmAhnet3D"));
            }
            cfg.if_use_psp = b;
        }
        cfg.pretrain_weight_name = f.str("pretrain_weight_name")?.map(str::to_string);
        if !cfg.if_from_scratch && cfg.pretrain_weight_name.as_deref().is_none_or(str::is_empty) {
            return Err(f.error(
                "pretrain_weight_name",
                "required when if_from_scratch is false (the weights to start from)",
            ));
        }
        if let Some(s) = f.str("final_activation")? {
            cfg.final_activation = FinalActivation::parse(s).ok_or_else(|| {
                f.error(
                    "final_activation",
                    format!("unknown {s:?} (known: softmax, sigmoid, none)"),
                )
            })?;
        }
        if let Some(n) = f.u64("num_filters")? {
            if !(1..=1024).contains(&n) {
                return Err(f.error("num_filters", format!("{n} is outside 1..=1024")));
            }
            cfg.num_filters = n as i64;
        }
        if let Some(n) = f.u64("levels")? {
            if !(1..=6).contains(&n) {
                return Err(f.error("levels", format!("{n} is outside 1..=6")));
            }
            cfg.levels = n as usize;
        }
        if let Some(s) = f.str("norm")? {
            cfg.norm = match s {
                "instance" => NormKind::Instance,
                "batch" => NormKind::Batch,
                _ => return Err(f.error("norm", format!("unknown {s:?} (known: instance, batch)"))),
            };
        }
        if let Some(s) = f.str("downsample")? {
            cfg.downsample = match s {
                "maxpool" => Downsample::MaxPool,
                "strided" => Downsample::Strided,
                _ => return Err(f.error("downsample", format!("unknown {s:?} (known: maxpool, strided)"))),
            };
            if name != NetName::UNet3D {
                return Err(f.error("downsample", "only UNet3D has this option"));
            }
        }
        f.finish()?;
        Ok(cfg)
    }

    /// The config as JSON, every key written (what checkpoints and exports record).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "name": self.name.as_str(),
            "if_from_scratch": self.if_from_scratch,
            "if_use_psp": self.if_use_psp,
            "final_activation": self.final_activation.as_str(),
            "num_filters": self.num_filters,
            "levels": self.levels,
            "norm": match self.norm { NormKind::Instance => "instance", NormKind::Batch => "batch" },
        });
        if let Some(p) = &self.pretrain_weight_name {
            v["pretrain_weight_name"] = json!(p);
        }
        if self.name == NetName::UNet3D {
            v["downsample"] = json!(match self.downsample {
                Downsample::MaxPool => "maxpool",
                Downsample::Strided => "strided",
            });
        }
        v
    }

    /// The weights file to start from, when the config asks for one (`if_from_scratch` false).
    pub fn pretrained_weights(&self) -> Option<&str> {
        if self.if_from_scratch {
            None
        } else {
            self.pretrain_weight_name.as_deref()
        }
    }

    /// What each spatial size of the input (i, j, k) must be a multiple of: `2^levels`, and in
    /// i and j also times the largest pyramid-pooling factor when `if_use_psp`.
    pub fn spatial_divisor(&self) -> [i64; 3] {
        let d = 1i64 << self.levels;
        if self.if_use_psp {
            let p = PSP_POOL_FACTORS[PSP_POOL_FACTORS.len() - 1];
            [d * p, d * p, d]
        } else {
            [d, d, d]
        }
    }

    /// Checks `size` (i, j, k) against [`NetConfig::spatial_divisor`].
    pub fn check_spatial_size(&self, size: &[i64]) -> Result<()> {
        let div = self.spatial_divisor();
        if size.len() != 3 || size.iter().zip(div).any(|(&s, d)| s <= 0 || s % d != 0) {
            return Err(NetsError::Shape(format!(
                "{} with {} levels{} needs spatial sizes that are multiples of {div:?}, got {size:?}",
                self.name.as_str(),
                self.levels,
                if self.if_use_psp {
                    " and pyramid pooling"
                } else {
                    ""
                },
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_key(v: Value) -> String {
        match NetConfig::from_json(&v) {
            Err(NetsError::Config { key, context, .. }) => {
                assert_eq!(context, "net_config");
                key
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn seed_net_config_parses() {
        let v = json!({
            "name": "SegmAhnet3D",
            "if_from_scratch": false,
            "if_use_psp": false,
            "pretrain_weight_name": "/var/tmp/x",
            "final_activation": "softmax"
        });
        let c = NetConfig::from_json(&v).unwrap();
        assert_eq!(c.name, NetName::SegmAhnet3D);
        assert_eq!(c.pretrained_weights(), Some("/var/tmp/x"));
        assert_eq!(c.final_activation, FinalActivation::Softmax);
        assert_eq!((c.num_filters, c.levels), (DEFAULT_NUM_FILTERS, DEFAULT_LEVELS));
        assert_eq!(c.spatial_divisor(), [16, 16, 16]);
        // to_json round-trips.
        assert_eq!(NetConfig::from_json(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn extensions_parse() {
        let v = json!({"name": "UNet3D", "num_filters": 8, "levels": 2, "norm": "batch",
                       "downsample": "strided", "final_activation": "sigmoid"});
        let c = NetConfig::from_json(&v).unwrap();
        assert_eq!((c.num_filters, c.levels, c.norm), (8, 2, NormKind::Batch));
        assert_eq!(c.downsample, Downsample::Strided);
        assert_eq!(c.pretrained_weights(), None);
        assert_eq!(NetConfig::from_json(&c.to_json()).unwrap(), c);
        let a =
            NetConfig::from_json(&json!({"name": "SegmAhnet3D", "if_use_psp": true, "levels": 2})).unwrap();
        assert_eq!(a.spatial_divisor(), [16, 16, 4]);
        assert!(a.check_spatial_size(&[16, 32, 4]).is_ok());
        assert!(matches!(
            a.check_spatial_size(&[16, 8, 4]),
            Err(NetsError::Shape(_))
        ));
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(err_key(json!({"name": "SegmUnet3D"})), "name");
        assert_eq!(err_key(json!({"if_use_psp": true})), "name");
        assert_eq!(
            err_key(json!({"name": "UNet3D", "if_use_pspp": true})),
            "if_use_pspp"
        );
        assert_eq!(
            err_key(json!({"name": "UNet3D", "if use psp": true})),
            "if use psp"
        );
        assert_eq!(
            err_key(json!({"name": "UNet3D", "if_use_psp": true})),
            "if_use_psp"
        );
        assert_eq!(
            err_key(json!({"name": "UNet3D", "final_activation": "relu"})),
            "final_activation"
        );
        assert_eq!(err_key(json!({"name": "UNet3D", "levels": 0})), "levels");
        assert_eq!(
            err_key(json!({"name": "UNet3D", "num_filters": 2.5})),
            "num_filters"
        );
        assert_eq!(
            err_key(json!({"name": "UNet3D", "if_from_scratch": "no"})),
            "if_from_scratch"
        );
        assert_eq!(
            err_key(json!({"name": "UNet3D", "if_from_scratch": false})),
            "pretrain_weight_name"
        );
        assert_eq!(
            err_key(json!({"name": "SegmAhnet3D", "downsample": "strided"})),
            "downsample"
        );
        let msg = NetConfig::from_json(&json!({"name": "UNet3D", "bogus": 1}))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`bogus`") && msg.contains("unknown key"), "{msg}");
    }
}
