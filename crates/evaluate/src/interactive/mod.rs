//! The interactive click protocol (`aiaa evaluate --interactive N`): a model is prompted,
//! then corrected click by click the way the interactive segmentation benchmarks simulate
//! a user, and scored after every click.
//!
//! 1. **Initial prompt**, by what the model takes ([`Prompt`]): the six extreme points of
//!    the reference (DEXTR 3D models), or one foreground click placed by the click rule on an
//!    empty prediction, i.e. inside the reference (click models).
//! 2. **`N` corrective clicks.** After each prediction, the error (missed and extra voxels)
//!    is split into 26-connected components; the largest one (ties: missed voxels first,
//!    then the first in memory order) gets the click, a foreground click when it is missed voxels, a background click
//!    when it is extra ones. Where ([`Rule`]): `centre`, the component's voxel farthest from
//!    its boundary (the largest Euclidean distance, in mm, to a voxel outside the
//!    component; ties: the first in memory order), as the CVPR 2025 interactive 3D
//!    segmentation challenge places its clicks; or `jitter R`, a voxel of the component drawn
//!    uniformly among those within `R` voxels (chessboard) of that centre, seeded per case
//!    (`aiaa_transforms::rng::sample_rng(seed, 1, case)`), so the protocol is reproducible on
//!    any number of threads. A model that cannot take a click of that sign (DEXTR 3D has no
//!    background clicks) is still charged for it: the user clicked and nothing changed.
//! 3. **Scores** after every prediction: Dice and normalized surface Dice (at the report's
//!    tolerance, `aiaa_metrics::compare_masks`), and the model's time. Over the clicks: the
//!    area under the Dice and the NSD curves of the `N` corrective predictions (trapezoids,
//!    unit spacing, so at most `N − 1`; the challenge integrates its five refinement
//!    predictions the same way), the number of clicks after which Dice first reaches 0.90 and
//!    0.95 (0 for the initial prompt, none if never).

use std::time::Instant;

use aiaa_imaging::Volume;
use aiaa_metrics::edt::squared_distance_to;
use aiaa_transforms::guidance::{Click, Clicks};
use aiaa_transforms::morphology::{Connectivity, components};
use aiaa_transforms::rng::{sample_rng, uniform_int};
use serde::Serialize;

use crate::error::{EvaluateError, Result};

mod run;

pub use run::{CaseCurve, InteractiveSummary, run_interactive};

/// Where a corrective click goes in the largest error region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// The voxel farthest from the region's boundary.
    Centre,
    /// A voxel of the region drawn uniformly within this many voxels of the centre.
    Jittered(usize),
}

/// The first prompt a model gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// The reference's six extreme points (DEXTR 3D).
    ExtremePoints,
    /// One foreground click inside the reference.
    Click,
}

/// The protocol's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Protocol {
    /// Corrective clicks after the initial prompt.
    pub clicks: usize,
    /// Where they go.
    pub rule: Rule,
    /// Seed of the jittered rule.
    pub seed: u64,
    /// Normalized surface Dice tolerance (mm).
    pub nsd_tolerance_mm: f64,
}

/// What the model is asked with: the initial extreme points, if any, and every click so far.
#[derive(Clone, Debug, Default)]
pub struct Interaction {
    /// The six extreme points of the initial prompt (DEXTR 3D), else empty.
    pub extreme_points: Vec<[usize; 3]>,
    /// The clicks (the initial one of a click model, then the corrective ones).
    pub clicks: Clicks,
}

/// One prediction of the protocol.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// 0 for the initial prompt, then the corrective click's number.
    pub click: usize,
    /// The click made before this prediction: `[sign, i, j, k]`, sign `+` or `-`.
    pub added: Option<(char, [usize; 3])>,
    /// Dice against the reference.
    pub dice: f64,
    /// Normalized surface Dice.
    pub nsd: f64,
    /// Voxels the prediction has and the reference does not (where the next background
    /// click comes from).
    pub extra_voxels: u64,
    /// Voxels the reference has and the prediction misses.
    pub missing_voxels: u64,
    /// The model's time for this prediction (s).
    pub seconds: f64,
}

/// A case's scores over the protocol.
#[derive(Clone, Debug, Serialize)]
pub struct Curve {
    /// Every prediction, the initial one first.
    pub steps: Vec<Step>,
    /// Area under Dice over the corrective predictions.
    pub dsc_auc: f64,
    /// Area under NSD over the corrective predictions.
    pub nsd_auc: f64,
    /// Clicks until Dice ≥ 0.90 (0: the initial prompt already).
    pub clicks_to_090: Option<usize>,
    /// Clicks until Dice ≥ 0.95.
    pub clicks_to_095: Option<usize>,
}

/// The voxel (offset) of `region` farthest from its boundary (see the module docs), `None`
/// for an empty region; with its distance (mm).
fn deepest(region: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Result<Option<(usize, f64)>> {
    // Distances inside the region are found within its bounding box grown by one voxel: the
    // grown layer lies outside the region, and no outside voxel beyond it is nearer.
    let (mut lo, mut hi) = ([usize::MAX; 3], [0usize; 3]);
    for (o, _) in region.iter().enumerate().filter(|(_, r)| **r) {
        let p = point(o, dims);
        for a in 0..3 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    if lo[0] == usize::MAX {
        return Ok(None);
    }
    let start: [usize; 3] = std::array::from_fn(|a| lo[a].saturating_sub(1));
    let end: [usize; 3] = std::array::from_fn(|a| (hi[a] + 2).min(dims[a]));
    let size: [usize; 3] = std::array::from_fn(|a| end[a] - start[a]);
    let mut outside = Vec::with_capacity(size.iter().product());
    for k in start[2]..end[2] {
        for j in start[1]..end[1] {
            for i in start[0]..end[0] {
                outside.push(!region[i + dims[0] * (j + dims[1] * k)]);
            }
        }
    }
    let d2 = squared_distance_to(&outside, size, spacing)
        .map_err(|e| EvaluateError::Internal(format!("click placement: {e}")))?;
    // A region filling the whole volume has no outside: its first voxel.
    let mut best: Option<(usize, f64)> = None;
    for (b, &d) in d2.iter().enumerate() {
        if outside[b] {
            continue;
        }
        if best.is_none_or(|(_, bd)| d > bd) {
            best = Some((b, d));
        }
    }
    Ok(best.map(|(b, d)| {
        let q = point(b, size);
        let p: [usize; 3] = std::array::from_fn(|a| start[a] + q[a]);
        (p[0] + dims[0] * (p[1] + dims[1] * p[2]), d.sqrt())
    }))
}

fn point(o: usize, dims: [usize; 3]) -> [usize; 3] {
    [o % dims[0], (o / dims[0]) % dims[1], o / (dims[0] * dims[1])]
}

/// The corrective click for `prediction` against `reference` (see the module docs); `None`
/// when they agree. `rng` serves the jittered rule.
pub fn corrective_click(
    reference: &[bool],
    prediction: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    rule: Rule,
    rng: &mut aiaa_transforms::SampleRng,
) -> Result<Option<Click>> {
    // 1 missed, 2 extra, 0 right.
    let error: Vec<u8> = reference
        .iter()
        .zip(prediction)
        .map(|(&r, &p)| match (r, p) {
            (true, false) => 1,
            (false, true) => 2,
            _ => 0,
        })
        .collect();
    let comps = [1u8, 2].map(|sign| components(&error, dims, Connectivity::TwentySix, |v| v == sign));
    // The largest component: (sign's index, root run, voxels); strictly larger wins, so
    // ties go to missed voxels, then to the first component in memory order.
    let mut best: Option<(usize, usize, usize)> = None;
    for (s, c) in comps.iter().enumerate() {
        let mut sizes = std::collections::BTreeMap::<usize, usize>::new();
        for (run, &root) in c.runs.iter().zip(&c.root) {
            *sizes.entry(root).or_default() += (run.1 - run.0) as usize;
        }
        for (root, size) in sizes {
            if best.is_none_or(|(_, _, b)| size > b) {
                best = Some((s, root, size));
            }
        }
    }
    let Some((s, root, _)) = best else {
        return Ok(None);
    };
    let c = &comps[s];
    let mut region = vec![false; error.len()];
    for (r, (&(a, b), &rr)) in c.runs.iter().zip(&c.root).enumerate() {
        if rr == root {
            // The row holding run r: the last whose first run is at most r.
            let row = c.rows.partition_point(|&first| first <= r) - 1;
            region[row * dims[0] + a as usize..row * dims[0] + b as usize].fill(true);
        }
    }
    let Some((centre, _)) = deepest(&region, dims, spacing)? else {
        return Ok(None);
    };
    let at = match rule {
        Rule::Centre => point(centre, dims),
        Rule::Jittered(radius) => {
            let c = point(centre, dims);
            let near: Vec<[usize; 3]> = (0..region.len())
                .filter(|&o| region[o])
                .map(|o| point(o, dims))
                .filter(|p| (0..3).all(|a| p[a].abs_diff(c[a]) <= radius))
                .collect();
            near[uniform_int(rng, 0, near.len() as i64 - 1) as usize]
        }
    };
    Ok(Some(if s == 0 {
        Click::Foreground(at)
    } else {
        Click::Background(at)
    }))
}

/// Trapezoids under `values` at unit spacing.
fn area(values: &[f64]) -> f64 {
    values.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum()
}

/// Runs the protocol on one case: `reference` (a label on the image's grid, foreground
/// `> 0`), the model asked through `predict` (the mask on the same grid), `case` the case's
/// position in its list (the jittered rule's stream).
pub fn run_case(
    reference: &Volume,
    prompt: Prompt,
    protocol: &Protocol,
    case: usize,
    predict: impl FnMut(&Interaction) -> Result<Vec<bool>>,
) -> Result<Curve> {
    run(reference, Start::Prompt(prompt), protocol, case, predict)
}

/// [`run_case`] from a given starting mask instead of a prompt (a damaged or automatic
/// answer to correct): it is scored as step 0, and the first click corrects it. The model's
/// first call sees only that click; giving it the starting mask is `predict`'s business.
pub fn run_case_from(
    reference: &Volume,
    start: &[bool],
    protocol: &Protocol,
    case: usize,
    predict: impl FnMut(&Interaction) -> Result<Vec<bool>>,
) -> Result<Curve> {
    if start.len() != reference.voxel_count() {
        return Err(EvaluateError::Case(format!(
            "the starting mask has {} voxels and the reference {}",
            start.len(),
            reference.voxel_count()
        )));
    }
    run(reference, Start::Mask(start), protocol, case, predict)
}

/// Where a case's protocol starts.
enum Start<'a> {
    Prompt(Prompt),
    Mask(&'a [bool]),
}

fn run(
    reference: &Volume,
    start: Start,
    protocol: &Protocol,
    case: usize,
    mut predict: impl FnMut(&Interaction) -> Result<Vec<bool>>,
) -> Result<Curve> {
    let dims = reference.dims;
    let spacing = reference.geometry.spacing;
    let truth: Vec<bool> = reference.voxels.to_f32_vec().iter().map(|v| *v > 0.0).collect();
    let mut rng = sample_rng(protocol.seed, 1, case as u64);
    let mut interaction = Interaction::default();
    let mut given = None;
    let prompt = match start {
        Start::Prompt(p) => p,
        Start::Mask(m) => {
            given = Some(m.to_vec());
            Prompt::Click
        }
    };
    match prompt {
        Prompt::ExtremePoints => {
            interaction.extreme_points = aiaa_transforms::extreme::extreme_points(reference)
                .ok_or_else(|| EvaluateError::Case("the reference label is empty: nothing to click".into()))?
                .to_vec();
        }
        Prompt::Click if given.is_some() => {}
        Prompt::Click => {
            let empty = vec![false; truth.len()];
            match corrective_click(&truth, &empty, dims, spacing, protocol.rule, &mut rng)? {
                Some(c) => interaction.clicks.push(c),
                None => {
                    return Err(EvaluateError::Case(
                        "the reference label is empty: nothing to click".into(),
                    ));
                }
            }
        }
    }
    let mut steps = Vec::with_capacity(protocol.clicks + 1);
    let mut added = None;
    for click in 0..=protocol.clicks {
        let t0 = Instant::now();
        let mask = match given.take() {
            Some(m) => m,
            None => predict(&interaction)?,
        };
        let seconds = t0.elapsed().as_secs_f64();
        let m = aiaa_metrics::compare_masks(&mask, &truth, dims, spacing, protocol.nsd_tolerance_mm)
            .map_err(|e| EvaluateError::Internal(format!("scoring click {click}: {e}")))?;
        steps.push(Step {
            click,
            added,
            dice: m.dice,
            nsd: m.nsd,
            extra_voxels: m.prediction_voxels - m.intersection_voxels,
            missing_voxels: m.reference_voxels - m.intersection_voxels,
            seconds,
        });
        if click == protocol.clicks {
            break;
        }
        let next = corrective_click(&truth, &mask, dims, spacing, protocol.rule, &mut rng)?;
        added = next.map(|c| match c {
            Click::Foreground(p) => ('+', p),
            Click::Background(p) => ('-', p),
        });
        if let Some(c) = next {
            interaction.clicks.push(c);
        }
    }
    let corrective: Vec<&Step> = steps.iter().skip(1).collect();
    let dice: Vec<f64> = corrective.iter().map(|s| s.dice).collect();
    let nsd: Vec<f64> = corrective.iter().map(|s| s.nsd).collect();
    let first = |t: f64| steps.iter().find(|s| s.dice >= t).map(|s| s.click);
    Ok(Curve {
        dsc_auc: area(&dice),
        nsd_auc: area(&nsd),
        clicks_to_090: first(0.90),
        clicks_to_095: first(0.95),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_imaging::{Geometry, Voxels};

    fn boxed(dims: [usize; 3], lo: [usize; 3], hi: [usize; 3]) -> Vec<bool> {
        (0..dims.iter().product::<usize>())
            .map(|o| {
                let p = point(o, dims);
                (0..3).all(|a| p[a] >= lo[a] && p[a] < hi[a])
            })
            .collect()
    }

    fn rng() -> aiaa_transforms::SampleRng {
        sample_rng(5, 1, 0)
    }

    #[test]
    fn the_centre_click_is_the_deepest_voxel_of_the_largest_error() {
        let dims = [20, 20, 20];
        let truth = boxed(dims, [5; 3], [14; 3]);
        let empty = vec![false; truth.len()];
        let c = corrective_click(&truth, &empty, dims, [1.0; 3], Rule::Centre, &mut rng()).unwrap();
        assert_eq!(c, Some(Click::Foreground([9, 9, 9])));
        // A larger extra block elsewhere takes the click, at its own centre.
        let dims = [40, 20, 20];
        let truth = boxed(dims, [2, 2, 2], [11, 11, 11]);
        let extra = boxed(dims, [20, 2, 2], [35, 17, 17]);
        let pred: Vec<bool> = truth.iter().zip(&extra).map(|(a, b)| *a || *b).collect();
        let c = corrective_click(&truth, &pred, dims, [1.0; 3], Rule::Centre, &mut rng()).unwrap();
        assert_eq!(c, Some(Click::Background([27, 9, 9])));
        assert_eq!(
            corrective_click(&truth, &truth, dims, [1.0; 3], Rule::Centre, &mut rng()).unwrap(),
            None,
            "nothing to correct"
        );
    }

    #[test]
    fn the_jittered_rule_stays_near_the_centre_inside_the_region_and_is_seeded() {
        let dims = [20, 20, 20];
        let truth = boxed(dims, [3; 3], [16; 3]);
        let empty = vec![false; truth.len()];
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let mut r = sample_rng(seed, 1, 0);
            let Some(Click::Foreground(p)) =
                corrective_click(&truth, &empty, dims, [1.0; 3], Rule::Jittered(2), &mut r).unwrap()
            else {
                panic!("a foreground click")
            };
            assert!(p.iter().all(|&x| (7..=11).contains(&x)), "{p:?}");
            let mut again = sample_rng(seed, 1, 0);
            assert_eq!(
                corrective_click(&truth, &empty, dims, [1.0; 3], Rule::Jittered(2), &mut again).unwrap(),
                Some(Click::Foreground(p))
            );
            seen.insert(p);
        }
        assert!(seen.len() > 5, "the jitter moves the click: {seen:?}");
    }

    #[test]
    fn a_model_that_follows_its_clicks_scores_as_the_protocol_says() {
        // The reference is a box; the "model" misses the slab k >= 14 until a foreground
        // click lands in it.
        let dims = [20, 20, 20];
        let truth = boxed(dims, [2; 3], [18; 3]);
        let reference = Volume::scalar(
            dims,
            Geometry::default(),
            Voxels::U8(truth.iter().map(|&t| u8::from(t)).collect()),
        )
        .unwrap();
        let partial: Vec<bool> = truth
            .iter()
            .enumerate()
            .map(|(o, &t)| t && point(o, dims)[2] < 14)
            .collect();
        let protocol = Protocol {
            clicks: 3,
            rule: Rule::Centre,
            seed: 0,
            nsd_tolerance_mm: 1.0,
        };
        let curve = run_case(&reference, Prompt::Click, &protocol, 0, |i| {
            assert!(i.extreme_points.is_empty());
            let in_slab = i.clicks.foreground.iter().any(|p| p[2] >= 14.0);
            Ok(if in_slab { truth.clone() } else { partial.clone() })
        })
        .unwrap();
        assert_eq!(curve.steps.len(), 4);
        assert!(curve.steps[0].dice < 0.9, "{}", curve.steps[0].dice);
        // The missed slab k = 14..18 of the 16 x 16 box, nothing extra; then nothing wrong.
        assert_eq!(
            (curve.steps[0].extra_voxels, curve.steps[0].missing_voxels),
            (0, 16 * 16 * 4)
        );
        assert_eq!(
            (curve.steps[1].extra_voxels, curve.steps[1].missing_voxels),
            (0, 0)
        );
        let (sign, p) = curve.steps[1].added.unwrap();
        assert_eq!(sign, '+');
        assert!(p[2] >= 14, "the click goes to the missed slab: {p:?}");
        assert_eq!(curve.steps[1].dice, 1.0);
        assert_eq!(curve.steps[3].added, None, "nothing left to correct");
        assert_eq!(curve.clicks_to_090, Some(1));
        assert_eq!(curve.clicks_to_095, Some(1));
        // Three corrective predictions at Dice 1: two unit trapezoids.
        assert_eq!(curve.dsc_auc, 2.0);
        assert_eq!(curve.nsd_auc, 2.0);
        // Extreme points for a DEXTR 3D prompt.
        let curve = run_case(&reference, Prompt::ExtremePoints, &protocol, 0, |i| {
            assert_eq!(i.extreme_points.len(), 6);
            Ok(truth.clone())
        })
        .unwrap();
        assert_eq!(curve.clicks_to_090, Some(0));
    }
}
