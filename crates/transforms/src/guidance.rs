//! Interactive guidance (deepgrow / DeepEdit): the user's clicks as a sample's data, as
//! network input channels, and the click simulation that trains and evaluates models on them.
//!
//! * **Clicks** ([`Clicks`], [`Item::Clicks`]): foreground (add this) and background (remove
//!   this) points in voxel indices `[i, j, k]` of the image they are stored with.
//! * **Guidance signal** (`transforms.AddGuidanceSignal`, MONAI's `AddGuidanceSignald`): the
//!   image keeps its first `number_intensity_ch` channels (earlier guidance channels are
//!   dropped, so the transform can run again after every click) and gains two: foreground,
//!   then background. Each is a point map (1 at every click, its coordinates truncated to
//!   integers and clamped into the volume; a point with a negative coordinate is skipped,
//!   as MONAI skips its `-1` placeholders), smoothed by MONAI's `GaussianFilter` (a separable
//!   kernel of `2·tail + 1` taps, `tail = ⌊max(4σ, 0.5) + 0.5⌋`, tap `x` being the erf
//!   integral of the unit Gaussian over `[x − ½, x + ½]`, zeros outside the volume), then
//!   scaled to `[0, 1]` by its minimum and maximum; a sign without clicks is all zeros.
//! * **Discrepancy** ([`discrepancy`], MONAI's `FindDiscrepancyRegionsd`): where the label
//!   (`> 0.5`) and the prediction (`> 0.5`) disagree: missed voxels (a foreground click
//!   belongs there) and extra ones (a background click).
//! * **Simulated clicks, MONAI's rule** ([`click_weights`], [`sample_click`]; its
//!   `AddInitialSeedPointd` for the first click, `AddRandomGuidanced` for the next): a voxel
//!   of the region drawn with probability `∝ exp(d) − 1`, `d` its chessboard distance to the
//!   nearest voxel outside the region ([`chessboard_distance`], SciPy's
//!   `distance_transform_cdt`), so clicks land deep inside; the next click corrects the
//!   larger of the two discrepancies (missed voxels on a tie) ([`next_click`]).
//!
//! The previous mask, when a model reads it, is a further channel that the callers add
//! (`aiaa_train::interaction`, the deepgrow engine); `docs/interactive.md` says why.
//!
//! MONAI agreement (`tests/guidance_monai.rs`, against the project venv's MONAI): the same
//! clicks give the same guidance channels, the same discrepancy, the same distances and the
//! same click probabilities.

use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use serde::Deserialize;

use crate::args::{ArgError, ArgResult, check_positive};
use crate::data::{Data, Item};
use crate::intensity::floats;
use crate::registry::FromArgs;
use crate::{Result, SampleRng, Transform, TransformError};

/// The clicks on one image, in voxel indices `[i, j, k]` of its grid.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Clicks {
    /// Points inside what the mask should cover.
    pub foreground: Vec<[f64; 3]>,
    /// Points outside it.
    pub background: Vec<[f64; 3]>,
}

impl Clicks {
    /// No clicks at all.
    pub fn is_empty(&self) -> bool {
        self.foreground.is_empty() && self.background.is_empty()
    }

    /// The two guidance channels of these clicks on a `dims` grid, foreground then
    /// background ([`guidance_signal`]), as a click network takes them after the image.
    pub fn guidance(&self, dims: [usize; 3], sigma: f64) -> Vec<f32> {
        let mut v = guidance_signal(dims, &self.foreground, sigma);
        v.extend(guidance_signal(dims, &self.background, sigma));
        v
    }

    /// Whether these clicks are `earlier`'s with clicks added (or the same): clients
    /// resend every click, so this is how a request continues the last one.
    pub fn extends(&self, earlier: &Clicks) -> bool {
        self.foreground.starts_with(&earlier.foreground) && self.background.starts_with(&earlier.background)
    }

    /// Adds a click of the given sign.
    pub fn push(&mut self, click: Click) {
        match click {
            Click::Foreground(p) => self.foreground.push(p.map(|x| x as f64)),
            Click::Background(p) => self.background.push(p.map(|x| x as f64)),
        }
    }
}

/// One simulated click.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Click {
    /// Add this voxel's region to the mask.
    Foreground([usize; 3]),
    /// Remove it.
    Background([usize; 3]),
}

/// MONAI's Gaussian kernel (`gaussian_1d(sigma, truncated=4.0, approx="erf")`), not
/// normalised.
pub fn gaussian_kernel(sigma: f64) -> Vec<f64> {
    let tail = ((sigma * 4.0).max(0.5) + 0.5) as i64;
    let t = std::f64::consts::FRAC_1_SQRT_2 / sigma.abs();
    (-tail..=tail)
        .map(|x| {
            let x = x as f64;
            (0.5 * (libm::erf(t * (x + 0.5)) - libm::erf(t * (x - 0.5)))).max(0.0)
        })
        .collect()
}

/// The guidance channel of `points` on a `dims` grid: see the module docs.
///
/// The separable blur of unit impulses with zeros outside the volume is the sum, over the
/// impulses, of the kernel's outer product centred on each and cut at the volume's faces. So
/// each click touches only its kernel's box (17³ voxels at σ 2), not the whole grid: a click
/// costs microseconds where three full-grid passes cost tens of milliseconds on a 64 × 80 ×
/// 64 grid.
pub fn guidance_signal(dims: [usize; 3], points: &[[f64; 3]], sigma: f64) -> Vec<f32> {
    let n = dims.iter().product();
    // MONAI skips points with a negative coordinate (its placeholders), truncates the rest
    // towards zero and clamps them into the volume; clicks on one voxel make one impulse.
    let mut impulses: Vec<[usize; 3]> = points
        .iter()
        .filter(|p| n > 0 && p.iter().all(|x| *x >= 0.0))
        .map(|p| std::array::from_fn(|a| (p[a].trunc() as usize).min(dims[a] - 1)))
        .collect();
    impulses.sort_unstable();
    impulses.dedup();
    if impulses.is_empty() {
        return vec![0.0; n];
    }
    let kernel = gaussian_kernel(sigma);
    let tail = kernel.len() / 2;
    let mut v = vec![0.0f64; n];
    for p in &impulses {
        // Kernel taps for positions lo..hi along `a`: kernel[q + tail - p[a]].
        let span = |a: usize| (p[a].saturating_sub(tail), (p[a] + tail + 1).min(dims[a]));
        let tap = |a: usize, q: usize| kernel[q + tail - p[a]];
        let ((x0, x1), (y0, y1), (z0, z1)) = (span(0), span(1), span(2));
        for z in z0..z1 {
            let wz = tap(2, z);
            for y in y0..y1 {
                let wyz = tap(1, y) * wz;
                let row = dims[0] * (y + dims[1] * z);
                for x in x0..x1 {
                    v[row + x] += tap(0, x) * wyz;
                }
            }
        }
    }
    let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
        (lo.min(x), hi.max(x))
    });
    let span = hi - lo;
    v.iter()
        .map(|&x| if span > 0.0 { ((x - lo) / span) as f32 } else { 0.0 })
        .collect()
}

/// Missed and extra voxels of `pred` against `label` (both thresholded at 0.5).
pub fn discrepancy(label: &[f32], pred: &[f32]) -> (Vec<bool>, Vec<bool>) {
    label
        .iter()
        .zip(pred)
        .map(|(&l, &p)| {
            let (l, p) = (l > 0.5, p > 0.5);
            (l && !p, p && !l)
        })
        .unzip()
}

/// The chessboard distance of every voxel of `region` to the nearest voxel outside it (0
/// outside the region; SciPy's `distance_transform_cdt(metric="chessboard")`). Voxels with
/// no outside voxel anywhere get `u32::MAX`. Two raster passes over the 26-neighbourhood,
/// exact for this metric.
pub fn chessboard_distance(region: &[bool], dims: [usize; 3]) -> Vec<u32> {
    let [nx, ny, nz] = dims;
    let mut d: Vec<u32> = region.iter().map(|&r| if r { u32::MAX } else { 0 }).collect();
    let at = |i: usize, j: usize, k: usize| i + nx * (j + ny * k);
    let mut pass = |order: &mut dyn Iterator<Item = (usize, usize, usize)>, sign: isize| {
        for (i, j, k) in order {
            let o = at(i, j, k);
            if d[o] == 0 {
                continue;
            }
            let mut best = d[o];
            // The half of the neighbourhood already visited in this pass's order.
            for dk in -1isize..=1 {
                for dj in -1isize..=1 {
                    for di in -1isize..=1 {
                        let before = (dk, dj, di) < (0, 0, 0);
                        if (sign > 0) != before || (di, dj, dk) == (0, 0, 0) {
                            continue;
                        }
                        let (a, b, c) = (i as isize + di, j as isize + dj, k as isize + dk);
                        if a < 0 || b < 0 || c < 0 || a >= nx as isize || b >= ny as isize || c >= nz as isize
                        {
                            continue;
                        }
                        let q = d[at(a as usize, b as usize, c as usize)];
                        best = best.min(q.saturating_add(1));
                    }
                }
            }
            d[o] = best;
        }
    };
    let forward = &mut (0..nz).flat_map(|k| (0..ny).flat_map(move |j| (0..nx).map(move |i| (i, j, k))));
    pass(forward, 1);
    let backward = &mut (0..nz).rev().flat_map(|k| {
        (0..ny)
            .rev()
            .flat_map(move |j| (0..nx).rev().map(move |i| (i, j, k)))
    });
    pass(backward, -1);
    d
}

/// The voxels of `region` (offsets) and the probability of each as MONAI's next click:
/// `∝ exp(d) − 1`, `d` the chessboard distance to outside the region. Empty for an empty
/// region.
pub fn click_weights(region: &[bool], dims: [usize; 3]) -> Vec<(usize, f64)> {
    let d = chessboard_distance(region, dims);
    let mut w: Vec<(usize, f64)> = region
        .iter()
        .enumerate()
        .filter(|(_, r)| **r)
        .map(|(o, _)| (o, (d[o] as f64).exp_m1()))
        .collect();
    let total: f64 = w.iter().map(|(_, p)| p).sum();
    if total > 0.0 && total.is_finite() {
        w.iter_mut().for_each(|(_, p)| *p /= total);
    }
    w
}

/// A voxel of `region` drawn by MONAI's rule ([`click_weights`]); `None` for an empty region.
pub fn sample_click(region: &[bool], dims: [usize; 3], rng: &mut SampleRng) -> Option<[usize; 3]> {
    let w = click_weights(region, dims);
    let dist = WeightedIndex::new(w.iter().map(|(_, p)| *p)).ok()?;
    let o = w[dist.sample(rng)].0;
    Some([o % dims[0], (o / dims[0]) % dims[1], o / (dims[0] * dims[1])])
}

/// The next simulated click for `pred` against `label` by MONAI's rule: in the missed
/// voxels when they are at least as many as the extra ones (and there are any), else in the
/// extra ones; `None` when they agree.
pub fn next_click(label: &[f32], pred: &[f32], dims: [usize; 3], rng: &mut SampleRng) -> Option<Click> {
    let (missed, extra) = discrepancy(label, pred);
    let (nm, ne) = (
        missed.iter().filter(|m| **m).count(),
        extra.iter().filter(|e| **e).count(),
    );
    if nm >= ne && nm > 0 {
        sample_click(&missed, dims, rng).map(Click::Foreground)
    } else if ne > nm {
        sample_click(&extra, dims, rng).map(Click::Background)
    } else {
        None
    }
}

/// Arguments of [`AddGuidanceSignal`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuidanceSignalArgs {
    #[serde(default = "image_field")]
    image_field: String,
    #[serde(default = "guidance_field")]
    guidance_field: String,
    #[serde(default = "default_sigma")]
    sigma: f64,
    #[serde(default = "one")]
    number_intensity_ch: usize,
}

fn image_field() -> String {
    "image".into()
}
fn guidance_field() -> String {
    "guidance".into()
}
fn label_field() -> String {
    "label".into()
}
fn default_sigma() -> f64 {
    2.0
}
fn one() -> usize {
    1
}

/// `transforms.AddGuidanceSignal` (see the module docs).
#[derive(Debug)]
pub struct AddGuidanceSignal {
    image: String,
    guidance: String,
    sigma: f64,
    intensity_channels: usize,
}

impl FromArgs for AddGuidanceSignal {
    type Args = GuidanceSignalArgs;
    fn from_args(a: GuidanceSignalArgs) -> ArgResult<Self> {
        if a.number_intensity_ch == 0 {
            return Err(ArgError::new("number_intensity_ch", "must be at least 1"));
        }
        Ok(AddGuidanceSignal {
            image: a.image_field,
            guidance: a.guidance_field,
            sigma: check_positive("sigma", a.sigma)?,
            intensity_channels: a.number_intensity_ch,
        })
    }
}

impl Transform for AddGuidanceSignal {
    fn apply(&self, d: &mut Data, _rng: &mut SampleRng) -> Result<()> {
        let clicks = match d.item(&self.guidance)? {
            Item::Clicks(c) => c.clone(),
            other => {
                return Err(TransformError::invalid(format!(
                    "{:?} holds {}, not clicks",
                    self.guidance,
                    other.kind_name()
                )));
            }
        };
        let im = d.image_mut(&self.image)?;
        let dims = im.vol.dims;
        if im.vol.channels < self.intensity_channels {
            return Err(TransformError::invalid(format!(
                "{:?} has {} channel(s); number_intensity_ch is {}",
                self.image, im.vol.channels, self.intensity_channels
            )));
        }
        let n: usize = dims.iter().product();
        let keep = self.intensity_channels;
        let v = floats(im);
        v.truncate(n * keep);
        v.extend(clicks.guidance(dims, self.sigma));
        im.vol.channels = keep + 2;
        im.channel_dim = true;
        Ok(())
    }
}

/// Arguments of [`AddInitialSeedPoint`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedPointArgs {
    #[serde(default = "label_field")]
    label_field: String,
    #[serde(default = "guidance_field")]
    guidance_field: String,
}

/// `transforms.AddInitialSeedPoint` (MONAI's `AddInitialSeedPointd` in 3D): the first
/// click, one foreground click in the label drawn by MONAI's rule, stored as [`Clicks`]
/// under `guidance_field`.
#[derive(Debug)]
pub struct AddInitialSeedPoint {
    label: String,
    guidance: String,
}

impl FromArgs for AddInitialSeedPoint {
    type Args = SeedPointArgs;
    fn from_args(a: SeedPointArgs) -> ArgResult<Self> {
        Ok(AddInitialSeedPoint {
            label: a.label_field,
            guidance: a.guidance_field,
        })
    }
}

impl Transform for AddInitialSeedPoint {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let label = d.volume(&self.label)?;
        let dims = label.dims;
        let n: usize = dims.iter().product();
        let region: Vec<bool> = label.voxels.to_f32_vec()[..n].iter().map(|&v| v > 0.5).collect();
        let seed = sample_click(&region, dims, rng).ok_or_else(|| {
            TransformError::invalid(format!("label {:?} has no foreground to click in", self.label))
        })?;
        let mut clicks = Clicks::default();
        clicks.push(Click::Foreground(seed));
        d.insert(self.guidance.clone(), Item::Clicks(clicks));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    fn brute_chessboard(region: &[bool], dims: [usize; 3]) -> Vec<u32> {
        let at = |o: usize| [o % dims[0], (o / dims[0]) % dims[1], o / (dims[0] * dims[1])];
        (0..region.len())
            .map(|o| {
                if !region[o] {
                    return 0;
                }
                let p = at(o);
                (0..region.len())
                    .filter(|q| !region[*q])
                    .map(|q| {
                        let r = at(q);
                        (0..3).map(|a| p[a].abs_diff(r[a])).max().unwrap() as u32
                    })
                    .min()
                    .unwrap_or(u32::MAX)
            })
            .collect()
    }

    #[test]
    fn chessboard_distance_is_exact() {
        let dims = [9, 7, 6];
        let mut rng = sample_rng(3, 0, 0);
        for fill in [0.5, 0.8, 0.95] {
            let region: Vec<bool> = (0..dims.iter().product::<usize>())
                .map(|_| rand::Rng::random_bool(&mut rng, fill))
                .collect();
            assert_eq!(
                chessboard_distance(&region, dims),
                brute_chessboard(&region, dims)
            );
        }
        assert_eq!(chessboard_distance(&[true; 8], [2, 2, 2]), vec![u32::MAX; 8]);
    }

    #[test]
    fn the_kernel_is_monais() {
        // gaussian_1d(2.0, truncated=4.0, approx="erf"): 17 taps, centre 0.19741265.
        let k = gaussian_kernel(2.0);
        assert_eq!(k.len(), 17);
        assert!((k[8] - 0.197_412_65).abs() < 1e-7, "{}", k[8]);
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    }

    #[test]
    fn the_larger_discrepancy_gets_the_click() {
        let dims = [6, 1, 1];
        let label = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0];
        let mut rng = sample_rng(0, 0, 0);
        // Two missed, one extra: a foreground click in the missed voxels.
        let pred = [0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        assert!(matches!(
            next_click(&label, &pred, dims, &mut rng),
            Some(Click::Foreground([0 | 1, 0, 0]))
        ));
        // One missed, two extra: background.
        let pred = [0.0, 1.0, 1.0, 1.0, 1.0, 0.0];
        assert!(matches!(
            next_click(&label, &pred, dims, &mut rng),
            Some(Click::Background([3 | 4, 0, 0]))
        ));
        assert_eq!(next_click(&label, &label, dims, &mut rng), None);
    }
}
