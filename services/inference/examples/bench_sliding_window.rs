//! Our side of `scripts/inference/bench_sliding_window.sh`: sliding-window segmentation of a
//! 256³ volume (MNI152 resized) with a TorchScript model through the SegmentationEngine, the
//! way the server runs it (input normalisation, windows on the device thread, Gaussian
//! blending, labels), the module frozen and warmed up at load as served. Prints one JSON line
//! with the median seconds per volume.
//!
//! usage: bench_sliding_window MODEL.pt IMAGE.nii.gz ROUNDS ROI OVERLAP THREADS [SW_BATCH]

use std::path::PathBuf;
use std::time::Instant;

use aiaa_engines::device::{Devices, parse_devices};
use aiaa_engines::engines::{self, EngineSpec, Timings};
use aiaa_engines::pool::ModelConfig;
use aiaa_imaging::ReadOptions;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() == 7 || args.len() == 8,
        "usage: {} MODEL IMAGE ROUNDS ROI OVERLAP THREADS [SW_BATCH]",
        args[0]
    );
    let (model, image) = (PathBuf::from(&args[1]), PathBuf::from(&args[2]));
    let rounds: usize = args[3].parse()?;
    let roi: usize = args[4].parse()?;
    let overlap: f64 = args[5].parse()?;
    let threads: usize = args[6].parse()?;
    let sw_batch_size: usize = args.get(7).map_or(Ok(1), |v| v.parse())?;
    let devices = Devices::start(&parse_devices("cpu")?, threads)?;
    let config = serde_json::json!({
        "model_format": "torchscript", "model_path": model, "type": "segmentation",
        "input_transforms": [{"name": "transforms.NormalizeIntensity", "fields": "image"}],
        "inference": {"mode": "sliding_window", "roi_size": [roi, roi, roi], "overlap": overlap,
                      "blend": "gaussian", "sw_batch_size": sw_batch_size}
    });
    let config = ModelConfig::parse(&config.to_string(), "bench", std::path::Path::new("."))?;
    let spec = EngineSpec {
        name: "bench".into(),
        class: "SegmentationEngine".into(),
        labels: vec!["brain".into()],
        version: "1".into(),
        config,
    };
    let engine = engines::build(&spec, &devices)?;
    let vol = aiaa_imaging::io::read_volume(&image, &ReadOptions::default())?;
    let vol = engines::grid::resize(&vol, [256, 256, 256], engines::grid::Interp::Linear)?;
    let params = serde_json::Map::new();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..rounds {
        let mut t = Timings::default();
        let t0 = Instant::now();
        let out = engine.infer(&vol, &params, &mut t)?;
        times.push(t0.elapsed().as_secs_f64());
        last = Some((out, t));
    }
    times.sort_by(f64::total_cmp);
    let (out, t) = last.expect("rounds > 0");
    let foreground = out.mask.voxels.to_f32_vec().iter().filter(|v| **v > 0.0).count();
    println!(
        "{}",
        serde_json::json!({"seconds": times[times.len() / 2], "foreground": foreground, "stages": t.report("bench")})
    );
    Ok(())
}
