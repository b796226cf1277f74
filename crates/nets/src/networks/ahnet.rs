//! `SegmAhnet3D`: an anisotropic hybrid network in the spirit of AH-Net (Liu et al. 2018,
//! "3D Anisotropic Hybrid Network"), the seed's annotation network. It does not reproduce
//! NVIDIA's layers or weights, only the idea and the config knobs:
//!
//! - Convolutions are factorised: a 3x3x1 in-plane conv (the "2D" part that AH-Net borrows from
//!   a 2D encoder) followed by a 1x1x3 through-plane conv, so in-plane and inter-slice context
//!   are learned separately, as suits volumes with thick slices.
//! - Encoder: a stem (3x3x1 then 1x1x3 conv-norm-ReLU, `num_filters` channels), then `levels`
//!   stages, each 2x2x2 max pooling followed by a residual factorised block that doubles the
//!   channels.
//! - `if_use_psp`: a pyramid-pooling module on the bottleneck: a global-average branch and
//!   in-plane max-pooled branches at factors [`crate::config::PSP_POOL_FACTORS`] (k x k x 1, as
//!   AH-Net pools in-plane), each a 1x1x1 conv to a quarter of the channels, brought back to
//!   the bottleneck size (nearest repeat / broadcast), concatenated with the features and
//!   fused by a 1x1x1 conv-norm-ReLU. Input i and j sizes must then also be divisible by the
//!   largest factor times `2^levels` ([`crate::config::NetConfig::spatial_divisor`]).
//! - Decoder: per level a 2x2x2 transposed conv, an additive skip from the encoder (AH-Net
//!   sums where a U-Net concatenates) and a residual factorised block; a 1x1x1 conv gives
//!   `num_classes` logits.
//!
//! Every operation keeps shapes symbolic when traced, so an exported model accepts any input
//! size that satisfies the divisor.
//!
//! Variables: `stem/{a,b}/…`, `enc{l}/…`, `psp/…`, `up{l}/…`, `dec{l}/…`, `head/…`.

use tch::{Tensor, nn};

use crate::config::{NetConfig, NormKind, PSP_POOL_FACTORS};
use crate::error::Result;
use crate::networks::blocks::{Conv3d, ConvNorm, Up3d};

const IN_PLANE: [i64; 3] = [3, 3, 1];
const THROUGH_PLANE: [i64; 3] = [1, 1, 3];
const POINT: [i64; 3] = [1, 1, 1];

/// relu(1x1x3(3x3x1(x)) + skip(x)), the skip a 1x1x1 conv-norm when the width changes.
#[derive(Debug)]
struct AnisoBlock {
    a: ConvNorm,
    b: ConvNorm,
    skip: Option<ConvNorm>,
}

impl AnisoBlock {
    fn new(p: &nn::Path, norm: NormKind, c_in: i64, c_out: i64) -> Result<Self> {
        Ok(AnisoBlock {
            a: ConvNorm::new(&(p / "a"), norm, c_in, c_out, IN_PLANE, POINT, true)?,
            b: ConvNorm::new(&(p / "b"), norm, c_out, c_out, THROUGH_PLANE, POINT, false)?,
            skip: if c_in != c_out {
                Some(ConvNorm::new(
                    &(p / "skip"),
                    norm,
                    c_in,
                    c_out,
                    POINT,
                    POINT,
                    false,
                )?)
            } else {
                None
            },
        })
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let ys = self.b.forward(&self.a.forward(xs, train)?, train)?;
        let skip = match &self.skip {
            Some(s) => s.forward(xs, train)?,
            None => xs.shallow_clone(),
        };
        Ok(ys.f_add(&skip)?.f_relu()?)
    }
}

/// The pyramid-pooling module.
#[derive(Debug)]
struct Psp {
    global: Conv3d,
    pooled: Vec<(i64, Conv3d)>,
    fuse: ConvNorm,
}

impl Psp {
    fn new(p: &nn::Path, norm: NormKind, c: i64) -> Result<Self> {
        let c4 = (c / 4).max(1);
        let global = Conv3d::new(&(p / "global"), c, c4, POINT, POINT, true)?;
        let pooled = PSP_POOL_FACTORS
            .iter()
            .map(|&k| {
                Ok((
                    k,
                    Conv3d::new(&(p / format!("pool{k}")), c, c4, POINT, POINT, true)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let c_cat = c + c4 * (1 + pooled.len() as i64);
        let fuse = ConvNorm::new(&(p / "fuse"), norm, c_cat, c, POINT, POINT, true)?;
        Ok(Psp { global, pooled, fuse })
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut branches = Vec::with_capacity(self.pooled.len());
        for (k, conv) in &self.pooled {
            let k = *k;
            let pooled = xs.f_max_pool3d([k, k, 1], [k, k, 1], [0, 0, 0], [1, 1, 1], false)?;
            let ys = conv.forward(&pooled)?.f_relu()?;
            let ys = ys
                .f_repeat_interleave_self_int(k, 2, None)?
                .f_repeat_interleave_self_int(k, 3, None)?;
            branches.push(ys);
        }
        let g = conv_relu(&self.global, &xs.f_mean_dim([2i64, 3, 4].as_slice(), true, None)?)?;
        let g = g.f_expand_as(&branches[0])?;
        let mut all = vec![xs.shallow_clone(), g];
        all.extend(branches);
        self.fuse.forward(&Tensor::f_cat(&all, 1)?, train)
    }
}

fn conv_relu(conv: &Conv3d, xs: &Tensor) -> Result<Tensor> {
    Ok(conv.forward(xs)?.f_relu()?)
}

/// The anisotropic hybrid network; see the module docs.
#[derive(Debug)]
pub struct SegmAhnet3D {
    stem_a: ConvNorm,
    stem_b: ConvNorm,
    enc: Vec<AnisoBlock>,
    psp: Option<Psp>,
    up: Vec<Up3d>,
    dec: Vec<AnisoBlock>,
    head: Conv3d,
}

impl SegmAhnet3D {
    /// Builds the network's variables under `p`.
    pub fn new(p: &nn::Path, cfg: &NetConfig, num_channels: i64, num_classes: i64) -> Result<Self> {
        let width = |l: usize| cfg.num_filters << l;
        let stem = p / "stem";
        let stem_a = ConvNorm::new(
            &(&stem / "a"),
            cfg.norm,
            num_channels,
            width(0),
            IN_PLANE,
            POINT,
            true,
        )?;
        let stem_b = ConvNorm::new(
            &(&stem / "b"),
            cfg.norm,
            width(0),
            width(0),
            THROUGH_PLANE,
            POINT,
            true,
        )?;
        let enc = (1..=cfg.levels)
            .map(|l| AnisoBlock::new(&(p / format!("enc{l}")), cfg.norm, width(l - 1), width(l)))
            .collect::<Result<Vec<_>>>()?;
        let psp = if cfg.if_use_psp {
            Some(Psp::new(&(p / "psp"), cfg.norm, width(cfg.levels))?)
        } else {
            None
        };
        let mut up = Vec::new();
        let mut dec = Vec::new();
        for l in 0..cfg.levels {
            up.push(Up3d::new(&(p / format!("up{l}")), width(l + 1), width(l))?);
            dec.push(AnisoBlock::new(
                &(p / format!("dec{l}")),
                cfg.norm,
                width(l),
                width(l),
            )?);
        }
        let head = Conv3d::new(&(p / "head"), width(0), num_classes, POINT, POINT, true)?;
        Ok(SegmAhnet3D {
            stem_a,
            stem_b,
            enc,
            psp,
            up,
            dec,
            head,
        })
    }

    /// Logits `[N, num_classes, X, Y, Z]` for input `[N, num_channels, X, Y, Z]`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut h = self.stem_b.forward(&self.stem_a.forward(xs, train)?, train)?;
        let mut skips = Vec::with_capacity(self.enc.len());
        for enc in &self.enc {
            let pooled = h.f_max_pool3d([2, 2, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1], false)?;
            skips.push(h);
            h = enc.forward(&pooled, train)?;
        }
        if let Some(psp) = &self.psp {
            h = psp.forward(&h, train)?;
        }
        for l in (0..self.dec.len()).rev() {
            let u = self.up[l].forward(&h)?;
            h = self.dec[l].forward(&u.f_add(&skips[l])?, train)?;
        }
        self.head.forward(&h)
    }
}
