//! The model backend: TorchScript modules on libtorch, each device served by one owner
//! thread that loads, runs and drops the modules placed on it.
//!
//! Modules are made ready to serve by `aiaa-jit` on their device's thread: frozen and
//! optimised for inference (unless [`Devices::start_with`] says [`Policy::Plain`]), warmed
//! up on the engine's inputs, run under inference mode; [`Net::form`] says which form serves
//! (the simpler forms take over, with a warning in the log, when freezing fails).
//!
//! Why one thread per device: libtorch's intra-op thread pool (CPU) or a CUDA stream already
//! uses the whole device for one forward pass, so running passes one after another on one
//! thread is as fast as running them together and keeps memory bounded (one activation set at
//! a time). Pre- and post-processing run elsewhere, in parallel, so the device only waits for
//! work when no request is ready. Jobs queue on the thread's channel; [`Devices::waiting`]
//! reports how many wait.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use aiaa_jit::{Form, JitError, Module, Policy};
use aiaa_nets::sliding_window::SlidingWindow;
use tch::{Device, Kind, Tensor};

use crate::engines::Activation;
use crate::error::{EngineError, Result};
use crate::tensor::Layout;

type Reply<T> = mpsc::SyncSender<Result<T>>;

enum Job {
    Load {
        key: u64,
        name: String,
        path: PathBuf,
        /// Network inputs of every shape the engine will send, for the warm-up.
        warm: Vec<Tensor>,
        policy: Policy,
        reply: Reply<Form>,
    },
    Unload {
        key: u64,
    },
    Forward {
        key: u64,
        input: Tensor,
        finish: Option<Finish>,
        reply: Reply<Tensor>,
        /// The caller's span, entered on the device thread so the forward pass is part of
        /// the request's trace.
        span: tracing::Span,
    },
    Sweep {
        key: u64,
        input: Tensor,
        sweep: Sweep,
        reply: Reply<Swept>,
        span: tracing::Span,
    },
}

/// A sliding-window pass run whole on the device thread ([`Net::sweep`]): the windows, the
/// activation of each window's output, and the blending all stay on the device (on a GPU
/// the blended volume crosses to the CPU once; on the CPU every torch operation uses the
/// device thread's warm thread team rather than starting a request thread's own).
#[derive(Clone, Debug)]
pub struct Sweep {
    /// Where the windows lie and how they blend.
    pub window: SlidingWindow,
    /// Applied to each window's output before blending.
    pub activation: Activation,
    /// Keep only this output channel (clamped to the last) after the activation: what the
    /// labels are read from, so only it is blended and handed back.
    pub channel: Option<usize>,
}

/// The answer of a [`Sweep`]: the blended `[1, K, ...]` output in the network's axis order,
/// contiguous `f32` on the CPU, and the time the forward passes took of it.
pub struct Swept {
    /// The blended probabilities.
    pub output: Tensor,
    /// The forward passes' share of the job.
    pub forward: Duration,
}

/// What the device thread does to a network's output before handing it back: the
/// activation, then the axes reordered to the volumes' memory order (`[N, K, k, j, i]`,
/// contiguous). Torch's parallel operations then all run on the device thread: run on a
/// request's thread, each such thread would start its own OpenMP team that competes for the
/// cores with the device's.
#[derive(Clone, Copy, Debug)]
pub struct Finish {
    /// The network's axis order.
    pub layout: Layout,
    /// The activation to apply.
    pub activation: Activation,
}

/// One device and its owner thread.
struct Worker {
    device: Device,
    jobs: mpsc::Sender<Job>,
    waiting: Arc<AtomicUsize>,
    /// Nanoseconds spent in forward passes since the thread started.
    busy_ns: Arc<AtomicU64>,
}

/// The devices models run on: every CUDA device when asked for (or `auto` and present),
/// else the CPU. Cheap to clone.
#[derive(Clone)]
pub struct Devices {
    workers: Arc<Vec<Worker>>,
    next_key: Arc<AtomicU64>,
    policy: Policy,
}

impl std::fmt::Debug for Devices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.workers.iter().map(|w| w.device))
            .finish()
    }
}

/// Parses `auto`, `cpu`, `cuda` (every CUDA device) or `cuda:N`.
pub fn parse_devices(spec: &str) -> Result<Vec<Device>> {
    let cuda = tch::Cuda::device_count() as usize;
    match spec.trim() {
        "cpu" => Ok(vec![Device::Cpu]),
        "auto" if cuda > 0 => Ok((0..cuda).map(Device::Cuda).collect()),
        "auto" => Ok(vec![Device::Cpu]),
        "cuda" if cuda > 0 => Ok((0..cuda).map(Device::Cuda).collect()),
        s => {
            let n = match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => n,
                _ if s == "cuda" => usize::MAX,
                _ => {
                    return Err(EngineError::Config(format!(
                        "--inference-device {s:?}: use auto, cpu, cuda or cuda:N"
                    )));
                }
            };
            if n >= cuda {
                return Err(EngineError::Config(format!(
                    "--inference-device {s:?}: this machine has {cuda} CUDA device(s)"
                )));
            }
            Ok(vec![Device::Cuda(n)])
        }
    }
}

impl Devices {
    /// Starts one owner thread per device; `threads` > 0 sets libtorch's intra-op threads.
    /// Modules are frozen and optimised for inference ([`Policy::Freeze`]).
    pub fn start(devices: &[Device], threads: usize) -> Result<Devices> {
        Self::start_with(devices, threads, Policy::Freeze)
    }

    /// [`Devices::start`] with modules served as `policy` says ([`Policy::Plain`]: as
    /// loaded, for comparisons).
    pub fn start_with(devices: &[Device], threads: usize, policy: Policy) -> Result<Devices> {
        if threads > 0 {
            tch::set_num_threads(threads as i32);
        }
        let mut workers = Vec::new();
        for &device in devices {
            let (tx, rx) = mpsc::channel();
            let waiting = Arc::new(AtomicUsize::new(0));
            let busy_ns = Arc::new(AtomicU64::new(0));
            let (w, b) = (waiting.clone(), busy_ns.clone());
            std::thread::Builder::new()
                .name(format!("torch-{device:?}").to_lowercase())
                .spawn(move || owner(device, rx, w, b))
                .map_err(|e| EngineError::Internal(format!("starting the device thread: {e}")))?;
            workers.push(Worker {
                device,
                jobs: tx,
                waiting,
                busy_ns,
            });
        }
        Ok(Devices {
            workers: Arc::new(workers),
            next_key: Arc::new(AtomicU64::new(1)),
            policy,
        })
    }

    /// The devices, for logs.
    pub fn names(&self) -> Vec<String> {
        self.workers
            .iter()
            .map(|w| format!("{:?}", w.device).to_lowercase())
            .collect()
    }

    /// Jobs waiting for a device, all devices together.
    pub fn waiting(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.waiting.load(Ordering::Relaxed))
            .sum()
    }

    /// Time the devices have spent running forward passes since they started, all devices
    /// together (input upload and output download included): what `aiaa evaluate` compares
    /// with the wall time to tell how long the model waited for data.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(
            self.workers
                .iter()
                .map(|w| w.busy_ns.load(Ordering::Relaxed))
                .sum(),
        )
    }

    /// The number of devices.
    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// Loads a TorchScript file onto every device, ready to serve (blocking: call from a
    /// blocking thread): frozen and optimised as the devices' policy says, then warmed up
    /// with `warm`, network inputs (`[N, C, ...]` `f32` on the CPU) of every shape the
    /// engine will send, so the first request after the load costs what later ones do.
    pub fn load(&self, name: &str, path: &Path, warm: &[Tensor]) -> Result<Net> {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let mut net = Net {
            key,
            name: name.to_string(),
            devices: self.clone(),
            form: Form::Frozen,
        };
        for w in self.workers.iter() {
            let (reply, rx) = mpsc::sync_channel(1);
            send(
                w,
                Job::Load {
                    key,
                    name: name.to_string(),
                    path: path.to_path_buf(),
                    warm: warm.iter().map(Tensor::shallow_clone).collect(),
                    policy: self.policy,
                    reply,
                },
            )?;
            net.form = net.form.min(receive(rx)?);
        }
        if self.workers.is_empty() {
            net.form = Form::Plain;
        }
        Ok(net)
    }
}

fn send(w: &Worker, job: Job) -> Result<()> {
    w.jobs
        .send(job)
        .map_err(|_| EngineError::Unavailable(format!("the {:?} worker has stopped", w.device)))
}

fn receive<T>(rx: mpsc::Receiver<Result<T>>) -> Result<T> {
    rx.recv()
        .map_err(|_| EngineError::Unavailable("the device worker stopped during the call".into()))?
}

/// A TorchScript module loaded on every device; dropping it unloads it.
pub struct Net {
    key: u64,
    name: String,
    devices: Devices,
    /// The least optimised form serving on any device.
    form: Form,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("name", &self.name)
            .field("form", &self.form)
            .finish()
    }
}

impl Net {
    /// Runs the module on the least busy device (blocking). `input` is `[N, C, ...]` `f32`
    /// on the CPU (a view is fine: the device thread makes it contiguous); the answer is the
    /// module's output (its first tensor when it returns a tuple or list) as `f32` on the
    /// CPU.
    pub fn forward(&self, input: Tensor) -> Result<Tensor> {
        self.forward_finished(input, None)
    }

    /// [`Net::forward`], then `finish` applied on the device thread: the answer is
    /// `[N, K, k, j, i]`, contiguous, read as a volume with [`Layout::Kji`].
    pub fn forward_finished(&self, input: Tensor, finish: Option<Finish>) -> Result<Tensor> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.submit(reply, rx, |reply, span| Job::Forward {
            key: self.key,
            input,
            finish,
            reply,
            span,
        })
    }

    /// Runs a whole sliding-window pass of the module over `input` (`[1, C, ...]` `f32`,
    /// contiguous, on the CPU) on the least busy device (blocking); see [`Sweep`].
    pub fn sweep(&self, input: Tensor, sweep: Sweep) -> Result<Swept> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.submit(reply, rx, |reply, span| Job::Sweep {
            key: self.key,
            input,
            sweep,
            reply,
            span,
        })
    }

    /// Queues a job on the least busy device and waits for its answer, naming the model in
    /// a model error.
    fn submit<T>(
        &self,
        reply: Reply<T>,
        rx: mpsc::Receiver<Result<T>>,
        job: impl FnOnce(Reply<T>, tracing::Span) -> Job,
    ) -> Result<T> {
        let w = self
            .devices
            .workers
            .iter()
            .min_by_key(|w| w.waiting.load(Ordering::Relaxed))
            .ok_or_else(|| EngineError::Internal("no device".into()))?;
        w.waiting.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("aiaa_inference_device_waiting").increment(1.0);
        let sent = send(w, job(reply, tracing::Span::current()));
        if sent.is_err() {
            w.waiting.fetch_sub(1, Ordering::Relaxed);
            metrics::gauge!("aiaa_inference_device_waiting").decrement(1.0);
        }
        sent?;
        receive(rx).map_err(|e| match e {
            EngineError::Model { reason, .. } => EngineError::Model {
                model: self.name.clone(),
                reason,
            },
            e => e,
        })
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Which form of the module serves (the least optimised one over the devices).
    pub fn form(&self) -> Form {
        self.form
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for w in self.devices.workers.iter() {
            let _ = w.jobs.send(Job::Unload { key: self.key });
        }
    }
}

/// The owner thread: holds the modules of its device and runs their jobs in order.
fn owner(device: Device, jobs: mpsc::Receiver<Job>, waiting: Arc<AtomicUsize>, busy_ns: Arc<AtomicU64>) {
    // The forward pass itself runs under inference mode (in the shim); what the thread does
    // to its output (activation, reordering) needs no gradients either.
    let _guard = tch::no_grad_guard();
    let mut modules: HashMap<u64, Module> = HashMap::new();
    while let Ok(job) = jobs.recv() {
        match job {
            Job::Load {
                key,
                name,
                path,
                warm,
                policy,
                reply,
            } => {
                let loaded = aiaa_jit::prepare(&name, &path, device, policy, &warm)
                    .map_err(|e| load_error(&name, &path, &e));
                let _ = reply.send(loaded.map(|p| {
                    modules.insert(key, p.module);
                    p.form
                }));
            }
            Job::Unload { key } => {
                modules.remove(&key);
            }
            Job::Forward {
                key,
                input,
                finish,
                reply,
                span,
            } => {
                let out = serve(&span, &waiting, &busy_ns, modules.get(&key), |m| {
                    run(m, input, finish, device)
                });
                let _ = reply.send(out);
            }
            Job::Sweep {
                key,
                input,
                sweep,
                reply,
                span,
            } => {
                let out = serve(&span, &waiting, &busy_ns, modules.get(&key), |m| {
                    run_sweep(m, input, &sweep, device)
                });
                let _ = reply.send(out);
            }
        }
    }
}

/// Runs one queued job on `module` inside the caller's `span`: the job leaves the waiting
/// count, and its time is added to the device's busy time.
fn serve<T>(
    span: &tracing::Span,
    waiting: &AtomicUsize,
    busy_ns: &AtomicU64,
    module: Option<&Module>,
    job: impl FnOnce(&Module) -> Result<T>,
) -> Result<T> {
    let _in_request = span.enter();
    waiting.fetch_sub(1, Ordering::Relaxed);
    metrics::gauge!("aiaa_inference_device_waiting").decrement(1.0);
    let t0 = Instant::now();
    let out = match module {
        None => Err(EngineError::NotFound("the model was unloaded".into())),
        Some(m) => job(m),
    };
    busy_ns.fetch_add(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// A model file libtorch could not load, as the caller sees it: the file's name and the
/// first line of libtorch's reason (e.g. "PytorchStreamReader failed reading zip archive"),
/// as a configuration error (the gateway's 400). The whole message goes to the log only.
fn load_error(name: &str, path: &Path, e: &JitError) -> EngineError {
    let full = match e {
        JitError::Load { reason, .. } => reason.clone(),
        e => e.to_string(),
    };
    tracing::warn!(model = %name, path = %path.display(), error = %full, "loading a TorchScript file failed");
    let reason = full
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("unknown error")
        .trim_start_matches("Internal torch error: ");
    let reason: String = reason.chars().take(200).collect();
    let file = path
        .file_name()
        .map_or_else(|| "the file".to_string(), |f| f.to_string_lossy().into_owned());
    EngineError::Config(format!(
        "model {name:?}: {file} is not a TorchScript module this server can load: {reason}"
    ))
}

fn run(m: &Module, input: Tensor, finish: Option<Finish>, device: Device) -> Result<Tensor> {
    let x = input.to_device(device).contiguous();
    // The shim answers the first tensor of the module's output (a tuple's or list's too).
    let t = m.forward(&x).map_err(|e| EngineError::Model {
        model: String::new(),
        reason: e.to_string(),
    })?;
    let t = t.to_kind(Kind::Float);
    let t = match finish {
        None => t,
        Some(f) => {
            let t = f.activation.apply(t);
            match f.layout {
                Layout::Ijk => t.permute([0, 1, 4, 3, 2]).contiguous(),
                Layout::Kji => t.contiguous(),
            }
        }
    };
    Ok(t.to_device(Device::Cpu))
}

fn run_sweep(m: &Module, input: Tensor, sweep: &Sweep, device: Device) -> Result<Swept> {
    let x = input.to_device(device);
    let mut forward = Duration::ZERO;
    // The predictor's error type is the sliding window's; the model's own error is kept
    // aside to be answered as it is.
    let mut failure = None;
    let blended = sweep.window.run(&x, |w| {
        let t0 = Instant::now();
        let y = m.forward(&w.contiguous());
        forward += t0.elapsed();
        let y = y.map_err(|e| {
            let reason = e.to_string();
            failure = Some(EngineError::Model {
                model: String::new(),
                reason: reason.clone(),
            });
            aiaa_nets::NetsError::Shape(reason)
        })?;
        let size = y.size();
        if size.len() != 5 {
            // The window's own check names the shapes; the activation needs the channel axis.
            return Ok(y);
        }
        let y = sweep.activation.apply(y.to_kind(Kind::Float));
        Ok(match sweep.channel {
            Some(c) => y.narrow(1, (c as i64).min(size[1] - 1), 1),
            None => y,
        })
    });
    let blended = match (blended, failure) {
        (Ok(b), _) => b,
        (Err(_), Some(e)) => return Err(e),
        (Err(e), None) => return Err(EngineError::Invalid(format!("sliding window: {e}"))),
    };
    Ok(Swept {
        output: blended.contiguous().to_device(Device::Cpu),
        forward,
    })
}
