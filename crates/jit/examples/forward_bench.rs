//! Forward time of a TorchScript file as loaded ("plain") and frozen + optimised for
//! inference ("frozen", as `prepare()` serves it: warmed up), both under inference mode, on
//! the CPU.
//!
//! ```sh
//! source scripts/env.sh
//! cargo run -p aiaa-jit --example forward_bench -- models/annotation_mri_brain/model.pt 1,2,48,48,48
//! cargo run -p aiaa-jit --example forward_bench -- models/segmentation_mri_brain/bbox_model.pt 1,1,128,128,128
//! cargo run -p aiaa-jit --example forward_bench -- models/segmentation_mri_brain/model.pt 1,1,256,256,256 5
//! ```
//!
//! Arguments: the file, the input shape, rounds (default 20), threads (default 2). Prints
//! the first [`COLD`] calls of each form (what a warm-up must absorb) and of the frozen form
//! after `prepare()`'s warm-up (what the first request after a load costs), then the median of
//! `rounds` alternating rounds (plain, frozen only, frozen, plain, ...: all see the same
//! machine load; "frozen only" is `freeze` without `optimize_for_inference`), and the largest
//! difference between the plain and frozen outputs. The work is libtorch's, so a dev build
//! measures the same as a release one (dependencies are optimised in every profile).

use std::path::PathBuf;
use std::time::Instant;

use aiaa_jit::{Form, Module, Policy, WARM_RUNS, prepare};
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
    let cold = plain.freeze()?.optimize_for_inference()?;
    let freeze_ms = t.elapsed().as_secs_f64() * 1e3;
    println!(
        "{} input {shape:?}, {threads} threads, freeze + optimize_for_inference {freeze_ms:.0} ms",
        path.display()
    );
    let first = |m: &Module| -> String {
        (0..COLD)
            .map(|_| format!("{:.0}", ms(|| drop(m.forward(&x).unwrap()))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("  first {COLD} calls, plain: {} ms", first(&plain));
    println!("  first {COLD} calls, frozen, no warm-up: {} ms", first(&cold));
    drop(cold);
    // The serving path: frozen, optimised and warmed up as the engines load a model.
    let t = Instant::now();
    let prepared = prepare("bench", &path, Device::Cpu, Policy::Freeze, &[x.shallow_clone()])?;
    let prepare_ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(prepared.form, Form::Frozen);
    let frozen = prepared.module;
    println!(
        "  first {COLD} calls, frozen, after prepare() ({prepare_ms:.0} ms, {WARM_RUNS} warm-up calls): {} ms",
        first(&frozen)
    );
    // Frozen without optimize_for_inference, for comparison (what it alone contributes).
    let frozen_only = plain.freeze()?;
    for _ in 0..WARM_RUNS {
        drop(frozen_only.forward(&x)?);
    }
    let forms = [
        ("plain", &plain),
        ("frozen only", &frozen_only),
        ("frozen", &frozen),
    ];
    let mut times = vec![Vec::new(); forms.len()];
    for _ in 0..rounds {
        for (i, (_, m)) in forms.iter().enumerate() {
            times[i].push(ms(|| drop(m.forward(&x).unwrap())));
        }
    }
    let diff = (plain.forward(&x)? - frozen.forward(&x)?)
        .abs()
        .max()
        .double_value(&[]);
    let medians: Vec<f64> = times.iter().map(|t| median(t.clone())).collect();
    println!(
        "  median of {rounds} alternating rounds: plain {:.1} ms, frozen only {:.1} ms, frozen {:.1} ms (plain / frozen {:.2}x); max |plain - frozen| {diff:.2e}",
        medians[0],
        medians[1],
        medians[2],
        medians[0] / medians[2]
    );
    let list = |v: &[f64]| v.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>().join(" ");
    for ((name, _), t) in forms.iter().zip(&times) {
        println!("  rounds, {name}: {}", list(t));
    }
    Ok(())
}
