//! Decoding uploaded images (format from the file name, then from the bytes), probing them
//! without decoding (sessions), assembling an uploaded DICOM series into one `.nii.gz`
//! volume (sessions, the datastore), and encoding result masks in the format a request asks for
//! (`result_extension`, `result_dtype`).

use aiaa_imaging::{ReadOptions, Volume};

use crate::error::{GatewayError, Result};

/// Decodes an uploaded image of at most `max_bytes` decoded bytes (413 past it);
/// `filename` (may be absent) decides the format first.
pub fn decode(filename: Option<&str>, bytes: &[u8], max_bytes: u64) -> Result<Volume> {
    let opts = ReadOptions { max_bytes };
    aiaa_imaging::io::decode_bytes(filename.unwrap_or("upload"), bytes, &opts).map_err(|e| match e {
        aiaa_imaging::ImagingError::TooLarge { needed, limit, .. } => GatewayError::FieldTooLarge(format!(
            "the image decodes to {needed} bytes, more than the {limit} bytes the gateway decodes (--gateway-max-image-bytes, AIAA_GATEWAY_MAX_IMAGE_BYTES)"
        )),
        e => GatewayError::BadRequest(format!("the image could not be read: {e}")),
    })
}

/// Bytes from an upload's start that hold the header of a NIfTI or PNG file.
const HEADER_PREFIX: u64 = 1 << 20;

/// Checks an upload without decoding its voxels: the format (from the file name, else the
/// bytes), a header that parses, voxels the file can hold, and a decoded size within the
/// decode limit. Reads the first MiB, and the whole file only when that is not enough to
/// tell (a long MetaImage or NRRD header); never all of a NIfTI file. Blocking.
pub fn probe(filename: Option<&str>, part: &crate::form::Part) -> Result<aiaa_imaging::io::ImageInfo> {
    use aiaa_imaging::io::{Format, format_from_bytes, format_from_name};
    let name = filename.unwrap_or("upload");
    let read_err = |e: std::io::Error| GatewayError::Internal(format!("reading the spooled upload: {e}"));
    let head = part.read_prefix(HEADER_PREFIX).map_err(read_err)?;
    let nifti = matches!(
        format_from_name(std::path::Path::new(name))
            .or_else(|| format_from_bytes(&head[..head.len().min(4096)])),
        Some(Format::Nifti | Format::NiftiGz)
    );
    let unreadable =
        |e: aiaa_imaging::ImagingError| GatewayError::BadRequest(format!("the image could not be read: {e}"));
    let limit = ReadOptions::default().max_bytes;
    let too_large = |bytes: u64, what: String| {
        GatewayError::FieldTooLarge(format!(
            "the image decodes to {bytes} bytes ({what}), more than the limit of {limit} bytes"
        ))
    };
    let decoded = match aiaa_imaging::io::probe_bytes(name, &head) {
        Ok(info) => info,
        Err(_) if (head.len() as u64) < part.len() => {
            if nifti {
                // A NIfTI file: its header is in the prefix, and its voxels need not be read
                // to know the file can hold them (the session's read checks exactly).
                aiaa_imaging::nifti::probe_head(std::path::Path::new(name), &head, part.len())
                    .map_err(unreadable)?
            } else {
                // A header longer than the prefix (MetaImage, NRRD, PNG metadata): the
                // whole file.
                let all = part.read_blocking().map_err(read_err)?;
                aiaa_imaging::io::probe_bytes(name, &all).map_err(unreadable)?
            }
        }
        Err(e) => return Err(unreadable(e)),
    };
    if decoded.bytes() > limit {
        let what = format!(
            "{:?} voxels, {} channels of {:?}",
            decoded.dims, decoded.channels, decoded.voxel_type
        );
        return Err(too_large(decoded.bytes(), what));
    }
    Ok(decoded)
}

pub use aiaa_imaging::io::MaskFormat;

/// Reads `result_extension`, `result_dtype` and `result_compress` from the params, with
/// `default_extension` when absent.
pub fn mask_format(
    params: &serde_json::Map<String, serde_json::Value>,
    default_extension: &str,
) -> Result<MaskFormat> {
    let text = |k: &str| params.get(k).and_then(|v| v.as_str());
    let compress = params
        .get("result_compress")
        .map(|v| v.as_bool().unwrap_or_else(|| v.as_str() == Some("true")));
    MaskFormat::parse(
        text("result_extension"),
        text("result_dtype"),
        compress,
        default_extension,
    )
    .map_err(GatewayError::BadRequest)
}

/// Encodes a mask in `format`.
pub fn encode(format: &MaskFormat, mask: &Volume) -> Result<Vec<u8>> {
    format
        .encode(mask)
        .map_err(|e| GatewayError::BadRequest(format!("the result mask cannot be written: {e}")))
}

/// Whether an uploaded part is a DICOM file (its name ends in `.dcm`, or `DICM` at byte 128).
pub fn is_dicom(part: &crate::form::Part) -> bool {
    let by_name = part
        .base_filename()
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(".dcm"));
    by_name
        || part
            .read_prefix(132)
            .is_ok_and(|head| head.get(128..132) == Some(b"DICM".as_slice()))
}

/// The files of one DICOM series assembled into a `.nii.gz` image (at most `max_bytes`
/// decoded, 413 past it). Parts held in memory are written to a temporary folder first;
/// spooled ones are read where they lie. Blocking.
pub fn dicom_series(files: &[crate::form::Part], max_bytes: u64) -> Result<bytes::Bytes> {
    let internal = |e: std::io::Error| GatewayError::Internal(format!("spooling the DICOM series: {e}"));
    let dir = tempfile::tempdir().map_err(internal)?;
    let mut paths = Vec::with_capacity(files.len());
    for (i, part) in files.iter().enumerate() {
        match &part.data {
            crate::form::Data::File { path, .. } => paths.push(path.path().to_path_buf()),
            crate::form::Data::Memory(bytes) => {
                let path = dir.path().join(format!("{i:06}.dcm"));
                std::fs::write(&path, bytes).map_err(internal)?;
                paths.push(path);
            }
        }
    }
    let opts = ReadOptions { max_bytes };
    let volume = aiaa_imaging::dicom::read_files(&paths, &opts).map_err(|e| match e {
        aiaa_imaging::ImagingError::TooLarge { needed, limit, .. } => GatewayError::FieldTooLarge(format!(
            "the DICOM series decodes to {needed} bytes, more than the {limit} bytes the gateway decodes (--gateway-max-image-bytes, AIAA_GATEWAY_MAX_IMAGE_BYTES)"
        )),
        e => GatewayError::BadRequest(format!(
            "the {} uploaded files are not one readable DICOM series: {e}",
            files.len()
        )),
    })?;
    let bytes = aiaa_imaging::io::encode_bytes(&volume, ".nii.gz", false)
        .map_err(|e| GatewayError::Internal(format!("encoding the DICOM series: {e}")))?;
    Ok(bytes.into())
}
