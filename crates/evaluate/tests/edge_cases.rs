//! The edge cases of docs/evaluate.md on small volumes and a model that reads the classes
//! off the image (so each prediction is known exactly): empty prediction, empty
//! reference, a class on one side only, grids that differ (a clear failure, or resampled
//! when asked), missing, corrupt and unlabelled cases (reported, skipped; fatal with
//! fail_fast); reports and events list the failures; `infer` runs unlabelled cases.

mod common;

use std::path::Path;

use aiaa_evaluate::{EvaluateOptions, Event, ModelSource, Options, run_evaluate, run_infer};
use aiaa_metrics::compare::Case;
use common::*;
use serde_json::json;

const N: usize = 16;

fn cube(lo: usize, hi: usize) -> impl Fn(usize, usize, usize) -> bool {
    move |i, j, k| (lo..hi).contains(&i) && (lo..hi).contains(&j) && (lo..hi).contains(&k)
}

/// Writes the cases and the datalist; returns the datalist's path.
fn setup(dir: &Path) -> std::path::PathBuf {
    let one = cube(2, 6);
    let two = cube(9, 13);
    let both = |i, j, k| {
        if one(i, j, k) {
            1
        } else if two(i, j, k) {
            2
        } else {
            0
        }
    };
    let only_one = |i, j, k| u8::from(one(i, j, k));
    let d = dir.join("data");
    write(&volume([N; 3], 1.0, both), &d.join("both.nii.gz"));
    write(&volume([N; 3], 1.0, both), &d.join("both_seg.nii.gz"));
    write(&volume([N; 3], 1.0, |_, _, _| 0), &d.join("empty_pred.nii.gz"));
    write(&volume([N; 3], 1.0, only_one), &d.join("empty_pred_seg.nii.gz"));
    write(&volume([N; 3], 1.0, only_one), &d.join("empty_ref.nii.gz"));
    write(&volume([N; 3], 1.0, |_, _, _| 0), &d.join("empty_ref_seg.nii.gz"));
    write(&volume([N; 3], 1.0, only_one), &d.join("one_side.nii.gz"));
    write(&volume([N; 3], 1.0, both), &d.join("one_side_seg.nii.gz"));
    std::fs::write(d.join("corrupt.nii.gz"), b"\x1f\x8b not a gzip stream at all").unwrap();
    write(&volume([N; 3], 1.0, only_one), &d.join("corrupt_seg.nii.gz"));
    // The prediction has 1 mm voxels, i in 4..12; the label 2 mm voxels, i in 2..6: the same
    // region, on another grid.
    let big = cube(4, 12);
    write(
        &volume([N; 3], 1.0, |i, j, k| u8::from(big(i, j, k))),
        &d.join("grid.nii.gz"),
    );
    let small = cube(2, 6);
    write(
        &volume([8; 3], 2.0, |i, j, k| u8::from(small(i, j, k))),
        &d.join("grid_seg.nii.gz"),
    );
    write(&volume([N; 3], 1.0, only_one), &d.join("nolabel.nii.gz"));
    let entries: Vec<serde_json::Value> = [
        "both",
        "empty_pred",
        "empty_ref",
        "one_side",
        "missing",
        "corrupt",
        "grid",
    ]
    .iter()
    .map(|n| json!({"image": format!("{n}.nii.gz"), "label": format!("{n}_seg.nii.gz")}))
    .chain([json!({"image": "nolabel.nii.gz"})])
    .collect();
    let list = dir.join("datalist.json");
    std::fs::write(&list, json!({"validation": entries}).to_string()).unwrap();
    list
}

fn options(dir: &Path, list: &Path, out: &str) -> Options {
    class_model(&dir.join("classes.pt"), 2);
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        json!({"model_format": "torchscript", "type": "segmentation", "labels": ["one", "two"],
               "inference": {"mode": "whole"}})
        .to_string(),
    )
    .unwrap();
    Options {
        source: ModelSource {
            model: Some(dir.join("classes.pt")),
            config,
            ..Default::default()
        },
        data_file: list.to_path_buf(),
        file_root: Some(dir.join("data")),
        output: dir.join(out),
        device: "cpu".into(),
        threads: 1,
        ..Default::default()
    }
}

#[test]
fn edge_cases_are_scored_or_reported_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let list = setup(dir.path());
    let opts = options(dir.path(), &list, "eval");
    let rec = Recorder::default();
    let s = run_evaluate(&opts, &EvaluateOptions::default(), &rec).unwrap();
    assert_eq!(
        (s.cases, s.succeeded, s.failed.len()),
        (8, 4, 4),
        "{:#?}",
        s.failed
    );

    let metrics = |i: usize| {
        s.results
            .iter()
            .find(|r| r.index == i)
            .unwrap()
            .metrics
            .clone()
            .unwrap()
    };
    // Both classes predicted exactly.
    let m = metrics(0);
    assert!(
        m.classes
            .iter()
            .all(|c| c.case == Case::BothPresent && c.dice == 1.0 && c.hd95_mm == 0.0)
    );
    // Empty prediction: class 1 missed entirely, class 2 absent from both.
    let m = metrics(1);
    assert_eq!(m.classes[0].case, Case::PredictionEmpty);
    assert_eq!((m.classes[0].dice, m.classes[0].nsd), (0.0, 0.0));
    assert!(m.classes[0].hd95_mm.is_infinite());
    assert_eq!((m.classes[1].case, m.classes[1].dice), (Case::BothEmpty, 1.0));
    // Empty reference.
    let m = metrics(2);
    assert_eq!(
        (m.classes[0].case, m.classes[0].dice),
        (Case::ReferenceEmpty, 0.0)
    );
    assert!(m.classes[0].hd95_mm.is_infinite());
    // Class 2 on the reference's side only; class 1 exact.
    let m = metrics(3);
    assert_eq!((m.classes[0].case, m.classes[0].dice), (Case::BothPresent, 1.0));
    assert_eq!(m.classes[1].case, Case::PredictionEmpty);

    // The failures, each with its stage and a message naming the problem.
    let stage = |i: usize| s.failed.iter().find(|f| f.index == i).unwrap();
    assert_eq!(stage(4).stage, "read");
    assert!(stage(4).error.contains("missing.nii.gz"), "{}", stage(4).error);
    assert_eq!(stage(5).stage, "read");
    assert!(stage(5).error.contains("corrupt.nii.gz"), "{}", stage(5).error);
    assert_eq!(stage(6).stage, "metrics");
    assert!(
        stage(6).error.contains("differs from reference grid") && stage(6).error.contains("resample"),
        "{}",
        stage(6).error
    );
    assert_eq!(stage(7).stage, "read");
    assert!(stage(7).error.contains("no label"), "{}", stage(7).error);

    // Events: started, then one per case, failures included.
    let ev = rec.events();
    assert_eq!(ev[0], Event::Started { total: 8 });
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::Done { .. })).count(), 4);
    assert_eq!(ev.iter().filter(|e| matches!(e, Event::Failed(_))).count(), 4);

    // The reports: 4 files x 2 classes, then the failures.
    let raw = std::fs::read_to_string(opts.output.join("mean_dice_raw_results.txt")).unwrap();
    let rows: Vec<&str> = raw.lines().filter(|l| !l.starts_with('#')).skip(1).collect();
    assert_eq!(rows.len(), 8, "{raw}");
    assert!(
        rows[2].starts_with("empty_pred.nii.gz\t1\tone\t0.000000\t0.000000\tinf\tprediction_empty"),
        "{raw}"
    );
    let failed: Vec<&str> = raw.lines().filter(|l| l.starts_with("# failed\t")).collect();
    assert_eq!(failed.len(), 4, "{raw}");
    assert!(
        failed[0].starts_with("# failed\tmissing.nii.gz\tread\t"),
        "{}",
        failed[0]
    );
    let summary = std::fs::read_to_string(opts.output.join("mean_dice_summary_results.txt")).unwrap();
    assert!(summary.contains("# failed: 4 of 8 files"), "{summary}");
    let sj: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(opts.output.join("mean_dice_summary_results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sj["failed"].as_array().unwrap().len(), 4);
    assert_eq!(sj["files_in_list"], 8);
    assert_eq!(sj["files"], 4);
    assert_eq!(sj["classes"][0]["cases"]["prediction_empty"], 1);
    // The predictions written are the model's: the default uint8 prediction writer.
    let pred = read(&opts.output.join("one_side/one_side_prediction.nii.gz"));
    assert_eq!(pred.voxel_type(), aiaa_imaging::VoxelType::U8);
    let one = cube(2, 6);
    let expect = volume([N; 3], 1.0, |i, j, k| u8::from(one(i, j, k)));
    assert_eq!(pred.voxels.to_f32_vec(), expect.voxels.to_f32_vec());
    // The run summary.
    let sum: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&s.summary_file).unwrap()).unwrap();
    assert_eq!(sum["succeeded"], 4);
    let share = s.throughput.model_wait_share.unwrap();
    assert!((0.0..=1.0).contains(&share), "{share}");

    // Mismatched grids, resampled when asked: the same region, so Dice 1.
    let mut opts2 = opts.clone();
    opts2.output = dir.path().join("eval_resampled");
    let eval = EvaluateOptions {
        resample_prediction: true,
        ..Default::default()
    };
    let s = run_evaluate(&opts2, &eval, &Recorder::default()).unwrap();
    let grid = s
        .results
        .iter()
        .find(|r| r.index == 6)
        .expect("the grid case is evaluated");
    let m = grid.metrics.as_ref().unwrap();
    assert!(m.prediction_resampled);
    assert_eq!(m.classes[0].dice, 1.0, "{m:?}");
    assert_eq!(s.failed.len(), 3);

    // fail_fast: the first failure stops the run, naming the case.
    let mut opts3 = opts.clone();
    opts3.output = dir.path().join("eval_ff");
    opts3.fail_fast = true;
    let e = run_evaluate(&opts3, &EvaluateOptions::default(), &Recorder::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--fail_fast") && e.contains(".nii.gz"), "{e}");

    // infer needs no label: the unlabelled case goes through; the grid case is fine too.
    let mut opts4 = opts.clone();
    opts4.output = dir.path().join("infer");
    let s = run_infer(&opts4, &Recorder::default()).unwrap();
    assert_eq!((s.succeeded, s.failed.len()), (6, 2), "{:#?}", s.failed);
    assert!(opts4.output.join("nolabel/nolabel_prediction.nii.gz").is_file());
    assert!(!opts4.output.join("mean_dice_raw_results.txt").exists());
    assert!(opts4.output.join("aiaa_infer_summary.json").is_file());
}

#[test]
fn bad_options_and_lists_name_the_flag_or_file() {
    let dir = tempfile::tempdir().unwrap();
    let list = setup(dir.path());
    let mut opts = options(dir.path(), &list, "o");
    opts.data_list_key = "testing".into();
    let e = run_infer(&opts, &Recorder::default()).unwrap_err().to_string();
    assert!(e.contains("datalist.json") && e.contains("\"testing\""), "{e}");
    let mut opts = options(dir.path(), &list, "o");
    opts.queue_depth = 0;
    let e = run_infer(&opts, &Recorder::default()).unwrap_err().to_string();
    assert!(e.starts_with("--queue_depth"), "{e}");
    let opts = options(dir.path(), &list, "o");
    let eval = EvaluateOptions {
        nsd_tolerance_mm: -1.0,
        ..Default::default()
    };
    let e = run_evaluate(&opts, &eval, &Recorder::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("--nsd_tolerance_mm"), "{e}");
    // Two entries with one file name would overwrite each other's outputs.
    std::fs::create_dir_all(dir.path().join("data/sub")).unwrap();
    std::fs::copy(
        dir.path().join("data/both.nii.gz"),
        dir.path().join("data/sub/both.nii.gz"),
    )
    .unwrap();
    std::fs::write(
        &list,
        json!({"validation": [{"image": "both.nii.gz"}, {"image": "sub/both.nii.gz"}]}).to_string(),
    )
    .unwrap();
    let e = run_infer(&opts, &Recorder::default()).unwrap_err().to_string();
    assert!(e.contains("sub/both.nii.gz") && e.contains("rename"), "{e}");
}

#[test]
fn annotation_cases_without_usable_clicks_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let blob = cube(5, 11);
    let image = volume([N; 3], 1.0, |i, j, k| u8::from(blob(i, j, k)));
    write(&image, &d.join("ok.nii.gz"));
    write(&image, &d.join("ok_seg.nii.gz"));
    write(&image, &d.join("empty.nii.gz"));
    write(&volume([N; 3], 1.0, |_, _, _| 0), &d.join("empty_seg.nii.gz"));
    write(&image, &d.join("grid.nii.gz"));
    let half = cube(3, 5);
    write(
        &volume([8; 3], 2.0, |i, j, k| u8::from(half(i, j, k))),
        &d.join("grid_seg.nii.gz"),
    );
    write(&image, &d.join("nolabel.nii.gz"));
    let list = dir.path().join("list.json");
    std::fs::write(
        &list,
        json!({"validation": [
            {"image": "ok.nii.gz", "label": "ok_seg.nii.gz"},
            {"image": "empty.nii.gz", "label": "empty_seg.nii.gz"},
            {"image": "grid.nii.gz", "label": "grid_seg.nii.gz"},
            {"image": "nolabel.nii.gz"}
        ]})
        .to_string(),
    )
    .unwrap();
    heatmap_model(&dir.path().join("balls.pt"));
    let config = dir.path().join("annotation.json");
    std::fs::write(
        &config,
        json!({"model_path": "balls.pt", "type": "annotation", "roi": [16, 16, 16], "padding": 2.0,
               "pre_transforms": [{"name": "transforms.AddExtremePointsChannel", "image_field": "image",
                                   "label_field": "label", "sigma": 1, "pert": 0}]})
        .to_string(),
    )
    .unwrap();
    let mut opts = Options {
        source: ModelSource {
            config,
            ..Default::default()
        },
        data_file: list,
        file_root: Some(d.clone()),
        output: dir.path().join("out"),
        device: "cpu".into(),
        threads: 1,
        ..Default::default()
    };
    let s = run_infer(&opts, &Recorder::default()).unwrap();
    assert_eq!(s.engine, "Dextr3dCroppedEngine");
    assert_eq!(s.succeeded, 1, "{:#?}", s.failed);
    let f: Vec<(usize, &str, &str)> = s
        .failed
        .iter()
        .map(|f| (f.index, f.stage, f.error.as_str()))
        .collect();
    assert_eq!((f[0].0, f[0].1), (1, "clicks"));
    assert!(f[0].2.contains("no foreground"), "{}", f[0].2);
    assert_eq!((f[1].0, f[1].1), (2, "clicks"));
    assert!(
        f[1].2.contains("another grid") && f[1].2.contains("--resample_prediction"),
        "{}",
        f[1].2
    );
    assert_eq!((f[2].0, f[2].1), (3, "read"));
    assert!(f[2].2.contains("no label"), "{}", f[2].2);
    // The clicks lie on the blob's faces and the balls around them are the prediction.
    let r = &s.results[0];
    assert!(
        r.points
            .as_ref()
            .unwrap()
            .iter()
            .all(|p| p.iter().all(|&x| (5..11).contains(&x)))
    );
    let pred = read(&r.outputs[0]);
    for p in r.points.as_ref().unwrap() {
        assert!(pred.get(p[0], p[1], p[2], 0) > 0.0, "{p:?}");
    }
    // With resampling the grid case's label is brought onto the image grid for the clicks.
    opts.output = dir.path().join("out2");
    let eval = EvaluateOptions {
        resample_prediction: true,
        ..Default::default()
    };
    let s = run_evaluate(&opts, &eval, &Recorder::default()).unwrap();
    let grid = s
        .results
        .iter()
        .find(|r| r.index == 2)
        .expect("evaluated after resampling");
    // Label voxels 3..5 of 2 mm are image voxels 6..10 (centres 6, 8 mm -> 5.5..9.5).
    let pts = grid.points.as_ref().unwrap();
    assert!(
        pts.iter().all(|p| p.iter().all(|&x| (5..=10).contains(&x))),
        "{pts:?}"
    );
    assert!(grid.metrics.as_ref().unwrap().prediction_resampled);
}
