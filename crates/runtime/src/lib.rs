//! What every AIAA service shares, so that each service is only its own logic:
//!
//! - [`config`]: clap blocks (every flag `long` + `env`, `AIAA_` prefix), secrets redacted;
//! - [`telemetry`]: logs, OpenTelemetry export, W3C trace context, Prometheus metrics;
//! - [`server`]: one gRPC server bootstrap with health, reflection, catch-panic, auth,
//!   `/metrics` and graceful shutdown;
//! - [`client`]: channels whose calls carry the trace context and the API key;
//! - [`store`]: one object-store factory from a URL;
//! - [`names`]: validation of user-given names and ids that become object paths;
//! - [`registry`]: registry references and the checked download of a model file;
//! - [`memory`]: freed heap memory handed back to the system after large work;
//! - [`jobs`]: a table of long-running jobs with progress and watchers;
//! - [`chunks`]: splitting payloads into stream chunks;
//! - [`upload`]: streaming a payload into the store whole or not at all, hashed on the way;
//! - [`service_main`]: the serve loop and the `probe` / `check-config` / `env` sub-commands
//!   of the per-service binaries.

pub mod auth;
pub mod chunks;
pub mod client;
pub mod config;
pub mod error;
pub mod jobs;
pub mod linger;
pub mod memory;
pub mod names;
pub mod recent_logs;
pub mod registry;
pub mod server;
pub mod service_main;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod upload;

pub use error::RuntimeError;

/// Current time as RFC 3339 (UTC, seconds), the format every contract uses.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
