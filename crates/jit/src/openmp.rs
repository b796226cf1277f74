//! The OpenMP threads of a device's owner thread, given back when the device goes idle.
//!
//! libtorch's CPU kernels run their parallel loops on the calling thread's OpenMP team. When a
//! parallel region ends, libgomp keeps the team's workers spinning, about 300,000 rounds
//! (milliseconds) when there are no more OpenMP threads than cores, before they sleep: good
//! between the hundreds of regions of one forward pass, but after the last one a worker
//! spins on a core the request needs for everything after its forward pass (thresholding,
//! encoding, sending). On two cores that was about a tenth of a click (issue 19,
//! `docs/inference.md`). `GOMP_SPINCOUNT` would shorten every wait, those inside a forward
//! pass too, and only from the environment of a process not yet started; OpenMP 5.0's
//! `omp_pause_resource_all` instead ends the calling thread's team at the moment the device
//! has nothing more to run. The next parallel region starts its workers again (tens of
//! microseconds).
//!
//! The function is looked up in the process at run time: libtorch brings its own OpenMP
//! runtime (libgomp in PyTorch's Linux builds; LLVM's libomp has the function too), and a
//! build without one has nothing to release.

// The one foreign call, through a symbol found with dlsym.
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::sync::OnceLock;

/// `omp_pause_soft` of `omp_pause_resource_t`: the threads end, settings stay.
const OMP_PAUSE_SOFT: c_int = 1;

type PauseAll = unsafe extern "C" fn(c_int) -> c_int;

fn pause_all() -> Option<PauseAll> {
    static PAUSE: OnceLock<Option<PauseAll>> = OnceLock::new();
    *PAUSE.get_or_init(|| {
        // RTLD_DEFAULT searches every library the process has loaded, libtorch's OpenMP
        // runtime among them; the name is a NUL-terminated literal.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"omp_pause_resource_all".as_ptr()) };
        // A non-null address of `omp_pause_resource_all` is a function of this signature
        // (OpenMP 5.0: `int omp_pause_resource_all(omp_pause_resource_t kind)`).
        (!f.is_null()).then(|| unsafe { std::mem::transmute::<*mut libc::c_void, PauseAll>(f) })
    })
}

/// Ends the calling thread's OpenMP team (its workers exit instead of spinning), when the
/// process's OpenMP runtime offers `omp_pause_resource_all`; whether it did. Call it outside
/// any parallel region, on a thread that runs forward passes, when no more work is queued.
pub fn release_team() -> bool {
    match pause_all() {
        // Outside a parallel region the soft pause only frees this thread's pool (libgomp's
        // gomp_pause_host); it answers nonzero where it could not.
        Some(f) => unsafe { f(OMP_PAUSE_SOFT) == 0 },
        None => false,
    }
}
