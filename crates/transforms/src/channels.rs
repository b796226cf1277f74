//! Channel handling: `VolumeTo4dArray`, `SplitAcrossChannels`, `NPExpandDims`,
//! `NPRepChannels`, and stacking volumes as channels.
//!
//! Our volumes always store channels (slowest axis); the seed's "3D vs 4D array" is the
//! [`Image::channel_dim`] flag. Because the spatial axes are fixed, the numpy axis arguments
//! (`expand_axis`, `channel_axis`) must name the channel axis: `0` (channels first) or `-1`
//! (channels last); any other axis is refused when the transform is built.

use aiaa_imaging::voxels::Element;
use aiaa_imaging::{Volume, VoxelType, Voxels, with_voxels};
use serde::Deserialize;

use crate::args::{ArgError, ArgResult, Keys};
use crate::data::{Data, Image};
use crate::registry::FromArgs;
use crate::{Result, SampleRng, Transform, TransformError};

/// Stacks volumes of one grid as channels (in order). Mixed element types become `f32`.
pub fn stack(vols: &[Volume]) -> Result<Volume> {
    let first = vols
        .first()
        .ok_or_else(|| TransformError::invalid("nothing to stack"))?;
    if let Some(v) = vols.iter().find(|v| v.dims != first.dims) {
        return Err(TransformError::invalid(format!(
            "cannot stack a {:?} volume with a {:?} volume",
            v.dims, first.dims
        )));
    }
    if vols.len() == 1 {
        return Ok(first.clone());
    }
    let ty = if vols.iter().all(|v| v.voxel_type() == first.voxel_type()) {
        first.voxel_type()
    } else {
        VoxelType::F32
    };
    let mut out = Voxels::zeros(ty, 0);
    with_voxels!(&mut out, o => {
        for v in vols {
            if v.voxel_type() == ty {
                append_same(o, &v.voxels);
            } else {
                append_same(o, &v.voxels.cast(ty));
            }
        }
    });
    let channels = vols.iter().map(|v| v.channels).sum();
    Ok(Volume::new(first.dims, channels, first.geometry, out)?)
}

/// Appends `src` (of `o`'s element type) to `o`.
fn append_same<T: Element>(o: &mut Vec<T>, src: &Voxels) {
    with_voxels!(src, s => {
        o.reserve(s.len());
        o.extend(s.iter().map(|x| T::from_f64(x.to_f64())));
    });
}

/// `transforms.VolumeTo4dArray`: gives each field a channel axis, if it has none.
#[derive(Debug)]
pub struct VolumeTo4dArray {
    fields: Keys,
}

/// Arguments of [`VolumeTo4dArray`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldsArgs {
    /// Keys to apply to.
    pub fields: Keys,
}

impl FromArgs for VolumeTo4dArray {
    type Args = FieldsArgs;
    fn from_args(a: FieldsArgs) -> ArgResult<Self> {
        Ok(VolumeTo4dArray { fields: a.fields })
    }
}

impl Transform for VolumeTo4dArray {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.fields.iter() {
            d.image_mut(k)?.channel_dim = true;
        }
        Ok(())
    }
}

/// `transforms.SplitAcrossChannels`: one new item per channel of `applied_key`, named by
/// `channel_names` (default `<applied_key><channel number>`); `squeeze` drops the channel
/// axis of the new items. The number of names must match the number of channels.
#[derive(Debug)]
pub struct SplitAcrossChannels {
    key: String,
    names: Option<Vec<String>>,
    squeeze: bool,
}

/// Arguments of [`SplitAcrossChannels`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitArgs {
    /// The multi-channel item.
    pub applied_key: String,
    /// Names of the new items, one per channel.
    #[serde(default)]
    pub channel_names: Option<Vec<String>>,
    /// Drop the channel axis of the new items.
    #[serde(default)]
    pub squeeze: bool,
}

impl FromArgs for SplitAcrossChannels {
    type Args = SplitArgs;
    fn from_args(a: SplitArgs) -> ArgResult<Self> {
        if let Some(n) = &a.channel_names
            && (n.is_empty() || n.iter().any(String::is_empty))
        {
            return Err(ArgError::new(
                "channel_names",
                "must be a non-empty list of non-empty names",
            ));
        }
        Ok(SplitAcrossChannels {
            key: a.applied_key,
            names: a.channel_names,
            squeeze: a.squeeze,
        })
    }
}

impl Transform for SplitAcrossChannels {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        let im = d.image(&self.key)?.clone();
        let names: Vec<String> = match &self.names {
            Some(n) if n.len() != im.vol.channels => {
                return Err(TransformError::invalid(format!(
                    "{:?} has {} channels but {} channel_names are given",
                    self.key,
                    im.vol.channels,
                    n.len()
                )));
            }
            Some(n) => n.clone(),
            None => (0..im.vol.channels).map(|c| format!("{}{c}", self.key)).collect(),
        };
        for (c, name) in names.iter().enumerate() {
            let part = Image {
                vol: im.vol.channel(c)?,
                channel_dim: !self.squeeze,
                ..im.clone()
            };
            d.insert_image(name.clone(), part);
        }
        Ok(())
    }
}

/// `transforms.NPExpandDims`: adds the channel axis (`expand_axis` 0 or -1, default 0);
/// an item that already has one is an error.
#[derive(Debug)]
pub struct NPExpandDims {
    keys: Keys,
}

/// Arguments of [`NPExpandDims`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpandArgs {
    /// Keys to apply to.
    pub applied_keys: Keys,
    /// Axis to add: 0 or -1.
    #[serde(default)]
    pub expand_axis: i64,
}

impl FromArgs for NPExpandDims {
    type Args = ExpandArgs;
    fn from_args(a: ExpandArgs) -> ArgResult<Self> {
        if a.expand_axis != 0 && a.expand_axis != -1 {
            return Err(ArgError::new(
                "expand_axis",
                format!("{}: only the channel axis (0 or -1) can be added", a.expand_axis),
            ));
        }
        Ok(NPExpandDims { keys: a.applied_keys })
    }
}

impl Transform for NPExpandDims {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.keys.iter() {
            let im = d.image_mut(k)?;
            if im.channel_dim {
                return Err(TransformError::invalid(format!(
                    "{k:?} already has a channel axis"
                )));
            }
            im.channel_dim = true;
        }
        Ok(())
    }
}

/// `transforms.NPRepChannels`: repeats each channel `repeat` times along the channel axis
/// (numpy `repeat`: `[a, b]` becomes `[a, a, b, b]`), e.g. grey to 3-channel. The item gets
/// a channel axis.
#[derive(Debug)]
pub struct NPRepChannels {
    keys: Keys,
    repeat: usize,
}

/// Arguments of [`NPRepChannels`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepArgs {
    /// Keys to apply to.
    pub applied_keys: Keys,
    /// The channel axis: 0, -1, or 2 (the last axis of a channels-last 2D image).
    pub channel_axis: i64,
    /// Number of repetitions of each channel.
    pub repeat: usize,
}

impl FromArgs for NPRepChannels {
    type Args = RepArgs;
    fn from_args(a: RepArgs) -> ArgResult<Self> {
        if ![0, -1, 2].contains(&a.channel_axis) {
            return Err(ArgError::new(
                "channel_axis",
                format!(
                    "{}: only the channel axis (0, -1, or 2 for a 2D image) can be repeated",
                    a.channel_axis
                ),
            ));
        }
        if a.repeat == 0 {
            return Err(ArgError::new("repeat", "must be at least 1"));
        }
        Ok(NPRepChannels {
            keys: a.applied_keys,
            repeat: a.repeat,
        })
    }
}

impl Transform for NPRepChannels {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.keys.iter() {
            let im = d.image_mut(k)?;
            let parts: Vec<Volume> = (0..im.vol.channels)
                .map(|c| im.vol.channel(c))
                .collect::<std::result::Result<_, _>>()?;
            let reps: Vec<Volume> = parts
                .iter()
                .flat_map(|p| std::iter::repeat_n(p.clone(), self.repeat))
                .collect();
            im.vol = stack(&reps)?;
            im.channel_dim = true;
        }
        Ok(())
    }
}
