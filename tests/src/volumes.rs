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
