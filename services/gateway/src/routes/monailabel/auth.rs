//! MONAI Label's auth routes over the gateway's API key. `GET /auth/` says whether a key is
//! configured (`enabled`); the clients then log in with `POST /auth/token`, an OAuth2
//! password grant (`application/x-www-form-urlencoded` `username`, `password`): the password
//! is the API key, and the token answered is the key itself, sent back as `Authorization:
//! Bearer <token>` (any case of `bearer`). A wrong password is 400 `invalid_grant`, as
//! OAuth2 answers (MONAI Label answers 500). `GET /auth/token/valid`
//! (behind the key like every annotation route) answers who the caller is. Without a key
//! `/auth/` answers `enabled: false` and the clients send nothing (served always: older 3D
//! Slicer modules fail on a 404 there).

use aiaa_runtime::auth::secret_matches;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use serde_json::json;

use super::{USER, form};
use crate::app::App;
use crate::error::{GatewayError, Result};
use crate::response;

/// MONAI Label's roles, all held by a caller with the key.
const ROLES: [&str; 4] = [
    "monailabel-admin",
    "monailabel-reviewer",
    "monailabel-annotator",
    "monailabel-user",
];

/// `GET /auth/`.
pub async fn status(State(app): State<App>) -> Result<Response> {
    Ok(response::json(&json!({
        "enabled": app.gate.key().is_some(),
        "client_id": "aiaa",
        "realm": "",
    })))
}

/// `POST /auth/token`.
pub async fn token(State(app): State<App>, headers: HeaderMap, body: Body) -> Result<Response> {
    let Some(key) = app.gate.key() else {
        return Err(GatewayError::NotFound(
            "authentication is disabled on this server (no API key is configured): send requests without a token".into(),
        ));
    };
    let form = form(&app, &headers, body).await?;
    let field = |name: &str| form.text(name).ok().flatten().unwrap_or("").to_string();
    if let Some(grant) = form.text("grant_type").ok().flatten()
        && !grant.is_empty()
        && grant != "password"
    {
        return Err(GatewayError::BadRequest(format!(
            "grant_type {grant:?} is not supported: use password"
        )));
    }
    let password = field("password");
    if password.is_empty() || !secret_matches(&password, key) {
        // OAuth2's answer to a wrong password is 400 invalid_grant (RFC 6749 5.2), not 401:
        // nothing was refused for missing credentials, a grant was not given.
        return Err(GatewayError::BadRequest(
            "invalid_grant: POST /auth/token: wrong username or password (the password is the server's API key)".into(),
        ));
    }
    Ok(response::json(
        &json!({"access_token": key.expose(), "token_type": "bearer"}),
    ))
}

/// `GET /auth/token/valid`.
pub async fn valid() -> Result<Response> {
    Ok(response::json(&json!({
        "username": USER,
        "email": "",
        "name": USER,
        "roles": ROLES,
    })))
}
