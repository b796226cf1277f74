//! The MONAI-style transforms of ours (`Orientation`, `ScaleIntensityRangePercentiles`,
//! `NormalizeIntensity`, `KeepLargestConnectedComponent`, `FillHoles`): synthetic phantoms
//! checked against values computed here, and the reference values of
//! `tests/reference/monai_style.json` (nibabel, numpy, MONAI, cc3d, fill_voids; made by
//! `tests/reference/monai_style.py`) on random affines and on the MNI152 T1 and brain mask.

mod common;

use std::path::{Path, PathBuf};

use aiaa_imaging::geometry::IDENTITY;
use aiaa_imaging::io::read_volume;
use aiaa_imaging::resample::Interpolation;
use aiaa_imaging::{Geometry, ReadOptions, Volume, VoxelType, Voxels};
use aiaa_transforms::normalize::percentiles;
use aiaa_transforms::orientation::{AxisCode, axis_codes, parse_axcodes, reorientation};
use aiaa_transforms::record::OpKind;
use aiaa_transforms::{Data, Image, Kind, Pipeline, TransformError, invert};
use common::*;
use serde_json::{Value, json};

fn run(t: Value, d: &mut Data) {
    build(t).apply(d, &mut rng(0)).unwrap();
}

fn reference() -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/monai_style.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn mni(file: &str) -> PathBuf {
    let d = std::env::var_os("AIAA_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata"))
        .join("mni152");
    let p = d.join(file);
    assert!(
        p.exists(),
        "MNI152 test data missing in {}: run scripts/fetch-test-data.sh",
        d.display()
    );
    p
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn affine(v: &Value) -> [[f64; 4]; 3] {
    std::array::from_fn(|r| {
        let row = f64s(&v[r]);
        std::array::from_fn(|c| row[c])
    })
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w}");
    }
}

fn letters(c: [AxisCode; 3]) -> String {
    c.iter().map(|a| a.letter()).collect()
}

/// Every voxel of `out` sits where the voxel of `src` with the same value sits: `src`
/// holds distinct values `i + 100 j + 10000 k + 1e6 c`.
fn assert_same_physical_positions(src: &Volume, out: &Volume) {
    assert_eq!(out.channels, src.channels);
    assert_eq!(out.voxel_count(), src.voxel_count());
    for c in 0..out.channels {
        for k in 0..out.dims[2] {
            for j in 0..out.dims[1] {
                for i in 0..out.dims[0] {
                    let p = out.geometry.index_to_physical([i as f64, j as f64, k as f64]);
                    let q = src.geometry.physical_to_index(p).unwrap();
                    let s = q.map(|x| x.round());
                    for a in 0..3 {
                        assert!((q[a] - s[a]).abs() < 1e-6, "not on the source grid: {q:?}");
                    }
                    let s = s.map(|x| x as usize);
                    assert_eq!(out.get(i, j, k, c), src.get(s[0], s[1], s[2], c));
                }
            }
        }
    }
}

fn coded(dims: [usize; 3], channels: usize, g: Geometry) -> Volume {
    let mut v = Vec::new();
    for c in 0..channels {
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    v.push((i + 100 * j + 10000 * k + 1_000_000 * c) as f32);
                }
            }
        }
    }
    Volume::new(dims, channels, g, Voxels::F32(v)).unwrap()
}

#[test]
fn orientation_lps_identity_to_ras_flips_i_and_j() {
    let g = Geometry {
        spacing: [0.5, 1.0, 2.0],
        origin: [1.0, 2.0, 3.0],
        direction: IDENTITY,
    };
    let src = coded([4, 3, 2], 1, g);
    let mut d = Data::named("o");
    d.insert_image("image", Image::new(src.clone(), Kind::Intensity));
    run(
        json!({"name": "transforms.Orientation", "fields": "image"}),
        &mut d,
    );
    let im = d.image("image").unwrap();
    assert_eq!(im.ops.len(), 1);
    assert_eq!(
        im.ops[0].kind,
        OpKind::Flip {
            axes: [true, true, false]
        }
    );
    assert_eq!(im.vol.get(0, 0, 0, 0), src.get(3, 2, 0, 0));
    assert_eq!(letters(axis_codes(&im.vol.geometry.direction).unwrap()), "RAS");
    assert_same_physical_positions(&src, &im.vol);
    // Already RAS: nothing to do, nothing recorded.
    run(
        json!({"name": "transforms.Orientation", "fields": "image", "axcodes": "RAS"}),
        &mut d,
    );
    assert_eq!(d.image("image").unwrap().ops.len(), 1);
}

/// nibabel's `ornt_transform(io_orientation(affine), axcodes2ornt(code))` on random oblique,
/// permuted, flipped (some sheared) affines; then our transform on a two-channel volume of
/// that geometry: voxels keep their physical positions, the result has the asked codes,
/// and `invert` gives back the original exactly.
#[test]
fn orientation_matches_nibabel_on_random_affines() {
    let cases = reference()["orientation_cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 40);
    let mut permuted = 0;
    for (n, case) in cases.iter().enumerate() {
        let g = Geometry::from_ras_affine(&affine(&case["ras_affine"])).unwrap();
        let code = case["axcodes"].as_str().unwrap();
        assert_eq!(
            letters(axis_codes(&g.direction).unwrap()),
            case["have"].as_str().unwrap(),
            "case {n}"
        );
        let (order, flip) = reorientation(&g.direction, &parse_axcodes(code).unwrap()).unwrap();
        let (mut want_order, mut want_flip) = ([0; 3], [false; 3]);
        for (a, row) in case["transform"].as_array().unwrap().iter().enumerate() {
            let (to, sign) = (row[0].as_u64().unwrap() as usize, row[1].as_i64().unwrap());
            want_order[to] = a;
            want_flip[to] = sign == -1;
        }
        assert_eq!((order, flip), (want_order, want_flip), "case {n}");
        permuted += usize::from(order != [0, 1, 2]);

        let src = coded([5, 4, 3], 2, g);
        let mut d = Data::named("o");
        d.insert_image("label", Image::new(src.clone(), Kind::Label));
        run(
            json!({"name": "transforms.Orientation", "fields": ["label"], "axcodes": code}),
            &mut d,
        );
        let im = d.image("label").unwrap();
        assert_eq!(
            letters(axis_codes(&im.vol.geometry.direction).unwrap()),
            code,
            "case {n}"
        );
        assert_same_physical_positions(&src, &im.vol);
        let back = invert(&im.vol, &im.ops, Interpolation::Nearest).unwrap();
        assert_eq!(back, src, "case {n}");
    }
    assert!(permuted > 20, "the cases should mostly permute axes");
}

#[test]
fn orientation_arguments_are_checked() {
    for (args, arg) in [
        (json!({"fields": "image", "axcodes": "RAX"}), "axcodes"),
        (json!({"fields": "image", "axcodes": "RLS"}), "axcodes"),
        (json!({"fields": "image", "axcodes": "RA"}), "axcodes"),
        (json!({"fields": "image", "axcode": "RAS"}), "axcode"),
        (json!({"axcodes": "RAS"}), "fields"),
    ] {
        let mut e = args.as_object().unwrap().clone();
        e.insert("name".into(), json!("transforms.Orientation"));
        match aiaa_transforms::registry::build(0, &Value::Object(e)) {
            Err(TransformError::Argument { argument, .. }) => assert_eq!(argument, arg),
            other => panic!("{args}: {other:?}"),
        }
    }
}

/// The deepbet pre-processing on the MNI152 T1 (LAS, int16): orientation to RAS as nibabel's
/// `as_closest_canonical` and MONAI's `Orientationd`, percentiles as `numpy.percentile`,
/// clipping to [0, 1] as MONAI's `ScaleIntensityRangePercentilesd`, then the z-score with
/// `torch.std` (n - 1) and `x * 0.226 + 0.449`.
#[test]
fn mni152_orientation_percentiles_and_deepbet_normalisation() {
    let r = reference();
    let (m, monai) = (&r["mni"], &r["monai"]);
    let t1 = read_volume(&mni("MNI152_T1.nii.gz"), &ReadOptions::default()).unwrap();
    assert_eq!(
        letters(axis_codes(&t1.geometry.direction).unwrap()),
        m["orig_axcodes"].as_str().unwrap()
    );
    let idx: Vec<[usize; 3]> = m["index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| std::array::from_fn(|a| i[a].as_u64().unwrap() as usize))
        .collect();
    let at = |v: &Volume| -> Vec<f64> { idx.iter().map(|p| v.get(p[0], p[1], p[2], 0)).collect() };
    assert_eq!(at(&t1), f64s(&m["orig_values"]));

    let mut d = Data::named("mni");
    d.insert_image("image", Image::new(t1.clone(), Kind::Intensity));
    run(
        json!({"name": "transforms.Orientation", "fields": "image", "axcodes": "RAS"}),
        &mut d,
    );
    let o = d.volume("image").unwrap().clone();
    assert_eq!(o.voxel_type(), VoxelType::I16, "element type kept");
    for want in [&m["canonical_ras_affine"], &monai["orientation_affine"]] {
        let (got, want) = (o.geometry.ras_affine(), affine(want));
        assert_close(got.as_flattened(), want.as_flattened(), 1e-9, "RAS affine");
    }
    assert_eq!(at(&o), f64s(&m["canonical_values"]));
    assert_eq!(at(&o), f64s(&monai["orientation_values"]));

    // Percentiles of the int16 voxels: exact.
    let vals = o.voxels.to_f32_vec();
    let got = percentiles(&vals, &[0.5, 99.5]).unwrap();
    assert_eq!(got, f64s(&m["percentiles_0_5_99_5"]));
    for (q, want) in m["percentiles_more"].as_object().unwrap() {
        let got = percentiles(&vals, &[q.parse().unwrap()]).unwrap()[0];
        assert_eq!(got, want.as_f64().unwrap(), "percentile {q}");
    }

    // MONAI's ScaleIntensityRangePercentilesd (clip; relative).
    let oriented = Image::new(o.clone(), Kind::Intensity);
    for (args, key) in [
        (
            json!({"lower": 0.5, "upper": 99.5, "b_min": 0.0, "b_max": 1.0, "clip": true}),
            "percentiles_clip_values",
        ),
        (
            json!({"lower": 2, "upper": 90, "b_min": -1.0, "b_max": 3.0, "relative": true}),
            "percentiles_relative_values",
        ),
    ] {
        let mut e = args.as_object().unwrap().clone();
        e.insert("name".into(), json!("transforms.ScaleIntensityRangePercentiles"));
        e.insert("fields".into(), json!("image"));
        let mut d = Data::named("mni");
        d.insert_image("image", oriented.clone());
        run(Value::Object(e), &mut d);
        assert_close(&at(d.volume("image").unwrap()), &f64s(&monai[key]), 2e-6, key);
    }
    // MONAI's NormalizeIntensityd(nonzero=True): population std.
    let mut d = Data::named("mni");
    d.insert_image("image", oriented.clone());
    run(
        json!({"name": "transforms.NormalizeIntensity", "fields": "image", "nonzero": true, "unbiased": false}),
        &mut d,
    );
    assert_close(
        &at(d.volume("image").unwrap()),
        &f64s(&monai["normalize_nonzero_values"]),
        2e-5,
        "normalize nonzero",
    );

    // The whole deepbet chain as one pipeline.
    let p = Pipeline::from_json(
        &json!([
            {"name": "transforms.Orientation", "fields": "image", "axcodes": "RAS"},
            {"name": "transforms.ScaleIntensityRangePercentiles", "fields": "image", "lower": 0.5,
             "upper": 99.5, "b_min": 0.0, "b_max": 1.0, "clip": true},
            {"name": "transforms.NormalizeIntensity", "fields": "image", "scale": 0.226, "shift": 0.449}
        ]),
        0,
    )
    .unwrap();
    let mut d = Data::named("mni");
    d.insert_image("image", Image::new(t1, Kind::Intensity));
    p.run(&mut d, 0).unwrap();
    let out = d.volume("image").unwrap();
    assert_close(&at(out), &f64s(&m["deepbet_values"]), 1e-5, "deepbet");
    let v = values(out, 0);
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    assert!(
        (mean - m["deepbet_mean"].as_f64().unwrap()).abs() < 1e-6,
        "{mean}"
    );
    assert!((std - m["deepbet_std"].as_f64().unwrap()).abs() < 1e-6, "{std}");
}

#[test]
fn scale_percentiles_match_a_sorted_computation() {
    // Two channels with different ranges; values in shuffled order with ties.
    let dims = [7, 5, 3];
    let n = 105;
    let raw: Vec<f32> = (0..2 * n)
        .map(|x| ((x * 37) % 101) as f32 * if x < n { 1.0 } else { 3.0 })
        .collect();
    let vol = Volume::new(dims, 2, geom(), Voxels::F32(raw.clone())).unwrap();
    let pct = |v: &[f32], q: f64| {
        let mut s = v.to_vec();
        s.sort_by(f32::total_cmp);
        let h = (s.len() - 1) as f64 * q / 100.0;
        let lo = h.floor() as usize;
        let hi = (lo + 1).min(s.len() - 1);
        s[lo] as f64 + (s[hi] as f64 - s[lo] as f64) * (h - lo as f64)
    };
    for (channel_wise, clip, relative) in [(false, false, false), (true, true, false), (false, true, true)] {
        let mut d = Data::named("p");
        d.insert_image("image", Image::new(vol.clone(), Kind::Intensity));
        run(
            json!({"name": "transforms.ScaleIntensityRangePercentiles", "fields": ["image"], "lower": 10,
                   "upper": 87.5, "b_min": -2.0, "b_max": 2.0, "clip": clip, "relative": relative,
                   "channel_wise": channel_wise}),
            &mut d,
        );
        let out = d.volume("image").unwrap();
        assert_eq!(out.voxel_type(), VoxelType::F32);
        let (b_min, b_max) = if relative {
            (-2.0 + 0.4, -2.0 + 4.0 * 0.875)
        } else {
            (-2.0, 2.0)
        };
        for c in 0..2 {
            let group: &[f32] = if channel_wise {
                &raw[c * n..(c + 1) * n]
            } else {
                &raw
            };
            let (a0, a1) = (pct(group, 10.0), pct(group, 87.5));
            let got = values(out, c);
            for (x, g) in raw[c * n..(c + 1) * n].iter().zip(&got) {
                let mut want = b_min + (*x as f64 - a0) / (a1 - a0) * (b_max - b_min);
                if clip {
                    want = want.clamp(b_min, b_max);
                }
                assert!(
                    (g - want).abs() < 1e-5,
                    "{channel_wise} {clip} {relative}: {g} vs {want}"
                );
            }
        }
    }
    // a_min == a_max (constant image): x - a_min + b_min.
    let mut d = Data::named("p");
    d.insert_image(
        "image",
        Image::new(fvol([3, 2, 1], |_, _, _| 7.0), Kind::Intensity),
    );
    run(
        json!({"name": "transforms.ScaleIntensityRangePercentiles", "fields": "image", "lower": 1, "upper": 99,
               "b_min": 0.5, "b_max": 1.0}),
        &mut d,
    );
    assert_eq!(values(d.volume("image").unwrap(), 0), vec![0.5; 6]);
    for (bad, arg) in [
        (json!({"lower": -1}), "lower"),
        (json!({"upper": 100.5}), "upper"),
    ] {
        let mut e = json!({"name": "transforms.ScaleIntensityRangePercentiles", "fields": "image", "lower": 1,
                           "upper": 99, "b_min": 0, "b_max": 1});
        e.as_object_mut()
            .unwrap()
            .extend(bad.as_object().unwrap().clone());
        match aiaa_transforms::registry::build(0, &e) {
            Err(TransformError::Argument { argument, .. }) => assert_eq!(argument, arg),
            other => panic!("{other:?}"),
        }
    }
}

/// A 256³ volume in well under a second (release-like test profile): selections, not a sort.
#[test]
fn percentiles_are_fast_on_16m_voxels() {
    let n = 256 * 256 * 256;
    let v: Vec<f32> = (0..n as u64)
        .map(|x| ((x.wrapping_mul(2654435761) >> 7) % 100_000) as f32)
        .collect();
    let t = std::time::Instant::now();
    let p = percentiles(&v, &[0.5, 99.5]).unwrap();
    let dt = t.elapsed();
    assert!(p[0] < p[1]);
    assert!(dt.as_secs_f64() < 5.0, "{dt:?}");
}

#[test]
fn normalize_intensity_zscore_nonzero_and_constant() {
    let vals = [0.0f32, 1.0, 2.0, 3.0, 0.0, 6.0];
    let mk = || {
        let mut d = Data::named("n");
        d.insert_image(
            "image",
            Image::new(fvol([6, 1, 1], |i, _, _| vals[i]), Kind::Intensity),
        );
        d
    };
    // All voxels: mean 2, unbiased std sqrt(26 / 5).
    let mut d = mk();
    run(
        json!({"name": "transforms.NormalizeIntensity", "fields": "image", "scale": 2.0, "shift": 1.0}),
        &mut d,
    );
    let sd = (26.0f64 / 5.0).sqrt();
    let want: Vec<f64> = vals.iter().map(|&x| (x as f64 - 2.0) / sd * 2.0 + 1.0).collect();
    assert_close(&values(d.volume("image").unwrap(), 0), &want, 1e-6, "all");
    // Non-zero voxels {1, 2, 3, 6}: mean 3, population std sqrt(14 / 4); zeros stay 0.
    let mut d = mk();
    run(
        json!({"name": "transforms.NormalizeIntensity", "fields": "image", "nonzero": true, "unbiased": false}),
        &mut d,
    );
    let sd = (14.0f64 / 4.0).sqrt();
    let want: Vec<f64> = vals
        .iter()
        .map(|&x| if x == 0.0 { 0.0 } else { (x as f64 - 3.0) / sd })
        .collect();
    assert_close(&values(d.volume("image").unwrap(), 0), &want, 1e-6, "nonzero");
    // Constant image: only the mean is subtracted (then scale and shift).
    let mut d = Data::named("c");
    d.insert_image(
        "image",
        Image::new(fvol([3, 3, 1], |_, _, _| 5.0), Kind::Intensity),
    );
    run(
        json!({"name": "transforms.NormalizeIntensity", "fields": "image", "scale": 3.0, "shift": 0.5}),
        &mut d,
    );
    assert_eq!(values(d.volume("image").unwrap(), 0), vec![0.5; 9]);
    // Channel-wise: each channel its own statistics.
    let two = aiaa_transforms::channels::stack(&[
        fvol([2, 1, 1], |i, _, _| [1.0, 3.0][i]),
        fvol([2, 1, 1], |i, _, _| [10.0, 30.0][i]),
    ])
    .unwrap();
    let mut d = Data::named("c");
    d.insert_image("image", Image::new(two, Kind::Intensity));
    run(
        json!({"name": "transforms.NormalizeIntensity", "fields": "image", "channel_wise": true}),
        &mut d,
    );
    let s = std::f64::consts::FRAC_1_SQRT_2;
    let v = d.volume("image").unwrap();
    assert_close(&values(v, 0), &[-s, s], 1e-6, "channel 0");
    assert_close(&values(v, 1), &[-s, s], 1e-6, "channel 1");
}

/// A volume of `T` from a closure.
fn typed(dims: [usize; 3], ty: VoxelType, f: impl Fn(usize, usize, usize) -> f32) -> Volume {
    fvol(dims, f).cast(ty)
}

#[test]
fn largest_component_depends_on_connectivity() {
    // Cube A (27 voxels) and cube B (27 voxels) touching A along an edge only; C (8 voxels)
    // touching B at a corner only; D (30 voxels) apart.
    let inside = |i: usize, j: usize, k: usize, lo: [usize; 3], n: [usize; 3]| {
        (0..3).all(|a| [i, j, k][a] >= lo[a] && [i, j, k][a] < lo[a] + n[a])
    };
    let f = |i, j, k| {
        if inside(i, j, k, [0, 0, 0], [3, 3, 3]) {
            3.0
        } else if inside(i, j, k, [3, 3, 0], [3, 3, 3]) {
            5.0
        } else if inside(i, j, k, [6, 6, 3], [2, 2, 2]) {
            2.0
        } else if inside(i, j, k, [9, 0, 0], [2, 3, 5]) {
            1.0
        } else {
            0.0
        }
    };
    let dims = [12, 9, 6];
    for (conn, keep) in [(6, vec![1.0]), (18, vec![3.0, 5.0]), (26, vec![3.0, 5.0, 2.0])] {
        for ty in [VoxelType::U8, VoxelType::I16, VoxelType::F32] {
            let src = typed(dims, ty, f);
            let mut d = Data::named("k");
            d.insert_image("label", Image::new(src.clone(), Kind::Label));
            run(
                json!({"name": "transforms.KeepLargestConnectedComponent", "fields": "label", "connectivity": conn}),
                &mut d,
            );
            let out = d.volume("label").unwrap();
            assert_eq!(out.voxel_type(), ty);
            for (s, o) in values(&src, 0).iter().zip(values(out, 0)) {
                let want = if keep.contains(s) { *s } else { 0.0 };
                assert_eq!(o, want, "connectivity {conn} {ty:?}");
            }
        }
    }
    // Default 26; a tie keeps the component first in memory order; each channel alone.
    let tie = |i: usize, _: usize, _: usize| [1.0, 0.0, 2.0, 2.0, 0.0, 3.0, 3.0][i];
    let two = aiaa_transforms::channels::stack(&[
        fvol([7, 1, 1], tie),
        fvol([7, 1, 1], |i, _, _| tie(6 - i, 0, 0)),
    ])
    .unwrap();
    let mut d = Data::named("t");
    d.insert_image("label", Image::new(two, Kind::Label));
    run(
        json!({"name": "transforms.KeepLargestConnectedComponent", "fields": "label"}),
        &mut d,
    );
    let v = d.volume("label").unwrap();
    assert_eq!(values(v, 0), [0.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0]);
    assert_eq!(values(v, 1), [3.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    let e = aiaa_transforms::registry::build(
        0,
        &json!({"name": "transforms.KeepLargestConnectedComponent", "fields": "label", "connectivity": 8}),
    )
    .unwrap_err();
    assert!(
        matches!(&e, TransformError::Argument { argument, .. } if argument == "connectivity"),
        "{e}"
    );
}

#[test]
fn fill_holes_fills_enclosed_background_only() {
    let dims = [21, 21, 21];
    let r = |i: usize, j: usize, k: usize| {
        ((i as f64 - 10.0).powi(2) + (j as f64 - 10.0).powi(2) + (k as f64 - 10.0).powi(2)).sqrt()
    };
    // A hollow sphere (shell 6 <= r <= 8) holding a small ball of label 2 inside.
    let shell = |i, j, k| {
        let d = r(i, j, k);
        if (6.0..=8.0).contains(&d) {
            1.0
        } else if d <= 2.0 {
            2.0
        } else {
            0.0
        }
    };
    let mut d = Data::named("h");
    d.insert_image(
        "label",
        Image::new(typed(dims, VoxelType::I16, shell), Kind::Label),
    );
    run(json!({"name": "transforms.FillHoles", "fields": "label"}), &mut d);
    let out = d.volume("label").unwrap();
    assert_eq!(out.voxel_type(), VoxelType::I16);
    for k in 0..21 {
        for j in 0..21 {
            for i in 0..21 {
                let d = r(i, j, k);
                let want = if d <= 2.0 {
                    2.0
                } else if d <= 8.0 {
                    1.0
                } else {
                    0.0
                };
                assert_eq!(out.get(i, j, k, 0), want, "({i}, {j}, {k})");
            }
        }
    }
    // A tunnel through the shell along +i opens the cavity: nothing is filled; a
    // diagonal-only opening does not (6-connectivity).
    let tunnel = |i: usize, j: usize, k: usize| {
        if j == 10 && k == 10 && i >= 10 {
            0.0
        } else {
            shell(i, j, k)
        }
    };
    let mut d = Data::named("h");
    let src = typed(dims, VoxelType::U8, tunnel);
    d.insert_image("label", Image::new(src.clone(), Kind::Label));
    run(json!({"name": "transforms.FillHoles", "fields": "label"}), &mut d);
    assert_eq!(d.volume("label").unwrap(), &src);
    let cube_with_corner_gap = |i: usize, j: usize, k: usize| {
        let edge =
            [i, j, k].iter().any(|&x| x == 2 || x == 6) && [i, j, k].iter().all(|&x| (2..=6).contains(&x));
        // Without its corner voxel (6, 6, 6) the shell still closes the cavity for
        // 6-connectivity: the gap touches the cavity voxel (5, 5, 5) only at a corner.
        if (i, j, k) == (6, 6, 6) {
            0.0
        } else {
            f32::from(u8::from(edge))
        }
    };
    let mut d = Data::named("h");
    d.insert_image(
        "label",
        Image::new(typed([9, 9, 9], VoxelType::U8, cube_with_corner_gap), Kind::Label),
    );
    run(json!({"name": "transforms.FillHoles", "fields": "label"}), &mut d);
    let out = d.volume("label").unwrap();
    assert_eq!(out.get(4, 4, 4, 0), 1.0, "cavity filled");
    assert_eq!(out.get(5, 5, 5, 0), 1.0);
    assert_eq!(out.get(6, 6, 6, 0), 0.0, "the corner gap is open to the outside");
    // A single slice is filled as a 2D image.
    let ring = |i: usize, j: usize, _: usize| f32::from(u8::from(i.abs_diff(3).max(j.abs_diff(3)) == 2));
    let mut d = Data::named("h");
    d.insert_image(
        "label",
        Image::new(typed([7, 7, 1], VoxelType::U8, ring), Kind::Label),
    );
    run(json!({"name": "transforms.FillHoles", "fields": "label"}), &mut d);
    let out = d.volume("label").unwrap();
    let filled: f64 = values(out, 0).iter().sum();
    assert_eq!(filled, 25.0);
    assert_eq!(out.get(3, 3, 0, 0), 1.0);
}

/// The brain mask with a cavity, a cube outside the brain and a second cube touching the
/// first at a corner (as `monai_style.py`).
fn edited_mask() -> Volume {
    let m = read_volume(&mni("MNI152_mask.nii.gz"), &ReadOptions::default()).unwrap();
    let [nx, ny, nz] = m.dims;
    let mut v = vec![0u8; m.voxel_count()];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let mut x = u8::from(m.get(i, j, k, 0) > 0.0);
                let r2 = (i as i64 - 91).pow(2) + (j as i64 - 120).pow(2) + (k as i64 - 80).pow(2);
                if r2 <= 100 {
                    x = 0;
                }
                if [i, j, k].iter().all(|c| (5..10).contains(c))
                    || [i, j, k].iter().all(|c| (10..13).contains(c))
                {
                    x = 1;
                }
                v[i + nx * (j + ny * k)] = x;
            }
        }
    }
    Volume::scalar(m.dims, m.geometry, Voxels::U8(v)).unwrap()
}

fn count_and_index_sum(v: &Volume) -> (f64, f64) {
    let vals = values(v, 0);
    let fg = vals.iter().enumerate().filter(|(_, x)| **x > 0.0);
    (fg.clone().count() as f64, fg.map(|(i, _)| i as f64).sum())
}

/// cc3d's `largest_k(k=1)` and `fill_voids.fill` on the edited MNI152 brain mask.
#[test]
fn mni152_mask_largest_component_and_holes_match_cc3d_and_fill_voids() {
    let r = reference();
    let refs = &r["mask"];
    let mask = edited_mask();
    assert_eq!(
        count_and_index_sum(&mask).0,
        refs["edited_count"].as_f64().unwrap()
    );
    for conn in [6, 18, 26] {
        let want = &refs[conn.to_string()];
        let mut d = Data::named("m");
        d.insert_image("label", Image::new(mask.clone(), Kind::Label));
        let t = std::time::Instant::now();
        run(
            json!({"name": "transforms.KeepLargestConnectedComponent", "fields": "label", "connectivity": conn}),
            &mut d,
        );
        let t_cc = t.elapsed();
        let got = count_and_index_sum(d.volume("label").unwrap());
        assert_eq!(
            got,
            (
                want["largest_count"].as_f64().unwrap(),
                want["largest_index_sum"].as_f64().unwrap()
            ),
            "largest, connectivity {conn}"
        );
        let t = std::time::Instant::now();
        run(json!({"name": "transforms.FillHoles", "fields": "label"}), &mut d);
        let t_fill = t.elapsed();
        let got = count_and_index_sum(d.volume("label").unwrap());
        assert_eq!(
            got,
            (
                want["filled_count"].as_f64().unwrap(),
                want["filled_index_sum"].as_f64().unwrap()
            ),
            "filled, connectivity {conn}"
        );
        eprintln!("connectivity {conn}: largest component {t_cc:?}, fill holes {t_fill:?}");
    }
}
