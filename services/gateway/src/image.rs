//! Decoding uploaded images (format from the file name, then from the bytes) and encoding
//! result masks in the format a request asks for (`result_extension`, `result_dtype`).

use aiaa_imaging::{ReadOptions, Volume};

use crate::error::{GatewayError, Result};

/// Decodes an uploaded image; `filename` (may be absent) decides the format first.
pub fn decode(filename: Option<&str>, bytes: &[u8]) -> Result<Volume> {
    aiaa_imaging::io::decode_bytes(filename.unwrap_or("upload"), bytes, &ReadOptions::default())
        .map_err(|e| GatewayError::BadRequest(format!("the image could not be read: {e}")))
}

/// What a NIfTI upload's header says that the reader silently replaces: a voxel size
/// (`pixdim[1..=3]`) that is NaN, infinite or 0 is read as 1 mm. One message per axis; none
/// for other formats or a sound header.
pub fn pixdim_warnings(filename: Option<&str>, bytes: &[u8]) -> Vec<String> {
    use std::io::Read;
    let name = filename.unwrap_or("upload");
    let path = std::path::Path::new(name);
    let is_nifti = match aiaa_imaging::io::format_from_name(path)
        .or_else(|| aiaa_imaging::io::format_from_bytes(&bytes[..bytes.len().min(4096)]))
    {
        Some(f) => matches!(
            f,
            aiaa_imaging::io::Format::Nifti | aiaa_imaging::io::Format::NiftiGz
        ),
        None => false,
    };
    if !is_nifti {
        return Vec::new();
    }
    let mut reader: Box<dyn Read + '_> = if aiaa_imaging::gz::is_gzip(bytes) {
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let Ok(header) = aiaa_imaging::nifti::read_header(path, &mut reader) else {
        return Vec::new();
    };
    let axes = usize::try_from(header.dim[0]).unwrap_or(0).clamp(0, 3);
    (1..=axes)
        .filter(|&i| {
            let p = header.pixdim[i];
            !p.is_finite() || p == 0.0
        })
        .map(|i| {
            format!(
                "pixdim[{i}] = {} in the NIfTI header is not a voxel size: axis {} is read as 1 mm",
                header.pixdim[i],
                i - 1
            )
        })
        .collect()
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
