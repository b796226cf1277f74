//! `multi_gpu: true`: the data-parallel path through the whole trainer (schedule with a
//! per-device `batch_size`, gradient sum, checkpoints, resume on another device count), run
//! with CPU replicas (`TrainJob::cpu_replicas`) because CI machines have no GPU. The gradient
//! itself is checked against the whole batch's in `aiaa_nets::parallel`'s unit tests.

mod common;

use std::sync::atomic::AtomicBool;

use aiaa_train::{DeviceChoice, Event, TrainJob, Trainer};
use common::{brain_datalist, tiny_config, write_json};

fn job(dir: &std::path::Path, config: &serde_json::Value, copies: usize, replicas: usize) -> TrainJob {
    TrainJob {
        config: write_json(dir, "config.json", config),
        datalist: write_json(dir, "datalist.json", &brain_datalist(copies)),
        output_dir: dir.join("out"),
        device: DeviceChoice::Cpu,
        log_every: 1,
        cpu_replicas: replicas,
        ..TrainJob::default()
    }
}

fn start_of(events: &[Event]) -> (String, u64) {
    events
        .iter()
        .find_map(|e| match e {
            Event::Start {
                device,
                steps_per_epoch,
                ..
            } => Some((device.clone(), *steps_per_epoch)),
            _ => None,
        })
        .expect("a start event")
}

fn messages(events: &[Event]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { text } => Some(text.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn data_parallel_training_splits_each_step_over_the_replicas() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut config = tiny_config(3, 3);
    config["multi_gpu"] = serde_json::json!(true);

    // 6 items, batch_size 2 per device, 2 devices: 4 samples a step, 2 steps an epoch.
    let mut events = Vec::new();
    let trainer = Trainer::prepare(job(d, &config, 6, 2), &mut |e: &Event| events.push(e.clone())).unwrap();
    assert_eq!(trainer.devices(), vec!["cpu", "cpu"]);
    let summary = trainer
        .run(&AtomicBool::new(false), &mut |e: &Event| events.push(e.clone()))
        .unwrap();
    assert_eq!(start_of(&events), ("cpu,cpu".to_string(), 2));
    assert!(
        messages(&events).contains("data-parallel training on 2 devices (cpu, cpu)"),
        "{}",
        messages(&events)
    );
    assert_eq!((summary.epochs_done, summary.steps_done), (3, 6));
    let loss = summary.last_loss.unwrap();
    assert!(loss.is_finite() && loss < 2.0, "loss {loss}");
    let dice = summary.best_metric.unwrap();
    assert!((0.0..=1.0).contains(&dice), "validation Dice {dice}");
    assert!(d.join("out/model.ckpt").is_file() && d.join("out/final_model.ckpt").is_file());

    // Resuming that run on one device: another schedule, so it continues from the start of
    // the next epoch with 3 steps an epoch, and says so.
    let mut config4 = config.clone();
    config4["epochs"] = serde_json::json!(4);
    let mut resumed = job(d, &config4, 6, 0);
    resumed.resume = true;
    let mut events = Vec::new();
    let trainer = Trainer::prepare(resumed, &mut |e: &Event| events.push(e.clone())).unwrap();
    let summary = trainer
        .run(&AtomicBool::new(false), &mut |e: &Event| events.push(e.clone()))
        .unwrap();
    assert_eq!(start_of(&events), ("cpu".to_string(), 3));
    assert!(messages(&events).contains("schedule"), "{}", messages(&events));
    assert_eq!(
        (summary.epochs_done, summary.steps_done, summary.steps_this_run),
        (4, 9, 3)
    );
}

#[test]
fn multi_gpu_without_devices_trains_on_one_and_says_so() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let mut config = tiny_config(1, 1);
    config["multi_gpu"] = serde_json::json!(true);
    let mut events = Vec::new();
    let mut j = job(dir.path(), &config, 2, 0);
    j.dry_run = true;
    let trainer = Trainer::prepare(j, &mut |e: &Event| events.push(e.clone())).unwrap();
    assert_eq!(trainer.devices(), vec!["cpu"]);
    assert!(
        messages(&events).contains("training on one device (cpu)"),
        "{}",
        messages(&events)
    );

    // Replicas are only for multi_gpu.
    config["multi_gpu"] = serde_json::json!(false);
    let mut j = job(dir.path(), &config, 2, 2);
    j.dry_run = true;
    let mut events = Vec::new();
    let trainer = Trainer::prepare(j, &mut |e: &Event| events.push(e.clone())).unwrap();
    assert_eq!(trainer.devices(), vec!["cpu"]);
    assert_eq!(start_of(&events).1, 1);
}
