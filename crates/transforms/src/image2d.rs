//! 2D transforms (X-ray classification): `CropRandomSubImageInRange`, `NPResizeImage`,
//! `NP2DRotate`. A 2D image is a volume with `dims[2] == 1`; numpy `(rows, cols)` is our
//! `(j, i)`. They work slice by slice on 3D volumes too.

use aiaa_imaging::resample::Interpolation;
use aiaa_imaging::voxels::Element;
use aiaa_imaging::{Volume, with_voxels};
use serde::Deserialize;

use crate::args::{ArgError, ArgResult, Keys};
use crate::data::{Data, Kind};
use crate::record::{Grid, OpKind, SpatialOp};
use crate::registry::FromArgs;
use crate::rng::{uniform, uniform_int};
use crate::spatial::{image_region, image_resize, interp_for};
use crate::{Result, SampleRng, Transform, TransformError};

fn image_keys() -> Keys {
    Keys(vec!["image".into()])
}

/// Arguments of [`CropRandomSubImageInRange`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubImageArgs {
    /// Keys to crop (ours; default `"image"`, as the seed describes).
    #[serde(default = "image_keys")]
    pub applied_keys: Keys,
    /// Smallest crop side: voxels when `>= 1`, a fraction of the side when `< 1`.
    pub lower_size: f64,
    /// Largest shift of the crop from the centre, as a fraction of the free room.
    #[serde(default)]
    pub max_displacement: f64,
    /// Keep the image's aspect ratio.
    #[serde(default)]
    pub keep_aspect: bool,
}

/// `transforms.CropRandomSubImageInRange`: a random crop of the `i`-`j` plane. Each side
/// is drawn uniformly between `lower_size` and the image side (with `keep_aspect`, one
/// fraction for both sides); the crop is centred, then shifted by `u * max_displacement *
/// (n - side) / 2` per axis, `u` uniform in `[-1, 1]`, and kept inside the image.
#[derive(Debug)]
pub struct CropRandomSubImageInRange {
    keys: Keys,
    lower: f64,
    max_disp: f64,
    keep_aspect: bool,
}

impl FromArgs for CropRandomSubImageInRange {
    type Args = SubImageArgs;
    fn from_args(a: SubImageArgs) -> ArgResult<Self> {
        if !(a.lower_size.is_finite() && a.lower_size > 0.0) {
            return Err(ArgError::new("lower_size", "must be > 0"));
        }
        if !(0.0..=1.0).contains(&a.max_displacement) {
            return Err(ArgError::new("max_displacement", "must be in [0, 1]"));
        }
        Ok(CropRandomSubImageInRange {
            keys: a.applied_keys,
            lower: a.lower_size,
            max_disp: a.max_displacement,
            keep_aspect: a.keep_aspect,
        })
    }
}

impl Transform for CropRandomSubImageInRange {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let dims = d.volume(&self.keys.0[0])?.dims;
        let low = |n: usize| -> usize {
            let l = if self.lower < 1.0 {
                self.lower * n as f64
            } else {
                self.lower
            };
            (l.round() as usize).clamp(1, n)
        };
        let side: [usize; 2] = if self.keep_aspect {
            let f_lo = (0..2)
                .map(|a| low(dims[a]) as f64 / dims[a] as f64)
                .fold(0.0, f64::max);
            let f = uniform(rng, f_lo, 1.0);
            std::array::from_fn(|a| ((f * dims[a] as f64).round() as usize).clamp(1, dims[a]))
        } else {
            std::array::from_fn(|a| uniform_int(rng, low(dims[a]) as i64, dims[a] as i64) as usize)
        };
        let start: [i64; 2] = std::array::from_fn(|a| {
            let free = (dims[a] - side[a]) as f64;
            let s = free / 2.0 + uniform(rng, -1.0, 1.0) * self.max_disp * free / 2.0;
            (s.round() as i64).clamp(0, free as i64)
        });
        for k in self.keys.iter() {
            let im = d.image_mut(k)?;
            if im.vol.dims != dims {
                return Err(TransformError::invalid(format!(
                    "{k:?} is not on the first key's grid"
                )));
            }
            image_region(im, [start[0], start[1], 0], [side[0], side[1], dims[2]], 0.0)?;
        }
        Ok(())
    }
}

/// Arguments of [`NPResizeImage`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResizeArgs {
    /// Keys to apply to.
    pub applied_keys: Keys,
    /// `[rows, cols]`.
    pub output_shape: Vec<usize>,
    /// `channels_first`, `channels_last` or `grayscale`: accepted, our layout is fixed.
    #[serde(default)]
    pub data_format: Option<String>,
}

/// `transforms.NPResizeImage`: resizes the `i`-`j` plane to `output_shape = [rows, cols]`
/// (our `[cols, rows]`), voxel centres aligned, linear (labels nearest); recorded.
#[derive(Debug)]
pub struct NPResizeImage {
    keys: Keys,
    rows: usize,
    cols: usize,
}

impl FromArgs for NPResizeImage {
    type Args = ResizeArgs;
    fn from_args(a: ResizeArgs) -> ArgResult<Self> {
        let [rows, cols] = <[usize; 2]>::try_from(a.output_shape.as_slice())
            .map_err(|_| ArgError::new("output_shape", "needs [rows, cols]"))?;
        if rows == 0 || cols == 0 || rows > 65536 || cols > 65536 {
            return Err(ArgError::new("output_shape", "sides must be in 1..=65536"));
        }
        if let Some(f) = &a.data_format
            && !["channels_first", "channels_last", "grayscale"].contains(&f.as_str())
        {
            return Err(ArgError::new(
                "data_format",
                format!("{f:?} is not a data format"),
            ));
        }
        Ok(NPResizeImage {
            keys: a.applied_keys,
            rows,
            cols,
        })
    }
}

impl Transform for NPResizeImage {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.keys.iter() {
            let im = d.image_mut(k)?;
            let nz = im.vol.dims[2];
            image_resize(im, [self.cols, self.rows, nz])?;
        }
        Ok(())
    }
}

/// Rotates every `k` slice by `degrees` about the slice centre `c = ((nx-1)/2, (ny-1)/2)`:
/// output `p` samples input `c + R (p - c)` with `R = [[cos t, sin t], [-sin t, cos t]]`
/// (bilinear or nearest); samples outside the input are 0. Geometry is kept.
pub fn rotate2d(vol: &Volume, degrees: f64, interp: Interpolation) -> Volume {
    let voxels = with_voxels!(&vol.voxels, v => Element::wrap(rotate_typed(v, vol, degrees, interp)));
    Volume {
        voxels,
        ..vol.clone()
    }
}

fn rotate_typed<T: Element>(v: &[T], vol: &Volume, degrees: f64, interp: Interpolation) -> Vec<T> {
    let t = degrees.to_radians();
    let (c, s) = (t.cos(), t.sin());
    let [nx, ny, nz] = vol.dims;
    let (cx, cy) = ((nx as f64 - 1.0) / 2.0, (ny as f64 - 1.0) / 2.0);
    let mut out = Vec::with_capacity(v.len());
    for base in (0..vol.channels * nz).map(|slice| slice * nx * ny) {
        let at = |i: i64, j: i64| -> f64 {
            if i < 0 || j < 0 || i >= nx as i64 || j >= ny as i64 {
                0.0
            } else {
                v[base + i as usize + nx * j as usize].to_f64()
            }
        };
        for j in 0..ny {
            for i in 0..nx {
                let (dx, dy) = (i as f64 - cx, j as f64 - cy);
                let x = cx + c * dx + s * dy;
                let y = cy - s * dx + c * dy;
                let val = match interp {
                    Interpolation::Nearest => at(x.round() as i64, y.round() as i64),
                    Interpolation::Linear => {
                        let (x0, y0) = (x.floor(), y.floor());
                        let (fx, fy) = (x - x0, y - y0);
                        let (x0, y0) = (x0 as i64, y0 as i64);
                        (1.0 - fy) * ((1.0 - fx) * at(x0, y0) + fx * at(x0 + 1, y0))
                            + fy * ((1.0 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1))
                    }
                };
                out.push(T::from_f64(val));
            }
        }
    }
    out
}

/// Arguments of [`NP2DRotate`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateArgs {
    /// Keys to apply to.
    pub applied_keys: Keys,
    /// Angle (degrees), or the range `[-angle, angle]` when `random`.
    pub angle: f64,
    /// Draw the angle uniformly in `[-angle, angle]`.
    #[serde(default)]
    pub random: bool,
}

/// `transforms.NP2DRotate`: rotates each `i`-`j` slice by `angle` degrees (see
/// [`rotate2d`]), or by one angle drawn in `[-angle, angle]` for all keys; recorded.
#[derive(Debug)]
pub struct NP2DRotate {
    keys: Keys,
    angle: f64,
    random: bool,
}

impl FromArgs for NP2DRotate {
    type Args = RotateArgs;
    fn from_args(a: RotateArgs) -> ArgResult<Self> {
        if !a.angle.is_finite() {
            return Err(ArgError::new("angle", "must be finite"));
        }
        Ok(NP2DRotate {
            keys: a.applied_keys,
            angle: a.angle,
            random: a.random,
        })
    }
}

impl Transform for NP2DRotate {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let deg = if self.random {
            uniform(rng, -self.angle.abs(), self.angle.abs())
        } else {
            self.angle
        };
        for k in self.keys.iter() {
            let im = d.image_mut(k)?;
            if im.kind == Kind::Intensity {
                im.ensure_float();
            }
            let before = Grid::of(&im.vol);
            im.vol = rotate2d(&im.vol, deg, interp_for(im.kind));
            im.ops.push(SpatialOp {
                kind: OpKind::Rotate2d { degrees: deg },
                before,
                after: Grid::of(&im.vol),
            });
        }
        Ok(())
    }
}
