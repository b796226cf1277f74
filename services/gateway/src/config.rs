//! The gateway's config block, [`GatewayArgs`]: every flag is `long` with an `AIAA_`
//! environment variable, so that `aiaa up` can flatten it next to the other services' blocks.
//! The admin API key comes from the runtime's `AuthArgs`, passed to [`crate::start`].

use std::net::SocketAddr;
use std::time::Duration;

use aiaa_runtime::RuntimeError;
use aiaa_runtime::config::parse_duration;

/// The gateway's settings.
#[derive(Clone, Debug, clap::Args)]
pub struct GatewayArgs {
    /// Address the REST gateway listens on (port 0 picks a free port). The AIAA clients
    /// default to port 5000.
    #[arg(
        id = "gateway_listen",
        long = "gateway-listen",
        env = "AIAA_GATEWAY_LISTEN",
        default_value = "127.0.0.1:5000"
    )]
    pub listen: SocketAddr,
    /// The datastore's gRPC address (sessions), `http://host:port` or `host:port`.
    #[arg(long, env = "AIAA_DATASTORE_URL", default_value = "http://127.0.0.1:5102")]
    pub datastore_url: String,
    /// The inference service's gRPC address; without it, model endpoints answer 503.
    #[arg(long, env = "AIAA_INFERENCE_URL")]
    pub inference_url: Option<String>,
    /// Largest request body accepted, in bytes; larger ones answer 413.
    #[arg(long = "gateway-max-body-bytes", env = "AIAA_GATEWAY_MAX_BODY_BYTES", default_value_t = 1 << 30)]
    pub max_body_bytes: usize,
    /// Longest session lifetime passed on to the datastore: longer `expiry=` requests are
    /// shortened to it (the spec's `min(requested, server max)`). Keep it at most the
    /// datastore's `--session-max-expiry`.
    #[arg(
        id = "gateway_session_max_expiry",
        long = "gateway-session-max-expiry",
        env = "AIAA_GATEWAY_SESSION_MAX_EXPIRY",
        default_value = "24h",
        value_parser = parse_duration
    )]
    pub session_max_expiry: Duration,
    /// How long a backend call may take before the gateway answers 503, e.g. `120s`.
    #[arg(long = "gateway-backend-timeout", env = "AIAA_GATEWAY_BACKEND_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    pub backend_timeout: Duration,
}

impl Default for GatewayArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 5000)),
            datastore_url: "http://127.0.0.1:5102".into(),
            inference_url: None,
            max_body_bytes: 1 << 30,
            session_max_expiry: Duration::from_secs(24 * 3600),
            backend_timeout: Duration::from_secs(300),
        }
    }
}

fn config(flag: &str, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Config {
        flag: flag.to_string(),
        reason: reason.into(),
    }
}

impl GatewayArgs {
    /// Checks the block; names the flag at fault.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.max_body_bytes < 1024 {
            return Err(config(
                "--gateway-max-body-bytes (AIAA_GATEWAY_MAX_BODY_BYTES)",
                format!("{} is below 1024 bytes", self.max_body_bytes),
            ));
        }
        if self.session_max_expiry.is_zero() {
            return Err(config(
                "--gateway-session-max-expiry (AIAA_GATEWAY_SESSION_MAX_EXPIRY)",
                "must be more than 0",
            ));
        }
        if self.backend_timeout.is_zero() {
            return Err(config(
                "--gateway-backend-timeout (AIAA_GATEWAY_BACKEND_TIMEOUT)",
                "must be more than 0",
            ));
        }
        for (flag, url) in [
            ("--datastore-url (AIAA_DATASTORE_URL)", Some(&self.datastore_url)),
            (
                "--inference-url (AIAA_INFERENCE_URL)",
                self.inference_url.as_ref(),
            ),
        ] {
            let Some(url) = url else { continue };
            let full = if url.contains("://") {
                url.clone()
            } else {
                format!("http://{url}")
            };
            let parsed = url::Url::parse(&full).map_err(|e| config(flag, format!("{url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(config(
                    flag,
                    format!("{url:?} must be http://host:port or host:port"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: GatewayArgs,
    }

    #[test]
    fn defaults_and_flags() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.args.listen.port(), 5000);
        assert!(cli.args.inference_url.is_none());
        assert!(cli.args.validate().is_ok());
        let cli = Cli::try_parse_from(["x", "--gateway-max-body-bytes", "10"]).unwrap();
        assert!(
            cli.args
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--gateway-max-body-bytes")
        );
        let cli = Cli::try_parse_from(["x", "--inference-url", "ftp://x:1"]).unwrap();
        assert!(
            cli.args
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--inference-url")
        );
    }
}
