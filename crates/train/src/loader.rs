//! Parallel data loading: `num_workers` threads run samples through the transform pipeline
//! into a bounded, ordered prefetch queue; the training loop takes them in order, in
//! batches.
//!
//! **The schedule** is a pure function of the seed, so a resumed run sees exactly the samples
//! the interrupted one would have. Each epoch has `steps = ceil(items / batch_size)` steps
//! of `batch_size` sample slots; slot `p` of epoch `e` holds item `perm_e[p mod items]`, where
//! `perm_e` is a shuffle of the training items seeded by (seed, e) (a last batch that would be
//! short, or a list shorter than a batch, is filled from the start of the same shuffle, so
//! every batch is full). The global slot number `g = e · steps · batch_size + p` is the
//! sample index its pipeline draws from ([`aiaa_transforms::rng`]), so every slot gets
//! its own augmentation, whatever thread computes it.
//!
//! **The queue** holds at most `capacity` samples ahead of the one the loop waits for;
//! workers claim slots in order, compute them, and park the results until their turn. The
//! time the loop spends waiting is measured: it is the data-loading share of the step.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aiaa_transforms::Pipeline;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use crate::data::{Array, FileCache, SampleTensors, sample_tensors};
use crate::datalist::DataItem;
use crate::error::{Result, TrainError};

/// Which item and sample index each slot holds; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Number of training items.
    pub items: usize,
    /// Samples per batch.
    pub batch_size: usize,
    /// The run's seed.
    pub seed: u64,
}

impl Schedule {
    /// Steps (batches) per epoch.
    pub fn steps_per_epoch(&self) -> u64 {
        self.items.div_ceil(self.batch_size).max(1) as u64
    }

    /// Sample slots per epoch.
    pub fn slots_per_epoch(&self) -> u64 {
        self.steps_per_epoch() * self.batch_size as u64
    }

    /// The order of the items in epoch `epoch`.
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..self.items).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x5851_f42d_4c95_7f2d);
        rng.set_stream(epoch);
        perm.shuffle(&mut rng);
        perm
    }

    /// The item of global slot `slot`.
    pub fn item_of(&self, slot: u64, perm: &[usize]) -> usize {
        let p = slot % self.slots_per_epoch();
        perm[(p % self.items as u64) as usize]
    }
}

/// One batch: `image` `[N, C, X, Y, Z]`, `label` `[N, 1, X, Y, Z]`.
#[derive(Debug)]
pub struct Batch {
    /// Network input.
    pub image: Tensor,
    /// Targets.
    pub label: Tensor,
    /// The samples' names.
    pub names: Vec<String>,
    /// How long the caller waited for this batch's samples.
    pub wait: Duration,
}

/// What the workers run for each slot.
pub struct Job {
    /// The items slots refer to.
    pub items: Arc<Vec<DataItem>>,
    /// Decoded files.
    pub cache: Arc<FileCache>,
    /// The pipeline.
    pub pipeline: Arc<Pipeline>,
    /// Maps a slot to (item, sample index).
    pub slot_fn: Box<dyn Fn(u64) -> (usize, u64) + Send + Sync>,
    /// Expected image channels.
    pub num_channels: i64,
    /// Expected spatial size, if fixed.
    pub size: Option<[i64; 3]>,
    /// Whether samples need a label.
    pub with_label: bool,
}

impl Job {
    /// Computes slot `slot`.
    pub fn run(&self, slot: u64) -> Result<SampleTensors> {
        let (item, index) = (self.slot_fn)(slot);
        let item = &self.items[item];
        let mut d = self.cache.sample(item)?;
        let context = match item.split {
            crate::datalist::Split::Training => "train.pre_transforms",
            crate::datalist::Split::Validation => "validate.pre_transforms",
        };
        self.pipeline
            .run(&mut d, index)
            .map_err(|e| TrainError::transform(context, e))?;
        sample_tensors(&mut d, self.num_channels, self.size, self.with_label)
    }
}

struct State {
    next_claim: u64,
    next_deliver: u64,
    ready: BTreeMap<u64, Result<SampleTensors>>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    end: u64,
    capacity: u64,
}

/// Ordered parallel producer of the samples of slots `start..end`.
pub struct Loader {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Loader {
    /// Starts `workers` threads computing slots `start..end` of `job`, at most `capacity`
    /// samples ahead of the consumer.
    pub fn start(job: Job, start: u64, end: u64, workers: usize, capacity: usize) -> Loader {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                next_claim: start,
                next_deliver: start,
                ready: BTreeMap::new(),
                stop: false,
            }),
            cv: Condvar::new(),
            end,
            capacity: capacity.max(1) as u64,
        });
        let job = Arc::new(job);
        let workers = (0..workers.max(1))
            .map(|w| {
                let shared = Arc::clone(&shared);
                let job = Arc::clone(&job);
                std::thread::Builder::new()
                    .name(format!("aiaa-loader-{w}"))
                    .spawn(move || worker(&shared, &job))
                    .expect("spawn a data-loading thread")
            })
            .collect();
        Loader { shared, workers }
    }

    /// The next sample in slot order, `None` past the end; the second value is how long
    /// this call waited.
    pub fn next_sample(&self) -> (Option<Result<SampleTensors>>, Duration) {
        let t0 = Instant::now();
        let mut st = lock(&self.shared.state);
        loop {
            let slot = st.next_deliver;
            if slot >= self.shared.end {
                return (None, t0.elapsed());
            }
            if let Some(r) = st.ready.remove(&slot) {
                st.next_deliver += 1;
                self.shared.cv.notify_all();
                return (Some(r), t0.elapsed());
            }
            st = self
                .shared
                .cv
                .wait(st)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// The next `n` samples stacked into a batch (`None` when none is left; a batch cut
    /// short by the end of the slots is an error: the schedule makes every batch full).
    pub fn next_batch(&self, n: usize) -> Result<Option<Batch>> {
        let mut images = Vec::with_capacity(n);
        let mut labels = Vec::with_capacity(n);
        let mut names = Vec::with_capacity(n);
        let mut wait = Duration::ZERO;
        for _ in 0..n {
            let (s, w) = self.next_sample();
            wait += w;
            let Some(s) = s else { break };
            let s = s?;
            let label = s.label.ok_or_else(|| TrainError::Data {
                sample: s.name.clone(),
                message: "no label".into(),
            })?;
            images.push(s.image);
            labels.push(label);
            names.push(s.name);
        }
        if images.is_empty() {
            return Ok(None);
        }
        if images.len() != n {
            return Err(TrainError::Data {
                sample: names.join(", "),
                message: format!(
                    "the schedule ended inside a batch ({} of {n} samples)",
                    images.len()
                ),
            });
        }
        Ok(Some(Batch {
            image: Array::stack(&images)?,
            label: Array::stack(&labels)?,
            names,
            wait,
        }))
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn worker(shared: &Shared, job: &Job) {
    loop {
        let slot = {
            let mut st = lock(&shared.state);
            loop {
                if st.stop || st.next_claim >= shared.end {
                    return;
                }
                if st.next_claim < st.next_deliver + shared.capacity {
                    st.next_claim += 1;
                    break st.next_claim - 1;
                }
                st = shared
                    .cv
                    .wait(st)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        // A panicking transform must not leave its slot empty (the consumer would wait for
        // ever): it becomes an error in that slot.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| job.run(slot))).unwrap_or_else(|p| {
            let what = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(TrainError::Data {
                sample: format!("slot {slot}"),
                message: format!("the data pipeline panicked: {what}"),
            })
        });
        let mut st = lock(&shared.state);
        st.ready.insert(slot, result);
        shared.cv.notify_all();
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.cv.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_fills_every_batch_and_shuffles_per_epoch() {
        let s = Schedule {
            items: 5,
            batch_size: 2,
            seed: 7,
        };
        assert_eq!((s.steps_per_epoch(), s.slots_per_epoch()), (3, 6));
        let p0 = s.permutation(0);
        let mut sorted = p0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2, 3, 4]);
        assert_eq!(s.permutation(0), p0, "deterministic");
        assert!((1..6).any(|e| s.permutation(e) != p0), "epochs differ");
        // The sixth slot wraps to the first item of the shuffle.
        assert_eq!(s.item_of(5, &p0), p0[0]);
        assert_eq!(s.item_of(6 + 2, &p0), p0[2]);
        let one = Schedule {
            items: 1,
            batch_size: 3,
            seed: 0,
        };
        assert_eq!((one.steps_per_epoch(), one.slots_per_epoch()), (1, 3));
    }
}
