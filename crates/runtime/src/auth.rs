//! Optional API-key authentication of the gRPC services, deny by default: when a key is
//! configured, every call needs `authorization: Bearer <key>` except the ones that must stay
//! anonymous ([`OPEN_PATHS`]): health (probes cannot send a key), reflection (the contracts
//! are public, in `proto/`) and `/metrics` (counts and latencies, no names or images; a
//! Prometheus scraper without a key keeps working). Reads are protected too: they return
//! patients' images (`Get`, `GetSessionImage`) and model weights (`Download`), and `Infer`
//! runs a model. A new RPC is protected without anyone listing it. A wrong or missing key
//! answers UNAUTHENTICATED and names the method; the scheme is case-insensitive (RFC 7235)
//! and the key is compared in constant time ([`key_matches`], the one compare of the
//! platform: the REST gateway uses it too).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Path prefixes that never need the key.
pub const OPEN_PATHS: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/metrics",
];

/// The key, if one is configured, and which calls need it.
#[derive(Clone, Debug)]
pub struct ApiKeyCheck {
    key: Option<Secret>,
}

impl ApiKeyCheck {
    /// With `key`, every call but [`OPEN_PATHS`] needs it; without, every call is open.
    pub fn new(key: Option<Secret>) -> Self {
        Self { key }
    }

    /// Whether a request to this path needs the key.
    pub fn requires(&self, path: &str) -> bool {
        self.key.is_some() && !OPEN_PATHS.iter().any(|open| path.starts_with(open))
    }

    /// Whether the headers carry the configured key (always, when none is configured).
    pub fn accepts(&self, headers: &http::HeaderMap) -> bool {
        self.key.as_ref().is_none_or(|key| key_matches(headers, key))
    }
}

/// The bearer token of an `authorization` header (scheme in any case, RFC 7235).
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether the headers carry `key` as a bearer token; the compare takes the same time
/// wherever a guess differs, so timing does not reveal how much of it was right.
pub fn key_matches(headers: &http::HeaderMap, key: &Secret) -> bool {
    bearer(headers).is_some_and(|given| secret_matches(given, key))
}

/// Whether `given` is `key`, compared in constant time (a bearer token, or the password of
/// MONAI Label's `/auth/token`).
pub fn secret_matches(given: &str, key: &Secret) -> bool {
    bool::from(given.as_bytes().ct_eq(key.expose().as_bytes()))
}

/// The gRPC metadata key naming the client a call is made for: the REST gateway sends
/// `key:<hash>` for a caller with the API key, `anonymous:<ip>` for a trusted anonymous
/// client, `open:<ip>` when no key is configured.
pub const CLIENT_HEADER: &str = "x-aiaa-client";

/// Longest client name kept (longer ones are cut).
const MAX_CLIENT_LEN: usize = 128;

/// Who a call is made for, as quotas count it and job records keep it: `x-aiaa-client`
/// when present, else `peer:<ip>` of the connection. Whether the caller may make the call
/// at all is the API key's business ([`middleware`]), decided before this is asked.
pub fn caller<T>(request: &tonic::Request<T>) -> String {
    if let Some(name) = request
        .metadata()
        .get(CLIENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        return name.chars().take(MAX_CLIENT_LEN).collect();
    }
    match request.remote_addr() {
        Some(addr) => format!("peer:{}", addr.ip()),
        None => "peer:unknown".into(),
    }
}

/// Axum middleware enforcing [`ApiKeyCheck`].
pub async fn middleware(State(check): State<ApiKeyCheck>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if check.requires(&path) && !check.accepts(req.headers()) {
        let msg = if req.headers().contains_key(http::header::AUTHORIZATION) {
            format!("{path} needs a valid API key: the key given is wrong")
        } else {
            format!("{path} needs an API key: send `authorization: Bearer <key>`")
        };
        tracing::warn!(%path, "rejected call without a valid API key");
        return tonic::Status::unauthenticated(msg).into_http();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn with_a_key_everything_but_health_reflection_and_metrics_needs_it() {
        let check = ApiKeyCheck::new(Some(Secret::new("k1")));
        for path in [
            "/aiaa.registry.v1.RegistryService/Push",
            "/aiaa.registry.v1.RegistryService/List",
            "/aiaa.datastore.v1.DatastoreService/GetSessionImage",
            "/aiaa.some.v9.NewService/NewMethod",
        ] {
            assert!(check.requires(path), "{path}");
        }
        for path in [
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/metrics",
        ] {
            assert!(!check.requires(path), "{path}");
        }
        assert!(!ApiKeyCheck::new(None).requires("/aiaa.registry.v1.RegistryService/Push"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_key_exact() {
        let check = ApiKeyCheck::new(Some(Secret::new("k1")));
        assert!(!check.accepts(&http::HeaderMap::new()));
        for ok in ["Bearer k1", "bearer k1", "BEARER k1", "  Bearer   k1 "] {
            assert!(check.accepts(&headers(ok)), "{ok:?}");
        }
        for bad in ["Bearer k2", "Bearer k1x", "Bearer k", "Basic k1", "k1", "Bearer"] {
            assert!(!check.accepts(&headers(bad)), "{bad:?}");
        }
        assert!(ApiKeyCheck::new(None).accepts(&http::HeaderMap::new()));
    }
}
