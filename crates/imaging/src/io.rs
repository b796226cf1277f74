//! Format dispatch (file name first, then bytes) and file helpers shared by the readers
//! and writers: bounded whole-file reads and atomic writes.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{ImagingError, ReadOptions, Result, Volume};

/// Image file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Nifti,
    NiftiGz,
    Mha,
    Mhd,
    Dicom,
    Png,
}

/// Case-insensitive suffix test on the file name.
pub fn has_suffix(path: &Path, suffix: &str) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(suffix))
}

/// The format implied by the file name, if any.
pub fn format_from_name(path: &Path) -> Option<Format> {
    [
        (".nii.gz", Format::NiftiGz),
        (".nii", Format::Nifti),
        (".mha", Format::Mha),
        (".mhd", Format::Mhd),
        (".dcm", Format::Dicom),
        (".png", Format::Png),
    ]
    .into_iter()
    .find(|(s, _)| has_suffix(path, s))
    .map(|(_, f)| f)
}

/// The format implied by the first bytes of a file, if recognisable.
pub fn format_from_bytes(head: &[u8]) -> Option<Format> {
    if crate::gz::is_gzip(head) {
        return Some(Format::NiftiGz);
    }
    if crate::nifti::header::kind(head).is_some() {
        return Some(Format::Nifti);
    }
    if head.len() >= 132 && &head[128..132] == b"DICM" {
        return Some(Format::Dicom);
    }
    if head.starts_with(b"\x89PNG") {
        return Some(Format::Png);
    }
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]);
    if text.contains("ObjectType") || text.contains("ElementDataFile") {
        return Some(if text.contains("ElementDataFile = LOCAL") {
            Format::Mha
        } else {
            Format::Mhd
        });
    }
    None
}

/// Reads a whole file, refusing files larger than the limit (plus header slack).
pub fn read_file(path: &Path, opts: &ReadOptions) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| ImagingError::io(path, e))?;
    let slack = 1 << 28;
    if meta.len() > opts.max_bytes.saturating_add(slack) {
        return Err(ImagingError::TooLarge {
            path: path.to_path_buf(),
            needed: meta.len(),
            limit: opts.max_bytes,
        });
    }
    std::fs::read(path).map_err(|e| ImagingError::io(path, e))
}

/// Writes `bytes` to a temporary file in the target directory, then renames it into place,
/// so readers never see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".aiaa-tmp-")
        .tempfile_in(&dir)
        .map_err(|e| ImagingError::io(&dir, e))?;
    tmp.write_all(bytes).map_err(|e| ImagingError::io(path, e))?;
    tmp.persist(path).map_err(|e| ImagingError::io(path, e.error))?;
    Ok(())
}

fn sniff(path: &Path) -> Result<Option<Format>> {
    use std::io::Read;
    let mut head = Vec::with_capacity(4096);
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .map_err(|e| ImagingError::io(path, e))?;
    Ok(format_from_bytes(&head))
}

/// Reads one image file of any supported format. A single DICOM file is read as a
/// one-file series (use [`crate::dicom`] for directories).
pub fn read_volume(path: &Path, opts: &ReadOptions) -> Result<Volume> {
    let format = match format_from_name(path) {
        Some(f) => f,
        None => sniff(path)?.ok_or_else(|| ImagingError::UnknownFormat {
            path: path.to_path_buf(),
        })?,
    };
    match format {
        Format::Nifti | Format::NiftiGz => crate::nifti::read(path, opts),
        Format::Mha | Format::Mhd => crate::mha::read(path, opts),
        Format::Dicom => crate::dicom::read_files(&[path.to_path_buf()], opts),
        Format::Png => crate::png::read(path, opts),
    }
}

/// Writes a volume in the format named by the file extension (`.nii`, `.nii.gz`, `.mha`,
/// `.mhd`, `.png`), atomically.
pub fn write_volume(vol: &Volume, path: &Path) -> Result<()> {
    match format_from_name(path) {
        Some(Format::Nifti | Format::NiftiGz) => crate::nifti::write(vol, path),
        Some(Format::Mha | Format::Mhd) => crate::mha::write(vol, path, true),
        Some(Format::Png) => crate::png::write(vol, path),
        _ => Err(ImagingError::InvalidArgument(format!(
            "{}: cannot write this format (use .nii, .nii.gz, .mha, .mhd or .png)",
            path.display()
        ))),
    }
}
