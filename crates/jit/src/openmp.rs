//! How long libtorch's OpenMP workers spin in a serving process.
//!
//! libtorch's CPU kernels run their parallel loops on the calling thread's OpenMP team. When a
//! parallel region ends, libgomp keeps the team's workers spinning before they sleep:
//! 300,000 rounds by default, about 9 ms of a core on this project's machines (a PyTorch
//! process spends 8.5-10.3 ms of CPU while it sleeps right after a forward pass; 1 ms with
//! 30,000). That
//! suits the hundreds of regions of one forward pass, but after the last one the worker spins
//! on a core the request needs for everything after its forward pass (thresholding, encoding,
//! sending): two threads' 4 ms of work right after a DEXTR3D forward pass took 8.0-8.3 ms,
//! and 5.0-6.7 ms with `GOMP_SPINCOUNT=30000` (the forward pass itself unchanged: issue 19,
//! `docs/inference.md`).
//!
//! libgomp reads `GOMP_SPINCOUNT` once, when it is loaded, before `main`; so a serving
//! process that finds it unset restarts itself with it set ([`restart_with_serving_spin`]),
//! and every way the inference service is started (`aiaa up`, `aiaa serve inference`, the
//! `aiaa-inference` image, the chart) runs with it. Ending the team after each forward pass
//! instead (`omp_pause_resource_all`) was measured too: it frees the core as well, but the
//! next forward pass, starting its worker afresh, cost 6% more in the server.

use std::os::unix::process::CommandExt;

/// The spin count serving processes run with: about a millisecond of spinning on this
/// project's machines, still long enough that a forward pass's worker does not sleep between its
/// parallel regions (measured: forward passes of DEXTR3D and deepgrow unchanged; 3,000 cost
/// deepgrow's up to 15%).
pub const SERVING_SPIN_COUNT: &str = "30000";

/// Whether the environment already says how OpenMP workers wait (`GOMP_SPINCOUNT` or
/// `OMP_WAIT_POLICY`, the operator's choice, kept as it is).
pub fn wait_is_configured(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    ["GOMP_SPINCOUNT", "OMP_WAIT_POLICY"]
        .iter()
        .any(|name| var(name).is_some())
}

/// Replaces the process by itself with `GOMP_SPINCOUNT` set to [`SERVING_SPIN_COUNT`], the
/// same arguments and the same process id, unless the environment already configures how
/// OpenMP workers wait. Call it first thing in `main`, before any thread starts. Returns
/// when there is nothing to do, or when the restart failed (said on stderr: the process then
/// serves with libgomp's default spin).
pub fn restart_with_serving_spin() {
    if wait_is_configured(|name| std::env::var_os(name)) {
        return;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!(
                "warning: cannot find this program to restart it with GOMP_SPINCOUNT={SERVING_SPIN_COUNT}: {e}"
            );
            return;
        }
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(&exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let e = command
        .args(args)
        .env("GOMP_SPINCOUNT", SERVING_SPIN_COUNT)
        .exec();
    eprintln!(
        "warning: cannot restart {} with GOMP_SPINCOUNT={SERVING_SPIN_COUNT} ({e}); serving with libgomp's default spin",
        exe.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operators_setting_is_kept() {
        let env = |set: &'static [&'static str]| move |name: &str| set.contains(&name).then(|| "1".into());
        assert!(!wait_is_configured(env(&[])));
        assert!(!wait_is_configured(env(&["OMP_NUM_THREADS"])));
        assert!(wait_is_configured(env(&["GOMP_SPINCOUNT"])));
        assert!(wait_is_configured(env(&["OMP_WAIT_POLICY"])));
    }
}
