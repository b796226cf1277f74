//! Agreement with MONAI 1.6.1 on real brain masks (testdata/mni152, testdata/robex): the
//! MNI152 mask against eroded, dilated, shifted and resampled variants of itself, on its 1 mm
//! grid and on an anisotropic 1 x 1 x 2.5 mm grid, a three-class label volume, and ROBEX's
//! atlas mask against its own dilated and eroded masks (1.5 mm). A label pair with one class
//! missing from the prediction and one missing from both checks that MONAI still gives the
//! NaN/0 values that `aiaa_metrics::compare` documents next to our own choices. Variants are written with
//! aiaa-imaging's NIfTI writer; both sides read the same files (we with aiaa-imaging,
//! MONAI's script with nibabel) and use the same spacing.
//!
//! Required: Dice within 1e-6 (absolute), NSD and HD95 within 1e-3 (relative).

mod common;

use std::path::{Path, PathBuf};

use aiaa_imaging::resample::{Interpolation, resample_like, resample_to_spacing};
use aiaa_imaging::{Volume, nifti};
use aiaa_metrics::{Case, Classes, MetricOptions, evaluate};
use common::*;
use serde_json::json;

struct Pair {
    name: String,
    /// What we evaluate (with `resample` set it may be on another grid).
    prediction: PathBuf,
    /// What MONAI evaluates (the prediction already on the reference grid).
    monai_prediction: PathBuf,
    reference: PathBuf,
    classes: Option<Vec<u32>>,
    tolerance: f64,
    resample: bool,
}

fn pair(name: &str, prediction: &Path, reference: &Path, tolerance: f64) -> Pair {
    Pair {
        name: name.into(),
        prediction: prediction.into(),
        monai_prediction: prediction.into(),
        reference: reference.into(),
        classes: None,
        tolerance,
        resample: false,
    }
}

fn write(dir: &Path, name: &str, v: &Volume) -> PathBuf {
    let p = dir.join(name);
    nifti::write(v, &p).unwrap();
    p
}

/// Builds the variants (see the module docs) in `dir`.
fn pairs(dir: &Path) -> Vec<Pair> {
    let data = testdata();
    let mni_path = data.join("mni152/MNI152_mask.nii.gz");
    let mni = read(&mni_path);
    let (dims, sp) = (mni.dims, mni.geometry.spacing);
    let mask = mask_of(&mni);
    let mut out = vec![pair("mni_identical", &mni_path, &mni_path, 1.0)];

    let v = |name: &str, m: &[bool], like: &Volume| write(dir, name, &label_volume(like, bytes(m)));
    let eroded = v("mni_eroded.nii", &erode(&mask, dims, sp, 2.0), &mni);
    out.push(pair("mni_eroded_2mm", &eroded, &mni_path, 2.0));
    let dilated = v("mni_dilated.nii", &dilate(&mask, dims, sp, 3.0), &mni);
    out.push(pair("mni_dilated_3mm", &dilated, &mni_path, 2.5));
    let shifted = v("mni_shifted.nii", &shift(&mask, dims, [3, -2, 1]), &mni);
    out.push(pair("mni_shifted_3_-2_1", &shifted, &mni_path, 1.0));

    // Resampled to 2.5 mm: we resample it back (resample_prediction), MONAI gets the same
    // resampling written out.
    let low = resample_to_spacing(&mni, [2.5; 3], Interpolation::Nearest).unwrap();
    let low_path = write(dir, "mni_2p5mm.nii", &low);
    let back = write(
        dir,
        "mni_2p5mm_back.nii",
        &resample_like(&low, &mni, Interpolation::Nearest).unwrap(),
    );
    out.push(Pair {
        monai_prediction: back,
        resample: true,
        ..pair("mni_resampled_2.5mm", &low_path, &mni_path, 1.0)
    });

    // Anisotropic grid: 1 x 1 x 2.5 mm.
    let an = resample_to_spacing(&mni, [1.0, 1.0, 2.5], Interpolation::Nearest).unwrap();
    let (adims, asp) = (an.dims, an.geometry.spacing);
    let amask = mask_of(&an);
    let an_path = v("mni_aniso.nii", &amask, &an);
    let a_er = v("mni_aniso_eroded.nii", &erode(&amask, adims, asp, 2.5), &an);
    out.push(pair("aniso_eroded_2.5mm", &a_er, &an_path, 2.5));
    let a_di = v("mni_aniso_dilated.nii", &dilate(&amask, adims, asp, 2.0), &an);
    out.push(pair("aniso_dilated_2mm", &a_di, &an_path, 1.5));
    let a_sh = v("mni_aniso_shifted.nii", &shift(&amask, adims, [2, -1, 1]), &an);
    out.push(pair("aniso_shifted_2_-1_1", &a_sh, &an_path, 2.5));

    // Three classes: left/right halves of the brain, and a front part (label 3).
    let [nx, ny, _] = dims;
    let labels: Vec<u8> = (0..mask.len())
        .map(|o| {
            let (i, j) = (o % nx, (o / nx) % ny);
            match (mask[o], j > 150, i < nx / 2) {
                (false, _, _) => 0,
                (true, true, _) => 3,
                (true, false, true) => 1,
                (true, false, false) => 2,
            }
        })
        .collect();
    let lab_ref = write(dir, "mni_labels.nii", &label_volume(&mni, labels.clone()));
    let lab_pred = write(
        dir,
        "mni_labels_shifted.nii",
        &label_volume(&mni, shift(&labels, dims, [2, 1, -1])),
    );
    out.push(Pair {
        classes: Some(vec![1, 2, 3]),
        ..pair("mni_labels_shifted", &lab_pred, &lab_ref, 2.0)
    });
    // Class 3 missing from the prediction, class 4 from both: the empty-class table of
    // aiaa_metrics::compare documents MONAI's values for these.
    let no3: Vec<u8> = shift(&labels, dims, [2, 1, -1])
        .iter()
        .map(|&l| if l == 3 { 0 } else { l })
        .collect();
    let lab_no3 = write(dir, "mni_labels_no3.nii", &label_volume(&mni, no3));
    out.push(Pair {
        classes: Some(vec![1, 2, 3, 4]),
        ..pair("mni_labels_missing", &lab_no3, &lab_ref, 2.0)
    });

    // ROBEX's own atlas masks (1.5 mm).
    let rb = data.join("robex");
    for (variant, tol) in [("dilated", 20.0), ("eroded", 5.0)] {
        out.push(pair(
            &format!("robex_atlas_{variant}"),
            &rb.join(format!("atlas_mask_{variant}.nii.gz")),
            &rb.join("atlas_mask.nii.gz"),
            tol,
        ));
    }
    out
}

fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / b.abs().max(1e-12)
    }
}

#[test]
fn agrees_with_monai_on_real_masks() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = pairs(tmp.path());

    // Ours.
    let ours: Vec<(Vec<aiaa_metrics::ClassMetrics>, [f64; 3])> = pairs
        .iter()
        .map(|p| {
            let (pred, reference) = (read(&p.prediction), read(&p.reference));
            let classes = p.classes.clone().map_or(Classes::Binary, Classes::Labels);
            let opts = MetricOptions {
                nsd_tolerance_mm: p.tolerance,
                resample_prediction: p.resample,
                ..Default::default()
            };
            let m = evaluate(&pred, &reference, &classes, &opts).unwrap();
            assert_eq!(m.prediction_resampled, p.resample, "{}", p.name);
            (m.classes, reference.geometry.spacing)
        })
        .collect();

    // MONAI's.
    let manifest = json!({
        "pairs": pairs.iter().zip(&ours).map(|(p, (_, sp))| json!({
            "name": p.name,
            "prediction": p.monai_prediction,
            "reference": p.reference,
            "spacing": sp,
            "classes": p.classes,
            "tolerance": p.tolerance,
        })).collect::<Vec<_>>()
    });
    let monai = run_monai("compare", &manifest, tmp.path(), &[]);

    let mut worst = [0.0f64; 3];
    let mut empty_cases = 0;
    let mut failures = Vec::new();
    println!(
        "{:<24} {:>5} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}  (ours / MONAI)",
        "pair", "class", "dice", "", "nsd", "", "hd95", ""
    );
    for ((p, (mine, sp)), theirs) in pairs.iter().zip(&ours).zip(monai["pairs"].as_array().unwrap()) {
        assert_eq!(theirs["name"], p.name.as_str());
        // nibabel read the same spacing as aiaa-imaging.
        for zooms in theirs["nibabel_zooms"].as_array().unwrap() {
            for (a, z) in zooms.as_array().unwrap().iter().enumerate() {
                assert!(
                    (z.as_f64().unwrap() - sp[a]).abs() < 1e-5,
                    "{}: zooms {zooms} vs {sp:?}",
                    p.name
                );
            }
        }
        for (m, t) in mine.iter().zip(theirs["classes"].as_array().unwrap()) {
            if m.case != Case::BothPresent {
                // Our decided values differ from MONAI's here; check MONAI's are still the
                // ones the docs state (null = NaN).
                let monai = [&t["dice"], &t["nsd"], &t["hd95"]].map(|v| v.as_f64());
                let documented = match m.case {
                    Case::BothEmpty => [None, None, None],
                    Case::PredictionEmpty => [Some(0.0), Some(0.0), None],
                    Case::ReferenceEmpty => [None, Some(0.0), None],
                    Case::BothPresent => unreachable!(),
                };
                println!(
                    "{:<24} {:>5} {:?}: MONAI gives {monai:?}",
                    p.name, m.class, m.case
                );
                assert_eq!(monai, documented, "{} class {}", p.name, m.class);
                empty_cases += 1;
                continue;
            }
            let (td, tn, th) = (
                t["dice"].as_f64().unwrap(),
                t["nsd"].as_f64().unwrap(),
                t["hd95"].as_f64().unwrap(),
            );
            println!(
                "{:<24} {:>5} {:>10.6} {:>10.6} {:>10.6} {:>10.6} {:>10.4} {:>10.4}",
                p.name, m.class, m.dice, td, m.nsd, tn, m.hd95_mm, th
            );
            let d = [(m.dice - td).abs(), rel(m.nsd, tn), rel(m.hd95_mm, th)];
            for a in 0..3 {
                worst[a] = worst[a].max(d[a]);
            }
            if d[0] > 1e-6 || d[1] > 1e-3 || d[2] > 1e-3 {
                failures.push(format!("{} class {}: differences {d:?}", p.name, m.class));
            }
            if p.name != "mni_identical" && p.name != "mni_labels_missing" {
                assert!(m.hd95_mm > 0.0 && m.nsd < 1.0, "{}: a trivial comparison", p.name);
            }
        }
    }
    println!(
        "largest differences: dice {:.3e} (abs), nsd {:.3e} (rel), hd95 {:.3e} (rel)",
        worst[0], worst[1], worst[2]
    );
    assert_eq!(
        empty_cases, 2,
        "mni_labels_missing: class 3 empty in the prediction, class 4 on both sides"
    );
    assert!(
        failures.is_empty(),
        "disagreements with MONAI:\n{}",
        failures.join("\n")
    );
}
