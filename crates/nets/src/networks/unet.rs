//! `UNet3D`: a plain 3D U-Net (Çiçek et al. 2016, in MONAI's usual shape).
//!
//! Level 0 runs two conv-norm-ReLU blocks (3x3x3) at full resolution with `num_filters`
//! channels; each of the `levels` further levels halves the resolution (2x2x2 max pooling, or
//! a stride-2 conv-norm-ReLU with `"downsample": "strided"`) and doubles the channels. The
//! decoder goes back up with 2x2x2 transposed convolutions, concatenates the encoder's
//! features of the same level (skip connection) and runs two more blocks; a 1x1x1 conv maps to
//! `num_classes` logits. Output size = input size for sizes divisible by `2^levels`.
//!
//! Variables: `enc{l}/{a,b}/{conv,norm}/…`, `down{l}/…`, `up{l}/…`, `dec{l}/{a,b}/…`,
//! `head/{weight,bias}`.

use tch::{Tensor, nn};

use crate::config::{Downsample, NetConfig};
use crate::error::Result;
use crate::networks::blocks::{Conv3d, ConvNorm, Up3d};

const K3: [i64; 3] = [3, 3, 3];
const S1: [i64; 3] = [1, 1, 1];

/// Two 3x3x3 conv-norm-ReLU blocks.
#[derive(Debug)]
struct DoubleConv {
    a: ConvNorm,
    b: ConvNorm,
}

impl DoubleConv {
    fn new(p: &nn::Path, cfg: &NetConfig, c_in: i64, c_out: i64) -> Result<Self> {
        Ok(DoubleConv {
            a: ConvNorm::new(&(p / "a"), cfg.norm, c_in, c_out, K3, S1, true)?,
            b: ConvNorm::new(&(p / "b"), cfg.norm, c_out, c_out, K3, S1, true)?,
        })
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.b.forward(&self.a.forward(xs, train)?, train)
    }
}

/// A 3D U-Net; see the module docs.
#[derive(Debug)]
pub struct UNet3D {
    enc: Vec<DoubleConv>,
    down: Vec<Option<ConvNorm>>,
    up: Vec<Up3d>,
    dec: Vec<DoubleConv>,
    head: Conv3d,
}

impl UNet3D {
    /// Builds the network's variables under `p`.
    pub fn new(p: &nn::Path, cfg: &NetConfig, num_channels: i64, num_classes: i64) -> Result<Self> {
        let width = |l: usize| cfg.num_filters << l;
        let mut enc = Vec::new();
        let mut down = Vec::new();
        let mut up = Vec::new();
        let mut dec = Vec::new();
        enc.push(DoubleConv::new(&(p / "enc0"), cfg, num_channels, width(0))?);
        for l in 1..=cfg.levels {
            down.push(match cfg.downsample {
                Downsample::MaxPool => None,
                Downsample::Strided => Some(ConvNorm::new(
                    &(p / format!("down{l}")),
                    cfg.norm,
                    width(l - 1),
                    width(l - 1),
                    K3,
                    [2, 2, 2],
                    true,
                )?),
            });
            enc.push(DoubleConv::new(
                &(p / format!("enc{l}")),
                cfg,
                width(l - 1),
                width(l),
            )?);
        }
        for l in 0..cfg.levels {
            up.push(Up3d::new(&(p / format!("up{l}")), width(l + 1), width(l))?);
            dec.push(DoubleConv::new(
                &(p / format!("dec{l}")),
                cfg,
                2 * width(l),
                width(l),
            )?);
        }
        let head = Conv3d::new(&(p / "head"), width(0), num_classes, [1, 1, 1], S1, true)?;
        Ok(UNet3D {
            enc,
            down,
            up,
            dec,
            head,
        })
    }

    /// Logits `[N, num_classes, X, Y, Z]` for input `[N, num_channels, X, Y, Z]`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut skips = Vec::with_capacity(self.enc.len());
        let mut h = self.enc[0].forward(xs, train)?;
        for (enc, down) in self.enc[1..].iter().zip(&self.down) {
            let pooled = match down {
                None => h.f_max_pool3d([2, 2, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1], false)?,
                Some(conv) => conv.forward(&h, train)?,
            };
            skips.push(h);
            h = enc.forward(&pooled, train)?;
        }
        for l in (0..self.dec.len()).rev() {
            let u = self.up[l].forward(&h)?;
            h = self.dec[l].forward(&Tensor::f_cat(&[&skips[l], &u], 1)?, train)?;
        }
        self.head.forward(&h)
    }
}
