//! Surfaces (edge voxels), surface distances, percentiles: the building blocks of NSD and
//! HD95, defined as MONAI 1.6.1 defines them (`monai.metrics.utils.get_mask_edges`,
//! `get_surface_distance`, `hausdorff_distance._compute_percentile_hausdorff_distance`):
//!
//! * **Edges** ([`edges`]): `mask XOR binary_erosion(mask)` with scipy's default structuring
//!   element (the 6-neighbourhood in 3D) and border value 0: a foreground voxel is an edge
//!   when one of its face neighbours is background or lies outside the grid. MONAI first
//!   crops both masks to the bounding box of their union plus a one-voxel margin (padding
//!   with background where needed); that changes neither the edges nor any distance, and we
//!   crop the same way (without the margin: outside the box counts as background).
//!   Axes along which the whole image has a single voxel are not used (a `nx x ny x 1`
//!   volume is a 2D image, as MONAI sees the squeezed 2D array).
//! * **Surface distances** ([`directed_distances`]): for each edge voxel of one mask, the
//!   Euclidean distance in millimetres (index offsets times spacing) to the nearest edge voxel
//!   of the other mask. MONAI queries a KD-tree over the edge voxels; we evaluate an exact
//!   distance transform of the other edge set ([`crate::edt`]) at the edge voxels: the same
//!   numbers.
//! * **Percentile** ([`percentile_linear`]): `torch.quantile`'s default (`numpy`'s
//!   "linear"): the value at position `q · (n − 1)` of the sorted distances, interpolated
//!   linearly between its neighbours.
//! * **Within tolerance** ([`within_tolerance`]): MONAI compares its `float32` distances with
//!   the tolerance as `float32`; we do the same, so a distance that equals the tolerance up to
//!   rounding (e.g. `3 × 0.8 mm` against `2.4 mm`) counts as within it, as in MONAI.

use rayon::prelude::*;

/// Edge voxels of `mask` (see the module docs) on a grid of `dims`; `active[a]` says whether
/// neighbours along axis `a` are considered (false for an axis the whole image lacks).
/// Voxels outside the grid count as background.
pub fn edges(mask: &[bool], dims: [usize; 3], active: [bool; 3]) -> Vec<bool> {
    let [nx, ny, _] = dims;
    let mut out = vec![false; mask.len()];
    let step = [1, nx, nx * ny];
    out.par_chunks_mut(nx * ny).enumerate().for_each(|(k, slice)| {
        for j in 0..ny {
            for i in 0..nx {
                let o = i + nx * (j + ny * k);
                if !mask[o] {
                    continue;
                }
                let pos = [i, j, k];
                let edge = (0..3).any(|a| {
                    active[a]
                        && (pos[a] == 0 || pos[a] + 1 == dims[a] || !mask[o - step[a]] || !mask[o + step[a]])
                });
                slice[i + nx * j] = edge;
            }
        }
    });
    out
}

/// Distances (mm) at the voxels where `from` is true, given the squared distance transform
/// `to_squared` (mm²) of the other edge set. Infinite where the other set is empty.
pub fn directed_distances(from: &[bool], to_squared: &[f64]) -> Vec<f64> {
    from.par_chunks(1 << 16)
        .zip(to_squared.par_chunks(1 << 16))
        .flat_map_iter(|(f, d)| f.iter().zip(d).filter(|(f, _)| **f).map(|(_, d)| d.sqrt()))
        .collect()
}

/// The `q`-quantile (`0 ≤ q ≤ 1`) with linear interpolation between order statistics
/// (`torch.quantile`/`numpy.quantile` default). NaN for an empty slice; infinite values
/// sort last (an interpolation between two infinities is infinite).
pub fn percentile_linear(values: &[f64], q: f64) -> f64 {
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    let frac = pos - lo as f64;
    let (_, &mut a, rest) = v.select_nth_unstable_by(lo, f64::total_cmp);
    if frac == 0.0 || hi == lo {
        return a;
    }
    // The next order statistic is the smallest of the values above `lo`.
    let b = rest.iter().copied().fold(f64::INFINITY, f64::min);
    if a == b {
        return a;
    }
    a + (b - a) * frac
}

/// Number of distances `d` with `d <= tolerance`, both rounded to `f32` as in MONAI.
pub fn within_tolerance(distances: &[f64], tolerance: f64) -> u64 {
    let t = tolerance as f32;
    distances.iter().filter(|&&d| (d as f32) <= t).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cube_edges() {
        // A 3x3x3 cube inside a 5x5x5 grid: 26 edge voxels (all but the centre).
        let dims = [5, 5, 5];
        let mut m = vec![false; 125];
        for k in 1..4 {
            for j in 1..4 {
                for i in 1..4 {
                    m[i + 5 * (j + 5 * k)] = true;
                }
            }
        }
        let e = edges(&m, dims, [true; 3]);
        assert_eq!(e.iter().filter(|&&x| x).count(), 26);
        assert!(!e[2 + 5 * (2 + 5 * 2)]);
        // Filling the grid: only voxels on the grid border are edges (outside = background).
        let full = vec![true; 125];
        assert_eq!(
            edges(&full, dims, [true; 3]).iter().filter(|&&x| x).count(),
            125 - 27
        );
        // A 2D image (one slice, k inactive): a filled 5x5 square has 16 edge pixels.
        let sq = vec![true; 25];
        assert_eq!(
            edges(&sq, [5, 5, 1], [true, true, false])
                .iter()
                .filter(|&&x| x)
                .count(),
            16
        );
    }

    #[test]
    fn percentile_matches_numpy_linear() {
        // numpy.quantile([1, 2, 3, 4, 10], 0.95) = 8.8
        assert!((percentile_linear(&[10.0, 1.0, 3.0, 2.0, 4.0], 0.95) - 8.8).abs() < 1e-12);
        assert_eq!(percentile_linear(&[5.0], 0.95), 5.0);
        assert_eq!(percentile_linear(&[1.0, 2.0], 0.0), 1.0);
        assert_eq!(percentile_linear(&[1.0, 2.0], 1.0), 2.0);
        assert!(percentile_linear(&[], 0.5).is_nan());
        assert_eq!(
            percentile_linear(&[f64::INFINITY, f64::INFINITY], 0.95),
            f64::INFINITY
        );
    }

    #[test]
    fn tolerance_in_f32() {
        assert_eq!(within_tolerance(&[3.0 * 0.8, 2.5, 2.0], 2.4), 2);
        // In f64, 3 x 0.8 is 2.4000000000000004 > 2.4: only the f32 comparison counts it.
        assert_ne!(std::hint::black_box(3.0) * 0.8, 2.4);
    }
}
