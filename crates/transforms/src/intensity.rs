//! Intensity transforms: `ScaleIntensityRange`, `ScaleIntensityOscillation`,
//! `NormalizeNonzeroIntensities`, `AdjustContrast`, `AddGaussianNoise`, `CenterData`, and
//! the label conversion `BratsConvertLabels`. Outputs are `f32` (labels: `u8`).

use aiaa_imaging::{VoxelType, Voxels};
use serde::Deserialize;

use crate::args::{ArgError, ArgResult, Keys, check_positive};
use crate::channels::FieldsArgs;
use crate::data::{Data, Image, Kind};
use crate::registry::FromArgs;
use crate::rng::{normal, uniform};
use crate::{Result, SampleRng, Transform};

/// The voxels of `im` as `f32` (cast in place if needed).
pub fn floats(im: &mut Image) -> &mut Vec<f32> {
    if im.vol.voxel_type() != VoxelType::F32 {
        im.vol = im.vol.cast(VoxelType::F32);
    }
    match &mut im.vol.voxels {
        Voxels::F32(v) => v,
        _ => unreachable!("cast to f32 above"),
    }
}

/// `transforms.ScaleIntensityRange`, two readings of the seed:
///
/// * with `a_min`, `a_max`, `b_min`, `b_max` (the example configs; MONAI's
///   `ScaleIntensityRanged`): `b_min + (x - a_min) / (a_max - a_min) * (b_max - b_min)`,
///   then clipped to `[b_min, b_max]` when `clip` is true;
/// * with `magnitude` (appendix 10.2: "randomly shift the intensity level"): adds one
///   offset drawn uniformly in `[-magnitude, magnitude]` to every voxel.
///
/// Giving both forms, or neither, is an argument error.
#[derive(Debug)]
pub struct ScaleIntensityRange {
    field: String,
    mode: RangeMode,
}

#[derive(Debug, Clone, Copy)]
enum RangeMode {
    Range {
        a_min: f64,
        a_max: f64,
        b_min: f64,
        b_max: f64,
        clip: bool,
    },
    Shift {
        magnitude: f64,
    },
}

/// Arguments of [`ScaleIntensityRange`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleRangeArgs {
    /// The key.
    pub field: String,
    /// Input range low.
    pub a_min: Option<f64>,
    /// Input range high.
    pub a_max: Option<f64>,
    /// Output range low.
    pub b_min: Option<f64>,
    /// Output range high.
    pub b_max: Option<f64>,
    /// Clip to the output range.
    #[serde(default)]
    pub clip: bool,
    /// Random shift magnitude (appendix form).
    pub magnitude: Option<f64>,
}

impl FromArgs for ScaleIntensityRange {
    type Args = ScaleRangeArgs;
    fn from_args(a: ScaleRangeArgs) -> ArgResult<Self> {
        let range = [a.a_min, a.a_max, a.b_min, a.b_max];
        let mode = match (range, a.magnitude) {
            ([Some(a_min), Some(a_max), Some(b_min), Some(b_max)], None) => {
                if !(a_max - a_min).is_finite() || a_max == a_min {
                    return Err(ArgError::new("a_max", "must differ from a_min"));
                }
                if !(b_min.is_finite() && b_max.is_finite()) {
                    return Err(ArgError::new("b_min", "b_min and b_max must be finite"));
                }
                RangeMode::Range {
                    a_min,
                    a_max,
                    b_min,
                    b_max,
                    clip: a.clip,
                }
            }
            ([None, None, None, None], Some(m)) => RangeMode::Shift {
                magnitude: check_positive("magnitude", m)?,
            },
            ([None, None, None, None], None) => {
                return Err(ArgError::new(
                    "a_min",
                    "give a_min/a_max/b_min/b_max, or magnitude",
                ));
            }
            (_, Some(_)) => {
                return Err(ArgError::new(
                    "magnitude",
                    "cannot be combined with a_min/a_max/b_min/b_max",
                ));
            }
            (r, None) => {
                let missing =
                    ["a_min", "a_max", "b_min", "b_max"][r.iter().position(Option::is_none).unwrap_or(0)];
                return Err(ArgError::new(missing, "required with the other range arguments"));
            }
        };
        Ok(ScaleIntensityRange { field: a.field, mode })
    }
}

impl Transform for ScaleIntensityRange {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let v = floats(d.image_mut(&self.field)?);
        match self.mode {
            RangeMode::Range {
                a_min,
                a_max,
                b_min,
                b_max,
                clip,
            } => {
                let s = (b_max - b_min) / (a_max - a_min);
                let (lo, hi) = (b_min.min(b_max) as f32, b_min.max(b_max) as f32);
                for x in v.iter_mut() {
                    let y = (b_min + (*x as f64 - a_min) * s) as f32;
                    *x = if clip { y.clamp(lo, hi) } else { y };
                }
            }
            RangeMode::Shift { magnitude } => {
                let off = uniform(rng, -magnitude, magnitude) as f32;
                v.iter_mut().for_each(|x| *x += off);
            }
        }
        Ok(())
    }
}

/// Arguments of the single-field random intensity transforms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MagnitudeArgs {
    /// The key.
    pub field: String,
    /// Largest relative change, `> 0`.
    pub magnitude: f64,
}

/// `transforms.ScaleIntensityOscillation`: multiplies every voxel by `1 + s`, `s` drawn
/// uniformly in `[-magnitude, magnitude]` (one draw per call).
#[derive(Debug)]
pub struct ScaleIntensityOscillation {
    field: String,
    magnitude: f64,
}

impl FromArgs for ScaleIntensityOscillation {
    type Args = MagnitudeArgs;
    fn from_args(a: MagnitudeArgs) -> ArgResult<Self> {
        Ok(ScaleIntensityOscillation {
            field: a.field,
            magnitude: check_positive("magnitude", a.magnitude)?,
        })
    }
}

impl Transform for ScaleIntensityOscillation {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let f = (1.0 + uniform(rng, -self.magnitude, self.magnitude)) as f32;
        floats(d.image_mut(&self.field)?).iter_mut().for_each(|x| *x *= f);
        Ok(())
    }
}

/// `transforms.NormalizeNonzeroIntensities`: per channel, the non-zero voxels become
/// `(x - mean) / std` over the non-zero voxels (population std; a zero std divides by 1);
/// zero voxels stay 0.
#[derive(Debug)]
pub struct NormalizeNonzeroIntensities {
    fields: Keys,
}

impl FromArgs for NormalizeNonzeroIntensities {
    type Args = FieldsArgs;
    fn from_args(a: FieldsArgs) -> ArgResult<Self> {
        Ok(NormalizeNonzeroIntensities { fields: a.fields })
    }
}

impl Transform for NormalizeNonzeroIntensities {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.fields.iter() {
            let im = d.image_mut(k)?;
            let n = im.vol.voxel_count();
            for ch in floats(im).chunks_mut(n) {
                let (mut s, mut s2, mut c) = (0.0f64, 0.0f64, 0usize);
                for &x in ch.iter().filter(|x| **x != 0.0) {
                    s += x as f64;
                    s2 += x as f64 * x as f64;
                    c += 1;
                }
                if c == 0 {
                    continue;
                }
                let mean = s / c as f64;
                let var = (s2 / c as f64 - mean * mean).max(0.0);
                let std = if var > 0.0 { var.sqrt() } else { 1.0 };
                for x in ch.iter_mut().filter(|x| **x != 0.0) {
                    *x = ((*x as f64 - mean) / std) as f32;
                }
            }
        }
        Ok(())
    }
}

/// Arguments of [`AdjustContrast`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContrastArgs {
    /// The key.
    pub field: String,
    /// Range the gamma is drawn from (ours; default `[0.5, 4.5]` like MONAI).
    #[serde(default = "default_gamma")]
    pub gamma: [f64; 2],
}

fn default_gamma() -> [f64; 2] {
    [0.5, 4.5]
}

/// `transforms.AdjustContrast`: draws `gamma` uniformly in the `gamma` range and maps
/// `x -> ((x - min) / (max - min + 1e-7))^gamma * (max - min) + min` (MONAI's
/// `RandAdjustContrast`), min and max over the whole item.
#[derive(Debug)]
pub struct AdjustContrast {
    field: String,
    gamma: [f64; 2],
}

impl FromArgs for AdjustContrast {
    type Args = ContrastArgs;
    fn from_args(a: ContrastArgs) -> ArgResult<Self> {
        let [lo, hi] = a.gamma;
        if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
            return Err(ArgError::new("gamma", "needs 0 < low <= high"));
        }
        Ok(AdjustContrast {
            field: a.field,
            gamma: a.gamma,
        })
    }
}

impl Transform for AdjustContrast {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let g = uniform(rng, self.gamma[0], self.gamma[1]);
        let v = floats(d.image_mut(&self.field)?);
        let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
        if hi <= lo || hi.is_nan() || lo.is_nan() {
            return Ok(());
        }
        let range = (hi - lo) as f64;
        for x in v.iter_mut() {
            *x = (((*x - lo) as f64 / (range + 1e-7)).powf(g) * range + lo as f64) as f32;
        }
        Ok(())
    }
}

/// Arguments of [`AddGaussianNoise`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseArgs {
    /// The key.
    pub field: String,
    /// Noise standard deviation (ours; default 0.1 like MONAI).
    #[serde(default = "default_std")]
    pub std: f64,
    /// Noise mean (ours; default 0).
    #[serde(default)]
    pub mean: f64,
}

fn default_std() -> f64 {
    0.1
}

/// `transforms.AddGaussianNoise`: adds independent `N(mean, std²)` noise to every voxel.
#[derive(Debug)]
pub struct AddGaussianNoise {
    field: String,
    std: f64,
    mean: f64,
}

impl FromArgs for AddGaussianNoise {
    type Args = NoiseArgs;
    fn from_args(a: NoiseArgs) -> ArgResult<Self> {
        if !(a.std.is_finite() && a.std >= 0.0) {
            return Err(ArgError::new("std", "must be >= 0"));
        }
        Ok(AddGaussianNoise {
            field: a.field,
            std: a.std,
            mean: a.mean,
        })
    }
}

impl Transform for AddGaussianNoise {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let v = floats(d.image_mut(&self.field)?);
        for x in v.iter_mut() {
            *x += (self.mean + self.std * normal(rng)) as f32;
        }
        Ok(())
    }
}

/// Arguments of [`CenterData`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterArgs {
    /// Keys to apply to.
    pub applied_keys: Keys,
    /// Subtracted value; the item's mean when absent or null.
    #[serde(default)]
    pub subtrahend: Option<f64>,
    /// Divisor; the item's (population) std when absent or null (1 if that is 0).
    #[serde(default)]
    pub divisor: Option<f64>,
}

/// `transforms.CenterData`: `(x - subtrahend) / divisor`, each computed per item when not
/// given.
#[derive(Debug)]
pub struct CenterData {
    keys: Keys,
    subtrahend: Option<f64>,
    divisor: Option<f64>,
}

impl FromArgs for CenterData {
    type Args = CenterArgs;
    fn from_args(a: CenterArgs) -> ArgResult<Self> {
        if let Some(dv) = a.divisor
            && !(dv.is_finite() && dv != 0.0)
        {
            return Err(ArgError::new("divisor", "must be finite and non-zero"));
        }
        Ok(CenterData {
            keys: a.applied_keys,
            subtrahend: a.subtrahend,
            divisor: a.divisor,
        })
    }
}

impl Transform for CenterData {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.keys.iter() {
            let v = floats(d.image_mut(k)?);
            let n = v.len() as f64;
            let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
            let sub = self.subtrahend.unwrap_or(mean);
            let div = self.divisor.unwrap_or_else(|| {
                let sd = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
                if sd > 0.0 { sd } else { 1.0 }
            });
            v.iter_mut().for_each(|x| *x = ((*x as f64 - sub) / div) as f32);
        }
        Ok(())
    }
}

/// `transforms.BratsConvertLabels`: BraTS labels (1 necrosis, 2 oedema, 4 enhancing) to
/// three binary `u8` channels: tumour core (1 or 4), whole tumour (1, 2 or 4), enhancing
/// tumour (4), like MONAI's `ConvertToMultiChannelBasedOnBratsClasses`.
#[derive(Debug)]
pub struct BratsConvertLabels {
    fields: Keys,
}

impl FromArgs for BratsConvertLabels {
    type Args = FieldsArgs;
    fn from_args(a: FieldsArgs) -> ArgResult<Self> {
        Ok(BratsConvertLabels { fields: a.fields })
    }
}

impl Transform for BratsConvertLabels {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.fields.iter() {
            let im = d.image_mut(k)?;
            let src = im.vol.channel(0)?;
            let n = src.voxel_count();
            let mut out = vec![0u8; 3 * n];
            for idx in 0..n {
                let l = src.voxels.get_f64(idx).round() as i64;
                out[idx] = u8::from(l == 1 || l == 4);
                out[n + idx] = u8::from(l == 1 || l == 2 || l == 4);
                out[2 * n + idx] = u8::from(l == 4);
            }
            im.vol = aiaa_imaging::Volume::new(src.dims, 3, src.geometry, Voxels::U8(out))?;
            im.channel_dim = true;
            im.kind = Kind::Label;
        }
        Ok(())
    }
}
