//! Volume helpers the suites share: read and decode with the platform's own reader, binary
//! foreground, Dice, and the fixture networks of `scripts/models/` written to a file.

use std::path::Path;
use std::process::Command;

use aiaa_imaging::{ReadOptions, Volume};

/// Reads an image file.
pub fn read(path: &Path) -> Volume {
    aiaa_imaging::io::read_volume(path, &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Decodes an image held in memory; `name` gives the format.
pub fn decode(name: &str, bytes: &[u8]) -> Volume {
    aiaa_imaging::io::decode_bytes(name, bytes, &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Voxel > 0, channel 0.
pub fn foreground(v: &Volume) -> Vec<bool> {
    v.voxels.to_f32_vec()[..v.voxel_count()]
        .iter()
        .map(|&x| x > 0.0)
        .collect()
}

/// Dice of two binary masks of the same size.
pub fn dice(a: &[bool], b: &[bool]) -> f64 {
    assert_eq!(a.len(), b.len(), "masks of different sizes");
    let both = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let sum = a.iter().filter(|x| **x).count() + b.iter().filter(|x| **x).count();
    2.0 * both as f64 / sum as f64
}

/// Runs `scripts/models/<script> <out>` with the project's Python environment: writes one of
/// the fixture TorchScript networks.
pub fn fixture_network(script: &str, out: &Path) {
    let status = Command::new(aiaa_testdata::python())
        .arg(crate::repo_root().join("scripts/models").join(script))
        .arg(out)
        .status()
        .expect("run the venv's python");
    assert!(status.success(), "{script} failed");
}

/// The engine configs of the two fixture networks (`threshold_fixture.py` at `seg`,
/// `dextr3d_fixture.py` at `dextr`), as the conformance tests load them through the admin
/// API: a `segmentation` model and an `annotation` (DEXTR3D) model, both labelling `brain`.
pub fn fixture_configs(seg: &Path, dextr: &Path) -> (serde_json::Value, serde_json::Value) {
    let seg_config = serde_json::json!({
        "model_format": "torchscript", "model_path": seg, "type": "segmentation",
        "labels": ["brain"], "description": "intensity threshold (fixture)", "version": "2",
        "pre_transforms": [{"name": "transforms.ScaleIntensityRangePercentiles", "fields": "image",
                            "lower": 0, "upper": 99.5, "b_min": 0, "b_max": 1, "clip": true}],
        "inference": {"mode": "sliding_window", "roi_size": [96, 96, 96], "overlap": 0.25, "sw_batch_size": 2},
        "post_transforms": [{"name": "transforms.KeepLargestConnectedComponent", "fields": "model"}]
    });
    let dextr_config = serde_json::json!({
        "model_format": "torchscript", "model_path": dextr, "type": "annotation",
        "labels": ["brain"], "roi": [64, 64, 64], "padding": 20.0,
        "pre_transforms": [
            {"name": "transforms.ScaleIntensityRange", "field": "image", "a_min": 0, "a_max": 100,
             "b_min": 0, "b_max": 1, "clip": true},
            {"name": "transforms.AddExtremePointsChannel", "image_field": "image", "label_field": "label",
             "sigma": 3, "pert": 0}]
    });
    (seg_config, dextr_config)
}
