//! Loaders: `LoadNifty`, `LoadNumpyFromFilename`, `LoadPng` (any format `aiaa_imaging`
//! reads, chosen by file name then bytes), and the header readers
//! `LoadResolutionFromNifty` and `Load3DShapeFromNumpy`.
//!
//! A field holding one path becomes one image; a list of paths becomes one multi-channel
//! image (one file per channel, same grid). A field that already holds an image (e.g. a
//! volume decoded by the server) is kept. Items whose key contains `label`, `seg` or `mask`
//! become labels ([`Kind::from_key`]).

use std::path::{Path, PathBuf};

use aiaa_imaging::ReadOptions;
use aiaa_imaging::io::read_volume;
use serde::Deserialize;

use crate::args::{ArgResult, Keys};
use crate::channels::{FieldsArgs, stack};
use crate::data::{Data, Image, Item, Kind};
use crate::registry::FromArgs;
use crate::{Result, SampleRng, Transform, TransformError};

/// The name of a file without its image extensions (`a/b/im1.nii.gz` gives `im1`).
pub fn input_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    aiaa_imaging::io::image_stem(&name).map_or(name.clone(), str::to_owned)
}

fn load_field(d: &mut Data, key: &str, channel_dim: bool) -> Result<()> {
    let paths: Vec<PathBuf> = match d.item(key)? {
        Item::Image(_) => {
            d.image_mut(key)?.channel_dim |= channel_dim;
            return Ok(());
        }
        Item::Text(p) => vec![PathBuf::from(p)],
        Item::Texts(ps) => ps.iter().map(PathBuf::from).collect(),
        other => {
            return Err(TransformError::WrongItem {
                key: key.to_owned(),
                expected: "a file path or a list of file paths",
                found: other.kind_name(),
            });
        }
    };
    let mut vols = paths
        .iter()
        .map(|p| read_volume(p, &ReadOptions::default()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // One file: its volume as it is (no copy).
    let vol = match (vols.pop(), vols.is_empty()) {
        (Some(v), true) => v,
        (Some(v), false) => {
            vols.push(v);
            stack(&vols)?
        }
        (None, _) => stack(&vols)?,
    };
    if d.name.is_empty() {
        d.name = input_name(&paths[0]);
    }
    let mut im = Image::new(vol, Kind::from_key(key));
    im.channel_dim |= channel_dim || paths.len() > 1;
    im.source = Some(paths[0].clone());
    d.insert_image(key, im);
    Ok(())
}

/// `transforms.LoadNifty`: loads each field's file(s) as a "4D array" (with channel axis).
#[derive(Debug)]
pub struct LoadNifty {
    fields: Keys,
}

impl FromArgs for LoadNifty {
    type Args = FieldsArgs;
    fn from_args(a: FieldsArgs) -> ArgResult<Self> {
        Ok(LoadNifty { fields: a.fields })
    }
}

impl Transform for LoadNifty {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        self.fields.iter().try_for_each(|k| load_field(d, k, true))
    }
}

/// `transforms.LoadNumpyFromFilename`: loads each field's file(s) as they are stored (no
/// channel axis for one scalar file; `VolumeTo4dArray` adds it).
#[derive(Debug)]
pub struct LoadNumpyFromFilename {
    fields: Keys,
}

impl FromArgs for LoadNumpyFromFilename {
    type Args = FieldsArgs;
    fn from_args(a: FieldsArgs) -> ArgResult<Self> {
        Ok(LoadNumpyFromFilename { fields: a.fields })
    }
}

impl Transform for LoadNumpyFromFilename {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        self.fields.iter().try_for_each(|k| load_field(d, k, false))
    }
}

/// `transforms.LoadPng`: a path becomes a 2D image `[width, height, 1]` with a channel axis
/// (one channel per colour component); a list of numbers (class labels) is kept, a single
/// number becomes a one-element list.
#[derive(Debug)]
pub struct LoadPng {
    fields: Keys,
}

impl FromArgs for LoadPng {
    type Args = FieldsArgs;
    fn from_args(a: FieldsArgs) -> ArgResult<Self> {
        Ok(LoadPng { fields: a.fields })
    }
}

impl Transform for LoadPng {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.fields.iter() {
            match d.item(k)? {
                Item::Numbers(_) => {}
                Item::Number(x) => {
                    let x = *x;
                    d.insert(k, Item::Numbers(vec![x]));
                }
                _ => load_field(d, k, true)?,
            }
        }
        Ok(())
    }
}

/// Arguments naming one key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyArgs {
    /// The key.
    pub applied_key: String,
}

fn grid_of(d: &Data, key: &str) -> Result<Image> {
    match d.item(key)? {
        Item::Image(im) => Ok((**im).clone()),
        Item::Text(p) => Ok(Image::new(
            read_volume(Path::new(p), &ReadOptions::default())?,
            Kind::Intensity,
        )),
        other => Err(TransformError::WrongItem {
            key: key.to_owned(),
            expected: "an image or a file path",
            found: other.kind_name(),
        }),
    }
}

/// `transforms.LoadResolutionFromNifty`: `d[<key>_resolution]` = the voxel spacing (mm) of
/// the image (or of the file the key names).
#[derive(Debug)]
pub struct LoadResolutionFromNifty {
    key: String,
}

impl FromArgs for LoadResolutionFromNifty {
    type Args = KeyArgs;
    fn from_args(a: KeyArgs) -> ArgResult<Self> {
        Ok(LoadResolutionFromNifty { key: a.applied_key })
    }
}

impl Transform for LoadResolutionFromNifty {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        let im = grid_of(d, &self.key)?;
        d.insert(
            format!("{}_resolution", self.key),
            Item::Numbers(im.vol.geometry.spacing.to_vec()),
        );
        Ok(())
    }
}

/// `transforms.Load3DShapeFromNumpy`: `d[<key>_shape]` = the array shape, numpy order:
/// `[C, X, Y, Z]` with a channel axis, `[X, Y, Z]` without.
#[derive(Debug)]
pub struct Load3DShapeFromNumpy {
    key: String,
}

impl FromArgs for Load3DShapeFromNumpy {
    type Args = KeyArgs;
    fn from_args(a: KeyArgs) -> ArgResult<Self> {
        Ok(Load3DShapeFromNumpy { key: a.applied_key })
    }
}

impl Transform for Load3DShapeFromNumpy {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        let im = grid_of(d, &self.key)?;
        let mut shape: Vec<f64> = Vec::new();
        if im.channel_dim {
            shape.push(im.vol.channels as f64);
        }
        shape.extend(im.vol.dims.iter().map(|&n| n as f64));
        d.insert(format!("{}_shape", self.key), Item::Numbers(shape));
        Ok(())
    }
}
