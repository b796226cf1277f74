//! Volumes to network tensors and back.
//!
//! A volume's voxels lie `i` fastest, channels slowest (`aiaa_imaging`'s layout), which is a
//! C-order `[C, k, j, i]` array. The network input layout is part of the model config
//! (`"input_layout"`): `"ijk"` (the default, `[N, C, i, j, k]` like MONAI and nibabel-based
//! code such as deepbet) or `"kji"` (`[N, C, k, j, i]`, SimpleITK-style arrays).

use aiaa_imaging::{Geometry, Volume, Voxels};
use aiaa_jit::{f32_tensor, f32_tensor_with};
use serde::Deserialize;
use tch::Tensor;

use crate::error::{EngineError, Result};

/// The axis order a network expects after `N, C`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[N, C, i, j, k]`.
    #[default]
    Ijk,
    /// `[N, C, k, j, i]`.
    Kji,
}

/// A `[1, C, ...]` `f32` tensor from a volume (cast to `f32` when needed). Made with
/// [`aiaa_jit::f32_tensor`], not tch's `from_slice`: it runs on a request's thread, where a
/// parallel fill would start an OpenMP team that slows the device thread's forward passes.
pub fn to_tensor(vol: &Volume, layout: Layout) -> Result<Tensor> {
    let [nx, ny, nz] = vol.dims;
    let c = vol.channels as i64;
    let voxels = vol.voxels.as_f32();
    let made = match layout {
        Layout::Kji => f32_tensor(&voxels, &[1, c, nz as i64, ny as i64, nx as i64]),
        // Swapped straight into the tensor: no volume-sized intermediate.
        Layout::Ijk => f32_tensor_with(&[1, c, nx as i64, ny as i64, nz as i64], |out| {
            swap_first_last_into(&voxels, vol.channels, [nz, ny, nx], out)
        }),
    };
    made.map_err(|e| EngineError::Internal(format!("the network input: {e}")))
}

/// The `[1, K, ...]` output of a network on the grid `dims` / `geometry` as a `K`-channel
/// `f32` volume.
pub fn to_volume(t: &Tensor, layout: Layout, dims: [usize; 3], geometry: Geometry) -> Result<Volume> {
    let size = t.size();
    let spatial: [i64; 3] = match layout {
        Layout::Ijk => [dims[0], dims[1], dims[2]].map(|d| d as i64),
        Layout::Kji => [dims[2], dims[1], dims[0]].map(|d| d as i64),
    };
    if size.len() != 5 || size[0] != 1 || size[2..] != spatial {
        return Err(EngineError::Internal(format!(
            "the network answered a tensor of shape {size:?}; expected [1, K, {}, {}, {}]",
            spatial[0], spatial[1], spatial[2]
        )));
    }
    let k = size[1] as usize;
    let data = Vec::<f32>::try_from(t.contiguous().flatten(0, -1))
        .map_err(|e| EngineError::Internal(format!("reading the network output: {e}")))?;
    let data = match layout {
        Layout::Kji => data,
        Layout::Ijk => swap_first_last(&data, k, dims),
    };
    Ok(Volume::new(dims, k, geometry, Voxels::F32(data))?)
}

/// `channels` C-order `[n0, n1, n2]` arrays, one after another, with their first and last
/// axes swapped (`[n2, n1, n0]`): a volume's `k, j, i` memory order to a network's `i, j, k`
/// and back. For each middle index, a band of `TILE` rows along the last axis is copied into
/// a small buffer, then written out as contiguous runs along the new last axis: every read
/// and write streams. A direct tiled loop is twice as slow (rows a power-of-two apart share
/// cache sets) and torch's `permute(..).contiguous()` four times (and it would start an
/// OpenMP team on the calling thread).
pub fn swap_first_last(src: &[f32], channels: usize, dims: [usize; 3]) -> Vec<f32> {
    let mut out = vec![0.0f32; src.len()];
    swap_first_last_into(src, channels, dims, &mut out);
    out
}

/// [`swap_first_last`] into `out` (as long as `src`), every element of which it writes.
pub fn swap_first_last_into(src: &[f32], channels: usize, [n0, n1, n2]: [usize; 3], out: &mut [f32]) {
    const TILE: usize = 16;
    let n = n0 * n1 * n2;
    debug_assert_eq!(src.len(), n * channels);
    assert_eq!(out.len(), src.len(), "swap_first_last_into: output length");
    let mut band = vec![0.0f32; TILE * n2];
    for (src, out) in src.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        for b in 0..n1 {
            for a0 in (0..n0).step_by(TILE) {
                let width = (a0 + TILE).min(n0) - a0;
                for (t, row) in band.chunks_exact_mut(n2).take(width).enumerate() {
                    let start = ((a0 + t) * n1 + b) * n2;
                    row.copy_from_slice(&src[start..start + n2]);
                }
                for c in 0..n2 {
                    let start = (c * n1 + b) * n0 + a0;
                    for (t, v) in out[start..start + width].iter_mut().enumerate() {
                        *v = band[t * n2 + c];
                    }
                }
            }
        }
    }
}

/// The probability of the foreground from a `K`-channel network output: channel 1 of a
/// two-or-more-channel output (channel 0 is the background), channel 0 of a one-channel one.
pub fn foreground_channel(out: &Volume) -> Result<Volume> {
    Ok(out.channel(if out.channels >= 2 { 1 } else { 0 })?)
}

/// Labels `1..K-1` by argmax over channels (0 = background); a one-channel output is
/// thresholded at `thresh`. The labels are `u8` (`u16` beyond 256 classes).
pub fn labels(out: &Volume, thresh: f64) -> Result<Volume> {
    let n = out.voxel_count();
    let k = out.channels;
    let probs = out.voxels.as_f32();
    let argmax = |o: usize| {
        let mut best = 0;
        for c in 1..k {
            if probs[o + c * n] > probs[o + best * n] {
                best = c;
            }
        }
        best
    };
    let voxels = if k == 1 {
        Voxels::U8(
            probs[..n]
                .iter()
                .map(|&p| u8::from(f64::from(p) > thresh))
                .collect(),
        )
    } else if k <= 256 {
        Voxels::U8((0..n).map(|o| argmax(o) as u8).collect())
    } else {
        Voxels::U16((0..n).map(|o| argmax(o) as u16).collect())
    };
    Ok(Volume::scalar(out.dims, out.geometry, voxels)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swapping_first_and_last_axes_matches_torch_permute() {
        // Sizes that are not multiples of the tile, two channels.
        let (c, dims) = (2, [37usize, 5, 70]);
        let n = c * dims.iter().product::<usize>();
        let src: Vec<f32> = (0..n).map(|v| v as f32).collect();
        let ours = swap_first_last(&src, c, dims);
        let shape = [c as i64, dims[0] as i64, dims[1] as i64, dims[2] as i64];
        let torch = Tensor::from_slice(&src)
            .view(shape)
            .permute([0, 3, 2, 1])
            .contiguous()
            .flatten(0, -1);
        assert_eq!(ours, Vec::<f32>::try_from(torch).unwrap());
        // Swapping twice gives the source back.
        assert_eq!(swap_first_last(&ours, c, [dims[2], dims[1], dims[0]]), src);
    }

    #[test]
    fn tensors_and_volumes_round_trip_in_both_layouts() {
        let dims = [6usize, 4, 3];
        let n: usize = dims.iter().product();
        let vol = Volume::new(
            dims,
            1,
            Geometry::default(),
            Voxels::F32((0..n).map(|v| v as f32).collect()),
        )
        .unwrap();
        for layout in [Layout::Ijk, Layout::Kji] {
            let t = to_tensor(&vol, layout).unwrap();
            if layout == Layout::Ijk {
                assert_eq!(t.size(), [1, 1, 6, 4, 3]);
                // Voxel (i, j, k) = (5, 2, 1) is i + 6 (j + 4 k) = 41.
                assert_eq!(t.double_value(&[0, 0, 5, 2, 1]), 41.0);
            }
            let back = to_volume(&t, layout, dims, Geometry::default()).unwrap();
            assert_eq!(back.voxels.as_f32(), vol.voxels.as_f32());
        }
    }
}
