//! Deepgrow's inference-side guidance transforms (MONAI's `monai.apps.deepgrow.transforms`):
//! the user's clicks taken from the loaded image's grid to the grid the network sees, and
//! the crop around them.
//!
//! * **Clicks to the current grid** (`transforms.AddGuidanceFromPoints`, MONAI's
//!   `AddGuidanceFromPointsd` with `spatial_dims=3`): every click is truncated to integers,
//!   optionally rolled to depth-first order (`[i, j, k]` → `[k, i, j]`), scaled by the current
//!   shape over the original one (rolled likewise) and truncated again.
//! * **Crop around the clicks** (`transforms.SpatialCropGuidance`, `SpatialCropGuidanced`): the
//!   clicks' bounding box grown by `margin`, or, when it is smaller than `spatial_size` along
//!   every axis, a `spatial_size` window about its centre (on the depth axis the window
//!   starts at 0); the clicks are moved into the crop.
//! * **Clicks through a resize** (`transforms.ResizeGuidance`, `ResizeGuidanced`): scaled by
//!   the current shape over the cropped one, truncated.
//!
//! Where MONAI keeps the crop in every key's meta dictionary, we record it twice: as the
//! sample's `foreground_*` items (numbers, spatial axes only) and as a crop on each image's
//! spatial record, so [`crate::record::invert`] undoes it with the rest.
//!
//! MONAI agreement: `tests/guidance_monai_more.rs`.

use serde::Deserialize;

use crate::args::{ArgError, ArgResult, Keys, check3};
use crate::data::{Data, Item};
use crate::guidance::Clicks;
use crate::record::OpKind;
use crate::registry::FromArgs;
use crate::spatial::image_region;
use crate::{Result, SampleRng, Transform, TransformError};

fn image_key() -> String {
    "image".into()
}
fn guidance_key() -> String {
    "guidance".into()
}
fn foreground_key() -> String {
    "foreground".into()
}
fn background_key() -> String {
    "background".into()
}
fn three() -> usize {
    3
}
fn start_key() -> String {
    "foreground_start_coord".into()
}
fn end_key() -> String {
    "foreground_end_coord".into()
}
fn original_key() -> String {
    "foreground_original_shape".into()
}
fn cropped_key() -> String {
    "foreground_cropped_shape".into()
}

/// The clicks stored under `key`.
pub fn clicks_of<'a>(d: &'a Data, key: &str) -> Result<&'a Clicks> {
    match d.item(key)? {
        Item::Clicks(c) => Ok(c),
        other => Err(TransformError::invalid(format!(
            "{key:?} holds {}, not clicks",
            other.kind_name()
        ))),
    }
}

/// Points as a request or datalist gives them: `Item::Points`, or JSON `[[x, y, z], ...]`
/// (an empty list is no points).
pub fn points_of(d: &Data, key: &str) -> Result<Vec<[f64; 3]>> {
    let bad = |why: &str| TransformError::invalid(format!("{key:?}: {why}"));
    match d.item(key)? {
        Item::Points(p) => Ok(p.clone()),
        Item::Json(serde_json::Value::Array(a)) => a
            .iter()
            .map(|p| {
                let v: Vec<f64> = p
                    .as_array()
                    .ok_or_else(|| bad("every point must be a list of 3 numbers"))?
                    .iter()
                    .map(|x| x.as_f64().ok_or_else(|| bad("a coordinate is not a number")))
                    .collect::<Result<_>>()?;
                <[f64; 3]>::try_from(v).map_err(|_| bad("every point must have 3 coordinates"))
            })
            .collect(),
        other => Err(bad(&format!("holds {}, not points", other.kind_name()))),
    }
}

/// `[i, j, k]` → `[k, i, j]` (numpy's `np.roll(p, 1)`): the depth axis first.
fn roll<T: Copy>(p: [T; 3]) -> [T; 3] {
    [p[2], p[0], p[1]]
}

/// Clicks on the `original` grid mapped onto the `current` one, MONAI's way: truncated,
/// rolled when `depth_first` (the current grid's axes are `[k, i, j]` of the original),
/// scaled by `current / original` per axis, truncated again.
pub fn points_to_current(
    points: &[[f64; 3]],
    original: [usize; 3],
    current: [usize; 3],
    depth_first: bool,
) -> Vec<[f64; 3]> {
    let original = if depth_first { roll(original) } else { original };
    let factor: [f64; 3] = std::array::from_fn(|a| current[a] as f64 / original[a] as f64);
    points
        .iter()
        .map(|p| {
            let p = p.map(f64::trunc);
            let p = if depth_first { roll(p) } else { p };
            std::array::from_fn(|a| (p[a] * factor[a]).trunc())
        })
        .collect()
}

/// Arguments of [`AddGuidanceFromPoints`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuidanceFromPointsArgs {
    #[serde(default = "image_key")]
    ref_image: String,
    #[serde(default = "guidance_key")]
    guidance: String,
    #[serde(default = "foreground_key")]
    foreground: String,
    #[serde(default = "background_key")]
    background: String,
    #[serde(default)]
    depth_first: bool,
    #[serde(default = "three")]
    spatial_dims: usize,
}

/// `transforms.AddGuidanceFromPoints` (see the module docs): the clicks under `foreground`
/// and `background`, given on the grid `ref_image` was loaded on (the grid before its first
/// recorded spatial operation), as [`Clicks`] on its current grid under `guidance`.
#[derive(Debug)]
pub struct AddGuidanceFromPoints {
    image: String,
    guidance: String,
    foreground: String,
    background: String,
    depth_first: bool,
}

impl FromArgs for AddGuidanceFromPoints {
    type Args = GuidanceFromPointsArgs;
    fn from_args(a: GuidanceFromPointsArgs) -> ArgResult<Self> {
        // MONAI's 2D mode picks one slice's clicks for a 2D network; ours are 3D.
        if a.spatial_dims != 3 {
            return Err(ArgError::new("spatial_dims", "only 3 (3D deepgrow) is supported"));
        }
        Ok(AddGuidanceFromPoints {
            image: a.ref_image,
            guidance: a.guidance,
            foreground: a.foreground,
            background: a.background,
            depth_first: a.depth_first,
        })
    }
}

impl Transform for AddGuidanceFromPoints {
    fn apply(&self, d: &mut Data, _rng: &mut SampleRng) -> Result<()> {
        let im = d.image(&self.image)?;
        let current = im.vol.dims;
        let original = im.ops.first().map_or(current, |op| op.before.dims);
        let map = |key: &str| -> Result<Vec<[f64; 3]>> {
            Ok(points_to_current(
                &points_of(d, key)?,
                original,
                current,
                self.depth_first,
            ))
        };
        let clicks = Clicks {
            foreground: map(&self.foreground)?,
            background: map(&self.background)?,
        };
        d.insert(self.guidance.clone(), Item::Clicks(clicks));
        Ok(())
    }
}

/// A margin: one number for every axis, or one per axis.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Margin {
    /// The same on every axis.
    All(usize),
    /// Per axis.
    PerAxis(Vec<usize>),
}

/// The clicks' bounding box grown by `margin`, cut to the volume: start and (exclusive) end,
/// MONAI's `SpatialCropGuidanced.bounding_box`.
pub fn guidance_box(points: &[[f64; 3]], dims: [usize; 3], margin: [usize; 3]) -> ([i64; 3], [i64; 3]) {
    let mut start = [0i64; 3];
    let mut end = [0i64; 3];
    for a in 0..3 {
        let lo = points.iter().map(|p| p[a]).fold(f64::INFINITY, f64::min);
        let hi = points.iter().map(|p| p[a]).fold(f64::NEG_INFINITY, f64::max);
        let m = margin[a] as f64;
        start[a] = (lo - m).max(0.0).trunc() as i64;
        end[a] = (hi + m + 1.0).min(dims[a] as f64).trunc() as i64;
    }
    (start, end)
}

/// The crop `SpatialCropGuidanced` makes from the clicks' box: start and (exclusive) end,
/// the end not cut to the volume (MONAI records it so).
pub fn guidance_crop(
    box_start: [i64; 3],
    box_end: [i64; 3],
    spatial_size: [usize; 3],
    depth_axis: usize,
) -> ([i64; 3], [i64; 3]) {
    let size = spatial_size.map(|s| s as i64);
    if (0..3).all(|a| box_end[a] - box_start[a] < size[a]) {
        // A small box: a `spatial_size` window about its centre; MONAI's 3D deepgrow starts
        // the window at the first slice of its depth axis instead.
        let mut centre: [i64; 3] = std::array::from_fn(|a| (box_start[a] + box_end[a]).div_euclid(2));
        centre[depth_axis] = size[depth_axis] / 2;
        let start: [i64; 3] = std::array::from_fn(|a| (centre[a] - size[a] / 2).max(0));
        (start, std::array::from_fn(|a| start[a] + size[a]))
    } else {
        let start = box_start.map(|s| s.max(0));
        (start, std::array::from_fn(|a| box_end[a].max(start[a])))
    }
}

/// Arguments of [`SpatialCropGuidance`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpatialCropGuidanceArgs {
    fields: Keys,
    #[serde(default = "guidance_key")]
    guidance: String,
    spatial_size: Vec<usize>,
    #[serde(default = "twenty")]
    margin: Margin,
    #[serde(default = "two")]
    depth_axis: usize,
    #[serde(default = "start_key")]
    start_coord_key: String,
    #[serde(default = "end_key")]
    end_coord_key: String,
    #[serde(default = "original_key")]
    original_shape_key: String,
    #[serde(default = "cropped_key")]
    cropped_shape_key: String,
}

fn twenty() -> Margin {
    Margin::All(20)
}
fn two() -> usize {
    2
}

/// `transforms.SpatialCropGuidance` (see the module docs): every field cropped the same
/// way, the clicks under `guidance` moved into the crop.
#[derive(Debug)]
pub struct SpatialCropGuidance {
    fields: Keys,
    guidance: String,
    spatial_size: [usize; 3],
    margin: [usize; 3],
    depth_axis: usize,
    keys: [String; 4],
}

impl FromArgs for SpatialCropGuidance {
    type Args = SpatialCropGuidanceArgs;
    fn from_args(a: SpatialCropGuidanceArgs) -> ArgResult<Self> {
        let margin = match a.margin {
            Margin::All(m) => [m; 3],
            Margin::PerAxis(v) => check3("margin", &v)?,
        };
        if a.depth_axis > 2 {
            return Err(ArgError::new("depth_axis", "must be 0, 1 or 2"));
        }
        Ok(SpatialCropGuidance {
            fields: a.fields,
            guidance: a.guidance,
            spatial_size: check3("spatial_size", &a.spatial_size)?,
            margin,
            depth_axis: a.depth_axis,
            keys: [
                a.start_coord_key,
                a.end_coord_key,
                a.original_shape_key,
                a.cropped_shape_key,
            ],
        })
    }
}

impl SpatialCropGuidance {
    /// The fields' common grid.
    fn dims(&self, d: &Data) -> Result<[usize; 3]> {
        let dims = d.volume(&self.fields.0[0])?.dims;
        for k in self.fields.iter() {
            if d.volume(k)?.dims != dims {
                return Err(TransformError::invalid(format!(
                    "{k:?} is not on the grid of {:?}",
                    self.fields.0[0]
                )));
            }
        }
        Ok(dims)
    }
}

impl Transform for SpatialCropGuidance {
    fn apply(&self, d: &mut Data, _rng: &mut SampleRng) -> Result<()> {
        let dims = self.dims(d)?;
        let clicks = clicks_of(d, &self.guidance)?.clone();
        let all: Vec<[f64; 3]> = clicks
            .foreground
            .iter()
            .chain(&clicks.background)
            .copied()
            .collect();
        if all.is_empty() {
            return Err(TransformError::invalid(format!(
                "{:?} has no clicks to crop around",
                self.guidance
            )));
        }
        let (box_start, box_end) = guidance_box(&all, dims, self.margin);
        let (start, end) = guidance_crop(box_start, box_end, self.spatial_size, self.depth_axis);
        // Slicing past the end keeps what is there, as numpy does.
        let size: [usize; 3] =
            std::array::from_fn(|a| (end[a].min(dims[a] as i64) - start[a]).max(0) as usize);
        for k in self.fields.iter() {
            image_region(d.image_mut(k)?, start, size, 0.0)?;
        }
        let shift = |p: &[f64; 3]| std::array::from_fn(|a| p[a] - start[a] as f64);
        let moved = Clicks {
            foreground: clicks.foreground.iter().map(shift).collect(),
            background: clicks.background.iter().map(shift).collect(),
        };
        d.insert(self.guidance.clone(), Item::Clicks(moved));
        let numbers = |v: [i64; 3]| Item::Numbers(v.iter().map(|&x| x as f64).collect());
        let [s, e, o, c] = &self.keys;
        d.insert(s.clone(), numbers(start));
        d.insert(e.clone(), numbers(end));
        d.insert(o.clone(), numbers(dims.map(|x| x as i64)));
        d.insert(c.clone(), numbers(size.map(|x| x as i64)));
        Ok(())
    }
}

/// Clicks scaled from a `before` grid to an `after` grid, MONAI's `ResizeGuidanced` way:
/// `after / before` per axis, truncated.
pub fn resize_points(points: &[[f64; 3]], before: [usize; 3], after: [usize; 3]) -> Vec<[f64; 3]> {
    let factor: [f64; 3] = std::array::from_fn(|a| after[a] as f64 / before[a] as f64);
    points
        .iter()
        .map(|p| std::array::from_fn(|a| (p[a] * factor[a]).trunc()))
        .collect()
}

/// Arguments of [`ResizeGuidance`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeGuidanceArgs {
    #[serde(default = "guidance_key")]
    guidance: String,
    #[serde(default = "image_key")]
    ref_image: String,
    #[serde(default = "cropped_key")]
    cropped_shape_key: String,
}

/// `transforms.ResizeGuidance` (see the module docs): the clicks under `guidance` scaled from
/// the grid before the resize, `cropped_shape_key`'s shape (as `SpatialCropGuidance` records
/// it), or without that item the grid before `ref_image`'s last recorded resample, onto
/// `ref_image`'s current grid.
#[derive(Debug)]
pub struct ResizeGuidance {
    guidance: String,
    image: String,
    cropped: String,
}

impl FromArgs for ResizeGuidance {
    type Args = ResizeGuidanceArgs;
    fn from_args(a: ResizeGuidanceArgs) -> ArgResult<Self> {
        Ok(ResizeGuidance {
            guidance: a.guidance,
            image: a.ref_image,
            cropped: a.cropped_shape_key,
        })
    }
}

impl ResizeGuidance {
    /// The grid the image had before it was resized.
    fn before(&self, d: &Data) -> Result<[usize; 3]> {
        match d.get(&self.cropped) {
            Some(Item::Numbers(v)) if v.len() == 3 && v.iter().all(|x| *x >= 1.0) => {
                Ok(std::array::from_fn(|a| v[a] as usize))
            }
            Some(other) => Err(TransformError::invalid(format!(
                "{:?} holds {}, not a 3D shape",
                self.cropped,
                other.kind_name()
            ))),
            None => {
                let im = d.image(&self.image)?;
                im.ops
                    .iter()
                    .rev()
                    .find(|op| op.kind == OpKind::Resample)
                    .map(|op| op.before.dims)
                    .ok_or_else(|| {
                        TransformError::invalid(format!(
                            "neither {:?} nor a recorded resize of {:?}",
                            self.cropped, self.image
                        ))
                    })
            }
        }
    }
}

impl Transform for ResizeGuidance {
    fn apply(&self, d: &mut Data, _rng: &mut SampleRng) -> Result<()> {
        let before = self.before(d)?;
        let after = d.volume(&self.image)?.dims;
        let clicks = clicks_of(d, &self.guidance)?;
        let resized = Clicks {
            foreground: resize_points(&clicks.foreground, before, after),
            background: resize_points(&clicks.background, before, after),
        };
        d.insert(self.guidance.clone(), Item::Clicks(resized));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_box_gets_a_window_starting_at_the_first_slice() {
        let (s, e) = guidance_box(&[[10.0, 12.0, 14.0]], [40, 40, 40], [2; 3]);
        assert_eq!((s, e), ([8, 10, 12], [13, 15, 17]));
        let (s, e) = guidance_crop(s, e, [8, 8, 8], 2);
        assert_eq!((s, e), ([6, 8, 0], [14, 16, 8]));
    }

    #[test]
    fn a_large_box_is_the_crop() {
        let (s, e) = guidance_box(&[[1.0, 1.0, 1.0], [30.0, 5.0, 5.0]], [32, 40, 40], [3; 3]);
        assert_eq!((s, e), ([0, 0, 0], [32, 9, 9]));
        assert_eq!(guidance_crop(s, e, [8, 8, 8], 0), (s, e));
    }

    #[test]
    fn depth_first_rolls_points_and_shape() {
        // Original [i, j, k] = [100, 50, 20]; current depth-first [k, i, j] at half size.
        let p = points_to_current(&[[40.7, 20.0, 10.0]], [100, 50, 20], [10, 50, 25], true);
        assert_eq!(p, vec![[5.0, 20.0, 10.0]]);
    }
}
