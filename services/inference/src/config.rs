//! The inference service's config block, [`InferenceArgs`]: every flag `long` with an
//! `AIAA_INFERENCE_` (or `AIAA_ENGINE_POOL`) environment variable; flags carry the
//! component's name so an all-in-one binary can flatten several services.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aiaa_runtime::RuntimeError;
use aiaa_runtime::config::parse_duration;

use crate::budget::{Limits, Size, parse_size};

/// The inference service's settings.
#[derive(Clone, Debug, clap::Args)]
pub struct InferenceArgs {
    /// Address the inference gRPC server listens on (port 0 picks a free port).
    #[arg(
        id = "inference_listen",
        long = "inference-listen",
        env = "AIAA_INFERENCE_LISTEN",
        default_value = "127.0.0.1:5103"
    )]
    pub listen: SocketAddr,
    /// The seed's engine_pool.json: the models loaded at start (none when unset).
    #[arg(long = "engine-pool", env = "AIAA_ENGINE_POOL")]
    pub engine_pool: Option<PathBuf>,
    /// The datastore (sessions, images), `http://host:port`.
    #[arg(
        id = "inference_datastore_url",
        long = "inference-datastore-url",
        env = "AIAA_INFERENCE_DATASTORE_URL",
        default_value = "http://127.0.0.1:5102"
    )]
    pub datastore_url: String,
    /// The registry (models loaded by reference), `http://host:port`.
    #[arg(
        id = "inference_registry_url",
        long = "inference-registry-url",
        env = "AIAA_INFERENCE_REGISTRY_URL",
        default_value = "http://127.0.0.1:5101"
    )]
    pub registry_url: String,
    /// Requests admitted at once (running or waiting); more are refused at once with
    /// RESOURCE_EXHAUSTED (the gateway's 503 with Retry-After) rather than left to time out.
    #[arg(
        id = "inference_queue_depth",
        long = "inference-queue-depth",
        env = "AIAA_INFERENCE_QUEUE_DEPTH",
        default_value_t = 32
    )]
    pub queue_depth: usize,
    /// Bytes of decoded session volumes kept in memory (least recently used go first):
    /// bytes or a size like `1GiB`; `auto` is an eighth of the memory the process may use
    /// (its cgroup limit, else the RAM), at most 2 GiB.
    #[arg(id = "inference_cache_bytes", long = "inference-cache-bytes", env = "AIAA_INFERENCE_CACHE_BYTES", default_value = "auto", value_parser = parse_size)]
    pub cache_bytes: Size,
    /// How often cached session volumes are checked against the datastore: entries of
    /// deleted or expired sessions are dropped, e.g. `30s`.
    #[arg(id = "inference_cache_check_interval", long = "inference-cache-check-interval", env = "AIAA_INFERENCE_CACHE_CHECK_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub cache_check_interval: Duration,
    /// Bytes all admitted requests may hold at once (inline and fetched images, decoded
    /// volumes, the engines' working copies, results); a request that does not fit is
    /// refused at once with RESOURCE_EXHAUSTED (the gateway's 503 with Retry-After). `auto`:
    /// half of the memory the process may use (its cgroup limit, else the RAM).
    #[arg(id = "inference_memory_budget", long = "inference-memory-budget", env = "AIAA_INFERENCE_MEMORY_BUDGET", default_value = "auto", value_parser = parse_size)]
    pub memory_budget: Size,
    /// How long a request waits in line for memory held by requests in flight before it
    /// is refused with RESOURCE_EXHAUSTED (503 + Retry-After), e.g. `30s`; `0s` refuses at
    /// once.
    #[arg(id = "inference_memory_wait", long = "inference-memory-wait", env = "AIAA_INFERENCE_MEMORY_WAIT", default_value = "30s", value_parser = parse_duration)]
    pub memory_wait: Duration,
    /// Bytes one request may hold (its image decoded, the engine's working copies, the
    /// result); more is refused before any work with OUT_OF_RANGE (the gateway's 400) naming
    /// the limit and the request's cost. `auto`: the whole memory budget.
    #[arg(id = "inference_max_request_bytes", long = "inference-max-request-bytes", env = "AIAA_INFERENCE_MAX_REQUEST_BYTES", default_value = "auto", value_parser = parse_size)]
    pub max_request_bytes: Size,
    /// Folders the admin API may load model files from (a model config's `model_path`, a
    /// locator's), separated by `:`; paths elsewhere (absolute, `..`, symbolic links out)
    /// are refused. Default: the engine pool file's folder and --inference-model-dir. A
    /// relative `model_path` of a config sent through the API is taken from the first root;
    /// other relative paths in it (a locator's) from the model file's folder.
    #[arg(
        id = "inference_model_roots",
        long = "inference-model-roots",
        env = "AIAA_INFERENCE_MODEL_ROOTS",
        value_delimiter = ':'
    )]
    pub model_roots: Vec<PathBuf>,
    /// Largest image accepted inline or from the datastore, and largest uploaded model file,
    /// in bytes.
    #[arg(id = "inference_max_image_bytes", long = "inference-max-image-bytes", env = "AIAA_INFERENCE_MAX_IMAGE_BYTES", default_value_t = 2 << 30)]
    pub max_image_bytes: u64,
    /// Where models run: auto (every CUDA device, else the CPU), cpu, cuda, cuda:N.
    #[arg(
        id = "inference_device",
        long = "inference-device",
        env = "AIAA_INFERENCE_DEVICE",
        default_value = "auto"
    )]
    pub device: String,
    /// libtorch's CPU threads per forward pass (0: libtorch's default, one per core).
    #[arg(
        id = "inference_threads",
        long = "inference-threads",
        env = "AIAA_INFERENCE_THREADS",
        default_value_t = 0
    )]
    pub threads: usize,
    /// Folder for models downloaded from the registry (default: the system's temporary
    /// folder).
    #[arg(
        id = "inference_model_dir",
        long = "inference-model-dir",
        env = "AIAA_INFERENCE_MODEL_DIR"
    )]
    pub model_dir: Option<PathBuf>,
}

impl Default for InferenceArgs {
    fn default() -> Self {
        aiaa_runtime::config::clap_defaults()
    }
}

impl InferenceArgs {
    /// Checks the block; names the flag at fault.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.queue_depth == 0 {
            return Err(RuntimeError::Config {
                flag: "--inference-queue-depth (AIAA_INFERENCE_QUEUE_DEPTH)".into(),
                reason: "must be more than 0".into(),
            });
        }
        if self.max_image_bytes == 0 {
            return Err(RuntimeError::Config {
                flag: "--inference-max-image-bytes (AIAA_INFERENCE_MAX_IMAGE_BYTES)".into(),
                reason: "must be more than 0".into(),
            });
        }
        if self.cache_check_interval.is_zero() {
            return Err(RuntimeError::Config {
                flag: "--inference-cache-check-interval (AIAA_INFERENCE_CACHE_CHECK_INTERVAL)".into(),
                reason: "must be more than 0".into(),
            });
        }
        let limits = self.limits();
        if limits.budget < 64 << 20 {
            return Err(RuntimeError::Config {
                flag: "--inference-memory-budget (AIAA_INFERENCE_MEMORY_BUDGET)".into(),
                reason: format!("{} bytes is below 64 MiB: no request would fit", limits.budget),
            });
        }
        if let Some(p) = &self.engine_pool
            && !p.is_file()
        {
            return Err(RuntimeError::Config {
                flag: "--engine-pool (AIAA_ENGINE_POOL)".into(),
                reason: format!("{} is not a readable file", p.display()),
            });
        }
        Ok(())
    }

    /// The memory limits, `auto` resolved against the memory the process may use.
    pub fn limits(&self) -> Limits {
        Limits::resolve(
            self.memory_budget,
            self.max_request_bytes,
            self.cache_bytes,
            crate::budget::memory_limit(),
            self.memory_wait,
        )
    }

    /// The folders API model loads may read: `--inference-model-roots`, else the engine pool
    /// file's folder and the model folder.
    pub fn model_roots(&self) -> Vec<PathBuf> {
        if !self.model_roots.is_empty() {
            return self.model_roots.clone();
        }
        let mut roots = Vec::new();
        if let Some(pool) = &self.engine_pool {
            roots.push(match pool.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => PathBuf::from("."),
            });
        }
        roots.push(self.model_dir());
        roots
    }

    /// The model folder.
    pub fn model_dir(&self) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("aiaa-inference-models"))
    }
}
