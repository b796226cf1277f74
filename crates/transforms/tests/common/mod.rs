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
