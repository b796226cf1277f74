//! The model registry: an NGC-like catalogue of models named `org/team/name` with immutable
//! string versions, on any object store (the seed's `tlt-pull` talks to it through `aiaa pull`).
//!
//! - [`layout`]: how a catalogue is stored and why a version appears atomically;
//! - [`blob`]: verified, content-addressed file writes;
//! - [`catalogue`]: the transport-agnostic core;
//! - [`service`]: the gRPC adapter; [`start`] serves it.

pub mod blob;
pub mod catalogue;
pub mod error;
pub mod layout;
pub mod service;

use std::net::SocketAddr;

use aiaa_proto::registry::v1::registry_service_server::RegistryServiceServer;
use aiaa_runtime::config::{AuthArgs, GrpcArgs};
use aiaa_runtime::server::{RunningServer, ServerSpec};
use aiaa_runtime::store::Store;
use tokio_util::sync::CancellationToken;

pub use catalogue::Catalogue;
pub use error::RegistryError;

/// The registry's gRPC service name (health, reflection; the generated one).
pub use aiaa_proto::registry::v1::registry_service_server::SERVICE_NAME;

/// The registry's own settings.
#[derive(Clone, Debug, clap::Args)]
pub struct RegistryArgs {
    /// Address the registry listens on (port 0 picks a free one).
    #[arg(
        long = "registry-listen",
        env = "AIAA_REGISTRY_LISTEN",
        default_value = "127.0.0.1:5101"
    )]
    pub addr: SocketAddr,
    /// Largest model version accepted by a push, in bytes (all files together).
    #[arg(long = "max-model-bytes", env = "AIAA_REGISTRY_MAX_MODEL_BYTES", default_value_t = 16 << 30)]
    pub max_model_bytes: u64,
}

/// Starts the registry on `store` until `shutdown` is cancelled.
pub async fn start(
    args: &RegistryArgs,
    store: Store,
    store_name: &str,
    grpc: &GrpcArgs,
    auth: &AuthArgs,
    shutdown: CancellationToken,
) -> Result<RunningServer, aiaa_runtime::RuntimeError> {
    let registry = service::Registry::new(Catalogue::new(store, store_name), args.max_model_bytes);
    let server = RegistryServiceServer::new(registry)
        .max_decoding_message_size(grpc.message.max_message_bytes)
        .max_encoding_message_size(grpc.message.max_message_bytes);
    let spec = ServerSpec {
        component: "registry",
        routes: tonic::service::Routes::new(server),
        service_names: vec![SERVICE_NAME],
        serving_at_start: true,
    };
    aiaa_runtime::server::start(args.addr, spec, grpc, auth, shutdown).await
}
