//! Client channels for calls between services and from the CLI. Every call carries the
//! caller's W3C trace context and, when configured, the API key.

use std::time::Duration;

use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::RuntimeError;
use crate::config::Secret;
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

/// Connects to `addr` (`http://host:port` or `host:port`).
pub async fn connect(addr: &str, key: Option<Secret>) -> Result<AiaaChannel, RuntimeError> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    let endpoint = Endpoint::from_shared(uri.clone())
        .map_err(|e| RuntimeError::Connect {
            addr: uri.clone(),
            reason: e.to_string(),
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    let channel = endpoint.connect().await.map_err(|e| RuntimeError::Connect {
        addr: uri,
        reason: format!("{e}: {e:?}"),
    })?;
    Ok(InterceptedService::new(channel, ClientInterceptor::new(key)))
}
