//! The sample dictionary the transforms work on: named items (images with geometry, labels,
//! points, numbers, strings, metadata), like the Python `dict` of the seed and MONAI.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aiaa_imaging::{Volume, VoxelType};

use crate::record::SpatialOp;
use crate::{Result, TransformError};

/// What the voxels of an image mean: decides interpolation (linear vs nearest) and whether
/// intensity transforms may touch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Intensities: linear interpolation, cast to `f32` before any resampling.
    Intensity,
    /// Integer class labels: nearest-neighbour interpolation, element type kept.
    Label,
}

impl Kind {
    /// The kind a freshly loaded item gets from its key: names containing `label`, `seg` or
    /// `mask` (case-insensitive) are labels; transforms with a `label_field` also mark it.
    pub fn from_key(key: &str) -> Kind {
        let k = key.to_ascii_lowercase();
        if k.contains("label") || k.contains("seg") || k.contains("mask") {
            Kind::Label
        } else {
            Kind::Intensity
        }
    }
}

/// An image item: a [`Volume`] (voxels + geometry, channels slowest) plus what the
/// transforms need to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Voxels and geometry.
    pub vol: Volume,
    /// Whether the seed's numpy array has a channel axis (a "4D array" after
    /// `VolumeTo4dArray`; a channelled 2D image). The voxels are stored the same either way.
    pub channel_dim: bool,
    /// Intensity or label.
    pub kind: Kind,
    /// The spatial operations applied since loading, oldest first (see [`crate::record`]).
    pub ops: Vec<SpatialOp>,
    /// The file(s) it was loaded from, if any.
    pub source: Option<PathBuf>,
}

impl Image {
    /// A fresh image (no channel axis, no history).
    pub fn new(vol: Volume, kind: Kind) -> Image {
        Image {
            channel_dim: vol.channels > 1,
            vol,
            kind,
            ops: Vec::new(),
            source: None,
        }
    }

    /// The same image with the channel axis flagged.
    pub fn with_channel_dim(mut self) -> Image {
        self.channel_dim = true;
        self
    }

    /// Casts to `f32` unless the voxels already are floating point.
    pub fn ensure_float(&mut self) {
        if !self.vol.voxel_type().is_float() {
            self.vol = self.vol.cast(VoxelType::F32);
        }
    }
}

/// One named item of a sample.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An image or label volume.
    Image(Box<Image>),
    /// A string: usually a file path from the datalist.
    Text(String),
    /// Several strings: e.g. one file per channel.
    Texts(Vec<String>),
    /// A scalar.
    Number(f64),
    /// A vector of numbers (class labels of a 2D image, a resolution, a shape).
    Numbers(Vec<f64>),
    /// Points as voxel indices `[i, j, k]` (e.g. the extreme points of a label).
    Points(Vec<[f64; 3]>),
    /// A user's (or a simulation's) foreground and background clicks (deepgrow guidance).
    Clicks(crate::guidance::Clicks),
    /// DeepEdit's clicks, per label name (see [`crate::deepedit`]).
    LabelClicks(crate::deepedit::LabelClicks),
    /// Anything else from the datalist, kept as JSON.
    Json(serde_json::Value),
}

impl Item {
    /// A short name of the variant, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Item::Image(_) => "an image",
            Item::Text(_) => "a string",
            Item::Texts(_) => "a list of strings",
            Item::Number(_) => "a number",
            Item::Numbers(_) => "a list of numbers",
            Item::Points(_) => "points",
            Item::Clicks(_) => "clicks",
            Item::LabelClicks(_) => "per-label clicks",
            Item::Json(_) => "JSON",
        }
    }

    /// Converts a datalist JSON value: strings, lists of strings, numbers and lists of
    /// numbers get their own variants, anything else stays JSON.
    pub fn from_json(v: &serde_json::Value) -> Item {
        use serde_json::Value;
        match v {
            Value::String(s) => Item::Text(s.clone()),
            Value::Number(n) => n.as_f64().map_or_else(|| Item::Json(v.clone()), Item::Number),
            Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => {
                Item::Texts(a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
            }
            Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_number) => {
                Item::Numbers(a.iter().filter_map(Value::as_f64).collect())
            }
            _ => Item::Json(v.clone()),
        }
    }
}

/// A sample: named items plus what the transforms need to know about the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Data {
    /// The sample's name (e.g. its image file name): named in every error, and the
    /// `<input name>` of the writers. `LoadNifty` sets it from the first file if empty.
    pub name: String,
    /// The training epoch (used by epoch-controlled transforms).
    pub epoch: u64,
    /// Where writers put their files when their config has no `write_path`.
    pub output_dir: Option<PathBuf>,
    items: BTreeMap<String, Item>,
}

impl Data {
    /// An empty sample with a name.
    pub fn named(name: impl Into<String>) -> Data {
        Data {
            name: name.into(),
            ..Data::default()
        }
    }

    /// A sample from a datalist entry (a JSON object); see [`Item::from_json`].
    pub fn from_json(name: impl Into<String>, entry: &serde_json::Value) -> Result<Data> {
        let obj = entry
            .as_object()
            .ok_or_else(|| TransformError::Config("a datalist entry must be a JSON object".into()))?;
        let mut d = Data::named(name);
        for (k, v) in obj {
            d.insert(k.clone(), Item::from_json(v));
        }
        Ok(d)
    }

    /// Inserts (or replaces) an item.
    pub fn insert(&mut self, key: impl Into<String>, item: Item) {
        self.items.insert(key.into(), item);
    }

    /// Inserts an image.
    pub fn insert_image(&mut self, key: impl Into<String>, image: Image) {
        self.insert(key, Item::Image(Box::new(image)));
    }

    /// The item under `key`.
    pub fn get(&self, key: &str) -> Option<&Item> {
        self.items.get(key)
    }

    /// Mutable item under `key`.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Item> {
        self.items.get_mut(key)
    }

    /// Removes and returns an item.
    pub fn remove(&mut self, key: &str) -> Option<Item> {
        self.items.remove(key)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.items.contains_key(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.items.keys().map(String::as_str)
    }

    /// The item under `key`, or [`TransformError::MissingKey`].
    pub fn item(&self, key: &str) -> Result<&Item> {
        self.items
            .get(key)
            .ok_or_else(|| TransformError::MissingKey(key.to_owned()))
    }

    /// The image under `key`.
    pub fn image(&self, key: &str) -> Result<&Image> {
        match self.item(key)? {
            Item::Image(im) => Ok(im),
            other => Err(wrong(key, "an image", other)),
        }
    }

    /// The image under `key`, mutably.
    pub fn image_mut(&mut self, key: &str) -> Result<&mut Image> {
        match self.items.get_mut(key) {
            Some(Item::Image(im)) => Ok(im),
            Some(other) => Err(wrong(key, "an image", other)),
            None => Err(TransformError::MissingKey(key.to_owned())),
        }
    }

    /// The volume under `key`.
    pub fn volume(&self, key: &str) -> Result<&Volume> {
        Ok(&self.image(key)?.vol)
    }
}

fn wrong(key: &str, expected: &'static str, found: &Item) -> TransformError {
    TransformError::WrongItem {
        key: key.to_owned(),
        expected,
        found: found.kind_name(),
    }
}
