//! Resampling and crop/pad behaviour (agreement with SimpleITK is in `agreement.rs`).

mod common;

use aiaa_imaging::crop::{crop, pad};
use aiaa_imaging::resample::{
    Interpolation, grid_for_spacing, resample_like, resample_onto, resample_onto_general, resample_to_spacing,
};
use aiaa_imaging::{Geometry, Volume, VoxelType, Voxels, io};

fn mni() -> Volume {
    io::read_volume(&common::data("mni152/MNI152_T1.nii.gz"), &Default::default()).unwrap()
}

#[test]
fn grid_formula_keeps_origin_and_extent() {
    let g = Geometry::with_spacing([0.7, 0.7, 2.5]);
    let (dims, out) = grid_for_spacing([512, 512, 300], &g, [1.0; 3]).unwrap();
    assert_eq!(dims, [358, 358, 750]);
    assert_eq!(out.origin, g.origin);
    assert_eq!(out.spacing, [1.0; 3]);
    assert!(grid_for_spacing([2, 2, 2], &g, [0.0, 1.0, 1.0]).is_err());
}

#[test]
fn identity_resample_is_exact() {
    let v = mni();
    for interp in [Interpolation::Linear, Interpolation::Nearest] {
        let r = resample_like(&v, &v, interp).unwrap();
        assert_eq!(r.voxels, v.voxels);
    }
}

#[test]
fn separable_and_general_paths_agree() {
    let v = mni().cast(VoxelType::F32);
    let (dims, g) = grid_for_spacing(v.dims, &v.geometry, [1.7, 1.3, 2.2]).unwrap();
    for interp in [Interpolation::Linear, Interpolation::Nearest] {
        let a = resample_onto(&v, dims, &g, interp).unwrap();
        let b = resample_onto_general(&v, dims, &g, interp).unwrap();
        let (x, y) = (a.voxels.to_f32_vec(), b.voxels.to_f32_vec());
        let max = x
            .iter()
            .zip(&y)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0f32, f32::max);
        assert!(max < 1e-2, "{interp:?}: max diff {max}");
    }
}

#[test]
fn rotated_reference_grid_keeps_physical_positions() {
    // Resample onto a grid rotated 90 degrees about z: voxel values must follow physics.
    let v = mni();
    let mut g = v.geometry;
    g.direction = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
    let dims = [v.dims[1], v.dims[0], v.dims[2]];
    // Origin chosen so the rotated grid covers the same box.
    g.origin = v.geometry.index_to_physical([(v.dims[0] - 1) as f64, 0.0, 0.0]);
    let r = resample_onto(&v, dims, &g, Interpolation::Nearest).unwrap();
    for (i, j, k) in [(10usize, 20usize, 30usize), (100, 50, 90), (0, 0, 0)] {
        let p = g.index_to_physical([i as f64, j as f64, k as f64]);
        let src = v
            .geometry
            .physical_to_index(p)
            .unwrap()
            .map(|x| x.round() as usize);
        assert_eq!(r.get(i, j, k, 0), v.get(src[0], src[1], src[2], 0));
    }
}

#[test]
fn labels_keep_their_values() {
    let mask = io::read_volume(&common::data("robex/atlas_mask.nii.gz"), &Default::default()).unwrap();
    let r = resample_to_spacing(&mask, [0.9, 2.0, 1.1], Interpolation::Nearest).unwrap();
    let mut vals: Vec<i64> = r.voxels.to_f32_vec().iter().map(|&x| x as i64).collect();
    vals.sort_unstable();
    vals.dedup();
    assert_eq!(vals, vec![0, 1]);
}

#[test]
fn integer_linear_output_is_rounded_and_saturated() {
    let v = Volume::new([2, 1, 1], 1, Geometry::default(), Voxels::U8(vec![0, 255])).unwrap();
    let (dims, g) = grid_for_spacing(v.dims, &v.geometry, [0.5, 1.0, 1.0]).unwrap();
    let r = resample_onto(&v, dims, &g, Interpolation::Linear).unwrap();
    // Input positions 0, 0.5, 1.0, 1.5; 1.5 is outside [-0.5, 1.5) so it gets 0, as in ITK.
    assert_eq!(r.voxels, Voxels::U8(vec![0, 128, 255, 0]));
}

#[test]
fn multichannel_resamples_per_channel() {
    let v = io::read_volume(&common::data("nibabel/example4d.nii.gz"), &Default::default()).unwrap();
    let r = resample_to_spacing(&v, [4.0; 3], Interpolation::Linear).unwrap();
    assert_eq!(r.channels, 2);
    let c1 = resample_to_spacing(&v.channel(1).unwrap(), [4.0; 3], Interpolation::Linear).unwrap();
    assert_eq!(r.channel(1).unwrap(), c1);
}

#[test]
fn crop_and_pad_keep_physical_positions() {
    let v = mni();
    let c = crop(&v, [10, 20, 30], [50, 60, 70]).unwrap();
    assert_eq!(c.get(0, 0, 0, 0), v.get(10, 20, 30, 0));
    assert_eq!(
        c.geometry.index_to_physical([0.0; 3]),
        v.geometry.index_to_physical([10.0, 20.0, 30.0])
    );
    let p = pad(&c, [10, 20, 30], [0, 0, 0], 0.0).unwrap();
    assert_eq!(p.geometry.origin, v.geometry.origin);
    assert_eq!(p.get(10, 20, 30, 0), v.get(10, 20, 30, 0));
    assert_eq!(p.get(0, 0, 0, 0), 0.0);
    assert!(crop(&v, [180, 0, 0], [5, 1, 1]).is_err());
}

/// A CT-like int16 volume with odd sizes (rows, slices and tasks that do not divide evenly).
fn ct_like(dims: [usize; 3], spacing: [f64; 3]) -> Volume {
    let mut v = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                let x = 1000.0 * (i as f64 / 7.0).sin() * (j as f64 / 5.0).cos() + 30.0 * k as f64 - 1024.0;
                let noise = ((i * 7919 + j * 104_729 + k * 1_299_709) % 41) as f64 - 20.0;
                v.push((x + noise) as i16);
            }
        }
    }
    let mut g = Geometry::with_spacing(spacing);
    g.origin = [-12.5, 7.25, 3.0];
    Volume::scalar(dims, g, Voxels::I16(v)).unwrap()
}

/// Linear resampling writes straight into the input's type (no volume-sized `f32` copy):
/// the `i16` result is exactly the `f32` resample of the same values, rounded, on grids
/// finer and coarser than the input and with a non-integer origin shift.
#[test]
fn int16_linear_resample_is_the_f32_resample_rounded() {
    let v = ct_like([61, 47, 23], [0.7, 0.7, 2.5]);
    let f = v.cast(VoxelType::F32);
    for spacing in [[1.0; 3], [0.45, 1.9, 0.8], [2.3, 0.6, 5.0]] {
        let a = resample_to_spacing(&v, spacing, Interpolation::Linear).unwrap();
        let b = resample_to_spacing(&f, spacing, Interpolation::Linear).unwrap();
        assert_eq!(a.voxel_type(), VoxelType::I16);
        assert_eq!(a.dims, b.dims);
        assert_eq!(a.voxels, b.voxels.cast(VoxelType::I16), "{spacing:?}");
    }
}

/// The slices are split among tasks, each resampling the input planes it needs again: the
/// values do not depend on how many threads there are.
#[test]
fn linear_resample_does_not_depend_on_the_thread_count() {
    let v = ct_like([53, 41, 29], [0.7, 0.7, 2.5]);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            [Interpolation::Linear, Interpolation::Nearest]
                .map(|interp| resample_to_spacing(&v, [1.0, 0.9, 0.6], interp).unwrap().voxels)
        })
    };
    let one = run(1);
    for threads in [2, 3, 7] {
        assert_eq!(run(threads), one, "{threads} threads");
    }
}

/// `threshold_onto` gives, inside its grid, exactly the thresholded `resample_onto` (on the
/// separable path and on a rotated grid's general one) and leaves the rest of the mask alone.
#[test]
fn threshold_onto_is_the_thresholded_resample_pasted() {
    use aiaa_imaging::resample::threshold_onto;
    // Probabilities on a small grid (a smooth blob in [0, 1]) covering a crop of MNI152.
    let head = mni();
    let (at, size) = ([20usize, 30, 25], [120usize, 140, 110]);
    let crop_vol = crop(&head, at, size).unwrap();
    let small = [24usize, 28, 22];
    let grid = resize_grid(&crop_vol, small);
    let mut p = Vec::new();
    for k in 0..small[2] {
        for j in 0..small[1] {
            for i in 0..small[0] {
                let r2 = [(i, 0), (j, 1), (k, 2)]
                    .iter()
                    .map(|&(x, a)| ((x as f64 - small[a] as f64 / 2.0) / (small[a] as f64 / 3.0)).powi(2))
                    .sum::<f64>();
                p.push((-r2).exp() as f32);
            }
        }
    }
    let prob = Volume::scalar(small, grid, Voxels::F32(p)).unwrap();
    let mut rotated = crop_vol.geometry;
    rotated.direction = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
    for (n_target, target) in [crop_vol.geometry, rotated].into_iter().enumerate() {
        let expected = resample_onto(&prob, size, &target, Interpolation::Linear).unwrap();
        let expected = expected.voxels.as_f32();
        let mut mask = vec![7u8; head.voxel_count()];
        threshold_onto(&prob, size, &target, 0.5, &mut mask, head.dims, at).unwrap();
        let (mut ones, mut n) = (0, 0);
        for k in 0..head.dims[2] {
            for j in 0..head.dims[1] {
                for i in 0..head.dims[0] {
                    let m = mask[i + head.dims[0] * (j + head.dims[1] * k)];
                    let inside = [i, j, k]
                        .iter()
                        .enumerate()
                        .all(|(a, &x)| x >= at[a] && x < at[a] + size[a]);
                    if inside {
                        let o = (i - at[0]) + size[0] * ((j - at[1]) + size[1] * (k - at[2]));
                        assert_eq!(m, u8::from(f64::from(expected[o]) > 0.5), "at {i} {j} {k}");
                        ones += usize::from(m == 1);
                        n += 1;
                    } else {
                        assert_eq!(m, 7, "outside the grid at {i} {j} {k}");
                    }
                }
            }
        }
        if n_target == 0 {
            assert!(ones > n / 20 && ones < n / 2, "{ones} of {n}");
        }
    }
    // A grid that does not fit is refused.
    let mut mask = vec![0u8; head.voxel_count()];
    let e = threshold_onto(
        &prob,
        size,
        &crop_vol.geometry,
        0.5,
        &mut mask,
        head.dims,
        [100, 0, 0],
    );
    assert!(e.is_err());
}

/// The grid of a resize covering the same extent (voxel centres at `(x + 0.5) * n / m - 0.5`).
fn resize_grid(vol: &Volume, out: [usize; 3]) -> Geometry {
    let r: [f64; 3] = std::array::from_fn(|a| vol.dims[a] as f64 / out[a] as f64);
    Geometry {
        spacing: std::array::from_fn(|a| vol.geometry.spacing[a] * r[a]),
        origin: vol
            .geometry
            .index_to_physical(std::array::from_fn(|a| 0.5 * r[a] - 0.5)),
        direction: vol.geometry.direction,
    }
}
