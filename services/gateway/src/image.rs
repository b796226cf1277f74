//! Decoding uploaded images (format from the file name, then from the bytes) and encoding
//! result masks in the format a request asks for (`result_extension`, `result_dtype`).

use aiaa_imaging::{ReadOptions, Volume};

use crate::error::{GatewayError, Result};

/// Decodes an uploaded image; `filename` (may be absent) decides the format first.
pub fn decode(filename: Option<&str>, bytes: &[u8]) -> Result<Volume> {
    aiaa_imaging::io::decode_bytes(filename.unwrap_or("upload"), bytes, &ReadOptions::default())
        .map_err(|e| GatewayError::BadRequest(format!("the image could not be read: {e}")))
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
