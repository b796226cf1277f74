//! Sessions: `PUT /session/` uploads an image once (spooled, its header checked, then
//! streamed to the datastore's CreateSession in 1 MiB chunks); `GET /session/{id}` describes it
//! (`update_ts=true` pushes its expiry forward by its own lifetime); `DELETE` removes it.
//! MONAI Label's clients send a DICOM series instead, as one or more `files` parts: they are
//! assembled into one `.nii.gz` image here (under the decode limit) and stored the same way.
//! An unknown or expired session answers 440.

use std::collections::HashMap;

use aiaa_proto::datastore::v1::{
    CreateSessionRequest, RefreshSessionRequest, Session, SessionHeader, SessionRef,
};
use aiaa_proto::framed;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use http::HeaderMap;

use futures::future::Either;

use crate::app::{App, ParamsKind};
use crate::backend::timed;
use crate::error::{GatewayError, Result, Subject};
use crate::form::Form;
use crate::routes::infer::upload_chunks;
use crate::{image, params, response, work};

/// Metadata key keeping the lifetime a session was created with.
const EXPIRY_KEY: &str = "expiry_seconds";
/// Metadata key keeping the uploaded file's name.
const FILENAME_KEY: &str = "filename";

fn ds_err(status: tonic::Status) -> GatewayError {
    GatewayError::from_status("datastore", Subject::Session, &status)
}

/// The session's JSON description.
fn describe(session: &Session) -> serde_json::Value {
    let image = session.image.clone().unwrap_or_default();
    let expiry: u64 = session
        .metadata
        .get(EXPIRY_KEY)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let meta: serde_json::Map<String, serde_json::Value> = session
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != EXPIRY_KEY && k.as_str() != FILENAME_KEY)
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "session_id": session.id,
        "name": session.metadata.get(FILENAME_KEY).cloned().unwrap_or_default(),
        "expiry": expiry,
        "created_at": session.created_at,
        "expires_at": session.expires_at,
        "image": {"format": image.format, "size": image.size, "sha256": image.sha256},
        "meta": meta,
    })
}

/// The `expiry=` query value in seconds, shortened to the configured maximum.
fn expiry(app: &App, query: &HashMap<String, String>) -> Result<u64> {
    let asked = match query.get("expiry").map(|s| s.trim()) {
        None | Some("") => 0,
        Some(v) => {
            let secs = v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .ok_or_else(|| {
                    GatewayError::BadRequest(format!(
                        "expiry={v:?} must be a number of seconds (0: the server default)"
                    ))
                })?;
            secs.ceil() as u64
        }
    };
    Ok(asked.min(app.session_max_expiry.as_secs()))
}

/// `PUT /session/`.
pub async fn create(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let query = params::query(raw.as_deref());
    let expiry = expiry(&app, &query)?;
    // MONAI Label's `uncompress=true` unpacks archives; no client sends it (Slicer and the
    // Python client send the files themselves), so it is refused rather than ignored.
    if params::flag(&query, "uncompress")? {
        return Err(GatewayError::BadRequest(
            "uncompress=true (an uploaded archive) is not supported: send the series' files as `files` parts"
                .into(),
        ));
    }
    let form = app.form(&headers, body, ParamsKind::Small).await?;
    let (filename, size, chunks) = upload(&form, app.max_image_bytes).await?;

    let mut metadata = HashMap::new();
    metadata.insert(FILENAME_KEY.to_string(), filename.clone());
    metadata.insert(EXPIRY_KEY.to_string(), expiry.to_string());
    let header = SessionHeader {
        expiry_seconds: expiry,
        filename,
        metadata,
        size,
        sha256: String::new(),
    };
    let stream = framed::send::<CreateSessionRequest>(header, chunks);
    let mut client = app.backends.datastore.clone();
    let session = timed("datastore", app.backends.timeout, async move {
        client.create_session(stream).await.map_err(ds_err)
    })
    .await?
    .into_inner();
    let mut answer = describe(&session);
    answer["success"] = serde_json::Value::Bool(true);
    // MONAI Label's clients read `session_id` and `session_info` (its SessionInfo shape).
    let now = crate::labelstore::now_ts();
    answer["session_info"] = serde_json::json!({
        "name": session.id, "path": "", "image": answer["name"], "meta": {},
        "create_ts": now, "last_access_ts": now, "expiry": expiry,
    });
    Ok(response::json(&answer))
}

/// The session's image from the form: its name, size and bytes.
async fn upload(
    form: &Form,
    max_bytes: u64,
) -> Result<(
    String,
    u64,
    impl futures::Stream<Item = bytes::Bytes> + Send + 'static,
)> {
    let files = form.all("files");
    let is_series = files.len() > 1 || files.first().is_some_and(image::is_dicom);
    Ok(if is_series {
        // MONAI Label's shape: the files of a DICOM series, assembled here into one volume
        // so the session holds one image, as an AIAA session does.
        let nifti = work::cpu(move || image::dicom_series(&files, max_bytes)).await?;
        let size = nifti.len() as u64;
        let chunks = Either::Left(crate::labelstore::chunks(nifti));
        ("series.nii.gz".to_string(), size, chunks)
    } else {
        let part = form.image().ok_or_else(|| {
            GatewayError::BadRequest(
                "the form has no image part (send the file as field \"image\" or \"datapoint\", or a DICOM series as \"files\" parts)".into(),
            )
        })?;
        if part.is_empty() {
            return Err(GatewayError::BadRequest("the uploaded image is empty".into()));
        }
        let filename = part.base_filename().unwrap_or("image.nii.gz").to_string();
        // Refuse an unreadable image now, not at its first use: its header is checked (format,
        // grid, decoded size under the decode limit). Its voxels are decoded where they are used
        // (the inference service, under its budget), never here: an upload costs the gateway
        // disk, not memory.
        let (name, upload) = (filename.clone(), part.clone());
        work::cpu(move || image::probe(Some(&name), &upload)).await?;
        (filename, part.len(), Either::Right(upload_chunks(part)))
    })
}

/// `GET /session/{id}`.
pub async fn info(
    State(app): State<App>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let query = params::query(raw.as_deref());
    let refresh = query
        .get("update_ts")
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
    let mut client = app.backends.datastore.clone();
    let timeout = app.backends.timeout;
    let session = timed("datastore", timeout, async {
        client
            .get_session(SessionRef { id: id.clone() })
            .await
            .map_err(ds_err)
    })
    .await?
    .into_inner();
    let session = if refresh {
        let lifetime = session
            .metadata
            .get(EXPIRY_KEY)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        timed("datastore", timeout, async {
            client
                .refresh_session(RefreshSessionRequest {
                    id: id.clone(),
                    expiry_seconds: lifetime,
                })
                .await
                .map_err(ds_err)
        })
        .await?
        .into_inner()
    } else {
        session
    };
    Ok(response::json(&describe(&session)))
}

/// `DELETE /session/{id}`.
pub async fn delete(State(app): State<App>, Path(id): Path<String>) -> Result<Response> {
    let mut client = app.backends.datastore.clone();
    let deleted = timed("datastore", app.backends.timeout, async {
        client
            .delete_session(SessionRef { id: id.clone() })
            .await
            .map_err(ds_err)
    })
    .await?
    .into_inner()
    .deleted;
    if !deleted {
        return Err(GatewayError::SessionExpired(format!(
            "session {id:?} not found (it may have expired)"
        )));
    }
    Ok(response::json(
        &serde_json::json!({"session_id": id, "deleted": true, "success": true}),
    ))
}
