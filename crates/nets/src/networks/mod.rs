//! The segmentation networks: [`UNet3D`] and [`SegmAhnet3D`], behind one [`Network`] type that
//! checks its input and applies the configured final activation.
//!
//! Layout: input `[N, C, X, Y, Z]` (`N, C, i, j, k`, as MONAI), output logits
//! `[N, num_classes, X, Y, Z]`; spatial sizes must be multiples of
//! [`NetConfig::spatial_divisor`] (`2^levels`). Variables live in a tch [`nn::VarStore`] under
//! the path the network is built on, so checkpoints and optimizers address them by name.

mod ahnet;
mod blocks;
mod unet;

pub use ahnet::SegmAhnet3D;
pub use unet::UNet3D;

use tch::{Kind, Tensor, nn};

use crate::config::{FinalActivation, NetConfig, NetName};
use crate::error::{NetsError, Result};

#[derive(Debug)]
enum Arch {
    UNet3D(Box<UNet3D>),
    SegmAhnet3D(Box<SegmAhnet3D>),
}

/// A network built from a `net_config`, with its channel counts.
#[derive(Debug)]
pub struct Network {
    arch: Arch,
    config: NetConfig,
    num_channels: i64,
    num_classes: i64,
}

impl Network {
    /// Builds the network selected by `config.name` under `p` (e.g. `&vs.root()`), for
    /// `num_channels` input channels and `num_classes` output channels (the train config's
    /// top-level keys).
    pub fn new(p: &nn::Path, config: &NetConfig, num_channels: i64, num_classes: i64) -> Result<Self> {
        if num_channels < 1 {
            return Err(NetsError::config(
                "train config",
                "num_channels",
                format!("{num_channels} < 1"),
            ));
        }
        if num_classes < 1 {
            return Err(NetsError::config(
                "train config",
                "num_classes",
                format!("{num_classes} < 1"),
            ));
        }
        let arch = match config.name {
            NetName::UNet3D => Arch::UNet3D(Box::new(UNet3D::new(p, config, num_channels, num_classes)?)),
            NetName::SegmAhnet3D => {
                Arch::SegmAhnet3D(Box::new(SegmAhnet3D::new(p, config, num_channels, num_classes)?))
            }
        };
        Ok(Network {
            arch,
            config: config.clone(),
            num_channels,
            num_classes,
        })
    }

    /// The config the network was built from.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Input channels.
    pub fn num_channels(&self) -> i64 {
        self.num_channels
    }

    /// Output channels (classes, background included for softmax).
    pub fn num_classes(&self) -> i64 {
        self.num_classes
    }

    /// Checks that `xs` is `[N, num_channels, X, Y, Z]` with admissible spatial sizes.
    pub fn check_input(&self, xs: &Tensor) -> Result<()> {
        let size = xs.size();
        if size.len() != 5 || size[0] < 1 || size[1] != self.num_channels {
            return Err(NetsError::Shape(format!(
                "network input must be [N, {}, X, Y, Z], got {size:?}",
                self.num_channels
            )));
        }
        if !matches!(
            xs.kind(),
            Kind::Float | Kind::Half | Kind::BFloat16 | Kind::Double
        ) {
            return Err(NetsError::Shape(format!(
                "network input must be floating point, got {:?}",
                xs.kind()
            )));
        }
        self.config.check_spatial_size(&size[2..])
    }

    /// Logits `[N, num_classes, X, Y, Z]`. `train` selects batch statistics for batch norm.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.check_input(xs)?;
        self.forward_unchecked(xs, train)
    }

    /// The forward without the input check (used when tracing, where it has been done).
    pub(crate) fn forward_unchecked(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        match &self.arch {
            Arch::UNet3D(n) => n.forward_t(xs, train),
            Arch::SegmAhnet3D(n) => n.forward_t(xs, train),
        }
    }

    /// Evaluation-mode forward without gradients, followed by the final activation: what an
    /// exported model computes.
    pub fn predict(&self, xs: &Tensor) -> Result<Tensor> {
        tch::no_grad(|| apply_final_activation(&self.forward_t(xs, false)?, self.config.final_activation))
    }
}

/// Applies `activation` to logits `[N, K, …]`: softmax over the channel axis, element-wise
/// sigmoid, or nothing.
pub fn apply_final_activation(logits: &Tensor, activation: FinalActivation) -> Result<Tensor> {
    Ok(match activation {
        FinalActivation::Softmax => logits.f_softmax(1, None::<Kind>)?,
        FinalActivation::Sigmoid => logits.f_sigmoid()?,
        FinalActivation::None => logits.shallow_clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The inference service moves networks and optimizers onto their owner threads.
    #[test]
    fn network_and_optimizer_are_send() {
        fn send<T: Send>() {}
        send::<Network>();
        send::<crate::optim::Optimizer>();
    }
}
