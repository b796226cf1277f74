//! The serving path: [`prepare()`] loads a TorchScript file and hands back the fastest form
//! of it that runs, warmed up.
//!
//! The forms, fastest first ([`Form`]): frozen and optimised for inference, frozen only,
//! the module as loaded. Each is made from the one before without changing it (the shim
//! freezes and optimises copies), so when a step fails the previous form is still whole.
//! The first form that runs every warm-up input serves; the others are dropped, so only
//! one copy of the weights stays on the device.
//!
//! Why warm up at load: libtorch's profiling executor runs a graph's first call through a
//! profiling plan and builds its optimised plan on the second, and oneDNN creates (and
//! caches) its convolution primitives for each input shape on first use; all of that would
//! otherwise land on the first requests. [`WARM_RUNS`] calls per input shape take every
//! shape the engine uses past both.

use std::path::Path;
use std::time::Instant;

use tch::{Device, Tensor};

use crate::error::{JitError, Result};
use crate::module::Module;

/// Forward passes per warm-up input: the profiling executor's profiling run (one, libtorch's
/// default `num_profiled_runs`), then the run that builds and caches the optimised plan.
/// From the third call on, a call costs what every later one does (measured: see
/// docs/inference.md).
pub const WARM_RUNS: usize = 2;

/// Which form of a module serves, most optimised last (so `min` over a model's networks is
/// the model's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Form {
    /// The module as loaded (freezing was off, or failed: see the log).
    #[default]
    Plain,
    /// Frozen, but `optimize_for_inference` failed (see the log).
    FrozenUnoptimized,
    /// Frozen and optimised for inference: the fast path.
    Frozen,
}

impl Form {
    /// The name the logs and the model listing use: `plain`, `frozen-unoptimized`,
    /// `frozen`.
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Plain => "plain",
            Form::FrozenUnoptimized => "frozen-unoptimized",
            Form::Frozen => "frozen",
        }
    }
}

impl std::fmt::Display for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether to freeze at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    /// Freeze and optimise, falling back as [`prepare()`] says (the default).
    #[default]
    Freeze,
    /// Serve the module as loaded (comparisons, diagnosis).
    Plain,
}

/// A module ready to serve.
#[derive(Debug)]
pub struct Prepared {
    /// The module that serves.
    pub module: Module,
    /// Its form.
    pub form: Form,
    /// Whether it ran every warm-up input (false: no form ran them; see the log).
    pub warmed: bool,
}

/// Loads `path` onto `device` (evaluation mode) and makes it ready to serve: frozen and
/// optimised unless `policy` says [`Policy::Plain`], then warmed up with [`WARM_RUNS`]
/// forward passes on each of `warm` (network inputs of every shape the engine will send,
/// on any device). `name` names the model in the log.
///
/// A form whose freezing, optimisation or warm-up fails gives way to the next simpler one,
/// with a warning saying why. When even the module as loaded cannot run the warm-up inputs,
/// the fault is taken to lie with the inputs (an engine's guess of the network's input): the
/// most optimised form serves, not warmed up, with a warning. Only loading itself is an
/// error: then there is nothing to serve.
pub fn prepare(name: &str, path: &Path, device: Device, policy: Policy, warm: &[Tensor]) -> Result<Prepared> {
    let t0 = Instant::now();
    let plain = Module::load(path, device)?;
    let loaded_s = t0.elapsed().as_secs_f64();
    let mut forms: Vec<(Form, Module)> = Vec::new();
    if policy == Policy::Freeze {
        match plain.freeze() {
            Ok(frozen) => {
                match frozen.optimize_for_inference() {
                    Ok(optimized) => forms.push((Form::Frozen, optimized)),
                    Err(e) => tracing::warn!(
                        model = %name, ?device, error = %e,
                        "optimize_for_inference failed; trying the frozen module without it"
                    ),
                }
                forms.push((Form::FrozenUnoptimized, frozen));
            }
            Err(e) => tracing::warn!(
                model = %name, ?device, error = %e,
                "freezing failed; the module as loaded serves"
            ),
        }
    }
    forms.push((Form::Plain, plain));
    let compiled_s = t0.elapsed().as_secs_f64() - loaded_s;

    let t1 = Instant::now();
    let inputs = warm
        .iter()
        .map(|x| x.f_to_device(device).and_then(|x| x.f_contiguous()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| JitError::Forward(format!("moving the warm-up input to {device:?}: {e}")))?;
    let mut chosen = None;
    for (i, (form, module)) in forms.iter().enumerate() {
        match warm_up(module, &inputs) {
            Ok(()) => {
                chosen = Some(i);
                break;
            }
            Err(e) => tracing::warn!(
                model = %name, ?device, form = %form, error = %e,
                "the warm-up forward pass failed; trying the next simpler form"
            ),
        }
    }
    let warmed = chosen.is_some();
    if !warmed {
        tracing::warn!(
            model = %name, ?device,
            "no form of the module runs the engine's warm-up inputs (is the engine's guess of the network input wrong?); serving the most optimised form, not warmed up"
        );
    }
    let (form, module) = forms.swap_remove(chosen.unwrap_or(0));
    drop(forms);
    tracing::info!(
        model = %name,
        ?device,
        torchscript = %form,
        warmed,
        shapes = ?warm.iter().map(Tensor::size).collect::<Vec<_>>(),
        load_s = loaded_s,
        freeze_s = compiled_s,
        warm_up_s = t1.elapsed().as_secs_f64(),
        "TorchScript module ready"
    );
    Ok(Prepared { module, form, warmed })
}

/// [`WARM_RUNS`] forward passes on each input.
fn warm_up(module: &Module, inputs: &[Tensor]) -> Result<()> {
    for x in inputs {
        for _ in 0..WARM_RUNS {
            drop(module.forward(x)?);
        }
    }
    Ok(())
}
