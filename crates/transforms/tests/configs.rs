//! The seed's example configs (`examples/configs/`) parse and run on the MNI152 T1 and its
//! brain mask, giving the shapes and value ranges the configs imply.

mod common;

use std::path::{Path, PathBuf};

use aiaa_imaging::io::read_volume;
use aiaa_imaging::{ReadOptions, Volume, VoxelType, Voxels};
use aiaa_transforms::channels::stack;
use aiaa_transforms::{Data, Image, Kind, Pipeline};
use common::values;
use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn config(name: &str) -> Value {
    let text = std::fs::read_to_string(root().join("examples/configs").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn mni() -> (PathBuf, PathBuf) {
    let d = std::env::var_os("AIAA_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("testdata"))
        .join("mni152");
    let (t1, mask) = (d.join("MNI152_T1.nii.gz"), d.join("MNI152_mask.nii.gz"));
    assert!(
        t1.exists() && mask.exists(),
        "MNI152 test data missing in {}: run scripts/fetch-test-data.sh",
        d.display()
    );
    (t1, mask)
}

fn range(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)))
}

fn entry(t1: &Path, mask: &Path) -> Data {
    Data::from_json(
        "",
        &json!({"image": t1.to_str().unwrap(), "label": mask.to_str().unwrap()}),
    )
    .unwrap()
}

/// A stand-in network output on the image grid: softmax-like `[1 - fg, fg]`.
fn fake_model(d: &mut Data) {
    let lab = d.volume("label").unwrap().clone();
    let fg: Vec<f32> = values(&lab, 0)
        .iter()
        .map(|&x| if x > 0.0 { 0.9 } else { 0.1 })
        .collect();
    let bg: Vec<f32> = fg.iter().map(|x| 1.0 - x).collect();
    let mk = |v| Volume::scalar(lab.dims, lab.geometry, Voxels::F32(v)).unwrap();
    let model = stack(&[mk(bg), mk(fg)]).unwrap();
    d.insert_image("model", Image::new(model, Kind::Intensity).with_channel_dim());
}

#[test]
fn every_example_config_builds() {
    let lists: [(&str, &[&[&str]]); 4] = [
        (
            "config_aiaa_annotation_spleen.json",
            &[&["pre_transforms"], &["post_transforms"], &["writers"]],
        ),
        (
            "config_train_Task09_Spleen.json",
            &[&["train", "pre_transforms"], &["validate", "pre_transforms"]],
        ),
        (
            "config_infer_aiaa_Task09_Spleen.json",
            &[&["pre_transforms"], &["post_transforms"], &["writers"]],
        ),
        (
            "config_eval_aiaa_Task09_Spleen.json",
            &[&["pre_transforms"], &["post_transforms"], &["writers"]],
        ),
    ];
    for (file, paths) in lists {
        let c = config(file);
        for path in paths {
            let p = Pipeline::from_config(&c, path, 0).unwrap();
            assert!(!p.is_empty(), "{file} {path:?}");
        }
    }
}

#[test]
fn train_config_on_mni152() {
    let (t1, mask) = mni();
    let c = config("config_train_Task09_Spleen.json");
    let train = Pipeline::from_config(&c, &["train", "pre_transforms"], 2019).unwrap();
    let mut first = None;
    for index in 0..2 {
        let mut d = entry(&t1, &mask);
        train.run(&mut d, index).unwrap();
        let im = d.image("image").unwrap();
        assert_eq!(
            (im.vol.dims, im.vol.channels, im.channel_dim),
            ([128, 128, 128], 2, true)
        );
        let (lo, hi) = range(&values(&im.vol, 0));
        // T1 >= 0, scaled by 1/1024 and clipped to [0, 1], then scaled by 1 +- 0.2.
        assert!(lo >= 0.0 && hi <= 1.2 + 1e-6 && hi > 0.5, "{lo} {hi}");
        assert_eq!(range(&values(&im.vol, 1)), (-1.0, 1.0));
        let lab = d.volume("label").unwrap();
        assert_eq!((lab.dims, lab.voxel_type()), ([128, 128, 128], VoxelType::U8));
        let fg = values(lab, 0).iter().filter(|&&x| x == 1.0).count();
        assert!(fg > 128 * 128 * 128 / 4, "the brain fills the crop: {fg}");
        if let Some(f) = &first {
            assert_ne!(f, &d, "two samples draw differently");
        }
        first = Some(d);
    }
    let validate = Pipeline::from_config(&c, &["validate", "pre_transforms"], 0).unwrap();
    let mut d = entry(&t1, &mask);
    validate.run(&mut d, 0).unwrap();
    let im = d.image("image").unwrap();
    assert_eq!((im.vol.dims, im.vol.channels), ([128, 128, 128], 2));
    let (lo, hi) = range(&values(&im.vol, 0));
    assert!(lo >= 0.0 && hi <= 1.0, "{lo} {hi}");
}

#[test]
fn annotation_model_config_on_mni152() {
    let (t1, mask) = mni();
    let c = config("config_aiaa_annotation_spleen.json");
    // The server hands the engine decoded volumes (no loader in a model config).
    let opts = ReadOptions::default();
    let mut d = Data::named("MNI152_T1.nii.gz");
    d.insert_image(
        "image",
        Image::new(read_volume(&t1, &opts).unwrap(), Kind::Intensity),
    );
    d.insert_image(
        "label",
        Image::new(read_volume(&mask, &opts).unwrap(), Kind::Label),
    );
    let dims = d.volume("image").unwrap().dims;
    Pipeline::from_config(&c, &["pre_transforms"], 0)
        .unwrap()
        .run(&mut d, 0)
        .unwrap();
    let im = d.image("image").unwrap();
    assert_eq!((im.vol.dims, im.vol.channels), (dims, 2));
    let nz: Vec<f64> = values(&im.vol, 0).into_iter().filter(|&x| x != 0.0).collect();
    let m = nz.iter().sum::<f64>() / nz.len() as f64;
    let sd = (nz.iter().map(|x| (x - m).powi(2)).sum::<f64>() / nz.len() as f64).sqrt();
    assert!(m.abs() < 1e-3 && (sd - 1.0).abs() < 1e-3, "{m} {sd}");
    assert_eq!(range(&values(&im.vol, 1)), (-1.0, 1.0));
    fake_model(&mut d);
    Pipeline::from_config(&c, &["post_transforms"], 0)
        .unwrap()
        .run(&mut d, 0)
        .unwrap();
    assert_eq!(d.image("prediction").unwrap().vol.channels, 1);
    let out = tempfile::tempdir().unwrap();
    d.output_dir = Some(out.path().to_path_buf());
    Pipeline::from_config(&c, &["writers"], 0)
        .unwrap()
        .run(&mut d, 0)
        .unwrap();
    let p = read_volume(&out.path().join("MNI152_T1/MNI152_T1_prediction.nii.gz"), &opts).unwrap();
    assert_eq!((p.dims, p.voxel_type()), (dims, VoxelType::F32));
}

#[test]
fn inference_and_evaluation_configs_on_mni152() {
    let (t1, mask) = mni();
    for file in [
        "config_infer_aiaa_Task09_Spleen.json",
        "config_eval_aiaa_Task09_Spleen.json",
    ] {
        let c = config(file);
        let mut d = entry(&t1, &mask);
        Pipeline::from_config(&c, &["pre_transforms"], 0)
            .unwrap()
            .run(&mut d, 0)
            .unwrap();
        assert_eq!(d.name, "MNI152_T1");
        let im = d.image("image").unwrap();
        assert_eq!((im.vol.dims, im.vol.channels), ([128, 128, 128], 2));
        let (lo, hi) = range(&values(&im.vol, 0));
        assert!(lo >= 0.0 && hi <= 1.0 && hi > 0.5, "{lo} {hi}");
        assert_eq!(range(&values(&im.vol, 1)), (-1.0, 1.0));
        fake_model(&mut d);
        Pipeline::from_config(&c, &["post_transforms"], 0)
            .unwrap()
            .run(&mut d, 0)
            .unwrap();
        for k in ["prediction", "image", "extreme_points"] {
            let i = d.image(k).unwrap();
            assert_eq!(
                (i.vol.dims, i.vol.channels, i.channel_dim),
                ([128, 128, 128], 1, false),
                "{k}"
            );
        }
        let out = tempfile::tempdir().unwrap();
        d.output_dir = Some(out.path().to_path_buf());
        Pipeline::from_config(&c, &["writers"], 0)
            .unwrap()
            .run(&mut d, 0)
            .unwrap();
        let opts = ReadOptions::default();
        for (k, ty) in [
            ("prediction", VoxelType::F32),
            ("label", VoxelType::U8),
            ("image", VoxelType::F32),
            ("extreme_points", VoxelType::F32),
        ] {
            let v = read_volume(&out.path().join(format!("MNI152_T1/MNI152_T1_{k}.nii.gz")), &opts).unwrap();
            assert_eq!((v.dims, v.voxel_type()), ([128, 128, 128], ty), "{file} {k}");
        }
    }
}
