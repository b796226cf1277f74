//! Times Dice + NSD + HD95 on the 182x218x182 MNI152 brain mask against a copy shifted by
//! (3, -2, 1) voxels: ours (`evaluate`, volumes in memory) and MONAI 1.6.1's
//! (`compute_dice` + `compute_surface_dice` + `compute_hausdorff_distance(percentile=95)` on
//! CPU tensors, through tests/monai/monai_metrics.py) in the same run, best of N each, and
//! prints the ratio. Also times the distance transform alone on 182x218x182 and 256³ grids.
//!
//! `source scripts/env.sh && cargo run -p aiaa-metrics --example bench_metrics [-- REPEATS]`
//! (the dev profile optimizes this crate and its dependencies).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use aiaa_imaging::nifti;
use aiaa_metrics::{Classes, MetricOptions, edt, evaluate};
use common::*;
use serde_json::json;

fn best_of<T>(n: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..n {
        let t = Instant::now();
        last = Some(f());
        best = best.min(t.elapsed().as_secs_f64());
    }
    (best, last.expect("at least one run"))
}

fn main() {
    let repeats: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let threads = rayon::current_num_threads();
    let tmp = tempfile::tempdir().expect("temp dir");
    let ref_path = testdata().join("mni152/MNI152_mask.nii.gz");
    let reference = read(&ref_path);
    let mask = mask_of(&reference);
    let shifted = label_volume(&reference, bytes(&shift(&mask, reference.dims, [3, -2, 1])));
    let pred_path = tmp.path().join("mni_shifted.nii");
    nifti::write(&shifted, &pred_path).expect("write the shifted mask");
    let prediction = read(&pred_path);
    let opts = MetricOptions {
        nsd_tolerance_mm: 1.0,
        ..Default::default()
    };

    let (ours, m) = best_of(repeats, || {
        evaluate(&prediction, &reference, &Classes::Binary, &opts).expect("evaluate")
    });
    let c = &m.classes[0];
    println!(
        "grid {:?}, {} rayon threads, best of {repeats}",
        reference.dims, threads
    );
    println!(
        "ours : {:8.3} s  dice {:.6} nsd {:.6} hd95 {:.4} mm",
        ours, c.dice, c.nsd, c.hd95_mm
    );

    let manifest = json!({"pairs": [{
        "name": "mni_shifted", "prediction": pred_path, "reference": ref_path,
        "spacing": reference.geometry.spacing, "classes": null, "tolerance": 1.0,
    }]});
    let out = run_monai("bench", &manifest, tmp.path(), &[&repeats.to_string()]);
    let monai = out["pairs"][0]["seconds"].as_f64().expect("MONAI seconds");
    println!("MONAI: {monai:8.3} s");
    println!("ratio MONAI / ours: {:.1}x", monai / ours);

    // The distance transform alone: features = the surface of the MNI mask (182x218x182),
    // and a sphere's surface in a 256³ grid.
    let surface = aiaa_metrics::surface::edges(&mask, reference.dims, [true; 3]);
    let (t, _) = best_of(repeats, || {
        edt::squared_distance_to(&surface, reference.dims, [1.0; 3]).expect("edt")
    });
    println!("EDT 182x218x182:        {t:8.3} s");
    let n = 256usize;
    let sphere: Vec<bool> = (0..n * n * n)
        .map(|o| {
            let p = [o % n, (o / n) % n, o / (n * n)].map(|x| x as f64 - 127.5);
            let r = (p[0] * p[0] + p[1] * p[1] + p[2] * p[2]).sqrt();
            (r - 90.0).abs() < 0.5
        })
        .collect();
    let (t, _) = best_of(repeats, || {
        edt::squared_distance_to(&sphere, [n; 3], [0.9, 0.9, 2.0]).expect("edt")
    });
    println!("EDT 256^3 (anisotropic): {t:8.3} s");
}
