//! Docker for the suites that run the platform as containers (the compose deployment, the
//! Helm chart's rendered containers): installs the engine and tools when missing (Debian
//! packages), starts `dockerd` when none answers, builds the images the one way
//! (`scripts/docker/build-images.sh` on the binaries this test run built), and drives
//! `docker` / `docker-compose` with checked exits.
//!
//! `dockerd` started here is left running for later tests and runs (like a system service);
//! everything else a suite creates (containers, volumes, networks) is its to remove.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{aiaa_bin, repo_root, service_bin};

/// The Debian packages the container suites need, by the command each provides.
const PACKAGES: &[(&str, &str)] = &[
    ("dockerd", "docker.io"),
    ("docker-compose", "docker-compose"),
    ("debootstrap", "debootstrap"),
    ("patchelf", "patchelf"),
];

/// The service binaries the images carry, besides `aiaa` (the trainer's jobs).
pub const SERVICE_BINS: &[&str] = &[
    "aiaa-registry",
    "aiaa-datastore",
    "aiaa-gateway",
    "aiaa-inference",
    "aiaa-trainer",
];

/// Runs a command, returns its output; panics naming it when it cannot start.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs a command that must succeed; returns its stdout. Panics with its stderr otherwise.
pub fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `docker <args>`, checked; stdout trimmed.
pub fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args)).trim().to_string()
}

/// Installs the missing Debian packages (a no-op when all are there).
pub fn ensure_tools() {
    crate::debian::install_missing(PACKAGES);
}

fn engine_answers() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure a Docker engine answers: installs what is missing and starts `dockerd` (its
/// default storage driver, overlay2 where the kernel allows; else vfs) when none runs. The
/// daemon's log goes to `<cache>/dockerd.log`.
pub fn ensure_engine() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        ensure_tools();
        if engine_answers() {
            return;
        }
        let log = cache_dir().join("dockerd.log");
        for driver in [None, Some("vfs")] {
            let started = Instant::now();
            let mut cmd = Command::new("setsid");
            cmd.arg("dockerd");
            if let Some(d) = driver {
                cmd.args(["--storage-driver", d]);
            }
            let file = std::fs::File::create(&log).expect("dockerd log file");
            let mut child = cmd
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("start dockerd");
            while started.elapsed() < Duration::from_secs(60) {
                if engine_answers() {
                    eprintln!(
                        "docker: started dockerd ({}) in {:.1} s",
                        driver.unwrap_or("default storage driver"),
                        started.elapsed().as_secs_f64()
                    );
                    // Reaped by the system when it ends; it outlives this test on purpose.
                    std::mem::forget(child);
                    return;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "docker: dockerd ({}) did not come up: {}",
                driver.unwrap_or("default"),
                tail(&log, 20)
            );
        }
        panic!("no Docker engine could be started; see {}", log.display());
    });
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The project's cache folder (`$AIAA_CACHE_DIR`, else `~/.cache/aiaa`).
pub fn cache_dir() -> PathBuf {
    let dir = std::env::var_os("AIAA_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/aiaa"));
    std::fs::create_dir_all(&dir).expect("cache dir");
    dir
}

/// The images of one build, by target (`registry`, ..., `inference-cuda`).
#[derive(Clone, Debug)]
pub struct Images {
    /// Target -> image name (`aiaa/<target>:<tag>`, e.g. `aiaa/inference-cuda:e2e`).
    pub names: HashMap<String, String>,
    /// Target -> size in bytes.
    pub sizes: HashMap<String, u64>,
    /// The base image they are built from, and its size in bytes.
    pub base: (String, u64),
    /// The tag (`AIAA_IMAGE_TAG` for docker-compose.yml).
    pub tag: String,
    /// How long the build took.
    pub took: Duration,
}

impl Images {
    /// The image of a target; panics when it was not built.
    pub fn name(&self, target: &str) -> &str {
        self.names
            .get(target)
            .unwrap_or_else(|| panic!("no {target} image was built"))
    }
}

/// The CPU images (registry, datastore, gateway, inference, trainer) built by
/// `scripts/docker/build-images.sh` from the binaries of this test run's cargo profile, tagged
/// `<tag>`. Builds the binaries first (as the other suites do) and the base image when missing.
/// Serialised within the process; Docker's layer cache makes a repeated build fast.
pub fn build_images(tag: &str) -> Images {
    static LOCK: Mutex<()> = Mutex::new(());
    let _turn = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    ensure_engine();
    // The gateway image serves the annotation page its binary embeds.
    crate::build_page();
    let aiaa = aiaa_bin();
    for b in SERVICE_BINS {
        service_bin(b);
    }
    let bin_dir = aiaa.parent().expect("profile dir").to_path_buf();
    let started = Instant::now();
    let base = run(&mut Command::new(repo_root().join("scripts/docker/base.sh")))
        .trim()
        .to_string();
    let stdout = run(Command::new(repo_root().join("scripts/docker/build-images.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .args(["--tag", tag, "--base", &base])
        .stderr(Stdio::inherit()));
    let took = started.elapsed();
    let mut names = HashMap::new();
    let mut sizes = HashMap::new();
    for line in stdout.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        // <repo>/<target>:<tag>
        let Some((repo_target, _)) = name.rsplit_once(':') else {
            continue;
        };
        let target = repo_target.rsplit('/').next().unwrap_or(repo_target).to_string();
        sizes.insert(target.clone(), image_size(name));
        names.insert(target, name.to_string());
    }
    assert!(
        names.len() >= 5,
        "build-images.sh printed no image list:\n{stdout}"
    );
    let base_size = image_size(&base);
    Images {
        names,
        sizes,
        base: (base, base_size),
        tag: tag.to_string(),
        took,
    }
}

/// An image's size in bytes.
pub fn image_size(image: &str) -> u64 {
    docker(&["image", "inspect", "-f", "{{.Size}}", image])
        .parse()
        .unwrap_or_else(|e| panic!("size of {image}: {e}"))
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A `docker-compose` project: a name, its files and environment. `down -v` when dropped.
pub struct Compose {
    /// The project name (`-p`): containers, networks and volumes are prefixed with it.
    pub project: String,
    files: Vec<PathBuf>,
    env: Vec<(String, String)>,
}

impl Compose {
    /// A project of `files` (the first one's folder is the project folder) run with `env`.
    pub fn new(project: &str, files: &[PathBuf], env: &[(&str, String)]) -> Compose {
        ensure_engine();
        Compose {
            project: project.to_string(),
            files: files.to_vec(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        }
    }

    /// The `docker-compose` command for this project.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("docker-compose");
        // Only the variables given: none of the caller's AIAA_* / AWS_* settings (an API key,
        // a store URL) may leak into the deployment under test.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("AIAA_") || k.starts_with("AWS_") {
                cmd.env_remove(k.as_ref());
            }
        }
        cmd.arg("-p").arg(&self.project);
        for f in &self.files {
            cmd.arg("-f").arg(f);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// `docker-compose <args>`, checked; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        run(self.command().args(args))
    }

    /// The container id of a service (its one container).
    pub fn container(&self, service: &str) -> String {
        let id = self.run(&["ps", "-q", service]).trim().to_string();
        assert!(!id.is_empty(), "{service} has no container");
        id
    }

    /// `docker inspect -f <format>` of a service's container.
    pub fn inspect(&self, service: &str, format: &str) -> String {
        docker(&["inspect", "-f", format, &self.container(service)])
    }

    /// Waits until every listed service's container reports healthy; panics with the
    /// unhealthy ones' last health output and logs after `limit`.
    pub fn wait_healthy(&self, services: &[&str], limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let states: Vec<(String, String)> = services
                .iter()
                .map(|s| {
                    let id = self.run(&["ps", "-q", s]).trim().to_string();
                    let state = if id.is_empty() {
                        "no container".to_string()
                    } else {
                        output(Command::new("docker").args([
                            "inspect",
                            "-f",
                            "{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}",
                            &id,
                        ]))
                        .stdout
                        .iter()
                        .map(|&b| b as char)
                        .collect::<String>()
                        .trim()
                        .to_string()
                    };
                    (s.to_string(), state)
                })
                .collect();
            if states.iter().all(|(_, st)| st == "healthy") {
                return;
            }
            if Instant::now() > deadline {
                let mut report = String::new();
                for (s, st) in states.iter().filter(|(_, st)| st != "healthy") {
                    let logs = output(self.command().args(["logs", "--tail", "30", s]));
                    report.push_str(&format!(
                        "\n--- {s}: {st}\n{}{}",
                        String::from_utf8_lossy(&logs.stdout),
                        String::from_utf8_lossy(&logs.stderr)
                    ));
                }
                panic!("not healthy within {limit:?}:{report}");
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Compose {
    fn drop(&mut self) {
        let out = output(
            self.command()
                .args(["down", "-v", "--remove-orphans", "-t", "20"]),
        );
        if !out.status.success() {
            eprintln!(
                "docker-compose down of {} failed: {}",
                self.project,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
