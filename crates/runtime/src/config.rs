//! Config blocks shared by every service and the CLI. Every flag is `long` and has an `AIAA_`
//! environment variable; blocks are flattened into each binary's own arguments, validated at
//! start, and logged with secrets redacted (see [`Secret`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::RuntimeError;

/// A config block with every value at its default, taken from the block's own clap
/// `default_value`s (the environment is not read): the one place defaults are written, so an
/// `impl Default` cannot drift from the command line.
///
/// # Panics
/// When the block has an argument without a default that clap requires: a programming
/// error, caught by any test that takes the block's `Default`.
pub fn clap_defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("defaults")).mut_args(|a| a.env(None));
    let matches = command
        .try_get_matches_from(["defaults"])
        .unwrap_or_else(|e| panic!("a config block without a default for every value: {e}"));
    T::from_arg_matches(&matches).unwrap_or_else(|e| panic!("a config block's defaults do not parse: {e}"))
}

/// A secret (API key, password) that never shows in logs: `Debug` and `Display` print
/// `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; use only where it must be compared or sent.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

/// How logs are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logging, tracing and metrics.
#[derive(Clone, Debug, clap::Args)]
pub struct TelemetryArgs {
    /// Log format.
    #[arg(long, env = "AIAA_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter in `EnvFilter` syntax, e.g. `info,aiaa_registry=debug`.
    #[arg(long, env = "AIAA_LOG", default_value = "info")]
    pub log_filter: String,
    /// OTLP/gRPC endpoint to export traces to, e.g. `http://127.0.0.1:4317`; none disables export.
    #[arg(long, env = "AIAA_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl TelemetryArgs {
    /// Checks the block; names the flag at fault.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        tracing_subscriber::EnvFilter::try_new(&self.log_filter).map_err(|e| RuntimeError::Config {
            flag: "--log-filter (AIAA_LOG)".into(),
            reason: e.to_string(),
        })?;
        if let Some(endpoint) = &self.otlp_endpoint {
            let parsed = url::Url::parse(endpoint).map_err(|e| RuntimeError::Config {
                flag: "--otlp-endpoint (AIAA_OTLP_ENDPOINT)".into(),
                reason: format!("{endpoint:?} is not a URL: {e}"),
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(RuntimeError::Config {
                    flag: "--otlp-endpoint (AIAA_OTLP_ENDPOINT)".into(),
                    reason: format!("{endpoint:?} must be an http:// or https:// URL"),
                });
            }
        }
        Ok(())
    }
}

/// Where a service keeps its data.
#[derive(Clone, Debug, clap::Args)]
pub struct StoreArgs {
    /// Object-store URL: `file:///path` (or a plain path), `memory://name`, or
    /// `s3://bucket/prefix` (endpoint, region and credentials from the AWS_* environment).
    #[arg(long, env = "AIAA_STORE_URL", default_value = "./aiaa-data")]
    pub store_url: String,
}

/// API-key authentication (see [`crate::auth`]).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct AuthArgs {
    /// When set, every gRPC call but health, reflection and /metrics needs
    /// `authorization: Bearer <key>` (see docs/security.md).
    #[arg(long, env = "AIAA_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
}

/// The largest gRPC message, for servers and clients alike (the gateway is a client only).
#[derive(Clone, Debug, clap::Args)]
pub struct MessageArgs {
    /// Largest gRPC message sent or accepted, in bytes (payloads travel as 1 MiB chunks).
    #[arg(long, env = "AIAA_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
}

impl Default for MessageArgs {
    fn default() -> Self {
        clap_defaults()
    }
}

impl MessageArgs {
    /// Checks the block; names the flag at fault.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let min = aiaa_proto::CHUNK_SIZE + 64 * 1024;
        if self.max_message_bytes < min {
            return Err(RuntimeError::config(
                "--max-message-bytes (AIAA_MAX_MESSAGE_BYTES)",
                format!(
                    "{} is below {min}, one chunk and its envelope",
                    self.max_message_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// Limits and timings of every gRPC server.
#[derive(Clone, Debug, clap::Args)]
pub struct GrpcArgs {
    /// The largest message.
    #[command(flatten)]
    pub message: MessageArgs,
    /// How long shutdown waits for in-flight calls before it closes them, e.g. `30s`.
    #[arg(long, env = "AIAA_DRAIN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Most connections each gRPC server keeps open; more are closed at once. Lowered at
    /// start to an eighth of the process's file-descriptor limit when that is smaller.
    #[arg(
        id = "grpc_max_connections",
        long = "grpc-max-connections",
        env = "AIAA_GRPC_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub max_connections: usize,
}

impl Default for GrpcArgs {
    fn default() -> Self {
        clap_defaults()
    }
}

impl GrpcArgs {
    /// Checks the block; names the flag at fault.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        self.message.validate()?;
        if self.max_connections == 0 {
            return Err(RuntimeError::Config {
                flag: "--grpc-max-connections (AIAA_GRPC_MAX_CONNECTIONS)".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// Parses `30s`, `5m`, `1h 30m` and the like.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let auth = AuthArgs {
            api_key: Some(Secret::new("hunter2")),
        };
        let shown = format!("{auth:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn bad_values_name_the_flag() {
        let t = TelemetryArgs {
            log_format: LogFormat::Text,
            log_filter: "info".into(),
            otlp_endpoint: Some("ftp://x".into()),
        };
        assert!(t.validate().unwrap_err().to_string().contains("--otlp-endpoint"));
        let g = GrpcArgs {
            message: MessageArgs {
                max_message_bytes: 10,
            },
            ..Default::default()
        };
        assert!(
            g.validate()
                .unwrap_err()
                .to_string()
                .contains("--max-message-bytes")
        );
    }
}
