//! The model endpoints: `/v1/segmentation`, `/v1/dextr3d`, `/v1/deepgrow` and
//! `/v1/inference`. Each validates its input (multipart, params, an image or a session,
//! points as numbers, at least 6 extreme points for dextr3d, click lists for deepgrow), then
//! streams the request to the inference service's Infer and answers multipart params + mask
//! (or `output=image|json`). Deepgrow also takes a `label` part: the previous mask to refine
//! (on a session, the last answer is kept by the server and need not be sent).
//! Without an inference service the validated request answers 503 naming that.

use std::collections::HashMap;

use aiaa_proto::datastore::v1::SessionRef;
use aiaa_proto::framed::{self, FrameError};
use aiaa_proto::inference::v1::{InferHeader, InferRequest, InferResponse, infer_header};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::HeaderMap;
use serde_json::{Map, Value};

use crate::app::{App, ParamsKind};
use crate::backend::timed;
use crate::error::{GatewayError, Result, Subject};
use crate::form::{Form, Part};
use crate::geometry::{self, MAX_SPATIAL_SIZE};
use crate::params;
use crate::response::{Output, ResultAnswer, ResultFile};

/// Which endpoint was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/segmentation`.
    Segmentation,
    /// `/v1/dextr3d`.
    Dextr3d,
    /// `/v1/deepgrow`.
    Deepgrow,
    /// `/v1/inference`.
    Inference,
}

impl Endpoint {
    /// The model type it needs (`None`: any).
    fn model_type(self) -> Option<&'static str> {
        match self {
            Endpoint::Segmentation => Some("segmentation"),
            Endpoint::Dextr3d => Some("annotation"),
            Endpoint::Deepgrow => Some("deepgrow"),
            Endpoint::Inference => None,
        }
    }
}

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// Checks the params an endpoint needs.
pub fn validate(endpoint: Endpoint, p: &Map<String, Value>) -> Result<()> {
    match endpoint {
        Endpoint::Dextr3d => {
            let points = p.get("points").ok_or_else(|| {
                bad("params.points is missing: dextr3d needs at least 6 extreme points [[x,y,z], ...]")
            })?;
            let points = params::points("points", points, 3)?;
            if points.len() < 6 {
                return Err(bad(format!(
                    "dextr3d needs at least 6 extreme points; params.points has {}",
                    points.len()
                )));
            }
        }
        Endpoint::Deepgrow => {
            // Both lists may be empty or absent: background clicks alone correct a kept
            // mask, and no clicks at all ask for the automatic answer; the engine decides.
            for key in ["foreground", "background"] {
                if let Some(list) = p.get(key) {
                    let list = params::lenient(list);
                    if !matches!(list.as_ref(), Value::Array(a) if a.is_empty()) {
                        params::points(key, &list, 3)?;
                    }
                }
            }
            if let Some(cp) = p.get("current_point") {
                let cp = params::points("current_point", cp, 3)?;
                if cp.len() != 1 {
                    return Err(bad("current_point must be one point [x, y, z]"));
                }
            }
            if let Some(size) = p.get("spatial_size") {
                let size = params::lenient(size);
                let Value::Array(dims) = size.as_ref() else {
                    return Err(bad("spatial_size must be a list of sizes, e.g. [128, 128, 128]"));
                };
                if dims.is_empty() || dims.len() > 3 {
                    return Err(bad(format!(
                        "spatial_size must have 2 or 3 sizes (e.g. [128, 128, 128]), not {}",
                        dims.len()
                    )));
                }
                for (i, d) in dims.iter().enumerate() {
                    let n = params::index(&format!("spatial_size[{i}]"), d)?;
                    if n == 0 || n > MAX_SPATIAL_SIZE {
                        return Err(bad(format!(
                            "spatial_size[{i}] = {n} must be 1 to {MAX_SPATIAL_SIZE}"
                        )));
                    }
                }
            }
        }
        Endpoint::Segmentation | Endpoint::Inference => {}
    }
    Ok(())
}

/// Where a request's image comes from besides a session.
pub enum Upload {
    /// A part of the request (spooled or in memory).
    Part(Part),
    /// Bytes the gateway holds (an item of the datastore).
    Bytes(Bytes),
}

/// A validated model request.
pub struct Request {
    /// The model to run.
    pub model: String,
    /// The session holding the image, when no image is uploaded.
    pub session_id: Option<String>,
    /// The answer's shape.
    pub output: Output,
    /// The params, parsed.
    pub params: Map<String, Value>,
    /// The params' JSON object text, forwarded as sent (never re-serialised).
    pub params_json: String,
    /// The image's file name and its bytes.
    pub image: Option<(String, Upload)>,
    /// A previous mask to refine (deepgrow's `label` part): its file name and bytes.
    pub label: Option<(String, Part)>,
}

async fn read(
    app: &App,
    endpoint: Endpoint,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Request> {
    let model = query
        .get("model")
        .map(|m| m.trim().to_string())
        .unwrap_or_default();
    if model.is_empty() {
        return Err(bad(
            "model= is missing from the query: name the model to run (see GET /v1/models)",
        ));
    }
    let session_id = query
        .get("session_id")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let output = Output::parse(query.get("output").map(String::as_str)).map_err(bad)?;
    let has_body = headers.contains_key(http::header::CONTENT_TYPE);
    let form = if has_body || session_id.is_none() {
        app.form(headers, body, ParamsKind::Small).await?
    } else {
        Form::default()
    };
    let text = form.text("params").map_err(bad)?;
    let params = params::parse(text)?;
    validate(endpoint, &params)?;
    let params_json = geometry::object_text(text)?.into_owned();
    let image = match (form.image(), &session_id) {
        (Some(part), _) => {
            if part.is_empty() {
                return Err(bad("the uploaded image is empty"));
            }
            let name = part.base_filename().unwrap_or("image.nii.gz").to_string();
            Some((name, Upload::Part(part.clone())))
        }
        (None, Some(_)) => None,
        (None, None) => {
            return Err(bad(
                "the form has no image part (send the file as field \"image\" or \"datapoint\") and no session_id= was given",
            ));
        }
    };
    let label = match form.field("label") {
        Some(part) if endpoint == Endpoint::Deepgrow => {
            if part.is_empty() {
                return Err(bad("the label part (the previous mask) is empty"));
            }
            let name = part.base_filename().unwrap_or("label.nii.gz").to_string();
            Some((name, part.clone()))
        }
        _ => None,
    };
    Ok(Request {
        model,
        session_id,
        output,
        params,
        params_json,
        image,
        label,
    })
}

async fn run(app: &App, endpoint: Endpoint, req: Request) -> Result<Response> {
    let output = req.output;
    Ok(call(app, endpoint, req).await?.into_response(output))
}

/// Runs a validated request on the inference service; the answer's params and file.
pub async fn call(app: &App, endpoint: Endpoint, req: Request) -> Result<ResultAnswer> {
    let mut client = app.backends.inference()?;
    if let Some(id) = &req.session_id {
        let mut ds = app.backends.datastore.clone();
        ds.get_session(SessionRef { id: id.clone() })
            .await
            .map_err(|s| GatewayError::from_status("datastore", Subject::Session, &s))?;
    }
    let result_extension = req
        .params
        .get("result_extension")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let image = match (&req.image, &req.session_id) {
        (Some((name, _)), _) => infer_header::Image::Filename(name.clone()),
        (None, Some(id)) => infer_header::Image::SessionId(id.clone()),
        (None, None) => return Err(bad("no image and no session")),
    };
    let header = InferHeader {
        model: req.model.clone(),
        image: Some(image),
        params_json: req.params_json.clone(),
        output: if req.output == Output::Json {
            "json"
        } else {
            "image"
        }
        .to_string(),
        result_extension,
        // Inference checks the model exists and is of this kind (one call, not two).
        model_type: endpoint.model_type().unwrap_or_default().to_string(),
        label_filename: req.label.as_ref().map(|(n, _)| n.clone()).unwrap_or_default(),
        label_size: req.label.as_ref().map_or(0, |(_, p)| p.len()),
    };
    let chunks = match &req.image {
        Some((_, Upload::Part(part))) => upload_chunks(part).left_stream(),
        Some((_, Upload::Bytes(data))) => crate::labelstore::chunks(data.clone())
            .left_stream()
            .right_stream(),
        None => futures::stream::empty().right_stream().right_stream(),
    };
    // A label part follows the image's bytes (see the header's label_size).
    let chunks = match &req.label {
        Some((_, part)) => chunks.chain(upload_chunks(part)).left_stream(),
        None => chunks.right_stream(),
    };
    let stream = framed::send::<InferRequest>(header, chunks);
    let err = |s: &tonic::Status| GatewayError::from_status("inference", Subject::Model, s);
    // The answer: an error status from the service is its error; a broken framing is ours.
    let answer_error = |e: &FrameError| match e.status() {
        Some(status) => err(status),
        None => GatewayError::Internal(format!("the inference service's answer: {e}")),
    };
    let answer = timed("inference", app.backends.timeout, async move {
        let answer = client.infer(stream).await.map_err(|s| err(&s))?.into_inner();
        let (result, mut body) = framed::receive::<InferResponse, _>(answer)
            .await
            .map_err(|e| answer_error(&e))?;
        let mut file = BytesMut::new();
        while let Some(piece) = body.next().await {
            file.extend_from_slice(&piece.map_err(|e| answer_error(&e))?);
        }
        if result.size != file.len() as u64 {
            return Err(GatewayError::Internal(format!(
                "the inference service announced {} result bytes and sent {}",
                result.size,
                file.len()
            )));
        }
        Ok((result, file.freeze()))
    })
    .await?;
    let (result, bytes) = answer;
    // The inference service's params JSON goes out as it came (checked to be JSON).
    let params = if serde_json::from_str::<serde::de::IgnoredAny>(&result.params_json).is_ok() {
        Bytes::from(result.params_json)
    } else {
        Bytes::from_static(b"{}")
    };
    let file = (!result.filename.is_empty()).then(|| ResultFile {
        filename: result
            .filename
            .rsplit('/')
            .next()
            .unwrap_or("result.nii.gz")
            .to_string(),
        data: bytes,
    });
    Ok(ResultAnswer { params, file })
}

/// A part's bytes in gRPC chunks; a spool file that cannot be read ends the stream early
/// (the backend then refuses the short upload) and is logged.
pub fn upload_chunks(part: &Part) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    part.chunks(aiaa_proto::CHUNK_SIZE)
        .take_while(|piece| {
            if let Err(e) = piece {
                tracing::error!(error = %e, "reading a spooled upload failed");
            }
            std::future::ready(piece.is_ok())
        })
        .filter_map(|piece| std::future::ready(piece.ok()))
}

async fn handle(
    app: App,
    endpoint: Endpoint,
    raw: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let query = params::query(raw.as_deref());
    let req = read(&app, endpoint, &query, &headers, body).await?;
    // Boxed: the inference call's future (its streams, the label part) is large, and the
    // route futures stay small.
    Box::pin(run(&app, endpoint, req)).await
}

/// `POST /v1/segmentation`.
pub async fn segmentation(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    handle(app, Endpoint::Segmentation, raw, headers, body).await
}

/// `POST /v1/dextr3d`.
pub async fn dextr3d(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    handle(app, Endpoint::Dextr3d, raw, headers, body).await
}

/// `POST /v1/deepgrow`.
pub async fn deepgrow(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    handle(app, Endpoint::Deepgrow, raw, headers, body).await
}

/// `POST /v1/inference`.
pub async fn inference(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    handle(app, Endpoint::Inference, raw, headers, body).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn dextr3d_needs_six_numeric_points() {
        let six = json!({"points": "[[1,2,3],[4,5,6],[7,8,9],[1,2,3],[4,5,6],[7,8,9]]"});
        assert!(validate(Endpoint::Dextr3d, &map(six)).is_ok());
        let five = json!({"points": [[1,2,3],[4,5,6],[7,8,9],[1,2,3],[4,5,6]]});
        let err = validate(Endpoint::Dextr3d, &map(five)).unwrap_err().to_string();
        assert!(err.contains("at least 6") && err.contains("has 5"), "{err}");
        let nan = json!({"points": [[1,2,"x"],[4,5,6],[7,8,9],[1,2,3],[4,5,6],[7,8,9]]});
        assert!(
            validate(Endpoint::Dextr3d, &map(nan))
                .unwrap_err()
                .to_string()
                .contains("number")
        );
        assert!(
            validate(Endpoint::Dextr3d, &map(json!({})))
                .unwrap_err()
                .to_string()
                .contains("points")
        );
    }

    #[test]
    fn deepgrow_points() {
        let ok = json!({"foreground": [[1,2,3]], "background": [], "current_point": [[1,2,3]], "spatial_size": [128,128,128]});
        assert!(validate(Endpoint::Deepgrow, &map(ok)).is_ok());
        // No clicks, or background clicks alone: the engine decides (automatic answer,
        // correcting a kept mask).
        assert!(validate(Endpoint::Deepgrow, &map(json!({"foreground": []}))).is_ok());
        assert!(validate(Endpoint::Deepgrow, &map(json!({"background": [[1, 2, 3]]}))).is_ok());
        let word = json!({"background": [[1, 2, "x"]]});
        assert!(validate(Endpoint::Deepgrow, &map(word)).is_err());
        let bad_size = json!({"foreground": [[1,2,3]], "spatial_size": [0]});
        assert!(validate(Endpoint::Deepgrow, &map(bad_size)).is_err());
        let huge = json!({"foreground": [[1,2,3]], "spatial_size": [100000, 128, 128]});
        let err = validate(Endpoint::Deepgrow, &map(huge)).unwrap_err().to_string();
        assert!(err.contains("spatial_size[0]") && err.contains("2048"), "{err}");
        let far = json!({"foreground": [[1,2,1e300]]});
        let err = validate(Endpoint::Deepgrow, &map(far)).unwrap_err().to_string();
        assert!(err.contains("foreground[0][2]"), "{err}");
    }
}
