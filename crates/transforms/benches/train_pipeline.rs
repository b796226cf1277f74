//! The chapter 6 training `pre_transforms` (`examples/configs/config_train_Task09_Spleen.json`)
//! on the MNI152 T1 + brain mask, per sample **including loading** (like a data loader):
//!
//! * ms/sample on one thread (a 1-thread rayon pool, so nothing inside a transform runs in
//!   parallel), which also gives samples/s with 1 worker;
//! * samples/s with 2 worker threads (a 2-thread rayon pool, samples in parallel);
//! * with `--per-transform`, the mean time of each transform on the 1-thread run.
//!
//! Samples are independent and seeded by index. `scripts/transforms/bench_vs_monai.py` runs
//! this next to the equivalent MONAI pipeline and prints the ratio.
//!
//! ```text
//! cargo bench -p aiaa-transforms --bench train_pipeline -- [--samples N] [--warmup N]
//!     [--workers 1,2] [--per-transform] [--json] [--config PATH] [--image PATH] [--label PATH]
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aiaa_transforms::{Data, Pipeline};
use rayon::prelude::*;
use serde_json::{Value, json};

struct Opts {
    samples: u64,
    warmup: u64,
    workers: Vec<usize>,
    per_transform: bool,
    json: bool,
    config: PathBuf,
    image: PathBuf,
    label: PathBuf,
}

fn usage(msg: &str) -> ! {
    eprintln!("train_pipeline: {msg}");
    eprintln!(
        "usage: train_pipeline [--samples N] [--warmup N] [--workers 1,2] [--per-transform] [--json] \
         [--config PATH] [--image PATH] [--label PATH]"
    );
    std::process::exit(2)
}

fn parse_opts() -> Opts {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut o = Opts {
        samples: 16,
        warmup: 1,
        workers: vec![1, 2],
        per_transform: false,
        json: false,
        config: root.join("examples/configs/config_train_Task09_Spleen.json"),
        image: root.join("testdata/mni152/MNI152_T1.nii.gz"),
        label: root.join("testdata/mni152/MNI152_mask.nii.gz"),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{a} needs a value")))
        };
        match a.as_str() {
            "--bench" => {} // added by `cargo bench`
            "--samples" => o.samples = val().parse().unwrap_or_else(|_| usage("bad --samples")),
            "--warmup" => o.warmup = val().parse().unwrap_or_else(|_| usage("bad --warmup")),
            "--workers" => {
                o.workers = val()
                    .split(',')
                    .map(|w| match w.parse() {
                        Ok(n) if n > 0 => n,
                        _ => usage("bad --workers"),
                    })
                    .collect()
            }
            "--per-transform" => o.per_transform = true,
            "--json" => o.json = true,
            "--config" => o.config = val().into(),
            "--image" => o.image = val().into(),
            "--label" => o.label = val().into(),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if o.samples == 0 {
        usage("--samples must be > 0");
    }
    o
}

fn sample(image: &Path, label: &Path) -> Data {
    let entry =
        json!({"image": image.to_str().expect("utf-8 path"), "label": label.to_str().expect("utf-8 path")});
    Data::from_json("", &entry).expect("datalist entry")
}

/// Runs sample `index` (load included); checks the output shape the config implies.
fn run_one(p: &Pipeline, o: &Opts, index: u64, each: impl FnMut(usize, Duration)) {
    let mut d = sample(&o.image, &o.label);
    p.run_timed(&mut d, index, each).expect("pipeline");
    let im = d.volume("image").expect("image");
    assert_eq!((im.dims, im.channels), ([128; 3], 2), "unexpected output shape");
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

fn main() {
    let o = parse_opts();
    for f in [&o.image, &o.label] {
        if !f.exists() {
            eprintln!("{} missing: run scripts/fetch-test-data.sh", f.display());
            std::process::exit(1);
        }
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(&o.config).expect("config")).expect("config JSON");
    let p = Pipeline::from_config(&config, &["train", "pre_transforms"], 0).expect("pipeline");
    let n = o.samples;

    // One thread: samples in sequence, every transform single-threaded.
    let one = pool(1);
    let mut per = vec![Duration::ZERO; p.len()];
    let elapsed = one.install(|| {
        for i in 0..o.warmup {
            run_one(&p, &o, 1_000_000 + i, |_, _| {});
        }
        let t0 = Instant::now();
        for i in 0..n {
            run_one(&p, &o, i, |pos, dt| per[pos] += dt);
        }
        t0.elapsed()
    });
    let ms_per_sample = elapsed.as_secs_f64() * 1e3 / n as f64;

    // Worker threads: samples in parallel.
    let mut throughput = Vec::new();
    for &w in &o.workers {
        let sps = if w == 1 {
            n as f64 / elapsed.as_secs_f64()
        } else {
            let pl = pool(w);
            let dt = pl.install(|| {
                (0..o.warmup.max(w as u64))
                    .into_par_iter()
                    .for_each(|i| run_one(&p, &o, 1_000_000 + i, |_, _| {}));
                let t0 = Instant::now();
                (0..n).into_par_iter().for_each(|i| run_one(&p, &o, i, |_, _| {}));
                t0.elapsed()
            });
            n as f64 / dt.as_secs_f64()
        };
        throughput.push((w, sps));
    }

    let steps: Vec<(String, f64)> = p
        .steps()
        .iter()
        .zip(&per)
        .map(|(s, d)| (s.name.clone(), d.as_secs_f64() * 1e3 / n as f64))
        .collect();
    if o.json {
        let out = json!({
            "samples": n,
            "includes_load": true,
            "ms_per_sample_1thread": ms_per_sample,
            "samples_per_s": throughput.iter().map(|(w, s)| json!({"workers": w, "samples_per_s": s})).collect::<Vec<_>>(),
            "per_transform_ms": steps.iter().map(|(name, ms)| json!({"name": name, "ms": ms})).collect::<Vec<_>>(),
        });
        println!("{out}");
        return;
    }
    println!("aiaa-transforms, chapter 6 train pre_transforms on MNI152 ({n} samples, load included)");
    println!("  1 thread: {ms_per_sample:.1} ms/sample");
    for (w, sps) in &throughput {
        println!("  {w} worker thread(s): {sps:.2} samples/s");
    }
    if o.per_transform {
        println!("  per transform (1 thread, mean ms/sample):");
        for (name, ms) in &steps {
            println!("    {ms:8.1}  {name}");
        }
    }
}
