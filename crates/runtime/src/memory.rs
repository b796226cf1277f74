//! Handing freed heap memory back to the operating system once large work is over.
//!
//! glibc's malloc keeps what a thread frees in that thread's arena for reuse, and it raises
//! its mmap threshold after each big free, so buffers of up to 32 MB come from the arenas
//! too. After a request that decoded a 600-slice CT on several threads, hundreds of MB stay
//! resident although nothing uses them: the process looks as if it leaked, and a container's
//! memory limit is that much closer for the next request. `malloc_trim(0)` returns the free
//! pages of every arena (the middle of a heap too, not only its top).
//!
//! Services call [`trim_when_quiet`] when something large ends (an inference request that
//! held a big reservation; the gateway spools uploads to disk and needs none). One
//! background thread trims once the process has gone [`QUIET`] without such a call, so a
//! burst of requests costs one trim after the last, and none runs while requests keep
//! arriving: a trim walks the arenas under their locks, and a thread that allocates
//! meanwhile waits for it.
//! On a C library other than glibc this does nothing.

use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long after the last large piece of work the trim runs.
pub const QUIET: Duration = Duration::from_secs(1);

/// Work that held less than this is not worth a trim.
pub const LARGE: u64 = 64 << 20;

/// When the trim is due (`None`: nothing to do).
static DUE: Mutex<Option<Instant>> = Mutex::new(None);
static WAKE: Condvar = Condvar::new();
static TRIMMER: OnceLock<()> = OnceLock::new();

/// Asks for a trim [`QUIET`] from now (postponed by every further call).
pub fn trim_when_quiet() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    TRIMMER.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("aiaa-malloc-trim".into())
            .spawn(trimmer);
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the memory trimmer; freed memory stays with the process");
        }
    });
    *DUE.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + QUIET);
    WAKE.notify_one();
}

/// [`trim_when_quiet`] when `bytes` is at least [`LARGE`].
pub fn trim_after(bytes: u64) {
    if bytes >= LARGE {
        trim_when_quiet();
    }
}

fn trimmer() {
    let mut due = DUE.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        match *due {
            None => due = WAKE.wait(due).unwrap_or_else(|e| e.into_inner()),
            Some(at) if Instant::now() < at => {
                let wait = at.saturating_duration_since(Instant::now());
                due = WAKE.wait_timeout(due, wait).unwrap_or_else(|e| e.into_inner()).0;
            }
            Some(_) => {
                *due = None;
                drop(due);
                trim_now();
                due = DUE.lock().unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

/// Returns the free pages of every malloc arena now; what it did goes to the debug log and
/// the `aiaa_memory_trims_total` counter.
pub fn trim_now() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let before = resident_bytes();
        let started = Instant::now();
        // SAFETY: malloc_trim only reorganises the allocator's own free lists; it is
        // thread-safe (it takes each arena's lock) and has no preconditions.
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0)
        };
        let after = resident_bytes();
        metrics::counter!("aiaa_memory_trims_total").increment(1);
        tracing::debug!(
            before_mib = before >> 20,
            after_mib = after >> 20,
            took = ?started.elapsed(),
            "freed memory handed back to the system"
        );
    }
}

/// The process's resident set size in bytes (0 where `/proc` cannot tell).
pub fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096);
    pages * u64::try_from(page).unwrap_or(4096)
}
