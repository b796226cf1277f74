//! One test (at least) per transform, against values computed independently here.

mod common;

use aiaa_imaging::io::{read_volume, write_volume};
use aiaa_imaging::{ReadOptions, VoxelType};
use aiaa_transforms::extreme::extreme_points;
use aiaa_transforms::{Data, Image, Item, Kind, Pipeline};
use common::*;
use serde_json::json;

fn run(t: serde_json::Value, d: &mut Data) {
    build(t).apply(d, &mut rng(0)).unwrap();
}

#[test]
fn scale_intensity_range_maps_and_clips() {
    let vals = [-2048.0, -1024.0, 0.0, 512.0, 2048.0];
    for (clip, want) in [
        (true, [-1.0, -1.0, 0.0, 0.5, 1.0]),
        (false, [-2.0, -1.0, 0.0, 0.5, 2.0]),
    ] {
        let mut d = sample(fvol([5, 1, 1], |i, _, _| vals[i]), lvol([5, 1, 1], |_, _, _| 0));
        run(
            json!({"name": "transforms.ScaleIntensityRange", "field": "image", "a_min": -1024, "a_max": 1024,
                   "b_min": -1.0, "b_max": 1.0, "clip": clip}),
            &mut d,
        );
        assert_eq!(values(d.volume("image").unwrap(), 0), want);
    }
    // The appendix's reading: one random shift in [-m, m] for every voxel.
    let mut d = sample(fvol([5, 1, 1], |i, _, _| vals[i]), lvol([5, 1, 1], |_, _, _| 0));
    run(
        json!({"name": "transforms.ScaleIntensityRange", "field": "image", "magnitude": 0.5}),
        &mut d,
    );
    let out = values(d.volume("image").unwrap(), 0);
    let off = out[0] - vals[0] as f64;
    assert!(off.abs() <= 0.5 && off != 0.0);
    assert!(
        out.iter()
            .zip(vals)
            .all(|(o, v)| (o - v as f64 - off).abs() < 1e-3)
    );
}

#[test]
fn scale_intensity_oscillation_scales_by_one_factor() {
    let mut d = sample(
        fvol([4, 2, 1], |i, j, _| (1 + i + 4 * j) as f32),
        lvol([4, 2, 1], |_, _, _| 0),
    );
    run(
        json!({"name": "transforms.ScaleIntensityOscillation", "field": "image", "magnitude": 0.2}),
        &mut d,
    );
    let out = values(d.volume("image").unwrap(), 0);
    let f = out[0];
    assert!((0.8..=1.2).contains(&f) && f != 1.0);
    for (i, o) in out.iter().enumerate() {
        assert!((o - f * (i + 1) as f64).abs() < 1e-5);
    }
}

#[test]
fn normalize_nonzero_is_per_channel_over_nonzero_voxels() {
    let mut d = Data::named("n");
    let two = aiaa_transforms::channels::stack(&[
        fvol([3, 1, 1], |i, _, _| [0.0, 1.0, 3.0][i]),
        fvol([3, 1, 1], |i, _, _| [5.0, 5.0, 0.0][i]),
    ])
    .unwrap();
    d.insert_image("image", Image::new(two, Kind::Intensity));
    run(
        json!({"name": "transforms.NormalizeNonzeroIntensities", "fields": "image"}),
        &mut d,
    );
    let v = d.volume("image").unwrap();
    // Channel 0: non-zero {1, 3}: mean 2, std 1. Channel 1: {5, 5}: std 0 -> divide by 1.
    assert_eq!(values(v, 0), [0.0, -1.0, 1.0]);
    assert_eq!(values(v, 1), [0.0, 0.0, 0.0]);
}

#[test]
fn crop_foreground_object_crops_pads_resizes_and_binarizes() {
    let dims = [12, 10, 8];
    // Two classes: 1 in a box, 2 in another; union box i 2..=8, j 3..=6, k 1..=5.
    let label = lvol(dims, |i, j, k| {
        if (2..5).contains(&i) && (3..5).contains(&j) && (1..3).contains(&k) {
            1
        } else if (6..9).contains(&i) && (5..7).contains(&j) && (4..6).contains(&k) {
            2
        } else {
            0
        }
    });
    let image = fvol(dims, |i, j, k| (i + 100 * j + 10000 * k) as f32);
    // Box + pad 1, clamped: i 1..=9, j 2..=7, k 0..=6 -> 9 x 6 x 7, no resize needed.
    let mut d = sample(image.clone(), label.clone());
    run(
        json!({"name": "transforms.CropForegroundObject", "size": [9, 6, 7], "image_field": "image",
               "label_field": "label", "pad": 1}),
        &mut d,
    );
    let out = d.volume("image").unwrap();
    assert_eq!(out.dims, [9, 6, 7]);
    for (i, j, k) in [(0, 0, 0), (8, 5, 6), (3, 2, 1)] {
        assert_eq!(out.get(i, j, k, 0), image.get(i + 1, j + 2, k, 0));
    }
    let lab = d.volume("label").unwrap();
    assert_eq!(lab.voxel_type(), VoxelType::U8);
    assert_eq!(lab.get(6, 3, 5, 0), 1.0, "class 2 becomes 1");
    assert!(values(lab, 0).iter().all(|&v| v == 0.0 || v == 1.0));
    // Resize to 18 x 12 x 14: exactly twice, nearest for the label.
    let mut d = sample(image.clone(), label.clone());
    run(
        json!({"name": "transforms.CropForegroundObject", "size": [18, 12, 14], "image_field": "image",
               "label_field": "label", "pad": 1}),
        &mut d,
    );
    assert_eq!(d.volume("image").unwrap().dims, [18, 12, 14]);
    let count = values(d.volume("label").unwrap(), 0)
        .iter()
        .filter(|&&v| v > 0.0)
        .count();
    assert_eq!(count, 8 * (12 + 12), "every voxel of both boxes becomes 2x2x2");
    // One class at random.
    for s in 0..6 {
        let mut d = sample(image.clone(), label.clone());
        build(
            json!({"name": "transforms.CropForegroundObject", "size": [4, 4, 4], "image_field": "image",
                     "label_field": "label", "foreground_only": false}),
        )
        .apply(&mut d, &mut rng(s))
        .unwrap();
        let dims = d.volume("image").unwrap().dims;
        assert_eq!(dims, [4, 4, 4]);
    }
    // Empty foreground.
    let mut d = sample(image, lvol(dims, |_, _, _| 0));
    let e = build(
        json!({"name": "transforms.CropForegroundObject", "size": [4, 4, 4], "image_field": "image",
                         "label_field": "label"}),
    )
    .apply(&mut d, &mut rng(0))
    .unwrap_err();
    assert!(e.to_string().contains("no foreground"));
}

#[test]
fn random_flip_with_probability_one_flips_all_axes() {
    let v = fvol([3, 4, 2], |i, j, k| (i + 10 * j + 100 * k) as f32);
    let mut d = sample(v.clone(), lvol([3, 4, 2], |i, _, _| i as u8));
    run(
        json!({"name": "transforms.NPRandomFlip3D", "applied_keys": ["image", "label"], "probability": 1.0}),
        &mut d,
    );
    let out = d.volume("image").unwrap();
    assert_eq!(out.get(0, 0, 0, 0), v.get(2, 3, 1, 0));
    assert_eq!(out.get(1, 2, 0, 0), v.get(1, 1, 1, 0));
    assert_eq!(d.volume("label").unwrap().get(0, 0, 0, 0), 2.0);
    let mut d = sample(v.clone(), lvol([3, 4, 2], |_, _, _| 0));
    run(
        json!({"name": "transforms.NPRandomFlip3D", "applied_keys": "image", "probability": 0.0}),
        &mut d,
    );
    assert_eq!(d.volume("image").unwrap(), &v);
}

#[test]
fn rot90_xy_rotates_in_the_ij_plane() {
    let v = fvol([3, 4, 2], |i, j, k| (i + 10 * j + 100 * k) as f32);
    let mut seen = std::collections::BTreeSet::new();
    for s in 0..20 {
        let mut d = sample(v.clone(), lvol([3, 4, 2], |_, _, _| 0));
        build(json!({"name": "transforms.NPRandomRot90_XY", "applied_keys": ["image", "label"], "probability": 1.0}))
            .apply(&mut d, &mut rng(s))
            .unwrap();
        let out = d.volume("image").unwrap();
        // Identify k from the corner values of numpy rot90 on axes (0, 1).
        let k = match (out.dims, out.get(0, 0, 0, 0)) {
            ([4, 3, 2], x) if x == v.get(0, 3, 0, 0) => 1,
            ([3, 4, 2], x) if x == v.get(2, 3, 0, 0) => 2,
            ([4, 3, 2], x) if x == v.get(2, 0, 0, 0) => 3,
            other => panic!("{other:?}"),
        };
        seen.insert(k);
        assert_eq!(d.volume("label").unwrap().dims, out.dims);
    }
    assert_eq!(seen.len(), 3);
}

#[test]
fn zoom_changes_or_keeps_size() {
    let v = fvol([4, 6, 8], |_, _, _| 7.0);
    let l = lvol([4, 6, 8], |i, _, _| u8::from(i > 1));
    let mut d = sample(v.clone(), l.clone());
    run(
        json!({"name": "transforms.NPRandomZoom3D", "applied_keys": ["image", "label"],
               "lower_limits": [2, 0.5, 1.5], "upper_limits": [2, 0.5, 1.5]}),
        &mut d,
    );
    assert_eq!(d.volume("image").unwrap().dims, [8, 3, 12]);
    assert!(
        values(d.volume("image").unwrap(), 0)
            .iter()
            .all(|&x| (x - 7.0).abs() < 1e-5)
    );
    let lab = d.volume("label").unwrap();
    assert_eq!((lab.dims, lab.voxel_type()), ([8, 3, 12], VoxelType::U8));
    assert_eq!(
        (0..8).map(|i| lab.get(i, 0, 0, 0)).collect::<Vec<_>>(),
        [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    );
    let mut d = sample(v, l);
    run(
        json!({"name": "transforms.NPRandomZoom3D", "applied_keys": ["image", "label"], "keep_size": true,
               "lower_limits": [0.8, 0.8, 0.8], "upper_limits": [1.2, 1.2, 1.2]}),
        &mut d,
    );
    assert_eq!(d.volume("label").unwrap().dims, [4, 6, 8]);
}

/// Brute force: all foreground voxels in memory order, extreme on each axis, middle of ties.
fn brute_extremes(l: &aiaa_imaging::Volume) -> Vec<[usize; 3]> {
    let mut fg = Vec::new();
    for k in 0..l.dims[2] {
        for j in 0..l.dims[1] {
            for i in 0..l.dims[0] {
                if l.get(i, j, k, 0) > 0.0 {
                    fg.push([i, j, k]);
                }
            }
        }
    }
    let mut out = Vec::new();
    for a in 0..3 {
        let lo = fg.iter().map(|p| p[a]).min().unwrap();
        let hi = fg.iter().map(|p| p[a]).max().unwrap();
        for t in [lo, hi] {
            let tied: Vec<_> = fg.iter().filter(|p| p[a] == t).collect();
            out.push(*tied[(tied.len() - 1) / 2]);
        }
    }
    out
}

#[test]
fn extreme_points_and_heatmap_match_a_direct_computation() {
    let dims = [9, 8, 7];
    // An L-shaped object of two classes with ties on every face.
    let label = lvol(dims, |i, j, k| {
        if (2..7).contains(&i) && (1..3).contains(&j) && (1..6).contains(&k) {
            1
        } else if (2..4).contains(&i) && (3..7).contains(&j) && (2..4).contains(&k) {
            3
        } else {
            0
        }
    });
    let pts = extreme_points(&label).unwrap();
    assert_eq!(pts.to_vec(), brute_extremes(&label));
    let mut d = sample(fvol(dims, |i, _, _| i as f32), label.clone());
    run(
        json!({"name": "transforms.AddExtremePointsChannel", "image_field": "image", "label_field": "label",
               "sigma": 1.5, "pert": 0}),
        &mut d,
    );
    let im = d.image("image").unwrap();
    assert_eq!(im.vol.channels, 2);
    assert!(im.channel_dim);
    assert_eq!(values(&im.vol, 0), values(&fvol(dims, |i, _, _| i as f32), 0));
    // Direct: max of Gaussians, rescaled to [-1, 1] by its own min and max.
    let raw: Vec<f64> = (0..dims[0] * dims[1] * dims[2])
        .map(|idx| {
            let p = [idx % 9, (idx / 9) % 8, idx / 72].map(|x| x as f64);
            pts.iter()
                .map(|q| {
                    let d2: f64 = (0..3).map(|a| (p[a] - q[a] as f64).powi(2)).sum();
                    (-d2 / (2.0 * 1.5 * 1.5)).exp()
                })
                .fold(0.0, f64::max)
        })
        .collect();
    let (mn, mx) = raw
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let heat = values(&im.vol, 1);
    for (h, r) in heat.iter().zip(&raw) {
        assert!((h - (-1.0 + 2.0 * (r - mn) / (mx - mn))).abs() < 1e-5);
    }
    assert_eq!(heat.iter().cloned().fold(f64::MIN, f64::max), 1.0);
    assert_eq!(heat.iter().cloned().fold(f64::MAX, f64::min), -1.0);
    // Perturbation stays within pert of the extreme points.
    let mut d = sample(fvol(dims, |_, _, _| 0.0), label.clone());
    run(
        json!({"name": "transforms.AddExtremePointsChannel", "image_field": "image", "label_field": "label",
               "sigma": 1, "pert": 2}),
        &mut d,
    );
    let Some(Item::Points(moved)) = d.get("label_extreme_points") else {
        panic!()
    };
    assert!(
        moved
            .iter()
            .zip(&pts)
            .all(|(m, p)| (0..3).all(|a| (m[a] - p[a] as f64).abs() <= 2.0))
    );
    assert!(
        moved
            .iter()
            .zip(&pts)
            .any(|(m, p)| (0..3).any(|a| m[a] != p[a] as f64))
    );
    // Points instead of a label volume.
    let mut d = sample(fvol(dims, |_, _, _| 0.0), label);
    d.insert("label", Item::Points(vec![[4.0, 4.0, 3.0]]));
    run(
        json!({"name": "transforms.AddExtremePointsChannel", "image_field": "image", "label_field": "label",
               "sigma": 1}),
        &mut d,
    );
    assert_eq!(d.volume("image").unwrap().get(4, 4, 3, 1), 1.0);
}

#[test]
fn split_across_channels_names_squeezes_and_checks_count() {
    let mut d = Data::named("s");
    let two =
        aiaa_transforms::channels::stack(&[fvol([2, 2, 1], |_, _, _| 0.25), fvol([2, 2, 1], |_, _, _| 0.75)])
            .unwrap();
    d.insert_image("model", Image::new(two, Kind::Intensity));
    run(
        json!({"name": "transforms.SplitAcrossChannels", "applied_key": "model", "squeeze": true,
               "channel_names": ["background", "prediction"]}),
        &mut d,
    );
    let p = d.image("prediction").unwrap();
    assert_eq!(
        (p.vol.channels, p.channel_dim, p.vol.get(1, 1, 0, 0)),
        (1, false, 0.75)
    );
    run(
        json!({"name": "transforms.SplitAcrossChannels", "applied_key": "model"}),
        &mut d,
    );
    assert!(d.image("model1").unwrap().channel_dim);
    let e = build(
        json!({"name": "transforms.SplitAcrossChannels", "applied_key": "model", "channel_names": ["a"]}),
    )
    .apply(&mut d, &mut rng(0));
    assert!(e.is_err());
}

#[test]
fn adjust_contrast_noise_and_center() {
    let base = fvol([5, 1, 1], |i, _, _| i as f32 * 2.0 + 1.0);
    let mut d = sample(base.clone(), lvol([5, 1, 1], |_, _, _| 0));
    run(
        json!({"name": "transforms.AdjustContrast", "field": "image", "gamma": [2.0, 2.0]}),
        &mut d,
    );
    for (i, o) in values(d.volume("image").unwrap(), 0).iter().enumerate() {
        let x = i as f64 * 2.0 + 1.0;
        let want = ((x - 1.0) / (8.0 + 1e-7)).powi(2) * 8.0 + 1.0;
        assert!((o - want).abs() < 1e-4, "{o} {want}");
    }
    let big = fvol([100, 100, 10], |_, _, _| 3.0);
    let mut d = sample(big, lvol([1, 1, 1], |_, _, _| 0));
    run(
        json!({"name": "transforms.AddGaussianNoise", "field": "image"}),
        &mut d,
    );
    let v = values(d.volume("image").unwrap(), 0);
    let m = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    assert!((m - 3.0).abs() < 0.005 && (sd - 0.1).abs() < 0.005, "{m} {sd}");
    let mut d = sample(base.clone(), lvol([5, 1, 1], |_, _, _| 0));
    run(
        json!({"name": "transforms.CenterData", "applied_keys": "image", "subtrahend": 1, "divisor": 2}),
        &mut d,
    );
    assert_eq!(values(d.volume("image").unwrap(), 0), [0.0, 1.0, 2.0, 3.0, 4.0]);
    let mut d = sample(base, lvol([5, 1, 1], |_, _, _| 0));
    run(
        json!({"name": "transforms.CenterData", "applied_keys": ["image"]}),
        &mut d,
    );
    let v = values(d.volume("image").unwrap(), 0);
    let want = [-2.0, -1.0, 0.0, 1.0, 2.0].map(|x: f64| x / 2f64.sqrt());
    assert!(v.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-5), "{v:?}");
}

#[test]
fn expand_dims_and_repeat_channels() {
    let mut d = Data::named("x");
    let two =
        aiaa_transforms::channels::stack(&[fvol([2, 1, 1], |_, _, _| 1.0), fvol([2, 1, 1], |_, _, _| 2.0)])
            .unwrap();
    d.insert_image(
        "image",
        Image::new(fvol([2, 1, 1], |_, _, _| 5.0), Kind::Intensity),
    );
    d.insert_image("two", Image::new(two, Kind::Intensity));
    run(
        json!({"name": "transforms.NPExpandDims", "applied_keys": "image"}),
        &mut d,
    );
    assert!(d.image("image").unwrap().channel_dim);
    assert!(
        build(json!({"name": "transforms.NPExpandDims", "applied_keys": "image"}))
            .apply(&mut d, &mut rng(0))
            .is_err()
    );
    run(
        json!({"name": "transforms.NPRepChannels", "applied_keys": ["image", "two"], "channel_axis": 0, "repeat": 2}),
        &mut d,
    );
    let t = d.volume("two").unwrap();
    assert_eq!(t.channels, 4);
    assert_eq!(
        (0..4).map(|c| t.get(0, 0, 0, c)).collect::<Vec<_>>(),
        [1.0, 1.0, 2.0, 2.0]
    );
    assert_eq!(d.volume("image").unwrap().channels, 2);
    assert!(
        aiaa_transforms::registry::build(
            0,
            &json!({"name": "transforms.NPExpandDims", "applied_keys": "a", "expand_axis": 2})
        )
        .is_err()
    );
}

#[test]
fn loaders_read_files_channels_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("im1.nii.gz");
    let b = dir.path().join("im1_t2.nii.gz");
    let l = dir.path().join("lb1.nii.gz");
    write_volume(&fvol([3, 2, 2], |i, _, _| i as f32), &a).unwrap();
    write_volume(&fvol([3, 2, 2], |_, j, _| 10.0 + j as f32), &b).unwrap();
    write_volume(&lvol([3, 2, 2], |i, _, _| u8::from(i == 1)), &l).unwrap();
    let entry = json!({"image": [a.to_str().unwrap(), b.to_str().unwrap()], "label": l.to_str().unwrap()});
    let mut d = Data::from_json("", &entry).unwrap();
    let p = Pipeline::from_json(
        &json!([{"name": "transforms.LoadNifty", "fields": ["image", "label"]},
                {"name": "transforms.Load3DShapeFromNumpy", "applied_key": "image"},
                {"name": "transforms.LoadResolutionFromNifty", "applied_key": "label"}]),
        0,
    )
    .unwrap();
    p.run(&mut d, 0).unwrap();
    assert_eq!(d.name, "im1");
    let im = d.image("image").unwrap();
    assert_eq!(
        (im.vol.channels, im.channel_dim, im.vol.get(0, 1, 0, 1)),
        (2, true, 11.0)
    );
    assert!(im.vol.geometry.approx_eq(&geom(), 1e-5));
    assert_eq!(d.image("label").unwrap().kind, Kind::Label);
    assert_eq!(
        d.get("image_shape"),
        Some(&Item::Numbers(vec![2.0, 3.0, 2.0, 2.0]))
    );
    assert_eq!(
        d.get("label_resolution"),
        Some(&Item::Numbers(vec![1.0, 2.0, 3.0]))
    );
    let mut d = Data::from_json("x", &json!({"image": a.to_str().unwrap()})).unwrap();
    run(
        json!({"name": "transforms.LoadNumpyFromFilename", "fields": "image"}),
        &mut d,
    );
    assert!(!d.image("image").unwrap().channel_dim);
    // PNG + a class list.
    let png = dir.path().join("xray.png");
    let mut grey = fvol([4, 3, 1], |i, j, _| (i + 4 * j) as f32).cast(VoxelType::U8);
    grey.geometry = aiaa_imaging::Geometry::default();
    write_volume(&grey, &png).unwrap();
    let mut d = Data::from_json("x", &json!({"image": png.to_str().unwrap(), "label": [0, 1, 0]})).unwrap();
    run(
        json!({"name": "transforms.LoadPng", "fields": ["image", "label"]}),
        &mut d,
    );
    assert_eq!(d.volume("image").unwrap().get(3, 2, 0, 0), 11.0);
    assert_eq!(d.get("label"), Some(&Item::Numbers(vec![0.0, 1.0, 0.0])));
    let mut d = Data::from_json("x", &json!({"image": "/nonexistent/file.nii.gz"})).unwrap();
    assert!(
        build(json!({"name": "transforms.LoadNifty", "fields": "image"}))
            .apply(&mut d, &mut rng(0))
            .is_err()
    );
}

#[test]
fn two_d_crop_resize_rotate() {
    let v = fvol([10, 8, 1], |i, j, _| (i + 100 * j) as f32);
    for s in 0..10 {
        let mut d = sample(v.clone(), lvol([1, 1, 1], |_, _, _| 0));
        build(
            json!({"name": "transforms.CropRandomSubImageInRange", "lower_size": 0.5, "max_displacement": 1.0,
                     "keep_aspect": s % 2 == 0}),
        )
        .apply(&mut d, &mut rng(s))
        .unwrap();
        let out = d.volume("image").unwrap();
        assert!(out.dims[0] >= 5 && out.dims[1] >= 4 && out.dims[0] <= 10 && out.dims[1] <= 8);
        let o = out.get(0, 0, 0, 0);
        let (i0, j0) = ((o as usize) % 100, (o as usize) / 100);
        assert!(i0 + out.dims[0] <= 10 && j0 + out.dims[1] <= 8);
        assert_eq!(
            out.get(out.dims[0] - 1, out.dims[1] - 1, 0, 0),
            v.get(i0 + out.dims[0] - 1, j0 + out.dims[1] - 1, 0, 0)
        );
    }
    let mut d = sample(fvol([10, 8, 1], |_, _, _| 2.0), lvol([1, 1, 1], |_, _, _| 0));
    run(
        json!({"name": "transforms.NPResizeImage", "applied_keys": "image", "output_shape": [4, 6],
               "data_format": "channels_first"}),
        &mut d,
    );
    let out = d.volume("image").unwrap();
    assert_eq!(out.dims, [6, 4, 1]);
    assert!(values(out, 0).iter().all(|&x| (x - 2.0).abs() < 1e-6));
    // A quarter turn of a square image is an index permutation: out(i, j) = in(j, n - 1 - i).
    let sq = fvol([5, 5, 1], |i, j, _| (i + 10 * j) as f32);
    let mut d = sample(sq.clone(), lvol([1, 1, 1], |_, _, _| 0));
    run(
        json!({"name": "transforms.NP2DRotate", "applied_keys": "image", "angle": 90}),
        &mut d,
    );
    let out = d.volume("image").unwrap();
    for i in 0..5 {
        for j in 0..5 {
            assert!((out.get(i, j, 0, 0) - sq.get(j, 4 - i, 0, 0)).abs() < 1e-4);
        }
    }
    let im = d.image("image").unwrap();
    let back =
        aiaa_transforms::invert(&im.vol, &im.ops, aiaa_imaging::resample::Interpolation::Linear).unwrap();
    assert!(
        values(&back, 0)
            .iter()
            .zip(values(&sq, 0))
            .all(|(a, b)| (a - b).abs() < 1e-3)
    );
}

#[test]
fn brats_labels_become_three_channels() {
    let mut d = sample(
        fvol([5, 1, 1], |_, _, _| 0.0),
        lvol([5, 1, 1], |i, _, _| [0, 1, 2, 4, 3][i]),
    );
    run(
        json!({"name": "transforms.BratsConvertLabels", "fields": "label"}),
        &mut d,
    );
    let l = d.volume("label").unwrap();
    assert_eq!(values(l, 0), [0.0, 1.0, 0.0, 1.0, 0.0]);
    assert_eq!(values(l, 1), [0.0, 1.0, 1.0, 1.0, 0.0]);
    assert_eq!(values(l, 2), [0.0, 0.0, 0.0, 1.0, 0.0]);
}

#[test]
fn sub_volume_crops_centre_random_and_pos_neg() {
    let v = fvol([9, 8, 7], |i, j, k| (i + 10 * j + 100 * k) as f32);
    let mut d = sample(v.clone(), lvol([9, 8, 7], |_, _, _| 0));
    run(
        json!({"name": "transforms.CropSubVolumeCenter", "fields": ["image", "label"], "size": [5, 10, 3]}),
        &mut d,
    );
    let out = d.volume("image").unwrap();
    assert_eq!(out.dims, [5, 10, 3]);
    // start = floor((n - s) / 2) = (2, -1, 2): row j = 0 is padding.
    assert_eq!(out.get(0, 0, 0, 0), 0.0);
    assert_eq!(out.get(0, 1, 0, 0), v.get(2, 0, 2, 0));
    for s in 0..5 {
        let mut d = sample(v.clone(), lvol([9, 8, 7], |_, _, _| 0));
        build(json!({"name": "transforms.CropSubVolumeRandomWithinBounds", "fields": "image", "size": [4, 4, 4]}))
            .apply(&mut d, &mut rng(s))
            .unwrap();
        let out = d.volume("image").unwrap();
        let o = out.get(0, 0, 0, 0) as usize;
        assert_eq!(
            out.get(3, 3, 3, 0),
            v.get(o % 10 + 3, (o / 10) % 10 + 3, o / 100 + 3, 0)
        );
    }
    let label = lvol([20, 20, 20], |i, j, k| u8::from(i == 15 && j == 15 && k == 15));
    let t = json!({"name": "transforms_ctrl.CropSubVolumePosNegRatioCtrlEpoch", "image_field": "image",
                   "label_field": "label", "size": [5, 5, 5], "ratio_start": 1000.0, "ratio_end": 0.0,
                   "ratio_step": -500.0, "num_epochs": 2});
    let (mut pos_early, mut pos_late) = (0, 0);
    for s in 0..20 {
        for (epoch, counter) in [(0, &mut pos_early), (10, &mut pos_late)] {
            let mut d = sample(fvol([20, 20, 20], |_, _, _| 1.0), label.clone());
            d.epoch = epoch;
            build(t.clone()).apply(&mut d, &mut rng(s)).unwrap();
            let l = d.volume("label").unwrap();
            assert_eq!(l.dims, [5, 5, 5]);
            *counter += usize::from(l.get(2, 2, 2, 0) == 1.0);
        }
    }
    assert_eq!(
        (pos_early, pos_late),
        (20, 0),
        "ratio 1000 at epoch 0, 0 from epoch 4 on"
    );
}

#[test]
fn fast_augmentation_crops_around_foreground() {
    let label = lvol([30, 30, 30], |i, j, k| {
        u8::from((10..20).contains(&i) && (12..18).contains(&j) && (8..22).contains(&k))
    });
    let image = fvol([30, 30, 30], |i, _, _| i as f32);
    for (s, (rot, scale, deform)) in [(false, false, false), (true, true, true)]
        .into_iter()
        .enumerate()
    {
        let mut d = sample(image.clone(), label.clone());
        build(
            json!({"name": "transforms_fastaug.TransformVolumeCropROIFastPosNegRatio",
                     "applied_keys": ["image", "label"], "size": [9, 9, 9], "deform": deform, "rotation": rot,
                     "rotation_degree": 15, "scale": scale, "scale_factor": 0.1, "pos": 1, "neg": 0}),
        )
        .apply(&mut d, &mut rng(s as u64))
        .unwrap();
        let (im, l) = (d.volume("image").unwrap(), d.volume("label").unwrap());
        assert_eq!((im.dims, l.dims), ([9, 9, 9], [9, 9, 9]));
        assert_eq!(l.voxel_type(), VoxelType::U8);
        if !rot {
            // A pure crop: the centre is a foreground voxel and intensities are i.
            assert_eq!(l.get(4, 4, 4, 0), 1.0);
            let c = im.get(4, 4, 4, 0);
            assert!((0..9).all(|i| (im.get(i, 0, 0, 0) - (c - 4.0 + i as f64)).abs() < 1e-4));
        }
    }
}

#[test]
fn writer_writes_input_named_files_with_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = sample(
        fvol([3, 2, 2], |i, _, _| i as f32 + 0.4),
        lvol([3, 2, 2], |i, _, _| i as u8),
    );
    d.name = "/data/im7.nii.gz".into();
    d.output_dir = Some(dir.path().to_path_buf());
    run(
        json!({"name": "writers.WriteNiftyResults", "applied_key": "image", "dtype": "uint8"}),
        &mut d,
    );
    let path = dir.path().join("im7").join("im7_image.nii.gz");
    let back = read_volume(&path, &ReadOptions::default()).unwrap();
    assert_eq!(back.voxel_type(), VoxelType::U8);
    assert_eq!(values(&back, 0)[..3], [0.0, 1.0, 2.0]);
    assert!(back.geometry.approx_eq(&geom(), 1e-5));
    let mut d = sample(fvol([1, 1, 1], |_, _, _| 0.0), lvol([1, 1, 1], |_, _, _| 0));
    assert!(
        build(json!({"name": "writers.WriteNiftyResults", "applied_key": "image"}))
            .apply(&mut d, &mut rng(0))
            .is_err()
    );
}

#[test]
fn resample_volume_to_target_resolution() {
    let mut d = sample(fvol([4, 4, 4], |_, _, _| 1.0), lvol([4, 4, 4], |_, _, _| 1));
    run(
        json!({"name": "transforms.ResampleVolume", "applied_key": "image", "target_resolution": [2, 1, 3]}),
        &mut d,
    );
    let im = d.image("image").unwrap();
    assert_eq!(im.vol.dims, [2, 8, 4]);
    assert_eq!(im.vol.geometry.spacing, [2.0, 1.0, 3.0]);
    let back =
        aiaa_transforms::invert(&im.vol, &im.ops, aiaa_imaging::resample::Interpolation::Linear).unwrap();
    assert_eq!(back.dims, [4, 4, 4]);
}

#[test]
fn resize_gives_every_key_the_size_over_the_same_extent_and_inverts() {
    // A label box i 2..6 of 8: nearest keeps it a 0/1 label; the image is interpolated.
    let mut d = sample(
        fvol([8, 4, 4], |i, _, _| i as f32),
        lvol([8, 4, 4], |i, _, _| u8::from((2..6).contains(&i))),
    );
    run(
        json!({"name": "transforms.Resize", "fields": ["image", "label"], "spatial_size": [4, 8, 2]}),
        &mut d,
    );
    let (im, lab) = (d.image("image").unwrap(), d.image("label").unwrap());
    assert_eq!((im.vol.dims, lab.vol.dims), ([4, 8, 2], [4, 8, 2]));
    assert_eq!(
        im.vol.geometry.spacing,
        [2.0, 1.0, 6.0],
        "geom() spacing 1, 2, 3 over the same extent"
    );
    let labels = values(&lab.vol, 0);
    assert!(labels.iter().all(|v| *v == 0.0 || *v == 1.0), "{labels:?}");
    assert_eq!(labels[..4], [0.0, 1.0, 1.0, 0.0]);
    let back =
        aiaa_transforms::invert(&lab.vol, &lab.ops, aiaa_imaging::resample::Interpolation::Nearest).unwrap();
    assert_eq!(back.dims, [8, 4, 4]);
    assert!(back.geometry.approx_eq(&geom(), 1e-5));
    for bad in [json!([4, 8]), json!([4, 0, 2])] {
        let e = aiaa_transforms::registry::build(
            0,
            &json!({"name": "transforms.Resize", "fields": "image", "spatial_size": bad}),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("spatial_size"), "{e}");
    }
}

#[test]
fn volume_to_4d_array_flags_the_channel_axis() {
    let mut d = sample(fvol([2, 2, 2], |_, _, _| 0.0), lvol([2, 2, 2], |_, _, _| 0));
    assert!(!d.image("image").unwrap().channel_dim);
    run(
        json!({"name": "transforms.VolumeTo4dArray", "fields": ["image", "label"]}),
        &mut d,
    );
    assert!(d.image("image").unwrap().channel_dim && d.image("label").unwrap().channel_dim);
}
