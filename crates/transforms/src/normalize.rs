//! Intensity normalisations of MONAI (ours, not the seed's), for hosting models trained
//! with MONAI-style pipelines: `transforms.ScaleIntensityRangePercentiles` and
//! `transforms.NormalizeIntensity`. Outputs are `f32`, like the seed's intensity transforms.

use serde::Deserialize;

use crate::args::{ArgError, ArgResult, Keys, check_range};
use crate::data::Data;
use crate::intensity::floats;
use crate::registry::FromArgs;
use crate::{Result, SampleRng, Transform, TransformError};

/// numpy's `_lerp`: `a + (b - a) t`, computed from `b` when `t >= 0.5`.
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// `numpy.percentile(v, q)` (method `"linear"`) for each `q` in `qs` (each in
/// `[0, 100]`): with `h = (n - 1) q / 100`, the order statistics `v(floor h)` and
/// `v(floor h + 1)` interpolated linearly, as numpy does. The order statistics come from
/// selections (`select_nth_unstable`) on one copy, each in what the previous one left
/// above it, plus a minimum scan for the neighbour: linear time, no sort. Order is
/// `f32::total_cmp` (a positive NaN above `+inf`). `None` for an empty `v`.
pub fn percentiles(v: &[f32], qs: &[f64]) -> Option<Vec<f64>> {
    let n = v.len();
    if n == 0 {
        return None;
    }
    let at: Vec<(usize, usize, f64)> = qs
        .iter()
        .map(|&q| {
            let h = (n - 1) as f64 * (q / 100.0);
            let lo = (h.floor().max(0.0) as usize).min(n - 1);
            (lo, (lo + 1).min(n - 1), h - lo as f64)
        })
        .collect();
    let mut ranks: Vec<usize> = at.iter().flat_map(|&(lo, hi, _)| [lo, hi]).collect();
    ranks.sort_unstable();
    ranks.dedup();
    let mut s = v.to_vec();
    let mut values = Vec::with_capacity(ranks.len());
    // `s[start..]` holds exactly the order statistics `start..n`.
    let mut start = 0;
    for &r in &ranks {
        let tail = &mut s[start..];
        if r == start {
            let m = (0..tail.len())
                .min_by(|&x, &y| tail[x].total_cmp(&tail[y]))
                .unwrap_or(0);
            tail.swap(0, m);
        } else {
            tail.select_nth_unstable_by(r - start, f32::total_cmp);
        }
        values.push(s[r] as f64);
        start = r + 1;
    }
    let value = |r: usize| values[ranks.binary_search(&r).unwrap_or(0)];
    Some(
        at.iter()
            .map(|&(lo, hi, t)| lerp(value(lo), value(hi), t))
            .collect(),
    )
}

/// Arguments of [`ScaleIntensityRangePercentiles`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PercentilesArgs {
    /// Keys to apply to.
    pub fields: Keys,
    /// Percentile (`0..=100`) mapped to `b_min`.
    pub lower: f64,
    /// Percentile (`0..=100`) mapped to `b_max`.
    pub upper: f64,
    /// Output value of the lower percentile.
    pub b_min: f64,
    /// Output value of the upper percentile.
    pub b_max: f64,
    /// Clip to `[b_min, b_max]` (after `relative`).
    #[serde(default)]
    pub clip: bool,
    /// MONAI's `relative`: the output range becomes
    /// `[b_min + (b_max - b_min) lower / 100, b_min + (b_max - b_min) upper / 100]`.
    #[serde(default)]
    pub relative: bool,
    /// Percentiles of each channel separately (default: over all channels).
    #[serde(default)]
    pub channel_wise: bool,
}

/// `transforms.ScaleIntensityRangePercentiles` (ours; MONAI's
/// `ScaleIntensityRangePercentilesd`): `a_min`, `a_max` are the image's `lower` and
/// `upper` percentiles ([`percentiles`], as `numpy.percentile`) over all voxels of all
/// channels (each channel when `channel_wise`); then, as MONAI's `ScaleIntensityRange`,
/// `x -> b_min + (x - a_min) / (a_max - a_min) (b_max - b_min)`, or `x - a_min + b_min`
/// when `a_max == a_min`; clipped to `[b_min, b_max]` when `clip` (the range after
/// `relative`). Output `f32`.
#[derive(Debug)]
pub struct ScaleIntensityRangePercentiles {
    fields: Keys,
    lower: f64,
    upper: f64,
    b_min: f64,
    b_max: f64,
    clip: bool,
    channel_wise: bool,
}

impl FromArgs for ScaleIntensityRangePercentiles {
    type Args = PercentilesArgs;
    fn from_args(a: PercentilesArgs) -> ArgResult<Self> {
        let lower = check_range("lower", a.lower, 0.0, 100.0)?;
        let upper = check_range("upper", a.upper, 0.0, 100.0)?;
        for (name, v) in [("b_min", a.b_min), ("b_max", a.b_max)] {
            if !v.is_finite() {
                return Err(ArgError::new(name, format!("{v} must be finite")));
            }
        }
        let (b_min, b_max) = if a.relative {
            let w = a.b_max - a.b_min;
            (a.b_min + w * lower / 100.0, a.b_min + w * upper / 100.0)
        } else {
            (a.b_min, a.b_max)
        };
        Ok(ScaleIntensityRangePercentiles {
            fields: a.fields,
            lower,
            upper,
            b_min,
            b_max,
            clip: a.clip,
            channel_wise: a.channel_wise,
        })
    }
}

impl ScaleIntensityRangePercentiles {
    fn scale(&self, v: &mut [f32]) {
        let Some(p) = percentiles(v, &[self.lower, self.upper]) else {
            return;
        };
        let (a_min, a_max) = (p[0], p[1]);
        let (b_min, b_max) = (self.b_min, self.b_max);
        let (lo, hi) = (b_min.min(b_max) as f32, b_min.max(b_max) as f32);
        let clip = |y: f64| {
            let y = y as f32;
            if self.clip { y.clamp(lo, hi) } else { y }
        };
        if a_max == a_min {
            v.iter_mut().for_each(|x| *x = clip(*x as f64 - a_min + b_min));
        } else {
            let s = (b_max - b_min) / (a_max - a_min);
            v.iter_mut()
                .for_each(|x| *x = clip(b_min + (*x as f64 - a_min) * s));
        }
    }
}

impl Transform for ScaleIntensityRangePercentiles {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.fields.iter() {
            let im = d.image_mut(k)?;
            let n = im.vol.voxel_count();
            let v = floats(im);
            if self.channel_wise {
                v.chunks_mut(n.max(1)).for_each(|c| self.scale(c));
            } else {
                self.scale(v);
            }
        }
        Ok(())
    }
}

/// Arguments of [`NormalizeIntensity`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NormalizeArgs {
    /// Keys to apply to.
    pub fields: Keys,
    /// Statistics over the non-zero voxels only, zeros left as they are.
    #[serde(default)]
    pub nonzero: bool,
    /// Statistics of each channel separately (default: over all channels).
    #[serde(default)]
    pub channel_wise: bool,
    /// Factor applied after the z-score (default 1).
    #[serde(default = "crate::args::one")]
    pub scale: f64,
    /// Offset added after the scaling (default 0).
    #[serde(default)]
    pub shift: f64,
    /// Standard deviation with the `n - 1` divisor (`torch.std`'s default; true by
    /// default), or the population one (`n`, MONAI's `NormalizeIntensity`) when false.
    #[serde(default = "crate::args::yes")]
    pub unbiased: bool,
}

/// `transforms.NormalizeIntensity` (ours; MONAI's `NormalizeIntensityd` without
/// `subtrahend`/`divisor`, plus an affine step): `x -> (x - mean) / std * scale + shift`,
/// mean and standard deviation over all voxels of all channels (each channel when
/// `channel_wise`), or over the non-zero ones when `nonzero` (zero voxels then stay 0, and
/// an all-zero image is left as it is).
///
/// * `std` divides by `n - 1` (`torch.std`, e.g. deepbet's `x.std()`) unless `unbiased` is
///   false: MONAI 1.6's `NormalizeIntensity` uses the population std (`n`).
/// * A zero std (a constant image; a single voxel when unbiased) divides by 1: only the
///   mean is subtracted (then `scale` and `shift` apply), as MONAI.
/// * Sums in `f64`, two passes (mean, then squared deviations). Output `f32`.
#[derive(Debug)]
pub struct NormalizeIntensity {
    fields: Keys,
    nonzero: bool,
    channel_wise: bool,
    scale: f64,
    shift: f64,
    unbiased: bool,
}

impl FromArgs for NormalizeIntensity {
    type Args = NormalizeArgs;
    fn from_args(a: NormalizeArgs) -> ArgResult<Self> {
        for (name, v) in [("scale", a.scale), ("shift", a.shift)] {
            if !v.is_finite() {
                return Err(ArgError::new(name, format!("{v} must be finite")));
            }
        }
        Ok(NormalizeIntensity {
            fields: a.fields,
            nonzero: a.nonzero,
            channel_wise: a.channel_wise,
            scale: a.scale,
            shift: a.shift,
            unbiased: a.unbiased,
        })
    }
}

/// Mean and standard deviation (divisor `n - 1` when `unbiased`, else `n`) of the voxels
/// `keep` selects; `None` when none is selected. A std that is zero or undefined (one
/// voxel, unbiased) is `0`.
pub fn mean_std(v: &[f32], keep: impl Fn(f32) -> bool, unbiased: bool) -> Option<(f64, f64)> {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for &x in v.iter().filter(|&&x| keep(x)) {
        sum += x as f64;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    let mean = sum / n as f64;
    let ss: f64 = v
        .iter()
        .filter(|&&x| keep(x))
        .map(|&x| (x as f64 - mean).powi(2))
        .sum();
    let div = if unbiased { n - 1 } else { n };
    let std = if div == 0 { 0.0 } else { (ss / div as f64).sqrt() };
    Some((mean, std))
}

impl NormalizeIntensity {
    fn normalize(&self, v: &mut [f32]) {
        let nonzero = self.nonzero;
        let keep = |x: f32| !nonzero || x != 0.0;
        let Some((mean, std)) = mean_std(v, keep, self.unbiased) else {
            return;
        };
        let div = if std > 0.0 { std } else { 1.0 };
        let (f, off) = (self.scale / div, self.shift);
        for x in v.iter_mut().filter(|x| keep(**x)) {
            *x = ((*x as f64 - mean) * f + off) as f32;
        }
    }
}

impl Transform for NormalizeIntensity {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.fields.iter() {
            let im = d.image_mut(k)?;
            let n = im.vol.voxel_count();
            if n == 0 {
                return Err(TransformError::invalid(format!("{k:?} has no voxels")));
            }
            let v = floats(im);
            if self.channel_wise {
                v.chunks_mut(n).for_each(|c| self.normalize(c));
            } else {
                self.normalize(v);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// numpy's linear percentile on a full sort.
    fn sorted_percentile(v: &[f32], q: f64) -> f64 {
        let mut s = v.to_vec();
        s.sort_by(f32::total_cmp);
        let h = (s.len() - 1) as f64 * (q / 100.0);
        let lo = h.floor() as usize;
        let hi = (lo + 1).min(s.len() - 1);
        lerp(s[lo] as f64, s[hi] as f64, h - lo as f64)
    }

    #[test]
    fn percentiles_match_a_full_sort() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f32 / (1u64 << 31) as f32
        };
        for n in [1usize, 2, 3, 10, 201, 1000, 4097] {
            // Many ties (rounded values) and distinct values.
            for ties in [true, false] {
                let v: Vec<f32> = (0..n)
                    .map(|_| {
                        let x = next() * 200.0 - 50.0;
                        if ties { x.round() } else { x }
                    })
                    .collect();
                let qs = [0.0, 0.5, 1.0, 25.0, 33.3, 50.0, 99.5, 99.9, 100.0, 0.5];
                let got = percentiles(&v, &qs).unwrap();
                for (q, g) in qs.iter().zip(&got) {
                    assert_eq!(*g, sorted_percentile(&v, *q), "n {n} ties {ties} q {q}");
                }
            }
        }
        assert_eq!(percentiles(&[], &[50.0]), None);
        // numpy: percentile([1, 2, 3, 4], [0.5, 50, 99.5]) == [1.015, 2.5, 3.985].
        let p = percentiles(&[4.0, 1.0, 3.0, 2.0], &[0.5, 50.0, 99.5]).unwrap();
        for (g, w) in p.iter().zip([1.015, 2.5, 3.985]) {
            assert!((g - w).abs() < 1e-12, "{p:?}");
        }
    }

    #[test]
    fn mean_std_divisors() {
        let v = [0.0, 1.0, 2.0, 3.0, 0.0];
        let (m, s) = mean_std(&v, |_| true, true).unwrap();
        assert!((m - 1.2).abs() < 1e-12 && (s - 1.3038404810405297).abs() < 1e-12);
        let (m, s) = mean_std(&v, |x| x != 0.0, false).unwrap();
        assert!((m - 2.0).abs() < 1e-12 && (s - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[5.0], |_| true, true), Some((5.0, 0.0)));
        assert_eq!(mean_std(&[0.0], |x| x != 0.0, true), None);
    }
}
