//! `transforms_fastaug.TransformVolumeCropROIFastPosNegRatio`: rotation, scaling, elastic
//! deformation and ROI cropping in one resampling pass (each output voxel is interpolated
//! once from the input).
//!
//! * **Centre**: a foreground voxel of the label with probability `pos / (pos + neg)`, else
//!   a background voxel (falls back to the other kind when one is absent). The label is the
//!   applied key holding a label ([`Kind::Label`]).
//! * **Rotation** (`rotation`): angles about the three axes drawn uniformly in
//!   `[-rotation_degree, rotation_degree]`, `R = Rz Ry Rx` in index space.
//! * **Scaling** (`scale`): per axis `1 + u`, `u` uniform in `[-scale_factor, scale_factor]`.
//! * **Deformation** (`deform`): a displacement field on a 4x4x4 control grid spanning the
//!   ROI, each component `N(0, 2²)` voxels, trilinearly interpolated.
//! * Output voxel `o` samples input `c + R S (o - (size - 1) / 2) + disp(o)`: intensities
//!   trilinear, labels nearest, 0 outside the input. The output geometry is the affine
//!   part of that map. The warp is recorded as [`OpKind::Warp`], which cannot be inverted.

use aiaa_imaging::geometry::{Geometry, mat_mul};
use aiaa_imaging::voxels::Element;
use aiaa_imaging::{Volume, with_voxels};
use rayon::prelude::*;
use serde::Deserialize;

use crate::args::{ArgError, ArgResult, Keys, check3};
use crate::crop::pos_neg_centre;
use crate::data::{Data, Kind};
use crate::intensity::floats;
use crate::record::{Grid, OpKind, SpatialOp};
use crate::registry::FromArgs;
use crate::rng::{normal, uniform};
use crate::{Result, SampleRng, Transform, TransformError};

/// Control points per axis of the deformation grid.
const CONTROL: usize = 4;
/// Standard deviation (voxels) of the control-point displacements.
const DEFORM_STD: f64 = 2.0;

/// Arguments of [`TransformVolumeCropROIFastPosNegRatio`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastAugArgs {
    /// Keys to apply to (images and one label).
    pub applied_keys: Keys,
    /// ROI size.
    pub size: Vec<usize>,
    /// Elastic deformation.
    #[serde(default)]
    pub deform: bool,
    /// Random rotation.
    #[serde(default)]
    pub rotation: bool,
    /// Largest rotation (degrees) about each axis.
    #[serde(default)]
    pub rotation_degree: f64,
    /// Random scaling.
    #[serde(default)]
    pub scale: bool,
    /// Largest relative scale change.
    #[serde(default)]
    pub scale_factor: f64,
    /// Weight of positive ROIs.
    #[serde(default = "one")]
    pub pos: f64,
    /// Weight of negative ROIs.
    #[serde(default = "one")]
    pub neg: f64,
}

fn one() -> f64 {
    1.0
}

/// The fast augmentation (see the module docs).
#[derive(Debug)]
pub struct TransformVolumeCropROIFastPosNegRatio {
    keys: Keys,
    size: [usize; 3],
    deform: bool,
    rotation: Option<f64>,
    scale: Option<f64>,
    p_pos: f64,
}

impl FromArgs for TransformVolumeCropROIFastPosNegRatio {
    type Args = FastAugArgs;
    fn from_args(a: FastAugArgs) -> ArgResult<Self> {
        let size = check3("size", &a.size)?;
        if size.iter().any(|&s| s == 0 || s > 1024) {
            return Err(ArgError::new("size", "sizes must be in 1..=1024"));
        }
        if !(a.rotation_degree.is_finite() && (0.0..=180.0).contains(&a.rotation_degree)) {
            return Err(ArgError::new("rotation_degree", "must be in [0, 180]"));
        }
        if !(a.scale_factor.is_finite() && (0.0..1.0).contains(&a.scale_factor)) {
            return Err(ArgError::new("scale_factor", "must be in [0, 1)"));
        }
        for (n, v) in [("pos", a.pos), ("neg", a.neg)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ArgError::new(n, "must be >= 0"));
            }
        }
        if a.pos + a.neg <= 0.0 {
            return Err(ArgError::new("pos", "pos + neg must be > 0"));
        }
        Ok(TransformVolumeCropROIFastPosNegRatio {
            keys: a.applied_keys,
            size,
            deform: a.deform,
            rotation: a.rotation.then_some(a.rotation_degree),
            scale: a.scale.then_some(a.scale_factor),
            p_pos: a.pos / (a.pos + a.neg),
        })
    }
}

fn rotation(rx: f64, ry: f64, rz: f64) -> [[f64; 3]; 3] {
    let (cx, sx, cy, sy, cz, sz) = (rx.cos(), rx.sin(), ry.cos(), ry.sin(), rz.cos(), rz.sin());
    let x = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]];
    let y = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    let z = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]];
    mat_mul(&z, &mat_mul(&y, &x))
}

/// Trilinear interpolation of a `CONTROL³` grid of 3-vectors at fractional grid position.
fn control_at(grid: &[[f64; 3]], p: [f64; 3]) -> [f64; 3] {
    let c = CONTROL - 1;
    let idx = |a: usize| -> (usize, f64) {
        let x = p[a].clamp(0.0, c as f64);
        let i = (x.floor() as usize).min(c - 1);
        (i, x - i as f64)
    };
    let ((i, fx), (j, fy), (k, fz)) = (idx(0), idx(1), idx(2));
    let mut out = [0.0; 3];
    for (dk, wz) in [(0, 1.0 - fz), (1, fz)] {
        for (dj, wy) in [(0, 1.0 - fy), (1, fy)] {
            for (di, wx) in [(0, 1.0 - fx), (1, fx)] {
                let g = grid[(i + di) + CONTROL * ((j + dj) + CONTROL * (k + dk))];
                let w = wx * wy * wz;
                (0..3).for_each(|a| out[a] += w * g[a]);
            }
        }
    }
    out
}

/// Samples one channel `src` (grid `dims`) at `coords` (linear or nearest, 0 outside).
fn sample_channel<T: Element>(src: &[T], dims: [usize; 3], coords: &[[f32; 3]], nearest: bool) -> Vec<T> {
    let [nx, ny, nz] = dims;
    let at = |i: i64, j: i64, k: i64| -> f64 {
        if i < 0 || j < 0 || k < 0 || i >= nx as i64 || j >= ny as i64 || k >= nz as i64 {
            0.0
        } else {
            src[i as usize + nx * (j as usize + ny * k as usize)].to_f64()
        }
    };
    coords
        .par_iter()
        .map(|p| {
            let [x, y, z] = p.map(f64::from);
            let val = if nearest {
                at(x.round() as i64, y.round() as i64, z.round() as i64)
            } else {
                let (x0, y0, z0) = (x.floor(), y.floor(), z.floor());
                let (fx, fy, fz) = (x - x0, y - y0, z - z0);
                let (x0, y0, z0) = (x0 as i64, y0 as i64, z0 as i64);
                let mut acc = 0.0;
                for (dz, wz) in [(0, 1.0 - fz), (1, fz)] {
                    for (dy, wy) in [(0, 1.0 - fy), (1, fy)] {
                        for (dx, wx) in [(0, 1.0 - fx), (1, fx)] {
                            let w = wx * wy * wz;
                            if w > 0.0 {
                                acc += w * at(x0 + dx, y0 + dy, z0 + dz);
                            }
                        }
                    }
                }
                acc
            };
            T::from_f64(val)
        })
        .collect()
}

fn sample_typed<T: Element>(v: &[T], vol: &Volume, coords: &[[f32; 3]], nearest: bool) -> Vec<T> {
    let n = vol.voxel_count();
    (0..vol.channels)
        .flat_map(|c| sample_channel(&v[c * n..(c + 1) * n], vol.dims, coords, nearest))
        .collect()
}

/// Samples `vol` at the continuous input indices `coords` (linear or nearest, 0 outside).
fn sample(vol: &Volume, coords: &[[f32; 3]], size: [usize; 3], nearest: bool) -> Result<Volume> {
    let voxels = with_voxels!(&vol.voxels, v => Element::wrap(sample_typed(v, vol, coords, nearest)));
    Ok(Volume::new(size, vol.channels, vol.geometry, voxels)?)
}

impl Transform for TransformVolumeCropROIFastPosNegRatio {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        // All draws first, in a fixed order, whatever the data.
        let angles: [f64; 3] = match self.rotation {
            Some(deg) => [(); 3].map(|_| uniform(rng, -deg, deg).to_radians()),
            None => [0.0; 3],
        };
        let scales: [f64; 3] = match self.scale {
            Some(f) => [(); 3].map(|_| 1.0 + uniform(rng, -f, f)),
            None => [1.0; 3],
        };
        let control: Vec<[f64; 3]> = if self.deform {
            (0..CONTROL.pow(3))
                .map(|_| [(); 3].map(|_| DEFORM_STD * normal(rng)))
                .collect()
        } else {
            Vec::new()
        };
        let label_key = self
            .keys
            .iter()
            .find(|k| d.image(k).is_ok_and(|im| im.kind == Kind::Label))
            .ok_or_else(|| TransformError::invalid("no label among applied_keys"))?
            .to_owned();
        let lab = d.volume(&label_key)?;
        let dims = lab.dims;
        let centre = pos_neg_centre(lab, rng, self.p_pos)?.map(|x| x as f64);
        let geometry = lab.geometry;

        let r = rotation(angles[0], angles[1], angles[2]);
        let m: [[f64; 3]; 3] =
            std::array::from_fn(|row| std::array::from_fn(|col| r[row][col] * scales[col]));
        let s = self.size;
        let half: [f64; 3] = std::array::from_fn(|a| (s[a] as f64 - 1.0) / 2.0);
        let mut coords = vec![[0f32; 3]; s[0] * s[1] * s[2]];
        coords
            .par_chunks_mut(s[0] * s[1])
            .enumerate()
            .for_each(|(k, slab)| {
                for j in 0..s[1] {
                    for i in 0..s[0] {
                        let q = [i as f64 - half[0], j as f64 - half[1], k as f64 - half[2]];
                        let mut p: [f64; 3] = std::array::from_fn(|row| {
                            centre[row] + m[row][0] * q[0] + m[row][1] * q[1] + m[row][2] * q[2]
                        });
                        if !control.is_empty() {
                            let g = [i, j, k].map(|x| x as f64);
                            let gp = std::array::from_fn(|a| {
                                if s[a] > 1 {
                                    g[a] / (s[a] - 1) as f64 * (CONTROL - 1) as f64
                                } else {
                                    0.0
                                }
                            });
                            let dsp = control_at(&control, gp);
                            (0..3).for_each(|a| p[a] += dsp[a]);
                        }
                        slab[i + s[0] * j] = p.map(|x| x as f32);
                    }
                }
            });

        // Output geometry: the affine part of the map (linear = L * M, origin at q = -half).
        let lin = mat_mul(&geometry.linear(), &m);
        let o = geometry.index_to_physical(std::array::from_fn(|row| {
            centre[row] - (0..3).map(|c| m[row][c] * half[c]).sum::<f64>()
        }));
        let affine: [[f64; 4]; 3] =
            std::array::from_fn(|row| [lin[row][0], lin[row][1], lin[row][2], o[row]]);
        let out_geometry = Geometry::from_affine(&affine)
            .ok_or_else(|| TransformError::invalid("degenerate geometry after the warp"))?;

        for k in self.keys.iter() {
            let im = d.image_mut(k)?;
            if im.vol.dims != dims {
                return Err(TransformError::invalid(format!(
                    "{k:?} is not on the label's grid"
                )));
            }
            let nearest = im.kind == Kind::Label;
            if !nearest {
                floats(im);
            }
            let before = Grid::of(&im.vol);
            let mut out = sample(&im.vol, &coords, s, nearest)?;
            out.geometry = out_geometry;
            im.vol = out;
            im.ops.push(SpatialOp {
                kind: OpKind::Warp,
                before,
                after: Grid::of(&im.vol),
            });
        }
        Ok(())
    }
}
