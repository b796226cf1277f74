//! Volumes to network tensors and back.
//!
//! A volume's voxels lie `i` fastest, channels slowest (`aiaa_imaging`'s layout), which is a
//! C-order `[C, k, j, i]` array. The network input layout is part of the model config
//! (`"input_layout"`): `"ijk"` (the default, `[N, C, i, j, k]` like MONAI and nibabel-based
//! code such as deepbet) or `"kji"` (`[N, C, k, j, i]`, SimpleITK-style arrays).

use aiaa_imaging::{Geometry, Volume, Voxels};
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

/// A `[1, C, ...]` `f32` tensor from a volume (cast to `f32` when needed).
pub fn to_tensor(vol: &Volume, layout: Layout) -> Tensor {
    let [nx, ny, nz] = vol.dims;
    let c = vol.channels as i64;
    let t = Tensor::from_slice(&vol.voxels.as_f32()).view([c, nz as i64, ny as i64, nx as i64]);
    // A view: the device thread makes it contiguous (see `device::Finish` for why).
    let t = match layout {
        Layout::Kji => t,
        Layout::Ijk => t.permute([0, 3, 2, 1]),
    };
    t.unsqueeze(0)
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
    let t = match layout {
        Layout::Kji => t.shallow_clone(),
        Layout::Ijk => t.permute([0, 1, 4, 3, 2]),
    };
    let data = Vec::<f32>::try_from(t.contiguous().flatten(0, -1))
        .map_err(|e| EngineError::Internal(format!("reading the network output: {e}")))?;
    Ok(Volume::new(dims, k, geometry, Voxels::F32(data))?)
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
