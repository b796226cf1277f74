//! Shared by the trainer's integration tests: the real test data and the tiny train config
//! on it (both from `aiaa_testdata`), and the Python that reads TensorBoard files and runs
//! TorchScript.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};

#[allow(unused_imports)] // not every test binary uses them all
pub use aiaa_testdata::train::brain_datalist;
use aiaa_testdata::train::{TinyTrain, flip};
#[allow(unused_imports)] // not every test binary uses both
pub use aiaa_testdata::{repo_root, testdata};

/// Tests that train share libtorch's global generator and the machine's cores: one at a time.
pub fn lock() -> MutexGuard<'static, ()> {
    static L: Mutex<()> = Mutex::new(());
    L.lock().unwrap_or_else(|e| e.into_inner())
}

/// A tiny DEXTR3D-style config on the real brain data ([`TinyTrain`]): 16³ crops around the
/// brain, a one-level U-Net with 4 filters, random flips, the learning rate halved every 10
/// steps.
pub fn tiny_config(epochs: u64, per_valid: u64) -> Value {
    TinyTrain {
        epochs,
        per_valid,
        lr_policy: Some(json!({"name": "lr_policy.DecayLRonStep", "decay_ratio": 0.5, "decay_freq": 10})),
        spatial_augment: vec![flip()],
        ..TinyTrain::default()
    }
    .config()
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
