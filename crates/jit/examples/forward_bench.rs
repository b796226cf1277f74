//! Forward time of a TorchScript file as loaded ("plain") and frozen + optimised for
//! inference ("frozen"), both under inference mode, on the CPU.
//!
//! ```sh
//! source scripts/env.sh
//! cargo run -p aiaa-jit --example forward_bench -- models/annotation_mri_brain/model.pt 1,2,48,48,48
//! cargo run -p aiaa-jit --example forward_bench -- models/segmentation_mri_brain/bbox_model.pt 1,1,128,128,128
//! cargo run -p aiaa-jit --example forward_bench -- models/segmentation_mri_brain/model.pt 1,1,256,256,256 5
//! ```
//!
//! Arguments: the file, the input shape, rounds (default 20), threads (default 2). Prints
//! the first [`COLD`] calls of each form (what a warm-up must absorb), then the median of
//! `rounds` alternating rounds (plain, frozen, plain, ...: both see the same machine load),
//! and the largest difference between their outputs. The work is libtorch's, so a dev build
//! measures the same as a release one (dependencies are optimised in every profile).

use std::path::PathBuf;
use std::time::Instant;

use aiaa_jit::Module;
use tch::{Device, Kind, Tensor};

/// Calls timed one by one from the start.
const COLD: usize = 5;

fn ms(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("usage: forward_bench FILE N,C,X,Y,Z [ROUNDS [THREADS]]".into());
    }
    let path = PathBuf::from(&args[0]);
    let shape: Vec<i64> = args[1].split(',').map(str::parse).collect::<Result<_, _>>()?;
    let rounds: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let threads: i32 = args.get(3).map_or(Ok(2), |s| s.parse())?;
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));

    let plain = Module::load(&path, Device::Cpu)?;
    let t = Instant::now();
    let frozen = plain.freeze()?.optimize_for_inference()?;
    let freeze_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "{} input {shape:?}, {threads} threads, freeze + optimize_for_inference {freeze_ms:.0} ms",
        path.display()
    );
    for (name, m) in [("plain", &plain), ("frozen", &frozen)] {
        let cold: Vec<String> = (0..COLD)
            .map(|_| format!("{:.0}", ms(|| drop(m.forward(&x).unwrap()))))
            .collect();
        println!("  first {COLD} calls, {name}: {} ms", cold.join(", "));
    }
    let (mut p, mut f) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        p.push(ms(|| drop(plain.forward(&x).unwrap())));
        f.push(ms(|| drop(frozen.forward(&x).unwrap())));
    }
    let diff = (plain.forward(&x)? - frozen.forward(&x)?)
        .abs()
        .max()
        .double_value(&[]);
    let (mp, mf) = (median(p.clone()), median(f.clone()));
    println!(
        "  median of {rounds} alternating rounds: plain {mp:.1} ms, frozen {mf:.1} ms ({:.2}x); max |plain - frozen| {diff:.2e}",
        mp / mf
    );
    let list = |v: &[f64]| v.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(" ");
    println!("  rounds, plain: {}\n  rounds, frozen: {}", list(&p), list(&f));
    Ok(())
}
