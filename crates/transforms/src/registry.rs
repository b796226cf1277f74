//! Building transforms from the seed's JSON objects by `"name"`.
//!
//! Names are the seed's full names (`transforms.X`, `transforms_ctrl.X`,
//! `transforms_fastaug.X`, `writers.X`); arguments are the seed's (underscore spelling only:
//! the PDF's `applied key` is an unknown argument). Each transform parses its arguments into
//! a `serde` struct with `deny_unknown_fields`, then checks ranges, so every config error
//! is reported before any sample is touched, naming the transform's position in its list
//! (0-based), its name and the argument.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::args::{ArgError, ArgResult};
use crate::{Result, Transform, TransformError};
use crate::{
    channels, crop, deepedit, deepgrow, erode, extreme, fastaug, guidance, image2d, intensity, load,
    morphology, normalize, orientation, spatial_tf, writers,
};

/// A transform that can be built from its parsed arguments.
pub trait FromArgs: Sized {
    /// The argument struct (`serde`, `deny_unknown_fields`).
    type Args: DeserializeOwned;
    /// Checks the arguments and builds the transform.
    fn from_args(args: Self::Args) -> ArgResult<Self>;
}

type BuildFn = fn(&Map<String, Value>) -> ArgResult<Box<dyn Transform>>;

fn make<T: FromArgs + Transform + 'static>(obj: &Map<String, Value>) -> ArgResult<Box<dyn Transform>> {
    Ok(Box::new(T::from_args(parse::<T::Args>(obj)?)?))
}

/// Every transform we build, by its seed name; then ours (MONAI-style, not in the seed).
const CATALOGUE: &[(&str, BuildFn)] = &[
    ("transforms.LoadNifty", make::<load::LoadNifty>),
    (
        "transforms.LoadNumpyFromFilename",
        make::<load::LoadNumpyFromFilename>,
    ),
    ("transforms.LoadPng", make::<load::LoadPng>),
    (
        "transforms.LoadResolutionFromNifty",
        make::<load::LoadResolutionFromNifty>,
    ),
    (
        "transforms.Load3DShapeFromNumpy",
        make::<load::Load3DShapeFromNumpy>,
    ),
    ("transforms.VolumeTo4dArray", make::<channels::VolumeTo4dArray>),
    (
        "transforms.SplitAcrossChannels",
        make::<channels::SplitAcrossChannels>,
    ),
    ("transforms.NPExpandDims", make::<channels::NPExpandDims>),
    ("transforms.NPRepChannels", make::<channels::NPRepChannels>),
    (
        "transforms.ScaleIntensityRange",
        make::<intensity::ScaleIntensityRange>,
    ),
    (
        "transforms.ScaleIntensityOscillation",
        make::<intensity::ScaleIntensityOscillation>,
    ),
    (
        "transforms.NormalizeNonzeroIntensities",
        make::<intensity::NormalizeNonzeroIntensities>,
    ),
    ("transforms.AdjustContrast", make::<intensity::AdjustContrast>),
    ("transforms.AddGaussianNoise", make::<intensity::AddGaussianNoise>),
    ("transforms.CenterData", make::<intensity::CenterData>),
    (
        "transforms.BratsConvertLabels",
        make::<intensity::BratsConvertLabels>,
    ),
    (
        "transforms.CropForegroundObject",
        make::<crop::CropForegroundObject>,
    ),
    (
        "transforms.CropSubVolumeRandomWithinBounds",
        make::<crop::CropSubVolumeRandomWithinBounds>,
    ),
    (
        "transforms.CropSubVolumeCenter",
        make::<crop::CropSubVolumeCenter>,
    ),
    (
        "transforms_ctrl.CropSubVolumePosNegRatioCtrlEpoch",
        make::<crop::CropSubVolumePosNegRatioCtrlEpoch>,
    ),
    ("transforms.NPRandomFlip3D", make::<spatial_tf::NPRandomFlip3D>),
    ("transforms.FlipAxisRandom", make::<spatial_tf::FlipAxisRandom>),
    ("transforms.NPRandomRot90_XY", make::<spatial_tf::NPRandomRot90XY>),
    ("transforms.NPRandomZoom3D", make::<spatial_tf::NPRandomZoom3D>),
    ("transforms.ResampleVolume", make::<spatial_tf::ResampleVolume>),
    ("transforms.Resize", make::<spatial_tf::Resize>),
    (
        "transforms.AddExtremePointsChannel",
        make::<extreme::AddExtremePointsChannel>,
    ),
    (
        "transforms.AddGuidanceSignal",
        make::<guidance::AddGuidanceSignal>,
    ),
    (
        "transforms.AddInitialSeedPoint",
        make::<guidance::AddInitialSeedPoint>,
    ),
    (
        "transforms.AddGuidanceFromPoints",
        make::<deepgrow::AddGuidanceFromPoints>,
    ),
    (
        "transforms.SpatialCropGuidance",
        make::<deepgrow::SpatialCropGuidance>,
    ),
    ("transforms.ResizeGuidance", make::<deepgrow::ResizeGuidance>),
    (
        "transforms.DiscardAddGuidance",
        make::<deepedit::DiscardAddGuidance>,
    ),
    (
        "transforms.AddGuidanceSignalDeepEdit",
        make::<deepedit::AddGuidanceSignalDeepEdit>,
    ),
    (
        "transforms.AddInitialSeedPointDeepEdit",
        make::<deepedit::AddInitialSeedPointDeepEdit>,
    ),
    (
        "transforms.AddInitialSeedPointMissingLabels",
        make::<deepedit::AddInitialSeedPointMissingLabels>,
    ),
    (
        "transforms.FindDiscrepancyRegionsDeepEdit",
        make::<deepedit::FindDiscrepancyRegionsDeepEdit>,
    ),
    (
        "transforms.AddRandomGuidanceDeepEdit",
        make::<deepedit::AddRandomGuidanceDeepEdit>,
    ),
    (
        "transforms.CropRandomSubImageInRange",
        make::<image2d::CropRandomSubImageInRange>,
    ),
    ("transforms.NPResizeImage", make::<image2d::NPResizeImage>),
    ("transforms.NP2DRotate", make::<image2d::NP2DRotate>),
    (
        "transforms_fastaug.TransformVolumeCropROIFastPosNegRatio",
        make::<fastaug::TransformVolumeCropROIFastPosNegRatio>,
    ),
    ("writers.WriteNiftyResults", make::<writers::WriteNiftyResults>),
    ("transforms.WriteNiftyResults", make::<writers::WriteNiftyResults>),
    // Ours (MONAI-style), not the seed's.
    ("transforms.Orientation", make::<orientation::Orientation>),
    (
        "transforms.ScaleIntensityRangePercentiles",
        make::<normalize::ScaleIntensityRangePercentiles>,
    ),
    (
        "transforms.NormalizeIntensity",
        make::<normalize::NormalizeIntensity>,
    ),
    (
        "transforms.KeepLargestConnectedComponent",
        make::<morphology::KeepLargestConnectedComponent>,
    ),
    ("transforms.FillHoles", make::<morphology::FillHoles>),
    ("transforms.ErodeLabel", make::<erode::ErodeLabel>),
];

/// Every name [`build`] accepts.
pub fn names() -> impl Iterator<Item = &'static str> {
    CATALOGUE.iter().map(|(n, _)| *n)
}

/// Builds the transform described by `entry`, the `position`-th of its list.
pub fn build(position: usize, entry: &Value) -> Result<(String, Box<dyn Transform>)> {
    let obj = entry.as_object().ok_or_else(|| TransformError::BadEntry {
        position,
        reason: "a transform must be a JSON object".into(),
    })?;
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| TransformError::BadEntry {
            position,
            reason: "missing string \"name\"".into(),
        })?;
    let (_, f) =
        CATALOGUE
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| TransformError::UnknownTransform {
                position,
                name: name.to_owned(),
            })?;
    let mut args = obj.clone();
    args.remove("name");
    let t = f(&args).map_err(|e| TransformError::Argument {
        position,
        name: name.to_owned(),
        argument: e.argument,
        reason: e.reason,
    })?;
    Ok((name.to_owned(), t))
}

/// Parses an argument struct, naming the offending argument on failure: serde names
/// unknown and missing fields itself; for a mistyped value, the argument whose removal
/// changes the error is the culprit.
pub fn parse<A: DeserializeOwned>(obj: &Map<String, Value>) -> ArgResult<A> {
    let msg = match serde_json::from_value::<A>(Value::Object(obj.clone())) {
        Ok(a) => return Ok(a),
        Err(e) => e.to_string(),
    };
    if let Some(f) = quoted(&msg, "unknown field `") {
        return Err(ArgError::new(&f, "unknown argument"));
    }
    if let Some(f) = quoted(&msg, "missing field `") {
        return Err(ArgError::new(&f, "required argument is missing"));
    }
    for key in obj.keys() {
        let mut o = obj.clone();
        o.remove(key);
        match serde_json::from_value::<A>(Value::Object(o)) {
            Ok(_) => return Err(ArgError::new(key, msg)),
            Err(e) if quoted(&e.to_string(), "missing field `").as_deref() == Some(key) => {
                return Err(ArgError::new(key, msg));
            }
            Err(_) => {}
        }
    }
    Err(ArgError::new("?", msg))
}

fn quoted(msg: &str, prefix: &str) -> Option<String> {
    let rest = &msg[msg.find(prefix)? + prefix.len()..];
    Some(rest[..rest.find('`')?].to_owned())
}
