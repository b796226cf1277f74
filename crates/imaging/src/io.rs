//! Format dispatch (file name first, then bytes) and file helpers shared by the readers
//! and writers: bounded whole-file reads and atomic writes.

use std::path::Path;

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
    /// NRRD: `.nrrd` (attached data) or `.nhdr` (detached data file).
    Nrrd,
}

/// Case-insensitive suffix test on the file name.
pub fn has_suffix(path: &Path, suffix: &str) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(suffix))
}

/// Every image file suffix the readers know, with its format; where one suffix ends
/// another the longer comes first. The one list of the workspace: the datastore, the
/// trainer's datalists, the transforms' `LoadImage` names and conversion take theirs from
/// here.
pub const IMAGE_SUFFIXES: &[(&str, Format)] = &[
    (".nii.gz", Format::NiftiGz),
    (".nii", Format::Nifti),
    (".mha", Format::Mha),
    (".mhd", Format::Mhd),
    (".dcm", Format::Dicom),
    (".png", Format::Png),
    (".nrrd", Format::Nrrd),
    (".nhdr", Format::Nrrd),
];

/// The format implied by the file name, if any.
pub fn format_from_name(path: &Path) -> Option<Format> {
    IMAGE_SUFFIXES
        .iter()
        .find(|(s, _)| has_suffix(path, s))
        .map(|(_, f)| *f)
}

/// A file name without its image suffix (`im1.nii.gz` gives `im1`; case-insensitive), or
/// `None` when it has none of [`IMAGE_SUFFIXES`].
pub fn image_stem(name: &str) -> Option<&str> {
    let lower = name.to_ascii_lowercase();
    IMAGE_SUFFIXES
        .iter()
        .find(|(s, _)| lower.ends_with(s))
        .map(|(s, _)| &name[..name.len() - s.len()])
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
    if crate::nrrd::is_nrrd(head) {
        return Some(Format::Nrrd);
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

/// Writes `bytes` to `path` whole or not at all ([`aiaa_files::write`]), so readers never
/// see a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    aiaa_files::write(path, bytes).map_err(|e| ImagingError::io(path, e))
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
        Format::Nrrd => crate::nrrd::read(path, opts),
    }
}

/// Writes a volume in the format named by the file extension (`.nii`, `.nii.gz`, `.mha`,
/// `.mhd`, `.nrrd`, `.nhdr`, `.png`), atomically; MetaImage and NRRD are compressed.
pub fn write_volume(vol: &Volume, path: &Path) -> Result<()> {
    match format_from_name(path) {
        Some(Format::Nifti | Format::NiftiGz) => crate::nifti::write(vol, path),
        Some(Format::Mha | Format::Mhd) => crate::mha::write(vol, path, true),
        Some(Format::Png) => crate::png::write(vol, path),
        Some(Format::Nrrd) => crate::nrrd::write(vol, path, true),
        _ => Err(ImagingError::InvalidArgument(format!(
            "{}: cannot write this format (use .nii, .nii.gz, .mha, .mhd, .nrrd, .nhdr or .png)",
            path.display()
        ))),
    }
}

/// Decodes an image held in memory (an upload): the format comes from `name`'s extension,
/// else from the bytes. A single file only: an `.mhd` or `.nhdr` naming a separate data file
/// and DICOM (a series is a folder) are refused with a message saying what to send instead.
pub fn decode_bytes(name: &str, bytes: &[u8], opts: &ReadOptions) -> Result<Volume> {
    let path = Path::new(name);
    match single_file_format(name, bytes)? {
        Format::Nifti | Format::NiftiGz => crate::nifti::read_bytes(path, bytes, opts),
        Format::Png => crate::png::read_bytes(path, bytes, opts),
        Format::Mha | Format::Mhd => crate::mha::read_bytes(path, bytes, opts, |data| {
            Err(ImagingError::InvalidArgument(format!(
                "the header names a separate data file {data:?}; send a single .mha file instead"
            )))
        }),
        Format::Nrrd => crate::nrrd::read_bytes(path, bytes, opts, |data| {
            Err(ImagingError::InvalidArgument(format!(
                "the header names a separate data file {data:?}; send a single .nrrd file instead"
            )))
        }),
        Format::Dicom => Err(dicom_refused(name)),
    }
}

/// The format of an upload held in memory: from the name first, then from the bytes.
fn single_file_format(name: &str, bytes: &[u8]) -> Result<Format> {
    let format = format_from_name(Path::new(name))
        .or_else(|| format_from_bytes(&bytes[..bytes.len().min(4096)]))
        .ok_or_else(|| {
            ImagingError::InvalidArgument(format!(
                "the image {name:?} is in an unknown format (send .nii, .nii.gz, .mha, .nrrd or .png)"
            ))
        })?;
    Ok(format)
}

fn dicom_refused(name: &str) -> ImagingError {
    ImagingError::InvalidArgument(format!(
        "{name:?}: a single DICOM file is not accepted here; send the series as .nii.gz or .mha"
    ))
}

/// What an image header says: the grid and its geometry, the channels and the voxel type
/// the image decodes to (scaling and widening included), read without decoding the voxels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageInfo {
    /// Grid size `[nx, ny, nz]`.
    pub dims: [usize; 3],
    /// Channels.
    pub channels: usize,
    /// The decoded voxel type.
    pub voxel_type: crate::VoxelType,
    /// Where the grid lies.
    pub geometry: crate::Geometry,
}

impl From<&Volume> for ImageInfo {
    fn from(v: &Volume) -> Self {
        ImageInfo {
            dims: v.dims,
            channels: v.channels,
            voxel_type: v.voxel_type(),
            geometry: v.geometry,
        }
    }
}

impl ImageInfo {
    /// Voxels of one channel.
    pub fn voxel_count(&self) -> u64 {
        self.dims.iter().map(|&d| d as u64).fold(1, u64::saturating_mul)
    }

    /// Bytes of the decoded volume (every channel).
    pub fn bytes(&self) -> u64 {
        self.voxel_count()
            .saturating_mul(self.channels as u64)
            .saturating_mul(self.voxel_type.size() as u64)
    }
}

/// What the header of an image held in memory says (see [`ImageInfo`]), in microseconds
/// and without allocating the voxels: lets a service price a decode before it runs. Formats
/// and refusals as [`decode_bytes`], including a file too short for the data its header
/// announces ([`crate::limits::check_available`]); the voxel data itself is not checked.
pub fn probe_bytes(name: &str, bytes: &[u8]) -> Result<ImageInfo> {
    let path = Path::new(name);
    match single_file_format(name, bytes)? {
        Format::Nifti | Format::NiftiGz => crate::nifti::probe_bytes(path, bytes),
        Format::Png => crate::png::probe_bytes(path, bytes),
        Format::Mha | Format::Mhd => crate::mha::probe_bytes(path, bytes),
        Format::Nrrd => crate::nrrd::probe_bytes(path, bytes),
        Format::Dicom => Err(dicom_refused(name)),
    }
}

/// Encodes a volume in memory in the format of `extension` (`.nii.gz`, `.nii`, `.mha`,
/// `.nrrd`, `.png`); `compress` applies to `.mha` and `.nrrd` (gzip; `.nii.gz` always
/// compresses).
pub fn encode_bytes(vol: &Volume, extension: &str, compress: bool) -> Result<Vec<u8>> {
    match extension {
        ".nii.gz" => crate::nifti::to_bytes(vol, true),
        ".nii" => crate::nifti::to_bytes(vol, false),
        ".mha" => Ok(crate::mha::to_bytes(vol, compress)),
        ".nrrd" => Ok(crate::nrrd::to_bytes(vol, compress)),
        ".png" => crate::png::to_bytes(vol),
        other => Err(ImagingError::InvalidArgument(format!(
            "cannot write a {other:?} image (use .nii.gz, .nii, .mha, .nrrd or .png)"
        ))),
    }
}

/// How a result mask is written: the file extension, the voxel type and, for `.mha` and
/// `.nrrd`, compression (the AIAA API's `result_extension`, `result_dtype`, `result_compress`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskFormat {
    /// `.nii.gz`, `.nii`, `.mha`, `.nrrd` or `.png`.
    pub extension: String,
    /// The voxel type.
    pub dtype: crate::VoxelType,
    /// Whether to compress (`.mha`, `.nrrd`; `.nii.gz` always compresses).
    pub compress: bool,
}

impl MaskFormat {
    /// Checks the requested extension (with or without its dot; `default_extension` when
    /// absent or empty), dtype (`uint8` when absent) and compression (on when absent); the
    /// error names the bad value and the accepted ones.
    pub fn parse(
        extension: Option<&str>,
        dtype: Option<&str>,
        compress: Option<bool>,
        default_extension: &str,
    ) -> std::result::Result<MaskFormat, String> {
        use crate::VoxelType;
        let extension = match extension.map(|e| e.trim().to_ascii_lowercase()) {
            None => default_extension.to_string(),
            Some(e) if e.is_empty() => default_extension.to_string(),
            Some(e) => {
                let e = if e.starts_with('.') { e } else { format!(".{e}") };
                if !matches!(e.as_str(), ".nii.gz" | ".nii" | ".mha" | ".nrrd" | ".png") {
                    return Err(format!(
                        "result_extension {e:?} is not supported (use .nii.gz, .nii, .mha, .nrrd or .png)"
                    ));
                }
                e
            }
        };
        let dtype = match dtype {
            None | Some("") | Some("uint8") => VoxelType::U8,
            Some("uint16") => VoxelType::U16,
            Some("int16") => VoxelType::I16,
            Some("int32") => VoxelType::I32,
            Some("float32") => VoxelType::F32,
            Some("float64") => VoxelType::F64,
            Some(other) => {
                return Err(format!(
                    "result_dtype {other:?} is not supported (uint8, uint16, int16, int32, float32, float64)"
                ));
            }
        };
        Ok(MaskFormat {
            extension,
            dtype,
            compress: compress.unwrap_or(true),
        })
    }

    /// The result file's name, `result<extension>`.
    pub fn filename(&self) -> String {
        format!("result{}", self.extension)
    }

    /// Casts the mask to the voxel type (no copy when it already is) and encodes it.
    pub fn encode(&self, mask: &Volume) -> Result<Vec<u8>> {
        if mask.voxel_type() == self.dtype {
            return encode_bytes(mask, &self.extension, self.compress);
        }
        encode_bytes(&mask.cast(self.dtype), &self.extension, self.compress)
    }
}
