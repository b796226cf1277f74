//! Orders the slices of one series, derives its geometry and decodes the pixels into a
//! volume (see [`super`] for the rules).

use std::path::Path;

use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{PixelDecoder, PixelRepresentation, PlanarConfiguration};

use super::slice::SliceInfo;
use crate::geometry::{Geometry, cross, dot, norm};
use crate::{ImagingError, ReadOptions, Result, Volume, Voxels};

fn series_err(path: &Path, reason: impl Into<String>) -> ImagingError {
    ImagingError::Series {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// One 2D plane of the volume: which file and frame it comes from.
#[derive(Debug, Clone, Copy)]
struct Plane {
    file: usize,
    frame: u32,
}

/// Geometry and plane order of a series.
fn layout(infos: &[SliceInfo]) -> Result<(Geometry, Vec<Plane>)> {
    let first = &infos[0];
    let p0 = &first.path;
    for i in infos {
        if (i.rows, i.columns, i.samples) != (first.rows, first.columns, first.samples) {
            return Err(series_err(
                &i.path,
                format!(
                    "mixed series: slice size {}x{}x{} differs from {}x{}x{} of {}",
                    i.columns,
                    i.rows,
                    i.samples,
                    first.columns,
                    first.rows,
                    first.samples,
                    p0.display()
                ),
            ));
        }
        let same_orient = match (i.orientation, first.orientation) {
            (Some(a), Some(b)) => a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4),
            (None, None) => true,
            _ => false,
        };
        if !same_orient {
            return Err(series_err(
                &i.path,
                "mixed series: ImageOrientationPatient differs between files",
            ));
        }
    }
    let ps = first.pixel_spacing.unwrap_or([1.0, 1.0]);
    // Without per-plane positions the slice spacing is unknown: 1 mm, like ITK/GDCM.
    let mut g = Geometry {
        spacing: [ps[1], ps[0], 1.0],
        ..Geometry::default()
    };
    let (row, col) = match first.orientation {
        Some(o) => {
            let (r, c) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
            let (nr, nc) = (norm(r), norm(c));
            if nr < 1e-6 || nc < 1e-6 {
                return Err(series_err(p0, "degenerate ImageOrientationPatient"));
            }
            (r.map(|x| x / nr), c.map(|x| x / nc))
        }
        None => ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
    };
    let n = cross(row, col);
    let nn = norm(n);
    if nn < 1e-3 {
        return Err(series_err(
            p0,
            "ImageOrientationPatient row and column directions are parallel",
        ));
    }
    let normal = n.map(|x| x / nn);
    g.direction = std::array::from_fn(|r| [row[r], col[r], normal[r]]);

    // Every plane with its position, if all are known.
    let mut planes: Vec<(Plane, Option<[f64; 3]>)> = Vec::new();
    for (fi, info) in infos.iter().enumerate() {
        for frame in 0..info.frames {
            let pos = if info.positions.len() == info.frames as usize {
                Some(info.positions[frame as usize])
            } else if info.positions.len() == 1 {
                // Single position for a multi-frame file: frames stack along the normal.
                let p = info.positions[0];
                Some(std::array::from_fn(|r| {
                    p[r] + normal[r] * g.spacing[2] * frame as f64
                }))
            } else {
                None
            };
            planes.push((Plane { file: fi, frame }, pos));
        }
    }
    if planes.iter().any(|(_, p)| p.is_none()) {
        // No positions: keep instance-number order, unit geometry from what is known.
        planes.sort_by_key(|(pl, _)| (infos[pl.file].instance_number, pl.frame));
        return Ok((g, planes.into_iter().map(|(p, _)| p).collect()));
    }
    let along = |p: &[f64; 3]| dot(*p, normal);
    planes.sort_by(|a, b| {
        let (x, y) = (a.1.map_or(0.0, |p| along(&p)), b.1.map_or(0.0, |p| along(&p)));
        x.total_cmp(&y)
    });
    let pos: Vec<[f64; 3]> = planes.iter().filter_map(|(_, p)| *p).collect();
    g.origin = pos[0];
    if pos.len() > 1 {
        let diffs: Vec<f64> = pos.windows(2).map(|w| along(&w[1]) - along(&w[0])).collect();
        if let Some(i) = diffs.iter().position(|d| d.abs() < 1e-4) {
            let f = &infos[planes[i + 1].0.file].path;
            return Err(series_err(
                f,
                "duplicate slice positions (two images at the same place)",
            ));
        }
        let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
        let tol = (0.01 * mean).max(1e-3);
        if let Some(d) = diffs.iter().find(|d| (*d - mean).abs() > tol) {
            return Err(series_err(
                p0,
                format!("uneven slice spacing: {d:.4} mm vs mean {mean:.4} mm"),
            ));
        }
        let last = pos[pos.len() - 1];
        let d: [f64; 3] = std::array::from_fn(|r| last[r] - pos[0][r]);
        let t = dot(d, normal);
        let off = norm(std::array::from_fn(|r| d[r] - t * normal[r]));
        if off > (0.01 * t.abs()).max(1e-3) {
            return Err(series_err(
                p0,
                format!("gantry tilt or sheared stack: slices drift {off:.3} mm sideways over {t:.3} mm"),
            ));
        }
        g.spacing[2] = mean;
    }
    Ok((g, planes.into_iter().map(|(p, _)| p).collect()))
}

/// Opens every file fully and assembles the volume.
pub fn assemble(infos: &[SliceInfo], opts: &ReadOptions) -> Result<Volume> {
    check_size(infos, opts)?;
    let mut objs = Vec::with_capacity(infos.len());
    for i in infos {
        super::prescan::check_file(&i.path, None)?;
        objs.push(
            dicom_object::open_file(&i.path)
                .map_err(|e| ImagingError::format(&i.path, "DICOM", e.to_string()))?,
        );
    }
    assemble_objects(infos, objs, opts)
}

fn check_size(infos: &[SliceInfo], opts: &ReadOptions) -> Result<()> {
    let first = infos
        .first()
        .ok_or_else(|| ImagingError::InvalidArgument("empty DICOM series".into()))?;
    let count: u128 = infos
        .iter()
        .map(|i| i.rows as u128 * i.columns as u128 * i.frames as u128 * i.samples as u128)
        .sum();
    // Held at the peak, per sample: the files' pixel data (BitsAllocated, each file dropped
    // once decoded), our i32 copy and the result (4 bytes each; 8 each for 32-bit data,
    // which becomes f64), plus one file's decoded copy and widened values. Checked before
    // any pixel data is read: a compressed frame (JPEG, RLE, JPEG 2000) decodes to the size
    // the header declares (checked against the codestream before decoding), so this is the
    // decode limit of a compressed series too.
    let bps = first.bits_allocated.div_ceil(8) as usize;
    let working = if bps >= 4 { 16 } else { 8 };
    let largest = infos
        .iter()
        .map(|i| i.rows as u128 * i.columns as u128 * i.frames as u128 * i.samples as u128)
        .max()
        .unwrap_or(0);
    opts.check(
        &first.path,
        count.saturating_mul((bps + working) as u128) + largest * (bps + 8) as u128,
        1,
    )?;
    Ok(())
}

/// Decoded sample values, widened.
enum Samples {
    Int(Vec<i32>),
    Float(Vec<f64>),
}

/// Assembles already opened objects (same order as `infos`).
pub fn assemble_objects(
    infos: &[SliceInfo],
    objs: Vec<DefaultDicomObject>,
    opts: &ReadOptions,
) -> Result<Volume> {
    check_size(infos, opts)?;
    let (geometry, planes) = layout(infos)?;
    let first = &infos[0];
    let (w, h, samples) = (
        first.columns as usize,
        first.rows as usize,
        first.samples as usize,
    );
    let plane_len = w * h;
    let nz = planes.len();
    let total = plane_len * nz * samples;
    let mut ints: Vec<i32> = Vec::new();
    let mut floats: Vec<f64> = Vec::new();
    let mut rescales = vec![(1.0f64, 0.0f64); nz];
    // Decode file by file; place each frame at its sorted position.
    let mut slot_of: Vec<Vec<(u32, usize)>> = vec![Vec::new(); infos.len()];
    for (z, p) in planes.iter().enumerate() {
        slot_of[p.file].push((p.frame, z));
    }
    // Each file is dropped once decoded: its pixel data is not held until the end.
    for (fi, obj) in objs.into_iter().enumerate() {
        let path = &infos[fi].path;
        check_rle(&obj).map_err(|why| {
            ImagingError::format(path, "DICOM", format!("pixel data: invalid RLE data: {why}"))
        })?;
        check_jpeg(&obj).map_err(|why| {
            ImagingError::format(path, "DICOM", format!("pixel data: invalid JPEG data: {why}"))
        })?;
        // dicom-rs codecs can panic on corrupt data (seen in the RLE and JPEG 2000
        // decoders): contain it. RLE data is validated above so its decoder never panics.
        let dec = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| obj.decode_pixel_data()))
            .map_err(|_| ImagingError::format(path, "DICOM", "pixel data: decoder failed on corrupt data"))?
            .map_err(|e| ImagingError::format(path, "DICOM", format!("pixel data: {e}")))?;
        let bits = dec.bits_allocated();
        let signed = dec.pixel_representation() == PixelRepresentation::Signed;
        let planar = dec.planar_configuration() == PlanarConfiguration::PixelFirst;
        let rescale: Vec<(f64, f64)> = dec
            .rescale()
            .map(|r| r.iter().map(|r| (r.slope, r.intercept)).collect())
            .unwrap_or_else(|_| vec![(1.0, 0.0)]);
        let data = dec.data();
        let bps = bits.div_ceil(8) as usize;
        let frame_bytes = plane_len * samples * bps;
        let values = match (bits, signed) {
            (8, false) => Samples::Int(data.iter().map(|&b| b as i32).collect()),
            (8, true) => Samples::Int(data.iter().map(|&b| b as i8 as i32).collect()),
            (16, false) => Samples::Int(
                data.chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]) as i32)
                    .collect(),
            ),
            (16, true) => Samples::Int(
                data.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]) as i32)
                    .collect(),
            ),
            (32, false) => Samples::Float(
                data.chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                    .collect(),
            ),
            (32, true) => Samples::Float(
                data.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
                    .collect(),
            ),
            _ => {
                return Err(ImagingError::unsupported(
                    path,
                    "DICOM",
                    format!("BitsAllocated = {bits}"),
                ));
            }
        };
        let is_float = matches!(values, Samples::Float(_));
        if is_float && floats.is_empty() {
            floats = ints.iter().map(|&x| x as f64).collect();
            floats.resize(total, 0.0);
            ints = Vec::new();
        } else if !is_float && ints.is_empty() && floats.is_empty() {
            ints = vec![0; total];
        }
        for &(frame, z) in &slot_of[fi] {
            let start = frame as usize * plane_len * samples;
            if data.len() < (frame as usize + 1) * frame_bytes {
                return Err(ImagingError::format(
                    path,
                    "DICOM",
                    format!("pixel data too short for frame {frame}"),
                ));
            }
            rescales[z] = *rescale
                .get(frame as usize)
                .or(rescale.first())
                .unwrap_or(&(1.0, 0.0));
            for c in 0..samples {
                for px in 0..plane_len {
                    let src = start
                        + if planar {
                            c * plane_len + px
                        } else {
                            px * samples + c
                        };
                    let dst = c * plane_len * nz + z * plane_len + px;
                    match (&values, floats.is_empty()) {
                        (Samples::Int(v), true) => ints[dst] = v[src],
                        (Samples::Int(v), false) => floats[dst] = v[src] as f64,
                        (Samples::Float(v), _) => floats[dst] = v[src],
                    }
                }
            }
        }
    }
    let voxels = finish(ints, floats, &rescales, plane_len, nz);
    Volume::new([w, h, nz], samples, geometry, voxels)
}

/// RLE Lossless transfer syntax UID.
const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// Output length of one PackBits segment, as dicom-rs's decoder computes it; `None` where
/// that decoder would fail (truncated repeat run).
fn packbits_len(seg: &[u8]) -> Option<usize> {
    let (mut pos, mut out) = (0usize, 0usize);
    while pos < seg.len() {
        let h = seg[pos] as i8;
        pos += 1;
        if h >= 0 {
            let n = h as usize + 1;
            out += n.min(seg.len() - pos);
            pos += n;
        } else if h != -128 {
            seg.get(pos)?;
            out += (1 - h as isize) as usize;
            pos += 1;
        }
    }
    Some(out)
}

/// An integer attribute, when present and readable.
fn int_attr(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<i64> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<i64>().ok())
}

/// The encapsulated pixel data's fragments, when the pixel data is encapsulated.
fn fragments(obj: &DefaultDicomObject) -> Option<&[Vec<u8>]> {
    obj.element_opt(dicom_dictionary_std::tags::PIXEL_DATA)
        .ok()
        .flatten()
        .and_then(|e| e.value().fragments())
}

/// Validates RLE Lossless pixel data (DICOM PS3.5 annex G) before it reaches dicom-rs's
/// decoder, which panics on some corrupt inputs (short segments, short headers): every
/// fragment needs a 64-byte header with one segment per sample byte, increasing offsets
/// inside the fragment, and segments that decode to at least Rows x Columns bytes.
fn check_rle(obj: &DefaultDicomObject) -> std::result::Result<(), String> {
    use dicom_dictionary_std::tags;
    if obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']) != RLE_LOSSLESS {
        return Ok(());
    }
    let int = |tag| int_attr(obj, tag);
    let (Some(rows), Some(cols), Some(bits)) =
        (int(tags::ROWS), int(tags::COLUMNS), int(tags::BITS_ALLOCATED))
    else {
        return Ok(()); // the decoder reports the missing attribute
    };
    let samples = int(tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    if !(1..=4).contains(&samples) || !(bits == 8 || bits == 16) || rows < 1 || cols < 1 {
        return Err(format!("{samples} samples of {bits} bits"));
    }
    let needed = (samples * bits / 8) as usize;
    let plane = (rows * cols) as usize;
    let frags = fragments(obj).ok_or("no encapsulated fragments")?;
    for (i, f) in frags.iter().enumerate() {
        if f.len() < 64 {
            return Err(format!(
                "fragment {i}: {} bytes, shorter than the header",
                f.len()
            ));
        }
        let word =
            |k: usize| u32::from_le_bytes([f[4 * k], f[4 * k + 1], f[4 * k + 2], f[4 * k + 3]]) as usize;
        let n = word(0);
        if n < needed || n > 15 {
            return Err(format!("fragment {i}: {n} segments, expected {needed}"));
        }
        let mut bounds: Vec<usize> = (1..=n).map(word).collect();
        bounds.push(f.len());
        for s in 0..needed {
            let seg = f
                .get(bounds[s]..bounds[s + 1])
                .filter(|_| bounds[s] >= 64)
                .ok_or_else(|| format!("fragment {i}: segment {s} offsets out of range"))?;
            match packbits_len(seg) {
                Some(len) if len >= plane => {}
                _ => return Err(format!("fragment {i}: segment {s} decodes to too few bytes")),
            }
        }
    }
    Ok(())
}

/// The JPEG transfer syntaxes (baseline, extended, lossless) whose frames dicom-rs decodes
/// with its JPEG adapter.
const JPEG_FAMILY: [&str; 4] = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
];

/// Validates JPEG frames before dicom-rs's JPEG adapter sees them: it copies the decoded
/// frame into a buffer sized from Rows x Columns x Samples and slices out of range (a panic)
/// when the codestream says otherwise. Every fragment that starts a frame (SOI) must carry a
/// frame header (SOF) before its scan, with the height, width and component count of the
/// DICOM header.
fn check_jpeg(obj: &DefaultDicomObject) -> std::result::Result<(), String> {
    use dicom_dictionary_std::tags;
    let ts = obj.meta().transfer_syntax().trim_end_matches(['\0', ' ']);
    if !JPEG_FAMILY.contains(&ts) {
        return Ok(());
    }
    let int = |tag| int_attr(obj, tag);
    let (Some(rows), Some(cols)) = (int(tags::ROWS), int(tags::COLUMNS)) else {
        return Ok(()); // the decoder reports the missing attribute
    };
    let samples = int(tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let frags = fragments(obj).ok_or("no encapsulated fragments")?;
    for (i, f) in frags.iter().enumerate() {
        if !f.starts_with(&[0xFF, 0xD8]) {
            continue; // the continuation of a frame split over several fragments
        }
        let (h, w, n) =
            jpeg_frame_header(f).ok_or_else(|| format!("fragment {i}: no frame header before the scan"))?;
        if (h as i64, w as i64, n as i64) != (rows, cols, samples) {
            return Err(format!(
                "fragment {i}: the codestream is {w}x{h} with {n} components, the header says {cols}x{rows} with {samples}"
            ));
        }
    }
    Ok(())
}

/// Height, width and component count from the first SOF marker of a JPEG codestream,
/// walking marker segments from SOI; `None` when a scan (SOS) or the end comes first.
fn jpeg_frame_header(f: &[u8]) -> Option<(u16, u16, u8)> {
    let mut pos = 2; // after SOI
    loop {
        // Markers may be preceded by fill bytes (0xFF).
        while f.get(pos) == Some(&0xFF) && f.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        if *f.get(pos)? != 0xFF {
            return None;
        }
        let marker = *f.get(pos + 1)?;
        let len = u16::from_be_bytes([*f.get(pos + 2)?, *f.get(pos + 3)?]) as usize;
        match marker {
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                let seg = f.get(pos + 4..pos + 2 + len)?;
                let h = u16::from_be_bytes([*seg.get(1)?, *seg.get(2)?]);
                let w = u16::from_be_bytes([*seg.get(3)?, *seg.get(4)?]);
                return Some((h, w, *seg.get(5)?));
            }
            0xDA | 0xD9 => return None,
            _ => pos += 2 + len,
        }
    }
}

/// Applies per-plane rescale and picks the output type.
fn finish(ints: Vec<i32>, floats: Vec<f64>, rescales: &[(f64, f64)], plane_len: usize, nz: usize) -> Voxels {
    let identity = rescales.iter().all(|&(s, i)| s == 1.0 && i == 0.0);
    let integral = rescales
        .iter()
        .all(|&(s, i)| s.fract() == 0.0 && i.fract() == 0.0);
    let z_of = |idx: usize| (idx / plane_len) % nz;
    if floats.is_empty() {
        if identity {
            return narrow(ints);
        }
        if integral {
            // Two passes (the range, then the values in place) instead of an i64 copy.
            let value = |i: usize, v: i32| {
                let (s, b) = rescales[z_of(i)];
                v as i64 * s as i64 + b as i64
            };
            let fits = ints
                .iter()
                .enumerate()
                .all(|(i, &v)| (i32::MIN as i64..=i32::MAX as i64).contains(&value(i, v)));
            if fits {
                let mut ints = ints;
                for (i, v) in ints.iter_mut().enumerate() {
                    *v = value(i, *v) as i32;
                }
                return narrow(ints);
            }
            return Voxels::F64(
                ints.iter()
                    .enumerate()
                    .map(|(i, &v)| value(i, v) as f64)
                    .collect(),
            );
        }
        return Voxels::F32(
            ints.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let (s, b) = rescales[z_of(i)];
                    (v as f64 * s + b) as f32
                })
                .collect(),
        );
    }
    Voxels::F64(
        floats
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                let (s, b) = rescales[z_of(i)];
                v * s + b
            })
            .collect(),
    )
}

/// The smallest integer type holding every value.
fn narrow(v: Vec<i32>) -> Voxels {
    let (lo, hi) = v
        .iter()
        .fold((i32::MAX, i32::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    if lo >= 0 && hi <= u8::MAX as i32 {
        Voxels::U8(v.into_iter().map(|x| x as u8).collect())
    } else if lo >= i16::MIN as i32 && hi <= i16::MAX as i32 {
        Voxels::I16(v.into_iter().map(|x| x as i16).collect())
    } else if lo >= 0 && hi <= u16::MAX as i32 {
        Voxels::U16(v.into_iter().map(|x| x as u16).collect())
    } else {
        Voxels::I32(v)
    }
}
