//! Definitions against an independent brute-force implementation, the decided empty-class
//! cases, grid checks and resampling, label handling, and reports from real evaluations.

use aiaa_imaging::resample::{Interpolation, resample_like};
use aiaa_imaging::{Geometry, Volume, Voxels};
use aiaa_metrics::report::{RAW_TEXT, SUMMARY_TEXT};
use aiaa_metrics::{Case, Classes, MetricOptions, MetricsError, Report, compare_masks, evaluate};

/// Brute force, straight from the definitions: edges by looking at the 6 neighbours (outside
/// = background), distances by scanning every edge voxel of the other mask, the 95th
/// percentile by sorting.
fn brute(p: &[bool], g: &[bool], dims: [usize; 3], sp: [f64; 3], tol: f64) -> (f64, f64, f64) {
    let idx = |o: usize| [o % dims[0], (o / dims[0]) % dims[1], o / (dims[0] * dims[1])];
    let edge = |m: &[bool], o: usize| {
        let c = idx(o);
        m[o] && (0..3).filter(|&a| dims[a] > 1).any(|a| {
            [-1i64, 1].iter().any(|&d| {
                let mut n = c.map(|x| x as i64);
                n[a] += d;
                if n[a] < 0 || n[a] >= dims[a] as i64 {
                    return true;
                }
                !m[n[0] as usize + dims[0] * (n[1] as usize + dims[1] * n[2] as usize)]
            })
        })
    };
    let ep: Vec<usize> = (0..p.len()).filter(|&o| edge(p, o)).collect();
    let eg: Vec<usize> = (0..g.len()).filter(|&o| edge(g, o)).collect();
    let dist = |a: usize, b: usize| {
        let (x, y) = (idx(a), idx(b));
        (0..3)
            .map(|k| ((x[k] as f64 - y[k] as f64) * sp[k]).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let directed = |from: &[usize], to: &[usize]| -> Vec<f64> {
        from.iter()
            .map(|&a| to.iter().map(|&b| dist(a, b)).fold(f64::INFINITY, f64::min))
            .collect()
    };
    let (dpg, dgp) = (directed(&ep, &eg), directed(&eg, &ep));
    let q95 = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        let pos = 0.95 * (v.len() - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(v.len() - 1);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    let within = dpg
        .iter()
        .chain(&dgp)
        .filter(|&&d| d as f32 <= tol as f32)
        .count();
    let inter = p.iter().zip(g).filter(|(a, b)| **a && **b).count();
    let np = p.iter().filter(|&&x| x).count();
    let ng = g.iter().filter(|&&x| x).count();
    (
        2.0 * inter as f64 / (np + ng) as f64,
        within as f64 / (dpg.len() + dgp.len()) as f64,
        q95(&dpg).max(q95(&dgp)),
    )
}

fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.max(1);
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Random blobs (unions of boxes) in a small grid.
fn blobs(r: &mut impl FnMut() -> u64, dims: [usize; 3]) -> Vec<bool> {
    let mut m = vec![false; dims.iter().product()];
    for _ in 0..1 + r() % 3 {
        let lo: [usize; 3] = std::array::from_fn(|a| (r() % dims[a] as u64) as usize);
        let hi: [usize; 3] = std::array::from_fn(|a| (lo[a] + 1 + (r() % 5) as usize).min(dims[a]));
        for k in lo[2]..hi[2] {
            for j in lo[1]..hi[1] {
                for i in lo[0]..hi[0] {
                    m[i + dims[0] * (j + dims[1] * k)] = true;
                }
            }
        }
    }
    m
}

#[test]
fn matches_brute_force_definitions() {
    let mut r = rng(7);
    for case in 0..60 {
        let dims = [
            2 + (r() % 10) as usize,
            2 + (r() % 9) as usize,
            1 + (r() % 8) as usize,
        ];
        let sp = [0.5 + (r() % 8) as f64 * 0.25, 0.8, [1.0, 2.5, 3.0][case % 3]];
        let (p, g) = (blobs(&mut r, dims), blobs(&mut r, dims));
        let tol = [0.0, 1.0, 2.5, 4.0][case % 4];
        let m = compare_masks(&p, &g, dims, sp, tol).unwrap();
        let (d, n, h) = brute(&p, &g, dims, sp, tol);
        assert_eq!(m.case, Case::BothPresent);
        assert!((m.dice - d).abs() < 1e-12, "case {case}: dice {} vs {d}", m.dice);
        assert!((m.nsd - n).abs() < 1e-12, "case {case}: nsd {} vs {n}", m.nsd);
        assert!(
            (m.hd95_mm - h).abs() < 1e-9 * h.max(1.0),
            "case {case}: hd95 {} vs {h}",
            m.hd95_mm
        );
    }
}

#[test]
fn known_values_of_a_shifted_cube() {
    // A 4x4x4 cube and the same cube one voxel further along i, spacing 2 x 1 x 1 mm.
    let dims = [10, 10, 10];
    let cube = |x0: usize| {
        let mut m = vec![false; 1000];
        for k in 3..7 {
            for j in 3..7 {
                for i in x0..x0 + 4 {
                    m[i + 10 * (j + 10 * k)] = true;
                }
            }
        }
        m
    };
    let m = compare_masks(&cube(3), &cube(4), dims, [2.0, 1.0, 1.0], 1.0).unwrap();
    assert_eq!(m.dice, 0.75); // 2 * 48 / 128
    assert_eq!(
        (m.prediction_surface_voxels, m.reference_surface_voxels),
        (56, 56)
    );
    // The two i-faces (16 voxels each side) are 2 mm from the other surface; every other edge
    // voxel lies on the other surface: 80 of 112 within 1 mm; HD95 is 2 mm.
    assert_eq!(m.nsd, 80.0 / 112.0);
    assert_eq!(m.hd95_mm, 2.0);
    let same = compare_masks(&cube(3), &cube(3), dims, [2.0, 1.0, 1.0], 0.0).unwrap();
    assert_eq!((same.dice, same.nsd, same.hd95_mm), (1.0, 1.0, 0.0));
}

fn vol(dims: [usize; 3], g: Geometry, labels: Vec<u8>) -> Volume {
    Volume::scalar(dims, g, Voxels::U8(labels)).unwrap()
}

#[test]
fn empty_classes_follow_the_documented_rules() {
    let dims = [6, 6, 6];
    let g = Geometry::with_spacing([1.0, 1.0, 2.0]);
    let mut p = vec![0u8; 216];
    let mut r = vec![0u8; 216];
    p[1 + 6 * (1 + 6)] = 1; // class 1 in both
    r[1 + 6 * (1 + 6)] = 1;
    r[2 + 6 * (2 + 6)] = 2; // class 2 only in the reference
    p[3 + 6 * (3 + 6 * 3)] = 4; // class 4 only in the prediction; class 3 nowhere
    let m = evaluate(
        &vol(dims, g, p),
        &vol(dims, g, r),
        &Classes::Labels(vec![4, 3, 2, 1]),
        &MetricOptions::default(),
    )
    .unwrap();
    let by: Vec<_> = m
        .classes
        .iter()
        .map(|c| (c.class, c.case, c.dice, c.nsd, c.hd95_mm))
        .collect();
    assert_eq!(by[0], (1, Case::BothPresent, 1.0, 1.0, 0.0));
    assert_eq!(by[1], (2, Case::PredictionEmpty, 0.0, 0.0, f64::INFINITY));
    assert_eq!(by[2], (3, Case::BothEmpty, 1.0, 1.0, 0.0));
    assert_eq!(by[3], (4, Case::ReferenceEmpty, 0.0, 0.0, f64::INFINITY));
    assert_eq!(m.classes[1].reference_surface_voxels, 1);
    assert_eq!(m.classes[3].prediction_surface_voxels, 1);

    // Binary masks: both empty, one empty.
    let z = vec![false; 8];
    let mut one = z.clone();
    one[0] = true;
    let both = compare_masks(&z, &z, [2, 2, 2], [1.0; 3], 1.0).unwrap();
    assert_eq!(
        (both.case, both.dice, both.nsd, both.hd95_mm),
        (Case::BothEmpty, 1.0, 1.0, 0.0)
    );
    let miss = compare_masks(&z, &one, [2, 2, 2], [1.0; 3], 1.0).unwrap();
    assert_eq!(miss.case, Case::PredictionEmpty);
    assert!(miss.hd95_mm.is_infinite() && miss.dice == 0.0 && miss.nsd == 0.0);

    // The report shows it: `inf` next to the case in text, null + case in JSON.
    let mut rep = Report::new(1.0);
    rep.push("x.nii.gz", m);
    let text = rep.raw_text();
    assert!(
        text.contains("x.nii.gz\t2\t-\t0.000000\t0.000000\tinf\tprediction_empty\t"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&rep.raw_json().unwrap()).unwrap();
    assert!(json["files"][0]["classes"][1]["hd95_mm"].is_null());
    assert_eq!(json["files"][0]["classes"][1]["case"], "prediction_empty");
}

#[test]
fn mismatched_grids_fail_clearly_or_are_resampled() {
    let g = Geometry::with_spacing([1.0; 3]);
    let mut labels = vec![0u8; 512];
    for k in 2..6 {
        for j in 2..6 {
            for i in 2..6 {
                labels[i + 8 * (j + 8 * k)] = 1;
            }
        }
    }
    let reference = vol([8, 8, 8], g, labels.clone());
    let opts = MetricOptions::default();

    // Different size.
    let small = vol([8, 8, 4], g, labels[..256].to_vec());
    let e = evaluate(&small, &reference, &Classes::Binary, &opts).unwrap_err();
    assert!(matches!(e, MetricsError::GridMismatch { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("prediction grid (8x8x4 voxels") && msg.contains("reference grid (8x8x8 voxels"),
        "{msg}"
    );
    assert!(msg.contains("resample_prediction"), "{msg}");

    // Origin off by 1e-3 mm: a different grid; by 1e-5 mm: the same.
    let mut off = g;
    off.origin[1] = 1e-3;
    assert!(
        evaluate(
            &vol([8, 8, 8], off, labels.clone()),
            &reference,
            &Classes::Binary,
            &opts
        )
        .is_err()
    );
    off.origin[1] = 1e-5;
    let m = evaluate(
        &vol([8, 8, 8], off, labels.clone()),
        &reference,
        &Classes::Binary,
        &opts,
    )
    .unwrap();
    assert!(!m.prediction_resampled);
    assert_eq!(m.classes[0].dice, 1.0);

    // A prediction at 2 mm over the same extent, resampled onto the reference grid.
    let coarse_g = Geometry {
        spacing: [2.0; 3],
        origin: [0.5; 3],
        ..g
    };
    let mut coarse = vec![0u8; 64];
    for k in 1..3 {
        for j in 1..3 {
            for i in 1..3 {
                coarse[i + 4 * (j + 4 * k)] = 1;
            }
        }
    }
    let pred = vol([4, 4, 4], coarse_g, coarse);
    assert!(evaluate(&pred, &reference, &Classes::Binary, &opts).is_err());
    let resample = MetricOptions {
        resample_prediction: true,
        ..opts
    };
    let m = evaluate(&pred, &reference, &Classes::Binary, &resample).unwrap();
    assert!(m.prediction_resampled);
    let by_hand = resample_like(&pred, &reference, Interpolation::Nearest).unwrap();
    let expect = evaluate(&by_hand, &reference, &Classes::Binary, &opts).unwrap();
    assert_eq!(m.classes, expect.classes);
    assert_eq!(m.classes[0].dice, 1.0, "the coarse cube covers the same voxels");
}

#[test]
fn label_values_and_channels_are_checked() {
    let g = Geometry::default();
    let reference = vol([2, 2, 1], g, vec![0, 1, 2, 2]);
    let probs = Volume::scalar([2, 2, 1], g, Voxels::F32(vec![0.0, 0.5, 1.0, 1.0])).unwrap();
    let e = evaluate(
        &probs,
        &reference,
        &Classes::first_n(2),
        &MetricOptions::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("prediction contains 0.5"), "{e}");
    // As a binary mask the same volume is fine (non-zero = foreground).
    let m = evaluate(&probs, &reference, &Classes::Binary, &MetricOptions::default()).unwrap();
    assert_eq!(m.classes[0].dice, 1.0);
    // Float label volumes with integer values work like integer ones.
    let labels = Volume::scalar([2, 2, 1], g, Voxels::F32(vec![0.0, 1.0, 2.0, 0.0])).unwrap();
    let m = evaluate(
        &labels,
        &reference,
        &Classes::first_n(2),
        &MetricOptions::default(),
    )
    .unwrap();
    assert_eq!(m.classes[0].dice, 1.0);
    assert!((m.classes[1].dice - 2.0 / 3.0).abs() < 1e-15);
    assert_eq!(
        Classes::present_in(&labels, &reference).unwrap(),
        Classes::Labels(vec![1, 2])
    );

    let two = Volume::new([2, 2, 1], 2, g, Voxels::U8(vec![0; 8])).unwrap();
    let e = evaluate(&two, &reference, &Classes::Binary, &MetricOptions::default()).unwrap_err();
    assert!(matches!(
        e,
        MetricsError::MultiChannel {
            side: "prediction",
            channels: 2
        }
    ));
    let bad_tol = MetricOptions {
        nsd_tolerance_mm: -1.0,
        ..Default::default()
    };
    assert!(evaluate(&reference, &reference, &Classes::Binary, &bad_tol).is_err());
    assert!(compare_masks(&[true; 3], &[true; 4], [2, 2, 1], [1.0; 3], 1.0).is_err());
}

#[test]
fn two_dimensional_images_use_in_plane_neighbours() {
    // A filled 5x5 square and the same square shifted by one pixel along i, as 5x5x1 images:
    // 16 edge pixels each (a 3D view would make all 25 edges).
    let dims = [7, 5, 1];
    let sq = |x0: usize| {
        (0..35)
            .map(|o| (o % 7) >= x0 && (o % 7) < x0 + 5)
            .collect::<Vec<bool>>()
    };
    let m = compare_masks(&sq(0), &sq(1), dims, [1.0, 1.0, 5.0], 0.0).unwrap();
    assert_eq!(
        (m.prediction_surface_voxels, m.reference_surface_voxels),
        (16, 16)
    );
    assert_eq!(m.dice, 0.8);
}

#[test]
fn reports_are_written_from_evaluations() {
    let g = Geometry::with_spacing([1.0, 1.0, 2.5]);
    let mut r = vec![0u8; 1000];
    for k in 2..8 {
        for j in 2..8 {
            for i in 2..8 {
                r[i + 10 * (j + 10 * k)] = if i < 5 { 1 } else { 2 };
            }
        }
    }
    let p: Vec<u8> = (0..1000).map(|o| if r[o] == 2 { 2 } else { 0 }).collect();
    let (reference, pred) = (vol([10; 3], g, r), vol([10; 3], g, p));
    let mut rep = Report::new(1.0);
    rep.class_names.insert(2, "right".into());
    for name in ["a.nii.gz", "b.nii.gz"] {
        rep.push(
            name,
            evaluate(&pred, &reference, &Classes::first_n(2), &MetricOptions::default()).unwrap(),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let files = rep.write(dir.path()).unwrap();
    let raw = std::fs::read_to_string(dir.path().join(RAW_TEXT)).unwrap();
    assert_eq!(raw.lines().count(), 2 + 4);
    assert!(raw.contains("a.nii.gz\t2\tright\t1.000000\t1.000000\t0.000000\tboth_present\t108\t108\t"));
    let summary = std::fs::read_to_string(dir.path().join(SUMMARY_TEXT)).unwrap();
    assert!(
        summary.contains("\n1\t-\thd95_mm\t0\t-\t-\t-\t-\t2\n"),
        "{summary}"
    );
    assert!(
        summary.contains("\nall\t-\tdice\t4\t0.500000\t0.500000\t0.000000\t1.000000\t0\n"),
        "{summary}"
    );
    assert!(files.raw_json.is_file() && files.summary_json.is_file());
}
