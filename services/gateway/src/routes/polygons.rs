//! `/v1/mask2polygon` (a 3D mask to per-slice outer contours, plain JSON) and
//! `/v1/fixpolygon` (move one vertex of 2D or 3D polygons; answer the polygons and the mask
//! rasterised from them, multipart). Both run their pixel work off the async threads.

use aiaa_imaging::{Volume, Voxels};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::HeaderMap;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::error::{GatewayError, Result};
use crate::image;
use crate::multipart::Form;
use crate::params;
use crate::polygon::fix::{self, Edit3d};
use crate::polygon::{Point, Polygon, contour, raster, slice_of};
use crate::response::{self, Output, ResultAnswer, ResultFile};

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| GatewayError::Internal(format!("worker task: {e}")))?
}

/// The form's image part, decoded; also whether it was a PNG.
async fn form_image(form: &Form) -> Result<(Volume, bool)> {
    let part = form.image().ok_or_else(|| {
        bad("the form has no image part (send the file as field \"image\" or \"datapoint\")")
    })?;
    if part.data.is_empty() {
        return Err(bad("the uploaded image is empty"));
    }
    let name = part.base_filename().map(str::to_string);
    let data = part.data.clone();
    let is_png = data.starts_with(b"\x89PNG")
        || name
            .as_deref()
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".png"));
    let volume = blocking(move || image::decode(name.as_deref(), &data)).await?;
    Ok((volume, is_png))
}

fn polygon_json(poly: &[Point]) -> Value {
    Value::Array(
        poly.iter()
            .map(|p| json!([p[0].round() as i64, p[1].round() as i64]))
            .collect(),
    )
}

fn polygons_json(polys: &[Polygon]) -> Value {
    Value::Array(polys.iter().map(|p| polygon_json(p)).collect())
}

/// `POST /v1/mask2polygon`.
pub async fn mask2polygon(State(app): State<App>, headers: HeaderMap, body: Body) -> Result<Response> {
    let form = app.form(&headers, body).await?;
    let p = params::parse(form.text("params").map_err(bad)?)?;
    let step = match params::get(&p, &["more_points", "morePoints"]) {
        None => 1,
        Some((key, v)) => {
            let n = params::number(key, v)?;
            if n < 1.0 {
                return Err(bad(format!(
                    "{key} must be at least 1 (pixels of boundary per vertex), not {n}"
                )));
            }
            n.round() as usize
        }
    };
    let (mask, _) = form_image(&form).await?;
    let slices = blocking(move || {
        Ok((0..mask.dims[2])
            .map(|z| polygons_json(&contour::contours(&slice_of(&mask, z), step)))
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(response::json(&Value::Array(slices)))
}

/// Parses one polygon: a list of `[x, y]`.
fn parse_polygon(key: &str, v: &Value) -> Result<Polygon> {
    let pts = params::points(key, v, 2)?;
    Ok(pts.into_iter().map(|p| [p[0], p[1]]).collect())
}

/// Parses a list of polygons.
fn parse_polygons(key: &str, v: &Value) -> Result<Vec<Polygon>> {
    let v = params::lenient(v);
    let Value::Array(items) = &v else {
        return Err(bad(format!(
            "{key} must be a list of polygons, not {}",
            params::kind(&v)
        )));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let p = params::lenient(p);
            match &p {
                Value::Array(a) if a.is_empty() => Ok(Vec::new()),
                _ => parse_polygon(&format!("{key}[{i}]"), &p),
            }
        })
        .collect()
}

/// How deeply the first numbers of a JSON value are nested (`[[[1,2]]]` is 3).
fn depth(v: &Value) -> Option<usize> {
    match v {
        Value::Number(_) => Some(0),
        Value::Array(a) => a.iter().find_map(depth).map(|d| d + 1),
        _ => None,
    }
}

fn required_index(p: &Map<String, Value>, keys: &[&str]) -> Result<usize> {
    let (key, v) = params::get(p, keys).ok_or_else(|| bad(format!("params.{} is missing", keys[0])))?;
    params::index(key, v)
}

fn optional_index(p: &Map<String, Value>, keys: &[&str]) -> Result<usize> {
    match params::get(p, keys) {
        None => Ok(0),
        Some((key, v)) => params::index(key, v),
    }
}

/// `POST /v1/fixpolygon`.
pub async fn fixpolygon(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let query = params::query(raw.as_deref());
    let output = Output::parse(query.get("output").map(String::as_str)).map_err(bad)?;
    let form = app.form(&headers, body).await?;
    let p = params::parse(form.text("params").map_err(bad)?)?;
    let (key, poly) = params::get(&p, &["poly", "prev_poly", "prevPoly"])
        .ok_or_else(|| bad("params.poly is missing: send the polygons to edit (or prev_poly)"))?;
    let poly = params::lenient(poly);
    let offset = {
        let (k, v) = params::get(&p, &["vertex_offset", "vertexOffset"])
            .ok_or_else(|| bad("params.vertex_offset is missing: send [dx, dy]"))?;
        let o = params::points(k, v, 2)?;
        if o.len() != 1 {
            return Err(bad("vertex_offset must be one offset [dx, dy]"));
        }
        [o[0][0], o[0][1]]
    };
    let polygon = required_index(&p, &["polygon_index", "polygonIndex"])?;
    let vertex = required_index(&p, &["vertex_index", "vertexIndex"])?;
    let neighbors = optional_index(&p, &["propagate_neighbor", "propagateNeighbor"])?;
    let (image, is_png) = form_image(&form).await?;
    let dimension = match params::get(&p, &["dimension"]) {
        Some((k, v)) => params::index(k, v)?,
        None if depth(&poly) == Some(4) => 3,
        None if depth(&poly) == Some(3) => 2,
        None => {
            if image.dims[2] > 1 {
                3
            } else {
                2
            }
        }
    };
    let [w, h, nz] = image.dims;
    let format = image::mask_format(&p, if is_png { ".png" } else { ".nii.gz" })?;
    let (poly_json, mask) = match dimension {
        2 => {
            let mut polys = parse_polygons(key, &poly)?;
            check_vertex(&polys, polygon, vertex, "")?;
            fix::move_vertex(&mut polys[polygon], vertex, offset, neighbors, 1.0, [w, h]);
            let slice = raster::rasterize(w, h, &polys);
            let mut voxels = vec![0u8; w * h * nz];
            for (o, &set) in slice.pixels.iter().enumerate() {
                voxels[o] = u8::from(set);
            }
            (polygons_json(&polys), mask_volume(&image, voxels)?)
        }
        3 => {
            let Value::Array(per_slice) = &poly else {
                return Err(bad(format!(
                    "{key} must be a list (one entry per slice) of lists of polygons"
                )));
            };
            let mut slices = per_slice
                .iter()
                .enumerate()
                .map(|(z, s)| parse_polygons(&format!("{key}[{z}]"), s))
                .collect::<Result<Vec<_>>>()?;
            let slice = required_index(&p, &["slice_index", "sliceIndex"])?;
            if slice >= slices.len() || slice >= nz {
                return Err(bad(format!(
                    "slice_index {slice} is outside the polygons ({} slices) or the image ({nz} slices)",
                    slices.len()
                )));
            }
            check_vertex(&slices[slice], polygon, vertex, &format!(" on slice {slice}"))?;
            let edit = Edit3d {
                slice,
                polygon,
                vertex,
                offset,
                neighbors,
                neighbors_3d: optional_index(&p, &["propagate_neighbor_3d", "propagateNeighbor3d"])?,
            };
            fix::move_vertex_3d(&mut slices, edit, [w, h]);
            let voxels = blocking({
                let slices = slices.clone();
                move || {
                    let mut voxels = vec![0u8; w * h * nz];
                    for (z, polys) in slices.iter().enumerate().take(nz) {
                        let s = raster::rasterize(w, h, polys);
                        for (o, &set) in s.pixels.iter().enumerate() {
                            voxels[z * w * h + o] = u8::from(set);
                        }
                    }
                    Ok(voxels)
                }
            })
            .await?;
            let json = Value::Array(slices.iter().map(|s| polygons_json(s)).collect());
            (json, mask_volume(&image, voxels)?)
        }
        d => return Err(bad(format!("dimension must be 2 or 3, not {d}"))),
    };
    let data = blocking(move || image::encode(&format, &mask).map(|d| (format.filename(), d))).await?;
    let answer = ResultAnswer {
        params: json!({"poly": poly_json}),
        file: Some(ResultFile {
            filename: data.0,
            data: data.1.into(),
        }),
    };
    Ok(answer.into_response(output))
}

fn check_vertex(polys: &[Polygon], polygon: usize, vertex: usize, where_: &str) -> Result<()> {
    let poly = polys.get(polygon).ok_or_else(|| {
        bad(format!(
            "polygon_index {polygon} is out of range: there are {} polygons{where_}",
            polys.len()
        ))
    })?;
    if vertex >= poly.len() {
        return Err(bad(format!(
            "vertex_index {vertex} is out of range: polygon {polygon}{where_} has {} vertices",
            poly.len()
        )));
    }
    Ok(())
}

/// A u8 mask on the image's grid.
fn mask_volume(image: &Volume, voxels: Vec<u8>) -> Result<Volume> {
    Volume::scalar(image.dims, image.geometry, Voxels::U8(voxels))
        .map_err(|e| GatewayError::Internal(format!("mask volume: {e}")))
}
