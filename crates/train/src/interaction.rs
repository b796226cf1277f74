//! Click simulation for training interactive (deepgrow) models, as MONAI's `Interaction`
//! does it: the network's own predictions inside the training step place the next clicks.
//! The trainer runs it before every step when the train config has `interaction`, and
//! validates after one click.
//!
//! For a batch `[N, C, X, Y, Z]` of images (the first `intensity_channels` channels are the
//! image; any further ones are replaced) and its labels `[N, 1, X, Y, Z]` (foreground
//! `> 0.5`), each sample independently:
//! 1. trains without clicks with probability `no_click_probability` (its guidance channels
//!    stay zero, so the same model also segments automatically);
//! 2. otherwise gets a first foreground click inside its label, then a number of rounds drawn
//!    uniformly in `0..=max_rounds`. In each round the network predicts the whole batch
//!    (no gradients, probabilities, foreground = channel 1, or channel 0 of a one-channel
//!    output, `> 0.5`) and each sample still clicking gets its next click.
//!
//! Clicks follow MONAI's rules (`aiaa_transforms::guidance`: `AddInitialSeedPointd`, then
//! `FindDiscrepancyRegionsd` + `AddRandomGuidanced`). The guidance channels are
//! `AddGuidanceSignald`'s, with `sigma` in voxels. Draws come from the caller's seeded
//! generator, so a step is reproducible.
//!
//! Coordinates: a sample's `[X, Y, Z]` tensor is read in its own memory order (`Z`
//! fastest), so the guidance functions see the grid as `[Z, Y, X]`. Distances, Gaussian
//! kernels and clicks do not depend on the order of the axes, and the channels are written
//! back in the tensor's order.

use aiaa_transforms::SampleRng;
use aiaa_transforms::guidance::{Click, Clicks, guidance_signal, next_click, sample_click};
use aiaa_transforms::rng::{chance, uniform_int};
use serde::Deserialize;
use tch::{Kind, Tensor};

use crate::error::{Result, TrainError};

/// The `interaction` section of a train config.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// The most click rounds after the first click (each a forward pass of the batch).
    #[serde(default = "default_rounds")]
    pub max_rounds: usize,
    /// The chance that a sample trains without clicks.
    #[serde(default = "default_no_click")]
    pub no_click_probability: f64,
    /// σ of the guidance channels (voxels).
    #[serde(default = "default_sigma")]
    pub sigma: f64,
    /// Image channels before the two guidance channels.
    #[serde(default = "one", rename = "number_intensity_ch")]
    pub intensity_channels: usize,
}

fn default_rounds() -> usize {
    10
}
fn default_no_click() -> f64 {
    0.2
}
fn default_sigma() -> f64 {
    2.0
}
fn one() -> usize {
    1
}

fn invalid(message: String) -> TrainError {
    TrainError::Data {
        sample: "(click simulation)".into(),
        message,
    }
}

impl Interaction {
    /// The network's input channels: the image's and the two guidance channels.
    pub fn input_channels(&self) -> usize {
        self.intensity_channels + 2
    }

    /// The batch's network input after the simulated clicks (see the module docs);
    /// `predict` maps an input batch to probabilities `[N, K, X, Y, Z]`.
    pub fn input(
        &self,
        image: &Tensor,
        label: &Tensor,
        rng: &mut SampleRng,
        mut predict: impl FnMut(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let size = image.size();
        if size.len() != 5 || (size[1] as usize) < self.intensity_channels {
            return Err(invalid(format!(
                "images must be [N, C >= {}, X, Y, Z], got {size:?}",
                self.intensity_channels
            )));
        }
        let (n, dims) = (
            size[0] as usize,
            [size[4] as usize, size[3] as usize, size[2] as usize],
        );
        let voxels: usize = dims.iter().product();
        let labels = floats(label)?;
        if labels.len() != n * voxels {
            return Err(invalid(format!(
                "labels hold {} voxels for {n} images of {voxels}",
                labels.len()
            )));
        }
        let intensity = image.f_narrow(1, 0, self.intensity_channels as i64)?;
        // Per sample: its clicks, and how many rounds it still clicks in.
        let mut clicks = vec![Clicks::default(); n];
        let mut rounds = vec![0usize; n];
        for s in 0..n {
            if chance(rng, self.no_click_probability) {
                continue;
            }
            let region: Vec<bool> = labels[s * voxels..(s + 1) * voxels]
                .iter()
                .map(|v| *v > 0.5)
                .collect();
            if let Some(p) = sample_click(&region, dims, rng) {
                clicks[s].push(Click::Foreground(p));
                rounds[s] = uniform_int(rng, 0, self.max_rounds as i64) as usize;
            }
        }
        let build = |clicks: &[Clicks]| -> Result<Tensor> {
            let mut guidance = Vec::with_capacity(n * 2 * voxels);
            for c in clicks {
                guidance.extend(guidance_signal(dims, &c.foreground, self.sigma));
                guidance.extend(guidance_signal(dims, &c.background, self.sigma));
            }
            let g = Tensor::f_from_slice(&guidance)?
                .f_view([n as i64, 2, size[2], size[3], size[4]])?
                .f_to_device(image.device())?;
            Ok(Tensor::f_cat(&[intensity.f_to_kind(Kind::Float)?, g], 1)?)
        };
        let most = rounds.iter().copied().max().unwrap_or(0);
        for round in 0..most {
            let probs = predict(&build(&clicks)?)?;
            let k = probs.size().get(1).copied().unwrap_or(1);
            let foreground = floats(&probs.f_narrow(1, if k >= 2 { 1 } else { 0 }, 1)?)?;
            for s in (0..n).filter(|&s| rounds[s] > round) {
                let range = s * voxels..(s + 1) * voxels;
                if let Some(c) = next_click(&labels[range.clone()], &foreground[range], dims, rng) {
                    clicks[s].push(c);
                }
            }
        }
        build(&clicks)
    }
}

/// A tensor's values as `f32`, in its memory order.
fn floats(t: &Tensor) -> Result<Vec<f32>> {
    let t = t.f_to_kind(Kind::Float)?.f_contiguous()?.f_flatten(0, -1)?;
    Ok(Vec::<f32>::try_from(&t)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_transforms::rng::sample_rng;
    use tch::Device;

    /// A batch of two 12³ boxes (labels), images of zeros.
    fn batch() -> (Tensor, Tensor) {
        let label = Tensor::zeros([2, 1, 12, 12, 12], (Kind::Float, Device::Cpu));
        let _ = label.narrow(2, 3, 6).narrow(3, 3, 6).narrow(4, 3, 6).fill_(1.0);
        (
            Tensor::zeros([2, 1, 12, 12, 12], (Kind::Float, Device::Cpu)),
            label,
        )
    }

    fn interaction(no_click: f64, rounds: usize) -> Interaction {
        Interaction {
            max_rounds: rounds,
            no_click_probability: no_click,
            sigma: 1.0,
            intensity_channels: 1,
        }
    }

    #[test]
    fn the_first_click_lands_in_the_label_and_rounds_follow_the_predictions() {
        let (image, label) = batch();
        let mut calls = 0;
        // A model that predicts nothing: every round's click goes to the missed voxels.
        let x = interaction(0.0, 3)
            .input(&image, &label, &mut sample_rng(1, 0, 0), |x| {
                calls += 1;
                assert_eq!(x.size(), [2, 3, 12, 12, 12]);
                Ok(Tensor::zeros([2, 2, 12, 12, 12], (Kind::Float, Device::Cpu)))
            })
            .unwrap();
        assert_eq!(x.size(), [2, 3, 12, 12, 12]);
        assert!(calls <= 3);
        for s in 0..2 {
            let fg = x.get(s).get(1);
            // The foreground channel peaks (1.0) inside the box only.
            let peak = fg.argmax(None, false).int64_value(&[]);
            let (i, j, k) = (peak / 144, (peak / 12) % 12, peak % 12);
            assert!([i, j, k].iter().all(|c| (3..9).contains(c)), "{i} {j} {k}");
            assert_eq!(fg.max().double_value(&[]), 1.0);
            // No background clicks: nothing was predicted outside the box.
            assert_eq!(x.get(s).get(2).abs().max().double_value(&[]), 0.0);
        }
        // The same seed, the same input.
        let again = interaction(0.0, 3)
            .input(&image, &label, &mut sample_rng(1, 0, 0), |_| {
                Ok(Tensor::zeros([2, 2, 12, 12, 12], (Kind::Float, Device::Cpu)))
            })
            .unwrap();
        assert!(x.equal(&again));
    }

    #[test]
    fn an_overshooting_prediction_gets_background_clicks_and_no_clicks_means_zero_guidance() {
        let (image, label) = batch();
        // Everything predicted: the extra voxels outnumber the missed ones (none), so every
        // click after the first is a background click, outside the box.
        let all = Tensor::ones([2, 2, 12, 12, 12], (Kind::Float, Device::Cpu));
        let mut background = 0;
        for seed in 0..8 {
            let x = interaction(0.0, 1)
                .input(&image, &label, &mut sample_rng(seed, 0, 0), |_| {
                    Ok(all.shallow_clone())
                })
                .unwrap();
            for s in 0..2 {
                let bg = x.get(s).get(2);
                if bg.max().double_value(&[]) > 0.0 {
                    background += 1;
                    let peak = bg.argmax(None, false).int64_value(&[]);
                    let (i, j, k) = (peak / 144, (peak / 12) % 12, peak % 12);
                    assert!(![i, j, k].iter().all(|c| (3..9).contains(c)), "{i} {j} {k}");
                }
            }
        }
        assert!(background > 0, "some samples drew a round");
        // Always without clicks: the guidance channels are zero and the model is not asked.
        let x = interaction(1.0, 5)
            .input(&image, &label, &mut sample_rng(3, 0, 0), |_| panic!("no rounds"))
            .unwrap();
        assert_eq!(x.narrow(1, 1, 2).abs().max().double_value(&[]), 0.0);
    }
}
