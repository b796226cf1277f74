//! MONAI Label's API on our gateway, driven by MONAI Label's own Python client (PyPI
//! `monailabel==0.8.5`, installed without its server's dependencies by
//! `scripts/monailabel-client.sh`) against the real `aiaa up` with the shipped models:
//! `tests/monailabel/client_flow.py` runs every call of the client that the platform
//! supports on the MNI152 and ROBEX heads (info, upload, save and download a label, active
//! learning, inference with deepbet and the DEXTR3D model, save_label, sessions, an uploaded
//! file) and the bad inputs, with its checks; then raw requests cover what the client does
//! not send (trailing slashes, HEAD, info updates, urlencoded forms, deletes).

use std::process::Command;

use aiaa_e2e::aiaa_client::{send, simple};
use aiaa_e2e::{Platform, python_env, repo_root, testdata};

fn monailabel_client() -> std::path::PathBuf {
    let out = Command::new(repo_root().join("scripts/monailabel-client.sh"))
        .output()
        .expect("run scripts/monailabel-client.sh");
    assert!(
        out.status.success(),
        "scripts/monailabel-client.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monai_labels_own_client_annotates_on_our_platform() {
    let client_dir = monailabel_client();
    let dir = tempfile::tempdir().unwrap();
    let pool = repo_root().join("models/engine_pool.json");
    let data = testdata();
    let store = dir.path().join("data");
    let platform = Platform::start(
        &["up", "--engine-pool", pool.to_str().unwrap()],
        &[("AIAA_STORE_URL", store.to_str().unwrap())],
    )
    .await;
    let gw = platform.addrs["gateway"];
    let tmp = dir.path().join("client");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = Command::new(python_env().join("bin/python"))
        .arg(repo_root().join("tests/monailabel/client_flow.py"))
        .arg(format!("http://{gw}"))
        .arg(data.join("mni152/MNI152_T1.nii.gz"))
        .arg(data.join("mni152/MNI152_mask.nii.gz"))
        .arg(data.join("robex/atlas.nii.gz"))
        .arg(data.join("robex/atlas_mask.nii.gz"))
        .arg(&tmp)
        .env("PYTHONPATH", &client_dir)
        .output()
        .expect("run the MONAI Label client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client flow failed:\n{stdout}\n{stderr}");
    println!("figures: {stdout}");

    // What the client does not send, as the other clients (3D Slicer, OHIF, browsers) do.
    let info = send(gw, &simple("GET", "/info")).await;
    assert_eq!(info.status, 200, "{}", info.text());
    let found = send(gw, &simple("HEAD", "/datastore/image?image=robex_head")).await;
    assert_eq!(found.status, 200);
    let found = send(gw, &simple("HEAD", "/datastore/image?image=nope")).await;
    assert_eq!(found.status, 404);
    let found = send(gw, &simple("HEAD", "/datastore/label?image=MNI152_T1&tag=final")).await;
    assert_eq!(found.status, 200);
    let stats = send(gw, &simple("GET", "/datastore/?output=stats")).await.json();
    assert_eq!(stats["total"], 2, "{stats}");
    let train = send(gw, &simple("GET", "/datastore/?output=train")).await.json();
    assert_eq!(train.as_array().map(Vec::len), Some(1), "{train}");
    // The Slicer reviewer's urlencoded info update, then the info read back.
    let body = "params=%7B%22approved%22%3A+true%7D";
    let request = format!(
        "PUT /datastore/updatelabelinfo?label=MNI152_T1&tag=final HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let put = send(gw, request.as_bytes()).await;
    assert_eq!(put.status, 200, "{}", put.text());
    let info = send(
        gw,
        &simple("GET", "/datastore/label/info?label=MNI152_T1&tag=final"),
    )
    .await
    .json();
    assert_eq!(info["approved"], true, "{info}");
    assert_eq!(info["label_info"][0]["name"], "brain", "{info}");
    let auth = send(gw, &simple("GET", "/auth/")).await.json();
    assert_eq!(auth["enabled"], false, "{auth}");
    // Deleting an image deletes its labels.
    let del = send(gw, &simple("DELETE", "/datastore/image?id=robex_head")).await;
    assert_eq!(del.status, 200, "{}", del.text());
    let stats = send(gw, &simple("GET", "/datastore/")).await.json();
    assert_eq!(
        stats,
        serde_json::json!({"total": 1, "completed": 1, "label_tags": {"final": 1}})
    );
    let del = send(gw, &simple("DELETE", "/datastore/image?id=robex_head")).await;
    assert_eq!(del.status, 404, "{}", del.text());
    assert_eq!(send(gw, &simple("GET", "/readyz")).await.status, 200);
}

/// With an API key: `/auth/` says so, `/auth/token` is an OAuth2 password grant whose
/// password is the key, and its token opens MONAI Label's routes (`bearer` in any case).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_key_the_clients_log_in_with_a_password_grant() {
    const KEY: &str = "ml-key-0123";
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::start(
        &[
            "up",
            "--store-url",
            dir.path().to_str().unwrap(),
            "--api-key",
            KEY,
        ],
        &[],
    )
    .await;
    let gw = platform.addrs["gateway"];
    let auth = send(gw, &simple("GET", "/auth/")).await.json();
    assert_eq!(auth["enabled"], true, "{auth}");
    assert_eq!(send(gw, &simple("GET", "/info/")).await.status, 401);
    let grant = |password: &str| {
        let body = format!("username=annotator&password={password}&grant_type=password");
        format!(
            "POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let wrong = send(gw, grant("guess").as_bytes()).await;
    assert_eq!(wrong.status, 400, "{}", wrong.text());
    assert!(wrong.text().contains("invalid_grant"), "{}", wrong.text());
    let token = send(gw, grant(KEY).as_bytes()).await.json();
    assert_eq!(token["token_type"], "bearer", "{token}");
    let bearer = token["access_token"].as_str().unwrap();
    for scheme in ["Bearer", "bearer"] {
        let request = format!("GET /info/ HTTP/1.1\r\nHost: x\r\nAuthorization: {scheme} {bearer}\r\n\r\n");
        let info = send(gw, request.as_bytes()).await;
        assert_eq!(info.status, 200, "{}", info.text());
        let request =
            format!("GET /auth/token/valid HTTP/1.1\r\nHost: x\r\nAuthorization: {scheme} {bearer}\r\n\r\n");
        let who = send(gw, request.as_bytes()).await.json();
        assert!(
            who["roles"]
                .as_array()
                .unwrap()
                .contains(&"monailabel-admin".into()),
            "{who}"
        );
    }
}
