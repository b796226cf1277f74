//! `transforms.AddExtremePointsChannel` (DEXTR 3D): the six extreme points of the label
//! become a Gaussian heat-map channel appended to the image.
//!
//! * **Points.** For each axis `a` (i, j, k), the foreground voxels (channel 0 `> 0`) with
//!   the smallest and the largest coordinate along `a`, in the order
//!   `[min i, max i, min j, max j, min k, max k]`. **Ties** (several voxels on the extreme
//!   plane): the middle one, number `floor((n - 1) / 2)` of the `n` tied voxels in memory
//!   order (`i` fastest, then `j`, then `k`). Instead of a label volume, the label key may
//!   hold [`Item::Points`] (e.g. the user's clicks), used as they are.
//! * **Perturbation.** Each coordinate of each point gets an offset drawn uniformly in
//!   `[-pert, pert]` voxels, then is clamped into the volume.
//! * **Heat-map.** `h(v) = max over points p of exp(-|v - p|² / (2 sigma²))`, `sigma` in
//!   voxels, distances in index space; then linearly rescaled so its minimum maps to
//!   `rescale_min` and its maximum to `rescale_max` (defaults -1 and 1, like MONAI's
//!   `AddExtremePointsChanneld`); a constant map becomes `rescale_min`.
//! * The points used are stored as [`Item::Points`] under `<label_field>_extreme_points`.

use serde::Deserialize;

use aiaa_imaging::voxels::Element;
use aiaa_imaging::{Volume, with_voxels};

use crate::args::{ArgError, ArgResult, check_positive};
use crate::data::{Data, Item};
use crate::intensity::floats;
use crate::registry::FromArgs;
use crate::rng::uniform;
use crate::{Result, SampleRng, Transform, TransformError};

/// The six extreme points of channel 0's foreground (`> 0`), ties broken as the module
/// docs say; `None` for an empty foreground.
pub fn extreme_points(label: &Volume) -> Option<[[usize; 3]; 6]> {
    let [nx, ny, nz] = label.dims;
    let n = label.voxel_count();
    let mask: Vec<bool> = with_voxels!(&label.voxels, v => v[..n].iter().map(|x| x.to_f64() > 0.0).collect());
    let fg = |i: usize, j: usize, k: usize| mask[i + nx * (j + ny * k)];
    // Pass 1: the extreme coordinate on each axis and how many voxels reach it.
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    let (mut nlo, mut nhi) = ([0usize; 3], [0usize; 3]);
    let mut any = false;
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if !fg(i, j, k) {
                    continue;
                }
                any = true;
                for (a, x) in [i, j, k].into_iter().enumerate() {
                    if x < lo[a] {
                        lo[a] = x;
                        nlo[a] = 0;
                    }
                    if x == lo[a] {
                        nlo[a] += 1;
                    }
                    if x > hi[a] {
                        hi[a] = x;
                        nhi[a] = 0;
                    }
                    if x == hi[a] {
                        nhi[a] += 1;
                    }
                }
            }
        }
    }
    if !any {
        return None;
    }
    // Pass 2: the middle tied voxel of each extreme plane, in memory order.
    let mut pts = [[0usize; 3]; 6];
    let mut seen = [0usize; 6];
    let want: [usize; 6] = std::array::from_fn(|e| {
        let n = if e % 2 == 0 { nlo[e / 2] } else { nhi[e / 2] };
        (n - 1) / 2
    });
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if !fg(i, j, k) {
                    continue;
                }
                let p = [i, j, k];
                for e in 0..6 {
                    let a = e / 2;
                    let target = if e % 2 == 0 { lo[a] } else { hi[a] };
                    if p[a] == target {
                        if seen[e] == want[e] {
                            pts[e] = p;
                        }
                        seen[e] += 1;
                    }
                }
            }
        }
    }
    Some(pts)
}

/// The max-of-Gaussians heat-map of `points` on a `dims` grid (before rescaling), in `f32`:
/// each Gaussian is separable, so per row only `gx[i] * (gy[j] * gz[k])` remains.
pub fn heatmap(dims: [usize; 3], points: &[[f64; 3]], sigma: f64) -> Vec<f32> {
    let g = |n: usize, c: f64| -> Vec<f32> {
        (0..n)
            .map(|x| (-(x as f64 - c).powi(2) / (2.0 * sigma * sigma)).exp() as f32)
            .collect()
    };
    let per_point: Vec<[Vec<f32>; 3]> = points
        .iter()
        .map(|p| [g(dims[0], p[0]), g(dims[1], p[1]), g(dims[2], p[2])])
        .collect();
    let [nx, ny, nz] = dims;
    let mut out = vec![0f32; nx * ny * nz];
    let mut row_scale = vec![0f32; per_point.len()];
    for (k, slice) in out.chunks_exact_mut(nx * ny).enumerate() {
        for (j, row) in slice.chunks_exact_mut(nx).enumerate() {
            for (s, [_, gy, gz]) in row_scale.iter_mut().zip(&per_point) {
                *s = gy[j] * gz[k];
            }
            for ([gx, _, _], &s) in per_point.iter().zip(&row_scale) {
                for (o, &x) in row.iter_mut().zip(gx) {
                    *o = o.max(x * s);
                }
            }
        }
    }
    out
}

/// Linearly maps `v`'s minimum to `lo` and maximum to `hi` (constant input: all `lo`).
pub fn rescale(v: &mut [f32], lo: f32, hi: f32) {
    let (mn, mx) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
        (a.min(x), b.max(x))
    });
    if mx > mn {
        // As a convex combination, so the extremes land exactly on lo and hi.
        let (mn, inv) = (mn as f64, 1.0 / (mx as f64 - mn as f64));
        v.iter_mut().for_each(|x| {
            let t = ((*x as f64 - mn) * inv) as f32;
            *x = lo * (1.0 - t) + hi * t;
        });
    } else {
        v.iter_mut().for_each(|x| *x = lo);
    }
}

/// Arguments of [`AddExtremePointsChannel`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtremeArgs {
    /// The image key (gets the new channel).
    pub image_field: String,
    /// The label key (a label volume, or points).
    pub label_field: String,
    /// Gaussian sigma in voxels.
    pub sigma: f64,
    /// Largest random offset of each coordinate (voxels).
    #[serde(default)]
    pub pert: f64,
    /// Value of the heat-map's minimum (ours; default -1).
    #[serde(default = "minus_one")]
    pub rescale_min: f64,
    /// Value of the heat-map's maximum (ours; default 1).
    #[serde(default = "one")]
    pub rescale_max: f64,
}

fn minus_one() -> f64 {
    -1.0
}

fn one() -> f64 {
    1.0
}

/// `transforms.AddExtremePointsChannel` (see the module docs).
#[derive(Debug)]
pub struct AddExtremePointsChannel {
    image: String,
    label: String,
    sigma: f64,
    pert: f64,
    range: (f32, f32),
}

impl FromArgs for AddExtremePointsChannel {
    type Args = ExtremeArgs;
    fn from_args(a: ExtremeArgs) -> ArgResult<Self> {
        if !(a.pert.is_finite() && a.pert >= 0.0) {
            return Err(ArgError::new("pert", "must be >= 0"));
        }
        if !(a.rescale_min.is_finite() && a.rescale_max.is_finite()) {
            return Err(ArgError::new(
                "rescale_min",
                "rescale_min and rescale_max must be finite",
            ));
        }
        Ok(AddExtremePointsChannel {
            image: a.image_field,
            label: a.label_field,
            sigma: check_positive("sigma", a.sigma)?,
            pert: a.pert,
            range: (a.rescale_min as f32, a.rescale_max as f32),
        })
    }
}

impl Transform for AddExtremePointsChannel {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let dims = d.volume(&self.image)?.dims;
        let base: Vec<[f64; 3]> = match d.item(&self.label)? {
            Item::Points(p) if !p.is_empty() => p.clone(),
            Item::Points(_) => {
                return Err(TransformError::invalid(format!(
                    "{:?} holds no points",
                    self.label
                )));
            }
            _ => {
                let lab = d.volume(&self.label)?;
                if lab.dims != dims {
                    return Err(TransformError::invalid(format!(
                        "label grid {:?} differs from image grid {dims:?}",
                        lab.dims
                    )));
                }
                extreme_points(lab)
                    .ok_or_else(|| {
                        TransformError::invalid(format!("label {:?} has no foreground", self.label))
                    })?
                    .iter()
                    .map(|p| p.map(|x| x as f64))
                    .collect()
            }
        };
        let pts: Vec<[f64; 3]> = base
            .iter()
            .map(|p| {
                std::array::from_fn(|a| {
                    (p[a] + uniform(rng, -self.pert, self.pert)).clamp(0.0, (dims[a] - 1) as f64)
                })
            })
            .collect();
        let mut h = heatmap(dims, &pts, self.sigma);
        rescale(&mut h, self.range.0, self.range.1);
        let im = d.image_mut(&self.image)?;
        // Appending a channel is appending its voxels (channels are the slowest axis).
        floats(im).extend_from_slice(&h);
        im.vol.channels += 1;
        im.channel_dim = true;
        d.insert(format!("{}_extreme_points", self.label), Item::Points(pts));
        Ok(())
    }
}
