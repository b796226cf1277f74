//! REST authentication at the edge, the same decision as the gRPC services'
//! (`aiaa_runtime::auth`): when an API key is configured, every route of
//! [`crate::app::ROUTES`] needs `Authorization: Bearer <key>` (scheme in any case, key
//! compared in constant time) except the [`Access::Open`] ones: `/livez`, `/readyz` (probes
//! cannot send a key) and `/metrics` (counts only). A refusal is 401 with
//! `WWW-Authenticate: Bearer realm="aiaa"` and the gateway's JSON error naming the route and
//! whether the key was missing or wrong. Unknown routes keep their 404.
//!
//! NVIDIA's AIAA clients (the 3D Slicer, MITK and OHIF plugins) send no credentials: a
//! request *without* an `Authorization` header to an [`Access::Annotate`] route is served
//! when its peer address (from the gateway's own accept loop, never from a header) is inside
//! a network of `--gateway-anonymous-from` (default: none). Such a caller runs under the
//! gateway's own key; a wrong key is refused from a trusted network too, and the admin API
//! ([`Access::Admin`]) always needs the key. Who the caller is travels to the backends
//! through [`crate::caller`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use aiaa_runtime::auth::{bearer, key_matches};
use aiaa_runtime::config::Secret;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use ipnet::IpNet;
use tonic::metadata::AsciiMetadataValue;

use crate::caller::{self, Caller};
use crate::error::{GatewayError, Result};

/// Who may call a route when an API key is configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anybody: the probes and the metrics.
    Open,
    /// The key, or no credentials at all from a trusted network (the AIAA annotation API).
    Annotate,
    /// The key, always (the admin API).
    Admin,
}

/// Parses one network of `--gateway-anonymous-from`: CIDR (`10.0.0.0/8`, `fd00::/8`; host
/// bits are cleared) or a single address (`192.168.1.7`, a /32 or /128).
pub fn parse_network(text: &str) -> std::result::Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    Err(format!(
        "{text:?} is not a network: write CIDR such as 10.20.0.0/16 or 127.0.0.1/32, or one address"
    ))
}

/// The networks of `--gateway-anonymous-from`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Networks(pub Vec<IpNet>);

/// Parses `--gateway-anonymous-from`: networks separated by commas ([`parse_network`]);
/// empty (or only commas and spaces) is no network.
pub fn parse_networks(text: &str) -> std::result::Result<Networks, String> {
    text.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(parse_network)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map(Networks)
}

/// The authentication settings every route shares.
pub struct Gate {
    key: Option<Secret>,
    /// `x-aiaa-client` of callers that sent the key.
    key_identity: AsciiMetadataValue,
    /// `Bearer <key>`: what trusted anonymous callers are forwarded with.
    gateway_key: Option<AsciiMetadataValue>,
    trusted: Vec<IpNet>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("key", &self.key)
            .field("trusted", &self.trusted)
            .finish()
    }
}

impl Gate {
    /// With `key`, every route but the open ones needs it, except that callers without
    /// credentials from `trusted` may annotate.
    pub fn new(key: Option<Secret>, trusted: Vec<IpNet>) -> Result<Self> {
        let gateway_key = key
            .as_ref()
            .map(|k| {
                format!("Bearer {}", k.expose())
                    .parse::<AsciiMetadataValue>()
                    .map_err(|_| {
                        GatewayError::Internal(
                            "the API key has characters a header cannot carry (--api-key, AIAA_API_KEY)"
                                .into(),
                        )
                    })
            })
            .transpose()?;
        let key_identity = key
            .as_ref()
            .map_or_else(|| "open".to_string(), |k| caller::key_identity(k.expose()))
            .parse()
            .map_err(|_| GatewayError::Internal("key identity".into()))?;
        Ok(Self {
            key,
            key_identity,
            gateway_key,
            trusted,
        })
    }

    /// The configured API key.
    pub fn key(&self) -> Option<&Secret> {
        self.key.as_ref()
    }

    /// Whether `peer` is inside a trusted network.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.trusted.iter().any(|net| net.contains(&peer))
    }

    /// Who a request to `route` (`METHOD /path`, for the message) is, or why it is refused.
    /// `None`: no caller (an open route while a key is configured: no credentials forwarded).
    pub fn admit(
        &self,
        access: Access,
        route: &str,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<Option<Caller>> {
        let peer = peer.map(|ip| ip.to_canonical());
        let (Some(key), Some(gateway_key)) = (&self.key, &self.gateway_key) else {
            return Ok(Some(Caller::open(peer)));
        };
        if access == Access::Open {
            return Ok(None);
        }
        let Some(given) = headers.get(http::header::AUTHORIZATION) else {
            return match peer {
                Some(ip) if access == Access::Annotate && self.trusts(ip) => {
                    Ok(Some(Caller::anonymous(ip, gateway_key.clone())))
                }
                Some(ip) if self.trusts(ip) => Err(GatewayError::Unauthorized(format!(
                    "{route} needs an API key, also from a network trusted for anonymous annotation: send `Authorization: Bearer <key>`"
                ))),
                _ => Err(GatewayError::Unauthorized(format!(
                    "{route} needs an API key: send `Authorization: Bearer <key>`"
                ))),
            };
        };
        if key_matches(headers, key) {
            // bearer() read it as visible ASCII, so it is a valid metadata value.
            let value = given
                .to_str()
                .ok()
                .and_then(|v| v.parse::<AsciiMetadataValue>().ok())
                .ok_or_else(|| GatewayError::Internal("authorization value".into()))?;
            return Ok(Some(Caller::keyed(value, self.key_identity.clone())));
        }
        if bearer(headers).is_none() {
            return Err(GatewayError::Unauthorized(format!(
                "{route} needs an API key: send `Authorization: Bearer <key>` (the Authorization header given is not a Bearer token)"
            )));
        }
        Err(GatewayError::Unauthorized(format!(
            "{route} needs a valid API key: the key given is wrong"
        )))
    }
}

/// What one route's middleware knows: the shared gate, the route's access and its name.
#[derive(Clone, Debug)]
pub struct Guard {
    /// The shared settings.
    pub gate: Arc<Gate>,
    /// Who may call the route.
    pub access: Access,
    /// `METHOD /path`, for messages.
    pub route: &'static str,
}

/// The peer address of the connection a request came on, set by [`crate::conn`].
fn peer(req: &Request) -> Option<IpAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Axum middleware: admits the request ([`Gate::admit`]) and runs the handler with its
/// caller in scope, or answers 401.
pub async fn middleware(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    match guard
        .gate
        .admit(guard.access, guard.route, req.headers(), peer(&req))
    {
        Ok(caller) => caller::scope(caller, next.run(req)).await,
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(http::header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn gate(trusted: &[&str]) -> Gate {
        Gate::new(
            Some(Secret::new("k1")),
            trusted.iter().map(|t| parse_network(t).unwrap()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn networks_parse_as_cidr_or_one_address() {
        assert_eq!(parse_network("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            parse_network(" 192.168.1.7 ").unwrap().to_string(),
            "192.168.1.7/32"
        );
        assert_eq!(parse_network("fd00::1/8").unwrap().to_string(), "fd00::/8");
        let nets = parse_networks(" 10.20.0.0/16, 127.0.0.1,").unwrap();
        assert_eq!(
            nets.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10.20.0.0/16", "127.0.0.1/32"]
        );
        assert_eq!(parse_networks("").unwrap(), Networks::default());
        let err = parse_networks("127.0.0.1/32,10.0.0/8").unwrap_err();
        assert!(err.contains("\"10.0.0/8\""), "{err}");
        for bad in ["10.0.0/8", "10.0.0.0/33", "localhost", "", "10.0.0.0/"] {
            let err = parse_network(bad).unwrap_err();
            assert!(err.contains(&format!("{:?}", bad.trim())), "{err}");
        }
    }

    #[test]
    fn without_a_key_everybody_is_an_open_caller() {
        let g = Gate::new(None, Vec::new()).unwrap();
        for access in [Access::Open, Access::Annotate, Access::Admin] {
            let c = g
                .admit(access, "GET /x", &headers(None), ip("10.1.1.1"))
                .unwrap()
                .unwrap();
            assert_eq!(c.identity(), "open:10.1.1.1");
            assert!(!c.has_credentials());
        }
    }

    #[test]
    fn with_a_key_the_key_or_a_trusted_anonymous_caller() {
        let g = gate(&["127.0.0.0/8"]);
        // Open routes: anybody, nothing forwarded.
        assert!(
            g.admit(Access::Open, "GET /livez", &headers(None), ip("10.1.1.1"))
                .unwrap()
                .is_none()
        );
        // The key, in any scheme case.
        for ok in ["Bearer k1", "bearer k1", "BEARER  k1"] {
            for access in [Access::Annotate, Access::Admin] {
                let c = g
                    .admit(access, "GET /x", &headers(Some(ok)), ip("10.1.1.1"))
                    .unwrap()
                    .unwrap();
                assert_eq!(c.identity(), caller::key_identity("k1"));
                assert!(c.has_credentials());
            }
        }
        // No credentials from a trusted network: annotation yes, admin no.
        let c = g
            .admit(Access::Annotate, "PUT /session", &headers(None), ip("127.0.0.1"))
            .unwrap()
            .unwrap();
        assert_eq!(c.identity(), "anonymous:127.0.0.1");
        // IPv4-mapped IPv6 (a dual-stack listener) is the same address.
        let c = g
            .admit(
                Access::Annotate,
                "PUT /session",
                &headers(None),
                ip("::ffff:127.0.0.9"),
            )
            .unwrap()
            .unwrap();
        assert_eq!(c.identity(), "anonymous:127.0.0.9");
        let e = g
            .admit(
                Access::Admin,
                "PUT /admin/model/{name}",
                &headers(None),
                ip("127.0.0.1"),
            )
            .unwrap_err();
        assert_eq!(e.status().as_u16(), 401);
        assert!(e.to_string().contains("also from a network trusted"), "{e}");
        // No credentials from elsewhere, or no known peer.
        for peer in [ip("10.0.0.1"), None] {
            let e = g
                .admit(Access::Annotate, "PUT /session", &headers(None), peer)
                .unwrap_err();
            assert!(
                e.to_string()
                    .contains("needs an API key: send `Authorization: Bearer <key>`"),
                "{e}"
            );
        }
        // A wrong key or another scheme: refused, from a trusted network too.
        let e = g
            .admit(
                Access::Annotate,
                "GET /v1/models",
                &headers(Some("Bearer k2")),
                ip("127.0.0.1"),
            )
            .unwrap_err();
        assert!(e.to_string().contains("the key given is wrong"), "{e}");
        let e = g
            .admit(
                Access::Annotate,
                "GET /v1/models",
                &headers(Some("Basic k1")),
                ip("127.0.0.1"),
            )
            .unwrap_err();
        assert!(e.to_string().contains("not a Bearer token"), "{e}");
        let answer = e.into_response();
        assert_eq!(answer.status().as_u16(), 401);
        assert_eq!(
            answer.headers()[http::header::WWW_AUTHENTICATE],
            "Bearer realm=\"aiaa\""
        );
    }
}
