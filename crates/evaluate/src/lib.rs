//! `aiaa infer` and `aiaa evaluate`: the rebuild of Clara Train's `tlt-infer` and
//! `tlt-evaluate` (seed 6.4.2.5, 6.4.2.6, chapters 8 and 9). A model runs over the
//! `validation` section of a datalist; its outputs are written as the seed's
//! `writers.WriteNiftyResults` names them, and `evaluate` writes the per-file per-class
//! Dice, normalized surface Dice and HD95 reports of `aiaa-metrics`.
//!
//! The model runs through the inference service's own engines (`aiaa_engines`)
//! in-process, so `aiaa infer` predicts exactly what the annotation server returns for the
//! same image (and, for annotation models, the same clicks).
//!
//! * [`datalist`]: the section of a datalist it runs over (the format read by `aiaa_datalist`);
//! * [`model`]: `--model_save_path` + `--config` → an engine (seed configs adapted);
//! * [`clicks`]: simulated extreme-point clicks for DEXTR 3D models, seeded perturbation;
//! * [`interactive`]: the interactive click protocol (`--interactive N`): corrective clicks,
//!   Dice and NSD after each, their areas under the curve, clicks to 0.90 / 0.95;
//! * [`outputs`]: the config's writers, keys and file naming;
//! * [`run`]: the parallel pipeline (readers → bounded queue → model → writers/metrics),
//!   failures, throughput and the share of time the model waits for data;
//! * [`reports`]: the evaluation reports with the failed cases.
//!
//! The entry points are [`run_infer`] and [`run_evaluate`], taking [`Options`] and an
//! [`Observer`] for progress, and returning a [`Summary`]; a service can run them as a job.
//! The behaviour on edge cases (empty prediction or reference, classes on one side only,
//! grids that differ, unreadable files) is documented in `docs/evaluate.md`.

#![warn(clippy::too_many_lines)]

pub mod clicks;
pub mod datalist;
pub mod error;
pub mod interactive;
pub mod model;
pub mod outputs;
pub mod reports;
pub mod run;

pub use error::{EvaluateError, Result};
pub use interactive::{InteractiveSummary, Protocol, Rule, run_case, run_case_from, run_interactive};
pub use model::{Model, ModelKind, ModelSource};
pub use run::{
    CaseResult, EvaluateOptions, Event, Failure, Observer, Options, Quiet, Summary, Throughput, run_cases,
    run_evaluate, run_infer, write_summary,
};
