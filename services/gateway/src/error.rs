//! The gateway's one error type, [`GatewayError`], mapped once to HTTP: a JSON body
//! `{"error": {"message": ["..."], "type": "..."}, "success": false, "detail": "..."}` (the
//! AIAA clients' shape, and MONAI Label's `detail`) with an exact
//! Content-Length and the status the AIAA clients expect (400, 401, 404, 408, 413, 429, 440,
//! 503, 507, 500).
//! Backend failures arrive as `tonic::Status` and are mapped by [`GatewayError::from_status`],
//! which knows what the call was about (a NOT_FOUND session is 440, a NOT_FOUND model 404)
//! and reads the datastore's `aiaa-reason` metadata on RESOURCE_EXHAUSTED (`quota`: 429,
//! `insufficient-storage`: 507).

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::response;

/// 440: the session is unknown or expired (the AIAA clients' code for "upload again").
pub const SESSION_EXPIRED: u16 = 440;

/// What can go wrong in the gateway.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed: multipart, params, image, query (400).
    #[error("{0}")]
    BadRequest(String),
    /// An unknown route or model (404).
    #[error("{0}")]
    NotFound(String),
    /// A call without the right API key (401, with `WWW-Authenticate: Bearer realm="aiaa"`).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller has used up its quota (429; the datastore's per-client session quota).
    #[error("{0}")]
    Quota(String),
    /// A task of that kind already runs (429, as MONAI Label answers a second `/train/`).
    #[error("{0}")]
    TaskRunning(String),
    /// The request body is larger than the limit (413).
    #[error(
        "the request body exceeds the limit of {limit} bytes (--gateway-max-body-bytes, AIAA_GATEWAY_MAX_BODY_BYTES)"
    )]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A payload a backend refused as too large (413).
    #[error("{0}")]
    BackendTooLarge(String),
    /// A form field, a list or a count in the request is larger than its limit (413).
    #[error("{0}")]
    FieldTooLarge(String),
    /// The request body arrived too slowly (408).
    #[error("{0}")]
    Timeout(String),
    /// The gateway could not store an upload while handling it (507).
    #[error("{0}")]
    Storage(String),
    /// The session is unknown or has expired (440).
    #[error("{0}")]
    SessionExpired(String),
    /// A backend is down, busy or not configured (503).
    #[error("{message}")]
    Unavailable {
        /// What is unavailable and why.
        message: String,
        /// Seconds after which a retry may succeed (a full queue), sent as `Retry-After`.
        retry_after: Option<u64>,
    },
    /// A bug or an unexpected failure (500).
    #[error("internal error: {0}")]
    Internal(String),
}

/// What a backend call was about, so NOT_FOUND maps to the right answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// A session in the datastore.
    Session,
    /// A model in the inference service.
    Model,
    /// Anything else.
    Other,
}

pub use aiaa_runtime::error::{Exhausted, REASON_KEY};

/// Whether a status stands for a failed connection rather than an answer of the backend.
fn is_transport(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::transport::Error>() || e.is::<std::io::Error>() {
            return true;
        }
        source = e.source();
    }
    false
}

impl GatewayError {
    /// A 503 without a retry hint.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// Maps a backend's gRPC status; `service` names the backend in the message.
    pub fn from_status(service: &str, subject: Subject, status: &tonic::Status) -> Self {
        use tonic::Code;
        let msg = status.message().to_string();
        match status.code() {
            Code::NotFound if subject == Subject::Session => Self::SessionExpired(msg),
            Code::NotFound => Self::NotFound(msg),
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange | Code::AlreadyExists => {
                Self::BadRequest(msg)
            }
            // The backend names the limit: full for now, the caller's quota, or the store's
            // space; without a reason, a size limit.
            Code::ResourceExhausted => match Exhausted::of(status) {
                Some(Exhausted::Busy) => Self::Unavailable {
                    message: format!("the {service} service is busy: {msg}"),
                    retry_after: Some(1),
                },
                Some(Exhausted::Quota) => Self::Quota(format!("the {service} service refused: {msg}")),
                Some(Exhausted::InsufficientStorage) => {
                    Self::Storage(format!("the {service} service is out of storage: {msg}"))
                }
                None => Self::BackendTooLarge(msg),
            },
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                Self::unavailable(format!("the {service} service is unavailable: {msg}"))
            }
            // The call never got an answer because the connection broke under it (the
            // backend's process was just killed): tonic says Unknown "transport error". To
            // the client that is the same as a refused connection: 503.
            Code::Unknown if is_transport(status) => {
                Self::unavailable(format!("the {service} service is unavailable: {msg}"))
            }
            Code::Unauthenticated | Code::PermissionDenied => Self::Internal(format!(
                "the {service} service refused the credentials the gateway forwarded (is --api-key the same on every service?): {msg}"
            )),
            _ => Self::Internal(format!("the {service} service failed: {}: {msg}", status.code())),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Quota(_) | Self::TaskRunning(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::TooLarge { .. } | Self::BackendTooLarge(_) | Self::FieldTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Storage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Self::SessionExpired(_) => StatusCode::from_u16(SESSION_EXPIRED).unwrap_or(StatusCode::NOT_FOUND),
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `type` field of the JSON error.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::Unauthorized(_) => "unauthorized",
            Self::Quota(_) => "quota",
            Self::TaskRunning(_) => "task_running",
            Self::TooLarge { .. } | Self::BackendTooLarge(_) | Self::FieldTooLarge(_) => "too_large",
            Self::Timeout(_) => "timeout",
            Self::Storage(_) => "storage",
            Self::SessionExpired(_) => "session_expired",
            Self::Unavailable { .. } => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), error = %self, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), error = %self, "request refused");
        }
        // `error` and `success` as the AIAA clients read them; `detail` as MONAI Label's.
        let body = serde_json::json!({
            "error": {"message": [self.to_string()], "type": self.kind()},
            "success": false,
            "detail": self.to_string(),
        });
        let mut response = response::json_with_status(status, &body);
        if let Self::Unauthorized(_) = self {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"aiaa\""),
            );
        }
        if let Self::Unavailable {
            retry_after: Some(secs),
            ..
        } = self
        {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, http::HeaderValue::from(secs));
        }
        response
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = GatewayError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let session =
            GatewayError::from_status("datastore", Subject::Session, &tonic::Status::not_found("x"));
        assert_eq!(session.status().as_u16(), 440);
        let model = GatewayError::from_status("inference", Subject::Model, &tonic::Status::not_found("x"));
        assert_eq!(model.status().as_u16(), 404);
        let down = GatewayError::from_status("inference", Subject::Model, &tonic::Status::unavailable("x"));
        assert_eq!(down.status().as_u16(), 503);
        let busy =
            GatewayError::from_status("inference", Subject::Model, &Exhausted::Busy.status("queue full"));
        let response = busy.into_response();
        assert_eq!(response.status().as_u16(), 503);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
        let big = GatewayError::from_status(
            "datastore",
            Subject::Session,
            &tonic::Status::resource_exhausted("x"),
        );
        assert_eq!(big.status().as_u16(), 413);
        let bad =
            GatewayError::from_status("datastore", Subject::Other, &tonic::Status::invalid_argument("x"));
        assert_eq!(bad.status().as_u16(), 400);
    }

    fn exhausted(reason: &str) -> tonic::Status {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(REASON_KEY, reason.parse().unwrap());
        tonic::Status::with_metadata(tonic::Code::ResourceExhausted, "limit reached", metadata)
    }

    #[test]
    fn the_reason_of_resource_exhausted_picks_the_answer() {
        // The datastore's per-client quota: 429, no Retry-After (waiting does not help).
        for service in ["datastore", "inference"] {
            let quota = GatewayError::from_status(service, Subject::Session, &exhausted("quota"));
            assert!(quota.to_string().contains("limit reached"), "{quota}");
            let response = quota.into_response();
            assert_eq!(response.status().as_u16(), 429);
            assert!(response.headers().get(http::header::RETRY_AFTER).is_none());
            // The store is full: 507.
            let full =
                GatewayError::from_status(service, Subject::Session, &exhausted("insufficient-storage"));
            assert_eq!(full.status().as_u16(), 507, "{full}");
        }
        // The answer follows the reason, whichever service gives it; an unknown reason is a
        // size limit.
        for service in ["datastore", "inference"] {
            let other = GatewayError::from_status(service, Subject::Session, &exhausted("other"));
            assert_eq!(other.status().as_u16(), 413);
            let busy = GatewayError::from_status(service, Subject::Model, &exhausted("busy"));
            assert_eq!(busy.status().as_u16(), 503);
        }
    }

    #[test]
    fn unauthorized_names_the_scheme_and_realm() {
        let response = GatewayError::Unauthorized("x needs an API key".into()).into_response();
        assert_eq!(response.status().as_u16(), 401);
        assert_eq!(
            response.headers()[http::header::WWW_AUTHENTICATE],
            "Bearer realm=\"aiaa\""
        );
    }
}
