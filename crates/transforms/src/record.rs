//! What the spatial transforms did, and how to undo it: every crop, pad, flip, rot90,
//! axis permutation, resize, zoom and resample pushes a [`SpatialOp`] on the image, holding
//! the grid before and after. [`invert`] walks the list backwards, so a prediction made on
//! the transformed image lands on the original grid (voxel-exact for crop, pad, flip, rot90
//! and permutation; through interpolation for resize, zoom and resample).
//!
//! The inversion works on indices: the prediction only needs the transformed image's
//! dimensions, its geometry is replaced by the recorded one at every step.

use aiaa_imaging::Geometry;
use aiaa_imaging::Volume;
use aiaa_imaging::resample::{Interpolation, resample_onto};

use crate::{Result, TransformError, spatial};

/// A voxel grid: dimensions and geometry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    /// `[nx, ny, nz]`.
    pub dims: [usize; 3],
    /// Placement in LPS space.
    pub geometry: Geometry,
}

impl Grid {
    /// The grid of a volume.
    pub fn of(vol: &Volume) -> Grid {
        Grid {
            dims: vol.dims,
            geometry: vol.geometry,
        }
    }
}

/// The kind of a spatial operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OpKind {
    /// A crop and/or pad: output voxel `(0,0,0)` is input index `start` (may be negative);
    /// voxels outside the input were filled.
    Region { start: [i64; 3], size: [usize; 3] },
    /// Reversal of the flagged axes.
    Flip { axes: [bool; 3] },
    /// `k` quarter turns in the `i`-`j` plane (numpy `rot90(a, k, axes=(0, 1))` on an
    /// `[i, j, k]` array).
    Rot90 { k: u8 },
    /// A transposition of the voxel axes: output axis `a` is input axis `order[a]` (numpy
    /// `transpose(a, order)` on an `[i, j, k]` array); see [`spatial::permute`].
    Permute { order: [usize; 3] },
    /// Resampling onto another grid covering the same physical region (resize, zoom,
    /// resample to a resolution).
    Resample,
    /// A rotation by `degrees` in the `i`-`j` plane about the grid centre (see
    /// [`crate::image2d::rotate2d`]).
    Rotate2d { degrees: f64 },
    /// A random warp (rotation, scaling, elastic deformation and crop of the fast
    /// augmentation): recorded so that [`invert`] refuses it rather than ignore it.
    Warp,
}

/// One recorded spatial operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpatialOp {
    /// What was done.
    pub kind: OpKind,
    /// The grid before.
    pub before: Grid,
    /// The grid after.
    pub after: Grid,
}

/// Maps `pred` (on the grid the last op produced) back through `ops` onto the grid before
/// the first op. Use [`Interpolation::Nearest`] for labels, `Linear` for probabilities.
pub fn invert(pred: &Volume, ops: &[SpatialOp], interp: Interpolation) -> Result<Volume> {
    let Some(last) = ops.last() else {
        return Ok(pred.clone());
    };
    if pred.dims != last.after.dims {
        return Err(TransformError::invalid(format!(
            "prediction grid {:?} is not the transformed grid {:?}",
            pred.dims, last.after.dims
        )));
    }
    let mut v = pred.clone();
    for op in ops.iter().rev() {
        v.geometry = op.after.geometry;
        v = match op.kind {
            OpKind::Region { start, .. } => {
                aiaa_imaging::crop::region(&v, start.map(|s| -s), op.before.dims, 0.0)?
            }
            OpKind::Flip { axes } => spatial::flip(&v, axes),
            OpKind::Rot90 { k } => spatial::rot90(&v, (4 - k % 4) % 4),
            OpKind::Permute { order } => spatial::permute(&v, spatial::inverse_permutation(order)?)?,
            OpKind::Resample => resample_onto(&v, op.before.dims, &op.before.geometry, interp)?,
            OpKind::Rotate2d { degrees } => crate::image2d::rotate2d(&v, -degrees, interp),
            OpKind::Warp => {
                return Err(TransformError::invalid(
                    "a random warp (fast augmentation) cannot be inverted",
                ));
            }
        };
        v.geometry = op.before.geometry;
    }
    Ok(v)
}
