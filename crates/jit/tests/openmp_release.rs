//! `release_team` ends the calling thread's OpenMP workers, and the next parallel region
//! starts them again with the same results. A test file of its own, so that no other test's
//! threads come and go while the process's threads are counted.

use std::time::{Duration, Instant};

use aiaa_jit::release_team;
use tch::Tensor;

/// The process's threads.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// Waits (up to a second) for the thread count to come down to `want`: a released worker
/// leaves the team at once but takes a moment to leave the process.
fn settles_at(want: usize) -> usize {
    let t0 = Instant::now();
    loop {
        let n = threads();
        if n <= want || t0.elapsed() > Duration::from_secs(1) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_released_team_ends_its_workers_and_starts_again() {
    let data = vec![1.5f32; 1 << 20];
    std::thread::spawn(move || {
        tch::set_num_threads(2);
        let before = threads();
        // tch's from_slice fills in parallel: it starts this thread's team of two.
        let first = Tensor::from_slice(&data);
        assert_eq!(threads(), before + 1, "the team's worker");
        assert!(
            release_team(),
            "libtorch's OpenMP runtime has omp_pause_resource_all"
        );
        assert_eq!(settles_at(before), before, "the worker ended");
        let second = Tensor::from_slice(&data);
        assert_eq!(threads(), before + 1, "the worker started again");
        assert!(first.equal(&second));
        assert_eq!(
            second.sum(tch::Kind::Double).double_value(&[]),
            1.5 * (1 << 20) as f64
        );
    })
    .join()
    .expect("the test thread");
}
