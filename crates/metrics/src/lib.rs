//! Segmentation metrics computed in physical space, for `aiaa evaluate` (the rebuild of
//! Clara Train's `tlt-evaluate`): per class, the Dice coefficient, the normalized surface
//! Dice (NSD) at a tolerance in mm and the 95th-percentile Hausdorff distance (HD95) in mm,
//! and the evaluation reports.
//!
//! The definitions are MONAI 1.6.1's (`compute_dice`, `compute_surface_dice`,
//! `compute_hausdorff_distance(percentile=95)` with `spacing` given, default
//! `use_subvoxels=False`), checked against MONAI on real brain masks by
//! `tests/monai_agreement.rs`; only the empty-class cases differ, by decision
//! ([`compare`]).
//!
//! * [`compare`]: [`evaluate`] a prediction volume against its reference (label volumes or
//!   binary masks, [`Classes`]), with grid checks and optional nearest-neighbour resampling
//!   of the prediction; [`compare_masks`] for in-memory masks.
//! * [`report`]: [`Report`], written as `mean_dice_raw_results.txt`,
//!   `mean_dice_summary_results.txt` and their JSON twins.
//! * [`surface`]: edge voxels, surface distances, percentiles.
//! * [`edt`]: the exact, separable, parallel Euclidean distance transform with spacing.
//! * [`labels`]: class selection from voxel values.
//!
//! Conventions are `aiaa-imaging`'s: volumes are `i`-fastest voxel buffers with a geometry in
//! LPS millimetres; distances use the reference's spacing (direction cosines are orthonormal
//! and do not change distances).

#![warn(missing_docs)]

pub mod compare;
pub mod edt;
pub mod error;
pub mod labels;
pub mod report;
pub mod surface;

pub use compare::{Case, ClassMetrics, MetricOptions, PairMetrics, compare_masks, evaluate};
pub use error::{MetricsError, Result};
pub use labels::Classes;
pub use report::Report;
