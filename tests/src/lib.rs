//! The end-to-end harness: builds and starts the real `aiaa` binary on free ports (port 0),
//! reads the addresses it prints, waits for gRPC health, and stops it politely (SIGTERM, then
//! a kill after a grace period) when the fixture is dropped. Also: the real test data, and a
//! local S3-compatible server (moto) started by the test itself, an OTLP receiver ([`otlp`]), and
//! the hostile-input harness: the platform in a memory cgroup, watched ([`hostile`]).

pub mod aiaa_client;
pub mod debian;
pub mod docker;
pub mod hostile;
pub mod otlp;
pub mod volumes;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use aiaa_testdata::{python_env, repo_root, testdata};

/// Builds the annotation page (`scripts/web.sh`: `npm ci` from the lock file, esbuild) into
/// `web/dist`, once per test process, before any binary is built: the gateway embeds it.
/// Returns the dist folder.
pub fn build_page() -> PathBuf {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| {
        let out = Command::new(repo_root().join("scripts/web.sh"))
            .output()
            .expect("run scripts/web.sh");
        assert!(
            out.status.success(),
            "scripts/web.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// The `aiaa` binary, built once per test process with the same cargo and profile, so a test
/// never runs a stale binary.
pub fn aiaa_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("aiaa-cli", "aiaa")).clone()
}

/// A per-service binary (`aiaa-registry`, `aiaa-datastore`, `aiaa-inference`, `aiaa-trainer`,
/// `aiaa-gateway`: package and binary share the name), built once per test process.
pub fn service_bin(name: &str) -> PathBuf {
    static BINS: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut bins = BINS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = bins.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let path = build_bin(name, name);
    bins.push((name.to_string(), path.clone()));
    path
}

/// Builds `bin` of `package` with the cargo and profile of this test binary.
fn build_bin(package: &str, bin: &str) -> PathBuf {
    // <target>/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(repo_root());
    cmd.env("CARGO_TARGET_DIR", &target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("run cargo build for {bin}: {e}"));
    assert!(status.success(), "building {bin} failed");
    let path = profile_dir.join(bin);
    assert!(path.exists(), "{} missing after build", path.display());
    path
}

/// A running `aiaa` process.
pub struct Platform {
    child: Child,
    /// Service name -> bound address, as printed by the process.
    pub addrs: HashMap<String, SocketAddr>,
    /// Everything it printed on stdout up to "ready".
    pub banner: Vec<String>,
}

impl Platform {
    /// Starts `aiaa <args>` with every service on a free port and waits until it is ready
    /// (all services bound) and every service answers gRPC health SERVING.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Platform {
        Self::start_program(&aiaa_bin(), args, env).await
    }

    /// Like [`Platform::start`] for any program that runs `aiaa up` or `aiaa serve` and
    /// passes its stdout through (the README's start script).
    pub async fn start_program(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Platform {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("AIAA_REGISTRY_LISTEN", "127.0.0.1:0")
            .env("AIAA_DATASTORE_LISTEN", "127.0.0.1:0")
            .env("AIAA_GATEWAY_LISTEN", "127.0.0.1:0")
            .env("AIAA_INFERENCE_LISTEN", "127.0.0.1:0")
            .env("AIAA_TRAINER_LISTEN", "127.0.0.1:0")
            .env("AIAA_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn aiaa");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            // Keep draining after start-up: a closed pipe would fail the process's later output.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut addrs = HashMap::new();
        let mut banner = Vec::new();
        // The start script may build first: give it time.
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "{} did not become ready in time; printed so far: {banner:?}",
                    program.display()
                )
            });
            banner.push(line.clone());
            if let Some(rest) = line.strip_prefix("aiaa: ") {
                if rest.starts_with("ready") {
                    break;
                }
                if let Some((name, tail)) = rest.split_once(" listening on ") {
                    let addr = tail.split_whitespace().next().unwrap_or_default();
                    addrs.insert(name.to_string(), addr.parse().expect("printed address"));
                }
            }
        }
        let platform = Platform { child, addrs, banner };
        for (name, addr) in &platform.addrs {
            if name == "gateway" {
                wait_ready_http(*addr).await;
            } else {
                wait_serving(*addr, name).await;
            }
        }
        platform
    }

    /// `http://addr` of one service.
    pub fn url(&self, service: &str) -> String {
        format!(
            "http://{}",
            self.addrs
                .get(service)
                .unwrap_or_else(|| panic!("{service} is not running"))
        )
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for a clean exit (kills after 20 s). Returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().ok();
        None
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the gRPC health check of `addr` answers SERVING (30 s at most).
pub async fn wait_serving(addr: SocketAddr, name: &str) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last: String;
    loop {
        match aiaa_runtime::client::connect(&format!("http://{addr}"), None).await {
            Ok(channel) => {
                let answer = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                match answer {
                    Ok(r) if r.get_ref().status == ServingStatus::Serving as i32 => return,
                    Ok(r) => last = format!("status {:?}", r.get_ref().status),
                    Err(s) => last = format!("{s}"),
                }
            }
            Err(e) => last = e.to_string(),
        }
        assert!(
            Instant::now() < deadline,
            "{name} at {addr} never became SERVING: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the gateway's `/readyz` answers 200 (30 s at most).
pub async fn wait_ready_http(addr: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            let _ = s
                .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let mut out = String::new();
            let _ = s.read_to_string(&mut out).await;
            if out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the gateway at {addr} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `aiaa <args>` to completion with extra env, returning (status, stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String, String) {
    let mut cmd = Command::new(aiaa_bin());
    cmd.args(args).env("AIAA_LOG", "error");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run aiaa");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Puts `bytes` into the datastore as item `id` of `kind` over gRPC (its header, then chunks).
pub async fn put_item(
    ds: &mut aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient<
        aiaa_runtime::client::AiaaChannel,
    >,
    kind: aiaa_proto::datastore::v1::ItemKind,
    id: &str,
    bytes: Vec<u8>,
) -> aiaa_proto::datastore::v1::Item {
    let header = aiaa_proto::datastore::v1::PutHeader {
        kind: kind as i32,
        id: id.into(),
        size: bytes.len() as u64,
        ..Default::default()
    };
    let messages =
        aiaa_proto::framed::messages::<aiaa_proto::datastore::v1::PutRequest>(header, bytes.into());
    ds.put(futures::stream::iter(messages))
        .await
        .unwrap_or_else(|e| panic!("datastore put {id}: {e}"))
        .into_inner()
}

/// Lower-case hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    hex::encode(sha2::Sha256::digest(&bytes))
}

/// A local S3-compatible server (moto) on a free port, stopped on drop.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts the server and creates `bucket`.
    pub async fn start(bucket: &str) -> S3Server {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let python = python_env().join("bin/python");
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto server");
        let server = S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = Command::new(&python)
            .args([
                "-c",
                "import sys, boto3; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                 aws_access_key_id='test', aws_secret_access_key='test').create_bucket(Bucket=sys.argv[2])",
                &server.endpoint,
                bucket,
            ])
            .status()
            .expect("create bucket");
        assert!(status.success(), "creating bucket {bucket} failed");
        server
    }

    /// The environment a process needs to use this server through `s3://` URLs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
