//! General resampling through an affine index map (any output direction): trilinear or
//! nearest per output voxel, with ITK's border rules (see [`super`]).

use rayon::prelude::*;

use super::Interpolation;
use super::separable::{linear_taps, nearest_index};
use crate::voxels::Element;
use crate::{Volume, Voxels, with_voxels};

type IndexMap = ([[f64; 3]; 3], [f64; 3]);

pub(super) fn resample(vol: &Volume, dims: [usize; 3], map: IndexMap, interp: Interpolation) -> Voxels {
    let n_in = vol.voxel_count();
    let n_out = dims[0] * dims[1] * dims[2];
    with_voxels!(&vol.voxels, v => {
        // One buffer for the result, each channel written in place (no per-channel copy).
        let mut out = vec![Default::default(); n_out * vol.channels];
        for (c, dst) in out.chunks_mut(n_out.max(1)).enumerate() {
            channel(&v[c * n_in..(c + 1) * n_in], vol.dims, dims, &map, interp, dst);
        }
        Element::wrap(out)
    })
}

fn channel<T: Element>(
    src: &[T],
    din: [usize; 3],
    dout: [usize; 3],
    map: &IndexMap,
    interp: Interpolation,
    out: &mut [T],
) {
    let (m, b) = map;
    let plane = dout[0] * dout[1];
    let at = |i: usize, j: usize, k: usize| src[i + din[0] * (j + din[1] * k)].to_f64();
    out.par_chunks_mut(plane).enumerate().for_each(|(k, slab)| {
        for (j, row) in slab.chunks_mut(dout[0]).enumerate() {
            for (i, o) in row.iter_mut().enumerate() {
                let p =
                    [0, 1, 2].map(|r| m[r][0] * i as f64 + m[r][1] * j as f64 + m[r][2] * k as f64 + b[r]);
                match interp {
                    Interpolation::Nearest => {
                        if let (Some(x), Some(y), Some(z)) = (
                            nearest_index(p[0], din[0]),
                            nearest_index(p[1], din[1]),
                            nearest_index(p[2], din[2]),
                        ) {
                            *o = src[x + din[0] * (y + din[1] * z)];
                        }
                    }
                    Interpolation::Linear => {
                        let (tx, ty, tz) = (
                            linear_taps(p[0], din[0]),
                            linear_taps(p[1], din[1]),
                            linear_taps(p[2], din[2]),
                        );
                        if tx.w0 + tx.w1 == 0.0 || ty.w0 + ty.w1 == 0.0 || tz.w0 + tz.w1 == 0.0 {
                            continue;
                        }
                        let mut acc = 0.0f64;
                        for (zi, zw) in [(tz.i0, tz.w0), (tz.i1, tz.w1)] {
                            for (yi, yw) in [(ty.i0, ty.w0), (ty.i1, ty.w1)] {
                                let w = (zw * yw) as f64;
                                if w == 0.0 {
                                    continue;
                                }
                                acc +=
                                    w * (tx.w0 as f64 * at(tx.i0, yi, zi) + tx.w1 as f64 * at(tx.i1, yi, zi));
                            }
                        }
                        *o = T::from_f64(acc);
                    }
                }
            }
        }
    });
}
