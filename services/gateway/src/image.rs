//! Decoding uploaded images (format from the file name, then from the bytes) and encoding
//! result masks in the format a request asks for (`result_extension`, `result_dtype`).

use std::path::Path;

use aiaa_imaging::io::{Format, format_from_bytes, format_from_name};
use aiaa_imaging::{ReadOptions, Volume, VoxelType};

use crate::error::{GatewayError, Result};

/// Decodes an uploaded image; `filename` (may be absent) decides the format first.
pub fn decode(filename: Option<&str>, bytes: &[u8]) -> Result<Volume> {
    let name = filename.unwrap_or("upload");
    let path = Path::new(name);
    let format = format_from_name(path)
        .or_else(|| format_from_bytes(&bytes[..bytes.len().min(4096)]))
        .ok_or_else(|| {
            GatewayError::BadRequest(format!(
                "the image {name:?} is in an unknown format (send .nii, .nii.gz, .mha or .png)"
            ))
        })?;
    let opts = ReadOptions::default();
    let read = match format {
        Format::Nifti | Format::NiftiGz => aiaa_imaging::nifti::read_bytes(path, bytes, &opts),
        Format::Png => aiaa_imaging::png::read_bytes(path, bytes, &opts),
        Format::Mha | Format::Mhd => aiaa_imaging::mha::read_bytes(path, bytes, &opts, |data| {
            Err(aiaa_imaging::ImagingError::InvalidArgument(format!(
                "the header names a separate data file {data:?}; send a single .mha file instead"
            )))
        }),
        Format::Dicom => {
            return Err(GatewayError::BadRequest(format!(
                "{name:?}: DICOM files are not accepted here; send the series as .nii.gz or .mha"
            )));
        }
    };
    read.map_err(|e| GatewayError::BadRequest(format!("the image could not be read: {e}")))
}

/// How a result mask is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaskFormat {
    /// `.nii.gz`, `.nii`, `.mha` or `.png`.
    pub extension: String,
    /// The voxel type.
    pub dtype: VoxelType,
    /// Whether to compress (`.mha`; `.nii.gz` always compresses).
    pub compress: bool,
}

impl MaskFormat {
    /// Reads `result_extension`, `result_dtype` and `result_compress` from the params, with
    /// `default_extension` when absent.
    pub fn from_params(
        params: &serde_json::Map<String, serde_json::Value>,
        default_extension: &str,
    ) -> Result<Self> {
        let extension = match params.get("result_extension").and_then(|v| v.as_str()) {
            None | Some("") => default_extension.to_string(),
            Some(e) => {
                let e = e.trim().to_ascii_lowercase();
                let e = if e.starts_with('.') { e } else { format!(".{e}") };
                if !matches!(e.as_str(), ".nii.gz" | ".nii" | ".mha" | ".png") {
                    return Err(GatewayError::BadRequest(format!(
                        "result_extension {e:?} is not supported (use .nii.gz, .nii, .mha or .png)"
                    )));
                }
                e
            }
        };
        let dtype = match params.get("result_dtype").and_then(|v| v.as_str()) {
            None | Some("") | Some("uint8") => VoxelType::U8,
            Some("uint16") => VoxelType::U16,
            Some("int16") => VoxelType::I16,
            Some("int32") => VoxelType::I32,
            Some("float32") => VoxelType::F32,
            Some("float64") => VoxelType::F64,
            Some(other) => {
                return Err(GatewayError::BadRequest(format!(
                    "result_dtype {other:?} is not supported (uint8, uint16, int16, int32, float32, float64)"
                )));
            }
        };
        let compress = match params.get("result_compress") {
            None => true,
            Some(v) => v.as_bool().unwrap_or_else(|| v.as_str() == Some("true")),
        };
        Ok(Self {
            extension,
            dtype,
            compress,
        })
    }

    /// The result file's name.
    pub fn filename(&self) -> String {
        format!("result{}", self.extension)
    }

    /// Encodes a mask.
    pub fn encode(&self, mask: &Volume) -> Result<Vec<u8>> {
        let mask = mask.cast(self.dtype);
        let encoded = match self.extension.as_str() {
            ".nii.gz" => aiaa_imaging::nifti::to_bytes(&mask, true),
            ".nii" => aiaa_imaging::nifti::to_bytes(&mask, false),
            ".mha" => Ok(aiaa_imaging::mha::to_bytes(&mask, self.compress)),
            ".png" => aiaa_imaging::png::to_bytes(&mask),
            other => {
                return Err(GatewayError::BadRequest(format!("cannot write a {other} mask")));
            }
        };
        encoded.map_err(|e| GatewayError::BadRequest(format!("the result mask cannot be written: {e}")))
    }
}
