//! Helpers shared by the integration tests: the repository's test data, small volumes and
//! small TorchScript models made here (traced with tch), and an observer that records.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use aiaa_evaluate::{Event, Observer};
use aiaa_imaging::{Geometry, ReadOptions, Volume, Voxels};
use tch::{CModule, Device, Kind, Tensor};

#[allow(unused_imports)] // not every test binary uses it
pub use aiaa_testdata::{repo_root, testdata};

pub fn read(path: &Path) -> Volume {
    aiaa_imaging::io::read_volume(path, &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn write(vol: &Volume, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    aiaa_imaging::io::write_volume(vol, path).unwrap();
}

/// A `u8` volume of `dims` and `spacing` whose voxels are `f(i, j, k)`.
pub fn volume(dims: [usize; 3], spacing: f64, f: impl Fn(usize, usize, usize) -> u8) -> Volume {
    let mut v = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                v.push(f(i, j, k));
            }
        }
    }
    Volume::scalar(dims, Geometry::with_spacing([spacing; 3]), Voxels::U8(v)).unwrap()
}

/// Voxels > 0, as booleans.
pub fn foreground(v: &Volume) -> Vec<bool> {
    v.voxels.to_f32_vec()[..v.voxel_count()]
        .iter()
        .map(|&x| x > 0.0)
        .collect()
}

/// A TorchScript "model" that reads classes off the image: channel 0 where `x <= 0.5`,
/// 1 where `0.5 < x <= 1.5`, 2 where `x > 1.5` (one-hot, so argmax gives the class); with
/// `classes == 1` two channels (background, `x > 0.5`).
pub fn class_model(path: &Path, classes: usize) {
    let mut closure = |x: &[Tensor]| {
        let v = &x[0];
        let fg = v.gt(0.5).to_kind(Kind::Float);
        let out = if classes == 1 {
            Tensor::cat(&[fg.ones_like() - &fg, fg], 1)
        } else {
            let c2 = v.gt(1.5).to_kind(Kind::Float);
            let c1 = &fg - &c2;
            Tensor::cat(&[fg.ones_like() - &fg, c1, c2], 1)
        };
        vec![out]
    };
    let example = Tensor::zeros([1, 1, 4, 4, 4], (Kind::Float, Device::Cpu));
    let m = CModule::create_by_tracing("Classes", "forward", &[example], &mut closure).unwrap();
    m.save(path).unwrap();
}

/// The fixture of scripts/models/dextr3d_fixture.py traced here (no Python): input
/// `[1, 2, ...]` (image, heat-map in [-1, 1]), foreground where the heat-map is high.
pub fn heatmap_model(path: &Path) {
    let mut closure = |x: &[Tensor]| {
        let p = (x[0].narrow(1, 1, 1) + 0.5).multiply_scalar(40.0).sigmoid();
        vec![Tensor::cat(&[p.ones_like() - &p, p], 1)]
    };
    let example = Tensor::zeros([1, 2, 4, 4, 4], (Kind::Float, Device::Cpu));
    let m = CModule::create_by_tracing("Balls", "forward", &[example], &mut closure).unwrap();
    m.save(path).unwrap();
}

/// scripts/models/dextr3d_fixture.py: foreground = balls around the clicked points.
pub fn dextr3d_fixture(path: &Path) {
    let venv = std::env::var("AIAA_TORCH_VENV").expect("AIAA_TORCH_VENV (source scripts/env.sh)");
    let status = Command::new(PathBuf::from(venv).join("bin/python"))
        .arg(repo_root().join("scripts/models/dextr3d_fixture.py"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Records every event.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Event>>);

impl Observer for Recorder {
    fn event(&self, e: &Event) {
        self.0.lock().unwrap().push(e.clone());
    }
}

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}
