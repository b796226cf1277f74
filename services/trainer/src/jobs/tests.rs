//! The jobs end to end in one process, over a local store, with a fake `aiaa` as the child:
//! recovery after restarts, and a shutdown that records running jobs to continue.

use std::path::Path;
use std::time::Duration;

use aiaa_proto::common::v1::{Job, JobState};
use aiaa_proto::trainer::v1::{Source, TrainingRequest, source};
use aiaa_runtime::store::Store;
use futures::StreamExt;
use object_store::ObjectStoreExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::record::{JobRecord, Meta, Record, Spec, record_path, write_record};
use super::{Jobs, MAX_RESTARTS, Settings};
use crate::sources::{Fetcher, SourceSpec};

/// Jobs over a local store whose datastore and registry cannot be reached, running
/// `program` as their child.
fn jobs(dir: &Path, program: &Path, shutdown: CancellationToken) -> (Jobs, Store) {
    let store = aiaa_runtime::store::open(dir.join("store").to_str().unwrap()).unwrap();
    let nowhere = "http://127.0.0.1:9";
    let (datastore, registry) = aiaa_runtime::client::datastore_and_registry(
        nowhere,
        nowhere,
        &Default::default(),
        &Default::default(),
    )
    .unwrap();
    let fetcher = Fetcher::new(
        datastore,
        registry,
        store.clone(),
        1 << 20,
        Some(dir.join("files")),
    );
    let settings = Settings {
        program: program.to_path_buf(),
        device: "cpu".into(),
        log_every: 1,
        grace: Duration::from_secs(5),
        work_root: dir.join("work"),
        api_key: None,
        registry_url: nowhere.into(),
        max_jobs: 1,
    };
    (Jobs::new(store.clone(), fetcher, settings, shutdown), store)
}

async fn stored(store: &Store, id: &str) -> Value {
    let bytes = store.get(&record_path(id)).await.unwrap().bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

async fn until_ended(jobs: &Jobs, id: &str) -> Job {
    let updates = jobs.watch(id).unwrap();
    let last = tokio::time::timeout(Duration::from_secs(30), updates.collect::<Vec<_>>())
        .await
        .unwrap();
    last.last().cloned().unwrap()
}

fn running(id: &str, spec: Spec, restarts: u32, dir: &Path) -> Record {
    Record {
        format: 1,
        job: JobRecord::from(&Job {
            id: id.into(),
            kind: spec.kind().into(),
            state: JobState::Running as i32,
            created_at: format!("2025-01-01T00:00:0{restarts}Z"),
            ..Default::default()
        }),
        meta: Meta {
            spec,
            output_prefix: format!("jobs/{id}/"),
            work_dir: dir.join("work").join(id),
            pid: None,
            restarts,
            recovered: false,
        },
    }
}

#[tokio::test]
async fn recovery_queues_jobs_again_and_gives_up_after_repeated_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let (jobs, store) = jobs(dir.path(), Path::new("/bin/false"), CancellationToken::new());
    let export = Spec::Export {
        checkpoint: SourceSpec::DatastoreId("runs/model.ckpt".into()),
        options: None,
        precision: "FP32".into(),
        push_to: None,
        with_checkpoint: false,
    };
    write_record(&store, &running("worn", export.clone(), MAX_RESTARTS, dir.path()))
        .await
        .unwrap();
    write_record(&store, &running("again", export.clone(), 0, dir.path()))
        .await
        .unwrap();
    let mut done = running("done", export, 0, dir.path());
    done.job.state = "JOB_STATE_SUCCEEDED".into();
    write_record(&store, &done).await.unwrap();
    assert_eq!(jobs.recover().await.unwrap(), 1);

    let worn = jobs.get("worn").unwrap();
    assert_eq!(worn.state, JobState::Failed as i32);
    assert!(worn.error.contains("restarted 4 times"), "{}", worn.error);
    assert_eq!(stored(&store, "worn").await["job"]["state"], "JOB_STATE_FAILED");
    assert_eq!(jobs.get("done").unwrap().state, JobState::Succeeded as i32);
    // Queued again, run again, and failed for a reason of its own (nothing to fetch from).
    let again = until_ended(&jobs, "again").await;
    assert_eq!(again.state, JobState::Failed as i32, "{again:?}");
    assert!(
        again.error.contains("preparing the job: datastore"),
        "{}",
        again.error
    );
    let rec = stored(&store, "again").await;
    assert_eq!(
        (rec["restarts"].as_u64(), rec["recovered"].as_bool()),
        (Some(1), Some(true))
    );
    assert!(jobs.get("nope").is_err());
}

/// Behaves like `aiaa train --progress json`: steps until SIGINT, then writes its last
/// checkpoint and exits 130; with `--resume` it reports a summary and exits 0. (Python:
/// its SIGINT handler works even where the test runs with SIGINT ignored, which a shell
/// `trap` cannot override.)
const FAKE_TRAIN: &str = r#"#!/usr/bin/env python3
import json, signal, sys, time
args = sys.argv[1:]
out = args[args.index("-r") + 1]
def say(**event):
    print(json.dumps(event), flush=True)
print("args ok", file=sys.stderr, flush=True)
if "--resume" in args:
    say(event="start", device="cpu", training_items=1, validation_items=0, steps_per_epoch=2, epochs=3, start_step=3)
    say(event="summary", outcome="completed", epochs_done=3, steps_done=6)
    sys.exit(0)
def stop(*_):
    with open(out + "/final_model.ckpt", "w") as f:
        f.write("x")
    say(event="checkpoint", kind="last", path=out + "/final_model.ckpt", epoch=1, step=3)
    sys.exit(130)
signal.signal(signal.SIGINT, stop)
say(event="start", device="cpu", training_items=1, validation_items=0, steps_per_epoch=2, epochs=3, start_step=0)
step = 0
while True:
    step += 1
    say(event="step", epoch=1, epochs=3, step=step, total_steps=6, loss=0.5, lr=0.01, it_per_s=1, eta_s=3)
    time.sleep(0.1)
"#;

fn tiny_train_config() -> Value {
    json!({
        "num_channels": 1, "num_classes": 2, "epochs": 3, "network_input_size": [8, 8, 8],
        "net_config": {"name": "UNet3D", "num_filters": 2, "levels": 2},
        "train": {
            "loss": {"name": "losses.dice_ce_loss"},
            "optimizer": {"name": "Adam", "lr": 1e-2},
            "pre_transforms": [{"name": "transforms.LoadNifty", "fields": ["image", "label"]}]
        }
    })
}

#[tokio::test]
async fn a_shutdown_records_running_jobs_to_continue_from_their_checkpoint() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("fake-aiaa");
    std::fs::write(&program, FAKE_TRAIN).unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("a.nii.gz"), b"not read by the service").unwrap();
    let image = files.join("a.nii.gz").canonicalize().unwrap();
    let shutdown = CancellationToken::new();
    let (jobs, store) = jobs(dir.path(), &program, shutdown.clone());
    let inline = |v: Value| {
        Some(Source {
            kind: Some(source::Kind::InlineJson(v.to_string())),
        })
    };
    let request = TrainingRequest {
        config: inline(tiny_train_config()),
        datalist: inline(json!({"training": [{"image": image, "label": image}]})),
        ..Default::default()
    };
    let job = jobs.submit_training(&request, "test").await.unwrap();
    // Relative paths name datastore items; absolute ones must lie under the file root.
    let elsewhere = TrainingRequest {
        datalist: inline(json!({"training": [{"image": "/etc/passwd", "label": image}]})),
        ..request.clone()
    };
    let other = jobs.submit_training(&elsewhere, "test").await.unwrap();
    let mut updates = Box::pin(jobs.watch(&job.id).unwrap());
    let stepping = async {
        while let Some(j) = updates.next().await {
            if j.progress.is_some_and(|p| p.stage == "train" && p.done >= 2) {
                return;
            }
        }
        panic!("the job ended before it stepped: {:?}", jobs.get(&job.id));
    };
    tokio::time::timeout(Duration::from_secs(30), stepping)
        .await
        .unwrap_or_else(|_| panic!("no steps: {:?}", jobs.get(&job.id)));
    shutdown.cancel();
    jobs.wait().await;
    let rec = stored(&store, &job.id).await;
    assert_eq!(rec["job"]["state"], "JOB_STATE_QUEUED", "{rec}");
    assert_eq!(
        (rec["recovered"].as_bool(), rec["pid"].as_u64()),
        (Some(true), None)
    );
    assert!(
        store
            .head(&object_store::path::Path::from(format!(
                "jobs/{}/final_model.ckpt",
                job.id
            )))
            .await
            .is_ok(),
        "the checkpoint saved at the stop is uploaded"
    );
    assert_eq!(
        stored(&store, &other.id).await["job"]["state"],
        "JOB_STATE_QUEUED"
    );

    // The next start continues it from that checkpoint.
    let (jobs, _) = self::jobs(dir.path(), &program, CancellationToken::new());
    assert_eq!(jobs.recover().await.unwrap(), 2);
    let ended = until_ended(&jobs, &job.id).await;
    assert_eq!(ended.state, JobState::Succeeded as i32, "{ended:?}");
    let result: Value = serde_json::from_str(&ended.result_json).unwrap();
    assert_eq!(result["steps_done"], 6);
    assert_eq!(
        result["last_checkpoint"],
        format!("jobs/{}/final_model.ckpt", job.id).as_str()
    );
    let other = until_ended(&jobs, &other.id).await;
    assert_eq!(other.state, JobState::Failed as i32);
    assert!(
        other.error.contains("outside --trainer-file-root"),
        "{}",
        other.error
    );
}
