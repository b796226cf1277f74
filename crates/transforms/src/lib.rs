//! The transform catalogue of Clara Train (seed appendix 10.2), built from the seed's JSON
//! configs and run on [`aiaa_imaging::Volume`]s, whose geometry travels with the voxels.
//!
//! * A sample is a [`Data`]: named [`Item`]s (images and labels with geometry, points,
//!   numbers, strings), like the seed's and MONAI's Python dictionaries.
//! * A [`Transform`] changes a sample; [`registry::build`] makes one from a JSON object by
//!   its `"name"` (`transforms.X`, `transforms_ctrl.X`, `transforms_fastaug.X`,
//!   `writers.X`), with the seed's argument names; a [`Pipeline`] is a list of them.
//! * Randomness is seeded per (pipeline seed, transform position, sample index)
//!   ([`rng`]); a random transform draws once per call and applies that draw to every key
//!   it touches, so image and label stay aligned.
//! * Besides the seed's catalogue, a few MONAI-style transforms of ours (not the seed's)
//!   host models trained with MONAI-like pipelines: `transforms.Orientation`
//!   ([`orientation`]), `transforms.ScaleIntensityRangePercentiles` and
//!   `transforms.NormalizeIntensity` ([`normalize`]),
//!   `transforms.KeepLargestConnectedComponent` and `transforms.FillHoles` ([`morphology`]),
//!   and `transforms.ErodeLabel` ([`erode`]), which trains a model to a tighter label
//!   convention.
//! * Spatial transforms record what they did ([`record`]), so a prediction on the
//!   transformed grid can be mapped back ([`record::invert`]).
//!
//! Layout follows `aiaa_imaging`: `offset = i + nx * (j + ny * (k + nz * c))`. The seed's
//! "4D numpy array" `[C, X, Y, Z]` is an [`Image`] with `channel_dim` set; numpy axis `a`
//! of a 3D array is our axis `a` (`i`, `j`, `k`), numpy axis `a` of a 4D array is our axis
//! `a - 1`.

pub mod args;
pub mod channels;
pub mod crop;
pub mod data;
pub mod deepedit;
pub mod deepgrow;
pub mod erode;
pub mod error;
pub mod extreme;
pub mod fastaug;
pub mod guidance;
pub mod image2d;
pub mod intensity;
pub mod load;
pub mod morphology;
pub mod normalize;
pub mod orientation;
pub mod pipeline;
pub mod record;
pub mod registry;
pub mod rng;
pub mod spatial;
pub mod spatial_tf;
pub mod writers;

pub use data::{Data, Image, Item, Kind};
pub use error::{Result, TransformError};
pub use pipeline::Pipeline;
pub use record::invert;
pub use rng::SampleRng;

/// A dictionary transform.
pub trait Transform: Send + Sync + std::fmt::Debug {
    /// Changes the sample. Random transforms draw from `rng` once per call and apply the
    /// same draw to every key they touch.
    fn apply(&self, d: &mut Data, rng: &mut SampleRng) -> Result<()>;
}
