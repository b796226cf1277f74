//! `POST /infer/{model}`: MONAI Label's inference. The image is the session of
//! `session_id=` (which wins, as in MONAI Label), else the uploaded `file` part, else the
//! datastore image `image=`. `params` are MONAI Label's: `result_extension` (default: the
//! image's own), `result_dtype`, `result_compress`, `save_label` / `label_tag` (store the
//! result as that tag of the datastore image, `original` by default), and for DEXTR3D models
//! (listed as `deepgrow`) the extreme points as `foreground` when `points` is absent. A
//! `label` part is the previous mask of a deepgrow model (`foreground` / `background`
//! clicks refine it); other models refuse one. The
//! answer is MONAI Label's: `output=all` or none: multipart (`params` JSON part first, then
//! the file with its name); `image`: the file with `Content-Disposition`; `json`: the params.
//! The params carry `label_names` (`{label: index}`), which 3D Slicer reads to name segments.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value, json};

use super::object;
use crate::app::App;
use crate::error::{GatewayError, Result};
use crate::labelstore::{self, ORIGINAL};
use crate::params;
use crate::response::{self, Output, ResultAnswer};
use crate::routes::infer::{self, Endpoint, Request, Upload};
use crate::routes::models;
use crate::routes::monailabel::datastore::{LabelData, store_label};

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// MONAI Label's `output=` values.
fn output_of(value: Option<&str>) -> Result<Output> {
    match value.map(str::trim).unwrap_or("") {
        "" | "all" => Ok(Output::Multipart),
        "image" => Ok(Output::Image),
        "json" => Ok(Output::Json),
        "dicom_seg" => Err(bad(
            "output=dicom_seg needs a DICOMweb datastore, which this server does not have: use output=image with result_extension .nrrd or .nii.gz",
        )),
        other => Err(bad(format!(
            "output={other:?} is not understood: use all, image or json"
        ))),
    }
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        _ => false,
    }
}

/// `POST /infer/{model}`.
pub async fn infer(
    State(app): State<App>,
    Path(model): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let query = params::query(raw.as_deref());
    let output = output_of(query.get("output").map(String::as_str))?;
    let form = super::form(&app, &headers, body).await?;
    let mut params = object("params", form.text("params").map_err(bad)?)?;
    let info = models::fetch(&app, "", "")
        .await?
        .into_iter()
        .find(|m| m.name == model)
        .ok_or_else(|| GatewayError::NotFound(format!("model {model:?} is not loaded (see GET /info/)")))?;
    let endpoint = if info.model_type == "annotation" {
        if !params.contains_key("points")
            && let Some(fg) = params.get("foreground").cloned()
        {
            params.insert("points".into(), fg);
        }
        Endpoint::Dextr3d
    } else if info.model_type == "deepgrow" {
        Endpoint::Deepgrow
    } else {
        Endpoint::Inference
    };
    infer::validate(endpoint, &params)?;
    // A `label` part is a deepgrow model's previous mask to refine; other kinds read none
    // (OHIF's scribbles included), so it is refused there, not silently ignored.
    let label_part = form.field("label").filter(|p| p.head.filename.is_some());
    let label = match label_part {
        Some(part) if endpoint == Endpoint::Deepgrow => {
            if part.is_empty() {
                return Err(bad("the label part (the previous mask) is empty"));
            }
            Some((
                part.base_filename().unwrap_or("label.nii.gz").to_string(),
                part.clone(),
            ))
        }
        Some(_) => {
            return Err(bad(format!(
                "model {model:?} ({}) does not take a label part (scribbles or a previous mask): send the request without it",
                info.model_type
            )));
        }
        None => None,
    };

    let session_id = query
        .get("session_id")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let image_id = query
        .get("image")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let save_label = truthy(params.get("save_label"));
    let file_part = form.field("file").filter(|p| p.head.filename.is_some());
    let (image, image_ext) = match (&session_id, file_part, &image_id) {
        (Some(_), _, _) => (None, None),
        (None, Some(part), _) => {
            if part.is_empty() {
                return Err(bad("the uploaded file is empty"));
            }
            let name = part.base_filename().unwrap_or("image.nii.gz").to_string();
            let ext = labelstore::extension(&name).to_string();
            (Some((name, Upload::Part(part.clone()))), Some(ext))
        }
        (None, None, Some(id)) => {
            let object = labelstore::object(&app, id).await?;
            let data = labelstore::get(&app, false, &object.image.item_id).await?;
            (
                Some((object.image.name(), Upload::Bytes(data))),
                Some(object.image.ext.clone()),
            )
        }
        (None, None, None) => {
            return Err(bad(
                "POST /infer/{model} needs an image: image=<datastore id>, session_id=<session>, or a file part named \"file\"",
            ));
        }
    };
    if let Some(ext) = &image_ext
        && !params.contains_key("result_extension")
    {
        params.insert("result_extension".into(), json!(ext));
    }
    let stores = save_label && session_id.is_none() && file_part.is_none() && image_id.is_some();
    let request = Request {
        model: model.clone(),
        session_id,
        // A label to store needs the file whatever the caller asked for.
        output: if stores { Output::Multipart } else { output },
        params_json: Value::Object(params.clone()).to_string(),
        params: params.clone(),
        image,
        label,
    };
    let answer = infer::call(&app, endpoint, request).await?;
    let mut result: Map<String, Value> = serde_json::from_slice(&answer.params).unwrap_or_default();
    result.entry("label_names").or_insert_with(|| {
        Value::Object(
            info.labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), json!(i + 1)))
                .collect(),
        )
    });
    if stores && let (Some(id), Some(file)) = (&image_id, &answer.file) {
        let tag = params
            .get("label_tag")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(ORIGINAL)
            .to_string();
        let label_info: Map<String, Value> = [
            ("model".to_string(), json!(model)),
            ("params".to_string(), Value::Object(result.clone())),
        ]
        .into_iter()
        .collect();
        store_label(
            &app,
            id,
            &tag,
            &file.filename,
            LabelData::Bytes(file.data.clone()),
            label_info,
        )
        .await?;
    }
    let params = Bytes::from(Value::Object(result).to_string());
    Ok(match (output, answer.file) {
        (Output::Image, Some(file)) => response::attachment(&file.filename, file.data),
        (output, file) => ResultAnswer { params, file }.into_response(output),
    })
}
