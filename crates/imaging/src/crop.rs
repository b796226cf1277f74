//! Cropping and padding with geometry kept: the output's voxel `(0, 0, 0)` sits at the
//! physical position of input index `start`, so every voxel keeps its physical location.

use crate::voxels::Element;
use crate::{ImagingError, Result, Volume, with_voxels};

/// Extracts the region starting at input index `start` (may be negative or extend past the
/// input: those voxels are filled with `fill`) of size `size`.
pub fn region(vol: &Volume, start: [i64; 3], size: [usize; 3], fill: f64) -> Result<Volume> {
    if size.contains(&0)
        || size
            .iter()
            .try_fold(vol.channels, |a, &d| a.checked_mul(d))
            .is_none_or(|n| n > 1 << 34)
    {
        return Err(ImagingError::InvalidArgument(format!("region size {size:?}")));
    }
    let din = vol.dims;
    let n_in = vol.voxel_count();
    let n_out = size[0] * size[1] * size[2];
    let voxels = with_voxels!(&vol.voxels, v => {
        let f = Element::from_f64(fill);
        let mut out = vec![f; n_out * vol.channels];
        for c in 0..vol.channels {
            for k in 0..size[2] {
                let kk = start[2] + k as i64;
                if kk < 0 || kk >= din[2] as i64 {
                    continue;
                }
                for j in 0..size[1] {
                    let jj = start[1] + j as i64;
                    if jj < 0 || jj >= din[1] as i64 {
                        continue;
                    }
                    // Overlap of [start0, start0 + size0) with [0, din0).
                    let i_lo = (-start[0]).max(0) as usize;
                    let i_hi = ((din[0] as i64 - start[0]).min(size[0] as i64)).max(0) as usize;
                    if i_lo >= i_hi {
                        continue;
                    }
                    let src0 = c * n_in + (start[0] + i_lo as i64) as usize + din[0] * (jj as usize + din[1] * kk as usize);
                    let dst0 = c * n_out + i_lo + size[0] * (j + size[1] * k);
                    out[dst0..dst0 + (i_hi - i_lo)].copy_from_slice(&v[src0..src0 + (i_hi - i_lo)]);
                }
            }
        }
        Element::wrap(out)
    });
    let mut g = vol.geometry;
    g.origin = g.index_to_physical(start.map(|s| s as f64));
    Volume::new(size, vol.channels, g, voxels)
}

/// Crops to `[start, start + size)` (must lie inside the volume).
pub fn crop(vol: &Volume, start: [usize; 3], size: [usize; 3]) -> Result<Volume> {
    if (0..3).any(|a| start[a].checked_add(size[a]).is_none_or(|e| e > vol.dims[a])) {
        return Err(ImagingError::InvalidArgument(format!(
            "crop {start:?}+{size:?} outside {:?}",
            vol.dims
        )));
    }
    region(vol, start.map(|s| s as i64), size, 0.0)
}

/// Pads by `before`/`after` voxels on each axis with `fill`.
pub fn pad(vol: &Volume, before: [usize; 3], after: [usize; 3], fill: f64) -> Result<Volume> {
    let size = std::array::from_fn(|a| vol.dims[a] + before[a] + after[a]);
    region(vol, before.map(|b| -(b as i64)), size, fill)
}
