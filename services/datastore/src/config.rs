//! The datastore's config block, [`DatastoreArgs`]: every flag is `long` with an
//! `AIAA_DATASTORE_` environment variable, flattened into a binary next to the runtime's
//! `StoreArgs`, `GrpcArgs` and `AuthArgs`. The listen flag carries the component's name
//! (`--datastore-listen`) so that an all-in-one binary can flatten several services.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aiaa_runtime::RuntimeError;
use aiaa_runtime::config::parse_duration;

/// The datastore's settings.
#[derive(Clone, Debug, clap::Args)]
pub struct DatastoreArgs {
    /// Address the datastore's gRPC server listens on (port 0 picks a free port).
    #[arg(
        long = "datastore-listen",
        env = "AIAA_DATASTORE_LISTEN",
        default_value = "127.0.0.1:5102"
    )]
    pub listen: SocketAddr,
    /// Largest image, label or session image accepted, in bytes (checked while streaming).
    #[arg(long, env = "AIAA_DATASTORE_MAX_ITEM_BYTES", default_value_t = 8 << 30)]
    pub max_item_bytes: u64,
    /// Lifetime of a session whose request asks for 0 seconds, e.g. `3600s` or `1h`.
    #[arg(long, env = "AIAA_DATASTORE_SESSION_EXPIRY", default_value = "3600s", value_parser = parse_duration)]
    pub session_expiry: Duration,
    /// Longest lifetime a session may ask for, e.g. `24h`.
    #[arg(long, env = "AIAA_DATASTORE_SESSION_MAX_EXPIRY", default_value = "24h", value_parser = parse_duration)]
    pub session_max_expiry: Duration,
    /// How often expired sessions' data is removed, e.g. `60s`.
    #[arg(long, env = "AIAA_DATASTORE_SESSION_REAP_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub session_reap_interval: Duration,
    /// Conversion jobs that may run at once; more wait QUEUED.
    #[arg(long, env = "AIAA_DATASTORE_MAX_CONVERT_JOBS", default_value_t = 2)]
    pub max_convert_jobs: usize,
    /// Folder for conversion jobs' temporary files (the system's temporary folder if unset).
    #[arg(long, env = "AIAA_DATASTORE_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Uploads are refused (507 through the gateway) while the local store's disk has less
    /// than this many bytes free, before it is full; an S3 store is not checked.
    #[arg(long, env = "AIAA_DATASTORE_MIN_FREE_BYTES", default_value_t = 1 << 30)]
    pub min_free_bytes: u64,
    /// Live sessions one client may hold (429 through the gateway past it); a client is the
    /// API key or, for anonymous clients, the address the gateway saw.
    #[arg(long, env = "AIAA_DATASTORE_MAX_SESSIONS_PER_CLIENT", default_value_t = 64)]
    pub max_sessions_per_client: usize,
    /// Bytes of session images one client may hold in live sessions.
    #[arg(long, env = "AIAA_DATASTORE_MAX_SESSION_BYTES_PER_CLIENT", default_value_t = 16 << 30)]
    pub max_session_bytes_per_client: u64,
    /// Most memory one conversion may decode an image (or DICOM series) into, in bytes,
    /// checked against its header before anything is decoded; at most
    /// --max-convert-jobs conversions run at once.
    #[arg(long, env = "AIAA_DATASTORE_CONVERT_MAX_IMAGE_BYTES", default_value_t = 4 << 30)]
    pub convert_max_image_bytes: u64,
}

impl Default for DatastoreArgs {
    fn default() -> Self {
        aiaa_runtime::config::clap_defaults()
    }
}

impl DatastoreArgs {
    /// Checks the block; names the flag at fault.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.max_item_bytes == 0 {
            return Err(RuntimeError::config(
                "--max-item-bytes (AIAA_DATASTORE_MAX_ITEM_BYTES)",
                "must be more than 0",
            ));
        }
        if self.session_expiry.is_zero() {
            return Err(RuntimeError::config(
                "--session-expiry (AIAA_DATASTORE_SESSION_EXPIRY)",
                "must be more than 0",
            ));
        }
        if self.session_expiry > self.session_max_expiry {
            return Err(RuntimeError::config(
                "--session-expiry (AIAA_DATASTORE_SESSION_EXPIRY)",
                format!(
                    "{} is more than --session-max-expiry {}",
                    humantime::format_duration(self.session_expiry),
                    humantime::format_duration(self.session_max_expiry)
                ),
            ));
        }
        if self.session_reap_interval.is_zero() {
            return Err(RuntimeError::config(
                "--session-reap-interval (AIAA_DATASTORE_SESSION_REAP_INTERVAL)",
                "must be more than 0",
            ));
        }
        if self.max_sessions_per_client == 0 {
            return Err(RuntimeError::config(
                "--max-sessions-per-client (AIAA_DATASTORE_MAX_SESSIONS_PER_CLIENT)",
                "must be more than 0",
            ));
        }
        if self.max_session_bytes_per_client == 0 {
            return Err(RuntimeError::config(
                "--max-session-bytes-per-client (AIAA_DATASTORE_MAX_SESSION_BYTES_PER_CLIENT)",
                "must be more than 0",
            ));
        }
        if self.convert_max_image_bytes == 0 {
            return Err(RuntimeError::config(
                "--convert-max-image-bytes (AIAA_DATASTORE_CONVERT_MAX_IMAGE_BYTES)",
                "must be more than 0",
            ));
        }
        if self.max_convert_jobs == 0 {
            return Err(RuntimeError::config(
                "--max-convert-jobs (AIAA_DATASTORE_MAX_CONVERT_JOBS)",
                "must be at least 1",
            ));
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
        args: DatastoreArgs,
    }

    #[test]
    fn defaults_and_flags() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.args.listen.to_string(), "127.0.0.1:5102");
        assert_eq!(cli.args.max_item_bytes, 8 << 30);
        assert_eq!(cli.args.session_expiry, Duration::from_secs(3600));
        assert!(cli.args.validate().is_ok());
        let cli = Cli::try_parse_from(["x", "--session-expiry", "2h", "--session-max-expiry", "1h"]).unwrap();
        let err = cli.args.validate().unwrap_err().to_string();
        assert!(err.contains("--session-expiry"), "{err}");
        let cli = Cli::try_parse_from(["x", "--max-convert-jobs", "0"]).unwrap();
        assert!(
            cli.args
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--max-convert-jobs")
        );
    }
}
