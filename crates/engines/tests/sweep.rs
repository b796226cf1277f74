//! The segmentation engine's sliding window, run whole on the device thread (`Net::sweep`:
//! windows, blending, only the label channel handed back, the network's axis order swapped
//! back by `tensor::swap_first_last`), labels exactly as the window run step by step from
//! the request's thread with every channel blended (`SlidingWindow::run` over
//! `Net::forward`, itself checked against MONAI in aiaa-nets' parity tests): deepbet's
//! network on the real MNI152 head, with `output_channel` and with the argmax.

use aiaa_engines::engines::grid::{Interp, resize};
use aiaa_engines::engines::{Timings, sample, take_image, transforms};
use aiaa_engines::tensor::{Layout, labels, to_tensor, to_volume};
use aiaa_engines::{Devices, EngineSpec, Policy, build, read_pool};
use aiaa_imaging::ReadOptions;
use aiaa_imaging::io::read_volume;
use aiaa_nets::sliding_window::{BlendMode, SlidingWindow};
use aiaa_testdata::{repo_root, testdata};
use serde_json::{Map, json};
use tch::Device;

/// deepbet's shipped config made a plain sliding-window segmenter: no locator, no
/// reorientation and no post-processing (so the labels are the network's own), windows of
/// 96³ with a quarter overlap, Gaussian blending; `output_channel` as given.
fn sliding_spec(output_channel: Option<usize>) -> EngineSpec {
    testdata(); // deepbet's networks are linked into models/ with the test data
    let pool = read_pool(&repo_root().join("models/engine_pool.json")).unwrap();
    let entry = pool.iter().find(|e| e.name == "segmentation_mri_brain").unwrap();
    let mut spec = EngineSpec::from_pool_entry(entry).unwrap();
    let c = &mut spec.config.json;
    c.remove("locator");
    c.remove("post_transforms");
    c.insert(
        "pre_transforms".into(),
        json!([{"name": "transforms.ScaleIntensityRangePercentiles", "fields": "image",
                "lower": 0.5, "upper": 99.5, "b_min": 0.0, "b_max": 1.0, "clip": true}]),
    );
    c.insert(
        "inference".into(),
        json!({"mode": "sliding_window", "roi_size": [96, 96, 96], "overlap": 0.25,
               "blend": "gaussian", "sw_batch_size": 1}),
    );
    match output_channel {
        Some(ch) => c.insert("output_channel".into(), json!(ch)),
        None => c.remove("output_channel"),
    };
    let json = serde_json::Value::Object(spec.config.json.clone()).to_string();
    spec.config = aiaa_engines::ModelConfig::parse(
        &json,
        "sweep test",
        &repo_root().join("models/segmentation_mri_brain"),
    )
    .unwrap();
    spec
}

#[test]
fn the_device_threads_sweep_labels_as_the_step_by_step_window_on_mni152() {
    let head = read_volume(
        &testdata().join("mni152/MNI152_T1.nii.gz"),
        &ReadOptions::default(),
    )
    .unwrap();
    // 8 windows of 96³ over 160×176×160 (every axis needs two).
    let image = resize(&head, [160, 176, 160], Interp::Linear).unwrap();
    let devices = Devices::start_with(&[Device::Cpu], 2, Policy::Freeze).unwrap();
    for output_channel in [Some(1), None] {
        let spec = sliding_spec(output_channel);
        let engine = build(&spec, &devices).unwrap();
        let mut t = Timings::default();
        let ours = engine.infer(&image, &Map::new(), &mut t).unwrap().mask;

        // The same by hand: the transforms, every channel blended on this thread.
        let c = &spec.config;
        let mut d = sample(image.clone());
        transforms(c, "pre_transforms").unwrap().run(&mut d, 0).unwrap();
        transforms(c, "input_transforms").unwrap().run(&mut d, 0).unwrap();
        let x = to_tensor(&take_image(&mut d, "image").unwrap().vol, Layout::Ijk).unwrap();
        let net = devices.load("reference", &c.model_path, &[]).unwrap();
        let blended = SlidingWindow::new([96; 3])
            .with_overlap(0.25)
            .with_mode(BlendMode::Gaussian)
            .run(&x, |w| {
                net.forward(w.shallow_clone())
                    .map_err(|e| aiaa_nets::NetsError::Shape(e.to_string()))
            })
            .unwrap();
        let probs = to_volume(&blended, Layout::Ijk, image.dims, image.geometry).unwrap();
        assert_eq!(probs.channels, 2, "deepbet answers background and brain");
        let reference = match output_channel {
            Some(ch) => labels(&probs.channel(ch).unwrap(), 0.5).unwrap(),
            None => labels(&probs, 0.5).unwrap(),
        };

        let (a, b) = (ours.voxels.to_f32_vec(), reference.voxels.to_f32_vec());
        assert_eq!(ours.dims, reference.dims);
        let brain = b.iter().filter(|v| **v > 0.0).count();
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        eprintln!(
            "output_channel {output_channel:?}: {brain} brain voxels, {differ} differ; stages {}",
            t.report("sweep test")
        );
        assert!(brain > 500_000, "the brain is found: {brain} voxels");
        assert_eq!(differ, 0, "output_channel {output_channel:?}");
    }
}
