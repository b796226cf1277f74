//! `SegmentationEngine`: automatic segmentation of the whole volume.
//!
//! Model config keys besides the seed's (all optional):
//!
//! ```json
//! {
//!   "type": "segmentation", "labels": ["brain"], "description": "...",
//!   "pre_transforms":   [ ... on the whole image, e.g. transforms.Orientation ... ],
//!   "input_transforms": [ ... on each network input after resizing, e.g. normalization ... ],
//!   "inference": {"mode": "sliding_window", "roi_size": [96, 96, 96], "overlap": 0.25,
//!                 "blend": "gaussian", "sw_batch_size": 1}
//!              | {"mode": "resize", "size": [256, 256, 256], "interpolation": "nearest"}
//!              | {"mode": "whole"},
//!   "locator": {"model_path": "bbox_model.pt", "size": [128, 128, 128],
//!               "interpolation": "nearest", "input_transforms": [...], "channel": 1,
//!               "thresh": 0.5, "slice_fraction": 0.02, "margin": 0.1},
//!   "output_activation": "none" | "softmax" | "sigmoid",
//!   "output_channel": 1,
//!   "post_transforms": [ ... on the label map under "model", e.g. largest component ... ]
//! }
//! ```
//!
//! The flow: `pre_transforms` on the image (spatial ones are recorded and undone at the
//! end); with a `locator`, the image resized to `locator.size` goes through the locator
//! network, its foreground (`channel` > `thresh`, largest 26-connected component) gives a
//! box: per axis the slices whose foreground fraction exceeds `slice_fraction`, scaled to
//! the image, grown by `margin` (a fraction of its size) on each side, clamped; the image is
//! cropped to it. The crop (or the whole image) reaches the network as `inference` says; the
//! output (after `output_activation`) goes back onto the crop's grid with the same
//! interpolation (`sliding_window` and `whole` are already on it), becomes labels (argmax
//! over channels, or `output_channel` > `thresh` when that key is set), is pasted into the
//! image's grid, runs through `post_transforms`, and the recorded spatial transforms are
//! undone (nearest neighbour), so the mask lies on the request's grid.
//!
//! deepbet's brain extraction is this engine with a locator (`bbox_model.pt`, 128³),
//! `resize` to 256³, both nearest, and percentile + z-score normalisation: see
//! `models/segmentation_mri_brain/config.json`.

use std::sync::Arc;

use aiaa_imaging::io::ImageInfo;
use aiaa_imaging::resample::Interpolation;
use aiaa_imaging::{Geometry, Volume};
use aiaa_transforms::{Data, Image, Kind, Pipeline};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::grid::{Box3, Interp, paste, resize, resize_back};
use super::{
    Activation, Engine, EngineSpec, FORWARD_BYTES_PER_VOXEL, ModelInfo, Outcome, Timings,
    extreme_points_json, labels_of, pre_transforms, sample, take_image, transforms, transforms_in,
    warm_input,
};
use aiaa_nets::sliding_window::{BlendMode, SlidingWindow};

use crate::device::{Devices, Finish, Net, Sweep};
use crate::error::{EngineError, Result};
use crate::kind::EngineKind;
use crate::tensor::{Layout, labels, to_tensor, to_volume};

/// How the network sees the (cropped) image.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Mode {
    /// Windows of `roi_size` with `overlap`, blended.
    SlidingWindow {
        /// Window size `[x, y, z]`.
        roi_size: [usize; 3],
        /// Fraction of a window shared with its neighbour, in `[0, 1)`.
        #[serde(default = "quarter")]
        overlap: f64,
        /// `gaussian` or `constant` weights.
        #[serde(default = "gaussian")]
        blend: String,
        /// Windows per forward pass.
        #[serde(default = "one")]
        sw_batch_size: usize,
    },
    /// The image resized to `size`.
    Resize {
        /// Network input size `[x, y, z]`.
        size: [usize; 3],
        /// Interpolation both ways.
        #[serde(default)]
        interpolation: Interp,
    },
    /// The image as it is.
    Whole,
}

fn quarter() -> f64 {
    0.25
}
fn gaussian() -> String {
    "gaussian".into()
}
fn one() -> usize {
    1
}

/// The optional first network that finds the region to segment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocatorConfig {
    model_path: String,
    size: [usize; 3],
    #[serde(default)]
    interpolation: Interp,
    #[serde(default)]
    input_transforms: Option<Value>,
    #[serde(default = "channel_one")]
    channel: usize,
    #[serde(default = "half")]
    thresh: f64,
    #[serde(default = "two_percent")]
    slice_fraction: f64,
    #[serde(default = "tenth")]
    margin: f64,
}

fn channel_one() -> usize {
    1
}
fn half() -> f64 {
    0.5
}
fn two_percent() -> f64 {
    0.02
}
fn tenth() -> f64 {
    0.1
}

struct Locator {
    net: Net,
    config: LocatorConfig,
    input: Pipeline,
    largest: Pipeline,
}

/// The main network's warm-up inputs: every shape `mode` sends it. `resize`: one, the
/// resized image. `sliding_window`: windows of `roi_size`, in batches of `sw_batch_size` and,
/// for the last batch of an image, of any smaller count. `whole`: none, since the shape is
/// the image's (logged).
fn warm_inputs(name: &str, input: &Pipeline, mode: &Mode, layout: Layout) -> Vec<tch::Tensor> {
    match mode {
        Mode::Resize { size, .. } => warm_input(name, input, *size, layout, None).into_iter().collect(),
        Mode::SlidingWindow {
            roi_size,
            sw_batch_size,
            ..
        } => {
            // Windows are cut from the network tensor with `roi_size` along its axes as they
            // are, whatever the layout: so `ijk`, whose tensor axes are the volume's.
            let Some(one) = warm_input(name, input, *roi_size, Layout::Ijk, None) else {
                return Vec::new();
            };
            (1..=*sw_batch_size as i64)
                .map(|n| one.expand([n, -1, -1, -1, -1], false))
                .collect()
        }
        Mode::Whole => {
            tracing::info!(model = %name, "whole-image inference: the input shape is each image's; no warm-up");
            Vec::new()
        }
    }
}

/// The engine.
pub struct Segmentation {
    info: ModelInfo,
    net: Net,
    layout: Layout,
    mode: Mode,
    activation: Activation,
    output_channel: Option<usize>,
    thresh: f64,
    pre: Pipeline,
    input: Pipeline,
    post: Pipeline,
    locator: Option<Locator>,
}

impl Segmentation {
    /// Loads the networks and checks every key.
    pub fn build(spec: &EngineSpec, devices: &Devices) -> Result<Box<dyn Engine>> {
        let c = &spec.config;
        let mode = c.get::<Mode>("inference")?.unwrap_or(Mode::Whole);
        if let Mode::SlidingWindow {
            overlap,
            blend,
            sw_batch_size,
            roi_size,
        } = &mode
            && (!(0.0..1.0).contains(overlap)
                || !matches!(blend.as_str(), "gaussian" | "constant")
                || *sw_batch_size == 0
                || roi_size.contains(&0))
        {
            return Err(c.error(
                "inference",
                "sliding_window needs roi_size > 0, overlap in [0, 1), blend gaussian|constant, sw_batch_size >= 1",
            ));
        }
        let layout: Layout = c.get("input_layout")?.unwrap_or_default();
        let locator = match c.get::<LocatorConfig>("locator")? {
            None => None,
            Some(lc) => {
                if lc.size.contains(&0) || !(0.0..1.0).contains(&lc.slice_fraction) || lc.margin < 0.0 {
                    return Err(c.error(
                        "locator",
                        "size > 0, slice_fraction in [0, 1) and margin >= 0 are needed",
                    ));
                }
                let block = Map::from_iter([(
                    "input_transforms".to_string(),
                    lc.input_transforms.clone().unwrap_or(Value::Array(vec![])),
                )]);
                let input = transforms_in(c, &block, "input_transforms")?;
                let path = c.resolve("locator.model_path", &lc.model_path)?;
                let name = format!("{} (locator)", spec.name);
                // The locator sees the image resized to `size`: one warm-up shape.
                let warm = warm_input(&name, &input, lc.size, layout, None);
                let net = devices.load(&name, &path, warm.as_slice())?;
                Some(Locator {
                    net,
                    input,
                    largest: largest_component("mask"),
                    config: lc,
                })
            }
        };
        let input = transforms(c, "input_transforms")?;
        let warm = warm_inputs(&spec.name, &input, &mode, layout);
        let net = devices.load(&spec.name, &c.model_path, &warm)?;
        let torchscript = locator
            .as_ref()
            .map_or(net.form(), |l| l.net.form().min(net.form()));
        let info = ModelInfo {
            name: spec.name.clone(),
            model_type: c
                .text("type")
                .unwrap_or_else(|| EngineKind::Segmentation.model_type().into()),
            labels: labels_of(spec)?,
            description: c.text("description").unwrap_or_default(),
            version: spec.version.clone(),
            roi: match &mode {
                Mode::SlidingWindow { roi_size, .. } => roi_size.map(|d| d as i32).to_vec(),
                Mode::Resize { size, .. } => size.map(|d| d as i32).to_vec(),
                Mode::Whole => Vec::new(),
            },
            padding: 0.0,
            sigma: 0.0,
            engine: spec.class.clone(),
            torchscript,
        };
        let engine = Segmentation {
            info,
            net,
            layout,
            mode,
            activation: c.get("output_activation")?.unwrap_or_default(),
            output_channel: c.get("output_channel")?,
            thresh: c.thresh,
            pre: pre_transforms(&spec.name, c, EngineKind::Segmentation)?,
            input,
            post: transforms(c, "post_transforms")?,
            locator,
        };
        Ok(Box::new(engine))
    }

    /// Runs a network on an image prepared by `input` transforms; the output's probabilities
    /// on the same grid.
    fn run_net(
        &self,
        net: &Net,
        input: &Pipeline,
        image: Volume,
        activation: Activation,
        t: &mut Timings,
    ) -> Result<Volume> {
        let (dims, geometry) = (image.dims, image.geometry);
        let x = t.time("pre", || -> Result<_> {
            let mut d = sample(image);
            input.run(&mut d, 0)?;
            let im = take_image(&mut d, "image")?;
            to_tensor(&im.vol, self.layout)
        })?;
        let finish = Finish {
            layout: self.layout,
            activation,
        };
        let y = t.time("infer", || net.forward_finished(x, Some(finish)))?;
        t.time("post", || to_volume(&y, Layout::Kji, dims, geometry))
    }

    /// Sliding-window inference over `image` (after the input transforms), run whole on the
    /// device thread ([`Net::sweep`]); the blended output lies on `image`'s grid (only the
    /// `output_channel` when one is set: the labels read no other).
    fn sliding(&self, window: &SlidingWindow, image: Volume, t: &mut Timings) -> Result<Volume> {
        let (dims, geometry) = (image.dims, image.geometry);
        let x = t.time("pre", || -> Result<_> {
            let mut d = sample(image);
            self.input.run(&mut d, 0)?;
            to_tensor(&take_image(&mut d, "image")?.vol, self.layout)
        })?;
        let sweep = Sweep {
            window: window.clone(),
            activation: self.activation,
            channel: self.output_channel,
        };
        let t0 = std::time::Instant::now();
        let swept = self.net.sweep(x, sweep)?;
        // The forward passes are "infer"; placing and blending the windows is "post".
        t.add("infer", swept.forward);
        t.add("post", t0.elapsed().saturating_sub(swept.forward));
        t.time("post", || to_volume(&swept.output, self.layout, dims, geometry))
    }

    /// The locator's box on `image`'s grid.
    fn locate(&self, loc: &Locator, image: &Volume, t: &mut Timings) -> Result<Box3> {
        let lc = &loc.config;
        let small = t.time("pre", || resize(image, lc.size, lc.interpolation))?;
        let out = self.run_net(&loc.net, &loc.input, small, Activation::None, t)?;
        t.time("post", || {
            let prob = out.channel(lc.channel.min(out.channels - 1))?;
            let fg: Vec<u8> = prob.voxels.to_f32_vec().iter().map(|&p| u8::from(f64::from(p) > lc.thresh)).collect();
            let mut d = Data::named("locator");
            let mask = Volume::scalar(prob.dims, prob.geometry, aiaa_imaging::Voxels::U8(fg))?;
            d.insert_image("mask", Image::new(mask, Kind::Label));
            loc.largest.run(&mut d, 0)?;
            let mask = take_image(&mut d, "mask")?.vol;
            slice_box(&mask, lc.slice_fraction, lc.margin, image.dims).ok_or_else(|| {
                EngineError::Invalid(format!(
                    "model {:?}: the locator found no foreground in the image (is it the kind of image this model segments?)",
                    self.info.name
                ))
            })
        })
    }
}

impl Segmentation {
    /// The flow of the module docs on an image the engine owns. Each stage's input is
    /// dropped as soon as the next has what it needs: the whole image once cropped (not
    /// copied when the crop is all of it), the crop once resized for the network, the
    /// network's output once it is labels.
    fn run(&self, image: Volume, t: &mut Timings) -> Result<Outcome> {
        let geometry = image.geometry;
        let im = t.time("pre", || -> Result<Image> {
            let mut d = sample(image);
            self.pre.run(&mut d, 0)?;
            take_image(&mut d, "image")
        })?;
        let Image { vol: whole, ops, .. } = im;
        let region = match &self.locator {
            Some(loc) => self.locate(loc, &whole, t)?,
            None => Box3 {
                start: [0; 3],
                size: whole.dims,
            },
        };
        let (dims, grid) = (whole.dims, whole.geometry);
        let crop = if region.start == [0; 3] && region.size == dims {
            whole
        } else {
            t.time("pre", || {
                aiaa_imaging::crop::crop(&whole, region.start, region.size)
            })?
        };
        let labels = match &self.mode {
            Mode::Whole => {
                let probs = self.run_net(&self.net, &self.input, crop, self.activation, t)?;
                t.time("post", || self.labels(&probs))?
            }
            Mode::Resize { size, interpolation } => {
                let (crop_dims, crop_grid) = (crop.dims, crop.geometry);
                let x = t.time("pre", || resize(&crop, *size, *interpolation))?;
                drop(crop);
                let out = self.run_net(&self.net, &self.input, x, self.activation, t)?;
                t.time("post", || {
                    self.labels_back(out, crop_dims, crop_grid, *interpolation)
                })?
            }
            Mode::SlidingWindow {
                roi_size,
                overlap,
                blend,
                sw_batch_size,
            } => {
                let window = SlidingWindow::new(roi_size.map(|d| d as i64))
                    .with_overlap(*overlap)
                    .with_mode(BlendMode::parse(blend).unwrap_or(BlendMode::Gaussian))
                    .with_batch_size(*sw_batch_size);
                let probs = self.sliding(&window, crop, t)?;
                t.time("post", || self.labels(&probs))?
            }
        };
        let mask = t.time("post", || -> Result<Volume> {
            let full = paste(&labels, dims, grid, region.start)?;
            drop(labels);
            let mut d = Data::named("result");
            d.insert_image("model", Image::new(full, Kind::Label));
            self.post.run(&mut d, 0)?;
            let mask = take_image(&mut d, "model")?.vol;
            let mut back = aiaa_transforms::invert(&mask, &ops, Interpolation::Nearest)?;
            back.geometry = geometry;
            Ok(back)
        })?;
        let mut params = Map::new();
        params.insert("points".into(), extreme_points_json(&mask));
        params.insert(
            "crop".into(),
            json!(
                region
                    .start
                    .iter()
                    .zip(region.size)
                    .map(|(s, n)| [*s, s + n])
                    .collect::<Vec<_>>()
            ),
        );
        Ok(Outcome { mask, params })
    }

    /// Labels from probabilities: `output_channel` > `thresh` when set, else the argmax.
    fn labels(&self, probs: &Volume) -> Result<Volume> {
        match self.output_channel {
            // A sliding window hands back that channel alone.
            Some(c) => labels(&probs.channel(c.min(probs.channels - 1))?, self.thresh),
            None => labels(probs, self.thresh),
        }
    }

    /// The network's output on its resized grid, back on the crop's grid (`dims`,
    /// `geometry`) as labels. Nearest neighbour picks one source voxel per target voxel, so
    /// labelling first and resizing the labels gives the same mask at one byte a voxel
    /// instead of K floats; linear interpolation resizes only the channel the labels come
    /// from (all of them for an argmax).
    fn labels_back(
        &self,
        out: Volume,
        dims: [usize; 3],
        geometry: Geometry,
        interp: Interp,
    ) -> Result<Volume> {
        if interp == Interp::Nearest {
            let small = self.labels(&out)?;
            drop(out);
            return resize_back(&small, dims, geometry, Interp::Nearest);
        }
        let probs = match self.output_channel {
            Some(c) => out.channel(c.min(out.channels - 1))?,
            None => out,
        };
        let back = resize_back(&probs, dims, geometry, interp)?;
        drop(probs);
        labels(&back, self.thresh)
    }
}

impl Engine for Segmentation {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn infer(&self, image: &Volume, _params: &Map<String, Value>, t: &mut Timings) -> Result<Outcome> {
        self.run(image.clone(), t)
    }

    fn infer_shared(
        &self,
        image: Arc<Volume>,
        _params: &Map<String, Value>,
        t: &mut Timings,
    ) -> Result<Outcome> {
        self.run(
            Arc::try_unwrap(image).unwrap_or_else(|shared| (*shared).clone()),
            t,
        )
    }

    /// The largest of the stages' holdings, per voxel `n` of the image (all channels):
    /// the pre-transforms (the image's own copy, an `f32` version and a second `f32` copy,
    /// as a percentile selection or a reorientation makes), the crop next to the whole
    /// (`8n`), the forward pass ([`FORWARD_BYTES_PER_VOXEL`] a network input voxel; the
    /// locator's, the resized input's, the windows' or the whole crop's) plus what lies on
    /// the crop's grid meanwhile (sliding windows: the input, two blended output channels,
    /// the weights), and the post-processing (the labels, their copy, the inverse
    /// reorientation's: `3n`).
    fn working_bytes(&self, image: &ImageInfo, _params: &Map<String, Value>) -> Result<u64> {
        let n = image.voxel_count().saturating_mul(image.channels as u64);
        let prod = |d: &[usize; 3]| d.iter().map(|&x| x as u64).product::<u64>();
        let pre = n.saturating_mul(image.voxel_type.size() as u64 + 8);
        let (net, on_crop) = match &self.mode {
            Mode::Whole => (n, 0),
            Mode::Resize { size, .. } => (prod(size), 0),
            Mode::SlidingWindow {
                roi_size,
                sw_batch_size,
                ..
            } => (
                prod(roi_size).saturating_mul(*sw_batch_size as u64),
                n.saturating_mul(16),
            ),
        };
        let locator = self.locator.as_ref().map_or(0, |l| prod(&l.config.size));
        let forward = net
            .max(locator)
            .saturating_mul(FORWARD_BYTES_PER_VOXEL)
            .saturating_add(on_crop);
        Ok(pre.max(n.saturating_mul(8)).max(forward).max(n.saturating_mul(3)))
    }
}

/// A `KeepLargestConnectedComponent` (26-connected) on `key`.
fn largest_component(key: &str) -> Pipeline {
    let list = json!([{"name": "transforms.KeepLargestConnectedComponent", "fields": key}]);
    Pipeline::from_json(&list, 0).expect("a fixed, valid transform list")
}

/// deepbet's box: per axis, the slices whose foreground fraction exceeds `fraction`; centre
/// and size scaled from `mask`'s grid to `dims`, size grown by `margin` on each side, ends
/// rounded as deepbet does (`int(c -/+ s / 2)` after rounding centre and size), clamped.
fn slice_box(mask: &Volume, fraction: f64, margin: f64, dims: [usize; 3]) -> Option<Box3> {
    let [nx, ny, nz] = mask.dims;
    let v = mask.voxels.to_f32_vec();
    let mut counts = [vec![0usize; nx], vec![0usize; ny], vec![0usize; nz]];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if v[i + nx * (j + ny * k)] > 0.0 {
                    counts[0][i] += 1;
                    counts[1][j] += 1;
                    counts[2][k] += 1;
                }
            }
        }
    }
    let per_slice = [ny * nz, nx * nz, nx * ny];
    let mut start = [0usize; 3];
    let mut size = [0usize; 3];
    for a in 0..3 {
        let hit: Vec<usize> = (0..mask.dims[a])
            .filter(|&s| counts[a][s] as f64 / per_slice[a] as f64 > fraction)
            .collect();
        let (lo, hi) = (*hit.first()? as f64, *hit.last()? as f64 + 1.0);
        let scale = dims[a] as f64 / mask.dims[a] as f64;
        let centre = ((lo + hi) / 2.0 * scale).round();
        let extent = ((hi - lo) * scale * (1.0 + 2.0 * margin)).round();
        let (b0, b1) = ((centre - extent / 2.0).trunc(), (centre + extent / 2.0).trunc());
        let b0 = b0.max(0.0) as usize;
        let b1 = (b1.max(0.0) as usize).min(dims[a]);
        if b1 <= b0 {
            return None;
        }
        start[a] = b0;
        size[a] = b1 - b0;
    }
    Some(Box3 { start, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_imaging::{Geometry, Voxels};

    #[test]
    fn the_box_follows_deepbets_rule() {
        // A 10^3 mask with foreground slabs i in 2..6, j in 3..5, k everywhere; image twice
        // as large.
        let mut v = vec![0u8; 1000];
        for k in 0..10 {
            for j in 3..5 {
                for i in 2..6 {
                    v[i + 10 * (j + 10 * k)] = 1;
                }
            }
        }
        let m = Volume::scalar([10; 3], Geometry::with_spacing([1.0; 3]), Voxels::U8(v)).unwrap();
        let b = slice_box(&m, 0.02, 0.1, [20; 3]).unwrap();
        // i: lo 2, hi 6 -> centre 8, size 8 * 1.2 = 9.6 -> 10 -> [3, 13).
        assert_eq!((b.start[0], b.size[0]), (3, 10));
        // j: lo 3, hi 5 -> centre 8, size 4.8 -> 5 -> [5.5, 10.5) -> [5, 10).
        assert_eq!((b.start[1], b.size[1]), (5, 5));
        // k: everything -> centre 10, size 24 -> [-2, 22) clamped to [0, 20).
        assert_eq!((b.start[2], b.size[2]), (0, 20));
        // Below the fraction: nothing.
        assert!(slice_box(&m, 0.9, 0.1, [20; 3]).is_none());
    }
}
