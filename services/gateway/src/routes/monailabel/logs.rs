//! `GET /logs/?lines=N` (admin): the gateway's most recent log lines as plain text (300 by
//! default, as MONAI Label; `lines=0` gives all that are kept, up to
//! [`aiaa_runtime::recent_logs::CAPACITY`]). MONAI Label's HTML viewer (`html=true`) loads
//! scripts from public CDNs; this answer is always the text it would show.

use axum::extract::RawQuery;
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;

use crate::error::{GatewayError, Result};
use crate::{params, response};

/// `GET /logs/`.
pub async fn get(RawQuery(raw): RawQuery) -> Result<Response> {
    let query = params::query(raw.as_deref());
    let lines = match query.get("lines").map(|s| s.trim()) {
        None | Some("") => 300,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| GatewayError::BadRequest(format!("lines={v:?} must be a whole number of lines")))?,
    };
    let lines = if lines == 0 { usize::MAX } else { lines };
    let text = aiaa_runtime::recent_logs::last(lines);
    Ok(response::bytes(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        Bytes::from(text),
    ))
}
