//! The layers both networks are made of, with fallible forwards (a libtorch error, such as
//! running out of device memory, comes back as an error instead of a panic).
//!
//! Variables use PyTorch's names (`weight`, `bias`, `running_mean`, `running_var`) under the
//! [`nn::Path`] they are built on.

use tch::{Tensor, nn};

use crate::config::NormKind;
use crate::error::Result;

/// A 3D convolution with "same" padding for odd kernels.
#[derive(Debug)]
pub(crate) struct Conv3d {
    ws: Tensor,
    bs: Option<Tensor>,
    stride: [i64; 3],
    padding: [i64; 3],
}

impl Conv3d {
    /// Weights `[c_out, c_in, k0, k1, k2]` with Kaiming-uniform initialisation (fan in, ReLU
    /// gain); bias, when wanted, zero.
    pub(crate) fn new(
        p: &nn::Path,
        c_in: i64,
        c_out: i64,
        kernel: [i64; 3],
        stride: [i64; 3],
        bias: bool,
    ) -> Result<Self> {
        let ws = p.f_var(
            "weight",
            &[c_out, c_in, kernel[0], kernel[1], kernel[2]],
            nn::init::DEFAULT_KAIMING_UNIFORM,
        )?;
        let bs = if bias {
            Some(p.f_zeros("bias", &[c_out])?)
        } else {
            None
        };
        Ok(Conv3d {
            ws,
            bs,
            stride,
            padding: kernel.map(|k| k / 2),
        })
    }

    /// Applies the convolution.
    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.f_conv3d(
            &self.ws,
            self.bs.as_ref(),
            self.stride,
            self.padding,
            [1, 1, 1],
            1,
        )?)
    }
}

/// A 3D transposed convolution with kernel = stride = 2: exactly doubles each spatial size.
#[derive(Debug)]
pub(crate) struct Up3d {
    ws: Tensor,
    bs: Tensor,
}

impl Up3d {
    /// Weights `[c_in, c_out, 2, 2, 2]`, Kaiming-uniform; bias zero.
    pub(crate) fn new(p: &nn::Path, c_in: i64, c_out: i64) -> Result<Self> {
        let ws = p.f_var(
            "weight",
            &[c_in, c_out, 2, 2, 2],
            nn::init::DEFAULT_KAIMING_UNIFORM,
        )?;
        let bs = p.f_zeros("bias", &[c_out])?;
        Ok(Up3d { ws, bs })
    }

    /// Applies the transposed convolution.
    pub(crate) fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(xs.f_conv_transpose3d(
            &self.ws,
            Some(&self.bs),
            [2, 2, 2],
            [0, 0, 0],
            [0, 0, 0],
            1,
            [1, 1, 1],
        )?)
    }
}

/// Instance or batch normalisation with a learned per-channel scale and shift.
#[derive(Debug)]
pub(crate) enum Norm {
    Instance {
        ws: Tensor,
        bs: Tensor,
    },
    Batch {
        ws: Tensor,
        bs: Tensor,
        running_mean: Tensor,
        running_var: Tensor,
    },
}

const NORM_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

impl Norm {
    /// A normalisation over `c` channels.
    pub(crate) fn new(p: &nn::Path, kind: NormKind, c: i64) -> Result<Self> {
        let ws = p.f_ones("weight", &[c])?;
        let bs = p.f_zeros("bias", &[c])?;
        Ok(match kind {
            NormKind::Instance => Norm::Instance { ws, bs },
            NormKind::Batch => Norm::Batch {
                ws,
                bs,
                running_mean: p.f_zeros_no_train("running_mean", &[c])?,
                running_var: p.f_ones_no_train("running_var", &[c])?,
            },
        })
    }

    /// Normalises; batch norm uses (and updates) batch statistics when `train`, the running
    /// ones otherwise. Instance norm always uses the input's own statistics.
    pub(crate) fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        Ok(match self {
            Norm::Instance { ws, bs } => {
                xs.f_instance_norm(Some(ws), Some(bs), None, None, true, BN_MOMENTUM, NORM_EPS, false)?
            }
            Norm::Batch {
                ws,
                bs,
                running_mean,
                running_var,
            } => xs.f_batch_norm(
                Some(ws),
                Some(bs),
                Some(running_mean),
                Some(running_var),
                train,
                BN_MOMENTUM,
                NORM_EPS,
                false,
            )?,
        })
    }
}

/// Convolution (no bias: the normalisation shifts) → normalisation → optional ReLU.
#[derive(Debug)]
pub(crate) struct ConvNorm {
    conv: Conv3d,
    norm: Norm,
    relu: bool,
}

impl ConvNorm {
    /// A conv with `kernel` and `stride`, its norm under `p / "norm"`, then ReLU when `relu`.
    pub(crate) fn new(
        p: &nn::Path,
        norm: NormKind,
        c_in: i64,
        c_out: i64,
        kernel: [i64; 3],
        stride: [i64; 3],
        relu: bool,
    ) -> Result<Self> {
        Ok(ConvNorm {
            conv: Conv3d::new(&(p / "conv"), c_in, c_out, kernel, stride, false)?,
            norm: Norm::new(&(p / "norm"), norm, c_out)?,
            relu,
        })
    }

    /// Applies conv, norm and ReLU.
    pub(crate) fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let ys = self.norm.forward(&self.conv.forward(xs)?, train)?;
        Ok(if self.relu { ys.f_relu()? } else { ys })
    }
}
