//! The inference service's memory budget: what one request may cost and what the admitted
//! requests may hold together, both in bytes, checked before the work they pay for.
//!
//! A request grows one [`Reservation`] as it learns its cost: the bytes of an inline or
//! fetched image as they arrive, then (from the image's header, before decoding) the
//! decoded volume, the engine's working copies ([`aiaa_engines::Engine::working_bytes`])
//! and the encoded result. Each step first checks the request's own limit (more: refused
//! with OUT_OF_RANGE naming the limit and the cost, the gateway's 400) and then takes the
//! bytes from the shared budget, waiting in line (first come, first served) at most
//! `--inference-memory-wait` for requests in flight to give theirs back: four clicks at
//! once on a big CT queue briefly instead of failing. Still none left after the wait:
//! RESOURCE_EXHAUSTED, the gateway's 503 with `Retry-After`. The reservation returns its
//! bytes when the request ends, however it ends.
//!
//! Defaults follow the memory the process may use ([`memory_limit`]: the cgroup's limit in
//! a container, else the machine's RAM): half of it for requests in flight (one request may
//! take all of that), an eighth (at most 2 GiB) for the session cache; the rest is the
//! process itself (libtorch, models, buffers) and headroom.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{InferenceError, Result};

/// Budget accounting unit: 1 MiB (a semaphore permit each).
const UNIT: u64 = 1 << 20;

/// A byte size on the command line: `auto`, a number of bytes, or a number with a unit
/// (`k`, `m`, `g`, `t`, optionally followed by `i`/`iB`/`B`; powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// Derived from the memory the process may use.
    Auto,
    /// Exactly this many bytes.
    Bytes(u64),
}

impl Size {
    /// `Auto` resolved with `auto`.
    pub fn or(self, auto: u64) -> u64 {
        match self {
            Size::Auto => auto,
            Size::Bytes(b) => b,
        }
    }
}

impl std::fmt::Display for Size {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Size::Auto => f.write_str("auto"),
            Size::Bytes(b) => write!(f, "{b}"),
        }
    }
}

/// Parses a [`Size`] (`auto`, `1073741824`, `512MiB`, `2g`, `1.5GiB`).
pub fn parse_size(s: &str) -> std::result::Result<Size, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("auto") {
        return Ok(Size::Auto);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (auto, bytes, or a number with KiB/MiB/GiB/TiB)"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (KiB, MiB, GiB, TiB)")),
    };
    let bytes = value * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Size::Bytes(bytes as u64))
}

/// Bytes of memory this process may use: the smallest of the machine's RAM and the memory
/// limit of its cgroup (v1 or v2, the process's own group and the mount's root).
pub fn memory_limit() -> u64 {
    let mut limit = meminfo_total().unwrap_or(u64::MAX);
    for path in cgroup_limit_files() {
        if let Some(v) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            limit = limit.min(v);
        }
    }
    limit
}

fn meminfo_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib << 10)
}

/// The limit files that may apply: for the process's group as `/proc/self/cgroup` names it,
/// and for the mount's root (inside a container the group is usually the root of its view).
fn cgroup_limit_files() -> Vec<String> {
    let mut files = vec![
        "/sys/fs/cgroup/memory.max".to_string(),
        "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string(),
    ];
    if let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") {
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
            let (Some(controllers), Some(path)) = (controllers, path) else {
                continue;
            };
            let path = path.trim_end_matches('/');
            if controllers.is_empty() {
                files.push(format!("/sys/fs/cgroup{path}/memory.max"));
            } else if controllers.split(',').any(|c| c == "memory") {
                files.push(format!("/sys/fs/cgroup/memory{path}/memory.limit_in_bytes"));
            }
        }
    }
    files
}

/// The resolved limits of the service (what [`crate::config::InferenceArgs`] asks for, with
/// `auto` resolved).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes all admitted requests may hold together.
    pub budget: u64,
    /// Bytes one request may hold.
    pub per_request: u64,
    /// Bytes of decoded session volumes kept.
    pub cache: u64,
    /// How long a request waits for bytes others hold.
    pub wait: Duration,
}

impl Limits {
    /// Resolves `auto` against `memory` (the bytes the process may use): half of it for
    /// requests, one request up to all of that, an eighth (at most 2 GiB) for the cache.
    pub fn resolve(budget: Size, per_request: Size, cache: Size, memory: u64, wait: Duration) -> Limits {
        let budget = budget.or(memory / 2);
        Limits {
            budget,
            per_request: per_request.or(budget).min(budget),
            cache: cache.or((memory / 8).min(2 << 30)),
            wait,
        }
    }
}

/// The shared budget (cheap to clone).
#[derive(Clone, Debug)]
pub struct Budget {
    units: Arc<Semaphore>,
    total: u64,
    per_request: u64,
    wait: Duration,
}

/// Bytes as MiB, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes.div_ceil(UNIT))
}

impl Budget {
    /// A budget of `total` bytes, at most `per_request` for one request; a request waits
    /// at most `wait` for bytes held by others (zero: refused at once).
    pub fn new(total: u64, per_request: u64, wait: Duration) -> Budget {
        let units = (total / UNIT).min(Semaphore::MAX_PERMITS as u64) as usize;
        Budget {
            units: Arc::new(Semaphore::new(units)),
            total,
            per_request: per_request.min(total),
            wait,
        }
    }

    /// Bytes held by requests in flight.
    pub fn in_use(&self) -> u64 {
        self.total
            .saturating_sub(self.units.available_permits() as u64 * UNIT)
    }

    /// The whole budget.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The most one request may hold.
    pub fn per_request(&self) -> u64 {
        self.per_request
    }

    /// An empty reservation for one request.
    pub fn reserve(&self) -> Reservation {
        Reservation {
            budget: self.clone(),
            held: None,
            units: 0,
        }
    }
}

/// The bytes one request holds; returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Budget,
    held: Option<OwnedSemaphorePermit>,
    units: u64,
}

impl Reservation {
    /// Bytes reserved.
    pub fn bytes(&self) -> u64 {
        self.units * UNIT
    }

    /// Grows the reservation to `bytes` in all (no-op when it already holds that much).
    /// `what` says what the bytes are for, in the refusal (e.g. "the 512x512x600 image
    /// decoded and the segmentation engine's working copies").
    pub async fn grow_to(&mut self, bytes: u64, what: &(dyn Fn() -> String + Sync)) -> Result<()> {
        let per_request = self.budget.per_request;
        if bytes > per_request {
            return Err(InferenceError::TooLarge(format!(
                "this request would hold about {} ({}), more than one request may: {} \
                 (--inference-max-request-bytes, AIAA_INFERENCE_MAX_REQUEST_BYTES)",
                mib(bytes),
                what(),
                mib(per_request)
            )));
        }
        let want = bytes.div_ceil(UNIT);
        if want <= self.units {
            return Ok(());
        }
        let more = (want - self.units) as u32;
        let units = self.budget.units.clone();
        let permit = match units.clone().try_acquire_many_owned(more) {
            Ok(permit) => Some(permit),
            Err(_) if self.budget.wait.is_zero() => None,
            Err(_) => {
                let waiting = metrics::gauge!("aiaa_inference_memory_waiting");
                waiting.increment(1.0);
                let got = tokio::time::timeout(self.budget.wait, units.acquire_many_owned(more)).await;
                waiting.decrement(1.0);
                got.ok().and_then(|p| p.ok())
            }
        };
        let Some(permit) = permit else {
            metrics::counter!("aiaa_inference_rejected_total", "reason" => "memory").increment(1);
            return Err(InferenceError::MemoryBusy {
                needed: bytes,
                in_use: self.budget.in_use(),
                budget: self.budget.total,
            });
        };
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        self.units = want;
        metrics::gauge!("aiaa_inference_memory_reserved_bytes").set(self.budget.in_use() as f64);
        Ok(())
    }

    /// Grows the reservation by `bytes`.
    pub async fn grow_by(&mut self, bytes: u64, what: &(dyn Fn() -> String + Sync)) -> Result<()> {
        self.grow_to(self.bytes().saturating_add(bytes), what).await
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.held.take().is_some() {
            metrics::gauge!("aiaa_inference_memory_reserved_bytes").set(self.budget.in_use() as f64);
            // What the request held is freed with it, mostly into malloc's arenas.
            aiaa_runtime::memory::trim_after(self.bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("auto"), Ok(Size::Auto));
        assert_eq!(parse_size("1024"), Ok(Size::Bytes(1024)));
        assert_eq!(parse_size("512MiB"), Ok(Size::Bytes(512 << 20)));
        assert_eq!(parse_size("2g"), Ok(Size::Bytes(2 << 30)));
        assert_eq!(parse_size("1.5 GiB"), Ok(Size::Bytes(3 << 29)));
        assert_eq!(parse_size("3KB"), Ok(Size::Bytes(3 << 10)));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn auto_follows_the_memory() {
        let l = Limits::resolve(Size::Auto, Size::Auto, Size::Auto, 8 << 30, Duration::ZERO);
        assert_eq!(
            l,
            Limits {
                budget: 4 << 30,
                per_request: 4 << 30,
                cache: 1 << 30,
                wait: Duration::ZERO
            }
        );
        let l = Limits::resolve(
            Size::Auto,
            Size::Bytes(1 << 30),
            Size::Auto,
            64 << 30,
            Duration::ZERO,
        );
        assert_eq!(
            l,
            Limits {
                budget: 32 << 30,
                per_request: 1 << 30,
                cache: 2 << 30,
                wait: Duration::ZERO
            }
        );
        // One request never gets more than the whole budget.
        let l = Limits::resolve(
            Size::Bytes(1 << 30),
            Size::Bytes(8 << 30),
            Size::Bytes(0),
            64 << 30,
            Duration::ZERO,
        );
        assert_eq!(l.per_request, 1 << 30);
        assert!(memory_limit() > 64 << 20, "{}", memory_limit());
    }

    #[tokio::test]
    async fn reservations_are_checked_and_returned() {
        let b = Budget::new(100 * UNIT, 60 * UNIT, Duration::ZERO);
        let what = || "test".to_string();
        let mut r1 = b.reserve();
        r1.grow_to(10 * UNIT, &what).await.unwrap();
        r1.grow_by(40 * UNIT, &what).await.unwrap();
        assert_eq!(b.in_use(), 50 * UNIT);
        // One request: its own limit first, named.
        let e = r1.grow_to(61 * UNIT, &what).await.unwrap_err();
        assert!(matches!(e, InferenceError::TooLarge(_)), "{e}");
        assert!(e.to_string().contains("--inference-max-request-bytes"), "{e}");
        // Then the shared budget: 50 + 60 > 100 is busy, not too large.
        let mut r2 = b.reserve();
        let e = r2.grow_to(60 * UNIT + 1, &what).await.unwrap_err();
        assert!(matches!(e, InferenceError::TooLarge(_)), "{e}");
        let e = r2.grow_to(60 * UNIT, &what).await.unwrap_err();
        assert!(matches!(e, InferenceError::MemoryBusy { .. }), "{e}");
        drop(r1);
        assert_eq!(b.in_use(), 0);
        r2.grow_to(60 * UNIT, &what).await.unwrap();
        assert_eq!(b.in_use(), 60 * UNIT);
        drop(r2);
        assert_eq!(b.in_use(), 0);
    }

    #[tokio::test]
    async fn a_request_waits_in_line_for_memory_then_gives_up() {
        let b = Budget::new(100 * UNIT, 100 * UNIT, Duration::from_millis(300));
        let what = || "test".to_string();
        let mut first = b.reserve();
        first.grow_to(80 * UNIT, &what).await.unwrap();
        // Freed while the second waits: it gets its bytes.
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move {
                let mut r = b.reserve();
                r.grow_to(50 * UNIT, &|| "second".to_string())
                    .await
                    .map(|_| r.bytes())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(first);
        assert_eq!(waiter.await.unwrap().unwrap(), 50 * UNIT);
        // Not freed within the wait: busy, and nothing is left held.
        let mut hold = b.reserve();
        hold.grow_to(80 * UNIT, &what).await.unwrap();
        let t = std::time::Instant::now();
        let mut late = b.reserve();
        let e = late.grow_to(50 * UNIT, &what).await.unwrap_err();
        assert!(matches!(e, InferenceError::MemoryBusy { .. }), "{e}");
        assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
        assert_eq!(b.in_use(), 80 * UNIT);
    }
}
