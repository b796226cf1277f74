//! The inference service: the gRPC adapter over the engines of [`aiaa_engines`] (model
//! configs, device owner threads, `Dextr3dCroppedEngine`, `SegmentationEngine`).
//!
//! - [`models`]: the loaded models; loading from files, uploads or the registry;
//! - [`images`]: inline, datastore and session images, with the session cache;
//! - [`service`]: the tonic adapter with admission control; [`start`] serves it.
//!
//! Health is NOT_SERVING until every model of the engine pool is loaded and has run once
//! (warm), then SERVING.

pub mod budget;
pub mod config;
pub mod error;
pub mod images;
pub mod models;
pub mod service;

use aiaa_engines::{device, engines, pool};

use aiaa_proto::inference::v1::inference_service_server::InferenceServiceServer;
use aiaa_runtime::client;
use aiaa_runtime::config::{AuthArgs, GrpcArgs};
use aiaa_runtime::server::{self, RunningServer, ServerSpec};
use tokio_util::sync::CancellationToken;

pub use config::InferenceArgs;
pub use error::InferenceError;

/// The gRPC service name, as health reports it (the generated one).
pub use aiaa_proto::inference::v1::inference_service_server::SERVICE_NAME;

/// Checks `args` and the engine pool they name without starting anything or loading
/// weights (`aiaa-inference check-config`): the flags, the devices asked for, the pool file,
/// each model config and its engine class. A weight file that is not there yet (a volume
/// mounted later, a registry load) is a warning on stderr, not an error.
pub fn check_config(args: &InferenceArgs) -> Result<(), InferenceError> {
    args.validate()?;
    device::parse_devices(&args.device)?;
    let Some(path) = &args.engine_pool else {
        return Ok(());
    };
    for entry in pool::read_pool(path)? {
        let config = pool::ModelConfig::read(&entry.config_file)?;
        engines::kind_of(&entry.name, &entry.class, &config)
            .map_err(|e| InferenceError::Config(format!("engine pool {}: {e}", path.display())))?;
        if !config.model_path.is_file() {
            eprintln!(
                "warning: model {:?}: {} is not there (yet)",
                entry.name,
                config.model_path.display()
            );
        }
    }
    Ok(())
}

/// Validates `args`, starts the device threads, serves on `args.listen` (NOT_SERVING), loads
/// the engine pool, then reports SERVING. A model of the pool that fails to load stops the
/// start with its error: a server that silently lacks a configured model is worse.
pub async fn start(
    args: &InferenceArgs,
    grpc: &GrpcArgs,
    auth: &AuthArgs,
    shutdown: CancellationToken,
) -> Result<RunningServer, InferenceError> {
    args.validate()?;
    let pool = match &args.engine_pool {
        Some(p) => pool::read_pool(p)?,
        None => Vec::new(),
    };
    let devices = device::Devices::start(&device::parse_devices(&args.device)?, args.threads)?;
    let models = models::Models::new(devices.clone(), args.model_dir(), args.model_roots());
    let (datastore, registry) =
        client::datastore_and_registry(&args.datastore_url, &args.registry_url, auth, &grpc.message)?;
    let limits = args.limits();
    tracing::info!(?limits, "inference memory limits");
    let images = images::Images::new(
        datastore,
        limits.cache,
        args.max_image_bytes,
        args.cache_check_interval,
    );
    let api = service::InferenceApi::new(models.clone(), images, registry, args.queue_depth, limits);
    let server = InferenceServiceServer::new(api)
        .max_decoding_message_size(grpc.message.max_message_bytes)
        .max_encoding_message_size(grpc.message.max_message_bytes);
    let spec = ServerSpec {
        component: "inference",
        routes: tonic::service::Routes::new(server),
        service_names: vec![SERVICE_NAME],
        serving_at_start: false,
    };
    let running = server::start(args.listen, spec, grpc, auth, shutdown).await?;
    tracing::info!(addr = %running.addr, devices = ?devices.names(), "inference listening; loading the engine pool");
    for entry in pool {
        let m = models.clone();
        let name = entry.name.clone();
        tokio::task::spawn_blocking(move || m.load_entry(&entry))
            .await
            .map_err(|e| InferenceError::Internal(format!("loading {name:?}: {e}")))??;
    }
    // The service and the server as a whole ("", what load balancers probe).
    for name in [SERVICE_NAME, ""] {
        running
            .health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    tracing::info!(addr = %running.addr, models = models.list("", "").len(), "inference serving");
    Ok(running)
}
