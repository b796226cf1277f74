//! Client channels for calls between services and from the CLI. Every call carries the
//! caller's W3C trace context and, when configured, the API key.
//!
//! The clients of the datastore and the registry are built here too ([`datastore`],
//! [`registry`]; [`datastore_and_registry`] for a service that reads its inputs from both),
//! so every caller sets the message limit the same way.

use std::time::Duration;

use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use tonic::codegen::{Body, Bytes, StdError};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::RuntimeError;
use crate::config::{AuthArgs, MessageArgs, Secret};
use crate::telemetry;

/// Adds trace context and the API key to every outgoing call.
#[derive(Clone, Debug, Default)]
pub struct ClientInterceptor {
    key: Option<Secret>,
}

impl ClientInterceptor {
    /// An interceptor sending `key` (if any) as a bearer token.
    pub fn new(key: Option<Secret>) -> Self {
        Self { key }
    }
}

impl Interceptor for ClientInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        telemetry::inject(req.metadata_mut());
        if let Some(key) = &self.key {
            let value = format!("Bearer {}", key.expose()).parse().map_err(|_| {
                tonic::Status::invalid_argument("the API key has characters a header cannot carry")
            })?;
            req.metadata_mut().insert("authorization", value);
        }
        Ok(req)
    }
}

/// A channel whose calls go through [`ClientInterceptor`].
pub type AiaaChannel = InterceptedService<Channel, ClientInterceptor>;

fn endpoint(addr: &str, connect_timeout: Duration) -> Result<Endpoint, RuntimeError> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Ok(Endpoint::from_shared(uri.clone())
        .map_err(|e| RuntimeError::Connect {
            addr: uri,
            reason: e.to_string(),
        })?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true))
}

/// Connects to `addr` (`http://host:port` or `host:port`).
pub async fn connect(addr: &str, key: Option<Secret>) -> Result<AiaaChannel, RuntimeError> {
    let endpoint = endpoint(addr, Duration::from_secs(5))?;
    let channel = endpoint.connect().await.map_err(|e| RuntimeError::Connect {
        addr: addr.to_string(),
        reason: format!("{e}: {e:?}"),
    })?;
    Ok(InterceptedService::new(channel, ClientInterceptor::new(key)))
}

/// A channel to `addr` that connects on first use and reconnects by itself, so a service
/// starts while its backend is still down and recovers when it comes back without a
/// restart of its own. Connecting gives up after one second (the call fails UNAVAILABLE).
pub fn lazy(addr: &str, key: Option<Secret>) -> Result<AiaaChannel, RuntimeError> {
    let endpoint = endpoint(addr, Duration::from_secs(1))?;
    Ok(InterceptedService::new(
        endpoint.connect_lazy(),
        ClientInterceptor::new(key),
    ))
}

/// A channel the generated gRPC clients run over (the bounds their `new` asks for): an
/// [`AiaaChannel`], or a caller's own layer over one, such as the gateway's.
pub trait ClientChannel:
    tonic::client::GrpcService<
        tonic::body::Body,
        Error: Into<StdError>,
        ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
    >
{
}

impl<T> ClientChannel for T where
    T: tonic::client::GrpcService<
            tonic::body::Body,
            Error: Into<StdError>,
            ResponseBody: Body<Data = Bytes, Error: Into<StdError> + Send> + Send + 'static,
        >
{
}

/// The datastore's client over `channel`, sending and accepting messages up to
/// `max_message_bytes` (the `--max-message-bytes` of [`MessageArgs`]: "sent or accepted").
pub fn datastore<T: ClientChannel>(channel: T, max_message_bytes: usize) -> DatastoreServiceClient<T> {
    let client = DatastoreServiceClient::new(channel);
    client
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

/// The registry's client over `channel`, messages limited as [`datastore`]'s are.
pub fn registry<T: ClientChannel>(channel: T, max_message_bytes: usize) -> RegistryServiceClient<T> {
    let client = RegistryServiceClient::new(channel);
    client
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes)
}

/// A service's clients of the datastore and the registry (inference, the trainer): [`lazy`]
/// channels, so the service starts while they are down, carrying `auth`'s API key, with the
/// service's own message limit.
pub fn datastore_and_registry(
    datastore_url: &str,
    registry_url: &str,
    auth: &AuthArgs,
    message: &MessageArgs,
) -> Result<
    (
        DatastoreServiceClient<AiaaChannel>,
        RegistryServiceClient<AiaaChannel>,
    ),
    RuntimeError,
> {
    Ok((
        datastore(
            lazy(datastore_url, auth.api_key.clone())?,
            message.max_message_bytes,
        ),
        registry(
            lazy(registry_url, auth.api_key.clone())?,
            message.max_message_bytes,
        ),
    ))
}
