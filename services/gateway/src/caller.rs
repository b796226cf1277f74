//! Who a backend call is made for. The authentication middleware ([`crate::auth`]) decides
//! who a REST request is ([`Caller`]: the credentials the gateway forwards and the identity
//! it names) and runs the handler inside [`scope`], a tokio task-local; every backend
//! client goes through [`CallerInterceptor`], which adds that caller's `authorization` and
//! `x-aiaa-client` metadata to each call. Identities:
//!
//! - `key:<first 12 hex digits of sha256(key)>`: a caller that sent the API key (its own
//!   `authorization` value is forwarded);
//! - `anonymous:<peer ip>`: a caller without credentials from a network trusted with
//!   `--gateway-anonymous-from` (the gateway's own key is forwarded for it);
//! - `open:<peer ip>`: no key is configured at all (nothing is forwarded).
//!
//! A backend call made outside a request's scope (a task spawned without [`inherit`])
//! carries neither credentials nor identity: it fails closed (UNAUTHENTICATED when a key is
//! set) instead of running under the gateway's own key.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;

use sha2::{Digest, Sha256};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;

/// The gRPC metadata key naming the client a backend call is made for (the one the
/// services read: [`aiaa_runtime::auth::caller`]).
pub use aiaa_runtime::auth::CLIENT_HEADER;

/// The credentials and identity a request's backend calls carry.
#[derive(Clone)]
pub struct Caller {
    authorization: Option<AsciiMetadataValue>,
    identity: AsciiMetadataValue,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field(
                "authorization",
                &self.authorization.as_ref().map(|_| "<redacted>"),
            )
            .field("identity", &self.identity)
            .finish()
    }
}

/// `key:<first 12 hex digits of sha256(key)>`: names a key without revealing it.
pub fn key_identity(key: &str) -> String {
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    format!("key:{}", &digest[..12])
}

fn ascii(text: &str) -> AsciiMetadataValue {
    // Identities are built from hex digits and IP addresses: always ASCII.
    text.parse()
        .unwrap_or_else(|_| AsciiMetadataValue::from_static("invalid"))
}

fn peer_text(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "unknown".to_string(), |ip| ip.to_string())
}

impl Caller {
    /// A caller that sent the key: its own `authorization` value is forwarded.
    pub fn keyed(authorization: AsciiMetadataValue, identity: AsciiMetadataValue) -> Self {
        let mut authorization = authorization;
        authorization.set_sensitive(true);
        Self {
            authorization: Some(authorization),
            identity,
        }
    }

    /// A caller without credentials from a trusted network: `gateway_key` (the gateway's own
    /// `Bearer <key>`) is forwarded for it.
    pub fn anonymous(peer: IpAddr, gateway_key: AsciiMetadataValue) -> Self {
        let mut authorization = gateway_key;
        authorization.set_sensitive(true);
        Self {
            authorization: Some(authorization),
            identity: ascii(&format!("anonymous:{peer}")),
        }
    }

    /// A caller of a gateway without a key: no credentials.
    pub fn open(peer: Option<IpAddr>) -> Self {
        Self {
            authorization: None,
            identity: ascii(&format!("open:{}", peer_text(peer))),
        }
    }

    /// The identity sent as `x-aiaa-client`.
    pub fn identity(&self) -> &str {
        self.identity.to_str().unwrap_or("invalid")
    }

    /// Whether credentials are forwarded for this caller.
    pub fn has_credentials(&self) -> bool {
        self.authorization.is_some()
    }
}

tokio::task_local! {
    static CALLER: Option<Caller>;
}

/// Runs `fut` with `caller` as the caller of every backend call it makes (on this task).
pub async fn scope<F: Future>(caller: Option<Caller>, fut: F) -> F::Output {
    CALLER.scope(caller, fut).await
}

/// The caller of the request being handled, if any.
pub fn current() -> Option<Caller> {
    CALLER.try_with(Clone::clone).ok().flatten()
}

/// `fut` with the current caller carried over: wrap a future before `tokio::spawn`ing it
/// when it calls a backend (a task-local does not cross into a new task by itself).
pub fn inherit<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let caller = current();
    CALLER.scope(caller, fut)
}

/// Adds the current [`Caller`]'s `authorization` and `x-aiaa-client` to every backend call
/// (nothing outside a request's scope). Runs after the runtime's interceptor, which adds
/// the trace context.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallerInterceptor;

impl Interceptor for CallerInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(caller) = current() {
            if let Some(authorization) = caller.authorization {
                req.metadata_mut().insert("authorization", authorization);
            }
            req.metadata_mut().insert(CLIENT_HEADER, caller.identity);
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intercepted() -> tonic::metadata::MetadataMap {
        CallerInterceptor
            .call(tonic::Request::new(()))
            .unwrap()
            .metadata()
            .clone()
    }

    #[test]
    fn the_key_identity_is_twelve_hex_digits_of_its_sha256() {
        let id = key_identity("matrix-key");
        let full = hex::encode(Sha256::digest(b"matrix-key"));
        assert_eq!(id, format!("key:{}", &full[..12]));
        assert_eq!(id.len(), 4 + 12);
        assert!(!id.contains("matrix"));
    }

    #[tokio::test]
    async fn calls_carry_the_scoped_caller_and_nothing_outside_a_scope() {
        assert!(intercepted().is_empty());
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let anonymous = Caller::anonymous(ip, "Bearer k".parse().unwrap());
        let seen = scope(Some(anonymous), async { intercepted() }).await;
        assert_eq!(seen.get("authorization").unwrap(), "Bearer k");
        assert_eq!(seen.get(CLIENT_HEADER).unwrap(), "anonymous:127.0.0.1");
        let seen = scope(Some(Caller::open(Some(ip))), async { intercepted() }).await;
        assert!(seen.get("authorization").is_none());
        assert_eq!(seen.get(CLIENT_HEADER).unwrap(), "open:127.0.0.1");
        let seen = scope(None, async { intercepted() }).await;
        assert!(seen.is_empty());
    }

    #[tokio::test]
    async fn a_spawned_task_gets_the_caller_only_through_inherit() {
        let caller = Caller::keyed("bearer k".parse().unwrap(), "key:0123456789ab".parse().unwrap());
        assert!(!format!("{caller:?}").contains("bearer k"), "{caller:?}");
        let (bare, inherited) = scope(Some(caller), async {
            let bare = tokio::spawn(async { intercepted() }).await.unwrap();
            let inherited = tokio::spawn(inherit(async { intercepted() })).await.unwrap();
            (bare, inherited)
        })
        .await;
        assert!(bare.is_empty(), "{bare:?}");
        assert_eq!(inherited.get("authorization").unwrap(), "bearer k");
        assert_eq!(inherited.get(CLIENT_HEADER).unwrap(), "key:0123456789ab");
    }
}
