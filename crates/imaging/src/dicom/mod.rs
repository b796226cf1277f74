//! DICOM series -> [`Volume`]: scanning a directory tree, grouping files by
//! SeriesInstanceUID, ordering slices along the slice normal by ImagePositionPatient, and
//! decoding pixels (native, JPEG baseline/lossless, RLE, JPEG 2000 via dicom-pixeldata).
//!
//! Geometry (LPS, as DICOM itself): direction columns are the ImageOrientationPatient row
//! and column directions and their cross product (the normal); in-plane spacing from
//! PixelSpacing (`[x, y] = [PixelSpacing[1], PixelSpacing[0]]`); slice spacing from the
//! sorted positions (not SliceThickness); origin = the first sorted position. Enhanced
//! multi-frame files take per-frame positions from the functional groups. Rescale slope and
//! intercept are applied; the result type is the smallest that holds the values exactly
//! (`u8`/`i16`/`u16`/`i32`) or `f32` for non-integer rescales.
//!
//! Refused with a clear error: files of different series, uneven slice spacing, gantry
//! tilt (slice positions not along the normal), duplicate positions, differing slice
//! sizes or orientations, and non-DICOM files. Every file is first checked by
//! [`prescan`] (declared element lengths against the bytes present), so that a corrupt
//! length cannot make dicom-object reserve gigabytes for a small file.

pub mod assemble;
pub mod prescan;
pub mod slice;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use slice::SliceInfo;

use crate::{ImagingError, ReadOptions, Result, Volume};

/// The files of one series found by [`scan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub uid: String,
    pub files: Vec<PathBuf>,
}

/// Result of scanning a directory tree for DICOM files.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Series sorted by the path of their first file.
    pub series: Vec<Series>,
    /// Files that were not readable DICOM images, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Finds DICOM image files under `dir` (recursively when `recursive`); files are accepted
/// when their name matches `suffix` (case-insensitive, empty = every file).
pub fn scan(dir: &Path, recursive: bool, suffix: &str) -> Result<Scan> {
    let suffix = suffix.to_ascii_lowercase();
    let mut groups: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    let mut scan = Scan::default();
    let walker = walkdir::WalkDir::new(dir)
        .max_depth(if recursive { usize::MAX } else { 1 })
        .sort_by_file_name();
    for entry in walker {
        let entry = entry.map_err(|e| {
            let p = e.path().unwrap_or(dir).to_path_buf();
            ImagingError::io(
                p,
                e.into_io_error()
                    .unwrap_or_else(|| std::io::Error::other("walk error")),
            )
        })?;
        if !entry.file_type().is_file() || !crate::io::has_suffix(entry.path(), &suffix) {
            continue;
        }
        let path = entry.path();
        match slice::open_header(path).and_then(|o| slice::info(path, &o)) {
            Ok(info) => groups
                .entry(info.series_uid)
                .or_default()
                .push(path.to_path_buf()),
            Err(e) => scan.skipped.push((path.to_path_buf(), e.to_string())),
        }
    }
    scan.series = groups
        .into_iter()
        .map(|(uid, files)| Series { uid, files })
        .collect();
    scan.series.sort_by(|a, b| a.files.first().cmp(&b.files.first()));
    Ok(scan)
}

/// Reads the files of one series into a volume.
pub fn read_files(files: &[PathBuf], opts: &ReadOptions) -> Result<Volume> {
    let first = files
        .first()
        .ok_or_else(|| ImagingError::InvalidArgument("empty DICOM series".into()))?;
    let mut infos = Vec::with_capacity(files.len());
    for f in files {
        let obj = slice::open_header(f)?;
        infos.push(slice::info(f, &obj)?);
    }
    let uids: std::collections::BTreeSet<&str> = infos.iter().map(|i| i.series_uid.as_str()).collect();
    if uids.len() > 1 {
        return Err(ImagingError::Series {
            path: first.clone(),
            reason: format!(
                "mixed series: {} SeriesInstanceUIDs among {} files",
                uids.len(),
                files.len()
            ),
        });
    }
    assemble::assemble(&infos, opts)
}

/// Reads the single series under `dir` (error if there are several).
pub fn read_dir(dir: &Path, opts: &ReadOptions) -> Result<Volume> {
    let s = scan(dir, true, "")?;
    match s.series.as_slice() {
        [one] => read_files(&one.files, opts),
        [] => Err(ImagingError::Series {
            path: dir.to_path_buf(),
            reason: "no DICOM images found".into(),
        }),
        many => Err(ImagingError::Series {
            path: dir.to_path_buf(),
            reason: format!(
                "{} series found; read them one by one with read_files",
                many.len()
            ),
        }),
    }
}

/// Reads a DICOM object (single file) from bytes, e.g. for fuzzing.
pub fn read_bytes(path: &Path, bytes: &[u8], opts: &ReadOptions) -> Result<Volume> {
    // dicom-object trusts declared lengths when reserving memory: check them first.
    prescan::check_bytes(path, bytes, None)?;
    let obj = dicom_object::OpenFileOptions::new()
        .from_reader(bytes)
        .map_err(|e| ImagingError::format(path, "DICOM", e.to_string()))?;
    let info = slice::info(path, &obj)?;
    assemble::assemble_objects(&[info], vec![obj], opts)
}
