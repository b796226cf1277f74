//! Geometry-keeping spatial primitives on volumes (flip, rot90, permute, resize, region) and their
//! [`Image`]-level forms that record a [`SpatialOp`]. Each keeps every voxel at its physical
//! position: the geometry is updated with the voxels.

use aiaa_imaging::geometry::Geometry;
use aiaa_imaging::resample::separable::{Taps, linear_taps, nearest_index};
use aiaa_imaging::resample::{Interpolation, axis_maps, resample_onto};
use aiaa_imaging::voxels::Element;
use aiaa_imaging::{Volume, VoxelType, Voxels, with_voxels};

use crate::data::{Image, Kind};
use crate::record::{Grid, OpKind, SpatialOp};
use crate::{Result, TransformError};

/// Builds `out_dims` voxels per channel where output `(i, j, k)` copies input `src(i, j, k)`.
fn gather(vol: &Volume, out_dims: [usize; 3], src: impl Fn(usize, usize, usize) -> usize + Sync) -> Volume {
    let n_in = vol.voxel_count();
    let n_out = out_dims[0] * out_dims[1] * out_dims[2];
    let voxels = with_voxels!(&vol.voxels, v => {
        let mut out = Vec::with_capacity(n_out * vol.channels);
        for c in 0..vol.channels {
            let base = c * n_in;
            for k in 0..out_dims[2] {
                for j in 0..out_dims[1] {
                    for i in 0..out_dims[0] {
                        out.push(v[base + src(i, j, k)]);
                    }
                }
            }
        }
        Element::wrap(out)
    });
    Volume {
        dims: out_dims,
        channels: vol.channels,
        geometry: vol.geometry,
        voxels,
    }
}

/// Reverses the flagged axes; the geometry follows (origin moves to the far corner, the
/// axis direction flips), so voxels keep their physical positions. Copies whole rows
/// (reversed when `i` flips).
pub fn flip(vol: &Volume, axes: [bool; 3]) -> Volume {
    let d = vol.dims;
    let n = vol.voxel_count();
    let m = |a: usize, x: usize| if axes[a] { d[a] - 1 - x } else { x };
    let voxels = with_voxels!(&vol.voxels, v => {
        let mut out = Vec::with_capacity(n * vol.channels);
        for c in 0..vol.channels {
            for k in 0..d[2] {
                for j in 0..d[1] {
                    let row = &v[c * n + d[0] * (m(1, j) + d[1] * m(2, k))..][..d[0]];
                    if axes[0] {
                        out.extend(row.iter().rev().copied());
                    } else {
                        out.extend_from_slice(row);
                    }
                }
            }
        }
        Element::wrap(out)
    });
    let mut out = Volume {
        dims: d,
        channels: vol.channels,
        geometry: vol.geometry,
        voxels,
    };
    let corner = std::array::from_fn(|a| if axes[a] { (d[a] - 1) as f64 } else { 0.0 });
    let mut g = vol.geometry;
    g.origin = vol.geometry.index_to_physical(corner);
    for (a, &f) in axes.iter().enumerate() {
        if f {
            for row in g.direction.iter_mut() {
                row[a] = -row[a];
            }
        }
    }
    out.geometry = g;
    out
}

/// `k` quarter turns in the `i`-`j` plane, as numpy `rot90(a, k, axes=(0, 1))`: one turn maps
/// output `(a, b, c)` to input `(b, ny - 1 - a, c)`; the geometry follows.
pub fn rot90(vol: &Volume, k: u8) -> Volume {
    let mut v = vol.clone();
    for _ in 0..k % 4 {
        let d = v.dims;
        let mut out = gather(&v, [d[1], d[0], d[2]], |a, b, c| {
            b + d[0] * ((d[1] - 1 - a) + d[1] * c)
        });
        let g0 = v.geometry;
        let mut g = Geometry {
            spacing: [g0.spacing[1], g0.spacing[0], g0.spacing[2]],
            origin: g0.index_to_physical([0.0, (d[1] - 1) as f64, 0.0]),
            direction: g0.direction,
        };
        for row in g.direction.iter_mut() {
            let (c0, c1) = (row[0], row[1]);
            row[0] = -c1;
            row[1] = c0;
        }
        out.geometry = g;
        v = out;
    }
    v
}

/// Checks that `order` is a permutation of `[0, 1, 2]`.
fn check_permutation(order: [usize; 3]) -> Result<()> {
    let mut seen = [false; 3];
    for &a in &order {
        if a > 2 || std::mem::replace(&mut seen[a], true) {
            return Err(TransformError::invalid(format!(
                "{order:?} is not a permutation of the axes [0, 1, 2]"
            )));
        }
    }
    Ok(())
}

/// The permutation undoing `order`: `inverse[order[a]] = a`.
pub fn inverse_permutation(order: [usize; 3]) -> Result<[usize; 3]> {
    check_permutation(order)?;
    let mut inv = [0; 3];
    for (a, &o) in order.iter().enumerate() {
        inv[o] = a;
    }
    Ok(inv)
}

/// Transposes the voxel axes: output axis `a` is input axis `order[a]` (numpy
/// `transpose(a, order)` on an `[i, j, k]` array; channels stay slowest), so output voxel
/// `x` is input voxel `y` with `y[order[a]] = x[a]`. The geometry follows (spacing and
/// direction columns are permuted, the origin stays: voxel `(0, 0, 0)` is the same voxel),
/// so voxels keep their physical positions. An error if `order` is not a permutation.
pub fn permute(vol: &Volume, order: [usize; 3]) -> Result<Volume> {
    check_permutation(order)?;
    let d = vol.dims;
    if order == [0, 1, 2] {
        return Ok(vol.clone());
    }
    let stride = [1, d[0], d[0] * d[1]];
    let (s0, s1, s2) = (stride[order[0]], stride[order[1]], stride[order[2]]);
    let out_dims = order.map(|a| d[a]);
    let mut out = gather(vol, out_dims, |i, j, k| i * s0 + j * s1 + k * s2);
    let g0 = vol.geometry;
    out.geometry = Geometry {
        spacing: order.map(|a| g0.spacing[a]),
        origin: g0.origin,
        direction: g0.direction.map(|row| order.map(|a| row[a])),
    };
    Ok(out)
}

/// The grid of a resize of `vol` to `out_dims` covering the same physical extent, voxel
/// centres aligned as in `scipy.ndimage.zoom(grid_mode=True)` / `skimage.transform.resize`:
/// output index `x` samples input index `(x + 0.5) * n_in / n_out - 0.5`.
pub fn resize_geometry(vol: &Volume, out_dims: [usize; 3]) -> Geometry {
    resize_grid(vol.dims, &vol.geometry, out_dims)
}

/// [`resize_geometry`] of a grid of `dims` on `geometry`, without its voxels.
pub fn resize_grid(dims: [usize; 3], geometry: &Geometry, out_dims: [usize; 3]) -> Geometry {
    let r: [f64; 3] = std::array::from_fn(|a| dims[a] as f64 / out_dims[a] as f64);
    Geometry {
        spacing: std::array::from_fn(|a| geometry.spacing[a] * r[a]),
        origin: geometry.index_to_physical(std::array::from_fn(|a| 0.5 * r[a] - 0.5)),
        direction: geometry.direction,
    }
}

/// Resizes to `out_dims` (see [`resize_geometry`]), keeping the element type; the same
/// voxels as `aiaa_imaging::resample::resample_onto` onto that grid.
pub fn resize(vol: &Volume, out_dims: [usize; 3], interp: Interpolation) -> Result<Volume> {
    resize_as(vol, out_dims, interp, false)
}

/// Separable linear resize of one channel, passes along x, y, z (the order, and the
/// arithmetic, of `aiaa_imaging`'s resampler), appended to `out`. Single-threaded; each
/// pass writes its output once (no zero fill).
fn linear_into<T: Element>(
    src: &[T],
    din: [usize; 3],
    dout: [usize; 3],
    taps: &[Vec<Taps>; 3],
    out: &mut Vec<f32>,
) {
    let (nx, ny, nz) = (dout[0], din[1], din[2]);
    let mut a = Vec::with_capacity(nx * ny * nz);
    for s in src.chunks_exact(din[0]) {
        a.extend(
            taps[0]
                .iter()
                .map(|t| t.w0 * s[t.i0].to_f64() as f32 + t.w1 * s[t.i1].to_f64() as f32),
        );
    }
    let ny2 = dout[1];
    let mut b = Vec::with_capacity(nx * ny2 * nz);
    for slab in a.chunks_exact(nx * ny) {
        for t in &taps[1] {
            let (r0, r1) = (&slab[t.i0 * nx..][..nx], &slab[t.i1 * nx..][..nx]);
            b.extend(r0.iter().zip(r1).map(|(p, q)| t.w0 * p + t.w1 * q));
        }
    }
    drop(a);
    let plane = nx * ny2;
    for t in &taps[2] {
        let (s0, s1) = (&b[t.i0 * plane..][..plane], &b[t.i1 * plane..][..plane]);
        out.extend(s0.iter().zip(s1).map(|(p, q)| t.w0 * p + t.w1 * q));
    }
}

/// Nearest-neighbour resize of one channel (outside: 0), appended to `out`.
fn nearest_into<T: Element>(
    src: &[T],
    din: [usize; 3],
    dout: [usize; 3],
    idx: &[Vec<Option<usize>>; 3],
    out: &mut Vec<T>,
) {
    for kk in &idx[2] {
        for jj in &idx[1] {
            match (kk, jj) {
                (Some(kk), Some(jj)) => {
                    let row = &src[din[0] * (jj + din[1] * kk)..][..din[0]];
                    out.extend(idx[0].iter().map(|i| i.map_or(T::default(), |i| row[i])));
                }
                _ => out.extend(std::iter::repeat_n(T::default(), dout[0])),
            }
        }
    }
}

fn resize_typed<T: Element>(
    v: &[T],
    vol: &Volume,
    dout: [usize; 3],
    maps: [(f64, f64); 3],
    interp: Interpolation,
    to_f32: bool,
) -> Voxels {
    let din = vol.dims;
    let n_in = vol.voxel_count();
    let n_out = dout[0] * dout[1] * dout[2] * vol.channels;
    let pos = |a: usize, i: usize| maps[a].0 * i as f64 + maps[a].1;
    let channels = v.chunks_exact(n_in.max(1)).take(vol.channels);
    match interp {
        Interpolation::Nearest => {
            let idx: [Vec<Option<usize>>; 3] =
                std::array::from_fn(|a| (0..dout[a]).map(|i| nearest_index(pos(a, i), din[a])).collect());
            let mut out = Vec::with_capacity(n_out);
            channels.for_each(|src| nearest_into(src, din, dout, &idx, &mut out));
            T::wrap(out)
        }
        Interpolation::Linear => {
            let taps: [Vec<Taps>; 3] =
                std::array::from_fn(|a| (0..dout[a]).map(|i| linear_taps(pos(a, i), din[a])).collect());
            let mut out = Vec::with_capacity(n_out);
            channels.for_each(|src| linear_into(src, din, dout, &taps, &mut out));
            if to_f32 || T::TYPE == VoxelType::F32 {
                Voxels::F32(out)
            } else {
                T::wrap(out.into_iter().map(|x| T::from_f64(x as f64)).collect())
            }
        }
    }
}

/// [`resize`]; with `to_f32`, linear output is `f32` whatever the input type (intensities),
/// the same as casting to `f32` first.
fn resize_as(vol: &Volume, out_dims: [usize; 3], interp: Interpolation, to_f32: bool) -> Result<Volume> {
    let g = resize_geometry(vol, out_dims);
    let too_big = out_dims
        .iter()
        .try_fold(vol.channels, |a, &d| a.checked_mul(d))
        .is_none_or(|n| n > 1 << 34);
    let maps = match axis_maps(&vol.geometry, &g) {
        Some(m) if !out_dims.contains(&0) && !too_big && vol.voxel_count() > 0 => m,
        // Degenerate input or output: the resampler reports it.
        _ => return Ok(resample_onto(vol, out_dims, &g, interp)?),
    };
    let voxels = with_voxels!(&vol.voxels, v => resize_typed(v, vol, out_dims, maps, interp, to_f32));
    Ok(Volume::new(out_dims, vol.channels, g, voxels)?)
}

/// Interpolation for an image kind.
pub fn interp_for(kind: Kind) -> Interpolation {
    match kind {
        Kind::Intensity => Interpolation::Linear,
        Kind::Label => Interpolation::Nearest,
    }
}

fn push(im: &mut Image, kind: OpKind, before: Grid) {
    im.ops.push(SpatialOp {
        kind,
        before,
        after: Grid::of(&im.vol),
    });
}

/// Crops/pads `im` to `size` voxels starting at `start` (outside filled with `fill`).
pub fn image_region(im: &mut Image, start: [i64; 3], size: [usize; 3], fill: f64) -> Result<()> {
    let before = Grid::of(&im.vol);
    im.vol = aiaa_imaging::crop::region(&im.vol, start, size, fill)?;
    push(im, OpKind::Region { start, size }, before);
    Ok(())
}

/// Flips the flagged axes of `im` (no-op, nothing recorded, when none is flagged).
pub fn image_flip(im: &mut Image, axes: [bool; 3]) {
    if axes.contains(&true) {
        let before = Grid::of(&im.vol);
        im.vol = flip(&im.vol, axes);
        push(im, OpKind::Flip { axes }, before);
    }
}

/// Rotates `im` by `k` quarter turns in the `i`-`j` plane (`k % 4 == 0`: nothing recorded).
pub fn image_rot90(im: &mut Image, k: u8) {
    if !k.is_multiple_of(4) {
        let before = Grid::of(&im.vol);
        im.vol = rot90(&im.vol, k % 4);
        push(im, OpKind::Rot90 { k: k % 4 }, before);
    }
}

/// Permutes the axes of `im` (see [`permute`]; the identity: nothing recorded).
pub fn image_permute(im: &mut Image, order: [usize; 3]) -> Result<()> {
    if order != [0, 1, 2] {
        let before = Grid::of(&im.vol);
        im.vol = permute(&im.vol, order)?;
        push(im, OpKind::Permute { order }, before);
    }
    Ok(())
}

/// Resamples `im` onto `dims`/`geometry` (linear for intensities, which become `f32`;
/// nearest for labels).
pub fn image_resample(im: &mut Image, dims: [usize; 3], geometry: &Geometry) -> Result<()> {
    if im.kind == Kind::Intensity {
        im.ensure_float();
    }
    let before = Grid::of(&im.vol);
    im.vol = resample_onto(&im.vol, dims, geometry, interp_for(im.kind))?;
    push(im, OpKind::Resample, before);
    Ok(())
}

/// Resizes `im` to `dims` (see [`resize_geometry`]; linear for intensities, which become
/// `f32` unless already floating point; nearest for labels); nothing recorded when the size
/// is kept. The same voxels and record as [`image_resample`] onto that grid, faster.
pub fn image_resize(im: &mut Image, dims: [usize; 3]) -> Result<()> {
    if dims == im.vol.dims {
        return Ok(());
    }
    let to_f32 = im.kind == Kind::Intensity && !im.vol.voxel_type().is_float();
    let before = Grid::of(&im.vol);
    im.vol = resize_as(&im.vol, dims, interp_for(im.kind), to_f32)?;
    push(im, OpKind::Resample, before);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_imaging::resample::resample_onto;

    fn volume(dims: [usize; 3], channels: usize, ty: VoxelType) -> Volume {
        let n = dims.iter().product::<usize>() * channels;
        let v: Vec<f32> = (0..n).map(|i| ((i * 7919) % 251) as f32 - 60.0).collect();
        let g = Geometry {
            spacing: [0.7, 1.3, 2.0],
            origin: [3.0, -4.0, 5.5],
            direction: [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
        };
        Volume::new(dims, channels, g, Voxels::F32(v)).unwrap().cast(ty)
    }

    /// The single-threaded resize gives exactly the voxels and grid of the resampler.
    #[test]
    fn resize_matches_resample_onto() {
        for ty in [VoxelType::U8, VoxelType::I16, VoxelType::F32, VoxelType::F64] {
            for channels in [1, 2] {
                let vol = volume([9, 7, 5], channels, ty);
                for dims in [[12, 5, 6], [4, 9, 1], [9, 7, 5], [1, 1, 1]] {
                    for interp in [Interpolation::Linear, Interpolation::Nearest] {
                        let ours = resize(&vol, dims, interp).unwrap();
                        let g = resize_geometry(&vol, dims);
                        let theirs = resample_onto(&vol, dims, &g, interp).unwrap();
                        assert_eq!(ours, theirs, "{ty:?} {channels} {dims:?} {interp:?}");
                    }
                }
                // Intensities: f32 out, as casting to f32 first.
                let mut im = Image::new(vol.clone(), Kind::Intensity);
                image_resize(&mut im, [11, 4, 7]).unwrap();
                let mut f = vol.clone();
                if !f.voxel_type().is_float() {
                    f = f.cast(VoxelType::F32);
                }
                let g = resize_geometry(&f, [11, 4, 7]);
                let want = resample_onto(&f, [11, 4, 7], &g, Interpolation::Linear).unwrap();
                assert_eq!(im.vol, want, "{ty:?} {channels}");
            }
        }
    }
}
