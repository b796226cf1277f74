//! DeepEdit's guidance transforms (MONAI's `monai.apps.deepedit.transforms`, 3D): clicks kept
//! per label name rather than per sign, one guidance channel per label.
//!
//! * **Per-label clicks** ([`LabelClicks`], [`Item::LabelClicks`]): for each label name, in
//!   the order of the config's `label_names`, its clicks in voxel indices `[i, j, k]`. A click
//!   with a negative coordinate is MONAI's placeholder for "no click" and is skipped.
//! * **Label names** ([`LabelNames`]): `[["spleen", 1], ["background", 0]]`, name and label
//!   value, in channel order (a list, because a JSON object's key order is not kept). The
//!   region of a name is the voxels holding its value; `background` is special as in MONAI:
//!   every voxel holding the background value, whatever the other labels.
//! * **Guidance channels** (`transforms.AddGuidanceSignalDeepEdit`, `AddGuidanceSignalDeepEditd`):
//!   the first `number_intensity_ch` channels, then per label [`guidance_signal`] of its clicks.
//! * **Dropping guidance** (`transforms.DiscardAddGuidance`, `DiscardAddGuidanced`): with
//!   probability `probability` the guidance channels become zeros (appended when the image
//!   does not have `number_intensity_ch + len(label_names)` channels); else nothing changes.
//! * **First clicks** (`transforms.AddInitialSeedPointDeepEdit` and
//!   `transforms.AddInitialSeedPointMissingLabels`): one click per label, drawn in its region
//!   by MONAI's rule ([`click_weights`]); a label absent from the image is an error for the
//!   first and a placeholder `[-1, -1, -1]` for the second. MONAI's 2D path (a seed per
//!   connected blob on a random valid slice, when `sids` are given) is not built: see
//!   `docs/interactive.md`.
//! * **Discrepancy** (`transforms.FindDiscrepancyRegionsDeepEdit`,
//!   `FindDiscrepancyRegionsDeepEditd`): per label, missed and extra voxels of the prediction,
//!   stored as an image with two channels per label (missed, extra).
//! * **Next clicks** (`transforms.AddRandomGuidanceDeepEdit`, `AddRandomGuidanceDeepEditd`):
//!   with probability the sample's `probability` item, each label gets a click in its missed
//!   voxels, and every label whose region holds more than 50 of another label's extra voxels
//!   gets a click there ([`click_regions`]); then at most a random 1 to 10 clicks' worth of
//!   labels, in random order, keep theirs ([`labels_to_keep`]).
//!
//! Random draws use our seeded generator, not MONAI's: `tests/guidance_monai_more.rs` checks
//! the deterministic parts against MONAI exactly and the probabilities loosely.

use rand::seq::SliceRandom;
use serde::Deserialize;

use crate::args::{ArgError, ArgResult, Keys, check_positive, check_range};
use crate::data::{Data, Item};
use crate::guidance::{click_weights, guidance_signal, sample_click};
use crate::intensity::floats;
use crate::registry::FromArgs;
use crate::rng::{chance, uniform_int};
use crate::{Result, SampleRng, Transform, TransformError};

/// MONAI's placeholder for a label without a click.
const NO_CLICK: [f64; 3] = [-1.0; 3];

/// More than this many extra voxels of one label inside another's region earn a click there
/// (MONAI's constant).
const OTHER_AREA_MIN: usize = 50;

/// The clicks of each label, in channel order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelClicks(pub Vec<(String, Vec<[f64; 3]>)>);

impl LabelClicks {
    /// The clicks of `name` (`None` if it has no entry).
    pub fn get(&self, name: &str) -> Option<&Vec<[f64; 3]>> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// One guidance channel per label, in order ([`guidance_signal`]).
    pub fn guidance(&self, dims: [usize; 3], sigma: f64) -> Vec<f32> {
        self.0
            .iter()
            .flat_map(|(_, clicks)| guidance_signal(dims, clicks, sigma))
            .collect()
    }
}

/// Label names and values, in channel order (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct LabelNames(pub Vec<(String, f64)>);

impl<'de> Deserialize<'de> for LabelNames {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let pairs = Vec::<(String, f64)>::deserialize(d)?;
        if pairs.is_empty() {
            return Err(serde::de::Error::custom("label_names needs at least one label"));
        }
        Ok(LabelNames(pairs))
    }
}

/// The voxels `name` (of label value `value`) covers in `label`, as MONAI selects them:
/// the voxels equal to `value` (if above 0.5); for `background`, those equal to it when it
/// is below 0.5.
pub fn label_region(label: &[f32], name: &str, value: f64) -> Vec<bool> {
    // MONAI compares a float32 array with the value, so the value is a float32 here too.
    let v = value as f32;
    if name == "background" {
        // MONAI: everything not `v` becomes 1, then `1 - x > 0.5`.
        label.iter().map(|&x| x == v && 1.0 - v > 0.5).collect()
    } else {
        label.iter().map(|&x| x == v && v > 0.5).collect()
    }
}

fn label_floats(d: &Data, key: &str) -> Result<(Vec<f32>, [usize; 3])> {
    let vol = d.volume(key)?;
    let n = vol.voxel_count();
    Ok((vol.voxels.to_f32_vec()[..n].to_vec(), vol.dims))
}

fn label_clicks_of<'a>(d: &'a Data, key: &str) -> Result<&'a LabelClicks> {
    match d.item(key)? {
        Item::LabelClicks(c) => Ok(c),
        other => Err(TransformError::invalid(format!(
            "{key:?} holds {}, not per-label clicks",
            other.kind_name()
        ))),
    }
}

fn check_channels(name: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(TransformError::invalid(format!(
            "{name:?} has {have} channel(s); number_intensity_ch is {need}"
        )));
    }
    Ok(())
}

fn image_key() -> String {
    "image".into()
}
fn image_keys() -> Keys {
    Keys(vec![image_key()])
}
fn label_key() -> String {
    "label".into()
}
fn guidance_key() -> String {
    "guidance".into()
}
fn discrepancy_key() -> String {
    "discrepancy".into()
}
fn pred_key() -> String {
    "pred".into()
}
fn probability_key() -> String {
    "probability".into()
}
fn three() -> f64 {
    3.0
}
fn one() -> usize {
    1
}
fn at_least_one(n: usize) -> ArgResult<usize> {
    if n == 0 {
        Err(ArgError::new("number_intensity_ch", "must be at least 1"))
    } else {
        Ok(n)
    }
}

/// Arguments of [`AddGuidanceSignalDeepEdit`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalArgs {
    #[serde(default = "image_key")]
    image_field: String,
    #[serde(default = "guidance_key")]
    guidance_field: String,
    #[serde(default = "three")]
    sigma: f64,
    #[serde(default = "one")]
    number_intensity_ch: usize,
}

/// `transforms.AddGuidanceSignalDeepEdit` (see the module docs).
#[derive(Debug)]
pub struct AddGuidanceSignalDeepEdit {
    image: String,
    guidance: String,
    sigma: f64,
    intensity_channels: usize,
}

impl FromArgs for AddGuidanceSignalDeepEdit {
    type Args = SignalArgs;
    fn from_args(a: SignalArgs) -> ArgResult<Self> {
        Ok(AddGuidanceSignalDeepEdit {
            image: a.image_field,
            guidance: a.guidance_field,
            sigma: check_positive("sigma", a.sigma)?,
            intensity_channels: at_least_one(a.number_intensity_ch)?,
        })
    }
}

impl Transform for AddGuidanceSignalDeepEdit {
    fn apply(&self, d: &mut Data, _rng: &mut SampleRng) -> Result<()> {
        let clicks = label_clicks_of(d, &self.guidance)?.clone();
        let im = d.image_mut(&self.image)?;
        check_channels(&self.image, im.vol.channels, self.intensity_channels)?;
        let dims = im.vol.dims;
        let n: usize = dims.iter().product();
        let v = floats(im);
        v.truncate(n * self.intensity_channels);
        v.extend(clicks.guidance(dims, self.sigma));
        im.vol.channels = self.intensity_channels + clicks.0.len();
        im.channel_dim = true;
        Ok(())
    }
}

/// Arguments of [`DiscardAddGuidance`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscardArgs {
    #[serde(default = "image_keys")]
    fields: Keys,
    #[serde(default = "one")]
    number_intensity_ch: usize,
    #[serde(default = "crate::args::one")]
    probability: f64,
    label_names: LabelNames,
}

/// `transforms.DiscardAddGuidance` (see the module docs); one draw per sample for all fields.
#[derive(Debug)]
pub struct DiscardAddGuidance {
    fields: Keys,
    intensity_channels: usize,
    probability: f64,
    labels: usize,
}

impl FromArgs for DiscardAddGuidance {
    type Args = DiscardArgs;
    fn from_args(a: DiscardArgs) -> ArgResult<Self> {
        Ok(DiscardAddGuidance {
            fields: a.fields,
            intensity_channels: at_least_one(a.number_intensity_ch)?,
            probability: check_range("probability", a.probability, 0.0, 1.0)?,
            labels: a.label_names.0.len(),
        })
    }
}

/// Zeros in place of `im`'s guidance channels: overwritten when it has exactly
/// `intensity + labels` channels, appended otherwise (MONAI's rule).
pub fn zero_guidance(im: &mut crate::Image, intensity: usize, labels: usize) {
    let n = im.vol.voxel_count();
    let channels = im.vol.channels;
    let v = floats(im);
    if channels == intensity + labels {
        v[n * intensity..].fill(0.0);
    } else {
        v.resize(v.len() + n * labels, 0.0);
        im.vol.channels = channels + labels;
        im.channel_dim = true;
    }
}

impl Transform for DiscardAddGuidance {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        // MONAI draws nothing at probability 1.
        if self.probability < 1.0 && !chance(rng, self.probability) {
            return Ok(());
        }
        for k in self.fields.iter() {
            let im = d.image_mut(k)?;
            check_channels(k, im.vol.channels, self.intensity_channels)?;
            zero_guidance(im, self.intensity_channels, self.labels);
        }
        Ok(())
    }
}

/// Arguments of the DeepEdit seed transforms.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedArgs {
    #[serde(default = "label_key")]
    label_field: String,
    #[serde(default = "guidance_key")]
    guidance_field: String,
    label_names: LabelNames,
}

/// `transforms.AddInitialSeedPointDeepEdit` / `transforms.AddInitialSeedPointMissingLabels`
/// (see the module docs).
#[derive(Debug)]
pub struct AddInitialSeedPointDeepEdit {
    label: String,
    guidance: String,
    names: LabelNames,
    /// A label absent from the image gets a placeholder rather than an error.
    missing_ok: bool,
}

impl FromArgs for AddInitialSeedPointDeepEdit {
    type Args = SeedArgs;
    fn from_args(a: SeedArgs) -> ArgResult<Self> {
        Ok(AddInitialSeedPointDeepEdit {
            label: a.label_field,
            guidance: a.guidance_field,
            names: a.label_names,
            missing_ok: false,
        })
    }
}

/// `transforms.AddInitialSeedPointMissingLabels`: [`AddInitialSeedPointDeepEdit`] that gives
/// an absent label MONAI's placeholder click.
#[derive(Debug)]
pub struct AddInitialSeedPointMissingLabels(AddInitialSeedPointDeepEdit);

impl FromArgs for AddInitialSeedPointMissingLabels {
    type Args = SeedArgs;
    fn from_args(a: SeedArgs) -> ArgResult<Self> {
        let mut t = AddInitialSeedPointDeepEdit::from_args(a)?;
        t.missing_ok = true;
        Ok(AddInitialSeedPointMissingLabels(t))
    }
}

impl Transform for AddInitialSeedPointMissingLabels {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        self.0.apply(d, rng)
    }
}

fn draw(region: &[bool], dims: [usize; 3], rng: &mut SampleRng) -> Option<[f64; 3]> {
    sample_click(region, dims, rng).map(|p| p.map(|x| x as f64))
}

impl Transform for AddInitialSeedPointDeepEdit {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let (label, dims) = label_floats(d, &self.label)?;
        let mut clicks = LabelClicks::default();
        for (name, value) in &self.names.0 {
            let seed = match draw(&label_region(&label, name, *value), dims, rng) {
                Some(p) => p,
                None if self.missing_ok => NO_CLICK,
                None => {
                    return Err(TransformError::invalid(format!(
                        "label {name:?} ({value}) is not in {:?}",
                        self.label
                    )));
                }
            };
            clicks.0.push((name.clone(), vec![seed]));
        }
        d.insert(self.guidance.clone(), Item::LabelClicks(clicks));
        Ok(())
    }
}

/// Arguments of [`FindDiscrepancyRegionsDeepEdit`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscrepancyArgs {
    #[serde(default = "label_key")]
    label_field: String,
    #[serde(default = "pred_key")]
    pred_field: String,
    #[serde(default = "discrepancy_key")]
    discrepancy_field: String,
    label_names: LabelNames,
}

/// `transforms.FindDiscrepancyRegionsDeepEdit` (see the module docs).
#[derive(Debug)]
pub struct FindDiscrepancyRegionsDeepEdit {
    label: String,
    pred: String,
    discrepancy: String,
    names: LabelNames,
}

impl FromArgs for FindDiscrepancyRegionsDeepEdit {
    type Args = DiscrepancyArgs;
    fn from_args(a: DiscrepancyArgs) -> ArgResult<Self> {
        Ok(FindDiscrepancyRegionsDeepEdit {
            label: a.label_field,
            pred: a.pred_field,
            discrepancy: a.discrepancy_field,
            names: a.label_names,
        })
    }
}

/// Per label (in `names`' order): the voxels of its region the prediction missed, and those
/// it claimed outside the region.
pub fn label_discrepancies(label: &[f32], pred: &[f32], names: &LabelNames) -> Vec<(Vec<bool>, Vec<bool>)> {
    names
        .0
        .iter()
        .map(|(name, value)| {
            let (l, p) = (
                label_region(label, name, *value),
                label_region(pred, name, *value),
            );
            l.iter().zip(&p).map(|(&l, &p)| (l && !p, p && !l)).unzip()
        })
        .collect()
}

impl Transform for FindDiscrepancyRegionsDeepEdit {
    fn apply(&self, d: &mut Data, _rng: &mut SampleRng) -> Result<()> {
        let (label, dims) = label_floats(d, &self.label)?;
        let (pred, pred_dims) = label_floats(d, &self.pred)?;
        if pred_dims != dims {
            return Err(TransformError::invalid(format!(
                "{:?} is not on the grid of {:?}",
                self.pred, self.label
            )));
        }
        let channels: Vec<u8> = label_discrepancies(&label, &pred, &self.names)
            .into_iter()
            .flat_map(|(missed, extra)| missed.into_iter().chain(extra).map(u8::from))
            .collect();
        let geometry = d.volume(&self.label)?.geometry;
        let vol = aiaa_imaging::Volume::new(
            dims,
            2 * self.names.0.len(),
            geometry,
            aiaa_imaging::Voxels::U8(channels),
        )?;
        let im = crate::Image::new(vol, crate::Kind::Label).with_channel_dim();
        d.insert_image(self.discrepancy.clone(), im);
        Ok(())
    }
}

/// Where `AddRandomGuidanceDeepEditd` clicks, in its order: per label `l` (in `names`' order),
/// its missed voxels (a click for `l`) if any, then for every label `k` whose region holds
/// more than 50 of `l`'s extra voxels, those voxels (a click for `k`). Each entry is the index
/// of the label that gets the click and the region it is drawn in.
pub fn click_regions(
    label: &[f32],
    discrepancies: &[(Vec<bool>, Vec<bool>)],
    names: &LabelNames,
) -> Vec<(usize, Vec<bool>)> {
    let regions: Vec<Vec<bool>> = names.0.iter().map(|(n, v)| label_region(label, n, *v)).collect();
    let mut out = Vec::new();
    for (l, (missed, extra)) in discrepancies.iter().enumerate() {
        if missed.iter().any(|m| *m) {
            out.push((l, missed.clone()));
        }
        for (k, region) in regions.iter().enumerate() {
            let inside: Vec<bool> = extra.iter().zip(region).map(|(&e, &r)| e && r).collect();
            if inside.iter().filter(|x| **x).count() > OTHER_AREA_MIN {
                out.push((k, inside));
            }
        }
    }
    out
}

/// Which labels keep their clicks: labels are visited in `order`, adding up their click
/// counts, until the sum reaches `max_clicks`; those not visited by then lose theirs.
pub fn labels_to_keep(counts: &[usize], order: &[usize], max_clicks: usize) -> Vec<bool> {
    let mut keep = vec![false; counts.len()];
    let mut total = 0;
    for &l in order {
        keep[l] = true;
        total += counts[l];
        if total >= max_clicks {
            break;
        }
    }
    keep
}

/// Arguments of [`AddRandomGuidanceDeepEdit`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomGuidanceArgs {
    #[serde(default = "label_key")]
    label_field: String,
    #[serde(default = "guidance_key")]
    guidance_field: String,
    #[serde(default = "discrepancy_key")]
    discrepancy_field: String,
    #[serde(default = "probability_key")]
    probability_field: String,
    label_names: LabelNames,
}

/// `transforms.AddRandomGuidanceDeepEdit` (see the module docs). The click probability is
/// the sample's `probability_field` number (1 when absent).
#[derive(Debug)]
pub struct AddRandomGuidanceDeepEdit {
    label: String,
    guidance: String,
    discrepancy: String,
    probability: String,
    names: LabelNames,
}

impl FromArgs for AddRandomGuidanceDeepEdit {
    type Args = RandomGuidanceArgs;
    fn from_args(a: RandomGuidanceArgs) -> ArgResult<Self> {
        Ok(AddRandomGuidanceDeepEdit {
            label: a.label_field,
            guidance: a.guidance_field,
            discrepancy: a.discrepancy_field,
            probability: a.probability_field,
            names: a.label_names,
        })
    }
}

impl AddRandomGuidanceDeepEdit {
    /// The discrepancy image's (missed, extra) pairs, one per label.
    fn discrepancies(&self, d: &Data, dims: [usize; 3]) -> Result<Vec<(Vec<bool>, Vec<bool>)>> {
        let vol = d.volume(&self.discrepancy)?;
        if vol.dims != dims || vol.channels != 2 * self.names.0.len() {
            return Err(TransformError::invalid(format!(
                "{:?} is not two channels per label on the label's grid",
                self.discrepancy
            )));
        }
        let n = vol.voxel_count();
        let channel = |c: usize| (0..n).map(|o| vol.voxels.get_f64(c * n + o) > 0.5).collect();
        Ok((0..self.names.0.len())
            .map(|l| (channel(2 * l), channel(2 * l + 1)))
            .collect())
    }

    /// Each label's earlier clicks, placeholders dropped.
    fn earlier(&self, d: &Data) -> Result<Vec<Vec<[f64; 3]>>> {
        let clicks = label_clicks_of(d, &self.guidance)?;
        self.names
            .0
            .iter()
            .map(|(name, _)| {
                let c = clicks
                    .get(name)
                    .ok_or_else(|| TransformError::invalid(format!("no clicks for label {name:?}")))?;
                // MONAI drops a click with any coordinate equal to -1.
                Ok(c.iter().filter(|p| !p.contains(&-1.0)).copied().collect())
            })
            .collect()
    }
}

impl Transform for AddRandomGuidanceDeepEdit {
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()> {
        let p = match d.get(&self.probability) {
            Some(Item::Number(p)) => *p,
            None => 1.0,
            Some(other) => {
                return Err(TransformError::invalid(format!(
                    "{:?} holds {}, not a probability",
                    self.probability,
                    other.kind_name()
                )));
            }
        };
        // MONAI writes its instance's last guidance back when it does not click (state kept
        // across samples); we leave the sample's guidance as it is.
        if !chance(rng, p) {
            return Ok(());
        }
        let (label, dims) = label_floats(d, &self.label)?;
        let mut clicks = self.earlier(d)?;
        for (l, region) in click_regions(&label, &self.discrepancies(d, dims)?, &self.names) {
            clicks[l].extend(draw(&region, dims, rng));
        }
        let max_clicks = uniform_int(rng, 1, 10) as usize;
        let mut order: Vec<usize> = (0..clicks.len()).collect();
        order.shuffle(rng);
        let counts: Vec<usize> = clicks.iter().map(Vec::len).collect();
        for (c, keep) in clicks.iter_mut().zip(labels_to_keep(&counts, &order, max_clicks)) {
            if !keep {
                c.clear();
            }
        }
        let out = self.names.0.iter().map(|(n, _)| n.clone()).zip(clicks).collect();
        d.insert(self.guidance.clone(), Item::LabelClicks(LabelClicks(out)));
        Ok(())
    }
}

/// The probability of every voxel being `name`'s first click (offset, probability), MONAI's
/// rule on the label's region: for checks and tools.
pub fn seed_odds(label: &[f32], name: &str, value: f64, dims: [usize; 3]) -> Vec<(usize, f64)> {
    click_weights(&label_region(label, name, value), dims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::sample_rng;

    #[test]
    fn clicks_stop_once_enough_are_kept() {
        // Labels 0..3 with 2, 0, 3 clicks; visited 2, 0, 1: 3 clicks reach 3, so 0 and 1 lose.
        assert_eq!(
            labels_to_keep(&[2, 0, 3], &[2, 0, 1], 3),
            vec![false, false, true]
        );
        assert_eq!(labels_to_keep(&[2, 0, 3], &[2, 0, 1], 5), vec![true, false, true]);
        assert_eq!(labels_to_keep(&[2, 0, 3], &[1, 0, 2], 10), vec![true; 3]);
    }

    #[test]
    fn background_is_its_value_only() {
        let label = [0.0, 1.0, 2.0, 0.0];
        assert_eq!(
            label_region(&label, "background", 0.0),
            [true, false, false, true]
        );
        assert_eq!(label_region(&label, "b", 2.0), [false, false, true, false]);
        // A non-background label of value 0 covers nothing (MONAI thresholds at 0.5).
        assert_eq!(label_region(&label, "b", 0.0), [false; 4]);
    }

    #[test]
    fn discarding_happens_at_the_given_rate() {
        let t = DiscardAddGuidance {
            fields: image_keys(),
            intensity_channels: 1,
            probability: 0.3,
            labels: 2,
        };
        let trials = 4000;
        let dropped = (0..trials)
            .filter(|&i| {
                let vol = aiaa_imaging::Volume::new(
                    [2, 1, 1],
                    3,
                    aiaa_imaging::Geometry::default(),
                    aiaa_imaging::Voxels::F32(vec![1.0; 6]),
                )
                .unwrap();
                let mut d = Data::named("x");
                d.insert_image("image", crate::Image::new(vol, crate::Kind::Intensity));
                t.apply(&mut d, &mut sample_rng(5, 0, i)).unwrap();
                d.volume("image").unwrap().voxels.to_f32_vec()[2..] == [0.0; 4]
            })
            .count() as f64;
        // 0.3 ± 4 standard deviations of the binomial rate.
        let sd = (0.3 * 0.7 / trials as f64).sqrt();
        assert!((dropped / trials as f64 - 0.3).abs() < 4.0 * sd, "{dropped}");
    }
}
