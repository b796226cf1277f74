//! The REST handlers, one module per group of endpoints. Handlers only convert, validate
//! and call: the logic lives in [`crate::polygon`], [`crate::image`] and the backends.

pub mod admin;
pub mod health;
pub mod infer;
pub mod models;
pub mod monailabel;
pub mod page;
pub mod polygons;
pub mod sessions;
