//! Crops: `CropForegroundObject`, `CropSubVolumeRandomWithinBounds`,
//! `CropSubVolumeCenter` and the epoch-controlled positive/negative crop
//! `CropSubVolumePosNegRatioCtrlEpoch`. Every crop/pad/resize is recorded on the items.

use aiaa_imaging::voxels::Element;
use aiaa_imaging::{Volume, Voxels, with_voxels};
use serde::Deserialize;

use crate::args::{ArgError, ArgResult, Keys, check3};
use crate::data::{Data, Image, Kind};
use crate::registry::FromArgs;
use crate::rng::{chance, uniform_int};
use crate::spatial::{image_region, image_resize};
use crate::{Result, SampleRng, Transform, TransformError};

fn check_size(name: &str, v: &[usize]) -> ArgResult<[usize; 3]> {
    let s = check3(name, v)?;
    if s.iter().any(|&x| x == 0 || x > 4096) {
        return Err(ArgError::new(name, "sizes must be in 1..=4096"));
    }
    Ok(s)
}

/// Inclusive bounding box `(min, max)` of the voxels of channel 0 where `pred` holds;
/// `None` when there are none.
pub fn bbox(vol: &Volume, pred: impl Fn(f64) -> bool) -> Option<([usize; 3], [usize; 3])> {
    let [nx, ny, nz] = vol.dims;
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    let mut any = false;
    with_voxels!(&vol.voxels, v => {
        for k in 0..nz {
            for j in 0..ny {
                let row = &v[nx * (j + ny * k)..][..nx];
                let Some(first) = row.iter().position(|x| pred(x.to_f64())) else { continue };
                let last = row.iter().rposition(|x| pred(x.to_f64())).unwrap_or(first);
                any = true;
                lo = [lo[0].min(first), lo[1].min(j), lo[2].min(k)];
                hi = [hi[0].max(last), hi[1].max(j), hi[2].max(k)];
            }
        }
    });
    any.then_some((lo, hi))
}

/// The distinct positive label values of channel 0, sorted.
pub fn classes(vol: &Volume) -> Vec<i64> {
    let mut seen = std::collections::BTreeSet::new();
    for idx in 0..vol.voxel_count() {
        let v = vol.voxels.get_f64(idx);
        if v > 0.0 {
            seen.insert(v.round() as i64);
        }
    }
    seen.into_iter().collect()
}

/// A `u8` 0/1 mask of channel 0 of `vol` where `pred` holds, same grid.
pub fn mask(vol: &Volume, pred: impl Fn(f64) -> bool) -> Result<Volume> {
    let n = vol.voxel_count();
    let m: Vec<u8> =
        with_voxels!(&vol.voxels, v => v[..n].iter().map(|x| u8::from(pred(x.to_f64()))).collect());
    Ok(Volume::scalar(vol.dims, vol.geometry, Voxels::U8(m))?)
}

/// The index of a voxel of channel 0 drawn uniformly among those where `pred` holds
/// (`None` if none does).
pub fn random_voxel(vol: &Volume, rng: &mut SampleRng, pred: impl Fn(f64) -> bool) -> Option<[usize; 3]> {
    let n = vol.voxel_count();
    let count = (0..n).filter(|&i| pred(vol.voxels.get_f64(i))).count();
    if count == 0 {
        return None;
    }
    let target = uniform_int(rng, 0, count as i64 - 1) as usize;
    let idx = (0..n).filter(|&i| pred(vol.voxels.get_f64(i))).nth(target)?;
    let [nx, ny, _] = vol.dims;
    Some([idx % nx, (idx / nx) % ny, idx / (nx * ny)])
}

/// Start of a `size` window centred on `centre`, kept inside `dims` when it fits, centred
/// (padding both sides) when it does not.
pub fn window_start(centre: [usize; 3], size: [usize; 3], dims: [usize; 3]) -> [i64; 3] {
    std::array::from_fn(|a| {
        let (c, s, n) = (centre[a] as i64, size[a] as i64, dims[a] as i64);
        if s <= n {
            (c - s / 2).clamp(0, n - s)
        } else {
            -(s - n) / 2
        }
    })
}

/// Arguments of [`CropForegroundObject`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForegroundArgs {
    /// Output size after the crop is resized.
    pub size: Vec<usize>,
    /// The image key.
    pub image_field: String,
    /// The label key.
    pub label_field: String,
    /// Margin (voxels) around the object.
    #[serde(default)]
    pub pad: usize,
    /// All foreground labels as one (true, default) or one class drawn at random.
    #[serde(default = "crate::args::yes")]
    pub foreground_only: bool,
}

/// `transforms.CropForegroundObject`: crops image and label to the foreground's bounding
/// box plus `pad` voxels on every side (clamped to the volume), then resizes both to
/// `size` (image linear, label nearest). The label becomes a `u8` 0/1 mask: all positive
/// labels (`foreground_only`), or one class drawn uniformly among those present. A label
/// without foreground is an error.
#[derive(Debug)]
pub struct CropForegroundObject {
    size: [usize; 3],
    image: String,
    label: String,
    pad: usize,
    foreground_only: bool,
}

impl FromArgs for CropForegroundObject {
    type Args = ForegroundArgs;
    fn from_args(a: ForegroundArgs) -> ArgResult<Self> {
        Ok(CropForegroundObject {
            size: check_size("size", &a.size)?,
            image: a.image_field,
            label: a.label_field,
            pad: a.pad,
            foreground_only: a.foreground_only,
        })
    }
}

impl Transform for CropForegroundObject {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let lab = d.image(&self.label)?;
        let dims = lab.vol.dims;
        let img_dims = d.volume(&self.image)?.dims;
        if img_dims != dims {
            return Err(TransformError::invalid(format!(
                "image {:?} grid {img_dims:?} differs from label {:?} grid {dims:?}",
                self.image, self.label
            )));
        }
        // The class to keep (all positive labels, or one drawn), as a predicate: the box is
        // found on the label itself and only the cropped region is turned into a mask.
        let class = if self.foreground_only {
            None
        } else {
            let cs = classes(&lab.vol);
            if cs.is_empty() {
                return Err(TransformError::invalid(format!(
                    "label {:?} has no foreground",
                    self.label
                )));
            }
            Some(cs[uniform_int(rng, 0, cs.len() as i64 - 1) as usize] as f64)
        };
        let keep = move |v: f64| v > 0.0 && class.is_none_or(|c| (v.round() - c).abs() < 0.5);
        let (lo, hi) = bbox(&lab.vol, keep)
            .ok_or_else(|| TransformError::invalid(format!("label {:?} has no foreground", self.label)))?;
        let start: [usize; 3] = std::array::from_fn(|a| lo[a].saturating_sub(self.pad));
        let end: [usize; 3] = std::array::from_fn(|a| (hi[a] + 1 + self.pad).min(dims[a]));
        let box_size = std::array::from_fn(|a| end[a] - start[a]);
        let start = start.map(|s| s as i64);
        for key in [&self.image, &self.label] {
            let im = d.image_mut(key)?;
            image_region(im, start, box_size, 0.0)?;
            if key == &self.label {
                im.vol = mask(&im.vol, keep)?;
                im.kind = Kind::Label;
            }
            image_resize(im, self.size)?;
        }
        Ok(())
    }
}

/// Arguments of the fixed-size sub-volume crops.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubVolumeArgs {
    /// Keys to apply to.
    pub fields: Keys,
    /// Crop size.
    pub size: Vec<usize>,
}

fn crop_keys(d: &mut Data, keys: &Keys, start: [i64; 3], size: [usize; 3]) -> Result<()> {
    for k in keys.iter() {
        image_region(d.image_mut(k)?, start, size, 0.0)?;
    }
    Ok(())
}

fn first_dims(d: &Data, keys: &Keys) -> Result<[usize; 3]> {
    let dims = d.volume(&keys.0[0])?.dims;
    for k in keys.iter() {
        if d.volume(k)?.dims != dims {
            return Err(TransformError::invalid(format!(
                "{k:?} is not on the grid of {:?}",
                keys.0[0]
            )));
        }
    }
    Ok(dims)
}

/// `transforms.CropSubVolumeRandomWithinBounds`: a `size` window at a uniformly drawn start
/// inside the volume (the same for all fields); an axis shorter than `size` is zero-padded,
/// the window's placement drawn likewise.
#[derive(Debug)]
pub struct CropSubVolumeRandomWithinBounds {
    keys: Keys,
    size: [usize; 3],
}

impl FromArgs for CropSubVolumeRandomWithinBounds {
    type Args = SubVolumeArgs;
    fn from_args(a: SubVolumeArgs) -> ArgResult<Self> {
        Ok(CropSubVolumeRandomWithinBounds {
            keys: a.fields,
            size: check_size("size", &a.size)?,
        })
    }
}

impl Transform for CropSubVolumeRandomWithinBounds {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let dims = first_dims(d, &self.keys)?;
        let start = std::array::from_fn(|a| {
            let slack = dims[a] as i64 - self.size[a] as i64;
            uniform_int(rng, slack.min(0), slack.max(0))
        });
        crop_keys(d, &self.keys, start, self.size)
    }
}

/// `transforms.CropSubVolumeCenter`: the centred `size` window, start
/// `floor((n - size) / 2)` (negative: zero padding).
#[derive(Debug)]
pub struct CropSubVolumeCenter {
    keys: Keys,
    size: [usize; 3],
}

impl FromArgs for CropSubVolumeCenter {
    type Args = SubVolumeArgs;
    fn from_args(a: SubVolumeArgs) -> ArgResult<Self> {
        Ok(CropSubVolumeCenter {
            keys: a.fields,
            size: check_size("size", &a.size)?,
        })
    }
}

impl Transform for CropSubVolumeCenter {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        let dims = first_dims(d, &self.keys)?;
        let start = std::array::from_fn(|a| (dims[a] as i64 - self.size[a] as i64).div_euclid(2));
        crop_keys(d, &self.keys, start, self.size)
    }
}

/// Arguments of [`CropSubVolumePosNegRatioCtrlEpoch`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PosNegArgs {
    /// The image key.
    pub image_field: String,
    /// The label key.
    pub label_field: String,
    /// Crop size.
    pub size: Vec<usize>,
    /// Positive/negative ratio at epoch 0.
    pub ratio_start: f64,
    /// Ratio it ends at (never passed).
    pub ratio_end: f64,
    /// Change of the ratio per step.
    pub ratio_step: f64,
    /// Epochs per step.
    pub num_epochs: u64,
}

/// `transforms_ctrl.CropSubVolumePosNegRatioCtrlEpoch`: at epoch `e` the ratio is
/// `ratio_start + ratio_step * floor(e / num_epochs)`, held between `ratio_start` and
/// `ratio_end`; the crop is positive (centred on a uniformly drawn foreground voxel) with
/// probability `ratio / (1 + ratio)`, else negative (a background voxel). With no
/// foreground (or no background) the other kind is used. The window stays inside the
/// volume where it fits (zero padding where it does not).
#[derive(Debug)]
pub struct CropSubVolumePosNegRatioCtrlEpoch {
    image: String,
    label: String,
    size: [usize; 3],
    start: f64,
    end: f64,
    step: f64,
    num_epochs: u64,
}

impl CropSubVolumePosNegRatioCtrlEpoch {
    /// The positive/negative ratio at `epoch`.
    pub fn ratio(&self, epoch: u64) -> f64 {
        let r = self.start + self.step * (epoch / self.num_epochs) as f64;
        let (lo, hi) = (self.start.min(self.end), self.start.max(self.end));
        r.clamp(lo, hi)
    }
}

impl FromArgs for CropSubVolumePosNegRatioCtrlEpoch {
    type Args = PosNegArgs;
    fn from_args(a: PosNegArgs) -> ArgResult<Self> {
        for (n, v) in [("ratio_start", a.ratio_start), ("ratio_end", a.ratio_end)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ArgError::new(n, "must be >= 0"));
            }
        }
        if !a.ratio_step.is_finite() {
            return Err(ArgError::new("ratio_step", "must be finite"));
        }
        if a.num_epochs == 0 {
            return Err(ArgError::new("num_epochs", "must be >= 1"));
        }
        Ok(CropSubVolumePosNegRatioCtrlEpoch {
            image: a.image_field,
            label: a.label_field,
            size: check_size("size", &a.size)?,
            start: a.ratio_start,
            end: a.ratio_end,
            step: a.ratio_step,
            num_epochs: a.num_epochs,
        })
    }
}

/// Draws a positive (foreground-centred) or negative window centre in `label`.
pub fn pos_neg_centre(label: &Volume, rng: &mut SampleRng, p_pos: f64) -> Result<[usize; 3]> {
    let positive = chance(rng, p_pos);
    let fg = |v: f64| v > 0.0;
    let bg = |v: f64| v <= 0.0;
    let found = if positive {
        random_voxel(label, rng, fg).or_else(|| random_voxel(label, rng, bg))
    } else {
        random_voxel(label, rng, bg).or_else(|| random_voxel(label, rng, fg))
    };
    found.ok_or_else(|| TransformError::invalid("empty label"))
}

impl Transform for CropSubVolumePosNegRatioCtrlEpoch {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let r = self.ratio(d.epoch);
        let lab: &Image = d.image(&self.label)?;
        let dims = lab.vol.dims;
        if d.volume(&self.image)?.dims != dims {
            return Err(TransformError::invalid("image and label grids differ"));
        }
        let centre = pos_neg_centre(&lab.vol, rng, r / (1.0 + r))?;
        let start = window_start(centre, self.size, dims);
        for k in [&self.image, &self.label] {
            image_region(d.image_mut(k)?, start, self.size, 0.0)?;
        }
        Ok(())
    }
}
