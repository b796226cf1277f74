//! Shared by the trainer's integration tests: the real test data, tiny train configs on it,
//! and the Python that reads TensorBoard files and runs TorchScript.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};

#[allow(unused_imports)] // not every test binary uses both
pub use aiaa_testdata::{repo_root, testdata};

/// Tests that train share libtorch's global generator and the machine's cores: one at a time.
pub fn lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tiny DEXTR3D-style config on the real brain data: 16³ crops around the brain, a
/// one-level U-Net with 4 filters, two input channels (image + extreme points).
pub fn tiny_config(epochs: u64, per_valid: u64) -> Value {
    let crop = |pad: u64| {
        json!({"name": "transforms.CropForegroundObject", "size": [16, 16, 16],
               "image_field": "image", "label_field": "label", "pad": pad})
    };
    json!({
        "num_channels": 2,
        "num_classes": 2,
        "batch_size": 2,
        "epochs": epochs,
        "num_workers": 2,
        "network_input_size": [16, 16, 16],
        "num_training_epoch_per_valid": per_valid,
        "seed": 3,
        "checkpoint_interval_s": 0,
        "net_config": {"name": "UNet3D", "num_filters": 4, "levels": 1},
        "train": {
            "loss": {"name": "losses.dice_ce_loss"},
            "optimizer": {"name": "Adam", "lr": 1e-2},
            "lr_policy": {"name": "lr_policy.DecayLRonStep", "decay_ratio": 0.5, "decay_freq": 10},
            "pre_transforms": [
                {"name": "transforms.LoadNifty", "fields": ["image", "label"]},
                crop(20),
                {"name": "transforms.FlipAxisRandom", "fields": ["image", "label"], "axis": [0]},
                {"name": "transforms.NormalizeIntensity", "fields": "image"},
                {"name": "transforms.AddExtremePointsChannel", "image_field": "image",
                 "label_field": "label", "sigma": 2, "pert": 1}
            ]
        },
        "validate": {
            "metrics": [{"name": "MetricAverageFromArrayDice", "tag": "mean_dice",
                         "stopping_metric": true, "applied_key": "model"}],
            "pre_transforms": [
                {"name": "transforms.LoadNifty", "fields": ["image", "label"]},
                crop(13),
                {"name": "transforms.NormalizeIntensity", "fields": "image"},
                {"name": "transforms.AddExtremePointsChannel", "image_field": "image",
                 "label_field": "label", "sigma": 2, "pert": 0}
            ]
        }
    })
}

/// A datalist with the MNI152 head `copies` times in `training` (each copy gets its own
/// augmentation) and the ROBEX atlas in `validation`.
pub fn brain_datalist(copies: usize) -> Value {
    let t = testdata();
    let item = |dir: &str, image: &str, label: &str| json!({"image": t.join(dir).join(image), "label": t.join(dir).join(label)});
    json!({
        "training": (0..copies).map(|_| item("mni152", "MNI152_T1.nii.gz", "MNI152_mask.nii.gz")).collect::<Vec<_>>(),
        "validation": [item("robex", "atlas.nii.gz", "atlas_mask.nii.gz")]
    })
}

/// Writes `value` as JSON to `dir/name` and returns the path.
pub fn write_json(dir: &Path, name: &str, value: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(value).unwrap()).unwrap();
    p
}

/// Runs a Python script with `args`; returns its stdout (panics with stderr on failure).
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(aiaa_testdata::python())
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/python")
                .join(script),
        )
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Trains the tiny config on the brain data into `dir/out`; returns the summary and every
/// progress event.
pub fn train_tiny(
    dir: &Path,
    config: &Value,
    copies: usize,
) -> (aiaa_train::Summary, Vec<aiaa_train::Event>) {
    let job = aiaa_train::TrainJob {
        config: write_json(dir, "config.json", config),
        datalist: write_json(dir, "datalist.json", &brain_datalist(copies)),
        output_dir: dir.join("out"),
        device: aiaa_train::DeviceChoice::Cpu,
        log_every: 1,
        ..aiaa_train::TrainJob::default()
    };
    let mut events = Vec::new();
    let mut keep = |e: &aiaa_train::Event| events.push(e.clone());
    let trainer = aiaa_train::Trainer::prepare(job, &mut keep).expect("prepare");
    let summary = trainer
        .run(&std::sync::atomic::AtomicBool::new(false), &mut keep)
        .expect("train");
    (summary, events)
}
