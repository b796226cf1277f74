//! Per-file DICOM facts needed to place a file in a series (header only, no pixels).

use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{DefaultDicomObject, InMemDicomObject, OpenFileOptions};

use crate::{ImagingError, Result};

const FORMAT: &str = "DICOM";

/// Geometry-relevant attributes of one DICOM file.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceInfo {
    pub path: PathBuf,
    pub series_uid: String,
    pub rows: u32,
    pub columns: u32,
    pub frames: u32,
    pub samples: u16,
    pub bits_allocated: u16,
    /// ImagePositionPatient of each frame (one entry for single-frame files), if known.
    pub positions: Vec<[f64; 3]>,
    /// ImageOrientationPatient (row direction, column direction), if known.
    pub orientation: Option<[f64; 6]>,
    /// PixelSpacing as `[between rows, between columns]`, if known.
    pub pixel_spacing: Option<[f64; 2]>,
    /// SpacingBetweenSlices, informational only: geometry comes from positions (ITK/GDCM
    /// also ignore it, and SliceThickness, for spacing).
    pub slice_spacing: Option<f64>,
    pub instance_number: i64,
}

fn floats(obj: &InMemDicomObject, tag: dicom_object::Tag) -> Option<Vec<f64>> {
    obj.element_opt(tag).ok().flatten()?.to_multi_float64().ok()
}

fn fixed<const N: usize>(v: Option<Vec<f64>>) -> Option<[f64; N]> {
    v.filter(|v| v.len() >= N && v.iter().all(|x| x.is_finite()))
        .map(|v| std::array::from_fn(|i| v[i]))
}

fn item(obj: &InMemDicomObject, seq: dicom_object::Tag) -> Option<&InMemDicomObject> {
    obj.element_opt(seq).ok().flatten()?.items()?.first()
}

/// Opens only the header (stops before the pixel data).
pub fn open_header(path: &Path) -> Result<DefaultDicomObject> {
    super::prescan::check_file(path, Some(tags::PIXEL_DATA))?;
    OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| ImagingError::format(path, FORMAT, e.to_string()))
}

/// Extracts [`SliceInfo`] from an opened object.
pub fn info(path: &Path, obj: &InMemDicomObject) -> Result<SliceInfo> {
    let int = |tag| {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_int::<i64>().ok())
    };
    let rows = int(tags::ROWS).unwrap_or(0);
    let columns = int(tags::COLUMNS).unwrap_or(0);
    if rows <= 0 || columns <= 0 || rows > 65535 || columns > 65535 {
        return Err(ImagingError::format(
            path,
            FORMAT,
            "no image (Rows/Columns missing or invalid)",
        ));
    }
    let frames = int(tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    if frames > 1 << 20 {
        return Err(ImagingError::format(
            path,
            FORMAT,
            format!("NumberOfFrames = {frames}"),
        ));
    }
    let series_uid = obj
        .element_opt(tags::SERIES_INSTANCE_UID)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        .unwrap_or_default();
    let shared = item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE);
    let mut orientation = fixed(floats(obj, tags::IMAGE_ORIENTATION_PATIENT));
    let mut pixel_spacing = fixed(floats(obj, tags::PIXEL_SPACING));
    if let Some(sh) = shared {
        orientation = orientation.or_else(|| {
            fixed(
                item(sh, tags::PLANE_ORIENTATION_SEQUENCE)
                    .and_then(|i| floats(i, tags::IMAGE_ORIENTATION_PATIENT)),
            )
        });
        pixel_spacing = pixel_spacing.or_else(|| {
            fixed(item(sh, tags::PIXEL_MEASURES_SEQUENCE).and_then(|i| floats(i, tags::PIXEL_SPACING)))
        });
    }
    let mut positions = Vec::new();
    if let Some(per_frame) = obj
        .element_opt(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items())
    {
        for fr in per_frame {
            if let Some(p) = fixed(
                item(fr, tags::PLANE_POSITION_SEQUENCE).and_then(|i| floats(i, tags::IMAGE_POSITION_PATIENT)),
            ) {
                positions.push(p);
            }
            if orientation.is_none() {
                orientation = fixed(
                    item(fr, tags::PLANE_ORIENTATION_SEQUENCE)
                        .and_then(|i| floats(i, tags::IMAGE_ORIENTATION_PATIENT)),
                );
            }
            if pixel_spacing.is_none() {
                pixel_spacing = fixed(
                    item(fr, tags::PIXEL_MEASURES_SEQUENCE).and_then(|i| floats(i, tags::PIXEL_SPACING)),
                );
            }
        }
        if positions.len() != frames as usize {
            positions.clear();
        }
    }
    if positions.is_empty()
        && let Some(p) = fixed(floats(obj, tags::IMAGE_POSITION_PATIENT))
    {
        positions.push(p);
    }
    let slice_spacing = floats(obj, tags::SPACING_BETWEEN_SLICES)
        .and_then(|v| v.first().copied())
        .filter(|s| s.is_finite() && *s > 0.0);
    Ok(SliceInfo {
        path: path.to_path_buf(),
        series_uid,
        rows: rows as u32,
        columns: columns as u32,
        frames: frames as u32,
        samples: int(tags::SAMPLES_PER_PIXEL).unwrap_or(1).clamp(1, 4) as u16,
        bits_allocated: int(tags::BITS_ALLOCATED).unwrap_or(16).clamp(1, 64) as u16,
        positions,
        orientation,
        pixel_spacing: pixel_spacing.filter(|p| p.iter().all(|x| *x > 0.0)),
        slice_spacing,
        instance_number: int(tags::INSTANCE_NUMBER).unwrap_or(0),
    })
}
