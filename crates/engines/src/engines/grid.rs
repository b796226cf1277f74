//! Grid helpers shared by the engines: resizing a volume onto a grid covering the same
//! physical region (parallel, through `aiaa_imaging`'s resampler), a network's answer on a
//! region back into a whole-image mask, and boxes in index space.

use aiaa_imaging::resample::{Interpolation, resample_onto, threshold_onto};
use aiaa_imaging::{Geometry, Volume, Voxels};
use aiaa_transforms::spatial::{resize_geometry, resize_grid};
use serde::Deserialize;

use crate::error::Result;
use crate::tensor::{Layout, foreground_channel, to_volume};

/// Interpolation as configs name it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interp {
    /// Trilinear.
    #[default]
    Linear,
    /// Nearest neighbour (torch's `nearest-exact` on the same grids).
    Nearest,
}

impl From<Interp> for Interpolation {
    fn from(i: Interp) -> Self {
        match i {
            Interp::Linear => Interpolation::Linear,
            Interp::Nearest => Interpolation::Nearest,
        }
    }
}

/// `vol` resized to `dims` over the same physical region (voxel centres at
/// `(out + 0.5) * in / out - 0.5`); the volume itself when the size already matches.
pub fn resize(vol: &Volume, dims: [usize; 3], interp: Interp) -> Result<Volume> {
    if vol.dims == dims {
        return Ok(vol.clone());
    }
    let geometry = resize_geometry(vol, dims);
    Ok(resample_onto(vol, dims, &geometry, interp.into())?)
}

/// `vol` (on a grid covering the same region as the `dims` / `geometry` grid) resampled back
/// onto that grid.
pub fn resize_back(vol: &Volume, dims: [usize; 3], geometry: Geometry, interp: Interp) -> Result<Volume> {
    if vol.dims == dims {
        let mut v = vol.clone();
        v.geometry = geometry;
        return Ok(v);
    }
    Ok(resample_onto(vol, dims, &geometry, interp.into())?)
}

/// The network's foreground probability (`y`: its finished `roi`-sized output, channel 1)
/// back onto the region's grid (`region`: dims and geometry; linear) and thresholded above
/// `thresh` straight into a zeroed `u8` mask of `image`'s grid, the region starting at voxel
/// `start`. The mask is empty outside the region, so the work after the forward pass is
/// bounded by the region, not by the image.
pub fn region_answer(
    y: &tch::Tensor,
    roi: [usize; 3],
    region: ([usize; 3], Geometry),
    thresh: f64,
    image: &Volume,
    start: [usize; 3],
) -> Result<Volume> {
    let (dims, geometry) = region;
    let out = to_volume(y, Layout::Kji, roi, resize_grid(dims, &geometry, roi))?;
    let prob = foreground_channel(&out)?;
    let mut mask = vec![0u8; image.voxel_count()];
    threshold_onto(&prob, dims, &geometry, thresh, &mut mask, image.dims, start)?;
    Ok(Volume::scalar(image.dims, image.geometry, Voxels::U8(mask))?)
}

/// An index box `[start, start + size)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Box3 {
    /// First voxel.
    pub start: [usize; 3],
    /// Size in voxels (each > 0).
    pub size: [usize; 3],
}

/// Writes `part` (a single-channel volume) into a zero volume of `dims` on `geometry` at `at`.
pub fn paste(part: &Volume, dims: [usize; 3], geometry: Geometry, at: [usize; 3]) -> Result<Volume> {
    let start = at.map(|s| -(s as i64));
    let mut out = aiaa_imaging::crop::region(part, start, dims, 0.0)?;
    out.geometry = geometry;
    Ok(out)
}
