//! The gRPC backends the gateway translates to: the datastore (sessions) and, when
//! configured, the inference service (models), the trainer and the registry (MONAI Label's
//! `/train/`). Channels connect lazily and reconnect by
//! themselves, so the gateway starts while a backend is still down and recovers when it
//! comes back without a restart of its own. Every call carries the trace context (the
//! runtime's `ClientInterceptor`, given no key) and the credentials and `x-aiaa-client`
//! identity of the REST caller it is made for ([`CallerInterceptor`], see [`crate::caller`]):
//! the gateway has no credentials of its own on these channels.

use std::time::Duration;

use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::inference::v1::inference_service_client::InferenceServiceClient;
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_proto::trainer::v1::trainer_service_client::TrainerServiceClient;
use aiaa_runtime::client::AiaaChannel;
use tonic::service::interceptor::InterceptedService;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::caller::CallerInterceptor;
use crate::error::{GatewayError, Result};

/// The datastore's gRPC service name, as its health reports it.
pub use aiaa_proto::datastore::v1::datastore_service_server::SERVICE_NAME as DATASTORE_SERVICE;
/// The inference service's gRPC service name, as its health reports it.
pub use aiaa_proto::inference::v1::inference_service_server::SERVICE_NAME as INFERENCE_SERVICE;

/// A backend channel: trace context, then the current caller's credentials and identity.
pub type BackendChannel = InterceptedService<AiaaChannel, CallerInterceptor>;

/// A lazily connecting channel to `addr` (`http://host:port` or `host:port`).
pub fn lazy_channel(addr: &str) -> Result<BackendChannel> {
    let channel = aiaa_runtime::client::lazy(addr, None)
        .map_err(|e| GatewayError::Internal(format!("backend address: {e}")))?;
    Ok(InterceptedService::new(channel, CallerInterceptor))
}

/// The gateway's backends.
#[derive(Clone)]
pub struct Backends {
    /// The datastore.
    pub datastore: DatastoreServiceClient<BackendChannel>,
    /// Its health.
    pub datastore_health: HealthClient<BackendChannel>,
    /// The inference service, when configured.
    pub inference: Option<InferenceServiceClient<BackendChannel>>,
    /// Its health, when configured.
    pub inference_health: Option<HealthClient<BackendChannel>>,
    /// The trainer, when configured (MONAI Label's `/train/`).
    pub trainer: Option<TrainerServiceClient<BackendChannel>>,
    /// The registry, when configured (where `/train/` publishes).
    pub registry: Option<RegistryServiceClient<BackendChannel>>,
    /// How long one backend call may take.
    pub timeout: Duration,
}

impl Backends {
    /// Channels to the configured backends (nothing is connected yet).
    pub fn new(
        datastore_url: &str,
        inference_url: Option<&str>,
        timeout: Duration,
        max_message_bytes: usize,
    ) -> Result<Self> {
        let ds = lazy_channel(datastore_url)?;
        let (inference, inference_health) = match inference_url {
            Some(url) => {
                let channel = lazy_channel(url)?;
                (
                    Some(
                        InferenceServiceClient::new(channel.clone())
                            .max_decoding_message_size(max_message_bytes)
                            .max_encoding_message_size(max_message_bytes),
                    ),
                    Some(HealthClient::new(channel)),
                )
            }
            None => (None, None),
        };
        Ok(Self {
            datastore: aiaa_runtime::client::datastore(ds.clone(), max_message_bytes),
            datastore_health: HealthClient::new(ds),
            inference,
            inference_health,
            trainer: None,
            registry: None,
            timeout,
        })
    }

    /// Adds the trainer and the registry, when configured.
    pub fn with_training(mut self, trainer_url: Option<&str>, registry_url: Option<&str>) -> Result<Self> {
        self.trainer = trainer_url
            .map(|u| lazy_channel(u).map(TrainerServiceClient::new))
            .transpose()?;
        self.registry = registry_url
            .map(|u| lazy_channel(u).map(RegistryServiceClient::new))
            .transpose()?;
        Ok(self)
    }

    /// The trainer and registry clients, or 503 naming the missing configuration.
    pub fn training(
        &self,
    ) -> Result<(
        TrainerServiceClient<BackendChannel>,
        RegistryServiceClient<BackendChannel>,
    )> {
        match (&self.trainer, &self.registry) {
            (Some(t), Some(r)) => Ok((t.clone(), r.clone())),
            (None, _) => Err(GatewayError::unavailable(
                "training is not configured: start the gateway with --trainer-url (AIAA_TRAINER_URL)",
            )),
            (_, None) => Err(GatewayError::unavailable(
                "training is not configured: start the gateway with --registry-url (AIAA_REGISTRY_URL)",
            )),
        }
    }

    /// The inference client, or 503 naming the missing configuration.
    pub fn inference(&self) -> Result<InferenceServiceClient<BackendChannel>> {
        self.inference.clone().ok_or_else(|| {
            GatewayError::unavailable(
                "inference service not configured: start the gateway with --inference-url (AIAA_INFERENCE_URL)",
            )
        })
    }

    /// Whether the datastore answers health SERVING (within one second).
    pub async fn datastore_ready(&self) -> std::result::Result<(), String> {
        serving(self.datastore_health.clone(), DATASTORE_SERVICE, "datastore").await
    }

    /// Whether the inference service, when configured, answers health SERVING (its models
    /// are loaded); `Ok(false)` when none is configured.
    pub async fn inference_ready(&self) -> std::result::Result<bool, String> {
        match &self.inference_health {
            None => Ok(false),
            Some(h) => serving(h.clone(), INFERENCE_SERVICE, "inference service")
                .await
                .map(|()| true),
        }
    }
}

async fn serving(
    mut health: HealthClient<BackendChannel>,
    service: &str,
    what: &str,
) -> std::result::Result<(), String> {
    let check = health.check(HealthCheckRequest {
        service: service.to_string(),
    });
    match tokio::time::timeout(Duration::from_secs(1), check).await {
        Err(_) => Err(format!("the {what} did not answer its health check within 1 s")),
        Ok(Err(status)) => Err(format!("the {what} is unreachable: {}", status.message())),
        Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
        Ok(Ok(_)) => Err(format!(
            "the {what} reports NOT_SERVING (still loading its models?)"
        )),
    }
}

/// Runs a backend call under the configured timeout; a timeout answers 503.
pub async fn timed<T>(service: &str, timeout: Duration, call: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(timeout, call).await.unwrap_or_else(|_| {
        Err(GatewayError::unavailable(format!(
            "the {service} service did not answer within {} (--gateway-backend-timeout)",
            humantime::format_duration(timeout)
        )))
    })
}
