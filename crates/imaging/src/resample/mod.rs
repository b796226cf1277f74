//! Resampling: to a new spacing ("same physical extent") or onto a reference grid.
//!
//! Output grid for a new spacing (as SimpleITK pipelines usually compute it):
//! `new_size[a] = max(1, round(old_size[a] * old_spacing[a] / new_spacing[a]))`, origin and
//! direction kept. Sampling follows ITK's `ResampleImageFilter`: an output voxel whose
//! continuous input index lies outside `[-0.5, size - 0.5)` on any axis gets 0; linear
//! interpolation clamps neighbours at the border; nearest rounds half up. Output keeps the
//! input's element type (integers rounded to nearest and saturated).
//!
//! When the output grid has the input's direction, the work is done by a separable
//! per-axis pass ([`separable`]), otherwise by a general trilinear pass ([`general`]).
//! Both are parallel (rayon) over slices.

pub mod general;
pub mod separable;

use crate::geometry::{inverse, mat_mul, mat_vec};
use crate::{Geometry, ImagingError, Result, Volume};

/// Interpolation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interpolation {
    /// Trilinear: for intensity images.
    Linear,
    /// Nearest neighbour: for label maps.
    Nearest,
}

/// The output grid for resampling `dims`/`geometry` to `spacing` (see the module docs).
pub fn grid_for_spacing(
    dims: [usize; 3],
    geometry: &Geometry,
    spacing: [f64; 3],
) -> Result<([usize; 3], Geometry)> {
    if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(ImagingError::InvalidArgument(format!(
            "spacing {spacing:?} must be positive"
        )));
    }
    let mut size = [0usize; 3];
    for a in 0..3 {
        let n = (dims[a] as f64 * geometry.spacing[a] / spacing[a]).round();
        if n > 1e6 {
            return Err(ImagingError::InvalidArgument(format!(
                "resampled size {n} along axis {a} is too large"
            )));
        }
        size[a] = (n as usize).max(1);
    }
    Ok((size, Geometry { spacing, ..*geometry }))
}

/// Per-axis affine map from output index to input continuous index, when the grids share
/// direction: `x_in = scale * x_out + shift`; `None` when the directions differ.
pub fn axis_maps(input: &Geometry, output: &Geometry) -> Option<[(f64, f64); 3]> {
    if !input.same_direction(output, 1e-6) {
        return None;
    }
    let inv = inverse(&input.direction)?;
    let d = mat_vec(&inv, [0, 1, 2].map(|r| output.origin[r] - input.origin[r]));
    Some(std::array::from_fn(|a| {
        (output.spacing[a] / input.spacing[a], d[a] / input.spacing[a])
    }))
}

/// Affine map output index -> input continuous index: `(matrix, offset)`.
pub(crate) fn index_map(input: &Geometry, output: &Geometry) -> Result<([[f64; 3]; 3], [f64; 3])> {
    let inv = inverse(&input.linear())
        .ok_or_else(|| ImagingError::InvalidArgument("degenerate input geometry".into()))?;
    let m = mat_mul(&inv, &output.linear());
    let b = mat_vec(&inv, [0, 1, 2].map(|r| output.origin[r] - input.origin[r]));
    Ok((m, b))
}

/// Resamples onto an arbitrary grid (`dims`, `geometry`), channel by channel.
pub fn resample_onto(
    vol: &Volume,
    dims: [usize; 3],
    geometry: &Geometry,
    interp: Interpolation,
) -> Result<Volume> {
    if dims.contains(&0) {
        return Err(ImagingError::InvalidArgument(format!("output size {dims:?}")));
    }
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|v| v.checked_mul(vol.channels));
    if n.is_none_or(|n| n > (1usize << 34)) {
        return Err(ImagingError::InvalidArgument(format!(
            "output size {dims:?} is too large"
        )));
    }
    let voxels = match axis_maps(&vol.geometry, geometry) {
        Some(maps) => separable::resample(vol, dims, maps, interp),
        None => general::resample(vol, dims, index_map(&vol.geometry, geometry)?, interp),
    };
    Volume::new(dims, vol.channels, *geometry, voxels)
}

/// A one-channel volume resampled (trilinear) onto the grid `dims` / `geometry`, thresholded
/// (above `thresh`: 1, else 0) and written into `mask`, a `u8` volume of `mask_dims` in
/// which that grid starts at voxel `at`. This is how a network's probabilities on a crop
/// become the crop's part of a whole-image mask without a crop-sized float volume or a
/// pasting copy; for a floating-point `vol` the values compared are those
/// [`resample_onto`] gives. Voxels of `mask`
/// outside the grid are left as they are.
pub fn threshold_onto(
    vol: &Volume,
    dims: [usize; 3],
    geometry: &Geometry,
    thresh: f64,
    mask: &mut [u8],
    mask_dims: [usize; 3],
    at: [usize; 3],
) -> Result<()> {
    let fits = (0..3).all(|a| dims[a] > 0 && at[a].checked_add(dims[a]).is_some_and(|e| e <= mask_dims[a]));
    if vol.channels != 1 || !fits || mask.len() != mask_dims.iter().product::<usize>() {
        return Err(ImagingError::InvalidArgument(format!(
            "thresholding a {}-channel volume onto {dims:?} at {at:?} of a mask of {mask_dims:?} ({} bytes)",
            vol.channels,
            mask.len()
        )));
    }
    let plane = mask_dims[0] * mask_dims[1];
    let mut slices: Vec<&mut [u8]> = mask.chunks_mut(plane).skip(at[2]).take(dims[2]).collect();
    // One output slice (`dims[0] * dims[1]` values, x fastest) into its mask plane.
    let put = |dst: &mut [u8], value: &mut dyn FnMut(&mut [u8], usize)| {
        for j in 0..dims[1] {
            value(
                &mut dst[(at[1] + j) * mask_dims[0] + at[0]..][..dims[0]],
                j * dims[0],
            );
        }
    };
    let above = |x: f32| u8::from(f64::from(x) > thresh);
    match axis_maps(&vol.geometry, geometry) {
        Some(maps) => {
            let taps: [Vec<separable::Taps>; 3] = std::array::from_fn(|a| {
                (0..dims[a])
                    .map(|i| separable::linear_taps(maps[a].0 * i as f64 + maps[a].1, vol.dims[a]))
                    .collect()
            });
            crate::with_voxels!(&vol.voxels, v => separable::linear_with(v, vol.dims, &taps, &mut slices, |p0, p1, t, dst| {
                put(dst, &mut |row, o| {
                    for ((d, p), q) in row.iter_mut().zip(&p0[o..]).zip(&p1[o..]) {
                        *d = above(t.w0 * p + t.w1 * q);
                    }
                })
            }));
        }
        None => {
            let onto = resample_onto(vol, dims, geometry, Interpolation::Linear)?;
            let values = onto.voxels.as_f32();
            let n = dims[0] * dims[1];
            for (k, dst) in slices.iter_mut().enumerate() {
                put(dst, &mut |row, o| {
                    for (d, x) in row.iter_mut().zip(&values[k * n + o..]) {
                        *d = above(*x);
                    }
                });
            }
        }
    }
    Ok(())
}

/// Resamples onto a grid with the general (per-voxel affine) path even when the separable
/// path would apply; the two agree, which the tests check.
pub fn resample_onto_general(
    vol: &Volume,
    dims: [usize; 3],
    geometry: &Geometry,
    interp: Interpolation,
) -> Result<Volume> {
    let voxels = general::resample(vol, dims, index_map(&vol.geometry, geometry)?, interp);
    Volume::new(dims, vol.channels, *geometry, voxels)
}

/// Resamples onto `reference`'s grid (e.g. a mask back onto its image).
pub fn resample_like(vol: &Volume, reference: &Volume, interp: Interpolation) -> Result<Volume> {
    resample_onto(vol, reference.dims, &reference.geometry, interp)
}

/// Resamples to a new spacing keeping the physical extent (see the module docs).
pub fn resample_to_spacing(vol: &Volume, spacing: [f64; 3], interp: Interpolation) -> Result<Volume> {
    let (dims, g) = grid_for_spacing(vol.dims, &vol.geometry, spacing)?;
    resample_onto(vol, dims, &g, interp)
}
