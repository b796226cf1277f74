//! The training core: `aiaa train segmentation` (the seed's `tlt-train`, chapter 6),
//! TensorBoard event files, and export (the seed's `tlt-export`, chapter 7). Plain Rust
//! types at its edge, no gRPC: the `aiaa` command uses it directly, and the trainer service
//! (`services/trainer`) runs that command in child processes.
//!
//! A job is "run this command with these files": [`trainer::TrainJob`] holds exactly what the
//! command line of `aiaa train` gives (config, datalist, output folder, checkpoint, file
//! root, resume, epochs, dry run), [`trainer::Trainer::prepare`] checks all of it before any
//! step, and [`trainer::Trainer::run`] reports [`progress::Event`]s that the command prints
//! one per line (text, or JSON with `--progress json`), so a trainer service can run
//! `aiaa train` in a child process and follow it by its output, and stop it with SIGINT
//! (the run stops at a step boundary and writes its last checkpoint; `--resume` continues
//! it).
//!
//! - [`config`]: the train config (seed keys and ours), read strictly;
//! - [`datalist`]: the datalist (seed 5.2, 5.3), paths resolved;
//! - [`data`]: every datalist file decoded and checked up front, optionally cached; samples
//!   to `[C, X, Y, Z]` tensors;
//! - [`loader`]: `num_workers` threads, a bounded ordered prefetch queue, a seeded schedule;
//! - [`trainer`]: the loop, validation, checkpoints, resume, fine-tuning;
//! - [`tensorboard`]: `events.out.tfevents.*` writer (records with masked CRC32C);
//! - [`progress`]: progress events and the run summary;
//! - [`export`]: checkpoint to TorchScript + the inference service's model config;
//! - [`interaction`]: click simulation for interactive (deepgrow) models, MONAI's
//!   `Interaction`, run before every training step when the config has `interaction`;
//! - [`error`]: the error type, [`TrainError`].
//!
//! Tensor layout everywhere: `[N, C, X, Y, Z]` = `N, C, i, j, k`.

#![warn(missing_docs)]
#![warn(clippy::too_many_lines)]

pub mod config;
pub mod data;
pub mod datalist;
pub mod error;
pub mod export;
pub mod interaction;
pub mod loader;
pub mod progress;
pub mod tensorboard;
pub mod trainer;

pub use config::TrainConfig;
pub use error::{Result, TrainError};
pub use progress::{Event, Summary};
pub use trainer::{DeviceChoice, TrainJob, Trainer};
