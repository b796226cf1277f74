//! Writers: `writers.WriteNiftyResults` writes an item as
//! `<output>/<input name>/<input name>_<applied_key>.nii.gz`, where `<output>` is the
//! writer's `write_path` or else the sample's [`Data::output_dir`], and `<input name>` is the
//! sample's name without image extensions. The volume keeps its geometry.

use std::path::PathBuf;

use aiaa_imaging::VoxelType;
use aiaa_imaging::io::write_volume;
use serde::Deserialize;

use crate::args::{ArgError, ArgResult};
use crate::data::{Data, Item};
use crate::load::input_name;
use crate::registry::FromArgs;
use crate::{Result, SampleRng, Transform, TransformError};

/// Arguments of [`WriteNiftyResults`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteArgs {
    /// The item to write.
    pub applied_key: String,
    /// Output element type: `float32` (default), `float64`, `uint8`, `int16`, `uint16`,
    /// `int32`. Integers are rounded and saturated.
    #[serde(default)]
    pub dtype: Option<String>,
    /// Output folder (else the sample's output folder).
    #[serde(default)]
    pub write_path: Option<PathBuf>,
}

/// `writers.WriteNiftyResults` (see the module docs). Also reported as the written path
/// under `<applied_key>_path`.
#[derive(Debug)]
pub struct WriteNiftyResults {
    key: String,
    dtype: VoxelType,
    dir: Option<PathBuf>,
}

/// Parses a numpy dtype name.
pub fn dtype(name: &str) -> Option<VoxelType> {
    Some(match name {
        "float32" => VoxelType::F32,
        "float64" => VoxelType::F64,
        "uint8" => VoxelType::U8,
        "int16" => VoxelType::I16,
        "uint16" => VoxelType::U16,
        "int32" => VoxelType::I32,
        _ => return None,
    })
}

impl FromArgs for WriteNiftyResults {
    type Args = WriteArgs;
    fn from_args(a: WriteArgs) -> ArgResult<Self> {
        let name = a.dtype.as_deref().unwrap_or("float32");
        let dtype = dtype(name).ok_or_else(|| {
            ArgError::new(
                "dtype",
                format!("{name:?}: use float32, float64, uint8, int16, uint16 or int32"),
            )
        })?;
        Ok(WriteNiftyResults {
            key: a.applied_key,
            dtype,
            dir: a.write_path,
        })
    }
}

impl Transform for WriteNiftyResults {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        let dir =
            self.dir.clone().or_else(|| d.output_dir.clone()).ok_or_else(|| {
                TransformError::invalid("no write_path and no output folder for the sample")
            })?;
        let name = input_name(std::path::Path::new(&d.name));
        if name.is_empty() {
            return Err(TransformError::invalid(
                "the sample has no name to write it under",
            ));
        }
        let vol = d.volume(&self.key)?.cast(self.dtype);
        let folder = dir.join(&name);
        std::fs::create_dir_all(&folder).map_err(|e| TransformError::Io {
            path: folder.clone(),
            source: e,
        })?;
        let path = folder.join(format!("{name}_{}.nii.gz", self.key));
        write_volume(&vol, &path)?;
        d.insert(
            format!("{}_path", self.key),
            Item::Text(path.to_string_lossy().into_owned()),
        );
        Ok(())
    }
}
