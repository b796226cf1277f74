//! What a device thread's spinning OpenMP worker costs the work that follows a forward pass,
//! and what [`aiaa_jit::release_team`] gives back: the served (frozen, optimised) module's
//! forward pass, then work split over two threads, as a click's encoding and sending are,
//! in alternating rounds with the team kept and released (a released team starts again in
//! the next forward pass, which pays for it). Prints the medians.
//!
//! ```sh
//! source scripts/env.sh
//! cargo run --release -p aiaa-jit --example openmp_release -- models/annotation_mri_brain/model.pt 1,2,48,48,48
//! ```
//!
//! Arguments: the file, the input shape, rounds per side (default 30), threads (default 2),
//! milliseconds of work per thread after each forward pass (default 4).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use aiaa_jit::{Module, release_team};
use tch::{Device, Kind, Tensor};

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    (v[(n - 1) / 2] + v[n / 2]) / 2.0
}

/// `rounds` of arithmetic nothing can skip.
fn spin(rounds: u64) -> u64 {
    (0..rounds).fold(1u64, |h, i| h.wrapping_mul(6364136223846793005).wrapping_add(i))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        return Err("usage: openmp_release FILE N,C,X,Y,Z [ROUNDS [THREADS [WORK_MS]]]".into());
    }
    let path = PathBuf::from(&args[0]);
    let shape: Vec<i64> = args[1].split(',').map(str::parse).collect::<Result<_, _>>()?;
    let rounds: usize = args.get(2).map_or(Ok(30), |s| s.parse())?;
    let threads: i32 = args.get(3).map_or(Ok(2), |s| s.parse())?;
    let work_ms: f64 = args.get(4).map_or(Ok(4.0), |s| s.parse())?;
    tch::set_num_threads(threads);
    let _no_grad = tch::no_grad_guard();
    let module = Module::load(&path, Device::Cpu)?
        .freeze()?
        .optimize_for_inference()?;
    let x = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));
    for _ in 0..5 {
        let _ = module.forward(&x)?;
    }
    let t = Instant::now();
    std::hint::black_box(spin(10_000_000));
    let per_round = t.elapsed().as_secs_f64() / 1e7;
    let work = (work_ms / 1e3 / per_round) as u64;

    // [kept, released]: forward pass, then the two threads' work.
    let mut forward = [Vec::new(), Vec::new()];
    let mut after = [Vec::new(), Vec::new()];
    // Rounds go in pairs per side (kept, kept, released, released, ...) and only the second
    // of a pair counts, so that every counted forward pass starts as its side leaves the team:
    // warm when kept, started afresh when released.
    for r in 0..4 * rounds {
        let side = (r / 2) % 2;
        let counted = r % 2 == 1;
        // A pause longer than any spin, as between two clicks.
        std::thread::sleep(Duration::from_millis(30));
        let t = Instant::now();
        let _ = module.forward(&x)?;
        let forward_ms = ms(t);
        if side == 1 {
            release_team();
        }
        let t = Instant::now();
        std::thread::scope(|s| {
            let other = s.spawn(|| std::hint::black_box(spin(work)));
            std::hint::black_box(spin(work));
            other.join().expect("work thread");
        });
        if counted {
            forward[side].push(forward_ms);
            after[side].push(ms(t));
        }
    }
    for (side, name) in ["team kept", "team released"].iter().enumerate() {
        println!(
            "{name:>13}: forward {:.2} ms, then {threads} x {work_ms} ms of work took {:.2} ms (median of {rounds})",
            median(forward[side].clone()),
            median(after[side].clone())
        );
    }
    Ok(())
}
