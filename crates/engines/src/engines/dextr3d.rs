//! `Dextr3dCroppedEngine`: annotation from extreme points (DEXTR 3D).
//!
//! Model config keys besides the seed's (all optional): `roi` (network input `[x, y, z]`;
//! default the `size` of a `CropForegroundObject` in `pre_transforms`, else 128³), `padding` (mm around the points, default 20), `sigma` (the Gaussian of
//! the extreme-points channel, voxels; reported to clients; the transform's own `sigma`
//! is what the network gets), `input_layout`, `output_activation`, `labels`, `description`.
//!
//! The flow: the points' bounding box grown by `padding` mm on each side (per axis, in that
//! axis' spacing), clamped to the image, is resized (linear) to `roi`, sampled from the image
//! where it lies (no crop is copied out first: [`super::grid::resize_region`]); the points
//! move with it and are put under the label key of `transforms.AddExtremePointsChannel` (or
//! `label`), then the config's `pre_transforms` run (e.g. `VolumeTo4dArray`, intensity
//! normalisation, `AddExtremePointsChannel`; a training config's validation list adapted by
//! [`crate::adapt`]); the network's foreground probability (channel
//! 1 of a multi-channel output) goes back onto the crop's grid (linear) and is thresholded at
//! `thresh` straight into an empty mask on the request's grid (the work after the forward
//! is bounded by the crop: no crop-sized float copy, no pasting).
//!
//! Pre-cropped requests (the clients crop around the points with the same `padding` mm and
//! resize to `roi` themselves) need no special case: the box of their points plus `padding`
//! mm is the whole crop they sent, already of size `roi`, so the server's crop and resize are
//! the identity and the mask comes back on the grid they sent.

use aiaa_imaging::Volume;
use aiaa_imaging::io::ImageInfo;
use aiaa_transforms::{Item, Pipeline};
use serde_json::{Map, Value, json};

use super::grid::{Interp, region_answer, resize_region};
use super::{
    Activation, Engine, EngineSpec, FORWARD_BYTES_PER_VOXEL, ModelInfo, Outcome, Timings, labels_of, points,
    pre_transforms, sample, six_points, take_image, warm_input,
};
use crate::adapt;
use crate::device::{Devices, Finish, Net};
use crate::error::Result;
use crate::kind::EngineKind;
use crate::tensor::{Layout, to_tensor};

/// The engine.
pub struct Dextr3d {
    info: ModelInfo,
    net: Net,
    roi: [usize; 3],
    padding: f64,
    layout: Layout,
    activation: Activation,
    thresh: f64,
    points_key: String,
    pre: Pipeline,
}

impl Dextr3d {
    /// Loads the network and checks every key.
    pub fn build(spec: &EngineSpec, devices: &Devices) -> Result<Box<dyn Engine>> {
        let c = &spec.config;
        let roi = match c.get::<[usize; 3]>("roi")? {
            Some(roi) => roi,
            None => match c.json.get("pre_transforms").and_then(adapt::crop_roi) {
                Some(size) => {
                    tracing::info!(model = %spec.name, ?size, "roi set to CropForegroundObject's size");
                    size
                }
                None => [128; 3],
            },
        };
        if roi.contains(&0) {
            return Err(c.error("roi", "every size must be more than 0"));
        }
        let padding = c.get::<f64>("padding")?.unwrap_or(20.0);
        if !(padding.is_finite() && padding >= 0.0) {
            return Err(c.error("padding", "must be a number of mm >= 0"));
        }
        // Where AddExtremePointsChannel looks for the points, and its sigma.
        let list = c.json.get("pre_transforms").unwrap_or(&Value::Null);
        let extreme = adapt::find(list, adapt::EXTREME_POINTS);
        let points_key = adapt::points_key(list).to_string();
        let sigma = c
            .get::<f64>("sigma")?
            .or_else(|| extreme.and_then(|t| t.get("sigma")).and_then(Value::as_f64))
            .unwrap_or(3.0);
        let layout: Layout = c.get("input_layout")?.unwrap_or_default();
        let pre = pre_transforms(&spec.name, c, EngineKind::Dextr3dCropped)?;
        // The network only ever sees `roi`-sized crops: one warm-up shape.
        let warm = warm_input(
            &spec.name,
            &pre,
            roi,
            layout,
            Some((&points_key, six_points(roi))),
        );
        let net = devices.load(&spec.name, &c.model_path, warm.as_slice())?;
        let info = ModelInfo {
            name: spec.name.clone(),
            model_type: c
                .text("type")
                .unwrap_or_else(|| EngineKind::Dextr3dCropped.model_type().into()),
            labels: labels_of(spec)?,
            description: c.text("description").unwrap_or_default(),
            version: spec.version.clone(),
            roi: roi.map(|d| d as i32).to_vec(),
            padding,
            sigma,
            engine: spec.class.clone(),
            torchscript: net.form(),
        };
        Ok(Box::new(Dextr3d {
            info,
            net,
            roi,
            padding,
            layout,
            activation: c.get("output_activation")?.unwrap_or_default(),
            thresh: c.thresh,
            points_key,
            pre,
        }))
    }
}

impl Dextr3d {
    /// The crop around the points on a `dims` grid of `spacing`: `(start, size)` in voxels.
    fn region(&self, dims: [usize; 3], spacing: [f64; 3], pts: &[[f64; 3]]) -> ([usize; 3], [usize; 3]) {
        let mut start = [0usize; 3];
        let mut size = [0usize; 3];
        for a in 0..3 {
            let lo = pts.iter().map(|p| p[a]).fold(f64::INFINITY, f64::min);
            let hi = pts.iter().map(|p| p[a]).fold(f64::NEG_INFINITY, f64::max);
            let pad = self.padding / spacing[a];
            let s = (lo - pad).round().max(0.0) as usize;
            let e = ((hi + pad).round() as usize + 1).min(dims[a]);
            start[a] = s;
            size[a] = e.saturating_sub(s).max(1);
        }
        (start, size)
    }

    /// The request's points, at least six, inside `dims`.
    fn points(params: &Map<String, Value>, dims: [usize; 3]) -> Result<Vec<[f64; 3]>> {
        let pts = points(params, "points", dims)?;
        if pts.len() < 6 {
            return Err(crate::error::EngineError::Invalid(format!(
                "params.points: dextr3d needs at least 6 extreme points, got {}",
                pts.len()
            )));
        }
        Ok(pts)
    }
}

impl Engine for Dextr3d {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The crop resized to the roi (sampled from the image where it lies: no crop-sized
    /// copy) and the network's pass on it, and the mask on the whole grid (one byte a
    /// voxel), which the foreground is thresholded into.
    fn working_bytes(&self, image: &ImageInfo, params: &Map<String, Value>) -> Result<u64> {
        Self::points(params, image.dims)?;
        let roi = self.roi.iter().map(|&d| d as u64).product::<u64>() * image.channels as u64;
        Ok(roi.saturating_mul(FORWARD_BYTES_PER_VOXEL) + image.voxel_count())
    }

    fn infer(&self, image: &Volume, params: &Map<String, Value>, t: &mut Timings) -> Result<Outcome> {
        let pts = Self::points(params, image.dims)?;
        let (start, size) = self.region(image.dims, image.geometry.spacing, &pts);
        let ((crop_dims, crop_geometry), x) = t.time("pre", || -> Result<_> {
            let (crop_geometry, roi) = resize_region(image, start, size, self.roi, Interp::Linear)?;
            // Points into the roi grid: voxel centres map as (p - start + 0.5) * roi / size - 0.5.
            let moved: Vec<[f64; 3]> = pts
                .iter()
                .map(|p| {
                    std::array::from_fn(|a| {
                        ((p[a] - start[a] as f64 + 0.5) * self.roi[a] as f64 / size[a] as f64 - 0.5)
                            .clamp(0.0, self.roi[a] as f64 - 1.0)
                    })
                })
                .collect();
            let mut d = sample(roi);
            d.insert(self.points_key.clone(), Item::Points(moved));
            self.pre.run(&mut d, 0)?;
            let im = take_image(&mut d, "image")?;
            Ok(((size, crop_geometry), to_tensor(&im.vol, self.layout)?))
        })?;
        let finish = Finish {
            layout: self.layout,
            activation: self.activation,
        };
        let y = t.time("infer", || self.net.forward_finished(x, Some(finish)))?;
        // The mask is empty outside the crop: the foreground goes back onto the crop's grid
        // and is thresholded straight into a zeroed whole-image mask, so the work after the
        // forward is bounded by the crop.
        let mask = t.time("post", || {
            region_answer(
                &y,
                self.roi,
                (crop_dims, crop_geometry),
                self.thresh,
                image,
                start,
            )
        })?;
        let mut params = Map::new();
        params.insert(
            "points".into(),
            json!(pts.iter().map(|p| json!(p)).collect::<Vec<_>>()),
        );
        params.insert(
            "crop".into(),
            json!((0..3).map(|a| [start[a], start[a] + size[a]]).collect::<Vec<_>>()),
        );
        Ok(Outcome { mask, params })
    }
}
