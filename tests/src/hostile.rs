//! The hostile-input harness: the real `aiaa up` inside a memory cgroup the test creates
//! itself, watched while it is attacked.
//!
//! - [`Confined::start`] makes a child cgroup of the test's own (cgroup v1
//!   `memory.limit_in_bytes`, or v2 `memory.max`) with a hard limit, and starts the platform
//!   in it (a shell moves itself in, then execs `aiaa`): whatever the platform allocates
//!   counts against the limit, and the kernel OOM-kills it past the limit, where the test
//!   sees it as a dead process. Not `RLIMIT_AS`: libtorch reserves far more address space
//!   than it ever touches.
//! - Memory is read three ways: the process's RSS now ([`Confined::rss`]), its peak RSS
//!   (`VmHWM`, [`Confined::peak_rss`], resettable with [`Confined::reset_peaks`]), and the
//!   cgroup's peak usage (`memory.max_usage_in_bytes` / `memory.peak`, which also counts the
//!   page cache of files the platform writes, so it is reported, not the bound asserted).
//! - [`Confined::watch_livez`] polls the gateway's `/livez` every 100 ms with a 1 s timeout
//!   for as long as the returned [`LivezWatch`] lives; [`LivezWatch::assert_healthy`] fails
//!   the test on any answer slower than 1 s or missing.
//! - [`Confined::settle`] waits for the RSS to come back within a margin of the baseline
//!   taken after start-up.
//!
//! Dropping a [`Confined`] stops the platform (SIGTERM, then SIGKILL) and removes the
//! cgroup. Needs root (or a delegated cgroup); fails with a message saying so otherwise.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Platform, aiaa_bin};

const GIB: u64 = 1 << 30;

/// Bytes as MiB, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

/// One memory cgroup made by the test (removed on drop).
#[derive(Debug)]
pub struct Cgroup {
    dir: PathBuf,
    v2: bool,
}

/// The test process's own memory cgroup folder and whether it is cgroup v2.
fn own_cgroup() -> (PathBuf, bool) {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or("/"),
        );
        if controllers.split(',').any(|c| c == "memory") {
            return (
                Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')),
                false,
            );
        }
    }
    let v2 = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or("/");
    (Path::new("/sys/fs/cgroup").join(v2.trim_start_matches('/')), true)
}

impl Cgroup {
    /// A new child of the test's own memory cgroup limited to `limit` bytes.
    pub fn create(limit: u64) -> Cgroup {
        static N: AtomicU64 = AtomicU64::new(0);
        let (parent, v2) = own_cgroup();
        let name = format!(
            "aiaa-hostile-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = parent.join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create the memory cgroup {}: {e} (the hostile suite needs root or a delegated cgroup; \
                 cgroup v1 memory controller or cgroup v2 with memory enabled in {}/cgroup.subtree_control)",
                dir.display(),
                parent.display()
            )
        });
        let cg = Cgroup { dir, v2 };
        let (file, value) = if v2 {
            ("memory.max", limit.to_string())
        } else {
            ("memory.limit_in_bytes", limit.to_string())
        };
        cg.write(file, &value);
        if !v2 {
            // No swap here; where there is, the limit must hold for memory + swap too.
            let _ = std::fs::write(cg.dir.join("memory.memsw.limit_in_bytes"), limit.to_string());
        }
        cg
    }

    fn write(&self, file: &str, value: &str) {
        std::fs::write(self.dir.join(file), value)
            .unwrap_or_else(|e| panic!("write {value} to {}/{file}: {e}", self.dir.display()));
    }

    fn read_u64(&self, file: &str) -> Option<u64> {
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The file a process writes its pid to, to join.
    pub fn procs_file(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.read_u64(if self.v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        })
        .unwrap_or(u64::MAX)
    }

    /// Bytes charged now (process memory and its page cache).
    pub fn usage(&self) -> u64 {
        self.read_u64(if self.v2 {
            "memory.current"
        } else {
            "memory.usage_in_bytes"
        })
        .unwrap_or(0)
    }

    /// Most bytes charged since creation or [`Cgroup::reset_peak`] (page cache included).
    pub fn peak(&self) -> u64 {
        self.read_u64(if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        })
        .unwrap_or(0)
    }

    /// Restarts the peak (cgroup v1; v2 kernels before 6.12 cannot).
    pub fn reset_peak(&self) {
        if !self.v2 {
            self.write("memory.max_usage_in_bytes", "0");
        } else {
            let _ = std::fs::write(self.dir.join("memory.peak"), "0");
        }
    }

    /// How often the limit was hit (v1 `memory.failcnt`, v2 `max` events).
    pub fn limit_hits(&self) -> u64 {
        if self.v2 {
            let events = std::fs::read_to_string(self.dir.join("memory.events")).unwrap_or_default();
            events
                .lines()
                .find_map(|l| l.strip_prefix("max "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        } else {
            self.read_u64("memory.failcnt").unwrap_or(0)
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The processes are gone by now; the kernel may take a moment to let go.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("warning: could not remove the cgroup {}", self.dir.display());
    }
}

/// Reads a `kB` field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status` in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// The whole platform (`aiaa up`) in a memory cgroup.
pub struct Confined {
    /// The running platform (its addresses, its stop on drop). Declared before the cgroup
    /// so it stops first.
    pub platform: Platform,
    /// Its cgroup.
    pub cgroup: Cgroup,
    /// RSS after start-up (models loaded and warmed).
    pub baseline_rss: u64,
}

impl Confined {
    /// Starts `aiaa <args>` (e.g. `up --engine-pool ...`) with `env` in a new cgroup of
    /// `limit` bytes, waits until it is ready, and records its baseline RSS.
    pub async fn start(limit: u64, args: &[&str], env: &[(&str, &str)]) -> Confined {
        let cgroup = Cgroup::create(limit);
        let procs = cgroup.procs_file();
        let bin = aiaa_bin();
        // The shell joins the cgroup, then becomes aiaa (same pid): everything it starts
        // is charged to the cgroup.
        let script = format!("echo $$ > '{}' && exec \"$0\" \"$@\"", procs.display());
        let mut sh_args: Vec<&str> = vec!["-c", &script, bin.to_str().expect("utf-8 binary path")];
        sh_args.extend_from_slice(args);
        let platform = Platform::start_program(Path::new("/bin/sh"), &sh_args, env).await;
        let confined = Confined {
            platform,
            cgroup,
            baseline_rss: 0,
        };
        assert!(confined.alive(), "the platform died during start-up");
        let baseline_rss = confined.rss();
        Confined {
            baseline_rss,
            ..confined
        }
    }

    /// The platform's pid.
    pub fn pid(&self) -> u32 {
        self.platform.pid()
    }

    /// The gateway's address.
    pub fn gateway(&self) -> SocketAddr {
        self.platform.addrs["gateway"]
    }

    /// Whether the platform process still runs (not exited, not a zombie, not OOM-killed).
    pub fn alive(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid())) {
            Ok(stat) => {
                let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next());
                !matches!(state, Some("Z" | "X"))
            }
            Err(_) => false,
        }
    }

    /// Asserts the platform is alive, naming `after`.
    pub fn assert_alive(&self, after: &str) {
        assert!(
            self.alive(),
            "the platform died after {after} (limit {}, limit hit {} times)",
            mib(self.cgroup.limit()),
            self.cgroup.limit_hits()
        );
    }

    /// Its RSS now.
    pub fn rss(&self) -> u64 {
        proc_status_bytes(self.pid(), "VmRSS:").unwrap_or(0)
    }

    /// Its peak RSS since start or the last [`Confined::reset_peaks`].
    pub fn peak_rss(&self) -> u64 {
        proc_status_bytes(self.pid(), "VmHWM:").unwrap_or(0)
    }

    /// Restarts both peaks (the process's `VmHWM` and the cgroup's).
    pub fn reset_peaks(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5");
        self.cgroup.reset_peak();
    }

    /// Waits up to `timeout` for the RSS to come within `margin` of the baseline; returns
    /// the last RSS seen.
    pub async fn settle(&self, margin: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let rss = self.rss();
            if rss <= self.baseline_rss + margin || Instant::now() >= deadline {
                return rss;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Starts polling `/livez` (see [`LivezWatch`]).
    pub fn watch_livez(&self) -> LivezWatch {
        LivezWatch::start(self.gateway())
    }

    /// One line for logs: RSS now, peak RSS, cgroup usage and peak.
    pub fn memory_report(&self) -> String {
        format!(
            "rss {} (baseline {}), peak rss {}, cgroup {} (peak {}, limit {}, hit {} times)",
            mib(self.rss()),
            mib(self.baseline_rss),
            mib(self.peak_rss()),
            mib(self.cgroup.usage()),
            mib(self.cgroup.peak()),
            mib(self.cgroup.limit()),
            self.cgroup.limit_hits()
        )
    }
}

/// What the `/livez` poller saw.
#[derive(Debug, Default, Clone)]
pub struct LivezStats {
    /// Polls made.
    pub polls: u64,
    /// The slowest answer.
    pub slowest: Duration,
    /// Polls without a 200 within 1 s, with what happened.
    pub failures: Vec<String>,
}

/// Polls `GET /livez` every 100 ms (each with a 1 s timeout) until dropped.
pub struct LivezWatch {
    stats: Arc<Mutex<LivezStats>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LivezWatch {
    fn start(addr: SocketAddr) -> LivezWatch {
        let stats = Arc::new(Mutex::new(LivezStats::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (stats.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !st.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let answer = tokio::time::timeout(Duration::from_secs(1), livez(addr)).await;
                let took = t0.elapsed();
                {
                    let mut stats = s.lock().unwrap();
                    stats.polls += 1;
                    stats.slowest = stats.slowest.max(took);
                    match answer {
                        Ok(Ok(200)) => {}
                        Ok(Ok(code)) => stats.failures.push(format!("status {code} after {took:?}")),
                        Ok(Err(e)) => stats.failures.push(format!("{e} after {took:?}")),
                        Err(_) => stats.failures.push("no answer within 1 s".into()),
                    }
                }
                tokio::time::sleep(Duration::from_millis(100).saturating_sub(took)).await;
            }
        });
        LivezWatch {
            stats,
            stop,
            task: Some(task),
        }
    }

    /// What was seen so far.
    pub fn stats(&self) -> LivezStats {
        self.stats.lock().unwrap().clone()
    }

    /// Asserts every poll so far answered 200 within 1 s (and that there were some).
    pub fn assert_healthy(&self, during: &str) {
        let s = self.stats();
        assert!(s.polls > 0, "/livez was never polled during {during}");
        assert!(
            s.failures.is_empty(),
            "/livez failed {} of {} polls during {during}: {:?}",
            s.failures.len(),
            s.polls,
            &s.failures[..s.failures.len().min(5)]
        );
    }

    /// Stops polling and returns what was seen.
    pub async fn finish(mut self) -> LivezStats {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.stats()
    }
}

impl Drop for LivezWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// One `GET /livez` on a fresh connection: the status code.
async fn livez(addr: SocketAddr) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).await?;
    let text = String::from_utf8_lossy(&head);
    text.get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {text:?}")))
}

/// A default limit for a whole platform under test: 6 GiB.
pub const DEFAULT_LIMIT: u64 = 6 * GIB;
