//! Random and deterministic spatial transforms on whole volumes: `NPRandomFlip3D`,
//! `FlipAxisRandom`, `NPRandomRot90_XY`, `NPRandomZoom3D`, `ResampleVolume`. One draw per
//! call, applied to every key; every operation is recorded for [`crate::invert`].

use aiaa_imaging::resample::grid_for_spacing;
use aiaa_imaging::{Volume, Voxels};
use rand::Rng;
use serde::Deserialize;

use crate::args::{ArgError, ArgResult, Keys, check_range, check3, half};
use crate::data::{Data, Kind};
use crate::registry::FromArgs;
use crate::rng::{chance, uniform};
use crate::spatial::{image_flip, image_region, image_resample, image_resize, image_rot90};
use crate::{Result, SampleRng, Transform, TransformError};

/// Checks that every key holds an image and that they share one grid (so one draw fits all).
fn same_grid(d: &Data, keys: &Keys) -> Result<[usize; 3]> {
    let mut dims = None;
    for k in keys.iter() {
        let kd = d.volume(k)?.dims;
        match dims {
            None => dims = Some(kd),
            Some(d0) if d0 != kd => {
                return Err(TransformError::invalid(format!(
                    "{k:?} has grid {kd:?}, but the first key has {d0:?}"
                )));
            }
            Some(_) => {}
        }
    }
    dims.ok_or_else(|| TransformError::invalid("no keys"))
}

/// Arguments of [`NPRandomFlip3D`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flip3dArgs {
    /// Keys to apply to.
    pub applied_keys: Keys,
    /// Probability of flipping each axis (default 0.5).
    #[serde(default = "half")]
    pub probability: f64,
}

/// `transforms.NPRandomFlip3D`: each of the three spatial axes is flipped independently
/// with `probability`; the same axes for every key.
#[derive(Debug)]
pub struct NPRandomFlip3D {
    keys: Keys,
    p: f64,
}

impl FromArgs for NPRandomFlip3D {
    type Args = Flip3dArgs;
    fn from_args(a: Flip3dArgs) -> ArgResult<Self> {
        Ok(NPRandomFlip3D {
            keys: a.applied_keys,
            p: check_range("probability", a.probability, 0.0, 1.0)?,
        })
    }
}

fn flip_keys(d: &mut Data, keys: &Keys, axes: [bool; 3]) -> Result<()> {
    same_grid(d, keys)?;
    for k in keys.iter() {
        image_flip(d.image_mut(k)?, axes);
    }
    Ok(())
}

impl Transform for NPRandomFlip3D {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let axes = [(); 3].map(|_| chance(rng, self.p));
        flip_keys(d, &self.keys, axes)
    }
}

/// Arguments of [`FlipAxisRandom`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlipAxisArgs {
    /// Keys to apply to.
    pub fields: Keys,
    /// Spatial axes that may flip (0, 1, 2).
    pub axis: Vec<usize>,
}

/// `transforms.FlipAxisRandom`: each listed spatial axis flips with probability 0.5; the
/// same axes for every key.
#[derive(Debug)]
pub struct FlipAxisRandom {
    keys: Keys,
    axes: [bool; 3],
}

impl FromArgs for FlipAxisRandom {
    type Args = FlipAxisArgs;
    fn from_args(a: FlipAxisArgs) -> ArgResult<Self> {
        let mut axes = [false; 3];
        for &x in &a.axis {
            *axes
                .get_mut(x)
                .ok_or_else(|| ArgError::new("axis", format!("{x} is not a spatial axis (0, 1 or 2)")))? =
                true;
        }
        Ok(FlipAxisRandom { keys: a.fields, axes })
    }
}

impl Transform for FlipAxisRandom {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let draw = [(); 3].map(|_| chance(rng, 0.5));
        let axes = std::array::from_fn(|a| self.axes[a] && draw[a]);
        flip_keys(d, &self.keys, axes)
    }
}

/// Arguments of [`NPRandomRot90XY`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rot90Args {
    /// Keys to apply to.
    pub applied_keys: Keys,
    /// Probability of rotating at all (default 0.5).
    #[serde(default = "half")]
    pub probability: f64,
}

/// `transforms.NPRandomRot90_XY`: with `probability`, rotates by `k` quarter turns in the
/// X-Y plane (numpy axes (1, 2) of the 4D array), `k` uniform in {1, 2, 3}; the same `k`
/// for every key.
#[derive(Debug)]
pub struct NPRandomRot90XY {
    keys: Keys,
    p: f64,
}

impl FromArgs for NPRandomRot90XY {
    type Args = Rot90Args;
    fn from_args(a: Rot90Args) -> ArgResult<Self> {
        Ok(NPRandomRot90XY {
            keys: a.applied_keys,
            p: check_range("probability", a.probability, 0.0, 1.0)?,
        })
    }
}

impl Transform for NPRandomRot90XY {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let rotate = chance(rng, self.p);
        let k: u8 = rng.random_range(1..=3);
        same_grid(d, &self.keys)?;
        if rotate {
            for key in self.keys.iter() {
                image_rot90(d.image_mut(key)?, k);
            }
        }
        Ok(())
    }
}

/// Arguments of [`NPRandomZoom3D`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoomArgs {
    /// Keys to apply to.
    pub applied_keys: Keys,
    /// Lowest zoom factor per axis.
    pub lower_limits: Vec<f64>,
    /// Highest zoom factor per axis.
    pub upper_limits: Vec<f64>,
    /// `channels_first` or `channels_last`: accepted; our layout does not depend on it.
    #[serde(default)]
    pub data_format: Option<String>,
    /// Accepted and ignored: zooming runs on the CPU.
    #[serde(default)]
    pub use_gpu: bool,
    /// Crop/pad (centred) back to the input size after zooming.
    #[serde(default)]
    pub keep_size: bool,
    /// How `keep_size` pads a zoomed-out intensity image: `constant` (zeros, the default)
    /// or `edge` (its border voxels repeated: tissue that goes on past the field of view,
    /// as a neck goes on below a head). Labels are always padded with zeros.
    #[serde(default)]
    pub padding_mode: PaddingMode,
}

/// How a zoomed-out image is padded back to its size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingMode {
    /// Zeros.
    #[default]
    Constant,
    /// The nearest border voxel's value.
    Edge,
}

/// `transforms.NPRandomZoom3D`: zoom factor `f[a]` drawn uniformly in
/// `[lower_limits[a], upper_limits[a]]` per axis (one draw for all keys); the new size is
/// `max(1, round(n * f))` with voxel centres aligned ([`crate::spatial::resize_geometry`]),
/// linear for intensities and nearest for labels. With `keep_size`, a centred crop or zero
/// pad (start `floor((new - n) / 2)`) restores the input size.
#[derive(Debug)]
pub struct NPRandomZoom3D {
    keys: Keys,
    lo: [f64; 3],
    hi: [f64; 3],
    keep_size: bool,
    padding: PaddingMode,
}

impl FromArgs for NPRandomZoom3D {
    type Args = ZoomArgs;
    fn from_args(a: ZoomArgs) -> ArgResult<Self> {
        let lo = check3("lower_limits", &a.lower_limits)?;
        let hi = check3("upper_limits", &a.upper_limits)?;
        if lo.iter().any(|&x| !(x.is_finite() && x > 0.0)) {
            return Err(ArgError::new("lower_limits", "zoom factors must be > 0"));
        }
        if (0..3).any(|i| !(hi[i].is_finite() && hi[i] >= lo[i] && hi[i] <= 16.0)) {
            return Err(ArgError::new("upper_limits", "must be >= lower_limits and <= 16"));
        }
        if let Some(f) = &a.data_format
            && f != "channels_first"
            && f != "channels_last"
        {
            return Err(ArgError::new(
                "data_format",
                format!("{f:?}: use channels_first or channels_last"),
            ));
        }
        Ok(NPRandomZoom3D {
            keys: a.applied_keys,
            lo,
            hi,
            keep_size: a.keep_size,
            padding: a.padding_mode,
        })
    }
}

impl Transform for NPRandomZoom3D {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let f: [f64; 3] = std::array::from_fn(|a| uniform(rng, self.lo[a], self.hi[a]));
        let dims = same_grid(d, &self.keys)?;
        let new: [usize; 3] = std::array::from_fn(|a| ((dims[a] as f64 * f[a]).round() as usize).max(1));
        for k in self.keys.iter() {
            let im = d.image_mut(k)?;
            image_resize(im, new)?;
            if self.keep_size && new != dims {
                let start = std::array::from_fn(|a| (new[a] as i64 - dims[a] as i64).div_euclid(2));
                image_region(im, start, dims, 0.0)?;
                if self.padding == PaddingMode::Edge && im.kind == Kind::Intensity {
                    replicate_edges(&mut im.vol, start, new);
                }
            }
        }
        Ok(())
    }
}

/// Fills the padding of a region taken at `start` (negative: padded) from a volume of
/// `inner` voxels with the nearest voxel that came from it, axis by axis (the same as
/// clamping the source index). Only `f32` volumes (intensities are cast before resizing).
fn replicate_edges(vol: &mut Volume, start: [i64; 3], inner: [usize; 3]) {
    let dims = vol.dims;
    let channels = vol.channels;
    let Voxels::F32(v) = &mut vol.voxels else {
        return;
    };
    let stride = [1, dims[0], dims[0] * dims[1]];
    for a in 0..3 {
        // The output indices that hold source voxels: [lo, hi].
        let lo = (-start[a]).max(0) as usize;
        let hi = ((inner[a] as i64 - start[a]).min(dims[a] as i64) - 1).max(0) as usize;
        if lo == 0 && hi + 1 >= dims[a] {
            continue;
        }
        let n = dims[0] * dims[1] * dims[2];
        for c in 0..channels {
            for o in 0..n {
                let idx = (o / stride[a]) % dims[a];
                let from = idx.clamp(lo, hi);
                if from != idx {
                    let src = o - idx * stride[a] + from * stride[a];
                    v[c * n + o] = v[c * n + src];
                }
            }
        }
    }
}

/// Arguments of [`Resize`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeArgs {
    /// Keys to apply to.
    pub fields: Keys,
    /// The output size (voxels along i, j, k).
    pub spatial_size: Vec<usize>,
}

/// `transforms.Resize` (ours, MONAI's `Resized`): every key resized to `spatial_size`
/// voxels over the same physical extent, linear for intensities and nearest for labels,
/// recorded so that a prediction can be mapped back. Interactive models see the whole head
/// on a fixed grid this way.
#[derive(Debug)]
pub struct Resize {
    keys: Keys,
    size: [usize; 3],
}

impl FromArgs for Resize {
    type Args = ResizeArgs;
    fn from_args(a: ResizeArgs) -> ArgResult<Self> {
        if a.spatial_size.len() != 3 || a.spatial_size.contains(&0) {
            return Err(ArgError::new(
                "spatial_size",
                "must be three sizes of at least one voxel",
            ));
        }
        Ok(Resize {
            keys: a.fields,
            size: [a.spatial_size[0], a.spatial_size[1], a.spatial_size[2]],
        })
    }
}

impl Transform for Resize {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for key in self.keys.iter() {
            image_resize(d.image_mut(key)?, self.size)?;
        }
        Ok(())
    }
}

/// Arguments of [`ResampleVolume`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResampleArgs {
    /// The key.
    pub applied_key: String,
    /// The input resolution (mm); when given it replaces the image's spacing.
    #[serde(default)]
    pub resolution: Option<Vec<f64>>,
    /// The output resolution (mm).
    pub target_resolution: Vec<f64>,
}

/// `transforms.ResampleVolume`: resamples to `target_resolution` keeping the physical
/// extent (`aiaa_imaging::resample::grid_for_spacing`), linear for intensities and nearest
/// for labels.
#[derive(Debug)]
pub struct ResampleVolume {
    key: String,
    resolution: Option<[f64; 3]>,
    target: [f64; 3],
}

impl FromArgs for ResampleVolume {
    type Args = ResampleArgs;
    fn from_args(a: ResampleArgs) -> ArgResult<Self> {
        let pos = |name: &str, v: &[f64]| -> ArgResult<[f64; 3]> {
            let r = check3(name, v)?;
            if r.iter().all(|x| x.is_finite() && *x > 0.0) {
                Ok(r)
            } else {
                Err(ArgError::new(name, "resolutions must be > 0"))
            }
        };
        Ok(ResampleVolume {
            key: a.applied_key,
            resolution: a
                .resolution
                .as_deref()
                .map(|r| pos("resolution", r))
                .transpose()?,
            target: pos("target_resolution", &a.target_resolution)?,
        })
    }
}

impl Transform for ResampleVolume {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        let im = d.image_mut(&self.key)?;
        if let Some(r) = self.resolution {
            im.vol.geometry.spacing = r;
        }
        let (dims, g) = grid_for_spacing(im.vol.dims, &im.vol.geometry, self.target)?;
        image_resample(im, dims, &g)
    }
}
