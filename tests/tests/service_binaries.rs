//! The per-service binaries that container images carry: how they link (libtorch only where
//! models run, CUDA kept where the torch in use ships it, relative rpaths), and that each
//! serves, answers its own health probe, checks its config without starting, lists the
//! environment it reads, and drains on SIGTERM with exit 0.

use std::path::{Path, PathBuf};
use std::process::Command;

use aiaa_e2e::{Platform, repo_root, service_bin};

const SERVICES: [&str; 5] = ["registry", "datastore", "inference", "trainer", "gateway"];
const WITHOUT_TORCH: [&str; 3] = ["registry", "datastore", "gateway"];

fn bin(service: &str) -> PathBuf {
    service_bin(&format!("aiaa-{service}"))
}

/// `readelf -d` lines of one kind (`NEEDED`, `RUNPATH`).
fn dynamic(path: &Path, kind: &str) -> Vec<String> {
    let out = Command::new("readelf")
        .arg("-d")
        .arg(path)
        .output()
        .expect("readelf");
    assert!(out.status.success(), "readelf -d {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("({kind})")))
        .filter_map(|l| l.split('[').nth(1).map(|v| v.trim_end_matches(']').to_string()))
        .collect()
}

/// The libtorch the binaries were linked against (the venv of scripts/env.sh).
fn torch_lib() -> Option<PathBuf> {
    let venv = std::env::var("AIAA_TORCH_VENV").ok()?;
    let lib = std::fs::read_dir(Path::new(&venv).join("lib"))
        .ok()?
        .flatten()
        .map(|e| e.path().join("site-packages/torch/lib"))
        .find(|p| p.is_dir())?;
    Some(lib)
}

#[test]
fn only_the_model_services_link_libtorch_and_they_keep_cuda_with_a_relative_rpath() {
    for service in WITHOUT_TORCH {
        let needed = dynamic(&bin(service), "NEEDED");
        assert!(
            !needed.iter().any(|l| l.contains("torch") || l.contains("c10")),
            "aiaa-{service} must not need libtorch: {needed:?}"
        );
    }
    let ships_cuda = torch_lib().is_some_and(|l| l.join("libtorch_cuda.so").is_file());
    let mut with_torch: Vec<PathBuf> = ["inference", "trainer"].iter().map(|s| bin(s)).collect();
    with_torch.push(aiaa_e2e::aiaa_bin());
    for path in with_torch {
        let needed = dynamic(&path, "NEEDED");
        assert!(
            needed.iter().any(|l| l == "libtorch_cpu.so"),
            "{}: {needed:?}",
            path.display()
        );
        if ships_cuda && std::env::var("AIAA_TORCH_CUDA").as_deref() != Ok("0") {
            assert!(
                needed.iter().any(|l| l == "libtorch_cuda.so"),
                "{} drops libtorch_cuda.so: a GPU would never be used; NEEDED: {needed:?}",
                path.display()
            );
        }
        let runpath = dynamic(&path, "RUNPATH").join(":") + &dynamic(&path, "RPATH").join(":");
        assert!(!runpath.is_empty(), "{} has no rpath", path.display());
        for entry in runpath.split(':') {
            assert!(
                entry.starts_with("$ORIGIN"),
                "{}: rpath entry {entry:?} is absolute; binaries and images must be movable",
                path.display()
            );
        }
        assert!(
            runpath.contains("$ORIGIN/../lib"),
            "{}: {runpath}",
            path.display()
        );
    }
}

#[test]
fn each_binary_lists_the_environment_it_reads() {
    for service in SERVICES {
        let out = Command::new(bin(service)).arg("env").output().unwrap();
        assert!(out.status.success());
        let vars: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        let listen = format!("AIAA_{}_LISTEN", service.to_uppercase());
        for var in [
            listen.as_str(),
            "AIAA_LOG",
            "AIAA_LOG_FORMAT",
            "AIAA_OTLP_ENDPOINT",
            "AIAA_API_KEY",
        ] {
            assert!(
                vars.iter().any(|v| v == var),
                "aiaa-{service} env lacks {var}: {vars:?}"
            );
        }
        assert!(vars.iter().all(|v| v.starts_with("AIAA_")), "{vars:?}");
        let stores = vars.iter().any(|v| v == "AIAA_STORE_URL");
        assert_eq!(
            stores,
            ["registry", "datastore", "trainer"].contains(&service),
            "aiaa-{service}: {vars:?}"
        );
    }
}

#[test]
fn check_config_accepts_the_shipped_engine_pool_and_names_what_is_wrong() {
    let pool = repo_root().join("models/engine_pool.json");
    let out = Command::new(bin("inference"))
        .arg("check-config")
        .env("AIAA_ENGINE_POOL", &pool)
        .env("AIAA_INFERENCE_DEVICE", "cpu")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("engine_pool.json");
    std::fs::write(
        &bad,
        r#"[{"name": "m", "class": "NoSuchEngine", "config_file": "m.json"}]"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("m.json"), r#"{"model_path": "m.pt"}"#).unwrap();
    let out = Command::new(bin("inference"))
        .arg("check-config")
        .env("AIAA_ENGINE_POOL", &bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NoSuchEngine") && err.contains("known:"), "{err}");

    // Flags go before the sub-command; variables work either way.
    let out = Command::new(bin("registry"))
        .args(["--max-message-bytes", "10", "check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(bin("registry"))
        .arg("check-config")
        .env("AIAA_MAX_MESSAGE_BYTES", "10")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("AIAA_MAX_MESSAGE_BYTES"));
    let out = Command::new(bin("gateway")).arg("check-config").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Checks that `aiaa-<service> probe <addr>` answers `expected` (an exit code).
fn probe(service: &str, addr: &str, expected: i32) {
    let out = Command::new(bin(service))
        .args(["probe", addr, "--probe-timeout", "2s"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(expected),
        "aiaa-{service} probe {addr}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn each_service_binary_serves_answers_its_probe_and_drains_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let store = data.path().to_str().unwrap().to_string();
    let mut registry = Platform::start_program(&bin("registry"), &[], &[("AIAA_STORE_URL", &store)]).await;
    let mut datastore = Platform::start_program(&bin("datastore"), &[], &[("AIAA_STORE_URL", &store)]).await;
    let datastore_url = datastore.url("datastore");
    // The gateway reports ready once its datastore answers.
    let mut gateway =
        Platform::start_program(&bin("gateway"), &[], &[("AIAA_DATASTORE_URL", &datastore_url)]).await;
    let running = [
        ("registry", registry.addrs["registry"].to_string()),
        ("datastore", datastore.addrs["datastore"].to_string()),
        ("gateway", gateway.addrs["gateway"].to_string()),
    ];
    for (service, addr) in &running {
        probe(service, addr, 0);
    }
    for (service, platform) in [
        ("gateway", &mut gateway),
        ("datastore", &mut datastore),
        ("registry", &mut registry),
    ] {
        let status = platform.stop().expect("stops within 20 s");
        assert!(status.success(), "aiaa-{service} exited {status:?} on SIGTERM");
    }
    for (service, addr) in &running {
        probe(service, addr, 1);
    }
}
