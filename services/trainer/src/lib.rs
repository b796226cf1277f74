//! The trainer service (`aiaa serve trainer`, part of `aiaa up`; docs/trainer-service.md):
//! training, export and evaluation jobs, each run as a child process of the `aiaa` command
//! (`aiaa train …`, `aiaa export …`, `aiaa evaluate …`), followed by its output and stopped
//! with SIGINT. The training itself is the `aiaa-train` crate, which the command runs.
//!
//! - [`args`]: its flags;
//! - [`sources`]: inputs from the datastore, the registry, its store or inline;
//! - [`runner`]: child processes, log tails, output uploads;
//! - [`jobs`]: queue, progress, cancel, persistence, recovery after a restart;
//! - [`service`]: gRPC; [`start`];
//! - [`error`]: the error type, [`TrainerError`].

#![warn(missing_docs)]
#![warn(clippy::too_many_lines)]

pub mod args;
pub mod error;
pub mod jobs;
pub mod runner;
pub mod service;
pub mod sources;

pub use args::TrainerArgs;
pub use error::{Result, TrainerError};
pub use service::{RunningTrainer, SERVICE_NAME, start};
