//! Comparing a prediction with a reference segmentation, class by class: Dice, normalized
//! surface Dice (NSD) and the 95th-percentile Hausdorff distance (HD95).
//!
//! Definitions (MONAI 1.6.1's, see [`crate::surface`] for edges and distances):
//!
//! * `Dice = 2·|P ∩ G| / (|P| + |G|)` over voxels;
//! * `NSD = (#{p ∈ ∂P : d(p, ∂G) ≤ τ} + #{g ∈ ∂G : d(g, ∂P) ≤ τ}) / (|∂P| + |∂G|)`, where
//!   `∂X` is the set of edge voxels of `X` and `τ` the tolerance in mm
//!   ([`MetricOptions::nsd_tolerance_mm`]);
//! * `HD95 = max(q95({d(p, ∂G) : p ∈ ∂P}), q95({d(g, ∂P) : g ∈ ∂G}))`, `q95` the linear
//!   95th percentile.
//!
//! Distances are physical: voxel index offsets times the reference's spacing (the direction
//! matrix is orthonormal and does not change distances).
//!
//! # Empty classes (our decision)
//!
//! | case                                    | Dice | NSD | HD95   | MONAI 1.6.1 (Dice, NSD, HD95) |
//! |-----------------------------------------|------|-----|--------|-------------------------------|
//! | both empty ([`Case::BothEmpty`])        | 1    | 1   | 0      | NaN, NaN, NaN                 |
//! | prediction empty ([`Case::PredictionEmpty`]) | 0 | 0 | `+inf` | 0, 0, NaN                     |
//! | reference empty ([`Case::ReferenceEmpty`])   | 0 | 0 | `+inf` | NaN, 0, NaN                   |
//!
//! (MONAI's Dice with its default `ignore_empty=True`.) A class missing from both volumes is
//! a perfect (empty) agreement; a class missing from exactly one side is a total miss, and
//! its HD95 is infinite: no distance exists between a surface and nothing, and an infinite
//! value cannot be mistaken for "not computed" the way NaN can. Reports print it as `inf`
//! (JSON: `null`) next to the case name, and summaries count such rows separately instead
//! of averaging them in ([`crate::report`]). Every class present on both sides matches
//! MONAI (`tests/monai_agreement.rs`).
//!
//! # Grids
//!
//! Prediction and reference must share the grid: equal sizes, and spacing, origin and
//! direction equal within [`MetricOptions::grid_tolerance`] (default `1e-4`). Otherwise
//! evaluation fails with [`MetricsError::GridMismatch`] describing both grids, unless
//! [`MetricOptions::resample_prediction`] is set: then the prediction is resampled onto the
//! reference grid with nearest-neighbour interpolation (`aiaa_imaging::resample`; voxels
//! whose centre falls outside the prediction become background).

use aiaa_imaging::Volume;
use aiaa_imaging::resample::{Interpolation, resample_like};
use rayon::prelude::*;
use serde::Serialize;

use crate::labels::{Classes, SlotStats, slot_map, slot_stats};
use crate::surface::{directed_distances, edges, percentile_linear, within_tolerance};
use crate::{MetricsError, Result, edt};

/// The Hausdorff percentile reported as HD95.
pub const HD_PERCENTILE: f64 = 95.0;

/// Default largest difference (mm, cosine units) between two grids treated as equal.
pub const DEFAULT_GRID_TOLERANCE: f64 = 1e-4;

/// Default NSD tolerance (mm).
pub const DEFAULT_NSD_TOLERANCE_MM: f64 = 1.0;

/// Options of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricOptions {
    /// NSD tolerance `τ` in mm (finite, ≥ 0).
    pub nsd_tolerance_mm: f64,
    /// Resample the prediction onto the reference grid (nearest neighbour) when the grids
    /// differ, instead of failing.
    pub resample_prediction: bool,
    /// Largest difference in spacing and origin (mm) and direction cosines for two grids to
    /// count as the same.
    pub grid_tolerance: f64,
}

impl Default for MetricOptions {
    fn default() -> Self {
        MetricOptions {
            nsd_tolerance_mm: DEFAULT_NSD_TOLERANCE_MM,
            resample_prediction: false,
            grid_tolerance: DEFAULT_GRID_TOLERANCE,
        }
    }
}

impl MetricOptions {
    fn validate(&self) -> Result<()> {
        if !(self.nsd_tolerance_mm.is_finite() && self.nsd_tolerance_mm >= 0.0) {
            return Err(MetricsError::InvalidArgument(format!(
                "NSD tolerance {} mm must be finite and >= 0",
                self.nsd_tolerance_mm
            )));
        }
        if !(self.grid_tolerance.is_finite() && self.grid_tolerance >= 0.0) {
            return Err(MetricsError::InvalidArgument(format!(
                "grid tolerance {} must be finite and >= 0",
                self.grid_tolerance
            )));
        }
        Ok(())
    }
}

/// Which sides contain the class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    /// Present in both: every metric is computed.
    BothPresent,
    /// Absent from both: Dice 1, NSD 1, HD95 0.
    BothEmpty,
    /// Absent from the prediction only: Dice 0, NSD 0, HD95 `+inf`.
    PredictionEmpty,
    /// Absent from the reference only: Dice 0, NSD 0, HD95 `+inf`.
    ReferenceEmpty,
}

impl Case {
    /// The name used in reports (`both_present`, `both_empty`, `prediction_empty`,
    /// `reference_empty`).
    pub fn as_str(self) -> &'static str {
        match self {
            Case::BothPresent => "both_present",
            Case::BothEmpty => "both_empty",
            Case::PredictionEmpty => "prediction_empty",
            Case::ReferenceEmpty => "reference_empty",
        }
    }
}

/// The metrics of one class of one prediction/reference pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// The class (label value; 1 for binary masks).
    pub class: u32,
    /// Which sides contain the class.
    pub case: Case,
    /// Dice coefficient.
    pub dice: f64,
    /// Normalized surface Dice at [`MetricOptions::nsd_tolerance_mm`].
    pub nsd: f64,
    /// 95th-percentile symmetric Hausdorff distance (mm); `+inf` when one side is empty
    /// (serialized as `null`).
    pub hd95_mm: f64,
    /// Voxels of the class in the prediction.
    pub prediction_voxels: u64,
    /// Voxels of the class in the reference.
    pub reference_voxels: u64,
    /// Voxels of the class in both.
    pub intersection_voxels: u64,
    /// Edge voxels of the class in the prediction.
    pub prediction_surface_voxels: u64,
    /// Edge voxels of the class in the reference.
    pub reference_surface_voxels: u64,
}

/// The result of comparing one prediction with its reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairMetrics {
    /// One entry per class, in class order.
    pub classes: Vec<ClassMetrics>,
    /// Whether the prediction was resampled onto the reference grid first.
    pub prediction_resampled: bool,
}

/// A one-line description of a volume's grid, for error messages.
pub fn describe_grid(v: &Volume) -> String {
    let g = &v.geometry;
    format!(
        "{}x{}x{} voxels, spacing {:?} mm, origin {:?} mm, direction {:?}",
        v.dims[0], v.dims[1], v.dims[2], g.spacing, g.origin, g.direction
    )
}

/// Dice of two masks of the same length: 1 when both are empty.
pub fn dice(a: &[bool], b: &[bool]) -> f64 {
    let (mut both, mut total) = (0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        both += (x && y) as u64;
        total += x as u64 + y as u64;
    }
    if total == 0 {
        1.0
    } else {
        2.0 * both as f64 / total as f64
    }
}

/// Whether two volumes share the grid within `tolerance` (sizes equal, geometry close).
pub fn same_grid(a: &Volume, b: &Volume, tolerance: f64) -> bool {
    a.dims == b.dims && a.geometry.approx_eq(&b.geometry, tolerance)
}

/// Compares `prediction` with `reference` for every class of `classes` (see the module docs
/// for the definitions, empty classes and grid handling). Both must be single-channel.
pub fn evaluate(
    prediction: &Volume,
    reference: &Volume,
    classes: &Classes,
    opts: &MetricOptions,
) -> Result<PairMetrics> {
    opts.validate()?;
    classes.validate()?;
    for (side, v) in [("prediction", prediction), ("reference", reference)] {
        if v.channels != 1 {
            return Err(MetricsError::MultiChannel {
                side,
                channels: v.channels,
            });
        }
    }
    let resampled;
    let (prediction, prediction_resampled) = if same_grid(prediction, reference, opts.grid_tolerance) {
        (prediction, false)
    } else if opts.resample_prediction {
        resampled = resample_like(prediction, reference, Interpolation::Nearest)?;
        (&resampled, true)
    } else {
        return Err(MetricsError::GridMismatch {
            prediction: describe_grid(prediction),
            reference: describe_grid(reference),
            tolerance: opts.grid_tolerance,
        });
    };
    let ids = classes.ids();
    let pm = slot_map(prediction, classes, &ids, "prediction")?;
    let gm = slot_map(reference, classes, &ids, "reference")?;
    let stats = slot_stats(&pm, &gm, reference.dims, ids.len());
    let grid = Grid::of(reference.dims, reference.geometry.spacing);
    let classes = ids
        .iter()
        .enumerate()
        .map(|(s, &class)| {
            let slot = (s + 1) as u16;
            class_metrics(
                class,
                &stats[s + 1],
                |o| pm[o] == slot,
                |o| gm[o] == slot,
                &grid,
                opts.nsd_tolerance_mm,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(PairMetrics {
        classes,
        prediction_resampled,
    })
}

/// Compares two binary masks held in memory (layout `i` fastest, `dims` voxels of `spacing`
/// mm); reported as class 1. Same definitions and empty-mask rules as [`evaluate`].
pub fn compare_masks(
    prediction: &[bool],
    reference: &[bool],
    dims: [usize; 3],
    spacing: [f64; 3],
    nsd_tolerance_mm: f64,
) -> Result<ClassMetrics> {
    MetricOptions {
        nsd_tolerance_mm,
        ..MetricOptions::default()
    }
    .validate()?;
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(prediction.len()) || n != Some(reference.len()) || dims.contains(&0) {
        return Err(MetricsError::InvalidArgument(format!(
            "masks of {} and {} voxels on a {dims:?} grid",
            prediction.len(),
            reference.len()
        )));
    }
    if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(MetricsError::InvalidArgument(format!(
            "spacing {spacing:?} must be positive"
        )));
    }
    let to_slots = |m: &[bool]| m.par_iter().map(|&b| b as u16).collect::<Vec<u16>>();
    let (pm, gm) = (to_slots(prediction), to_slots(reference));
    let stats = slot_stats(&pm, &gm, dims, 1);
    class_metrics(
        1,
        &stats[1],
        |o| prediction[o],
        |o| reference[o],
        &Grid::of(dims, spacing),
        nsd_tolerance_mm,
    )
}

/// The full grid: size, spacing and which axes take part in edge detection.
struct Grid {
    dims: [usize; 3],
    spacing: [f64; 3],
    active: [bool; 3],
}

impl Grid {
    fn of(dims: [usize; 3], spacing: [f64; 3]) -> Grid {
        Grid {
            dims,
            spacing,
            active: dims.map(|d| d > 1),
        }
    }
}

/// The metrics of one class; `in_p`/`in_g` test membership by flat offset on the full grid.
fn class_metrics(
    class: u32,
    st: &SlotStats,
    in_p: impl Fn(usize) -> bool + Sync,
    in_g: impl Fn(usize) -> bool + Sync,
    grid: &Grid,
    tolerance: f64,
) -> Result<ClassMetrics> {
    let mut m = ClassMetrics {
        class,
        case: Case::BothPresent,
        dice: 1.0,
        nsd: 1.0,
        hd95_mm: 0.0,
        prediction_voxels: st.prediction,
        reference_voxels: st.reference,
        intersection_voxels: st.intersection,
        prediction_surface_voxels: 0,
        reference_surface_voxels: 0,
    };
    let Some((lo, hi)) = st.bbox else {
        m.case = Case::BothEmpty;
        return Ok(m);
    };
    m.dice = 2.0 * st.intersection as f64 / (st.prediction + st.reference) as f64;

    // Crop both masks to the union's bounding box: outside it the class is absent.
    let bdims: [usize; 3] = std::array::from_fn(|a| hi[a] - lo[a] + 1);
    let [nx, ny, _] = grid.dims;
    let crop = |inside: &(dyn Fn(usize) -> bool + Sync)| {
        let mut out = vec![false; bdims.iter().product()];
        out.par_chunks_mut(bdims[0] * bdims[1])
            .enumerate()
            .for_each(|(k, slice)| {
                for j in 0..bdims[1] {
                    let row = nx * ((lo[1] + j) + ny * (lo[2] + k)) + lo[0];
                    for (i, o) in slice[bdims[0] * j..][..bdims[0]].iter_mut().enumerate() {
                        *o = inside(row + i);
                    }
                }
            });
        out
    };
    let ep = edges(&crop(&in_p), bdims, grid.active);
    let eg = edges(&crop(&in_g), bdims, grid.active);
    let count = |e: &[bool]| e.par_iter().filter(|&&x| x).count() as u64;
    m.prediction_surface_voxels = count(&ep);
    m.reference_surface_voxels = count(&eg);

    if st.prediction == 0 || st.reference == 0 {
        m.case = if st.prediction == 0 {
            Case::PredictionEmpty
        } else {
            Case::ReferenceEmpty
        };
        m.nsd = 0.0;
        m.hd95_mm = f64::INFINITY;
        return Ok(m);
    }

    let p_to_g = directed_distances(&ep, &edt::squared_distance_to(&eg, bdims, grid.spacing)?);
    let g_to_p = directed_distances(&eg, &edt::squared_distance_to(&ep, bdims, grid.spacing)?);
    let q = HD_PERCENTILE / 100.0;
    m.hd95_mm = percentile_linear(&p_to_g, q).max(percentile_linear(&g_to_p, q));
    let within = within_tolerance(&p_to_g, tolerance) + within_tolerance(&g_to_p, tolerance);
    m.nsd = within as f64 / (p_to_g.len() + g_to_p.len()) as f64;
    Ok(m)
}
