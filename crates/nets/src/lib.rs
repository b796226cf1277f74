//! Networks, losses, optimizers, learning-rate policies, metrics, checkpoints, sliding-window
//! inference and TorchScript export on tch (libtorch): the torch side of the trainer and the
//! inference service.
//!
//! The train config of seed chapter 6.1 maps onto this crate as follows:
//! - `net_config` → [`config::NetConfig`] → [`networks::Network`];
//! - `train.loss` → [`losses::Loss`];
//! - `train.optimizer` → [`optim::OptimizerConfig`] → [`optim::Optimizer`];
//! - `train.lr_policy` → [`lr_policy::LrPolicy`];
//! - `validate.metrics` (`MetricAverageFromArrayDice`) → [`metric::MetricAverageFromArrayDice`].
//! - `multi_gpu` → [`parallel::DataParallel`].
//!
//! Tensor layout everywhere: `[N, C, X, Y, Z]` = `N, C, i, j, k` (MONAI's), labels as class
//! indices `[N, 1, X, Y, Z]` or `[N, X, Y, Z]`.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod error;
pub mod export;
mod fields;
pub mod losses;
pub mod lr_policy;
pub mod metric;
pub mod networks;
pub mod optim;
pub mod parallel;
pub mod sliding_window;

pub use config::{FinalActivation, NetConfig, NetName};
pub use error::{NetsError, Result};
pub use networks::{Network, apply_final_activation};
