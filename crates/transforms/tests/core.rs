//! Builder errors, keys, seeding and reproducibility, and the spatial record's inversion.

mod common;

use aiaa_imaging::resample::Interpolation;
use aiaa_transforms::{Data, Pipeline, TransformError, invert, spatial};
use common::*;
use rayon::prelude::*;
use serde_json::json;

#[test]
fn unknown_transform_names_position_and_name() {
    let e = Pipeline::from_json(
        &json!([{"name": "transforms.VolumeTo4dArray", "fields": "image"}, {"name": "transforms.Nope"}]),
        0,
    )
    .unwrap_err();
    assert!(
        matches!(&e, TransformError::UnknownTransform { position: 1, name } if name == "transforms.Nope")
    );
    assert!(
        e.to_string().contains("#1") && e.to_string().contains("transforms.Nope"),
        "{e}"
    );
}

#[test]
fn unknown_missing_and_mistyped_arguments_are_named() {
    let cases = [
        (
            json!({"name": "transforms.SplitAcrossChannels", "applied key": "model"}),
            "applied key",
        ),
        (
            json!({"name": "transforms.AddExtremePointsChannel", "image_field": "image", "label_field": "label"}),
            "sigma",
        ),
        (
            json!({"name": "transforms.AddExtremePointsChannel", "image_field": "image", "label_field": "label", "sigma": "big"}),
            "sigma",
        ),
        (
            json!({"name": "transforms.NPRandomFlip3D", "applied_keys": ["image"], "probability": 2.0}),
            "probability",
        ),
        (
            json!({"name": "transforms.NPRandomFlip3D", "applied_keys": []}),
            "applied_keys",
        ),
        (
            json!({"name": "writers.WriteNiftyResults", "applied_key": "x", "dtype": "complex"}),
            "dtype",
        ),
        (
            json!({"name": "transforms.ScaleIntensityRange", "field": "image", "a_min": 0, "a_max": 1, "b_min": 0}),
            "b_max",
        ),
    ];
    for (i, (entry, arg)) in cases.into_iter().enumerate() {
        let list = json!([{"name": "transforms.VolumeTo4dArray", "fields": "image"}, entry.clone()]);
        match Pipeline::from_json(&list, 0) {
            Err(TransformError::Argument {
                position,
                name,
                argument,
                ..
            }) => {
                assert_eq!(position, 1, "case {i}");
                assert_eq!(name, entry["name"].as_str().unwrap());
                assert_eq!(argument, arg, "case {i}");
            }
            other => panic!("case {i}: {other:?}"),
        }
    }
}

#[test]
fn fields_take_a_string_or_a_list() {
    for f in [json!("image"), json!(["image", "label"])] {
        Pipeline::from_json(&json!([{"name": "transforms.VolumeTo4dArray", "fields": f}]), 0).unwrap();
    }
}

#[test]
fn failure_names_the_sample_position_and_transform() {
    let p = Pipeline::from_json(
        &json!([{"name": "transforms.VolumeTo4dArray", "fields": ["image", "label"]},
                {"name": "transforms.CropForegroundObject", "size": [4, 4, 4], "image_field": "image",
                 "label_field": "label", "pad": 1}]),
        0,
    )
    .unwrap();
    let mut d = sample(fvol([5, 5, 5], |_, _, _| 1.0), lvol([5, 5, 5], |_, _, _| 0));
    let e = p.run(&mut d, 0).unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("case1")
            && s.contains("#1")
            && s.contains("CropForegroundObject")
            && s.contains("no foreground"),
        "{s}"
    );
}

fn train_like() -> Pipeline {
    Pipeline::from_json(
        &json!([
            {"name": "transforms.NPRandomFlip3D", "applied_keys": ["image", "label"]},
            {"name": "transforms.NPRandomZoom3D", "applied_keys": ["image", "label"],
             "lower_limits": [0.8, 0.8, 0.8], "upper_limits": [1.2, 1.2, 1.2]},
            {"name": "transforms.ScaleIntensityOscillation", "field": "image", "magnitude": 0.2},
            {"name": "transforms.NPRandomRot90_XY", "applied_keys": ["image", "label"]},
            {"name": "transforms.AddExtremePointsChannel", "image_field": "image",
             "label_field": "label", "sigma": 2, "pert": 2}
        ]),
        1234,
    )
    .unwrap()
}

fn input() -> Data {
    sample(
        fvol([12, 10, 8], |i, j, k| (i * 3 + j * 5 + k * 7) as f32),
        lvol([12, 10, 8], |i, j, k| {
            u8::from((3..9).contains(&i) && (2..7).contains(&j) && (2..6).contains(&k))
        }),
    )
}

#[test]
fn same_seed_and_index_reproduce_on_any_thread_count() {
    let p = train_like();
    let seq: Vec<Data> = (0..8)
        .map(|i| {
            let mut d = input();
            p.run(&mut d, i).unwrap();
            d
        })
        .collect();
    let par: Vec<Data> = (0..8usize)
        .into_par_iter()
        .rev()
        .map(|i| {
            let mut d = input();
            p.run(&mut d, i as u64).unwrap();
            d
        })
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert_eq!(seq, par);
    assert!(
        seq.windows(2).any(|w| w[0] != w[1]),
        "different samples draw differently"
    );
}

#[test]
fn one_draw_keeps_image_and_label_aligned() {
    // The image equals the label: after any random spatial chain they must still be equal.
    let p = Pipeline::from_json(
        &json!([
            {"name": "transforms.NPRandomFlip3D", "applied_keys": ["image", "label"]},
            {"name": "transforms.NPRandomRot90_XY", "applied_keys": ["image", "label"], "probability": 1.0},
            {"name": "transforms.CropSubVolumeRandomWithinBounds", "fields": ["image", "label"], "size": [5, 4, 3]},
            {"name": "transforms.FlipAxisRandom", "fields": ["image", "label"], "axis": [0, 1, 2]}
        ]),
        9,
    )
    .unwrap();
    for i in 0..10 {
        let l = lvol([7, 6, 5], |i, j, k| ((i * 7 + j * 3 + k) % 11) as u8);
        let mut d = sample(l.clone(), l);
        p.run(&mut d, i).unwrap();
        let (a, b) = (d.volume("image").unwrap(), d.volume("label").unwrap());
        assert_eq!(a, b);
    }
}

#[test]
fn flip_and_rot90_keep_physical_positions() {
    let v = fvol([4, 3, 2], |i, j, k| (i + 10 * j + 100 * k) as f32);
    for out in [
        spatial::flip(&v, [true, false, true]),
        spatial::rot90(&v, 1),
        spatial::rot90(&v, 3),
    ] {
        for k in 0..out.dims[2] {
            for j in 0..out.dims[1] {
                for i in 0..out.dims[0] {
                    let p = out.geometry.index_to_physical([i as f64, j as f64, k as f64]);
                    let src = v
                        .geometry
                        .physical_to_index(p)
                        .unwrap()
                        .map(|x| x.round() as usize);
                    assert_eq!(out.get(i, j, k, 0), v.get(src[0], src[1], src[2], 0));
                }
            }
        }
    }
    // numpy rot90(a, 1, axes=(0, 1)): out[a, b] = in[b, ny - 1 - a].
    let r = spatial::rot90(&v, 1);
    assert_eq!(r.dims, [3, 4, 2]);
    for a in 0..3 {
        for b in 0..4 {
            assert_eq!(r.get(a, b, 1, 0), v.get(b, 2 - a, 1, 0));
        }
    }
}

#[test]
fn permute_is_numpy_transpose_and_keeps_physical_positions() {
    let v = fvol([4, 3, 2], |i, j, k| (i + 10 * j + 100 * k) as f32);
    for order in [[0, 1, 2], [1, 0, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0], [0, 2, 1]] {
        let out = spatial::permute(&v, order).unwrap();
        assert_eq!(out.dims, order.map(|a| v.dims[a]));
        for k in 0..out.dims[2] {
            for j in 0..out.dims[1] {
                for i in 0..out.dims[0] {
                    // numpy transpose(a, order): out[x] = in[y] with y[order[a]] = x[a].
                    let mut y = [0; 3];
                    for (a, &o) in order.iter().enumerate() {
                        y[o] = [i, j, k][a];
                    }
                    assert_eq!(out.get(i, j, k, 0), v.get(y[0], y[1], y[2], 0));
                    let p = out.geometry.index_to_physical([i as f64, j as f64, k as f64]);
                    let q = v.geometry.index_to_physical(y.map(|x| x as f64));
                    assert!((0..3).all(|a| (p[a] - q[a]).abs() < 1e-9), "{order:?}");
                }
            }
        }
        let back = spatial::permute(&out, spatial::inverse_permutation(order).unwrap()).unwrap();
        assert_eq!(back, v);
    }
    assert!(spatial::permute(&v, [0, 0, 1]).is_err());
    assert!(spatial::permute(&v, [0, 1, 3]).is_err());
}

#[test]
fn invert_maps_a_prediction_back_exactly_through_crop_flip_rot90() {
    let label = lvol([20, 16, 12], |i, j, k| {
        u8::from((5..12).contains(&i) && (4..9).contains(&j) && (3..10).contains(&k))
            + u8::from(i == 8 && j == 6 && k == 5)
    });
    let p = Pipeline::from_json(
        &json!([
            {"name": "transforms.CropForegroundObject", "size": [11, 9, 11], "image_field": "image",
             "label_field": "label", "pad": 2},
            {"name": "transforms.NPRandomFlip3D", "applied_keys": ["image", "label"], "probability": 1.0},
            {"name": "transforms.NPRandomRot90_XY", "applied_keys": ["image", "label"], "probability": 1.0}
        ]),
        3,
    )
    .unwrap();
    let mut d = sample(fvol([20, 16, 12], |i, _, _| i as f32), label.clone());
    p.run(&mut d, 0).unwrap();
    let im = d.image("label").unwrap();
    assert_eq!(
        im.ops.len(),
        3,
        "region, flip, rot90 (no resize: size is the padded box)"
    );
    let back = invert(&im.vol, &im.ops, Interpolation::Nearest).unwrap();
    assert_eq!(back.dims, label.dims);
    assert!(back.geometry.approx_eq(&label.geometry, 1e-9));
    let binary: Vec<f64> = values(&label, 0).iter().map(|&v| f64::from(v > 0.0)).collect();
    assert_eq!(values(&back, 0), binary);
}

#[test]
fn invert_through_resize_and_zoom_is_close() {
    let label = lvol([24, 20, 16], |i, j, k| {
        u8::from((6..18).contains(&i) && (5..15).contains(&j) && (4..12).contains(&k))
    });
    let p = Pipeline::from_json(
        &json!([
            {"name": "transforms.NPRandomZoom3D", "applied_keys": ["image", "label"],
             "lower_limits": [2, 2, 2], "upper_limits": [2, 2, 2]},
            {"name": "transforms.CropForegroundObject", "size": [16, 16, 16], "image_field": "image",
             "label_field": "label", "pad": 4}
        ]),
        3,
    )
    .unwrap();
    let mut d = sample(fvol([24, 20, 16], |_, _, _| 1.0), label.clone());
    p.run(&mut d, 0).unwrap();
    let im = d.image("label").unwrap();
    assert_eq!(im.vol.dims, [16, 16, 16]);
    let back = invert(&im.vol, &im.ops, Interpolation::Nearest).unwrap();
    assert_eq!(back.dims, label.dims);
    let (a, b) = (values(&back, 0), values(&label, 0));
    let both = a.iter().zip(&b).filter(|(x, y)| **x > 0.0 && **y > 0.0).count() as f64;
    let total = (a.iter().filter(|&&x| x > 0.0).count() + b.iter().filter(|&&x| x > 0.0).count()) as f64;
    let dice = 2.0 * both / total;
    // Two nearest-neighbour resamplings (factors 1.5 to 2) move faces by up to one voxel.
    assert!(dice > 0.85, "dice {dice}");
    // ...but do not shift the object: centroids agree within half a voxel.
    let centroid = |v: &[f64]| {
        let (mut s, mut n) = ([0.0; 3], 0.0);
        for (idx, _) in v.iter().enumerate().filter(|(_, x)| **x > 0.0) {
            let p = [idx % 24, (idx / 24) % 20, idx / 480];
            (0..3).for_each(|a| s[a] += p[a] as f64);
            n += 1.0;
        }
        s.map(|x| x / n)
    };
    let (ca, cb) = (centroid(&a), centroid(&b));
    assert!(
        (0..3).all(|i| (ca[i] - cb[i]).abs() <= 0.5 + 1e-9),
        "{ca:?} {cb:?}"
    );
    // A prediction on the wrong grid is refused.
    assert!(invert(&label, &im.ops, Interpolation::Nearest).is_err());
}

/// Zooming out with `keep_size` pads: with `padding_mode` `edge` the image's border voxels
/// go on (tissue past the field of view) while the label is padded with zeros; the default
/// pads both with zeros.
#[test]
fn a_zoom_out_pads_intensities_with_their_edges_when_asked() {
    let zoom = |mode: &str| {
        Pipeline::from_json(
            &json!([{"name": "transforms.NPRandomZoom3D", "applied_keys": ["image", "label"],
                     "lower_limits": [1, 1, 0.5], "upper_limits": [1, 1, 0.5], "keep_size": true,
                     "padding_mode": mode}]),
            0,
        )
        .unwrap()
    };
    // A ramp along k, and a label that reaches the bottom face.
    let image = fvol([4, 4, 16], |_, _, k| 10.0 + k as f32);
    let label = lvol([4, 4, 16], |_, _, k| u8::from(k < 8));
    for mode in ["edge", "constant"] {
        let mut d = sample(image.clone(), label.clone());
        zoom(mode).run(&mut d, 0).unwrap();
        let im = values(&d.image("image").unwrap().vol, 0);
        let lab = values(&d.image("label").unwrap().vol, 0);
        // 16 -> 8 slices, padded 4 before and 4 after: slice 0 is padding.
        let at = |v: &[f64], k: usize| v[16 * k];
        assert_eq!(
            at(&im, 0),
            if mode == "edge" { at(&im, 4) } else { 0.0 },
            "{mode}"
        );
        assert_eq!(at(&im, 1), at(&im, if mode == "edge" { 4 } else { 1 }), "{mode}");
        assert!(at(&im, 4) > 9.0, "{mode}: the zoomed image starts at slice 4");
        assert_eq!(
            at(&im, 15),
            if mode == "edge" { at(&im, 11) } else { 0.0 },
            "{mode}"
        );
        assert_eq!(
            (at(&lab, 0), at(&lab, 5)),
            (0.0, 1.0),
            "{mode}: labels pad with zeros"
        );
    }
    let e = Pipeline::from_json(
        &json!([{"name": "transforms.NPRandomZoom3D", "applied_keys": ["image"],
                 "lower_limits": [1, 1, 1], "upper_limits": [1, 1, 1], "padding_mode": "mirror"}]),
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("padding_mode") || e.contains("mirror"), "{e}");
}
