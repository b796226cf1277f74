//! Exact Euclidean distance transform with per-axis spacing.
//!
//! [`squared_distance_to`] computes, for every voxel of a grid, the squared physical distance
//! (mm²) to the nearest *feature* voxel, exactly (no chamfer approximation), with the
//! separable algorithm of Felzenszwalb & Huttenlocher ("Distance Transforms of Sampled
//! Functions", Theory of Computing 8, 2012):
//!
//! 1. along `i`: a forward and a backward scan give each voxel the distance to the nearest
//!    feature in its row, `(Δi·sx)²` (infinite when the row has none);
//! 2. along `k`, then along `j`: the lower envelope of the parabolas
//!    `q ↦ (p − q)²·s² + f(q)` of each line, in linear time.
//!
//! The physical position along an axis is `index · spacing`; the direction cosines are not
//! needed because they are orthonormal (distances do not depend on them).
//!
//! Layout and parallelism (safe Rust, rayon): the input and output are in the crate's
//! layout (`i` fastest). Stage 1 works per `j`-plane: it reads the rows `(·, j, k)` of the
//! feature mask, runs the `i` and `k` passes, and writes one contiguous `[k][i]` block of an
//! intermediate buffer laid out `[j][k][i]`. Stage 2 works per `k`-slice: it gathers the
//! rows `(·, j, k)` of the intermediate buffer into one contiguous `[j][i]` block of the
//! output (`[k][j][i]`, the crate's layout) and runs the `j` pass there. Each task owns
//! one contiguous output block and only reads shared buffers.

use rayon::prelude::*;

use crate::{MetricsError, Result};

/// Squared distance (mm²) from every voxel to the nearest voxel where `features` is true,
/// on a grid of `dims` voxels with `spacing` (mm) along `i`, `j`, `k`; layout `i` fastest.
/// Every value is `f64::INFINITY` when there is no feature voxel.
pub fn squared_distance_to(features: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Result<Vec<f64>> {
    let [nx, ny, nz] = dims;
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if n != Some(features.len()) || dims.contains(&0) {
        return Err(MetricsError::InvalidArgument(format!(
            "distance transform: grid {dims:?} does not match {} voxels",
            features.len()
        )));
    }
    if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(MetricsError::InvalidArgument(format!(
            "distance transform: spacing {spacing:?} must be positive"
        )));
    }
    let [sx, sy, sz] = spacing;

    // Stage 1: per j-plane, passes along i and k into `planes` laid out [j][k][i].
    let mut planes = vec![0.0f64; features.len()];
    planes.par_chunks_mut(nx * nz).enumerate().for_each(|(j, block)| {
        for k in 0..nz {
            let row = &features[nx * (j + ny * k)..][..nx];
            row_pass(row, sx, &mut block[nx * k..][..nx]);
        }
        if nz > 1 {
            let mut lines = LineScratch::new(nz);
            for i in 0..nx {
                lines.run_strided(block, i, nx, sz);
            }
        }
    });

    // Stage 2: per k-slice, gather [j][i] and pass along j; output in the crate's layout.
    let mut out = vec![0.0f64; features.len()];
    out.par_chunks_mut(nx * ny).enumerate().for_each(|(k, slice)| {
        for j in 0..ny {
            slice[nx * j..][..nx].copy_from_slice(&planes[nx * (k + nz * j)..][..nx]);
        }
        if ny > 1 {
            let mut lines = LineScratch::new(ny);
            for i in 0..nx {
                lines.run_strided(slice, i, nx, sy);
            }
        }
    });
    Ok(out)
}

/// Squared distance along one row to its nearest feature voxel (`(Δi·s)²`, or infinity).
fn row_pass(row: &[bool], s: f64, out: &mut [f64]) {
    // Forward: distance (in voxels) to the nearest feature at or before i.
    let mut last: Option<usize> = None;
    for (i, (&f, o)) in row.iter().zip(out.iter_mut()).enumerate() {
        if f {
            last = Some(i);
        }
        *o = last.map_or(f64::INFINITY, |l| (i - l) as f64);
    }
    // Backward: nearest feature at or after i; then to squared millimetres.
    let mut next: Option<usize> = None;
    for (i, (&f, o)) in row.iter().zip(out.iter_mut()).enumerate().rev() {
        if f {
            next = Some(i);
        }
        let d = next.map_or(*o, |nf| o.min((nf - i) as f64));
        *o = if d.is_finite() {
            (d * s) * (d * s)
        } else {
            f64::INFINITY
        };
    }
}

/// Scratch buffers for the 1D lower-envelope pass over lines of one length.
struct LineScratch {
    f: Vec<f64>,
    out: Vec<f64>,
    v: Vec<usize>,
    z: Vec<f64>,
    g: Vec<f64>,
}

impl LineScratch {
    fn new(n: usize) -> LineScratch {
        LineScratch {
            f: vec![0.0; n],
            out: vec![0.0; n],
            v: vec![0; n],
            z: vec![0.0; n + 1],
            g: vec![0.0; n],
        }
    }

    /// Runs the pass on the line `data[start + stride * t]`, `t < n`, in place.
    fn run_strided(&mut self, data: &mut [f64], start: usize, stride: usize, s: f64) {
        let n = self.f.len();
        for t in 0..n {
            self.f[t] = data[start + stride * t];
        }
        lower_envelope(&self.f, s, &mut self.out, &mut self.v, &mut self.z, &mut self.g);
        for t in 0..n {
            data[start + stride * t] = self.out[t];
        }
    }
}

/// `out[p] = min_q (p − q)²·s² + f[q]` (Felzenszwalb & Huttenlocher's 1D algorithm).
/// Infinite `f[q]` contribute no parabola; a line without any finite value stays infinite.
/// `g` is scratch space of the line's length.
fn lower_envelope(f: &[f64], s: f64, out: &mut [f64], v: &mut [usize], z: &mut [f64], g: &mut [f64]) {
    let s2 = s * s;
    let Some(first) = f.iter().position(|x| x.is_finite()) else {
        out.fill(f64::INFINITY);
        return;
    };
    // In units of s²: parabola q is (p − q)² + h[q] with h = f / s²; g[q] = h[q] + q².
    let inv = 1.0 / s2;
    for (q, (gq, &fq)) in g.iter_mut().zip(f).enumerate().skip(first) {
        let qf = q as f64;
        *gq = fq * inv + qf * qf;
    }
    // Intersection (index units) of the parabolas rooted at a < b.
    let isect = |g: &[f64], a: usize, b: usize| (g[b] - g[a]) / (2.0 * (b - a) as f64);
    let mut k = 0usize;
    v[0] = first;
    z[0] = f64::NEG_INFINITY;
    z[1] = f64::INFINITY;
    for (q, fq) in f.iter().enumerate().skip(first + 1) {
        if !fq.is_finite() {
            continue;
        }
        let mut x = isect(g, v[k], q);
        // z[0] is -inf, so this stops at k = 0 at the latest.
        while x <= z[k] {
            k -= 1;
            x = isect(g, v[k], q);
        }
        k += 1;
        v[k] = q;
        z[k] = x;
        z[k + 1] = f64::INFINITY;
    }
    k = 0;
    for (p, o) in out.iter_mut().enumerate() {
        let pf = p as f64;
        while z[k + 1] < pf {
            k += 1;
        }
        let d = (pf - v[k] as f64) * s;
        *o = d * d + f[v[k]];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: min over features of the squared physical distance.
    fn brute(features: &[bool], dims: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
        let pts: Vec<[usize; 3]> = (0..features.len())
            .filter(|&o| features[o])
            .map(|o| [o % dims[0], (o / dims[0]) % dims[1], o / (dims[0] * dims[1])])
            .collect();
        (0..features.len())
            .map(|o| {
                let p = [o % dims[0], (o / dims[0]) % dims[1], o / (dims[0] * dims[1])];
                pts.iter()
                    .map(|q| {
                        (0..3)
                            .map(|a| {
                                let d = (p[a] as f64 - q[a] as f64) * spacing[a];
                                d * d
                            })
                            .sum::<f64>()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    /// A small deterministic generator (xorshift) so the test needs no dependency.
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut x = seed.max(1);
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }

    #[test]
    fn matches_brute_force_on_random_grids() {
        let mut r = rng(42);
        for case in 0..40 {
            let dims = [
                1 + (r() % 9) as usize,
                1 + (r() % 8) as usize,
                1 + (r() % 7) as usize,
            ];
            let spacing = [
                0.5 + (r() % 100) as f64 / 40.0,
                0.3 + (r() % 100) as f64 / 30.0,
                2.5,
            ];
            let n = dims.iter().product();
            let density = 1 + r() % 20;
            let features: Vec<bool> = (0..n).map(|_| r() % 100 < density).collect();
            let got = squared_distance_to(&features, dims, spacing).unwrap();
            let want = brute(&features, dims, spacing);
            for (o, (g, w)) in got.iter().zip(&want).enumerate() {
                if w.is_infinite() {
                    assert!(g.is_infinite(), "case {case} voxel {o}: {g} vs inf");
                } else {
                    assert!(
                        (g - w).abs() <= 1e-9 * w.max(1.0),
                        "case {case} voxel {o}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn single_point_and_empty() {
        let dims = [5, 4, 3];
        let mut features = vec![false; 60];
        assert!(
            squared_distance_to(&features, dims, [1.0; 3])
                .unwrap()
                .iter()
                .all(|d| d.is_infinite())
        );
        features[0] = true;
        let d = squared_distance_to(&features, dims, [1.0, 2.0, 3.0]).unwrap();
        // voxel (4, 3, 2): 4² + 6² + 6²
        assert_eq!(d[59], 16.0 + 36.0 + 36.0);
        assert_eq!(d[0], 0.0);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(squared_distance_to(&[true; 5], [2, 2, 1], [1.0; 3]).is_err());
        assert!(squared_distance_to(&[true; 4], [2, 2, 1], [1.0, 0.0, 1.0]).is_err());
    }
}
