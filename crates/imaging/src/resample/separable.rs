//! Fast resampling when input and output grids share direction: each axis is an
//! independent 1D map, so trilinear interpolation runs as three 1D passes (x, y, z) and
//! nearest neighbour as an index gather.

use rayon::prelude::*;

use super::Interpolation;
use crate::voxels::Element;
use crate::{Volume, Voxels, with_voxels};

/// Two-tap linear weights for one output position (weights 0 when outside the input).
#[derive(Debug, Clone, Copy)]
pub struct Taps {
    /// Lower neighbour.
    pub i0: usize,
    /// Upper neighbour (clamped to the axis).
    pub i1: usize,
    /// Weight of `i0`.
    pub w0: f32,
    /// Weight of `i1`.
    pub w1: f32,
}

/// ITK's rules for one continuous index `x` on an axis of length `n`.
pub fn linear_taps(x: f64, n: usize) -> Taps {
    if !(x >= -0.5 && x < n as f64 - 0.5) {
        return Taps {
            i0: 0,
            i1: 0,
            w0: 0.0,
            w1: 0.0,
        };
    }
    let base = x.floor().max(0.0) as usize;
    let base = base.min(n - 1);
    let frac = (x - base as f64).clamp(0.0, 1.0);
    let i1 = (base + 1).min(n - 1);
    Taps {
        i0: base,
        i1,
        w0: (1.0 - frac) as f32,
        w1: frac as f32,
    }
}

/// Nearest index (round half up) or `None` when outside.
pub fn nearest_index(x: f64, n: usize) -> Option<usize> {
    if !(x >= -0.5 && x < n as f64 - 0.5) {
        return None;
    }
    Some(((x + 0.5).floor().max(0.0) as usize).min(n - 1))
}

pub(super) fn resample(
    vol: &Volume,
    dims: [usize; 3],
    maps: [(f64, f64); 3],
    interp: Interpolation,
) -> Voxels {
    with_voxels!(&vol.voxels, v => Element::wrap(typed(v, vol, dims, maps, interp)))
}

fn typed<T: Element>(
    v: &[T],
    vol: &Volume,
    dims: [usize; 3],
    maps: [(f64, f64); 3],
    interp: Interpolation,
) -> Vec<T> {
    let n_in = vol.voxel_count();
    let n_out = dims[0] * dims[1] * dims[2];
    let pos = |a: usize, i: usize| maps[a].0 * i as f64 + maps[a].1;
    let mut out: Vec<T> = Vec::with_capacity(n_out * vol.channels);
    for c in 0..vol.channels {
        let src = &v[c * n_in..(c + 1) * n_in];
        match interp {
            Interpolation::Nearest => {
                let idx: [Vec<Option<usize>>; 3] = std::array::from_fn(|a| {
                    (0..dims[a])
                        .map(|i| nearest_index(pos(a, i), vol.dims[a]))
                        .collect()
                });
                out.extend(nearest(src, vol.dims, dims, &idx));
            }
            Interpolation::Linear => {
                let taps: [Vec<Taps>; 3] = std::array::from_fn(|a| {
                    (0..dims[a])
                        .map(|i| linear_taps(pos(a, i), vol.dims[a]))
                        .collect()
                });
                let f = linear(src, vol.dims, dims, &taps);
                out.extend(f.into_iter().map(|x| T::from_f64(x as f64)));
            }
        }
    }
    out
}

fn nearest<T: Element + Default>(
    src: &[T],
    din: [usize; 3],
    dout: [usize; 3],
    idx: &[Vec<Option<usize>>; 3],
) -> Vec<T> {
    let plane = dout[0] * dout[1];
    let mut out = vec![T::default(); plane * dout[2]];
    out.par_chunks_mut(plane).enumerate().for_each(|(k, slab)| {
        let Some(kk) = idx[2][k] else { return };
        for (j, row) in slab.chunks_mut(dout[0]).enumerate() {
            let Some(jj) = idx[1][j] else { continue };
            let srow = &src[din[0] * (jj + din[1] * kk)..][..din[0]];
            for (o, ii) in row.iter_mut().zip(&idx[0]) {
                if let Some(ii) = ii {
                    *o = srow[*ii];
                }
            }
        }
    });
    out
}

fn linear<T: Element>(src: &[T], din: [usize; 3], dout: [usize; 3], taps: &[Vec<Taps>; 3]) -> Vec<f32> {
    // Pass 1: along x, (nx', ny, nz).
    let (nx, ny, nz) = (dout[0], din[1], din[2]);
    let mut a = vec![0f32; nx * ny * nz];
    a.par_chunks_mut(nx).enumerate().for_each(|(row, o)| {
        let s = &src[row * din[0]..][..din[0]];
        for (x, t) in o.iter_mut().zip(&taps[0]) {
            *x = t.w0 * s[t.i0].to_f64() as f32 + t.w1 * s[t.i1].to_f64() as f32;
        }
    });
    // Pass 2: along y, (nx', ny', nz).
    let ny2 = dout[1];
    let mut b = vec![0f32; nx * ny2 * nz];
    b.par_chunks_mut(nx * ny2).enumerate().for_each(|(k, slab)| {
        let sslab = &a[k * nx * ny..][..nx * ny];
        for (j, orow) in slab.chunks_mut(nx).enumerate() {
            let t = taps[1][j];
            let (r0, r1) = (&sslab[t.i0 * nx..][..nx], &sslab[t.i1 * nx..][..nx]);
            for ((o, p), q) in orow.iter_mut().zip(r0).zip(r1) {
                *o = t.w0 * p + t.w1 * q;
            }
        }
    });
    drop(a);
    // Pass 3: along z, (nx', ny', nz').
    let plane = nx * ny2;
    let mut c = vec![0f32; plane * dout[2]];
    c.par_chunks_mut(plane).enumerate().for_each(|(k, slab)| {
        let t = taps[2][k];
        let (s0, s1) = (&b[t.i0 * plane..][..plane], &b[t.i1 * plane..][..plane]);
        for ((o, p), q) in slab.iter_mut().zip(s0).zip(s1) {
            *o = t.w0 * p + t.w1 * q;
        }
    });
    c
}
