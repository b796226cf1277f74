//! Optional API-key authentication. When a key is configured, the mutating RPCs a service
//! names must carry `authorization: Bearer <key>`; others stay open (listing, health,
//! reflection, metrics). A wrong or missing key answers UNAUTHENTICATED and names the method.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::config::Secret;

/// Which calls need the key, and the key.
#[derive(Clone, Debug)]
pub struct ApiKeyCheck {
    key: Option<Secret>,
    mutating: Arc<[&'static str]>,
}

impl ApiKeyCheck {
    /// `mutating` lists full gRPC paths (`/pkg.Service/Method`) that need the key.
    pub fn new(key: Option<Secret>, mutating: &[&'static str]) -> Self {
        Self {
            key,
            mutating: mutating.into(),
        }
    }

    /// Whether this request path needs the key.
    pub fn requires(&self, path: &str) -> bool {
        self.key.is_some() && self.mutating.contains(&path)
    }

    /// Whether the headers carry the configured key.
    pub fn accepts(&self, headers: &http::HeaderMap) -> bool {
        let Some(key) = &self.key else { return true };
        let Some(given) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        constant_time_eq(given.as_bytes(), key.expose().as_bytes())
    }
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess
/// was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

    #[test]
    fn key_checks() {
        let check = ApiKeyCheck::new(Some(Secret::new("k1")), &["/s/Push"]);
        assert!(check.requires("/s/Push"));
        assert!(!check.requires("/s/List"));
        let mut headers = http::HeaderMap::new();
        assert!(!check.accepts(&headers));
        headers.insert(http::header::AUTHORIZATION, "Bearer k2".parse().unwrap());
        assert!(!check.accepts(&headers));
        headers.insert(http::header::AUTHORIZATION, "Bearer k1".parse().unwrap());
        assert!(check.accepts(&headers));
        let open = ApiKeyCheck::new(None, &["/s/Push"]);
        assert!(!open.requires("/s/Push"));
    }
}
