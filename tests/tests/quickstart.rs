//! The README's start command, as a newcomer runs it: `scripts/up.sh` fetches the real
//! models, starts the platform, brings every service to SERVING and registers deepbet's
//! pretrained brain-extraction model; SIGTERM stops it all.

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
    let env = [
        ("AIAA_BUILD_PROFILE", "dev"),
        ("AIAA_REGISTRY_LISTEN", reg_listen.as_str()),
        ("AIAA_DATASTORE_LISTEN", ds_listen.as_str()),
        ("AIAA_REGISTRY_URL", reg_url.as_str()),
        ("AIAA_STORE_URL", store.to_str().unwrap()),
    ];
    let platform = Platform::start_program(&repo_root().join("scripts/up.sh"), &[], &env).await;
    assert_eq!(
        platform.addrs.len(),
        3,
        "registry, datastore, gateway: {:?}",
        platform.banner
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
    drop(platform);
}
