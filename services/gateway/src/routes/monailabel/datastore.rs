//! `/datastore/...`: MONAI Label's datastore routes, each with its own query parameter names
//! as MONAI Label 0.8.5 declares them (`PUT /datastore/image?image=`, `DELETE ...?id=`, `GET
//! /datastore/label?label=&tag=`, `HEAD /datastore/label?image=&tag=`, `DELETE
//! /datastore/label?id=&tag=`; info as the form field `info`, or `params` for the deprecated
//! `/datastore/updatelabelinfo`). Downloads carry `Content-Disposition` with the file name
//! (the Python client fails without it). Uploads are checked before they are stored: an
//! image's header must parse; a label must lie on its image's grid (size, spacing and origin).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value, json};

use super::{USER, form, object, required};
use crate::app::App;
use crate::error::{GatewayError, Result};
use crate::form::Part;
use crate::labelstore::{self, Entry, FINAL};
use crate::routes::infer::upload_chunks;
use crate::{image, params, response, work};

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

fn query(raw: Option<String>) -> HashMap<String, String> {
    params::query(raw.as_deref())
}

/// The tag of a request (`final` when absent or empty).
fn tag_of(query: &HashMap<String, String>) -> Result<String> {
    let tag = query
        .get("tag")
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .unwrap_or(FINAL);
    labelstore::check_name("tag", tag)?;
    Ok(tag.to_string())
}

fn entry_json(e: &Entry) -> Value {
    json!({"ext": e.ext, "info": e.info})
}

/// `GET /datastore/?output=stats|all|train`.
pub async fn list(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response> {
    let query = query(raw);
    let objects = labelstore::objects(&app).await?;
    match query.get("output").map(|s| s.trim()).unwrap_or("stats") {
        "" | "stats" => Ok(response::json(&labelstore::stats(&objects))),
        "all" => Ok(response::json(&all_objects(&objects))),
        "train" => Ok(response::json(&Value::Array(
            objects
                .values()
                .filter_map(|o| {
                    let label = o.labels.get(FINAL)?;
                    Some(json!({"image": o.image.item_id, "label": label.item_id}))
                })
                .collect(),
        ))),
        other => Err(bad(format!(
            "output={other:?} is not understood: use stats, all or train"
        ))),
    }
}

/// The datastore's objects as MONAI Label describes them (`output=all`, and the
/// `metadata.json` of the dataset archive).
pub fn all_objects(objects: &std::collections::BTreeMap<String, labelstore::Object>) -> Value {
    let all: Map<String, Value> = objects
        .iter()
        .map(|(id, o)| {
            let labels: Map<String, Value> =
                o.labels.iter().map(|(t, e)| (t.clone(), entry_json(e))).collect();
            (
                id.clone(),
                json!({"image": entry_json(&o.image), "labels": labels}),
            )
        })
        .collect();
    json!({
        "name": "aiaa",
        "description": "the platform's datastore",
        "images_dir": labelstore::PREFIX,
        "labels_dir": labelstore::PREFIX,
        "objects": all,
    })
}

/// The uploaded file part named `field`, not empty.
fn file_part<'a>(form: &'a crate::form::Form, field: &str, route: &str) -> Result<&'a Part> {
    let part = form
        .field(field)
        .filter(|p| p.head.filename.is_some())
        .ok_or_else(|| bad(format!("{route} needs the file as the form field {field:?}")))?;
    if part.is_empty() {
        return Err(bad(format!("the uploaded {field} is empty")));
    }
    Ok(part)
}

/// `PUT /datastore/image?image=ID` (and the deprecated `PUT /datastore/?image=`): the
/// `file` part (its name gives the id when `image=` is absent) with `params` as its info.
/// Several `file` parts, or one DICOM file, are a DICOM series (a folder a user picked):
/// assembled into one `.nii.gz` volume under the decode limit and stored as `<ID>.nii.gz`,
/// `image=` naming it.
pub async fn put_image(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let query = query(raw);
    let form = form(&app, &headers, body).await?;
    let part = file_part(&form, "file", "PUT /datastore/image")?;
    let files = form.all("file");
    let named = query.get("image").map(|s| s.trim()).filter(|s| !s.is_empty());
    let mut info = object("params", form.text("params").map_err(bad)?)?;
    let (id, ext, data, size) = if files.len() > 1 || image::is_dicom(part) {
        let id = named
            .ok_or_else(|| bad("PUT /datastore/image: name a DICOM series' image with image=<id>"))?
            .to_string();
        labelstore::check_name("image id", &id)?;
        let count = files.len();
        let max_bytes = app.max_image_bytes;
        let nifti = work::cpu(move || image::dicom_series(&files, max_bytes)).await?;
        info.insert("dicom_files".into(), json!(count));
        let size = nifti.len() as u64;
        let data = futures::future::Either::Left(labelstore::chunks(nifti));
        (id, ".nii.gz".to_string(), data, size)
    } else {
        let filename = part.head.filename.clone().unwrap_or_default();
        let id = named
            .unwrap_or_else(|| labelstore::id_from_filename(&filename))
            .to_string();
        labelstore::check_name("image id", &id)?;
        let ext = labelstore::extension(&filename).to_string();
        let (name, upload) = (format!("{id}{ext}"), part.clone());
        work::cpu(move || image::probe(Some(&name), &upload)).await?;
        let data = futures::future::Either::Right(upload_chunks(part));
        (id, ext, data, part.len())
    };
    info.entry("user").or_insert_with(|| json!(USER));
    info.insert("ts".into(), json!(labelstore::now_ts()));
    info.insert("name".into(), json!(format!("{id}{ext}")));
    let previous = labelstore::objects(&app).await?.remove(&id).map(|o| o.image);
    let name = labelstore::Name {
        id: &id,
        tag: None,
        ext: &ext,
    };
    labelstore::put(&app, name, &info, data, size, previous.as_ref()).await?;
    Ok(response::json(&json!({ "image": id })))
}

/// `DELETE /datastore/image?id=ID` (and the deprecated `DELETE /datastore/?id=`): the image
/// and all its labels.
pub async fn delete_image(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response> {
    let query = query(raw);
    let id = required(&query, "id", "DELETE /datastore/image")?;
    let object = labelstore::object(&app, id).await?;
    for label in object.labels.values() {
        labelstore::delete(&app, true, &label.item_id).await?;
    }
    labelstore::delete(&app, false, &object.image.item_id).await?;
    Ok(response::json(&json!({})))
}

/// An empty 200 (HEAD).
fn found() -> Response {
    response::bytes(StatusCode::OK, "application/json", Bytes::new())
}

/// `HEAD /datastore/image?image=ID[&check_sum=SHA256:HEX]`.
pub async fn head_image(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response> {
    let query = query(raw);
    let id = required(&query, "image", "HEAD /datastore/image")?;
    let object = labelstore::object(&app, id).await?;
    if let Some(sum) = query.get("check_sum").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let digest = sum
            .strip_prefix("SHA256:")
            .or_else(|| sum.strip_prefix("sha256:"))
            .unwrap_or(sum);
        if !digest.eq_ignore_ascii_case(&object.image.sha256) {
            return Err(GatewayError::NotFound(format!(
                "image {id:?} is stored with another checksum (SHA256:{})",
                object.image.sha256
            )));
        }
    }
    Ok(found())
}

/// `GET /datastore/image?image=ID`: the file, named `<id><ext>`.
pub async fn get_image(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response> {
    let query = query(raw);
    let id = required(&query, "image", "GET /datastore/image")?;
    let object = labelstore::object(&app, id).await?;
    let data = labelstore::get(&app, false, &object.image.item_id).await?;
    Ok(response::attachment(&object.image.name(), data))
}

/// The info of an image as MONAI Label answers it, with its checksum (`SHA256:<hex>`).
pub fn image_info(e: &Entry) -> Map<String, Value> {
    let mut info = e.info.clone();
    info.insert("checksum".into(), json!(format!("SHA256:{}", e.sha256)));
    info
}

/// `GET /datastore/image/info?image=ID` (`{}` for an unknown id, as MONAI Label answers).
pub async fn get_image_info(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response> {
    let query = query(raw);
    let id = required(&query, "image", "GET /datastore/image/info")?;
    labelstore::check_name("image id", id)?;
    let objects = labelstore::objects(&app).await?;
    Ok(response::json(&Value::Object(
        objects.get(id).map(|o| image_info(&o.image)).unwrap_or_default(),
    )))
}

/// `PUT /datastore/image/info?image=ID`, form field `info`: merged into the image's info.
pub async fn put_image_info(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let query = query(raw);
    let id = required(&query, "image", "PUT /datastore/image/info")?.to_string();
    let form = form(&app, &headers, body).await?;
    let update = object("info", form.text("info").map_err(bad)?)?;
    let object = labelstore::object(&app, &id).await?;
    let mut info = object.image.info.clone();
    info.extend(update);
    info.insert("user".into(), json!(USER));
    labelstore::set_info(&app, false, &object.image.item_id, &info).await?;
    Ok(response::json(&Value::Null))
}

/// Checks that a label lies on its image's grid: same size, spacing and origin (to 1e-3
/// mm), direction cosines within 1e-4.
fn same_grid(image: &aiaa_imaging::io::ImageInfo, label: &aiaa_imaging::io::ImageInfo) -> Result<()> {
    let (g, h) = (&image.geometry, &label.geometry);
    let close = |a: &[f64], b: &[f64], tol: f64| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol);
    let direction_ok = (0..3).all(|r| close(&g.direction[r], &h.direction[r], 1e-4));
    if image.dims != label.dims
        || !close(&g.spacing, &h.spacing, 1e-3)
        || !close(&g.origin, &h.origin, 1e-3)
        || !direction_ok
    {
        return Err(bad(format!(
            "the label is not on its image's grid: label {:?} voxels of {:?} mm at {:?}, image {:?} voxels of {:?} mm at {:?}",
            label.dims, h.spacing, h.origin, image.dims, g.spacing, g.origin
        )));
    }
    Ok(())
}

/// Stores `part` as the label of `tag` of image `id` with `info`, after checking it is a
/// readable volume on the image's grid. Shared by `PUT /datastore/label` and inferences
/// that save their result.
pub async fn store_label(
    app: &App,
    id: &str,
    tag: &str,
    filename: &str,
    label: LabelData,
    mut info: Map<String, Value>,
) -> Result<()> {
    let object = labelstore::object(app, id).await?;
    let mut ext = labelstore::extension(filename).to_string();
    let image_bytes = labelstore::get(app, false, &object.image.item_id).await?;
    let mut label = label;
    if ext == ".bin" {
        let (image_name, image_bytes) = (object.image.name(), image_bytes.clone());
        let raw = label;
        let nifti = work::cpu(move || raw_label_to_nifti(&image_name, &image_bytes, &raw)).await?;
        label = LabelData::Bytes(nifti.into());
        ext = ".nii.gz".to_string();
    }
    let (image_name, label_name) = (object.image.name(), format!("{id}{ext}"));
    let probe_label = label.clone();
    work::cpu(move || -> Result<()> {
        let image = aiaa_imaging::io::probe_bytes(&image_name, &image_bytes).map_err(|e| {
            GatewayError::Internal(format!("the stored image {image_name:?} cannot be read: {e}"))
        })?;
        let label = match &probe_label {
            LabelData::Part(part) => image::probe(Some(&label_name), part)?,
            LabelData::Bytes(b) => aiaa_imaging::io::probe_bytes(&label_name, b)
                .map_err(|e| bad(format!("the label could not be read: {e}")))?,
        };
        same_grid(&image, &label)
    })
    .await?;
    info.insert("ts".into(), json!(labelstore::now_ts()));
    info.insert("name".into(), json!(format!("{id}{ext}")));
    let previous = object.labels.get(tag);
    let name = labelstore::Name {
        id,
        tag: Some(tag),
        ext: &ext,
    };
    match label {
        LabelData::Part(part) => {
            let size = part.len();
            labelstore::put(app, name, &info, upload_chunks(&part), size, previous).await?
        }
        LabelData::Bytes(b) => {
            let size = b.len() as u64;
            labelstore::put(app, name, &info, labelstore::chunks(b), size, previous).await?
        }
    };
    Ok(())
}

/// OHIF's label: raw voxels (`label.bin`) in the image's voxel order (i fastest, as MONAI
/// Label's `binary_to_image` reads them), one byte per voxel (uint8) or two (uint16, little
/// endian, OHIF v2), given the stored image's grid and encoded as `.nii.gz`. Any other
/// length is refused naming both sizes, before anything is allocated.
fn raw_label_to_nifti(image_name: &str, image_bytes: &[u8], raw: &LabelData) -> Result<Vec<u8>> {
    let image = aiaa_imaging::io::probe_bytes(image_name, image_bytes).map_err(|e| {
        GatewayError::Internal(format!("the stored image {image_name:?} cannot be read: {e}"))
    })?;
    let voxels = image.voxel_count();
    let len = match raw {
        LabelData::Part(part) => part.len(),
        LabelData::Bytes(b) => b.len() as u64,
    };
    let width = match len {
        n if n == voxels => 1,
        n if n == voxels.saturating_mul(2) => 2,
        n => {
            return Err(bad(format!(
                "the raw label has {n} bytes but its image {image_name:?} has {voxels} voxels ({:?}): send {voxels} bytes (uint8) or {} (uint16)",
                image.dims,
                voxels.saturating_mul(2)
            )));
        }
    };
    let bytes = match raw {
        LabelData::Part(part) => part
            .read_blocking()
            .map_err(|e| GatewayError::Internal(format!("the uploaded label cannot be read: {e}")))?,
        LabelData::Bytes(b) => b.clone(),
    };
    let data = if width == 1 {
        aiaa_imaging::Voxels::U8(bytes.to_vec())
    } else {
        aiaa_imaging::Voxels::U16(
            bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect(),
        )
    };
    let volume = aiaa_imaging::Volume::scalar(image.dims, image.geometry, data)
        .map_err(|e| bad(format!("the raw label does not fit its image: {e}")))?;
    aiaa_imaging::io::encode_bytes(&volume, ".nii.gz", false)
        .map_err(|e| GatewayError::Internal(format!("the label cannot be encoded: {e}")))
}

/// A label's bytes: an uploaded part or a result the gateway holds.
#[derive(Clone)]
pub enum LabelData {
    /// Uploaded.
    Part(Part),
    /// Held in memory.
    Bytes(Bytes),
}

/// `PUT /datastore/label?image=ID&tag=TAG` (tag `final` by default): the `label` part with
/// `params` as its info.
pub async fn put_label(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let query = query(raw);
    let id = required(&query, "image", "PUT /datastore/label")?.to_string();
    labelstore::check_name("image id", &id)?;
    let tag = tag_of(&query)?;
    let form = form(&app, &headers, body).await?;
    let part = file_part(&form, "label", "PUT /datastore/label")?;
    let filename = part.head.filename.clone().unwrap_or_default();
    let info = object("params", form.text("params").map_err(bad)?)?;
    store_label(&app, &id, &tag, &filename, LabelData::Part(part.clone()), info).await?;
    Ok(response::json(&json!({"image": id, "label": id})))
}

/// The label of `tag` of image `id`, or 404 naming both.
async fn label_entry(app: &App, id: &str, tag: &str) -> Result<Entry> {
    labelstore::check_name("tag", tag)?;
    let object = labelstore::object(app, id).await?;
    object
        .labels
        .get(tag)
        .cloned()
        .ok_or_else(|| GatewayError::NotFound(format!("image {id:?} has no label of tag {tag:?}")))
}

/// `GET /datastore/label?label=ID&tag=TAG`: the file, named `<id><ext>`.
pub async fn get_label(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response> {
    let query = query(raw);
    let id = required(&query, "label", "GET /datastore/label")?;
    let tag = required(&query, "tag", "GET /datastore/label")?;
    let entry = label_entry(&app, id, tag).await?;
    let data = labelstore::get(&app, true, &entry.item_id).await?;
    Ok(response::attachment(&entry.name(), data))
}

/// `HEAD /datastore/label?image=ID&tag=TAG` (MONAI Label names the id `image` here).
pub async fn head_label(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response> {
    let query = query(raw);
    let id = required(&query, "image", "HEAD /datastore/label")?;
    let tag = required(&query, "tag", "HEAD /datastore/label")?;
    label_entry(&app, id, tag).await?;
    Ok(found())
}

/// `DELETE /datastore/label?id=ID&tag=TAG` (200 also when there was none, as MONAI Label).
pub async fn delete_label(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response> {
    let query = query(raw);
    let id = required(&query, "id", "DELETE /datastore/label")?;
    let tag = required(&query, "tag", "DELETE /datastore/label")?;
    labelstore::check_name("tag", tag)?;
    let object = labelstore::object(&app, id).await?;
    if let Some(entry) = object.labels.get(tag) {
        labelstore::delete(&app, true, &entry.item_id).await?;
    }
    Ok(response::json(&json!({})))
}

/// `GET /datastore/label/info?label=ID&tag=TAG` (`{}` when there is none).
pub async fn get_label_info(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response> {
    let query = query(raw);
    let id = required(&query, "label", "GET /datastore/label/info")?;
    let tag = required(&query, "tag", "GET /datastore/label/info")?;
    labelstore::check_name("image id", id)?;
    labelstore::check_name("tag", tag)?;
    let objects = labelstore::objects(&app).await?;
    let info = objects
        .get(id)
        .and_then(|o| o.labels.get(tag))
        .map(|e| e.info.clone())
        .unwrap_or_default();
    Ok(response::json(&Value::Object(info)))
}

async fn update_label_info(
    app: &App,
    raw: Option<String>,
    headers: &HeaderMap,
    body: Body,
    field: &str,
    route: &str,
) -> Result<Response> {
    let query = query(raw);
    let id = required(&query, "label", route)?.to_string();
    let tag = required(&query, "tag", route)?.to_string();
    let form = form(app, headers, body).await?;
    let update = object(field, form.text(field).map_err(bad)?)?;
    let entry = label_entry(app, &id, &tag).await?;
    let mut info = entry.info.clone();
    info.extend(update);
    info.insert("user".into(), json!(USER));
    labelstore::set_info(app, true, &entry.item_id, &info).await?;
    Ok(response::json(&Value::Null))
}

/// `PUT /datastore/label/info?label=ID&tag=TAG`, form field `info`.
pub async fn put_label_info(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    update_label_info(&app, raw, &headers, body, "info", "PUT /datastore/label/info").await
}

/// `PUT /datastore/updatelabelinfo?label=ID&tag=TAG` (deprecated), form field `params`.
pub async fn put_update_label_info(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    update_label_info(
        &app,
        raw,
        &headers,
        body,
        "params",
        "PUT /datastore/updatelabelinfo",
    )
    .await
}
