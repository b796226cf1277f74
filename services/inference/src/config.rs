//! The inference service's config block, [`InferenceArgs`]: every flag `long` with an
//! `AIAA_INFERENCE_` (or `AIAA_ENGINE_POOL`) environment variable; flags carry the
//! component's name so an all-in-one binary can flatten several services.

use std::net::SocketAddr;
use std::path::PathBuf;

use aiaa_runtime::RuntimeError;

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
    /// Bytes of decoded session volumes kept in memory (least recently used go first).
    #[arg(id = "inference_cache_bytes", long = "inference-cache-bytes", env = "AIAA_INFERENCE_CACHE_BYTES", default_value_t = 2 << 30)]
    pub cache_bytes: u64,
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
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5103)),
            engine_pool: None,
            datastore_url: "http://127.0.0.1:5102".into(),
            registry_url: "http://127.0.0.1:5101".into(),
            queue_depth: 32,
            cache_bytes: 2 << 30,
            max_image_bytes: 2 << 30,
            device: "auto".into(),
            threads: 0,
            model_dir: None,
        }
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

    /// The model folder.
    pub fn model_dir(&self) -> PathBuf {
        self.model_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("aiaa-inference-models"))
    }
}
