//! Training end to end through the real `aiaa` binary, on the real brain volumes:
//!
//! - a run stopped with Ctrl-C (SIGINT) at a step boundary, resumed, killed with SIGKILL in
//!   the middle of an epoch and resumed again ends where an uninterrupted run ends;
//! - the DEXTR3D brain recipe (`recipes/annotation_mri_brain`), shortened, trains on the
//!   MNI152 head, validating on MNI152's variants (the recipe's datalist), within 3 minutes;
//!   exported with `aiaa export`, the inference service serves it, and its mask of the
//!   held-out ROBEX brain from six extreme points (the first time the model meets ROBEX)
//!   reaches a Dice >= 0.70 on the image's own grid.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aiaa_e2e::aiaa_client::*;
use aiaa_e2e::volumes::{decode, dice, foreground, read};
use aiaa_e2e::{Platform, aiaa_bin, repo_root, run_cli, testdata};
use aiaa_testdata::train::{TinyTrain, brain_datalist, flip};
use serde_json::{Value, json};

fn write_json(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
    p
}

fn summary(out: &Path) -> Value {
    let p = out.join("train_summary.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// A small config on the brain data: 24³ crops, a 2-level U-Net of 4 filters, one loader
/// thread (so the loop waits for data and a kill lands inside a step), a last checkpoint
/// after every epoch, zoom, flip and noise augmentation, a cosine learning rate.
fn small_config(epochs: u64) -> Value {
    TinyTrain {
        size: 24,
        levels: 2,
        num_workers: 1,
        epochs,
        per_valid: 2,
        seed: 5,
        lr_policy: Some(json!({"name": "lr_policy.CosineAnnealing", "total_steps": 2 * epochs})),
        spatial_augment: vec![
            json!({"name": "transforms.NPRandomZoom3D", "applied_keys": ["image", "label"],
                   "lower_limits": [0.9, 0.9, 0.9], "upper_limits": [1.1, 1.1, 1.1], "keep_size": true}),
            flip(),
        ],
        intensity_augment: vec![
            json!({"name": "transforms.AddGaussianNoise", "field": "image", "std": 0.05}),
        ],
    }
    .config()
}

fn train_args<'a>(cfg: &'a str, dl: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "segmentation",
        "-e",
        cfg,
        "-d",
        dl,
        "-r",
        out,
        "--device",
        "cpu",
        "--progress",
        "json",
        "--log_every",
        "1",
    ];
    a.extend_from_slice(extra);
    a
}

/// Starts `aiaa train`, reads its JSON progress lines, and calls `on_step(step, pid)` for
/// each step event; returns the exit status and every event.
fn train_watching(
    args: &[&str],
    mut on_step: impl FnMut(u64, u32),
) -> (std::process::ExitStatus, Vec<Value>) {
    let mut child = Command::new(aiaa_bin())
        .args(args)
        .env("AIAA_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start aiaa train");
    let pid = child.id();
    let mut events = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let Ok(line) = line else { break };
        let e: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if e["event"] == "step" {
            on_step(e["step"].as_u64().unwrap(), pid);
        }
        events.push(e);
    }
    (child.wait().unwrap(), events)
}

fn last_checkpoint_step(events: &[Value]) -> Option<u64> {
    events
        .iter()
        .filter(|e| e["event"] == "checkpoint" && e["kind"] == "last")
        .filter_map(|e| e["step"].as_u64())
        .next_back()
}

fn start_step(events: &[Value]) -> u64 {
    events.iter().find(|e| e["event"] == "start").unwrap()["start_step"]
        .as_u64()
        .unwrap()
}

#[test]
fn interrupted_killed_and_resumed_runs_end_like_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let epochs = 10;
    let cfg = write_json(d, "config.json", &small_config(epochs));
    // Four copies of the MNI152 head: two steps per epoch of two samples.
    let dl = write_json(d, "datalist.json", &brain_datalist(4));
    let (cfg, dl) = (cfg.to_str().unwrap(), dl.to_str().unwrap());
    let a = d.join("a");
    let b = d.join("b");
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());

    // Uninterrupted.
    let (status, _, stderr) = run_cli(&train_args(cfg, dl, a_s, &[]), &[]);
    assert!(status.success(), "{stderr}");
    let want = summary(&a);
    assert_eq!(want["outcome"], "completed");
    assert_eq!(want["steps_done"], 2 * epochs);

    // Ctrl-C after step 5: the run finishes that step, writes its last checkpoint and exits 130.
    let mut sent = false;
    let (status, events) = train_watching(&train_args(cfg, dl, b_s, &[]), |step, pid| {
        if step == 5 && !sent {
            sent = true;
            let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
        }
    });
    assert_eq!(status.code(), Some(130), "{events:?}");
    let stopped = summary(&b);
    assert_eq!(stopped["outcome"], "stopped");
    let at = stopped["steps_done"].as_u64().unwrap();
    assert!((5..=7).contains(&at), "stopped at step {at}");
    assert_eq!(
        last_checkpoint_step(&events),
        Some(at),
        "the last checkpoint is at the stop"
    );

    // Resumed, then SIGKILL inside epoch 7 (after its first step, step 13, while the loop
    // waits for the data of step 14).
    let (status, events) = train_watching(&train_args(cfg, dl, b_s, &["--resume"]), |step, pid| {
        if step == 13 {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    });
    assert!(!status.success());
    assert_eq!(start_step(&events), at, "resumed from the stop");
    let killed_after = last_checkpoint_step(&events).expect("checkpoints before the kill");
    let stepped: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["step"].as_u64().unwrap())
        .collect();
    eprintln!(
        "stopped at {at}; killed after step {}, last checkpoint at {killed_after}",
        stepped.last().unwrap()
    );

    // Resumed from the last checkpoint, to the end.
    let (status, events) = train_watching(&train_args(cfg, dl, b_s, &["--resume"]), |_, _| {});
    assert!(status.success(), "{events:?}");
    assert_eq!(
        start_step(&events),
        killed_after,
        "resumed from the last checkpoint"
    );
    let got = summary(&b);
    assert_eq!(got["outcome"], "completed");
    assert_eq!(got["steps_done"], want["steps_done"]);
    assert_eq!(got["epochs_done"], want["epochs_done"]);

    // The same validation curve (same epochs, Dice within noise) and final loss.
    let curve = |s: &Value| -> Vec<(u64, f64)> {
        s["curve"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["epoch"].as_u64().unwrap(),
                    p["metrics"]["mean_dice"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let (cw, cg) = (curve(&want), curve(&got));
    assert_eq!(
        cw.iter().map(|p| p.0).collect::<Vec<_>>(),
        cg.iter().map(|p| p.0).collect::<Vec<_>>()
    );
    for ((e, w), (_, g)) in cw.iter().zip(&cg) {
        assert!(
            (w - g).abs() <= 0.01,
            "epoch {e}: Dice {g} resumed vs {w} uninterrupted"
        );
    }
    let (lw, lg) = (
        want["last_loss"].as_f64().unwrap(),
        got["last_loss"].as_f64().unwrap(),
    );
    assert!(
        (lw - lg).abs() <= 0.02 * lw.max(0.1),
        "final loss {lg} resumed vs {lw}"
    );
    eprintln!("uninterrupted curve {cw:?}\nresumed curve       {cg:?}\nfinal loss {lw} vs {lg}");
}

/// The recipe's config with a short schedule.
fn short_recipe(epochs: u64, per_valid: u64) -> Value {
    let path = repo_root().join("recipes/annotation_mri_brain/config_train.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    c["epochs"] = json!(epochs);
    c["num_training_epoch_per_valid"] = json!(per_valid);
    c["train"]["lr_policy"]["total_steps"] = json!(epochs);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_brain_annotation_recipe_trains_within_3_minutes_and_reaches_070_on_robex_when_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = repo_root().join("recipes/annotation_mri_brain");
    testdata();
    let datalist = recipe.join("datalist.json");
    let dl = datalist.to_str().unwrap();

    // The recipe as shipped passes every check and runs.
    let dry = d.join("dry");
    let config = recipe.join("config_train.json");
    let (status, stdout, stderr) = run_cli(
        &train_args(
            config.to_str().unwrap(),
            dl,
            dry.to_str().unwrap(),
            &["--dry-run"],
        ),
        &[],
    );
    assert!(status.success(), "{stderr}\n{stdout}");
    assert!(!dry.exists(), "a dry run writes nothing");

    // The short variant.
    let cfg = write_json(d, "config.json", &short_recipe(80, 10));
    let out = d.join("out");
    let (status, stdout, stderr) = run_cli(
        &train_args(cfg.to_str().unwrap(), dl, out.to_str().unwrap(), &[]),
        &[],
    );
    assert!(status.success(), "{stderr}\n{stdout}");
    let s = summary(&out);
    let best = s["best_metric"].as_f64().unwrap();
    let seconds = s["seconds_total"].as_f64().unwrap();
    eprintln!(
        "short recipe: best mean Dice {best:.4} on the MNI152 variants at epoch {}, {seconds:.0} s, {:.2} it/s, \
         data wait {:.1}%; curve {}",
        s["best_epoch"],
        s["it_per_s"].as_f64().unwrap(),
        100.0 * s["data_wait_share"].as_f64().unwrap(),
        s["curve"]
    );
    assert!(best >= 0.70, "best mean Dice {best}");
    assert!(seconds <= 180.0, "trained for {seconds} s");

    // Export, as the recipe's docs say.
    let exported = d.join("exported");
    let (status, stdout, stderr) = run_cli(
        &[
            "export",
            "--model_file_format",
            "CKPT",
            "--model_file_path",
            out.to_str().unwrap(),
            "--model_name",
            "model",
            "--input_node_names",
            "NV_INPUT_IMAGE",
            "--output_node_names",
            "NV_OUTPUT_LABEL",
            "--output_dir",
            exported.to_str().unwrap(),
            "--labels",
            "brain",
            "--version",
            "1",
        ],
        &[],
    );
    assert!(status.success(), "{stderr}\n{stdout}");
    let size = std::fs::metadata(exported.join("model.pt")).unwrap().len();
    assert!(size <= 10_000_000, "model.pt is {size} bytes");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(exported.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["roi"], json!([48, 48, 48]));
    assert_eq!(config["model_path"], "model.pt");

    // Served by the annotation server: six extreme points of the ROBEX brain.
    let pool = write_json(
        d,
        "engine_pool.json",
        &json!([{"name": "annotation_mri_brain", "class": "Dextr3dCroppedEngine",
                 "module": "aiaa.engines.dextr3d", "config_file": exported.join("config.json"),
                 "labels": ["brain"]}]),
    );
    let store = d.join("store");
    let platform = Platform::start(
        &["up", "--engine-pool", pool.to_str().unwrap()],
        &[("AIAA_STORE_URL", store.to_str().unwrap())],
    )
    .await;
    let gw = platform.addrs["gateway"];
    let image_path = testdata().join("robex/atlas.nii.gz");
    let truth = read(&testdata().join("robex/atlas_mask.nii.gz"));
    let points = aiaa_transforms::extreme::extreme_points(&truth).unwrap();
    let params = json!({ "points": points }).to_string();
    let bytes = std::fs::read(&image_path).unwrap();
    let body = python_body(&[("params", &params)], &[("image", "atlas.nii.gz", &bytes)]);
    let answer = send(
        gw,
        &python_request("POST", "/v1/dextr3d?model=annotation_mri_brain", &body),
    )
    .await;
    let result = parse_multipart_answer(&answer);
    let mask = decode("result.nii.gz", result.file.as_ref().unwrap());
    assert_eq!(mask.dims, truth.dims);
    let served = dice(&foreground(&mask), &foreground(&truth));
    eprintln!(
        "served: Dice {served:.4} on the ROBEX grid; params {}",
        result.params
    );
    assert!(served >= 0.70, "served Dice {served}");

    // Exported again and pushed to the registry as a new version, with its engine config.
    let registry = platform.url("registry");
    let (status, stdout, stderr) = run_cli(
        &[
            "export",
            "--model_file_path",
            out.join("model.ckpt").to_str().unwrap(),
            "--output_dir",
            d.join("pushed").to_str().unwrap(),
            "--labels",
            "brain",
            "--version",
            "7",
            "--push",
            "annotation_mri_brain",
            "--registry",
            &registry,
        ],
        &[],
    );
    assert!(status.success(), "{stderr}\n{stdout}");
    assert!(
        stdout.contains("Pushed version 7 of annotation_mri_brain (2 files"),
        "{stdout}"
    );
    let (status, stdout, _) = run_cli(
        &["pull", "--registry", &registry, "-lm", "--type", "annotation"],
        &[],
    );
    assert!(status.success());
    assert!(
        stdout.contains("annotation_mri_brain") && stdout.contains("brain"),
        "{stdout}"
    );
}

/// The model shipped in `models/annotation_mri_brain` (the full recipe, exported; see
/// docs/training.md), served from the repository's engine pool: the ROBEX brain from its six
/// extreme points, Dice >= 0.85 on the image's own grid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_brain_annotation_model_is_served_from_the_engine_pool() {
    let dir = tempfile::tempdir().unwrap();
    testdata();
    let pool = repo_root().join("models/engine_pool.json");
    let store = dir.path().join("store");
    let platform = Platform::start(
        &["up", "--engine-pool", pool.to_str().unwrap()],
        &[("AIAA_STORE_URL", store.to_str().unwrap())],
    )
    .await;
    let gw = platform.addrs["gateway"];
    let models = send(gw, &simple("GET", "/v1/models?model=annotation_mri_brain"))
        .await
        .json();
    assert_eq!(models["type"], "annotation", "{models}");
    assert_eq!(models["labels"], json!(["brain"]));
    assert_eq!(models["roi"], json!([48, 48, 48]));
    let truth = read(&testdata().join("robex/atlas_mask.nii.gz"));
    let points = aiaa_transforms::extreme::extreme_points(&truth).unwrap();
    let params = json!({ "points": points }).to_string();
    let bytes = std::fs::read(testdata().join("robex/atlas.nii.gz")).unwrap();
    let body = python_body(&[("params", &params)], &[("image", "atlas.nii.gz", &bytes)]);
    let answer = send(
        gw,
        &python_request("POST", "/v1/dextr3d?model=annotation_mri_brain", &body),
    )
    .await;
    let result = parse_multipart_answer(&answer);
    let mask = decode("result.nii.gz", result.file.as_ref().unwrap());
    assert_eq!(mask.dims, truth.dims);
    let d = dice(&foreground(&mask), &foreground(&truth));
    eprintln!("shipped annotation_mri_brain on ROBEX: Dice {d:.4}");
    assert!(d >= 0.85, "Dice {d}");
}
