//! Shared helpers of the integration tests: small volumes with non-trivial geometry.

#![allow(dead_code)]

use aiaa_imaging::{Geometry, Volume, Voxels};
use aiaa_transforms::rng::sample_rng;
use aiaa_transforms::{Data, Image, Kind, SampleRng, Transform};
use serde_json::Value;

/// A geometry with anisotropic spacing, an offset origin and a non-trivial direction.
pub fn geom() -> Geometry {
    Geometry {
        spacing: [1.0, 2.0, 3.0],
        origin: [10.0, -20.0, 30.0],
        direction: [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
    }
}

/// An `f32` scalar volume with values `f(i, j, k)`.
pub fn fvol(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> f32) -> Volume {
    let mut v = Vec::new();
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                v.push(f(i, j, k));
            }
        }
    }
    Volume::scalar(dims, geom(), Voxels::F32(v)).unwrap()
}

/// A `u8` label volume with values `f(i, j, k)`.
pub fn lvol(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> u8) -> Volume {
    let mut v = Vec::new();
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                v.push(f(i, j, k));
            }
        }
    }
    Volume::scalar(dims, geom(), Voxels::U8(v)).unwrap()
}

/// A sample with an image and a label.
pub fn sample(image: Volume, label: Volume) -> Data {
    let mut d = Data::named("case1");
    d.insert_image("image", Image::new(image, Kind::Intensity));
    d.insert_image("label", Image::new(label, Kind::Label));
    d
}

/// Builds one transform from JSON (panics on error).
pub fn build(v: Value) -> Box<dyn Transform> {
    aiaa_transforms::registry::build(0, &v).unwrap().1
}

/// A generator for tests.
pub fn rng(i: u64) -> SampleRng {
    sample_rng(42, 0, i)
}

/// All values of channel `c` as f64.
pub fn values(v: &Volume, c: usize) -> Vec<f64> {
    let n = v.voxel_count();
    (0..n).map(|i| v.voxels.get_f64(c * n + i)).collect()
}

/// Raw little-endian `f32`s, for the MONAI agreement tests' Python side.
pub fn write_f32(path: &std::path::Path, v: &[f32]) {
    std::fs::write(path, v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

/// Raw little-endian values of `N` bytes each, written by the Python side.
fn read_le<const N: usize, T>(path: &std::path::Path, from: fn([u8; N]) -> T) -> Vec<T> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(N)
        .map(|b| from(b.try_into().unwrap()))
        .collect()
}

/// Raw little-endian `f32`s written by the Python side.
pub fn read_f32(path: &std::path::Path) -> Vec<f32> {
    read_le(path, f32::from_le_bytes)
}

/// Raw little-endian `f64`s written by the Python side.
pub fn read_f64(path: &std::path::Path) -> Vec<f64> {
    read_le(path, f64::from_le_bytes)
}

/// Runs `script` in the project's Python environment (MONAI) with `dir` as its argument,
/// after writing `spec` there as `spec.json`; returns its last stdout line as JSON.
pub fn monai(script: &str, dir: &std::path::Path, spec: &Value) -> Value {
    std::fs::write(dir.join("spec.json"), spec.to_string()).unwrap();
    let out = std::process::Command::new(aiaa_testdata::python())
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "MONAI's side failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// The MNI152 brain mask, every fourth voxel: 46 × 55 × 46.
pub fn quarter_mask() -> (Vec<f32>, [usize; 3]) {
    let mask = aiaa_imaging::io::read_volume(
        &aiaa_testdata::testdata().join("mni152/MNI152_mask.nii.gz"),
        &aiaa_imaging::ReadOptions::default(),
    )
    .unwrap();
    let dims = mask.dims.map(|d| d.div_ceil(4));
    let full = mask.voxels.to_f32_vec();
    let mut v = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                v.push(full[4 * i + mask.dims[0] * (4 * j + mask.dims[1] * 4 * k)]);
            }
        }
    }
    (v, dims)
}
