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

/// The region `[start, start + size)` of `image` resized to `dims` (as [`resize`] of its
/// crop), sampled from `image` where it lies, without copying the region out first; and the
/// region's own grid (its geometry), which the answer goes back onto. The sample positions
/// are those of the crop, so the values are too, but where a region shorter than `dims` on an
/// axis is stretched: there the end voxels, which lie up to half a voxel outside the region,
/// blend with the image's voxels beyond it rather than repeating the region's edge.
pub fn resize_region(
    image: &Volume,
    start: [usize; 3],
    size: [usize; 3],
    dims: [usize; 3],
    interp: Interp,
) -> Result<(Geometry, Volume)> {
    let mut region = image.geometry;
    region.origin = image.geometry.index_to_physical(start.map(|s| s as f64));
    let grid = resize_grid(size, &region, dims);
    Ok((region, resample_onto(image, dims, &grid, interp.into())?))
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
    threshold_reachable(&prob, (dims, geometry), thresh, &mut mask, image.dims, start)?;
    Ok(Volume::scalar(image.dims, image.geometry, Voxels::U8(mask))?)
}

/// Values this far below the threshold are taken as possibly above it when bounding the
/// work, so that rounding in the interpolation weights can never matter.
const REACH_MARGIN: f32 = 1e-3;

/// [`threshold_onto`] of `prob` (on the roi grid resized from `region`) onto `region`, but
/// only over the part of it whose interpolated value can exceed `thresh`: a linear
/// interpolation is a convex blend of its taps, so a region voxel whose taps all lie outside
/// the box of the roi voxels above `thresh` (less [`REACH_MARGIN`]) stays 0. The box grows by
/// a voxel on each side beyond the taps' reach. For a brain in a whole-head box that skips a
/// third of the region's voxels; the mask is the same.
fn threshold_reachable(
    prob: &Volume,
    region: ([usize; 3], Geometry),
    thresh: f64,
    mask: &mut [u8],
    mask_dims: [usize; 3],
    start: [usize; 3],
) -> Result<()> {
    let (dims, geometry) = region;
    let roi = prob.dims;
    let values = prob.voxels.as_f32();
    let floor = thresh as f32 - REACH_MARGIN;
    let mut lo = roi;
    let mut hi = [0usize; 3];
    for (o, &v) in values.iter().enumerate() {
        if v > floor {
            let idx = [o % roi[0], (o / roi[0]) % roi[1], o / (roi[0] * roi[1])];
            for a in 0..3 {
                lo[a] = lo[a].min(idx[a]);
                hi[a] = hi[a].max(idx[a]);
            }
        }
    }
    if (0..3).any(|a| lo[a] > hi[a]) {
        return Ok(()); // nothing can exceed the threshold: the mask stays empty
    }
    // Region voxel i samples the roi at x = (i + 0.5) * roi / dims - 0.5 with taps floor(x)
    // and floor(x) + 1; it can reach the box when x >= lo - 1 and x < hi + 1.
    let mut sub_start = [0usize; 3];
    let mut sub_size = [0usize; 3];
    for a in 0..3 {
        let scale = dims[a] as f64 / roi[a] as f64;
        let first = ((lo[a] as f64 - 0.5) * scale - 0.5).floor() - 1.0;
        let end = ((hi[a] as f64 + 1.5) * scale - 0.5).ceil() + 1.0;
        let first = first.clamp(0.0, dims[a] as f64) as usize;
        let end = end.clamp(0.0, dims[a] as f64) as usize;
        if end <= first {
            return Ok(());
        }
        sub_start[a] = first;
        sub_size[a] = end - first;
    }
    let mut sub_geometry = geometry;
    sub_geometry.origin = geometry.index_to_physical(sub_start.map(|s| s as f64));
    let at = std::array::from_fn(|a| start[a] + sub_start[a]);
    threshold_onto(prob, sub_size, &sub_geometry, thresh, mask, mask_dims, at)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An anisotropic grid turned 0.3 rad about z, off the origin.
    fn oblique() -> Geometry {
        let mut geometry = Geometry::with_spacing([0.9, 1.1, 2.5]);
        geometry.origin = [-31.0, 12.5, 4.0];
        let (c, s) = (0.3f64.cos(), 0.3f64.sin());
        geometry.direction = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        geometry
    }

    /// A blob of probability on a 24 x 20 x 16 roi grid, resized from a region of an
    /// oblique, anisotropic image: the bounded threshold gives the mask the whole region's
    /// threshold gives, voxel for voxel, wherever the blob sits (edges included).
    #[test]
    fn the_bounded_threshold_gives_the_whole_regions_mask() {
        let image_dims = [70, 64, 40];
        let geometry = oblique();
        let start = [5, 7, 3];
        let dims = [57, 49, 31];
        let region_geometry = {
            let mut g = geometry;
            g.origin = geometry.index_to_physical(start.map(|v| v as f64));
            g
        };
        let roi = [24, 20, 16];
        let roi_geometry = resize_grid(dims, &region_geometry, roi);
        for centre in [
            [12.0, 10.0, 8.0],
            [1.0, 18.5, 0.5],
            [23.0, 0.0, 15.0],
            [6.3, 14.1, 3.7],
        ] {
            let mut p = Vec::with_capacity(roi.iter().product());
            for k in 0..roi[2] {
                for j in 0..roi[1] {
                    for i in 0..roi[0] {
                        let d2 = [i, j, k]
                            .iter()
                            .zip(centre)
                            .map(|(&x, c)| (x as f64 - c).powi(2))
                            .sum::<f64>();
                        p.push((-d2 / 18.0).exp() as f32);
                    }
                }
            }
            let prob = Volume::scalar(roi, roi_geometry, Voxels::F32(p)).unwrap();
            let n: usize = image_dims.iter().product();
            let mut whole = vec![0u8; n];
            threshold_onto(&prob, dims, &region_geometry, 0.5, &mut whole, image_dims, start).unwrap();
            let mut bounded = vec![0u8; n];
            threshold_reachable(
                &prob,
                (dims, region_geometry),
                0.5,
                &mut bounded,
                image_dims,
                start,
            )
            .unwrap();
            let set = whole.iter().filter(|&&v| v > 0).count();
            assert!(set > 50, "the blob at {centre:?} sets {set} voxels");
            let differ = whole.iter().zip(&bounded).filter(|(a, b)| a != b).count();
            assert_eq!(differ, 0, "blob at {centre:?}: {differ} of {set} voxels differ");
        }
        // Nothing above the threshold: nothing set.
        let prob = Volume::scalar(roi, roi_geometry, Voxels::F32(vec![0.2; roi.iter().product()])).unwrap();
        let mut mask = vec![0u8; image_dims.iter().product()];
        threshold_reachable(&prob, (dims, region_geometry), 0.5, &mut mask, image_dims, start).unwrap();
        assert!(mask.iter().all(|&v| v == 0));
    }

    /// Resizing a region straight from the image gives what resizing its crop gives, on an
    /// oblique, anisotropic image: the same values wherever the region is shrunk (every
    /// axis here), and everywhere but the end voxels of an axis it is stretched along.
    #[test]
    fn a_region_resized_from_the_image_is_its_crop_resized() {
        let dims = [40, 36, 22];
        let geometry = oblique();
        let values: Vec<f32> = (0..dims.iter().product::<usize>())
            .map(|v| ((v * 7919) % 1009) as f32 * 0.25 - 40.0)
            .collect();
        let image = Volume::scalar(dims, geometry, Voxels::F32(values)).unwrap();
        let (start, size) = ([3, 5, 2], [31, 27, 9]);
        for (roi, stretched) in [([16, 12, 8], false), ([16, 12, 13], true)] {
            let crop = aiaa_imaging::crop::crop(&image, start, size).unwrap();
            let want = resize(&crop, roi, Interp::Linear).unwrap();
            let (region, got) = resize_region(&image, start, size, roi, Interp::Linear).unwrap();
            assert_eq!(region, crop.geometry);
            assert_eq!((got.dims, got.geometry), (want.dims, want.geometry));
            let (a, b) = (got.voxels.as_f32(), want.voxels.as_f32());
            for (o, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                let z = o / (roi[0] * roi[1]);
                if !(stretched && (z == 0 || z == roi[2] - 1)) {
                    assert!(
                        (x - y).abs() <= 1e-4 * y.abs().max(1.0),
                        "roi {roi:?} voxel {o}: {x} against {y}"
                    );
                }
            }
        }
    }
}
