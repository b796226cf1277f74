//! MONAI Label's API on our gateway, driven by MONAI Label's own Python client (PyPI
//! `monailabel==0.8.5`, installed without its server's dependencies by
//! `scripts/monailabel-client.sh`) against the real `aiaa up` with the shipped models:
//! `tests/monailabel/client_flow.py` runs every call of the client that the platform
//! supports on the MNI152 and ROBEX heads (info, upload, save and download a label, active
//! learning, inference with deepbet and the DEXTR3D model, save_label, sessions, an uploaded
//! file) and the bad inputs, with its checks; then raw requests cover what the client does
//! not send (trailing slashes, HEAD, info updates, urlencoded forms, deletes). A third test
//! runs the annotate → save → retrain → serve loop (`tests/monailabel/train_flow.py`).

use std::process::Command;
use std::time::{Duration, Instant};

use aiaa_e2e::aiaa_client::{send, simple};
use aiaa_e2e::{Platform, python_env, repo_root, testdata};
use aiaa_proto::common::v1::{Job, JobRef, JobState};
use aiaa_proto::inference::v1::inference_service_client::InferenceServiceClient;
use aiaa_proto::inference::v1::{ListModelsRequest, LoadModelRequest, load_model_request};
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_proto::registry::v1::{GetManifestRequest, Manifest, ModelName};
use aiaa_proto::trainer::v1::trainer_service_client::TrainerServiceClient;
use aiaa_proto::trainer::v1::{ExportRequest, Source, TrainingRequest, source};
use aiaa_runtime::client::{AiaaChannel, connect};
use futures::StreamExt;
use serde_json::{Value, json};

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
    assert_eq!(stats["total"], 4, "{stats}");
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
        serde_json::json!({"total": 3, "completed": 1, "label_tags": {"final": 1}})
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

/// Epochs of the fine-tune the loop test asks for (one step each: one labelled image).
const LOOP_EPOCHS: u64 = 40;
/// Steps of the deliberately weak starting model.
const WEAK_EPOCHS: u64 = 3;

/// Watches a trainer job to its end; panics unless it succeeded.
async fn job_succeeds(trainer: &mut TrainerServiceClient<AiaaChannel>, job: Job) -> Value {
    let mut stream = trainer
        .watch_job(JobRef { id: job.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let mut last = job;
    while let Some(next) = tokio::time::timeout(Duration::from_secs(600), stream.next())
        .await
        .expect("the job took over 10 minutes")
    {
        last = next.unwrap();
    }
    assert_eq!(last.state, JobState::Succeeded as i32, "{last:#?}");
    serde_json::from_str(&last.result_json).unwrap()
}

async fn manifest(registry: &mut RegistryServiceClient<AiaaChannel>, version: &str) -> Manifest {
    registry
        .get_manifest(GetManifestRequest {
            model: Some(ModelName {
                org: "aiaa".into(),
                team: "default".into(),
                name: "brain_loop".into(),
            }),
            version: version.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn sha256_of(m: &Manifest, path: &str) -> String {
    m.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("version {} has no {path}: {m:#?}", m.version))
        .sha256
        .clone()
}

/// The annotate → save → retrain → serve loop with MONAI Label's own client: a weak DEXTR3D
/// model (a few steps on MNI152 with the recipe's config) is published as version 1 of
/// `brain_loop` with its checkpoint and served; the client saves MNI152's mask as the final
/// label, starts `/train/`, stops one run, lets another finish; version 2 is published (new
/// weights) and served, and its Dice on the held-out ROBEX head rises by at least 0.05.
/// Then `/scoring/dice` scores the final label against a saved prediction, and `/model/`
/// downloads the served file, puts it back as version 3 and unloads the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_train_loop_fine_tunes_publishes_and_serves_a_better_model() {
    let client_dir = monailabel_client();
    let dir = tempfile::tempdir().unwrap();
    let data = testdata();
    let store = dir.path().join("store");
    let work = dir.path().join("work");
    let platform = Platform::start(
        &[
            "up",
            "--store-url",
            store.to_str().unwrap(),
            "--trainer-file-root",
            data.to_str().unwrap(),
        ],
        &[
            ("AIAA_TRAINER_DEVICE", "cpu"),
            ("AIAA_TRAINER_LOG_EVERY", "1"),
            ("AIAA_TORCH_THREADS", "2"),
            ("AIAA_TRAINER_WORK_DIR", work.to_str().unwrap()),
        ],
    )
    .await;
    let gw = platform.addrs["gateway"];
    let mut trainer = TrainerServiceClient::new(connect(&platform.url("trainer"), None).await.unwrap());
    let mut registry = RegistryServiceClient::new(connect(&platform.url("registry"), None).await.unwrap());
    let mut inference = InferenceServiceClient::new(connect(&platform.url("inference"), None).await.unwrap());

    // The weak start: the recipe's config, a few steps on MNI152 (never ROBEX).
    let recipe: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("recipes/annotation_mri_brain/config_train.json")).unwrap(),
    )
    .unwrap();
    let mni = json!({
        "image": data.join("mni152/MNI152_T1.nii.gz"),
        "label": data.join("mni152/MNI152_mask.nii.gz"),
    });
    let t0 = Instant::now();
    let job = trainer
        .submit_training(TrainingRequest {
            config: Some(Source {
                kind: Some(source::Kind::InlineJson(recipe.to_string())),
            }),
            datalist: Some(Source {
                kind: Some(source::Kind::InlineJson(json!({"training": [mni]}).to_string())),
            }),
            overrides_json: json!({"epochs": WEAK_EPOCHS}).to_string(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let weak = job_succeeds(&mut trainer, job).await;
    let export = trainer
        .submit_export(ExportRequest {
            checkpoint: Some(Source {
                kind: Some(source::Kind::TrainerObject(
                    weak["best_checkpoint"].as_str().unwrap().into(),
                )),
            }),
            config: Some(Source {
                kind: Some(source::Kind::InlineJson(
                    json!({"labels": ["brain"], "description": "DEXTR3D brain, weak start of the loop test"})
                        .to_string(),
                )),
            }),
            precision: "fp32".into(),
            push_to: "aiaa/default/brain_loop:1".into(),
            with_checkpoint: true,
        })
        .await
        .unwrap()
        .into_inner();
    job_succeeds(&mut trainer, export).await;
    let v1 = manifest(&mut registry, "1").await;
    for f in ["model.pt", "model.ckpt", "config_train.json"] {
        sha256_of(&v1, f);
    }
    let loaded = inference
        .load_model(LoadModelRequest {
            name: "brain_loop".into(),
            source: Some(load_model_request::Source::RegistryRef(
                "aiaa/default/brain_loop:1".into(),
            )),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(loaded.trainable, "{loaded:#?}");
    assert_eq!(loaded.registry_ref, "aiaa/default/brain_loop:1");
    println!("weak start ready in {:?}", t0.elapsed());

    let tmp = dir.path().join("client");
    std::fs::create_dir_all(&tmp).unwrap();
    let out = Command::new(python_env().join("bin/python"))
        .arg(repo_root().join("tests/monailabel/train_flow.py"))
        .arg(format!("http://{gw}"))
        .arg("brain_loop")
        .arg(data.join("mni152/MNI152_T1.nii.gz"))
        .arg(data.join("mni152/MNI152_mask.nii.gz"))
        .arg(data.join("robex/atlas.nii.gz"))
        .arg(data.join("robex/atlas_mask.nii.gz"))
        .arg(&tmp)
        .arg(LOOP_EPOCHS.to_string())
        .env("PYTHONPATH", &client_dir)
        .output()
        .expect("run the MONAI Label client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "train flow failed:\n{stdout}\n{stderr}");
    println!("figures: {stdout}");

    // Version 2 holds new weights, is trainable again, and is what serves.
    let v2 = manifest(&mut registry, "2").await;
    assert_ne!(sha256_of(&v1, "model.pt"), sha256_of(&v2, "model.pt"));
    assert_ne!(sha256_of(&v1, "model.ckpt"), sha256_of(&v2, "model.ckpt"));
    // Version 3 is the file put through /model/: the same weights, without the checkpoint.
    let v3 = manifest(&mut registry, "3").await;
    assert_eq!(sha256_of(&v2, "model.pt"), sha256_of(&v3, "model.pt"));
    assert!(v3.files.iter().all(|f| f.path != "model.ckpt"), "{v3:#?}");
    let served = inference
        .list_models(ListModelsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .models;
    assert!(
        served.iter().all(|m| m.name != "brain_loop"),
        "deleted through /model/: {served:#?}"
    );
    let status = send(gw, &simple("GET", "/train/?all=true")).await.json();
    let statuses: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["STOPPED", "DONE"], "{status}");
    assert_eq!(send(gw, &simple("GET", "/readyz")).await.status, 200);
}
