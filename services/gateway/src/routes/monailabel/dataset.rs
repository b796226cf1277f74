//! `GET /datastore/dataset?limit_cases=N`: the labelled dataset as one ZIP archive, as MONAI
//! Label 0.8.5 builds it: `image/<name>` and `label/<name>` for every image with a `final`
//! label (the training set), then `metadata.json` (the datastore's objects, as
//! `GET /datastore/?output=all` answers them). `limit_cases` keeps the first N cases when it
//! is between 1 and the number of cases minus one, as MONAI Label does; 404 when no image has
//! a final label. Files are stored, not deflated (NIfTI is already compressed), one at a time
//! into an unnamed temporary file, so the gateway holds one file in memory, never the archive;
//! the archive streams out with its length and goes away with the answer.

use std::io::{Seek, Write};

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::{StatusCode, header};
use tokio_util::io::ReaderStream;
use zip::write::FileOptions;

use super::datastore::all_objects;
use crate::app::App;
use crate::error::{GatewayError, Result};
use crate::labelstore::{self, FINAL};
use crate::{params, response, work};

fn internal(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Internal(format!("writing the dataset archive: {e}"))
}

/// The `limit_cases=` value, if any.
fn limit_cases(raw: Option<String>) -> Result<Option<usize>> {
    let query = params::query(raw.as_deref());
    match query.get("limit_cases").map(|s| s.trim()) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            GatewayError::BadRequest(format!("limit_cases={v:?} must be a whole number of cases"))
        }),
    }
}

/// Adds one file to the archive (blocking work, on the worker pool).
async fn add(
    zip: zip::ZipWriter<std::fs::File>,
    name: String,
    data: bytes::Bytes,
) -> Result<zip::ZipWriter<std::fs::File>> {
    work::cpu(move || {
        let mut zip = zip;
        let options = FileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(data.len() as u64 >= u32::MAX as u64);
        zip.start_file(name, options).map_err(internal)?;
        zip.write_all(&data).map_err(internal)?;
        Ok(zip)
    })
    .await
}

/// `GET /datastore/dataset`.
pub async fn download(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response> {
    let limit = limit_cases(raw)?;
    let objects = labelstore::objects(&app).await?;
    let mut cases: Vec<_> = objects
        .iter()
        .filter_map(|(id, o)| Some((id, o, o.labels.get(FINAL)?)))
        .collect();
    if cases.is_empty() {
        return Err(GatewayError::NotFound(
            "the dataset archive would be empty: no image has a final label yet".into(),
        ));
    }
    if let Some(n) = limit.filter(|n| (1..cases.len()).contains(n)) {
        cases.truncate(n);
    }
    let file = tempfile::tempfile().map_err(internal)?;
    let mut zip = zip::ZipWriter::new(file);
    for (id, object, label) in cases {
        let image = labelstore::get(&app, false, &object.image.item_id).await?;
        zip = add(zip, format!("image/{id}{}", object.image.ext), image).await?;
        let label_bytes = labelstore::get(&app, true, &label.item_id).await?;
        zip = add(zip, format!("label/{id}{}", label.ext), label_bytes).await?;
    }
    let metadata = serde_json::to_vec_pretty(&all_objects(&objects)).map_err(internal)?;
    zip = add(zip, "metadata.json".into(), metadata.into()).await?;
    let (file, len) = work::cpu(move || {
        let mut file = zip.finish().map_err(internal)?;
        let len = file.stream_position().map_err(internal)?;
        file.rewind().map_err(internal)?;
        Ok((file, len))
    })
    .await?;
    let body = Body::from_stream(ReaderStream::new(tokio::fs::File::from_std(file)));
    let mut answer = Response::new(body);
    *answer.status_mut() = StatusCode::OK;
    let headers = answer.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/zip"),
    );
    headers.insert(header::CONTENT_LENGTH, http::HeaderValue::from(len));
    response::set_disposition(&mut answer, "dataset.zip");
    Ok(answer)
}
