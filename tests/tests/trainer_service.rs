//! The trainer service end to end through `aiaa up`, on the real brain volumes (MNI152 for
//! training, the ROBEX atlas for validation) stored in the datastore:
//!
//! - a training job from an inline config (with overrides) and a datastore datalist runs
//!   in a child process, is watched RUNNING with step progress to SUCCEEDED, and leaves its
//!   checkpoints, TensorBoard events and record in the store; its best checkpoint is then
//!   exported (pushed to the registry) and the pushed model evaluated, all as jobs;
//! - a config the service can check is refused at once (INVALID_ARGUMENT); one only the
//!   child can refuse fails the job with the child's error in `log_tail`; a datalist that does
//!   not exist fails the job naming it;
//! - with one slot, a second job waits QUEUED and is cancelled at once; a running training
//!   is cancelled: SIGINT, its last checkpoint is saved and uploaded, it ends CANCELLED, and a
//!   new job with `resume` continues it from that checkpoint;
//! - the whole `aiaa` process is killed (SIGKILL) during a training: restarted on the same
//!   store and work folder, the job is not left RUNNING: the old child is stopped, and the
//!   job continues from its last checkpoint;
//! - an interactive evaluation job (the click protocol) of the shipped deepgrow model on the
//!   ROBEX head, every click scored in the job's result.
//!
//! The tests take turns (one lock): each trains on the machine's few cores.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aiaa_e2e::{Platform, aiaa_bin, put_item, repo_root, testdata};
use aiaa_proto::common::v1::{Job, JobRef, JobState, ListJobsRequest};
use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::datastore::v1::{ItemKind, PutDatalistRequest};
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_proto::registry::v1::{GetManifestRequest, ModelName};
use aiaa_proto::trainer::v1::trainer_service_client::TrainerServiceClient;
use aiaa_proto::trainer::v1::{EvaluationRequest, ExportRequest, Source, TrainingRequest, source};
use aiaa_runtime::client::{AiaaChannel, connect};
use aiaa_testdata::train::TinyTrain;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tonic::Code;

type Trainer = TrainerServiceClient<AiaaChannel>;

/// One test at a time: each trains on the machine's few cores.
static TURN: Mutex<()> = Mutex::const_new(());

/// 24³ crops, a 2-level U-Net of 4 filters, one loader thread, a last checkpoint after every
/// epoch.
fn small_config(epochs: u64, per_valid: u64) -> Value {
    TinyTrain {
        size: 24,
        levels: 2,
        num_workers: 1,
        epochs,
        per_valid,
        ..TinyTrain::default()
    }
    .config()
}

fn inline(v: &Value) -> Option<Source> {
    Some(Source {
        kind: Some(source::Kind::InlineJson(v.to_string())),
    })
}

fn datalist(name: &str) -> Option<Source> {
    Some(Source {
        kind: Some(source::Kind::Datalist(name.into())),
    })
}

struct Fixture {
    platform: Platform,
    store: PathBuf,
    work: PathBuf,
    trainer: Trainer,
}

async fn start(dir: &Path, extra_env: &[(&str, &str)]) -> Fixture {
    let store = dir.join("store");
    let work = dir.join("work");
    let mut env = vec![
        ("AIAA_TRAINER_DEVICE", "cpu"),
        ("AIAA_TRAINER_LOG_EVERY", "1"),
        ("AIAA_TRAINER_CANCEL_GRACE", "30s"),
        ("AIAA_TORCH_THREADS", "2"),
        ("AIAA_TRAINER_WORK_DIR", work.to_str().unwrap()),
    ];
    env.extend_from_slice(extra_env);
    let platform = Platform::start(&["up", "--store-url", store.to_str().unwrap()], &env).await;
    let trainer = TrainerServiceClient::new(connect(&platform.url("trainer"), None).await.unwrap());
    Fixture {
        platform,
        store,
        work,
        trainer,
    }
}

/// MNI152 head and mask (four training cases, two steps per epoch) and the ROBEX head
/// (validation), as datastore items under the datalist "brain".
async fn put_brain_data(platform: &Platform) {
    let mut ds = DatastoreServiceClient::new(connect(&platform.url("datastore"), None).await.unwrap());
    let t = testdata();
    for (kind, id, file) in [
        (
            ItemKind::Image,
            "mni/t1.nii.gz",
            t.join("mni152/MNI152_T1.nii.gz"),
        ),
        (
            ItemKind::Label,
            "mni/t1.nii.gz",
            t.join("mni152/MNI152_mask.nii.gz"),
        ),
        (
            ItemKind::Image,
            "robex/atlas.nii.gz",
            t.join("robex/atlas.nii.gz"),
        ),
        (
            ItemKind::Label,
            "robex/atlas.nii.gz",
            t.join("robex/atlas_mask.nii.gz"),
        ),
    ] {
        let bytes = std::fs::read(file).unwrap();
        put_item(&mut ds, kind, id, bytes).await;
    }
    let mni = json!({"image": "mni/t1.nii.gz", "label": "mni/t1.nii.gz"});
    let list = json!({
        "training": [mni, mni, mni, mni],
        "validation": [{"image": "robex/atlas.nii.gz", "label": "robex/atlas.nii.gz"}]
    });
    ds.put_datalist(PutDatalistRequest {
        name: "brain".into(),
        datalist: None,
        json: list.to_string(),
    })
    .await
    .unwrap();
}

fn state(j: &Job) -> JobState {
    JobState::try_from(j.state).unwrap()
}

/// Watches a job until `done(job)` (every state seen is returned), within `limit`.
async fn watch_until(
    trainer: &mut Trainer,
    id: &str,
    limit: Duration,
    done: impl Fn(&Job) -> bool,
) -> Vec<Job> {
    let mut stream = trainer
        .watch_job(JobRef { id: id.into() })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("job {id} did not get there in {limit:?}; last: {:?}", seen.last()));
        let job = next
            .unwrap_or_else(|| panic!("the watch of {id} ended early; last: {:?}", seen.last()))
            .unwrap();
        let stop = done(&job);
        seen.push(job);
        if stop {
            return seen;
        }
    }
}

fn ended(j: &Job) -> bool {
    matches!(
        state(j),
        JobState::Succeeded | JobState::Failed | JobState::Cancelled
    )
}

fn result(j: &Job) -> Value {
    serde_json::from_str(&j.result_json).unwrap_or_else(|e| panic!("result_json {:?}: {e}", j.result_json))
}

fn record(store: &Path, id: &str) -> Value {
    let p = store.join(format!("trainer/jobs/{id}/job.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn training(config: Value, overrides: Value) -> TrainingRequest {
    TrainingRequest {
        config: inline(&config),
        datalist: datalist("brain"),
        overrides_json: overrides.to_string(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_export_and_evaluation_jobs_run_to_success_and_failures_say_why() {
    let _turn = TURN.lock().await;
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut f = start(dir.path(), &[]).await;
    put_brain_data(&f.platform).await;

    // Checked at once: an unknown config key, a malformed override, resume without a prefix.
    let mut bad = small_config(1, 1);
    bad["epohcs"] = json!(3);
    let err = f
        .trainer
        .submit_training(training(bad, json!({})))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("epohcs"), "{}", err.message());
    let err = f
        .trainer
        .submit_training(TrainingRequest {
            overrides_json: "[1]".into(),
            ..training(small_config(1, 1), json!({}))
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = f
        .trainer
        .submit_training(TrainingRequest {
            resume: true,
            ..training(small_config(1, 1), json!({}))
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = f.trainer.get_job(JobRef { id: "nope".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // A short training: the recipe-sized config cut to 2 epochs by an override.
    let job = f
        .trainer
        .submit_training(training(small_config(600, 1), json!({"epochs": 2})))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((state(&job), job.kind.as_str()), (JobState::Queued, "training"));
    // Who asked is recorded with the job (a direct gRPC caller: its address).
    assert_eq!(job.submitted_by, "peer:127.0.0.1");
    let seen = watch_until(&mut f.trainer, &job.id, Duration::from_secs(240), ended).await;
    let last = seen.last().unwrap();
    assert_eq!(state(last), JobState::Succeeded, "{last:#?}");
    assert_eq!(last.submitted_by, "peer:127.0.0.1");
    let stepping = seen
        .iter()
        .find(|j| {
            state(j) == JobState::Running
                && j.progress
                    .as_ref()
                    .is_some_and(|p| p.stage == "train" && p.unit == "steps" && p.done > 0 && p.total == 4)
        })
        .unwrap_or_else(|| panic!("no RUNNING state with step progress: {seen:#?}"));
    assert!(
        stepping.progress.as_ref().unwrap().message.contains("loss"),
        "{stepping:?}"
    );
    let r = result(last);
    let prefix = format!("jobs/{}/", job.id);
    assert_eq!(r["output_prefix"], prefix.as_str());
    assert_eq!(r["steps_done"], 4, "{r}");
    assert_eq!(r["outcome"], "completed", "{r}");
    assert!(r["metrics"]["mean_dice"].as_f64().is_some(), "{r}");
    assert_eq!(r["best_checkpoint"], format!("{prefix}model.ckpt").as_str());
    let outputs: Vec<&str> = r["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    for want in [
        "model.ckpt",
        "final_model.ckpt",
        "train_summary.json",
        "events.out.tfevents.",
    ] {
        let found = outputs
            .iter()
            .find(|o| o.starts_with(&format!("{prefix}{want}")))
            .unwrap_or_else(|| panic!("no {want} in {outputs:?}"));
        let file = f.store.join("trainer").join(found);
        assert!(
            std::fs::metadata(&file).is_ok_and(|m| m.len() > 0),
            "{} is not in the store",
            file.display()
        );
    }
    assert_eq!(record(&f.store, &job.id)["job"]["state"], "JOB_STATE_SUCCEEDED");
    assert!(
        !f.work.join(&job.id).exists(),
        "the work folder is removed at the end"
    );
    eprintln!("training done at {:?}: {r}", t0.elapsed());

    // Export the best checkpoint, pushed to the registry, then evaluate the pushed model.
    let export = f
        .trainer
        .submit_export(ExportRequest {
            checkpoint: Some(Source {
                kind: Some(source::Kind::TrainerObject(format!("{prefix}model.ckpt"))),
            }),
            config: inline(&json!({"labels": ["brain"], "description": "tiny brain"})),
            precision: "fp32".into(),
            push_to: "aiaa/default/tiny_brain:1".into(),
            with_checkpoint: false,
        })
        .await
        .unwrap()
        .into_inner();
    let seen = watch_until(&mut f.trainer, &export.id, Duration::from_secs(120), ended).await;
    let last = seen.last().unwrap();
    assert_eq!(state(last), JobState::Succeeded, "{last:#?}");
    let r = result(last);
    assert_eq!(r["pushed_to"], "aiaa/default/tiny_brain:1", "{r}");
    assert!(
        r["model"].as_str().is_some_and(|m| m.ends_with("model.pt")),
        "{r}"
    );
    let mut registry = RegistryServiceClient::new(connect(&f.platform.url("registry"), None).await.unwrap());
    let manifest = registry
        .get_manifest(GetManifestRequest {
            model: Some(ModelName {
                org: "aiaa".into(),
                team: "default".into(),
                name: "tiny_brain".into(),
            }),
            version: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(manifest.labels, vec!["brain"]);
    assert!(
        manifest.files.iter().any(|f| f.path.ends_with(".pt")),
        "{manifest:?}"
    );
    eprintln!("export done at {:?}: {r}", t0.elapsed());

    let eval = f
        .trainer
        .submit_evaluation(EvaluationRequest {
            model: Some(Source {
                kind: Some(source::Kind::RegistryRef("tiny_brain:1".into())),
            }),
            config: None,
            datalist: datalist("brain"),
            nsd_tolerance_mm: 2.0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let seen = watch_until(&mut f.trainer, &eval.id, Duration::from_secs(180), ended).await;
    let last = seen.last().unwrap();
    assert_eq!(state(last), JobState::Succeeded, "{last:#?}");
    let r = result(last);
    assert_eq!(r["metrics"]["cases"], 1, "{r}");
    assert_eq!(r["metrics"]["succeeded"], 1, "{r}");
    assert!(
        r["metrics"]["mean_dice"]
            .as_f64()
            .is_some_and(|d| (0.0..=1.0).contains(&d)),
        "{r}"
    );
    eprintln!("evaluation done at {:?}: {}", t0.elapsed(), r["metrics"]);

    // Only the child can tell: 3 input channels where the transforms make 2.
    let mut wrong = small_config(1, 1);
    wrong["num_channels"] = json!(3);
    let job = f
        .trainer
        .submit_training(training(wrong, json!({})))
        .await
        .unwrap()
        .into_inner();
    let seen = watch_until(&mut f.trainer, &job.id, Duration::from_secs(120), ended).await;
    let last = seen.last().unwrap();
    assert_eq!(state(last), JobState::Failed, "{last:#?}");
    assert!(
        last.error.contains("aiaa train ended with exit status 1"),
        "{}",
        last.error
    );
    assert!(
        last.log_tail.contains("Error:") && last.log_tail.contains("channel"),
        "{}",
        last.log_tail
    );

    // A datalist that is not there.
    let job = f
        .trainer
        .submit_training(TrainingRequest {
            datalist: datalist("nope"),
            ..training(small_config(1, 1), json!({}))
        })
        .await
        .unwrap()
        .into_inner();
    let seen = watch_until(&mut f.trainer, &job.id, Duration::from_secs(60), ended).await;
    let last = seen.last().unwrap();
    assert_eq!(state(last), JobState::Failed, "{last:#?}");
    assert!(last.error.contains("\"nope\""), "{}", last.error);

    let listed = f
        .trainer
        .list_jobs(ListJobsRequest {
            kind: "training".into(),
            state: JobState::Succeeded as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    eprintln!("all done in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_jobs_stop_with_a_checkpoint_and_resume_from_it() {
    let _turn = TURN.lock().await;
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut f = start(dir.path(), &[]).await;
    put_brain_data(&f.platform).await;

    let long = f
        .trainer
        .submit_training(training(small_config(200, 100), json!({})))
        .await
        .unwrap()
        .into_inner();
    let waiting = f
        .trainer
        .submit_training(training(small_config(1, 1), json!({})))
        .await
        .unwrap()
        .into_inner();
    // One slot: the second waits, and is cancelled at once.
    watch_until(&mut f.trainer, &long.id, Duration::from_secs(120), |j| {
        j.progress
            .as_ref()
            .is_some_and(|p| p.stage == "train" && p.done >= 3)
    })
    .await;
    let queued = f
        .trainer
        .get_job(JobRef {
            id: waiting.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&queued), JobState::Queued);
    let cancelled = f
        .trainer
        .cancel_job(JobRef {
            id: waiting.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state(&cancelled), JobState::Cancelled, "{cancelled:#?}");

    // The running one stops at a step boundary with its last checkpoint saved and uploaded.
    f.trainer
        .cancel_job(JobRef { id: long.id.clone() })
        .await
        .unwrap();
    let seen = watch_until(&mut f.trainer, &long.id, Duration::from_secs(60), ended).await;
    let last = seen.last().unwrap();
    assert_eq!(state(last), JobState::Cancelled, "{last:#?}");
    let message = &last.progress.as_ref().unwrap().message;
    assert!(
        message.contains("last checkpoint") && message.contains("resume=true"),
        "{message}"
    );
    let prefix = format!("jobs/{}/", long.id);
    let ckpt = f.store.join("trainer").join(format!("{prefix}final_model.ckpt"));
    assert!(ckpt.is_file(), "{} missing", ckpt.display());
    assert_eq!(record(&f.store, &long.id)["job"]["state"], "JOB_STATE_CANCELLED");
    let stopped_at = last.progress.as_ref().unwrap().done;
    assert!(stopped_at >= 3, "{last:?}");
    eprintln!("cancelled at step {stopped_at} after {:?}", t0.elapsed());

    // A new job continues it from that checkpoint, to one epoch further.
    let epochs = stopped_at / 2 + 1;
    let resumed = f
        .trainer
        .submit_training(TrainingRequest {
            resume: true,
            output_prefix: prefix.clone(),
            ..training(small_config(200, 100), json!({"epochs": epochs}))
        })
        .await
        .unwrap()
        .into_inner();
    let seen = watch_until(&mut f.trainer, &resumed.id, Duration::from_secs(120), ended).await;
    let last = seen.last().unwrap();
    assert_eq!(state(last), JobState::Succeeded, "{last:#?}");
    let from = seen
        .iter()
        .filter_map(|j| j.progress.as_ref())
        .find(|p| p.message.starts_with("training on"))
        .map(|p| p.message.clone())
        .unwrap_or_else(|| panic!("no start progress: {seen:#?}"));
    assert!(!from.ends_with("from step 0"), "{from}");
    assert_eq!(result(last)["steps_done"], epochs * 2);
    // Another prefix holding a run is not overwritten by a fresh job.
    let err = f
        .trainer
        .submit_training(TrainingRequest {
            output_prefix: prefix,
            ..training(small_config(1, 1), json!({}))
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    eprintln!("done in {:?}", t0.elapsed());
}

fn alive(pid: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
        .is_some_and(|c| c != 'Z' && c != 'X')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_service_does_not_leave_its_job_running() {
    let _turn = TURN.lock().await;
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut f = start(dir.path(), &[]).await;
    put_brain_data(&f.platform).await;
    let job = f
        .trainer
        .submit_training(training(small_config(200, 100), json!({})))
        .await
        .unwrap()
        .into_inner();
    // Running, with a checkpoint uploaded (one per epoch).
    let ckpt = f.store.join(format!("trainer/jobs/{}/final_model.ckpt", job.id));
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ckpt.is_file() {
        assert!(Instant::now() < deadline, "no checkpoint uploaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rec = record(&f.store, &job.id);
    assert_eq!(rec["job"]["state"], "JOB_STATE_RUNNING");
    let child = rec["pid"].as_u64().expect("the record names the child");
    assert!(alive(child));
    std::process::Command::new("kill")
        .args(["-KILL", &f.platform.pid().to_string()])
        .status()
        .unwrap();
    f.platform.stop();
    eprintln!(
        "killed the service after {:?}; its child {child} is orphaned",
        t0.elapsed()
    );

    // Restarted on the same store and work folder.
    let mut f = start(dir.path(), &[]).await;
    let now = f
        .trainer
        .get_job(JobRef { id: job.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let progress = now.progress.clone().unwrap_or_default();
    // Not the stale RUNNING state of before: queued again, or running anew.
    assert!(
        !(state(&now) == JobState::Running && progress.message.starts_with("epoch ")),
        "the job was left as it was: {now:#?}"
    );
    let seen = watch_until(&mut f.trainer, &job.id, Duration::from_secs(120), |j| {
        j.progress
            .as_ref()
            .is_some_and(|p| p.message.starts_with("training on"))
    })
    .await;
    let start = seen.last().unwrap().progress.clone().unwrap();
    assert_eq!(state(seen.last().unwrap()), JobState::Running);
    assert!(
        !start.message.ends_with("from step 0"),
        "not resumed: {}",
        start.message
    );
    assert!(!alive(child), "the old child {child} still runs");
    let rec = record(&f.store, &job.id);
    assert_eq!(rec["restarts"], 1, "{rec}");
    assert_ne!(rec["pid"].as_u64(), Some(child));
    eprintln!(
        "resumed after the restart: {} ({:?})",
        start.message,
        t0.elapsed()
    );
    f.trainer.cancel_job(JobRef { id: job.id.clone() }).await.unwrap();
    let seen = watch_until(&mut f.trainer, &job.id, Duration::from_secs(60), ended).await;
    assert_eq!(state(seen.last().unwrap()), JobState::Cancelled);
    eprintln!("done in {:?}", t0.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interactive_evaluation_job_scores_every_click() {
    let _turn = TURN.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut f = start(dir.path(), &[]).await;
    put_brain_data(&f.platform).await;
    // The shipped deepgrow model, pushed as a user would (`aiaa push`).
    let model = repo_root().join("models/deepgrow_mri_brain");
    let pushed = std::process::Command::new(aiaa_bin())
        .args(["push", "--registry", &f.platform.url("registry")])
        .args(["-m", "deepgrow_mri_brain", "-v", "1", "--type", "deepgrow"])
        .args(["--labels", "brain", "--engine-config"])
        .arg(model.join("config.json"))
        .arg(model.join("model.pt"))
        .output()
        .unwrap();
    assert!(
        pushed.status.success(),
        "aiaa push: {}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    let request = |clicks, rule: &str| EvaluationRequest {
        model: Some(Source {
            kind: Some(source::Kind::RegistryRef("deepgrow_mri_brain:1".into())),
        }),
        config: None,
        datalist: datalist("brain"),
        nsd_tolerance_mm: 1.0,
        interactive_clicks: clicks,
        click_rule: rule.into(),
        click_jitter: 0,
        seed: 7,
    };
    let err = f
        .trainer
        .submit_evaluation(request(2, "nearest"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("\"nearest\""), "{}", err.message());

    let t0 = Instant::now();
    let job = f
        .trainer
        .submit_evaluation(request(2, "centre"))
        .await
        .unwrap()
        .into_inner();
    let seen = watch_until(&mut f.trainer, &job.id, Duration::from_secs(300), ended).await;
    let last = seen.last().unwrap();
    assert_eq!(state(last), JobState::Succeeded, "{last:#?}");
    let r = result(last);
    let m = &r["metrics"];
    assert_eq!(m["cases"], 1, "{r}");
    assert_eq!(m["succeeded"], 1, "{r}");
    assert_eq!(m["clicks"], 2, "{r}");
    // The initial click and two corrections, each scored: the ROBEX head is segmented well
    // from the first click on (docs/interactive.md: 0.936, 0.936, 0.939).
    let dice: Vec<f64> = m["mean_dice_per_click"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|d| d.as_f64().unwrap())
        .collect();
    assert_eq!(dice.len(), 3, "{r}");
    assert!(dice.iter().all(|d| *d >= 0.90), "{dice:?}");
    assert!(m["mean_dsc_auc"].as_f64().is_some_and(|a| a > 0.0), "{r}");
    assert!(
        r["summary"]
            .as_str()
            .is_some_and(|s| s.ends_with("interactive.json")),
        "{r}"
    );
    eprintln!("interactive evaluation in {:?}: {m}", t0.elapsed());
}
