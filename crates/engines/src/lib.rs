//! The engines that run annotation and segmentation models, with plain Rust types at the
//! edge (no gRPC, no generated protos): the inference service serves them over gRPC, and
//! `aiaa infer` / `aiaa evaluate` and the trainer's export use them directly, so every tool
//! runs a model exactly as the server does.
//!
//! - [`pool`]: the seed's `engine_pool.json` and model configs, typed; paths of configs
//!   that came through an API confined to the model roots;
//! - [`adapt`]: offline transform lists (validation sections, the seed's inference and
//!   evaluation configs) as an engine's `pre_transforms`;
//! - [`kind`]: [`EngineKind`], the one mapping of engine classes, model types and endpoints;
//! - [`device`]: TorchScript modules on libtorch, one owner thread per device, served
//!   frozen and optimised for inference through `aiaa-jit` ([`Form`] says which form
//!   serves, [`Policy`] whether to freeze);
//! - [`tensor`]: volumes to network tensors and back;
//! - [`engines`]: the [`Engine`] trait, `Dextr3dCroppedEngine`, `SegmentationEngine`;
//! - [`error`]: the error type, [`EngineError`].

pub mod adapt;
pub mod device;
pub mod engines;
pub mod error;
pub mod kind;
pub mod pool;
pub mod tensor;

pub use aiaa_jit::{Form, Policy};
pub use device::{Devices, parse_devices};
pub use engines::{Context, Engine, EngineSpec, ModelInfo, Outcome, Timings, build};
pub use error::{EngineError, Result};
pub use kind::EngineKind;
pub use pool::{ModelConfig, PoolEntry, read_pool};
