//! `DeepgrowEngine` (also `DeepEditEngine`; model types `deepgrow` and MONAI Label's
//! `deepedit`): interactive segmentation from foreground and background clicks, each click
//! refining the mask answered last.
//!
//! A request's params: `foreground` and `background`, every click so far as `[[x, y, z],
//! ...]` in the image's voxel indices (the AIAA clients, 3D Slicer and OHIF resend them all
//! each time); `label`, which of the model's labels the clicks are for (default its first);
//! `reset_state` (or `reset`) true to forget the mask kept for this session.
//!
//! The network's input is the image, one Gaussian guidance channel per sign of click
//! (MONAI's `AddGuidanceSignald`, `sigma` voxels of the network's grid) and, when the model
//! was trained with `previous_mask`, the previous mask (its own answer before the newest
//! click, as in training: `aiaa_train::interaction`). The previous mask is, in order:
//! - the request's own (a `label` part: on the image's grid, one channel, integer values;
//!   non-zero is foreground);
//! - for a request on a session, the mask this model answered last for that session and
//!   label, when the request's click lists extend the ones of that answer (a resent
//!   identical request gets the mask its first answer was given, so it gets the same
//!   answer); dropped on `reset_state` or when the clicks are not an extension;
//! - none (an empty channel).
//!
//! No clicks and no mask: the automatic answer when the model was trained for it
//! (`automatic` in its config), else 400. Background clicks alone correct a mask: they need
//! one (the request's or the session's).
//!
//! Model config keys besides the common ones: `roi` (the network's input `[x, y, z]`,
//! required), `mode` (`whole`, default: the whole image resized to `roi`, as MONAI's DeepEdit
//! does; `crop`: the box of the clicks and the previous mask grown by `padding` mm, resized to
//! `roi`), `padding` (mm, crop mode, default 20), `sigma` (default 2), `previous_mask`,
//! `automatic`, `number_intensity_ch` (default 1), `kept_sessions` (how many (session,
//! label) masks are kept, least recently used dropped first; default 8).
//!
//! In `whole` mode the image's channels on the network's grid are made once per image (a
//! session's image is one shared volume) and kept, so a click on a session costs its
//! guidance channels, the previous mask's resize and the forward pass.
//!
//! The answer is the network's: its foreground probability goes back onto the region's grid
//! (linear) and is thresholded at `thresh` into the whole-image mask, nothing edited after.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use aiaa_imaging::io::ImageInfo;
use aiaa_imaging::{Volume, Voxels};
use aiaa_transforms::Pipeline;
use aiaa_transforms::guidance::Clicks;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::grid::{Interp, region_answer, resize};
use super::{
    Activation, Context, Engine, EngineSpec, FORWARD_BYTES_PER_VOXEL, ModelInfo, Outcome, Timings, labels_of,
    points, pre_transforms, sample, synthetic_input, take_image,
};
use crate::device::{Devices, Finish, Net};
use crate::error::{EngineError, Result};
use crate::kind::EngineKind;
use crate::tensor::{Layout, to_tensor};

/// Where the network looks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The whole image, resized to `roi`.
    #[default]
    Whole,
    /// The box of the clicks and the previous mask, grown by `padding` mm.
    Crop,
}

/// The last answer for one (session, label).
struct Kept {
    session: String,
    label: String,
    dims: [usize; 3],
    clicks: Clicks,
    /// The previous mask that answer was given.
    given: Option<Arc<Volume>>,
    /// The answer (0/1, on the image's grid).
    answer: Arc<Volume>,
}

/// How the network's input is made on its grid.
struct Inputs {
    roi: [usize; 3],
    sigma: f64,
    previous_mask: bool,
    intensity_channels: usize,
    layout: Layout,
}

impl Inputs {
    /// The input tensor from the roi-sized image (after the pre transforms), the clicks on
    /// the roi grid and the previous mask on it (foreground `> 0.5`).
    fn tensor(&self, image: &Volume, clicks: &Clicks, mask: Option<&Volume>) -> Result<tch::Tensor> {
        if image.channels != self.intensity_channels {
            return Err(EngineError::Config(format!(
                "the pre_transforms give {} image channel(s); number_intensity_ch is {}",
                image.channels, self.intensity_channels
            )));
        }
        let n = image.voxel_count();
        let channels = self.intensity_channels + 2 + usize::from(self.previous_mask);
        let mut all = Vec::with_capacity(n * channels);
        all.extend_from_slice(&image.voxels.as_f32());
        all.extend(clicks.guidance(self.roi, self.sigma));
        if self.previous_mask {
            match mask {
                Some(m) => all.extend(
                    m.voxels
                        .as_f32()
                        .iter()
                        .map(|v| if *v > 0.5 { 1f32 } else { 0.0 }),
                ),
                None => all.resize(all.len() + n, 0.0),
            }
        }
        let vol = Volume::new(self.roi, channels, image.geometry, Voxels::F32(all))?;
        to_tensor(&vol, self.layout)
    }
}

/// The engine.
pub struct Deepgrow {
    info: ModelInfo,
    net: Net,
    inputs: Inputs,
    roi: [usize; 3],
    mode: Mode,
    padding: f64,
    previous_mask: bool,
    automatic: bool,
    activation: Activation,
    thresh: f64,
    pre: Pipeline,
    kept_sessions: usize,
    kept: Mutex<VecDeque<Kept>>,
    /// Whole mode: the network's image channels for the last `kept_sessions` images, by the
    /// image's identity (a session's image is one shared volume), so a click on a session
    /// does not resize and normalise the whole volume again. The weak reference lets the
    /// image go with its session; an entry whose image is gone is dropped.
    prepared: Mutex<VecDeque<(Weak<Volume>, Arc<Volume>)>>,
}

impl Deepgrow {
    /// Loads the network and checks every key.
    pub fn build(spec: &EngineSpec, devices: &Devices) -> Result<Box<dyn Engine>> {
        let c = &spec.config;
        let roi = c
            .get::<[usize; 3]>("roi")?
            .ok_or_else(|| c.error("roi", "a deepgrow model needs its network input size [x, y, z]"))?;
        if roi.contains(&0) {
            return Err(c.error("roi", "every size must be more than 0"));
        }
        let padding = c.get::<f64>("padding")?.unwrap_or(20.0);
        if !(padding.is_finite() && padding >= 0.0) {
            return Err(c.error("padding", "must be a number of mm >= 0"));
        }
        let sigma = c.get::<f64>("sigma")?.unwrap_or(2.0);
        if !(sigma.is_finite() && sigma > 0.0) {
            return Err(c.error("sigma", "must be a number of voxels > 0"));
        }
        let intensity_channels = c.get::<usize>("number_intensity_ch")?.unwrap_or(1);
        let kept_sessions = c.get::<usize>("kept_sessions")?.unwrap_or(8);
        let layout: Layout = c.get("input_layout")?.unwrap_or_default();
        let pre = pre_transforms(&spec.name, c, EngineKind::Deepgrow)?;
        let previous_mask = c.get("previous_mask")?.unwrap_or(false);
        let inputs = Inputs {
            roi,
            sigma,
            previous_mask,
            intensity_channels,
            layout,
        };
        // The network only ever sees `roi`-sized inputs: one warm-up shape, with a click in
        // the middle.
        let warm = synthetic_input(&pre, roi, None)
            .and_then(|image| {
                let clicks = Clicks {
                    foreground: vec![roi.map(|d| (d / 2) as f64)],
                    background: Vec::new(),
                };
                inputs.tensor(&image, &clicks, None)
            })
            .map_err(|e| tracing::warn!(model = %spec.name, error = %e, "no warm-up input; loading without a warm-up"))
            .ok();
        let net = devices.load(&spec.name, &c.model_path, warm.as_slice())?;
        let info = ModelInfo {
            name: spec.name.clone(),
            model_type: c
                .text("type")
                .unwrap_or_else(|| EngineKind::Deepgrow.model_type().into()),
            labels: labels_of(spec)?,
            description: c.text("description").unwrap_or_default(),
            version: spec.version.clone(),
            roi: roi.map(|d| d as i32).to_vec(),
            padding,
            sigma,
            engine: spec.class.clone(),
            torchscript: net.form(),
        };
        Ok(Box::new(Deepgrow {
            info,
            net,
            inputs,
            roi,
            mode: c.get("mode")?.unwrap_or_default(),
            padding,
            previous_mask,
            automatic: c.get("automatic")?.unwrap_or(false),
            activation: c.get("output_activation")?.unwrap_or_default(),
            thresh: c.thresh,
            pre,
            kept_sessions,
            kept: Mutex::new(VecDeque::new()),
            prepared: Mutex::new(VecDeque::new()),
        }))
    }

    /// The region the network sees: `(start, size)` in voxels.
    fn region(&self, image: &ImageInfo, clicks: &Clicks, mask: Option<&Volume>) -> ([usize; 3], [usize; 3]) {
        let dims = image.dims;
        let whole = ([0; 3], dims);
        if self.mode == Mode::Whole {
            return whole;
        }
        let mut lo = [f64::INFINITY; 3];
        let mut hi = [f64::NEG_INFINITY; 3];
        for p in clicks.foreground.iter().chain(&clicks.background) {
            for a in 0..3 {
                lo[a] = lo[a].min(p[a]);
                hi[a] = hi[a].max(p[a]);
            }
        }
        if let Some(pts) = mask.and_then(aiaa_transforms::extreme::extreme_points) {
            for p in pts {
                for a in 0..3 {
                    lo[a] = lo[a].min(p[a] as f64);
                    hi[a] = hi[a].max(p[a] as f64);
                }
            }
        }
        if lo[0] > hi[0] {
            return whole;
        }
        let mut start = [0usize; 3];
        let mut size = [0usize; 3];
        for a in 0..3 {
            let pad = self.padding / image.geometry.spacing[a];
            let s = (lo[a] - pad).round().max(0.0) as usize;
            let e = ((hi[a] + pad).round() as usize + 1).min(dims[a]);
            start[a] = s;
            size[a] = e.saturating_sub(s).max(1);
        }
        (start, size)
    }

    /// The request's clicks (absent or empty lists are none), inside the image.
    fn clicks(params: &Map<String, Value>, dims: [usize; 3]) -> Result<Clicks> {
        let list = |key: &str| -> Result<Vec<[f64; 3]>> {
            match params.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(Vec::new()),
                Some(_) => points(params, key, dims),
            }
        };
        Ok(Clicks {
            foreground: list("foreground")?,
            background: list("background")?,
        })
    }

    /// The label the clicks are for.
    fn label(&self, params: &Map<String, Value>) -> Result<String> {
        match params.get("label") {
            None | Some(Value::Null) => Ok(self.info.labels.first().cloned().unwrap_or_default()),
            Some(Value::String(l)) if self.info.labels.is_empty() || self.info.labels.contains(l) => {
                Ok(l.clone())
            }
            Some(l) => Err(EngineError::Invalid(format!(
                "params.label {l} is not a label of model {:?} (its labels: {})",
                self.info.name,
                self.info.labels.join(", ")
            ))),
        }
    }

    /// A previous mask sent with the request, checked and made 0/1.
    fn request_mask(&self, mask: &Volume, image: &Volume) -> Result<Arc<Volume>> {
        if !self.previous_mask {
            return Err(EngineError::Invalid(format!(
                "model {:?} takes no previous mask (it re-infers from the clicks alone); send the clicks without a label",
                self.info.name
            )));
        }
        if mask.channels != 1 {
            return Err(EngineError::Invalid(format!(
                "the previous mask (label) has {} channels; a mask has one",
                mask.channels
            )));
        }
        let same_spacing = mask
            .geometry
            .spacing
            .iter()
            .zip(image.geometry.spacing)
            .all(|(a, b)| (a - b).abs() <= 1e-4 * b.abs().max(1.0));
        let same_origin = mask
            .geometry
            .origin
            .iter()
            .zip(image.geometry.origin)
            .all(|(a, b)| (a - b).abs() <= 1e-3);
        if mask.dims != image.dims || !same_spacing || !same_origin {
            let [x, y, z] = mask.dims;
            let [a, b, c] = image.dims;
            return Err(EngineError::Invalid(format!(
                "the previous mask (label) lies on another grid ({x}x{y}x{z}, spacing {:?}, origin {:?}) than the image \
                 ({a}x{b}x{c}, spacing {:?}, origin {:?}); send it on the image's grid",
                mask.geometry.spacing, mask.geometry.origin, image.geometry.spacing, image.geometry.origin
            )));
        }
        let values = mask.voxels.as_f32();
        if let Some(v) = values.iter().find(|v| !v.is_finite() || v.fract() != 0.0) {
            return Err(EngineError::Invalid(format!(
                "the previous mask (label) holds the value {v}; a mask holds integer labels (non-zero is foreground)"
            )));
        }
        let binary = values.iter().map(|v| u8::from(*v != 0.0)).collect();
        Ok(Arc::new(Volume::scalar(
            image.dims,
            image.geometry,
            Voxels::U8(binary),
        )?))
    }

    /// The session's kept mask for these clicks (see the module docs), dropping one that no
    /// longer applies.
    fn kept_mask(
        &self,
        session: &str,
        label: &str,
        dims: [usize; 3],
        clicks: &Clicks,
        reset: bool,
    ) -> Option<Arc<Volume>> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let at = kept
            .iter()
            .position(|k| k.session == session && k.label == label)?;
        let k = &kept[at];
        let mask = if reset || k.dims != dims {
            None
        } else if *clicks == k.clicks {
            Some(k.given.clone())
        } else if clicks.extends(&k.clicks) {
            Some(Some(Arc::clone(&k.answer)))
        } else {
            None
        };
        if mask.is_none() {
            kept.remove(at);
        }
        mask.flatten()
    }

    /// The network's image channels: `region` resized (linear) to `roi`, then the config's
    /// pre_transforms (seeded alike on every call, so the same region gives the same input).
    fn prepare(&self, region: &Volume) -> Result<Volume> {
        let mut d = sample(resize(region, self.roi, Interp::Linear)?);
        self.pre.run(&mut d, 0)?;
        Ok(take_image(&mut d, "image")?.vol)
    }

    /// [`Self::prepare`] of the whole `image`, kept for the next click on it.
    fn prepared_whole(&self, image: &Arc<Volume>) -> Result<Arc<Volume>> {
        let held = |cache: &mut VecDeque<(Weak<Volume>, Arc<Volume>)>| {
            cache.retain(|(w, _)| w.strong_count() > 0);
            cache
                .iter()
                .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(image)))
                .map(|(_, p)| Arc::clone(p))
        };
        if let Some(p) = held(&mut self.prepared.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(p);
        }
        let p = Arc::new(self.prepare(image)?);
        let mut cache = self.prepared.lock().unwrap_or_else(|p| p.into_inner());
        if held(&mut cache).is_none() {
            while cache.len() >= self.kept_sessions.max(1) {
                cache.pop_front();
            }
            cache.push_back((Arc::downgrade(image), Arc::clone(&p)));
        }
        Ok(p)
    }

    /// Keeps `answer` as the session's last for `label`.
    fn keep(&self, entry: Kept) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|k| !(k.session == entry.session && k.label == entry.label));
        if self.kept_sessions == 0 {
            return;
        }
        while kept.len() >= self.kept_sessions {
            kept.pop_front();
        }
        kept.push_back(entry);
    }
}

/// Whether the params ask to forget the kept mask.
fn reset_requested(params: &Map<String, Value>) -> bool {
    ["reset_state", "reset"].iter().any(|k| match params.get(*k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.to_ascii_lowercase().as_str(), "true" | "1" | "yes"),
        Some(Value::Number(n)) => n.as_f64().is_some_and(|v| v != 0.0),
        _ => false,
    })
}

impl Engine for Deepgrow {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The region's copy (the image's type; none in whole mode), the roi-sized input and the
    /// network's pass on it, a previous mask made 0/1 (one byte a voxel) and the answer (one
    /// byte a voxel).
    fn working_bytes(&self, image: &ImageInfo, params: &Map<String, Value>) -> Result<u64> {
        let clicks = Self::clicks(params, image.dims)?;
        let (_, size) = self.region(image, &clicks, None);
        let region = if self.mode == Mode::Whole {
            0
        } else {
            size.iter().map(|&d| d as u64).product::<u64>()
                * image.channels as u64
                * image.voxel_type.size() as u64
        };
        let roi = self.roi.iter().map(|&d| d as u64).product::<u64>();
        Ok(region + roi.saturating_mul(FORWARD_BYTES_PER_VOXEL) + 2 * image.voxel_count())
    }

    fn infer(&self, image: &Volume, params: &Map<String, Value>, t: &mut Timings) -> Result<Outcome> {
        self.infer_in(Arc::new(image.clone()), params, &Context::default(), t)
    }

    fn infer_shared(
        &self,
        image: Arc<Volume>,
        params: &Map<String, Value>,
        t: &mut Timings,
    ) -> Result<Outcome> {
        self.infer_in(image, params, &Context::default(), t)
    }

    fn infer_in(
        &self,
        image: Arc<Volume>,
        params: &Map<String, Value>,
        context: &Context,
        t: &mut Timings,
    ) -> Result<Outcome> {
        let clicks = Self::clicks(params, image.dims)?;
        let label = self.label(params)?;
        let reset = reset_requested(params);
        let (previous, source) = match (context.previous, context.session) {
            (Some(mask), _) => (Some(self.request_mask(mask, &image)?), "request"),
            (None, Some(session)) if self.previous_mask => {
                match self.kept_mask(session, &label, image.dims, &clicks, reset) {
                    Some(m) => (Some(m), "session"),
                    None => (None, "none"),
                }
            }
            _ => (None, "none"),
        };
        if clicks.foreground.is_empty() && previous.is_none() {
            if !clicks.background.is_empty() {
                return Err(EngineError::Invalid(format!(
                    "params.background: background clicks correct a mask and model {:?} has none to correct here \
                     (no previous mask in the request{}); add a foreground click",
                    self.info.name,
                    if context.session.is_some() {
                        " and none kept for this session and label"
                    } else {
                        ""
                    }
                )));
            }
            if !self.automatic {
                return Err(EngineError::Invalid(format!(
                    "params.foreground: model {:?} needs at least one click [[x, y, z], ...] (it was not trained to \
                     segment without clicks)",
                    self.info.name
                )));
            }
        }
        let info = ImageInfo::from(image.as_ref());
        let (start, size) = self.region(&info, &clicks, previous.as_deref());
        let whole = start == [0; 3] && size == image.dims;
        let ((crop_dims, crop_geometry), x) = t.time("pre", || -> Result<_> {
            let region = if whole {
                None
            } else {
                Some(aiaa_imaging::crop::crop(&image, start, size)?)
            };
            let region_image = region.as_ref().unwrap_or(&image);
            let prepared = match &region {
                None => self.prepared_whole(&image)?,
                Some(r) => Arc::new(self.prepare(r)?),
            };
            // Clicks onto the roi grid: voxel centres map as (p - start + 0.5) * roi / size - 0.5.
            let onto = |pts: &[[f64; 3]]| -> Vec<[f64; 3]> {
                pts.iter()
                    .map(|p| {
                        std::array::from_fn(|a| {
                            ((p[a] - start[a] as f64 + 0.5) * self.roi[a] as f64 / size[a] as f64 - 0.5)
                                .clamp(0.0, self.roi[a] as f64 - 1.0)
                        })
                    })
                    .collect()
            };
            let moved = Clicks {
                foreground: onto(&clicks.foreground),
                background: onto(&clicks.background),
            };
            let mask = match &previous {
                Some(m) if self.previous_mask => {
                    let part = if whole {
                        None
                    } else {
                        Some(aiaa_imaging::crop::crop(m, start, size)?)
                    };
                    // A 0/1 byte mask resized (linear) in bytes: 1 where the interpolated
                    // value rounds to 1, with no volume-sized float copy.
                    Some(resize(part.as_ref().unwrap_or(m), self.roi, Interp::Linear)?)
                }
                _ => None,
            };
            let grid = (region_image.dims, region_image.geometry);
            Ok((grid, self.inputs.tensor(&prepared, &moved, mask.as_ref())?))
        })?;
        let finish = Finish {
            layout: self.inputs.layout,
            activation: self.activation,
        };
        let y = t.time("infer", || self.net.forward_finished(x, Some(finish)))?;
        let mask = t.time("post", || {
            region_answer(
                &y,
                self.roi,
                (crop_dims, crop_geometry),
                self.thresh,
                &image,
                start,
            )
        })?;
        if let Some(session) = context.session.filter(|_| self.previous_mask) {
            self.keep(Kept {
                session: session.to_string(),
                label: label.clone(),
                dims: image.dims,
                clicks: clicks.clone(),
                given: previous,
                answer: Arc::new(mask.clone()),
            });
        }
        let list = |pts: &[[f64; 3]]| json!(pts.iter().map(|p| json!(p)).collect::<Vec<_>>());
        let mut params = Map::new();
        params.insert("foreground".into(), list(&clicks.foreground));
        params.insert("background".into(), list(&clicks.background));
        params.insert("label".into(), json!(label));
        params.insert("previous_mask".into(), json!(source));
        params.insert(
            "crop".into(),
            json!((0..3).map(|a| [start[a], start[a] + size[a]]).collect::<Vec<_>>()),
        );
        Ok(Outcome { mask, params })
    }
}
