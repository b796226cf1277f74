//! `f32_tensor` starts no OpenMP team on the thread that calls it, where tch's `from_slice`
//! does (the reason `f32_tensor` exists: see `src/host.rs`). A test file of its own, so that no
//! other test's threads come and go while the process's threads are counted.

use aiaa_jit::f32_tensor;
use tch::Tensor;

/// The process's threads.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// Threads added to the process by `make` run on a new thread asking for a team of two
/// (libtorch parallelises a fill of this size; the team's worker outlives the call, as long
/// as the thread that started it, so the count is taken before that thread ends).
fn threads_added_by(make: fn(&[f32]) -> Tensor) -> usize {
    let data = vec![1.5f32; 1 << 20];
    std::thread::spawn(move || {
        tch::set_num_threads(2);
        let before = threads();
        let t = make(&data);
        assert_eq!(t.double_value(&[(1 << 20) - 1]), 1.5);
        threads() - before
    })
    .join()
    .expect("the test thread")
}

#[test]
fn making_a_network_input_starts_no_openmp_team() {
    // The control: if libtorch ever stops filling in parallel, this says so, and `f32_tensor`
    // is no longer needed.
    let by_tch = threads_added_by(Tensor::from_slice);
    assert!(
        by_tch >= 1,
        "tch's from_slice no longer starts an OpenMP team ({by_tch} threads added): f32_tensor may go"
    );
    let ours = threads_added_by(|d| f32_tensor(d, &[1 << 20]).unwrap());
    assert_eq!(ours, 0, "f32_tensor started {ours} threads");
}
