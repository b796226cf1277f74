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

/// Output slices per parallel task: a few tasks per thread so the threads stay busy to the
/// end, but few enough that each task's start-up (the up to two input planes it resamples
/// again, see [`linear`]) stays a small share of its work.
fn slices_per_task(nz: usize) -> usize {
    nz.div_ceil(4 * rayon::current_num_threads()).max(1)
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
    // The result is the only volume-sized buffer: every channel is written in place, in
    // the input's type (zeroed pages: voxels outside the input stay 0).
    let mut out: Vec<T> = vec![T::default(); n_out * vol.channels];
    for (c, dst) in out.chunks_mut(n_out.max(1)).enumerate() {
        let src = &v[c * n_in..(c + 1) * n_in];
        match interp {
            Interpolation::Nearest => {
                let idx: [Vec<Option<usize>>; 3] = std::array::from_fn(|a| {
                    (0..dims[a])
                        .map(|i| nearest_index(pos(a, i), vol.dims[a]))
                        .collect()
                });
                nearest(src, vol.dims, dims, &idx, dst);
            }
            Interpolation::Linear => {
                let taps: [Vec<Taps>; 3] = std::array::from_fn(|a| {
                    (0..dims[a])
                        .map(|i| linear_taps(pos(a, i), vol.dims[a]))
                        .collect()
                });
                linear(src, vol.dims, dims, &taps, dst);
            }
        }
    }
    out
}

fn nearest<T: Element>(
    src: &[T],
    din: [usize; 3],
    dout: [usize; 3],
    idx: &[Vec<Option<usize>>; 3],
    out: &mut [T],
) {
    let plane = dout[0] * dout[1];
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
}

/// Input planes resampled in x and y (`nx' * ny'` values each), the two a task used last:
/// consecutive output slices mostly interpolate between the same two input planes.
struct Planes {
    /// The input plane each slot holds (`usize::MAX`: none yet).
    held: [usize; 2],
    slots: [Vec<f32>; 2],
    /// One input plane resampled in x only (`nx' * ny`).
    rows: Vec<f32>,
}

impl Planes {
    fn new(nx: usize, ny: usize, ny2: usize) -> Planes {
        Planes {
            held: [usize::MAX; 2],
            slots: [vec![0f32; nx * ny2], vec![0f32; nx * ny2]],
            rows: vec![0f32; nx * ny],
        }
    }

    /// The slot holding input plane `kz`, resampling it into the slot not holding `keep`
    /// when it is not held.
    fn slot<T: Element>(
        &mut self,
        kz: usize,
        keep: usize,
        src: &[T],
        din: [usize; 3],
        taps: &[Vec<Taps>; 3],
    ) -> usize {
        if let Some(s) = self.held.iter().position(|&h| h == kz) {
            return s;
        }
        let s = if self.held[0] == keep { 1 } else { 0 };
        let nx = taps[0].len();
        let plane = &src[kz * din[0] * din[1]..][..din[0] * din[1]];
        // Along x: (nx', ny).
        for (o, s) in self.rows.chunks_mut(nx).zip(plane.chunks(din[0])) {
            for (x, t) in o.iter_mut().zip(&taps[0]) {
                *x = t.w0 * s[t.i0].to_f64() as f32 + t.w1 * s[t.i1].to_f64() as f32;
            }
        }
        // Along y: (nx', ny').
        for (orow, t) in self.slots[s].chunks_mut(nx).zip(&taps[1]) {
            let (r0, r1) = (&self.rows[t.i0 * nx..][..nx], &self.rows[t.i1 * nx..][..nx]);
            for ((o, p), q) in orow.iter_mut().zip(r0).zip(r1) {
                *o = t.w0 * p + t.w1 * q;
            }
        }
        self.held[s] = kz;
        s
    }
}

/// Trilinear as three 1D passes (x, y, then z), in `f32`, written straight into `out` in the
/// output type. Each task resamples the input planes its output slices need in x and y
/// (two at a time) and blends them along z, so nothing volume-sized but `src` and `out`
/// is ever held. Same arithmetic in the same order as resampling the whole volume axis by
/// axis, so the values do not depend on how the slices are split among tasks.
fn linear<T: Element>(src: &[T], din: [usize; 3], dout: [usize; 3], taps: &[Vec<Taps>; 3], out: &mut [T]) {
    let mut slices: Vec<&mut [T]> = out.chunks_mut((dout[0] * dout[1]).max(1)).collect();
    linear_with(src, din, taps, &mut slices, |p0, p1, t, slab| {
        for ((o, p), q) in slab.iter_mut().zip(p0).zip(p1) {
            *o = T::from_f64((t.w0 * p + t.w1 * q) as f64);
        }
    });
}

/// The trilinear pass of [`linear`] with the writing left to `write`: `outs` holds one
/// destination per output z-slice, and `write(p0, p1, taps, out)` gets the two input planes
/// already resampled in x and y (`nx' * ny'` values each, x fastest) and the z taps that
/// blend them (`w0 * p0 + w1 * p1`). Slices outside the input are not written.
pub fn linear_with<T: Element, U: Send>(
    src: &[T],
    din: [usize; 3],
    taps: &[Vec<Taps>; 3],
    outs: &mut [U],
    write: impl Fn(&[f32], &[f32], Taps, &mut U) + Sync,
) {
    let (nx, ny) = (taps[0].len(), taps[1].len());
    let per_task = slices_per_task(outs.len());
    outs.par_chunks_mut(per_task)
        .enumerate()
        .for_each(|(task, group)| {
            let mut planes = Planes::new(nx, din[1], ny);
            for (n, out) in group.iter_mut().enumerate() {
                let t = taps[2][task * per_task + n];
                if t.w0 == 0.0 && t.w1 == 0.0 {
                    continue; // outside the input: not written
                }
                let s0 = planes.slot(t.i0, t.i1, src, din, taps);
                let s1 = planes.slot(t.i1, t.i0, src, din, taps);
                write(&planes.slots[s0], &planes.slots[s1], t, out);
            }
        });
}
