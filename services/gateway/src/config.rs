//! The gateway's config block, [`GatewayArgs`]: every flag is `long` with an `AIAA_`
//! environment variable, so that `aiaa up` can flatten it next to the other services' blocks.
//! The API key comes from the runtime's `AuthArgs`, passed to [`crate::start`].

use std::net::SocketAddr;
use std::time::Duration;

use aiaa_runtime::RuntimeError;
use aiaa_runtime::config::parse_duration;

use crate::auth::Networks;

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
    /// The trainer's gRPC address; without it, MONAI Label's `/train/` answers 503.
    #[arg(long, env = "AIAA_TRAINER_URL")]
    pub trainer_url: Option<String>,
    /// The registry's gRPC address (where `/train/` publishes new model versions); without
    /// it, `/train/` answers 503.
    #[arg(long, env = "AIAA_REGISTRY_URL")]
    pub registry_url: Option<String>,
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
    /// Longest time a client may take to send a request's headers, from its first byte (or
    /// from connecting, for a connection's first request); slower connections are closed.
    #[arg(id = "gateway_header_timeout", long = "gateway-header-timeout", env = "AIAA_GATEWAY_HEADER_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub header_timeout: Duration,
    /// How long a kept-alive connection may stay silent between requests before it is closed
    /// (also: a client that stops reading an answer for this long).
    #[arg(id = "gateway_idle_timeout", long = "gateway-idle-timeout", env = "AIAA_GATEWAY_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Slowest request body accepted, in bytes per second: every `--gateway-body-rate-window`
    /// must bring at least this rate times the window, else 408 and the connection closes
    /// (0 turns the check off).
    #[arg(id = "gateway_body_min_rate", long = "gateway-body-min-rate", env = "AIAA_GATEWAY_BODY_MIN_RATE", default_value_t = 8 * 1024)]
    pub body_min_rate: u64,
    /// The window over which `--gateway-body-min-rate` is measured, e.g. `10s`.
    #[arg(id = "gateway_body_rate_window", long = "gateway-body-rate-window", env = "AIAA_GATEWAY_BODY_RATE_WINDOW", default_value = "10s", value_parser = parse_duration)]
    pub body_rate_window: Duration,
    /// Most client connections open at once; more are answered 503 and closed. Lowered at
    /// start to an eighth of the process's file-descriptor limit when that is smaller.
    #[arg(
        id = "gateway_max_connections",
        long = "gateway-max-connections",
        env = "AIAA_GATEWAY_MAX_CONNECTIONS",
        default_value_t = 1024
    )]
    pub max_connections: usize,
    /// Largest `params` form field of `/v1/mask2polygon` and `/v1/fixpolygon` (which carry
    /// polygons), in bytes; the model endpoints take at most 1 MiB (or this, if smaller).
    #[arg(id = "gateway_max_params_bytes", long = "gateway-max-params-bytes", env = "AIAA_GATEWAY_MAX_PARAMS_BYTES", default_value_t = 32 << 20)]
    pub max_params_bytes: usize,
    /// Most polygon vertices one request may send (`/v1/fixpolygon`) or get back
    /// (`/v1/mask2polygon`).
    #[arg(
        id = "gateway_max_polygon_vertices",
        long = "gateway-max-polygon-vertices",
        env = "AIAA_GATEWAY_MAX_POLYGON_VERTICES",
        default_value_t = 3_000_000
    )]
    pub max_polygon_vertices: usize,
    /// Largest image the gateway decodes itself (the masks and images of `/v1/mask2polygon`
    /// and `/v1/fixpolygon`), in decoded bytes; larger ones answer 413. Session and model
    /// endpoint images are decoded by the inference service, under its own budget.
    #[arg(
        id = "gateway_max_image_bytes",
        long = "gateway-max-image-bytes",
        env = "AIAA_GATEWAY_MAX_IMAGE_BYTES",
        default_value_t = 1 << 30
    )]
    pub max_image_bytes: u64,
    /// Most bytes of uploads spooled at once by all the requests in progress (at least
    /// `--gateway-max-body-bytes`); past it an upload answers 503 with `Retry-After`, so a
    /// crowd of big uploads cannot fill the disk.
    #[arg(
        id = "gateway_max_spool_bytes",
        long = "gateway-max-spool-bytes",
        env = "AIAA_GATEWAY_MAX_SPOOL_BYTES",
        default_value_t = 4 << 30
    )]
    pub max_spool_bytes: u64,
    /// Folder where uploaded files are spooled while a request is handled (deleted when it
    /// ends); put it on disk, not on a RAM-backed tmpfs. Default: the system's temp folder.
    #[arg(
        id = "gateway_spool_dir",
        long = "gateway-spool-dir",
        env = "AIAA_GATEWAY_SPOOL_DIR"
    )]
    pub spool_dir: Option<std::path::PathBuf>,
    /// Networks whose clients may annotate without credentials when an API key is set
    /// (`CIDR[,CIDR...]`, e.g. `10.20.0.0/16,127.0.0.1/32`; default: none). NVIDIA's AIAA
    /// clients send no key: requests without an `Authorization` header from these peer
    /// addresses are served under the gateway's own key (sessions, models, inference; never
    /// the admin API). A wrong key is refused from them too. The address is the TCP peer's:
    /// behind a proxy, the proxy's.
    #[arg(
        id = "gateway_anonymous_from",
        long = "gateway-anonymous-from",
        env = "AIAA_GATEWAY_ANONYMOUS_FROM",
        value_name = "CIDR[,CIDR...]",
        default_value = "",
        hide_default_value = true,
        value_parser = crate::auth::parse_networks
    )]
    pub anonymous_from: Networks,
}

impl Default for GatewayArgs {
    fn default() -> Self {
        aiaa_runtime::config::clap_defaults()
    }
}

impl GatewayArgs {
    /// Checks the block; names the flag at fault.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.max_body_bytes < 1024 {
            return Err(RuntimeError::config(
                "--gateway-max-body-bytes (AIAA_GATEWAY_MAX_BODY_BYTES)",
                format!("{} is below 1024 bytes", self.max_body_bytes),
            ));
        }
        if self.session_max_expiry.is_zero() {
            return Err(RuntimeError::config(
                "--gateway-session-max-expiry (AIAA_GATEWAY_SESSION_MAX_EXPIRY)",
                "must be more than 0",
            ));
        }
        for (flag, value) in [
            (
                "--gateway-backend-timeout (AIAA_GATEWAY_BACKEND_TIMEOUT)",
                self.backend_timeout,
            ),
            (
                "--gateway-header-timeout (AIAA_GATEWAY_HEADER_TIMEOUT)",
                self.header_timeout,
            ),
            (
                "--gateway-idle-timeout (AIAA_GATEWAY_IDLE_TIMEOUT)",
                self.idle_timeout,
            ),
            (
                "--gateway-body-rate-window (AIAA_GATEWAY_BODY_RATE_WINDOW)",
                self.body_rate_window,
            ),
        ] {
            if value.is_zero() {
                return Err(RuntimeError::config(flag, "must be more than 0"));
            }
        }
        if self.max_connections == 0 {
            return Err(RuntimeError::config(
                "--gateway-max-connections (AIAA_GATEWAY_MAX_CONNECTIONS)",
                "must be at least 1",
            ));
        }
        if self.max_params_bytes < 1024 {
            return Err(RuntimeError::config(
                "--gateway-max-params-bytes (AIAA_GATEWAY_MAX_PARAMS_BYTES)",
                format!("{} is below 1024 bytes", self.max_params_bytes),
            ));
        }
        if self.max_polygon_vertices < 1000 {
            return Err(RuntimeError::config(
                "--gateway-max-polygon-vertices (AIAA_GATEWAY_MAX_POLYGON_VERTICES)",
                format!("{} is below 1000", self.max_polygon_vertices),
            ));
        }
        if self.max_image_bytes < 1 << 20 {
            return Err(RuntimeError::config(
                "--gateway-max-image-bytes (AIAA_GATEWAY_MAX_IMAGE_BYTES)",
                format!("{} is below 1 MiB", self.max_image_bytes),
            ));
        }
        if self.max_spool_bytes < self.max_body_bytes as u64 {
            return Err(RuntimeError::config(
                "--gateway-max-spool-bytes (AIAA_GATEWAY_MAX_SPOOL_BYTES)",
                format!(
                    "{} is below --gateway-max-body-bytes ({}): one upload must fit",
                    self.max_spool_bytes, self.max_body_bytes
                ),
            ));
        }
        if let Some(dir) = &self.spool_dir
            && !dir.is_dir()
        {
            return Err(RuntimeError::config(
                "--gateway-spool-dir (AIAA_GATEWAY_SPOOL_DIR)",
                format!("{} is not a folder", dir.display()),
            ));
        }
        for (flag, url) in [
            ("--datastore-url (AIAA_DATASTORE_URL)", Some(&self.datastore_url)),
            (
                "--inference-url (AIAA_INFERENCE_URL)",
                self.inference_url.as_ref(),
            ),
            ("--trainer-url (AIAA_TRAINER_URL)", self.trainer_url.as_ref()),
            ("--registry-url (AIAA_REGISTRY_URL)", self.registry_url.as_ref()),
        ] {
            let Some(url) = url else { continue };
            let full = if url.contains("://") {
                url.clone()
            } else {
                format!("http://{url}")
            };
            let parsed =
                url::Url::parse(&full).map_err(|e| RuntimeError::config(flag, format!("{url:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                return Err(RuntimeError::config(
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
        // Flattened beside the blocks `aiaa up` flattens it with: ids must not collide.
        #[command(flatten)]
        grpc: aiaa_runtime::config::GrpcArgs,
        #[command(flatten)]
        auth: aiaa_runtime::config::AuthArgs,
        #[command(flatten)]
        store: aiaa_runtime::config::StoreArgs,
        #[command(flatten)]
        telemetry: aiaa_runtime::config::TelemetryArgs,
    }

    #[test]
    fn defaults_and_flags() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.args.max_connections, 1024);
        assert_eq!(cli.grpc.max_connections, 1024);
        let cli = Cli::try_parse_from([
            "x",
            "--gateway-max-connections",
            "7",
            "--grpc-max-connections",
            "9",
        ])
        .unwrap();
        assert_eq!((cli.args.max_connections, cli.grpc.max_connections), (7, 9));
        let cli = Cli::try_parse_from(["x", "--gateway-header-timeout", "0s"]).unwrap();
        assert!(
            cli.args
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--gateway-header-timeout")
        );
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
        assert!(cli.args.anonymous_from.0.is_empty());
        let cli = Cli::try_parse_from([
            "x",
            "--gateway-anonymous-from",
            "10.20.0.0/16, 127.0.0.1,fd00::/8",
        ])
        .unwrap();
        let nets: Vec<String> = cli
            .args
            .anonymous_from
            .0
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.20.0.0/16", "127.0.0.1/32", "fd00::/8"]);
        let cli = Cli::try_parse_from(["x", "--gateway-anonymous-from", ""]).unwrap();
        assert!(cli.args.anonymous_from.0.is_empty());
        let err = Cli::try_parse_from(["x", "--gateway-anonymous-from", "127.0.0.1/32,10.0.0/8"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--gateway-anonymous-from") && err.contains("10.0.0/8"),
            "{err}"
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
