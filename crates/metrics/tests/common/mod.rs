//! Shared helpers of the agreement test and the benchmark example: test data, mask
//! variants (morphology, shifts) and running MONAI (tests/monai/monai_metrics.py).

#![allow(dead_code)] // not every user needs every helper

use std::path::{Path, PathBuf};
use std::process::Command;

use aiaa_imaging::{Volume, Voxels};

#[allow(unused_imports)] // not every test binary uses it
pub use aiaa_testdata::testdata;

/// Reads a volume with aiaa-imaging.
pub fn read(path: &Path) -> Volume {
    aiaa_imaging::io::read_volume(path, &Default::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Foreground (non-zero) voxels of a single-channel volume.
pub fn mask_of(v: &Volume) -> Vec<bool> {
    (0..v.voxel_count()).map(|o| v.voxels.get_f64(o) != 0.0).collect()
}

/// A `u8` volume on `like`'s grid holding `labels`.
pub fn label_volume(like: &Volume, labels: Vec<u8>) -> Volume {
    Volume::scalar(like.dims, like.geometry, Voxels::U8(labels)).unwrap()
}

/// Dilation by a ball of `radius` mm (exact, through the distance transform).
pub fn dilate(mask: &[bool], dims: [usize; 3], spacing: [f64; 3], radius: f64) -> Vec<bool> {
    let d = aiaa_metrics::edt::squared_distance_to(mask, dims, spacing).unwrap();
    d.iter().map(|&x| x <= radius * radius).collect()
}

/// Erosion by a ball of `radius` mm (outside the grid counts as foreground here; the masks
/// used do not touch the border).
pub fn erode(mask: &[bool], dims: [usize; 3], spacing: [f64; 3], radius: f64) -> Vec<bool> {
    let inv: Vec<bool> = mask.iter().map(|&m| !m).collect();
    dilate(&inv, dims, spacing, radius).iter().map(|&x| !x).collect()
}

/// `out[p] = v[p - shift]` (zero where that falls outside).
pub fn shift<T: Copy + Default>(v: &[T], dims: [usize; 3], shift: [i64; 3]) -> Vec<T> {
    let [nx, ny, nz] = dims;
    let mut out = vec![T::default(); v.len()];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let src = [i as i64 - shift[0], j as i64 - shift[1], k as i64 - shift[2]];
                if (0..3).all(|a| src[a] >= 0 && src[a] < dims[a] as i64) {
                    let s = src[0] as usize + nx * (src[1] as usize + ny * src[2] as usize);
                    out[i + nx * (j + ny * k)] = v[s];
                }
            }
        }
    }
    out
}

/// Bools as 0/1 bytes.
pub fn bytes(mask: &[bool]) -> Vec<u8> {
    mask.iter().map(|&b| b as u8).collect()
}

/// Runs tests/monai/monai_metrics.py (`mode` = compare or bench) on a manifest; returns its
/// JSON output.
pub fn run_monai(mode: &str, manifest: &serde_json::Value, dir: &Path, extra: &[&str]) -> serde_json::Value {
    let man = dir.join("manifest.json");
    let out = dir.join("monai.json");
    std::fs::write(&man, serde_json::to_vec_pretty(manifest).unwrap()).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/monai/monai_metrics.py");
    let res = Command::new(aiaa_testdata::python())
        .arg(&script)
        .arg(mode)
        .arg(&man)
        .arg(&out)
        .args(extra)
        .output()
        .expect("run monai_metrics.py");
    assert!(
        res.status.success(),
        "monai_metrics.py failed:\n{}{}",
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}
