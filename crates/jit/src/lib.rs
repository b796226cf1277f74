//! TorchScript modules made ready to serve: the fastest forward pass libtorch offers, for
//! every model the platform runs.
//!
//! A module is loaded in evaluation mode, frozen (`torch::jit::freeze`: parameters and
//! attributes become constants of the graph, batch norms fold into the convolutions), then
//! optimised for inference (`torch::jit::optimize_for_inference`: on the CPU, convolutions
//! move to oneDNN with pre-packed weights), warmed up at every input shape its engine will
//! use, and run under `c10::InferenceMode`. tch 0.26 exposes none of these, so a small C++
//! shim (`src/shim.cpp`, built by `build.rs` against the very libtorch torch-sys links) does
//! them on the same handle type tch uses (`torch::jit::script::Module*`, torch-sys'
//! [`torch_sys::CModule_`]).
//!
//! Freezing is an optimisation, never a reason not to serve: when freezing, optimising or
//! the warm-up of the optimised module fails, the next simpler form serves ([`Form`]:
//! frozen and optimised, frozen only, the module as loaded) and the log says why.
//!
//! Why a crate of its own, below the engines: every tool that runs a model must run it the
//! same way (the inference service and `aiaa infer` / `aiaa evaluate` through
//! `aiaa-engines`, `aiaa export`'s self-check through `aiaa-train`), and the C++ build and
//! the crate's `unsafe` stay in one small place. It depends on tch and torch-sys only.
//!
//! - [`module`]: [`Module`], the shim's handle: load, freeze, optimise, forward, graph;
//! - [`prepare`]: [`prepare()`], the serving path (the forms tried in order, warm-up,
//!   fallback), [`Form`], [`Policy`];
//! - [`host`]: [`f32_tensor`], [`f32_tensor_with`], network inputs made on any thread without starting an OpenMP
//!   team there (which would slow every device thread's forward pass);
//! - [`openmp`]: [`restart_with_serving_spin`], a serving process's OpenMP workers spin about
//!   a millisecond after a parallel region, not libgomp's 9 ms (which took a core from the
//!   request's work after its forward pass);
//! - [`error`]: the crate's error type, [`JitError`].

pub mod error;
pub mod host;
pub mod module;
pub mod openmp;
pub mod prepare;

pub use error::{JitError, Result};
pub use host::{f32_tensor, f32_tensor_with};
pub use module::Module;
pub use openmp::restart_with_serving_spin;
pub use prepare::{Form, Policy, Prepared, WARM_RUNS, prepare};
