//! The served networks run frozen and optimised for inference (`aiaa-jit`), and that
//! changes nothing that matters: on the real MNI152 head, the shipped brain models'
//! frozen outputs lie within 1e-3 of the modules' as loaded, and their masks agree (Dice
//! >= 0.999), network by network and through the whole engines (deepgrow's from one click).
//!
//! `cargo test -p aiaa-engines --test frozen -- --nocapture` prints the figures.

use std::sync::OnceLock;

use aiaa_engines::device::Net;
use aiaa_engines::engines::grid::{Interp, resize};
use aiaa_engines::engines::{EngineSpec, sample, take_image, transforms};
use aiaa_engines::tensor::{Layout, to_tensor};
use aiaa_engines::{Devices, Engine, Form, Policy, Timings, build, read_pool};
use aiaa_imaging::io::read_volume;
use aiaa_imaging::{ReadOptions, Volume};
use aiaa_testdata::{repo_root, testdata};
use aiaa_transforms::{Item, Pipeline};
use serde_json::{Map, Value, json};
use tch::{Device, Tensor};

const MAX_DIFF: f64 = 1e-3;
const MIN_DICE: f64 = 0.999;

/// The shipped engine pool's models.
fn specs() -> Vec<EngineSpec> {
    testdata(); // deepbet's networks are linked into models/ with the test data
    read_pool(&repo_root().join("models/engine_pool.json"))
        .unwrap()
        .iter()
        .map(|e| EngineSpec::from_pool_entry(e).unwrap())
        .collect()
}

fn spec(name: &str) -> EngineSpec {
    specs().into_iter().find(|s| s.name == name).unwrap()
}

/// The shipped models built once per policy (loading deepbet warms up two networks).
fn engines(policy: Policy) -> &'static [(String, Box<dyn Engine>)] {
    static FROZEN: OnceLock<Vec<(String, Box<dyn Engine>)>> = OnceLock::new();
    static PLAIN: OnceLock<Vec<(String, Box<dyn Engine>)>> = OnceLock::new();
    let cell = if policy == Policy::Freeze { &FROZEN } else { &PLAIN };
    cell.get_or_init(|| {
        let devices = Devices::start_with(&[Device::Cpu], 2, policy).unwrap();
        specs()
            .iter()
            .map(|s| (s.name.clone(), build(s, &devices).unwrap()))
            .collect()
    })
}

fn engine(policy: Policy, name: &str) -> &'static dyn Engine {
    engines(policy)
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, e)| e.as_ref())
        .unwrap()
}

fn read(rel: &str) -> Volume {
    read_volume(&testdata().join(rel), &ReadOptions::default()).unwrap()
}

fn dice(a: &[bool], b: &[bool]) -> f64 {
    assert_eq!(a.len(), b.len());
    let both = a.iter().zip(b).filter(|(x, y)| **x && **y).count();
    let sum = a.iter().filter(|x| **x).count() + b.iter().filter(|x| **x).count();
    if sum == 0 {
        1.0
    } else {
        2.0 * both as f64 / sum as f64
    }
}

fn foreground(v: &Volume) -> Vec<bool> {
    v.voxels.to_f32_vec().iter().map(|&x| x > 0.0).collect()
}

/// The brain's six extreme points on MNI152, as a click sends them.
fn clicks() -> Vec<[f64; 3]> {
    let mask = read("mni152/MNI152_mask.nii.gz");
    aiaa_transforms::extreme::extreme_points(&mask)
        .unwrap()
        .iter()
        .map(|p| p.map(|c| c as f64))
        .collect()
}

#[test]
fn every_shipped_model_serves_frozen() {
    let all = engines(Policy::Freeze);
    assert_eq!(all.len(), specs().len());
    assert!(all.len() >= 2, "the pool ships both brain models");
    for (name, e) in all {
        assert_eq!(e.info().torchscript, Form::Frozen, "{name}");
    }
    for (name, e) in engines(Policy::Plain) {
        assert_eq!(e.info().torchscript, Form::Plain, "{name}");
    }
}

/// The DEXTR3D network's input for the brain's clicks on MNI152, as its engine makes it:
/// the points' box plus `padding` mm, resized (linear) to `roi`, the config's
/// pre_transforms with the points under `label`.
fn dextr3d_input(spec: &EngineSpec) -> Tensor {
    let image = read("mni152/MNI152_T1.nii.gz");
    let pts = clicks();
    let c = &spec.config;
    let roi = c.get::<[usize; 3]>("roi").unwrap().unwrap();
    let padding = c.get::<f64>("padding").unwrap().unwrap();
    let mut start = [0; 3];
    let mut size = [0; 3];
    for a in 0..3 {
        let pad = padding / image.geometry.spacing[a];
        let lo = pts.iter().map(|p| p[a]).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(|p| p[a]).fold(f64::NEG_INFINITY, f64::max);
        start[a] = (lo - pad).round().max(0.0) as usize;
        size[a] = (((hi + pad).round() as usize + 1).min(image.dims[a])) - start[a];
    }
    let crop = aiaa_imaging::crop::crop(&image, start, size).unwrap();
    let x = resize(&crop, roi, Interp::Linear).unwrap();
    let moved = pts
        .iter()
        .map(|p| {
            std::array::from_fn(|a| (p[a] - start[a] as f64 + 0.5) * roi[a] as f64 / size[a] as f64 - 0.5)
        })
        .collect();
    let mut d = sample(x);
    d.insert("label", Item::Points(moved));
    transforms(c, "pre_transforms").unwrap().run(&mut d, 0).unwrap();
    to_tensor(&take_image(&mut d, "image").unwrap().vol, Layout::Ijk).unwrap()
}

/// deepbet's two network inputs on MNI152: the config's pre_transforms (RAS, percentiles),
/// the whole head resized (nearest) to the locator's 128³ and to the model's 256³, each
/// normalised by its input_transforms.
fn deepbet_inputs(spec: &EngineSpec) -> (Tensor, Tensor) {
    let c = &spec.config;
    let mut d = sample(read("mni152/MNI152_T1.nii.gz"));
    transforms(c, "pre_transforms").unwrap().run(&mut d, 0).unwrap();
    let head = take_image(&mut d, "image").unwrap().vol;
    let input = |size: [usize; 3], list: &Value| {
        let mut d = sample(resize(&head, size, Interp::Nearest).unwrap());
        Pipeline::from_json(list, 0).unwrap().run(&mut d, 0).unwrap();
        to_tensor(&take_image(&mut d, "image").unwrap().vol, Layout::Ijk).unwrap()
    };
    let locator = input([128; 3], &c.json["locator"]["input_transforms"]);
    let model = input([256; 3], &c.json["input_transforms"]);
    (locator, model)
}

/// One network loaded frozen and as loaded, each warmed up on `x` as the service would, then
/// both run on `x`: the largest difference of their outputs and the Dice of their masks
/// (channel 1 > 0.5).
fn compare(name: &str, path: &std::path::Path, x: &Tensor) -> (f64, f64) {
    let load = |policy| -> Net {
        let devices = Devices::start_with(&[Device::Cpu], 2, policy).unwrap();
        devices.load(name, path, &[x.shallow_clone()]).unwrap()
    };
    let (frozen, plain) = (load(Policy::Freeze), load(Policy::Plain));
    assert_eq!(frozen.form(), Form::Frozen, "{name}");
    assert_eq!(plain.form(), Form::Plain, "{name}");
    let y_frozen = frozen.forward(x.shallow_clone()).unwrap();
    let y_plain = plain.forward(x.shallow_clone()).unwrap();
    assert_eq!(y_frozen.size(), y_plain.size());
    let diff = (&y_frozen - &y_plain).abs().max().double_value(&[]);
    let mask = |y: &Tensor| -> Vec<bool> {
        Vec::<f32>::try_from(y.select(1, 1).flatten(0, -1))
            .unwrap()
            .iter()
            .map(|&p| p > 0.5)
            .collect()
    };
    let d = dice(&mask(&y_frozen), &mask(&y_plain));
    eprintln!(
        "{name}: input {:?}, max |frozen - plain| {diff:.2e}, Dice of the masks {d:.6}",
        x.size()
    );
    (diff, d)
}

#[test]
fn frozen_networks_answer_as_the_plain_ones_on_mni152() {
    let dextr3d = spec("annotation_mri_brain");
    let deepbet = spec("segmentation_mri_brain");
    let (locator_x, model_x) = deepbet_inputs(&deepbet);
    let locator_path = deepbet
        .config
        .resolve(
            "locator.model_path",
            deepbet.config.json["locator"]["model_path"].as_str().unwrap(),
        )
        .unwrap();
    let cases = [
        (
            "annotation_mri_brain",
            dextr3d.config.model_path.clone(),
            dextr3d_input(&dextr3d),
        ),
        ("segmentation_mri_brain (locator)", locator_path, locator_x),
        (
            "segmentation_mri_brain",
            deepbet.config.model_path.clone(),
            model_x,
        ),
    ];
    for (name, path, x) in &cases {
        let (diff, d) = compare(name, path, x);
        assert!(diff <= MAX_DIFF, "{name}: {diff}");
        assert!(d >= MIN_DICE, "{name}: {d}");
    }
}

#[test]
fn frozen_engines_segment_as_the_plain_ones_on_mni152() {
    let image = read("mni152/MNI152_T1.nii.gz");
    let click: Map<String, Value> = Map::from_iter([("points".to_string(), json!(clicks()))]);
    let deepgrow: Map<String, Value> = Map::from_iter([("foreground".to_string(), json!([[90, 108, 90]]))]);
    for (name, params) in [
        ("annotation_mri_brain", click),
        ("segmentation_mri_brain", Map::new()),
        ("deepgrow_mri_brain", deepgrow),
    ] {
        let run = |policy| {
            engine(policy, name)
                .infer(&image, &params, &mut Timings::default())
                .unwrap()
                .mask
        };
        let (frozen, plain) = (run(Policy::Freeze), run(Policy::Plain));
        assert_eq!(frozen.dims, image.dims);
        let d = dice(&foreground(&frozen), &foreground(&plain));
        let brain = foreground(&plain).iter().filter(|x| **x).count();
        eprintln!("{name}: Dice of the frozen and plain engines' masks on MNI152 {d:.6} ({brain} voxels)");
        assert!(brain > 100_000, "{name}: {brain}");
        assert!(d >= MIN_DICE, "{name}: {d}");
    }
}
