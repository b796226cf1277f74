//! `/v1/mask2polygon` (a 3D mask to per-slice outer contours, plain JSON) and
//! `/v1/fixpolygon` (move one vertex of 2D or 3D polygons; answer the polygons and the mask
//! rasterised from them, multipart). Both run everything after reading the form (params
//! parsing, decoding, tracing, rasterising, encoding) on the bounded worker pool, with the
//! polygons' size and raster work bounded before any is done (see [`crate::geometry`]).

use std::io::Write;

use aiaa_imaging::{Volume, Voxels};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::Map;

use crate::app::{App, ParamsKind};
use crate::error::{GatewayError, Result};
use crate::form::{Form, Part};
use crate::geometry::{self, Depth, Num, RawParams};
use crate::image;
use crate::polygon::fix::{self, Edit3d};
use crate::polygon::{Polygon, contour, raster, slice_of};
use crate::response::{self, Output, ResultAnswer, ResultFile};
use crate::work;

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// Raster work allowed per pixel of the result mask (see [`raster::cost`]): a contour
/// through every boundary pixel of a real mask costs a few per pixel at most.
const RASTER_STEPS_PER_PIXEL: u64 = 8;
/// Raster work always allowed, for tiny images.
const RASTER_STEPS_MIN: u64 = 1 << 20;

/// The form's params text and image part, checked present (the work happens later, off the
/// async threads).
fn inputs(form: &Form) -> Result<(Option<Bytes>, Part)> {
    let params = match form.field("params") {
        None => None,
        Some(p) => {
            form.text("params").map_err(bad)?;
            Some(
                p.read_blocking()
                    .map_err(|e| GatewayError::Internal(e.to_string()))?,
            )
        }
    };
    let part = form.image().ok_or_else(|| {
        bad("the form has no image part (send the file as field \"image\" or \"datapoint\")")
    })?;
    if part.is_empty() {
        return Err(bad("the uploaded image is empty"));
    }
    Ok((params, part.clone()))
}

/// The image part, decoded (at most `max_bytes`); also whether it was a PNG. Blocking.
fn decode(part: &Part, max_bytes: u64) -> Result<(Volume, bool)> {
    let name = part.base_filename().map(str::to_string);
    let data = part
        .read_blocking()
        .map_err(|e| GatewayError::Internal(format!("reading the spooled upload: {e}")))?;
    let is_png = data.starts_with(b"\x89PNG")
        || name
            .as_deref()
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".png"));
    let volume = image::decode(name.as_deref(), &data, max_bytes)?;
    Ok((volume, is_png))
}

/// Appends `polys` as JSON (`[[[x, y], ...], ...]`, integer pixel coordinates) to `out`.
fn write_polygons(out: &mut Vec<u8>, polys: &[Polygon]) {
    out.push(b'[');
    for (i, poly) in polys.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (j, p) in poly.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            let _ = write!(out, "[{},{}]", p[0].round() as i64, p[1].round() as i64);
        }
        out.push(b']');
    }
    out.push(b']');
}

/// The params text as a JSON object text.
fn params_text(params: &Option<Bytes>) -> Result<std::borrow::Cow<'_, str>> {
    let text = params
        .as_deref()
        .map(std::str::from_utf8)
        .transpose()
        .map_err(|_| bad("the form field \"params\" is not UTF-8 text"))?;
    geometry::object_text(text)
}

/// `POST /v1/mask2polygon`.
pub async fn mask2polygon(State(app): State<App>, headers: HeaderMap, body: Body) -> Result<Response> {
    let form = app.form(&headers, body, ParamsKind::Polygons).await?;
    let (params, part) = inputs(&form)?;
    let (max_vertices, max_bytes) = (app.max_polygon_vertices, app.max_image_bytes);
    let json = work::cpu(move || {
        let text = params_text(&params)?;
        let p = RawParams::parse(&text)?;
        let step = match p.get(&["more_points", "morePoints"]) {
            None => 1,
            Some((key, v)) => {
                let Num(n) = geometry::typed(key, v)?;
                if !(1.0..=geometry::MAX_COORDINATE).contains(&n) {
                    return Err(bad(format!(
                        "params.{key} must be 1 to {} (pixels of boundary per vertex), not {n}",
                        geometry::MAX_COORDINATE
                    )));
                }
                n.round() as usize
            }
        };
        let (mask, _) = decode(&part, max_bytes)?;
        contours_json(&mask, step, max_vertices)
    })
    .await?;
    Ok(response::bytes(
        StatusCode::OK,
        "application/json",
        Bytes::from(json),
    ))
}

/// Per slice the mask's contours as JSON, refused past `max_vertices` vertices.
pub fn contours_json(mask: &Volume, step: usize, max_vertices: usize) -> Result<Vec<u8>> {
    let mut out = vec![b'['];
    let mut left = max_vertices;
    for z in 0..mask.dims[2] {
        if z > 0 {
            out.push(b',');
        }
        let polys = contour::contours(&slice_of(mask, z), step, left).ok_or_else(|| {
            bad(format!(
                "the mask's contours hold more than {max_vertices} vertices, the limit of one answer (--gateway-max-polygon-vertices, AIAA_GATEWAY_MAX_POLYGON_VERTICES); a mask of many isolated pixels? (more_points thins long contours only)"
            ))
        })?;
        left -= polys.iter().map(|p| p.len().max(1)).sum::<usize>();
        write_polygons(&mut out, &polys);
    }
    out.push(b']');
    Ok(out)
}

fn required_index(p: &RawParams<'_>, keys: &[&'static str]) -> Result<usize> {
    let (key, v) = p
        .get(keys)
        .ok_or_else(|| bad(format!("params.{} is missing", keys[0])))?;
    geometry::index(key, v)
}

fn optional_index(p: &RawParams<'_>, keys: &[&'static str]) -> Result<usize> {
    match p.get(keys) {
        None => Ok(0),
        Some((key, v)) => geometry::index(key, v),
    }
}

/// `POST /v1/fixpolygon`.
pub async fn fixpolygon(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response> {
    let query = crate::params::query(raw.as_deref());
    let output = Output::parse(query.get("output").map(String::as_str)).map_err(bad)?;
    let form = app.form(&headers, body, ParamsKind::Polygons).await?;
    let (params, part) = inputs(&form)?;
    let limits = Limits {
        max_vertices: app.max_polygon_vertices,
        max_image_bytes: app.max_image_bytes,
    };
    let answer = work::cpu(move || fix_polygons(&params, &part, limits)).await?;
    Ok(answer.into_response(output))
}

/// The limits of `/v1/fixpolygon`'s work.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most polygon vertices.
    pub max_vertices: usize,
    /// Largest decoded image.
    pub max_image_bytes: u64,
}

/// The whole of `/v1/fixpolygon` after the form is read. Blocking.
pub fn fix_polygons(params: &Option<Bytes>, part: &Part, limits: Limits) -> Result<ResultAnswer> {
    let max_vertices = limits.max_vertices;
    let text = params_text(params)?;
    let p = RawParams::parse(&text)?;
    let (key, poly) = p
        .get(&["poly", "prev_poly", "prevPoly"])
        .ok_or_else(|| bad("params.poly is missing: send the polygons to edit (or prev_poly)"))?;
    let offset = {
        let (k, v) = p
            .get(&["vertex_offset", "vertexOffset"])
            .ok_or_else(|| bad("params.vertex_offset is missing: send [dx, dy]"))?;
        geometry::offset(k, v)?
    };
    let polygon = required_index(&p, &["polygon_index", "polygonIndex"])?;
    let vertex = required_index(&p, &["vertex_index", "vertexIndex"])?;
    let neighbors = optional_index(&p, &["propagate_neighbor", "propagateNeighbor"])?;
    let (image, is_png) = decode(part, limits.max_image_bytes)?;
    let dimension = match p.get(&["dimension"]) {
        Some((k, v)) => geometry::index(k, v)?,
        None => match geometry::typed::<Depth>(key, poly)?.0 {
            Some(4) => 3,
            Some(3) => 2,
            _ if image.dims[2] > 1 => 3,
            _ => 2,
        },
    };
    let [w, h, nz] = image.dims;
    let mut format_params = Map::new();
    for k in ["result_extension", "result_dtype", "result_compress"] {
        if let Some(v) = p.scalar(k) {
            format_params.insert(k.to_string(), v);
        }
    }
    let format = image::mask_format(&format_params, if is_png { ".png" } else { ".nii.gz" })?;
    let mut budget = Budget::new(w, h, nz);
    let mut poly_json = Vec::new();
    let mask = match dimension {
        2 => {
            let mut polys = geometry::polygons(key, poly, max_vertices)?;
            check_vertex(&polys, polygon, vertex, "")?;
            fix::move_vertex(&mut polys[polygon], vertex, offset, neighbors, 1.0, [w, h]);
            budget.take(w, h, &polys)?;
            let slice = raster::rasterize(w, h, &polys);
            let mut voxels = vec![0u8; w * h * nz];
            for (o, &set) in slice.pixels.iter().enumerate() {
                voxels[o] = u8::from(set);
            }
            write_polygons(&mut poly_json, &polys);
            mask_volume(&image, voxels)?
        }
        3 => {
            let mut slices = geometry::slices(key, poly, max_vertices)?;
            if slices.len() > nz {
                return Err(bad(format!(
                    "params.{key} has {} slices; the image has {nz}",
                    slices.len()
                )));
            }
            let slice = required_index(&p, &["slice_index", "sliceIndex"])?;
            if slice >= slices.len() {
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
            for polys in &slices {
                budget.take(w, h, polys)?;
            }
            let mut voxels = vec![0u8; w * h * nz];
            for (z, polys) in slices.iter().enumerate() {
                let s = raster::rasterize(w, h, polys);
                for (o, &set) in s.pixels.iter().enumerate() {
                    voxels[z * w * h + o] = u8::from(set);
                }
            }
            poly_json.push(b'[');
            for (z, polys) in slices.iter().enumerate() {
                if z > 0 {
                    poly_json.push(b',');
                }
                write_polygons(&mut poly_json, polys);
            }
            poly_json.push(b']');
            mask_volume(&image, voxels)?
        }
        d => return Err(bad(format!("dimension must be 2 or 3, not {d}"))),
    };
    let data = image::encode(&format, &mask)?;
    let mut params_out = b"{\"poly\":".to_vec();
    params_out.extend_from_slice(&poly_json);
    params_out.push(b'}');
    Ok(ResultAnswer {
        params: Bytes::from(params_out),
        file: Some(ResultFile {
            filename: format.filename(),
            data: data.into(),
        }),
    })
}

/// The raster work a request may still do.
struct Budget {
    left: u64,
    limit: u64,
}

impl Budget {
    fn new(w: usize, h: usize, nz: usize) -> Self {
        let pixels = (w as u64)
            .saturating_mul(h as u64)
            .saturating_mul(nz.max(1) as u64);
        let limit = pixels
            .saturating_mul(RASTER_STEPS_PER_PIXEL)
            .max(RASTER_STEPS_MIN);
        Budget { left: limit, limit }
    }

    /// Takes the cost of rasterising `polys`, or refuses them before any work.
    fn take(&mut self, w: usize, h: usize, polys: &[Polygon]) -> Result<()> {
        for poly in polys {
            let cost = raster::cost(w, h, poly);
            self.left = self.left.checked_sub(cost).ok_or_else(|| {
                bad(format!(
                    "the polygons would take more than {} raster steps on this {w} x {h} image ({RASTER_STEPS_PER_PIXEL} per pixel): edges that cross the image back and forth many times are refused",
                    self.limit
                ))
            })?;
        }
        Ok(())
    }
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
