//! TorchScript export of a trained network (the seed's `tlt-export`, with TorchScript in place
//! of a TensorRT graph), by tracing [`crate::networks::Network`] with
//! [`tch::CModule::create_by_tracing`] and saving it with [`tch::CModule::save`].
//!
//! The exported module's `forward` takes a Float `[N, num_channels, X, Y, Z]` and returns Float
//! `[N, num_classes, X, Y, Z]`: the network in evaluation mode followed by its
//! `final_activation` (unless [`ExportOptions::include_activation`] is off). Every operation
//! keeps sizes symbolic, so the module accepts any spatial size the network does (multiples
//! of [`crate::config::NetConfig::spatial_divisor`]), not only the one traced.
//!
//! Precision:
//! - [`Precision::Fp32`]: float32 weights, on any device.
//! - [`Precision::Fp16`]: half-precision weights, CUDA only (an [`NetsError::Unsupported`]
//!   error elsewhere: CPU kernels for half convolutions are missing or slow). The module
//!   still takes and returns float32: it converts the input to half inside, and the logits back
//!   to float32 before the activation, so callers need not know.
//!
//! The module's weights are baked in as constants on the export device; load it elsewhere with
//! `CModule::load_on_device` (or Python's `torch.jit.load(path, map_location=…)`).

use std::path::Path;

use tch::{CModule, Device, Kind, Tensor, nn::VarStore};

use crate::checkpoint::write_atomically;
use crate::config::NetConfig;
use crate::error::{NetsError, Result};
use crate::networks::{Network, apply_final_activation};

/// Weight precision of an exported model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// float32.
    Fp32,
    /// float16 (CUDA only).
    Fp16,
}

impl Precision {
    /// Parses `"fp32"` or `"fp16"`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fp32" => Some(Precision::Fp32),
            "fp16" => Some(Precision::Fp16),
            _ => None,
        }
    }
}

/// How to export.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    /// Weight precision.
    pub precision: Precision,
    /// The device to trace on (and whose tensors the module holds).
    pub device: Device,
    /// Spatial size of the example input used for tracing; default twice the network's
    /// divisor. The traced module is not limited to it.
    pub example_size: Option<[i64; 3]>,
    /// Append the config's `final_activation` (default true).
    pub include_activation: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            precision: Precision::Fp32,
            device: Device::Cpu,
            example_size: None,
            include_activation: true,
        }
    }
}

/// Traces the network of `config` with the weights in `weights` (a var store holding exactly
/// the network's variables, on any device) and saves it as TorchScript at `path`
/// (atomically). Returns the traced module.
pub fn export_torchscript(
    config: &NetConfig,
    num_channels: i64,
    num_classes: i64,
    weights: &VarStore,
    options: &ExportOptions,
    path: impl AsRef<Path>,
) -> Result<CModule> {
    let half = options.precision == Precision::Fp16;
    if half && !options.device.is_cuda() {
        return Err(NetsError::Unsupported(format!(
            "fp16 export needs a CUDA device, got {:?}; export fp32 instead",
            options.device
        )));
    }
    let mut vs = VarStore::new(options.device);
    let net = Network::new(&vs.root(), config, num_channels, num_classes)?;
    vs.copy(weights)?;
    vs.freeze();
    if half {
        vs.half();
    }
    let size = options
        .example_size
        .unwrap_or_else(|| config.spatial_divisor().map(|d| 2 * d));
    config.check_spatial_size(&size)?;
    let example = Tensor::f_zeros(
        [1, num_channels, size[0], size[1], size[2]],
        (Kind::Float, options.device),
    )?;
    let activation = config.final_activation;
    let include_activation = options.include_activation;
    let mut failure: Option<NetsError> = None;
    let mut closure = |inputs: &[Tensor]| -> Vec<Tensor> {
        let run = || -> Result<Tensor> {
            let xs = if half {
                inputs[0].f_to_kind(Kind::Half)?
            } else {
                inputs[0].shallow_clone()
            };
            let logits = net.forward_unchecked(&xs, false)?;
            let logits = if half {
                logits.f_to_kind(Kind::Float)?
            } else {
                logits
            };
            if include_activation {
                apply_final_activation(&logits, activation)
            } else {
                Ok(logits)
            }
        };
        match run() {
            Ok(t) => vec![t],
            Err(e) => {
                failure = Some(e);
                vec![inputs[0].shallow_clone()]
            }
        }
    };
    let module = tch::no_grad(|| {
        CModule::create_by_tracing("AiaaSegmentationNetwork", "forward", &[example], &mut closure)
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    write_atomically(path.as_ref(), |tmp| module.save(tmp))?;
    tracing::info!(
        path = %path.as_ref().display(),
        network = config.name.as_str(),
        precision = ?options.precision,
        device = ?options.device,
        "TorchScript model exported"
    );
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetName;

    #[test]
    fn fp16_on_cpu_is_a_clear_error() {
        let cfg = NetConfig {
            num_filters: 2,
            levels: 1,
            ..NetConfig::new(NetName::UNet3D)
        };
        let vs = VarStore::new(Device::Cpu);
        let _net = Network::new(&vs.root(), &cfg, 1, 2).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts = ExportOptions {
            precision: Precision::Fp16,
            ..ExportOptions::default()
        };
        let err = export_torchscript(&cfg, 1, 2, &vs, &opts, dir.path().join("m.pt")).unwrap_err();
        assert!(
            matches!(&err, NetsError::Unsupported(m) if m.contains("CUDA")),
            "{err}"
        );
        assert!(!dir.path().join("m.pt").exists());
    }

    /// On a machine with CUDA: the fp16 export takes and returns float32 and stays close to
    /// the fp32 network. Elsewhere it says it did not run.
    #[test]
    fn fp16_on_cuda_is_close_to_fp32() {
        if !tch::Cuda::is_available() {
            eprintln!("SKIPPED: no CUDA device; fp16 export not exercised");
            return;
        }
        let device = Device::Cuda(0);
        let cfg = NetConfig {
            num_filters: 4,
            levels: 2,
            ..NetConfig::new(NetName::SegmAhnet3D)
        };
        let vs = VarStore::new(device);
        let net = Network::new(&vs.root(), &cfg, 2, 2).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m16.pt");
        let opts = ExportOptions {
            precision: Precision::Fp16,
            device,
            ..ExportOptions::default()
        };
        export_torchscript(&cfg, 2, 2, &vs, &opts, &path).unwrap();
        let module = CModule::load_on_device(&path, device).unwrap();
        let xs = Tensor::randn([1, 2, 16, 16, 8], (Kind::Float, device));
        let got = tch::no_grad(|| module.forward_ts(&[&xs])).unwrap();
        assert_eq!(got.kind(), Kind::Float);
        let want = net.predict(&xs).unwrap();
        let d = (&got - &want).abs().max().double_value(&[]);
        assert!(d < 2e-2, "fp16 export differs from fp32 by {d}");
    }
}
