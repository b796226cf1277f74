//! The trainer service's config block, [`TrainerArgs`]: every flag `long` with an
//! `AIAA_TRAINER_` environment variable and a `trainer_…` clap id, so that an all-in-one
//! binary (`aiaa up`) can flatten it next to the other services' blocks without clashes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use aiaa_runtime::RuntimeError;
use aiaa_runtime::config::parse_duration;

/// The trainer service's settings.
#[derive(Clone, Debug, clap::Args)]
pub struct TrainerArgs {
    /// Address the trainer's gRPC server listens on (port 0 picks a free port).
    #[arg(
        id = "trainer_listen",
        long = "trainer-listen",
        env = "AIAA_TRAINER_LISTEN",
        default_value = "127.0.0.1:5104"
    )]
    pub listen: SocketAddr,
    /// The datastore (datalists and their images and labels), `http://host:port`.
    #[arg(
        id = "trainer_datastore_url",
        long = "trainer-datastore-url",
        env = "AIAA_TRAINER_DATASTORE_URL",
        default_value = "http://127.0.0.1:5102"
    )]
    pub datastore_url: String,
    /// The registry (models and files by reference; export pushes there), `http://host:port`.
    #[arg(
        id = "trainer_registry_url",
        long = "trainer-registry-url",
        env = "AIAA_TRAINER_REGISTRY_URL",
        default_value = "http://127.0.0.1:5101"
    )]
    pub registry_url: String,
    /// Folder of the jobs' work folders (sources, data, outputs); default: `aiaa-trainer` in
    /// the system's temporary folder. Keep it across restarts so that running jobs resume
    /// from their local state.
    #[arg(
        id = "trainer_work_dir",
        long = "trainer-work-dir",
        env = "AIAA_TRAINER_WORK_DIR"
    )]
    pub work_dir: Option<PathBuf>,
    /// Jobs that run at once (each is one child process); more wait QUEUED.
    #[arg(
        id = "trainer_max_jobs",
        long = "trainer-max-jobs",
        env = "AIAA_TRAINER_MAX_JOBS",
        default_value_t = 1
    )]
    pub max_jobs: usize,
    /// The program each job runs (`<command> train segmentation …`, `export …`,
    /// `evaluate …`); default: this very binary.
    #[arg(
        id = "trainer_command",
        long = "trainer-command",
        env = "AIAA_TRAINER_COMMAND"
    )]
    pub command: Option<PathBuf>,
    /// Where jobs run: auto (CUDA when present), cpu, cuda or cuda:N (`--device` of the child).
    #[arg(
        id = "trainer_device",
        long = "trainer-device",
        env = "AIAA_TRAINER_DEVICE",
        default_value = "auto"
    )]
    pub device: String,
    /// A training progress line every N steps (`--log_every` of the child; 0: about every 10 s).
    #[arg(
        id = "trainer_log_every",
        long = "trainer-log-every",
        env = "AIAA_TRAINER_LOG_EVERY",
        default_value_t = 10
    )]
    pub log_every: u64,
    /// How long a cancelled (or, at shutdown, interrupted) job may take to save its checkpoint
    /// and exit after SIGINT before it is killed, e.g. `60s`.
    #[arg(
        id = "trainer_cancel_grace",
        long = "trainer-cancel-grace",
        env = "AIAA_TRAINER_CANCEL_GRACE",
        default_value = "60s",
        value_parser = parse_duration
    )]
    pub cancel_grace: Duration,
    /// Folder whose files inline datalists may name by absolute path (unset: inline datalists
    /// may only name datastore items).
    #[arg(
        id = "trainer_file_root",
        long = "trainer-file-root",
        env = "AIAA_TRAINER_FILE_ROOT"
    )]
    pub file_root: Option<PathBuf>,
    /// Largest file downloaded for a job (a datastore item, a registry file, a store object).
    #[arg(
        id = "trainer_max_source_bytes",
        long = "trainer-max-source-bytes",
        env = "AIAA_TRAINER_MAX_SOURCE_BYTES",
        default_value_t = 8 << 30
    )]
    pub max_source_bytes: u64,
}

impl Default for TrainerArgs {
    fn default() -> Self {
        aiaa_runtime::config::clap_defaults()
    }
}

impl TrainerArgs {
    /// Checks the block; names the flag at fault.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if self.max_jobs == 0 {
            return Err(RuntimeError::config(
                "--trainer-max-jobs (AIAA_TRAINER_MAX_JOBS)",
                "must be at least 1",
            ));
        }
        if self.max_source_bytes == 0 {
            return Err(RuntimeError::config(
                "--trainer-max-source-bytes (AIAA_TRAINER_MAX_SOURCE_BYTES)",
                "must be more than 0",
            ));
        }
        let device_ok = matches!(self.device.as_str(), "auto" | "cpu" | "cuda")
            || self
                .device
                .strip_prefix("cuda:")
                .is_some_and(|n| n.parse::<usize>().is_ok());
        if !device_ok {
            return Err(RuntimeError::config(
                "--trainer-device (AIAA_TRAINER_DEVICE)",
                format!("{:?}: expected auto, cpu, cuda or cuda:N", self.device),
            ));
        }
        if let Some(c) = &self.command
            && !c.is_file()
        {
            return Err(RuntimeError::config(
                "--trainer-command (AIAA_TRAINER_COMMAND)",
                format!("{} is not a file", c.display()),
            ));
        }
        if let Some(r) = &self.file_root
            && !r.is_dir()
        {
            return Err(RuntimeError::config(
                "--trainer-file-root (AIAA_TRAINER_FILE_ROOT)",
                format!("{} is not a folder", r.display()),
            ));
        }
        Ok(())
    }

    /// The work folder.
    pub fn work_dir(&self) -> PathBuf {
        self.work_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("aiaa-trainer"))
    }

    /// The program jobs run: `--trainer-command`, else this very binary when it is the full
    /// `aiaa` command, else (the `aiaa-trainer` service binary, which cannot train itself)
    /// the `aiaa` next to it.
    pub fn command(&self) -> Result<PathBuf, RuntimeError> {
        const FLAG: &str = "--trainer-command (AIAA_TRAINER_COMMAND)";
        if let Some(c) = &self.command {
            return Ok(c.clone());
        }
        let exe = std::env::current_exe().map_err(|e| {
            RuntimeError::config(
                FLAG,
                format!("unset, and this program's own path is unknown ({e}); set it"),
            )
        })?;
        if exe.file_name().is_none_or(|n| n != "aiaa-trainer") {
            return Ok(exe);
        }
        let aiaa = exe.with_file_name("aiaa");
        if aiaa.is_file() {
            Ok(aiaa)
        } else {
            Err(RuntimeError::config(
                FLAG,
                format!(
                    "unset, and no `aiaa` next to {} to run the jobs; set it to the aiaa command",
                    exe.display()
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainerArgs,
    }

    #[test]
    fn defaults_and_flags() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.args.listen.to_string(), "127.0.0.1:5104");
        assert_eq!(cli.args.max_jobs, 1);
        assert_eq!(cli.args.cancel_grace, Duration::from_secs(60));
        assert!(cli.args.validate().is_ok());
        let cli = Cli::try_parse_from(["x", "--trainer-max-jobs", "0"]).unwrap();
        let err = cli.args.validate().unwrap_err().to_string();
        assert!(err.contains("--trainer-max-jobs"), "{err}");
        let cli = Cli::try_parse_from(["x", "--trainer-device", "tpu"]).unwrap();
        let err = cli.args.validate().unwrap_err().to_string();
        assert!(err.contains("--trainer-device") && err.contains("tpu"), "{err}");
        let cli =
            Cli::try_parse_from(["x", "--trainer-device", "cuda:1", "--trainer-cancel-grace", "5s"]).unwrap();
        assert!(cli.args.validate().is_ok());
        assert_eq!(cli.args.cancel_grace, Duration::from_secs(5));
        let cli = Cli::try_parse_from(["x", "--trainer-command", "/no/such/aiaa"]).unwrap();
        assert!(
            cli.args
                .validate()
                .unwrap_err()
                .to_string()
                .contains("--trainer-command")
        );
    }
}
