//! The README's start command, as a newcomer runs it: `scripts/up.sh` fetches the real
//! models, starts the platform, brings every service to SERVING with the engine pool's models
//! loaded, and registers deepbet's pretrained brain-extraction model, which the inference
//! service then loads from the registry through the admin API; the README's `./aiaa`
//! commands run as printed; SIGTERM stops it all.

use aiaa_e2e::aiaa_client::{cpp_request, send, simple};
use aiaa_e2e::{Platform, repo_root, run_cli, testdata};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_start_command_serves_every_service_and_a_real_model() {
    let data = testdata(); // the script fetches it too; this keeps the cache warm
    let dir = tempfile::tempdir().unwrap();
    let (reg_port, ds_port) = (free_port(), free_port());
    let reg_listen = format!("127.0.0.1:{reg_port}");
    let ds_listen = format!("127.0.0.1:{ds_port}");
    let reg_url = format!("http://{reg_listen}");
    let store = dir.path().join("aiaa-data");
    let model_dir = dir.path().join("inference-models");
    let env = [
        ("AIAA_INFERENCE_MODEL_DIR", model_dir.to_str().unwrap()),
        ("AIAA_BUILD_PROFILE", "dev"),
        ("AIAA_REGISTRY_LISTEN", reg_listen.as_str()),
        ("AIAA_DATASTORE_LISTEN", ds_listen.as_str()),
        ("AIAA_REGISTRY_URL", reg_url.as_str()),
        ("AIAA_STORE_URL", store.to_str().unwrap()),
    ];
    let platform = Platform::start_program(&repo_root().join("scripts/up.sh"), &[], &env).await;
    assert_eq!(
        platform.addrs.len(),
        5,
        "registry, datastore, inference, trainer, gateway: {:?}",
        platform.banner
    );
    let gw = platform.addrs["gateway"];
    // The README's "annotate at http://localhost:5000/": the script built the page into the
    // binary it started.
    let page = send(
        gw,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(
        html.contains("id=\"gl\"") && !html.contains("not built"),
        "{html}"
    );
    let models = send(gw, &simple("GET", "/v1/models")).await.json();
    assert!(
        models
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "segmentation_mri_brain"),
        "{models}"
    );
    // The script registers the real model once the services are up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (st, out, _) = run_cli(&["pull", "--registry", &reg_url, "-lm"], &[]);
        if st.success() && out.contains("segmentation_mri_brain") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the model was never registered: {out}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    // The README's commands, exactly as it prints them (through the ./aiaa wrapper).
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let ds_url = format!("http://{ds_listen}");
    for (start, expect) in [
        ("./aiaa pull -lm", "segmentation_mri_brain"),
        ("./aiaa pull -lv -m segmentation_mri_brain", "1"),
        ("./aiaa status", "segmentation_mri_brain"),
    ] {
        let line = readme
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("the README no longer shows {start:?}"));
        let command = line.split(" #").next().unwrap().trim();
        let out = std::process::Command::new("bash")
            .args(["-c", command])
            .current_dir(repo_root())
            .env("AIAA_BUILD_PROFILE", "dev")
            .env("AIAA_REGISTRY_URL", &reg_url)
            .env("AIAA_DATASTORE_URL", &ds_url)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains(expect),
            "{command}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out_dir = dir.path().join("pulled");
    let (st, out, err) = run_cli(
        &[
            "pull",
            "--registry",
            &reg_url,
            "-m",
            "segmentation_mri_brain",
            "-v",
            "1",
            "-d",
            out_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(st.success(), "{out}\n{err}");
    assert_eq!(
        aiaa_e2e::sha256_file(&out_dir.join("model.pt")),
        aiaa_e2e::sha256_file(&data.join("deepbet/model.pt"))
    );
    // The registry's version, with its engine config, loads into the inference service.
    let load = cpp_request(
        "PUT",
        "/admin/model/brain_from_registry",
        &[("registry", "aiaa/default/segmentation_mri_brain:1")],
        &[],
    );
    let loaded = send(gw, &load).await;
    assert_eq!(loaded.status, 200, "{}", String::from_utf8_lossy(&loaded.body));
    let one = send(gw, &simple("GET", "/v1/models?model=brain_from_registry"))
        .await
        .json();
    assert_eq!(one["type"], "segmentation", "{one}");
    assert_eq!(one["labels"], serde_json::json!(["brain"]), "{one}");

    // A cached copy that is not the registry's (another store with the same name and version,
    // or damage) is downloaded again, not served.
    let cached = model_dir.join("aiaa/default/segmentation_mri_brain/1/model.pt");
    let good = aiaa_e2e::sha256_file(&cached);
    std::fs::write(&cached, b"not the registry's weights").unwrap();
    let again = cpp_request(
        "PUT",
        "/admin/model/brain_from_registry_again",
        &[("registry", "aiaa/default/segmentation_mri_brain:1")],
        &[],
    );
    let loaded = send(gw, &again).await;
    assert_eq!(loaded.status, 200, "{}", String::from_utf8_lossy(&loaded.body));
    assert_eq!(aiaa_e2e::sha256_file(&cached), good);
    drop(platform);
}
