//! Annotation (DEXTR 3D) models: the seed's own evaluation config
//! (examples/configs/config_eval_aiaa_Task09_Spleen.json) runs unchanged with the fixture
//! network of scripts/models/dextr3d_fixture.py (foreground = balls around the clicks) on
//! MNI152 and its brain mask. Checks the simulated clicks (exact, then perturbed and
//! seeded), the seed's writers (names, dtypes, the heat-map), and that the prediction is
//! the server engine's answer to the same clicks, voxel for voxel.

mod common;

use std::path::Path;

use aiaa_engines::device::Devices;
use aiaa_engines::engines::{EngineSpec, Timings, build};
use aiaa_evaluate::{EvaluateOptions, ModelSource, Options, run_evaluate, run_infer};
use aiaa_imaging::VoxelType;
use common::*;
use serde_json::{Map, json};

fn options(dir: &Path, out: &str) -> Options {
    let list = dir.join("datalist.json");
    std::fs::write(
        &list,
        json!({"validation": [{"image": "mni152/MNI152_T1.nii.gz", "label": "mni152/MNI152_mask.nii.gz"}]})
            .to_string(),
    )
    .unwrap();
    Options {
        source: ModelSource {
            model: Some(dir.join("fixture.pt")),
            config: repo_root().join("examples/configs/config_eval_aiaa_Task09_Spleen.json"),
            ..Default::default()
        },
        data_file: list,
        file_root: Some(testdata()),
        output: dir.join(out),
        device: "cpu".into(),
        ..Default::default()
    }
}

#[test]
fn simulated_clicks_reach_the_engine_and_the_seeds_writers_write() {
    let dir = tempfile::tempdir().unwrap();
    dextr3d_fixture(&dir.path().join("fixture.pt"));
    let opts = options(dir.path(), "eval");
    let s = run_evaluate(&opts, &EvaluateOptions::default(), &Recorder::default()).unwrap();
    assert!(s.failed.is_empty(), "{:#?}", s.failed);
    assert_eq!(
        s.engine, "Dextr3dCroppedEngine",
        "chosen from the extreme-points channel"
    );
    assert!(s.notes.iter().any(|n| n.contains("LoadNifty")), "{:?}", s.notes);
    let r = &s.results[0];

    // The clicks are the label's extreme points (no perturbation).
    let label = read(&testdata().join("mni152/MNI152_mask.nii.gz"));
    let exact: Vec<[usize; 3]> = aiaa_transforms::extreme::extreme_points(&label).unwrap().to_vec();
    let points = r.points.clone().unwrap();
    assert_eq!(points, exact);

    // The seed's writers: <output>/<name>/<name>_<key>.nii.gz, in the config's dtypes.
    let out = opts.output.join("MNI152_T1");
    let file = |k: &str| out.join(format!("MNI152_T1_{k}.nii.gz"));
    assert_eq!(
        r.outputs,
        ["prediction", "label", "image", "extreme_points"]
            .map(file)
            .to_vec()
    );
    let pred = read(&file("prediction"));
    assert_eq!(pred.voxel_type(), VoxelType::F32);
    let written_label = read(&file("label"));
    assert_eq!(written_label.voxel_type(), VoxelType::U8);
    assert_eq!(foreground(&written_label), foreground(&label));
    let image = read(&testdata().join("mni152/MNI152_T1.nii.gz"));
    assert_eq!(
        read(&file("image")).voxels.to_f32_vec(),
        image.voxels.cast(VoxelType::F32).to_f32_vec()
    );
    let heat = read(&file("extreme_points"));
    let h = heat.voxels.to_f32_vec();
    let at = |v: &[f32], p: [usize; 3]| v[p[0] + image.dims[0] * (p[1] + image.dims[1] * p[2])];
    for p in &points {
        assert_eq!(at(&h, *p), 1.0, "the heat-map peaks at the click {p:?}");
    }
    assert_eq!(at(&h, [0, 0, 0]), -1.0);

    // The server's engine, loaded from the same config as an admin request loads it, given
    // the same clicks, returns the same mask.
    let prepared = aiaa_evaluate::model::prepare(&opts.source).unwrap();
    let devices = Devices::start(&[tch::Device::Cpu], 0).unwrap();
    let text = serde_json::to_string(&prepared.config.json).unwrap();
    let roots = [dir.path().to_path_buf()];
    let spec = EngineSpec::confined("fixture", &text, "", vec![], dir.path(), &roots).unwrap();
    let params = Map::from_iter([("points".to_string(), json!(points))]);
    let mask = build(&spec, &devices)
        .unwrap()
        .infer(&image, &params, &mut Timings::default())
        .unwrap()
        .mask;
    assert_eq!(pred.voxels.to_f32_vec(), mask.voxels.to_f32_vec());
    let fg = foreground(&pred);
    let fgv: Vec<f32> = fg.iter().map(|&b| f32::from(u8::from(b))).collect();
    for p in &points {
        assert_eq!(at(&fgv, *p), 1.0, "foreground at the click {p:?}");
    }
    let d = r.metrics.as_ref().unwrap().classes[0].dice;
    assert!(
        d > 0.0 && d < 0.9,
        "balls around six points are not a brain: Dice {d}"
    );
}

#[test]
fn perturbed_clicks_are_bounded_and_reproducible() {
    let dir = tempfile::tempdir().unwrap();
    dextr3d_fixture(&dir.path().join("fixture.pt"));
    let label = read(&testdata().join("mni152/MNI152_mask.nii.gz"));
    let exact = aiaa_transforms::extreme::extreme_points(&label).unwrap();
    let mut opts = options(dir.path(), "a");
    // Only the prediction: the seed's writers would rewrite the big image each time.
    let config = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&opts.source.config).unwrap()).unwrap();
    json["writers"] =
        json!([{"applied_key": "prediction", "name": "writers.WriteNiftyResults", "dtype": "uint8"}]);
    std::fs::write(&config, json.to_string()).unwrap();
    opts.source.config = config;
    opts.pert = 3.0;
    opts.seed = 5;
    let a = run_infer(&opts, &Recorder::default()).unwrap().results[0]
        .points
        .clone()
        .unwrap();
    assert_ne!(a, exact.to_vec());
    for (p, e) in a.iter().zip(exact) {
        for ax in 0..3 {
            assert!((p[ax] as i64 - e[ax] as i64).abs() <= 3, "{p:?} vs {e:?}");
        }
    }
    opts.output = dir.path().join("b");
    opts.model_workers = 3;
    let b = run_infer(&opts, &Recorder::default()).unwrap().results[0]
        .points
        .clone()
        .unwrap();
    assert_eq!(a, b, "the same seed gives the same clicks");
    opts.output = dir.path().join("c");
    opts.seed = 6;
    let c = run_infer(&opts, &Recorder::default()).unwrap().results[0]
        .points
        .clone()
        .unwrap();
    assert_ne!(a, c, "another seed, other clicks");
}
