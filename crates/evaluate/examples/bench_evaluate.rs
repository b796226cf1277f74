//! Benchmark of `aiaa evaluate`: deepbet (models/segmentation_mri_brain) over a list of
//! cases built from the two test heads (MNI152 and the ROBEX atlas), each flipped along
//! every combination of axes (geometry following, so the head stays where it is in space
//! and its mask is the flipped mask) and rescaled in intensity: different files, same
//! anatomy. Prints cases per second and the share of time the model waited for data.
//!
//! ```text
//! source scripts/env.sh
//! cargo run -p aiaa-evaluate --example bench_evaluate -- [--cases 20] [--device cpu]
//!     [--workers N] [--model_workers N] [--queue_depth N] [--threads N] [--dir DIR]
//! ```
//!
//! `--dir` keeps the generated cases (and reuses them on the next run); default: a
//! temporary folder.

use std::path::{Path, PathBuf};

use aiaa_evaluate::{EvaluateOptions, Event, ModelSource, Observer, Options, run_evaluate};
use aiaa_imaging::{ReadOptions, Volume, VoxelType, Voxels};
use serde_json::json;

struct Dots;

impl Observer for Dots {
    fn event(&self, e: &Event) {
        match e {
            Event::Started { total } => eprintln!("{total} cases"),
            Event::Done { file, .. } => eprintln!("  done {file}"),
            Event::Failed(f) => eprintln!("  FAILED {} ({}): {}", f.file, f.stage, f.error),
        }
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn read(path: &Path) -> Volume {
    aiaa_imaging::io::read_volume(path, &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/fetch-test-data.sh", path.display()))
}

fn scaled(v: &Volume, factor: f32) -> Volume {
    let data: Vec<f32> = v.voxels.to_f32_vec().iter().map(|x| x * factor).collect();
    Volume::new(v.dims, v.channels, v.geometry, Voxels::F32(data)).expect("same size")
}

/// Writes `n` cases under `dir`; returns the datalist.
fn build_cases(root: &Path, dir: &Path, n: usize) -> PathBuf {
    let heads = [
        ("mni", "mni152/MNI152_T1.nii.gz", "mni152/MNI152_mask.nii.gz"),
        ("robex", "robex/atlas.nii.gz", "robex/atlas_mask.nii.gz"),
    ];
    // Per head: 8 flips, then intensity scalings with a flip.
    let variants: Vec<([bool; 3], f32)> = (0..8)
        .map(|b| ([b & 1 != 0, b & 2 != 0, b & 4 != 0], 1.0))
        .chain((0..8).map(|b| {
            (
                [b & 1 != 0, b & 2 != 0, b & 4 != 0],
                if b % 2 == 0 { 0.5 } else { 2.0 },
            )
        }))
        .collect();
    assert!(n <= 2 * variants.len(), "at most {} cases", 2 * variants.len());
    std::fs::create_dir_all(dir).unwrap();
    let mut entries = Vec::new();
    let mut loaded: Vec<Option<(Volume, Volume)>> = vec![None, None];
    for c in 0..n {
        let (h, v) = (c % 2, c / 2);
        let (tag, image, label) = heads[h];
        let (axes, factor) = variants[v];
        let name = format!("{tag}_{v:02}");
        let (im_path, lb_path) = (
            dir.join(format!("{name}.nii.gz")),
            dir.join(format!("{name}_mask.nii.gz")),
        );
        if !im_path.is_file() || !lb_path.is_file() {
            let (im, lb) =
                loaded[h].get_or_insert_with(|| (read(&root.join(image)), read(&root.join(label))));
            let mut fim = aiaa_transforms::spatial::flip(im, axes);
            if factor != 1.0 {
                fim = scaled(&fim, factor);
            }
            let flb = aiaa_transforms::spatial::flip(lb, axes).cast(VoxelType::U8);
            aiaa_imaging::io::write_volume(&fim, &im_path).unwrap();
            aiaa_imaging::io::write_volume(&flb, &lb_path).unwrap();
        }
        entries.push(json!({"image": im_path, "label": lb_path}));
    }
    let list = dir.join("datalist.json");
    std::fs::write(&list, json!({"validation": entries}).to_string()).unwrap();
    list
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let num = |name: &str, default: usize| arg(&args, name).map_or(default, |v| v.parse().expect(name));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let testdata = std::env::var("AIAA_TESTDATA").map_or(root.join("testdata"), PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = arg(&args, "--dir").map_or(tmp.path().join("cases"), PathBuf::from);
    let n = num("--cases", 20);
    eprintln!("writing {n} cases under {}", dir.display());
    let list = build_cases(&testdata, &dir, n);
    let opts = Options {
        source: ModelSource {
            model: None,
            config: root.join("models/segmentation_mri_brain/config.json"),
            ..Default::default()
        },
        data_file: list,
        output: tmp.path().join("eval"),
        device: arg(&args, "--device").unwrap_or_else(|| "auto".into()),
        threads: num("--threads", 0),
        readers: num("--workers", 0),
        model_workers: num("--model_workers", 0),
        queue_depth: num("--queue_depth", 4),
        ..Default::default()
    };
    let s = run_evaluate(&opts, &EvaluateOptions::default(), &Dots).expect("aiaa evaluate");
    let t = &s.throughput;
    println!(
        "cases: {} ({} failed) on {} with readers {}, model workers {}, writers {}, queue depth {}",
        s.cases,
        s.failed.len(),
        s.devices.join(", "),
        t.threads[0],
        t.threads[1],
        t.threads[2],
        opts.queue_depth
    );
    println!("wall: {:.1} s (model load {:.1} s)", t.wall_s, t.load_s);
    println!("cases per second: {:.4}", t.cases_per_s);
    println!(
        "model busy {:.1} s of {:.1} s: waited for data {:.2}% of the time",
        t.device_busy_s,
        t.model_span_s,
        100.0 * t.model_wait_share.unwrap_or(f64::NAN)
    );
    println!(
        "stage sums: read {:.1} s, engine {:.1} s, write {:.1} s, metrics {:.1} s; model workers waited {:.1} s for a case",
        t.read_s, t.model_s, t.write_s, t.metrics_s, t.model_queue_wait_s
    );
    println!("mean Dice: {:.4}", s.mean_dice.unwrap_or(f64::NAN));
}
