//! Sliding-window inference over a whole volume, placed and blended as MONAI's
//! `sliding_window_inference` does, so models and results carry over between the two.
//!
//! For input `[N, C, X, Y, Z]` and a predictor mapping a batch of windows `[B, C, rx, ry, rz]`
//! to `[B, K, rx, ry, rz]`:
//! 1. `roi_size` components ≤ 0 take the image's size on that axis.
//! 2. Axes smaller than the window are padded to it with `cval`, `⌊diff/2⌋` before and the rest
//!    after, and the output is cropped back at the end.
//! 3. Per axis the scan interval is `⌊roi · (1 − overlap)⌋` (at least 1; the whole roi when the
//!    window spans the axis); window starts are `0, interval, 2·interval, …` until a window
//!    reaches the end, the last one shifted back to end exactly at the border.
//! 4. Windows, in row-major order of their starts (i slowest), go to the predictor
//!    `sw_batch_size` at a time; each prediction is weighted by the importance map and summed,
//!    and the sum divided by the summed weights (so overlapping predictions are averaged).
//! 5. Importance map: `constant` is all ones; `gaussian` is the product over axes of
//!    `exp(−x² / (2σ²))` with `x` the distance from the window centre in voxels
//!    (`−(r−1)/2 … (r−1)/2`) and `σ = sigma_scale · r` (`sigma_scale` 0.125 by default),
//!    floored at `max(min, 1e-3)`. It is not rescaled: the division by the summed weights is
//!    the normalisation.
//!
//! The output has the input's kind and device; the predictor may run elsewhere (its result is
//! moved back). Everything runs without gradients.

use tch::{Device, Kind, Tensor};

use crate::error::{NetsError, Result};

/// How overlapping windows are blended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlendMode {
    /// Equal weights.
    Constant,
    /// Gaussian weights, lower towards a window's edges.
    Gaussian,
}

impl BlendMode {
    /// Parses `"constant"` or `"gaussian"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "constant" => Some(BlendMode::Constant),
            "gaussian" => Some(BlendMode::Gaussian),
            _ => None,
        }
    }
}

/// Sliding-window settings; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct SlidingWindow {
    /// Window size (i, j, k); components ≤ 0 mean the whole axis.
    pub roi_size: [i64; 3],
    /// Overlap of neighbouring windows per axis, in `[0, 1)`.
    pub overlap: [f64; 3],
    /// Blending of overlapping windows.
    pub mode: BlendMode,
    /// σ of the Gaussian as a fraction of the window size, per axis.
    pub sigma_scale: [f64; 3],
    /// Windows per predictor call.
    pub sw_batch_size: usize,
    /// Value that pads axes smaller than the window.
    pub cval: f64,
}

impl SlidingWindow {
    /// Windows of `roi_size` with MONAI's defaults: overlap 0.25, constant blending,
    /// `sigma_scale` 0.125, one window per call, zero padding.
    pub fn new(roi_size: [i64; 3]) -> Self {
        SlidingWindow {
            roi_size,
            overlap: [0.25; 3],
            mode: BlendMode::Constant,
            sigma_scale: [0.125; 3],
            sw_batch_size: 1,
            cval: 0.0,
        }
    }

    /// The same with `overlap` on every axis.
    pub fn with_overlap(mut self, overlap: f64) -> Self {
        self.overlap = [overlap; 3];
        self
    }

    /// The same with blending `mode`.
    pub fn with_mode(mut self, mode: BlendMode) -> Self {
        self.mode = mode;
        self
    }

    /// The same with `sw_batch_size` windows per call.
    pub fn with_batch_size(mut self, sw_batch_size: usize) -> Self {
        self.sw_batch_size = sw_batch_size;
        self
    }

    fn validate(&self) -> Result<()> {
        if let Some(o) = self.overlap.iter().find(|o| !(0.0..1.0).contains(*o)) {
            return Err(NetsError::config(
                "sliding window",
                "overlap",
                format!("{o} is outside [0, 1)"),
            ));
        }
        if self.sw_batch_size == 0 {
            return Err(NetsError::config(
                "sliding window",
                "sw_batch_size",
                "must be at least 1",
            ));
        }
        if let Some(s) = self.sigma_scale.iter().find(|s| !(**s > 0.0 && s.is_finite())) {
            return Err(NetsError::config(
                "sliding window",
                "sigma_scale",
                format!("{s} must be > 0"),
            ));
        }
        Ok(())
    }

    /// The effective window for an image of `size`: non-positive components replaced.
    pub fn roi_for(&self, size: [i64; 3]) -> [i64; 3] {
        std::array::from_fn(|d| {
            if self.roi_size[d] > 0 {
                self.roi_size[d]
            } else {
                size[d]
            }
        })
    }

    /// Runs `predictor` over the windows of `inputs` `[N, C, X, Y, Z]` and returns the blended
    /// `[N, K, X, Y, Z]`.
    pub fn run<F>(&self, inputs: &Tensor, mut predictor: F) -> Result<Tensor>
    where
        F: FnMut(&Tensor) -> Result<Tensor>,
    {
        self.validate()?;
        let size = inputs.size();
        if size.len() != 5 || size.iter().any(|&s| s < 1) {
            return Err(NetsError::Shape(format!(
                "sliding window input must be [N, C, X, Y, Z], got {size:?}"
            )));
        }
        let _guard = tch::no_grad_guard();
        let orig = [size[2], size[3], size[4]];
        let roi = self.roi_for(orig);
        let image: [i64; 3] = std::array::from_fn(|d| orig[d].max(roi[d]));
        // F.pad order: last axis first, (before, after) pairs.
        let mut pad = Vec::with_capacity(6);
        for d in (0..3).rev() {
            let diff = (roi[d] - orig[d]).max(0);
            pad.extend([diff / 2, diff - diff / 2]);
        }
        let padded = if pad.iter().any(|&p| p > 0) {
            inputs.f_pad(pad.as_slice(), "constant", Some(self.cval))?
        } else {
            inputs.shallow_clone()
        };
        let starts = window_starts(image, roi, self.overlap);
        let kind = inputs.kind();
        let device = inputs.device();
        let weights = importance_map(roi, self.mode, self.sigma_scale, device)?.f_to_kind(kind)?;
        let mut outputs = Vec::with_capacity(size[0] as usize);
        for b in 0..size[0] {
            let image_b = padded.f_narrow(0, b, 1)?;
            let mut out: Option<Tensor> = None;
            let count = Tensor::f_zeros([1, 1, image[0], image[1], image[2]], (kind, device))?;
            for batch in starts.chunks(self.sw_batch_size) {
                let windows = batch
                    .iter()
                    .map(|s| window(&image_b, *s, roi))
                    .collect::<Result<Vec<_>>>()?;
                let windows = if windows.len() == 1 {
                    windows[0].shallow_clone()
                } else {
                    Tensor::f_cat(&windows, 0)?
                };
                let pred = predictor(&windows)?;
                let psize = pred.size();
                if psize.len() != 5 || psize[0] != batch.len() as i64 || psize[2..] != roi[..] {
                    return Err(NetsError::Shape(format!(
                        "predictor returned {psize:?} for windows {:?}; expected [{}, K, {}, {}, {}]",
                        windows.size(),
                        batch.len(),
                        roi[0],
                        roi[1],
                        roi[2]
                    )));
                }
                let pred = pred.f_to_device(device)?.f_to_kind(kind)?;
                let out = match &mut out {
                    Some(o) => o,
                    None => out.insert(Tensor::f_zeros(
                        [1, psize[1], image[0], image[1], image[2]],
                        (kind, device),
                    )?),
                };
                for (i, s) in batch.iter().enumerate() {
                    let weighted = pred.f_narrow(0, i as i64, 1)?.f_mul(&weights)?;
                    let _ = window(out, *s, roi)?.f_add_(&weighted)?;
                    let _ = window(&count, *s, roi)?.f_add_(&weights)?;
                }
            }
            let out = out
                .ok_or_else(|| NetsError::Shape("no windows".into()))?
                .f_div(&count)?;
            // Crop the padding away.
            let mut cropped = out;
            for d in 0..3 {
                let before = pad[2 * (2 - d)];
                cropped = cropped.f_narrow(2 + d as i64, before, orig[d])?;
            }
            outputs.push(cropped);
        }
        Ok(if outputs.len() == 1 {
            outputs.pop().unwrap_or_else(Tensor::new)
        } else {
            Tensor::f_cat(&outputs, 0)?
        })
    }
}

/// The view of `t` `[1, C, …]` at window `start` of size `roi`.
fn window(t: &Tensor, start: [i64; 3], roi: [i64; 3]) -> Result<Tensor> {
    Ok(t.f_narrow(2, start[0], roi[0])?
        .f_narrow(3, start[1], roi[1])?
        .f_narrow(4, start[2], roi[2])?)
}

/// The window starts (i, j, k) over an image of `image` size (already at least `roi`), in
/// MONAI's order (i slowest).
pub fn window_starts(image: [i64; 3], roi: [i64; 3], overlap: [f64; 3]) -> Vec<[i64; 3]> {
    let per_axis: Vec<Vec<i64>> = (0..3)
        .map(|d| {
            let interval = if roi[d] == image[d] {
                roi[d]
            } else {
                ((roi[d] as f64 * (1.0 - overlap[d])) as i64).max(1)
            };
            let num = (image[d] as f64 / interval as f64).ceil() as i64;
            let count = (0..num)
                .find(|i| i * interval + roi[d] >= image[d])
                .map_or(1, |i| i + 1);
            (0..count)
                .map(|i| {
                    let s = i * interval;
                    s - (s + roi[d] - image[d]).max(0)
                })
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    for &i in &per_axis[0] {
        for &j in &per_axis[1] {
            for &k in &per_axis[2] {
                out.push([i, j, k]);
            }
        }
    }
    out
}

/// The importance map `[1, 1, rx, ry, rz]` (Float) of a window; see the module docs.
pub fn importance_map(
    roi: [i64; 3],
    mode: BlendMode,
    sigma_scale: [f64; 3],
    device: Device,
) -> Result<Tensor> {
    let opts = (Kind::Float, device);
    let map = match mode {
        BlendMode::Constant => Tensor::f_ones([1, 1, roi[0], roi[1], roi[2]], opts)?,
        BlendMode::Gaussian => {
            let mut map: Option<Tensor> = None;
            for d in 0..3 {
                let r = roi[d];
                let sigma = r as f64 * sigma_scale[d];
                let half = (r - 1) as f64 / 2.0;
                // torch.arange(-(r-1)/2, (r-1)/2 + 1) in float32, as MONAI.
                let x = Tensor::f_arange_start_step(-half, half + 1.0, 1.0, opts)?;
                let x = x.f_square()?.f_div_scalar(-2.0 * sigma * sigma)?.f_exp()?;
                let mut shape = [1i64; 3];
                shape[d] = r;
                let x = x.f_reshape(shape)?;
                map = Some(match map {
                    None => x,
                    Some(m) => m.f_mul(&x)?,
                });
            }
            let map = map.ok_or_else(|| NetsError::Shape("empty roi".into()))?;
            let floor = map.f_min()?.double_value(&[]).max(1e-3);
            map.f_clamp_min(floor)?
                .f_reshape([1, 1, roi[0], roi[1], roi[2]])?
        }
    };
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_placement_matches_monai_rules() {
        // interval ⌊4·0.75⌋ = 3: starts 0, 3, 6 (6 + 4 = 10 reaches the end).
        let s = window_starts([10, 4, 9], [4, 4, 4], [0.25; 3]);
        let i: Vec<i64> = s
            .iter()
            .map(|w| w[0])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let j: Vec<i64> = s
            .iter()
            .map(|w| w[1])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let k: Vec<i64> = s
            .iter()
            .map(|w| w[2])
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(i, vec![0, 3, 6]);
        assert_eq!(j, vec![0], "a window spanning the axis is placed once");
        // 0, 3, then 6 → shifted back to 5 so that it ends at 9.
        assert_eq!(k, vec![0, 3, 5]);
        assert_eq!(s.len(), 9);
        assert_eq!(s[0], [0, 0, 0]);
        assert_eq!(s[1], [0, 0, 3], "k varies fastest");
        // No overlap, exact tiling.
        assert_eq!(window_starts([8, 8, 8], [4, 4, 4], [0.0; 3]).len(), 8);
        // Overlap so large the interval rounds to 0 → 1.
        assert_eq!(window_starts([5, 2, 2], [2, 2, 2], [0.9, 0.0, 0.0]).len(), 4);
    }

    #[test]
    fn identity_predictor_reproduces_input_and_pads() {
        let x = Tensor::arange(2 * 7 * 5 * 3, (Kind::Float, Device::Cpu)).reshape([1, 2, 7, 5, 3]);
        for mode in [BlendMode::Constant, BlendMode::Gaussian] {
            // roi larger than the image on k: padded then cropped.
            let sw = SlidingWindow::new([4, 4, 6])
                .with_overlap(0.5)
                .with_mode(mode)
                .with_batch_size(3);
            let mut calls = 0;
            let y = sw
                .run(&x, |w| {
                    calls += 1;
                    Ok(w.shallow_clone())
                })
                .unwrap();
            assert_eq!(y.size(), x.size());
            let diff = (&y - &x).abs().max().double_value(&[]);
            assert!(diff < 1e-4, "{mode:?}: {diff}");
            // i: starts 0, 2, 3; j: 0, 1; k: 0 → 6 windows in 2 calls of 3.
            assert_eq!(calls, 2);
        }
        let bad = SlidingWindow::new([4, 4, 4]).run(&x, |w| Ok(w.narrow(2, 0, 2)));
        assert!(matches!(bad, Err(NetsError::Shape(_))));
        assert!(
            SlidingWindow::new([4, 4, 4])
                .with_overlap(1.0)
                .run(&x, |w| Ok(w.shallow_clone()))
                .is_err()
        );
    }

    #[test]
    fn gaussian_map_shape_and_floor() {
        let m = importance_map([5, 4, 1], BlendMode::Gaussian, [0.125; 3], Device::Cpu).unwrap();
        assert_eq!(m.size(), vec![1, 1, 5, 4, 1]);
        // Centre of an odd axis is exp(0) = 1 along that axis; σ = 0.625 on i.
        let v = |i: i64, j: i64| m.double_value(&[0, 0, i, j, 0]);
        let gi = |x: f64| (-x * x / (2.0 * 0.625 * 0.625)).exp();
        let gj = |x: f64| (-x * x / (2.0 * 0.5 * 0.5)).exp();
        assert!((v(2, 1) - gi(0.0) * gj(0.5)).abs() < 1e-6);
        // The corners fall below 1e-3 and are floored there.
        assert!((v(0, 0) - 1e-3).abs() < 1e-9, "{}", v(0, 0));
        assert!(v(0, 0) >= 1e-3 && (gi(2.0) * gj(1.5)) < 1e-3);
    }
}
