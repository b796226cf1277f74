//! A shipped model's requests through its engine on MNI152, served frozen (as the service
//! serves it: frozen and optimised for inference) and plain (as loaded), both warmed up at
//! load as the engines do: the load time, the first request after the load against the
//! median of the rest, and the forward pass ("infer") and whole request per form.
//!
//! ```sh
//! source scripts/env.sh
//! cargo run -p aiaa-engines --example first_click -- annotation_mri_brain 20
//! cargo run -p aiaa-engines --example first_click -- segmentation_mri_brain 5
//! ```
//!
//! Arguments: the model's name in `models/engine_pool.json`, requests per form (default
//! 20), threads (default 2). The forms alternate request by request, so both see the same
//! machine load. DEXTR3D requests click the brain's extreme points, each moved by up to 2
//! voxels (seeded) so that no two requests are the same. Dependencies are optimised in
//! every profile, so a dev build measures what a release one does.

use std::time::Instant;

use aiaa_engines::{Devices, Engine, EngineSpec, Policy, Timings, build, read_pool};
use aiaa_imaging::ReadOptions;
use aiaa_imaging::io::read_volume;
use serde_json::{Map, Value, json};
use tch::Device;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().map_or("annotation_mri_brain", String::as_str);
    let n: usize = args.get(1).map_or(Ok(20), |s| s.parse())?;
    let threads: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let root = aiaa_testdata::repo_root();
    let data = aiaa_testdata::testdata();
    let entry = read_pool(&root.join("models/engine_pool.json"))?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| format!("{name} is not in models/engine_pool.json"))?;
    let spec = EngineSpec::from_pool_entry(&entry)?;
    let image = read_volume(&data.join("mni152/MNI152_T1.nii.gz"), &ReadOptions::default())?;
    let mask = read_volume(&data.join("mni152/MNI152_mask.nii.gz"), &ReadOptions::default())?;
    let clicks = aiaa_transforms::extreme::extreme_points(&mask).ok_or("empty mask")?;

    let mut engines: Vec<(&str, Box<dyn Engine>)> = Vec::new();
    for (form, policy) in [("frozen", Policy::Freeze), ("plain", Policy::Plain)] {
        let devices = Devices::start_with(&[Device::Cpu], threads, policy)?;
        let t = Instant::now();
        let engine = build(&spec, &devices)?;
        println!(
            "{name}, {form}: loaded in {:.2} s ({}, {threads} threads)",
            t.elapsed().as_secs_f64(),
            engine.info().torchscript
        );
        engines.push((form, engine));
    }
    // A small seeded generator: the jitter only has to differ between requests.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut jitter = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % 5) as f64 - 2.0
    };
    let mut totals = vec![Vec::new(); engines.len()];
    let mut infers = vec![Vec::new(); engines.len()];
    for _ in 0..n {
        let params: Map<String, Value> = if spec.class.contains("Dextr3") {
            let pts: Vec<[f64; 3]> = clicks
                .iter()
                .map(|p| {
                    std::array::from_fn(|a| (p[a] as f64 + jitter()).clamp(0.0, image.dims[a] as f64 - 1.0))
                })
                .collect();
            Map::from_iter([("points".to_string(), json!(pts))])
        } else {
            Map::new()
        };
        for (i, (_, engine)) in engines.iter().enumerate() {
            let mut timings = Timings::default();
            let t = Instant::now();
            engine.infer(&image, &params, &mut timings)?;
            totals[i].push(t.elapsed().as_secs_f64() * 1e3);
            infers[i].push(timings.report(name)["infer"].as_f64().unwrap_or(f64::NAN) * 1e3);
        }
    }
    let list = |v: &[f64]| v.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(" ");
    for (i, (form, _)) in engines.iter().enumerate() {
        let (first, rest) = (infers[i][0], median(infers[i][1..].to_vec()));
        println!(
            "{name}, {form}: infer first {first:.0} ms, median of the next {} {rest:.0} ms (first/median {:.2}); request median {:.0} ms",
            n - 1,
            first / rest,
            median(totals[i].clone())
        );
        println!("  infer ms: {}", list(&infers[i]));
    }
    let (f, p) = (median(infers[0].clone()), median(infers[1].clone()));
    println!(
        "{name}: infer median plain {p:.0} ms / frozen {f:.0} ms = {:.2}x",
        p / f
    );
    Ok(())
}
