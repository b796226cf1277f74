//! Fine-tuning (`-c CHECKPOINT`): the new run starts from the checkpoint's weights (a
//! checkpoint file or its folder), with a fresh schedule; weights of another network load
//! where they fit and the rest is listed; a file that is no checkpoint is refused, named.

mod common;

use aiaa_nets::Network;
use aiaa_train::{Event, TrainError, TrainJob, Trainer};
use common::{brain_datalist, tiny_config, train_tiny, write_json};
use tch::Device;
use tch::nn::VarStore;

#[test]
fn fine_tuning_starts_from_the_checkpoint_weights() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train_tiny(d, &tiny_config(2, 2), 2);
    let ckpt = d.join("out/model.ckpt");

    // The weights as saved.
    let cfg = tiny_config(2, 2);
    let net_cfg = aiaa_nets::NetConfig::from_json(&cfg["net_config"]).unwrap();
    let mut saved = VarStore::new(Device::Cpu);
    let _net = Network::new(&saved.root(), &net_cfg, 2, 2).unwrap();
    aiaa_nets::checkpoint::load_weights(&ckpt, &mut saved, true).unwrap();

    let fine = d.join("fine");
    std::fs::create_dir_all(&fine).unwrap();
    let mut tuned = cfg.clone();
    tuned["train"]["optimizer"]["lr"] = serde_json::json!(1e-4);
    let mut events = Vec::new();
    let trainer = Trainer::prepare(
        TrainJob {
            config: write_json(&fine, "config.json", &tuned),
            datalist: write_json(&fine, "datalist.json", &brain_datalist(2)),
            output_dir: fine.join("out"),
            // The folder: its model.ckpt.
            checkpoint: Some(d.join("out")),
            ..TrainJob::default()
        },
        &mut |e: &Event| events.push(e.clone()),
    )
    .unwrap();
    let vars = trainer.var_store().variables();
    let want = saved.variables();
    assert_eq!(vars.len(), want.len());
    for (name, t) in &vars {
        assert!(t.equal(&want[name]), "{name} differs from the checkpoint");
    }
    let note = events
        .iter()
        .find_map(|e| match e {
            Event::Message { text } if text.starts_with("fine-tuning") => Some(text.clone()),
            _ => None,
        })
        .expect("a fine-tuning message");
    assert!(
        note.contains(&format!("{} variables loaded", want.len())),
        "{note}"
    );
    assert!(matches!(
        events.iter().find(|e| matches!(e, Event::Start { .. })),
        Some(Event::Start {
            start_step: 0,
            start_epoch: 0,
            ..
        })
    ));

    // Weights of another network: what fits is loaded, the rest keeps its initialisation and
    // is listed.
    let mut other = cfg.clone();
    other["net_config"]["num_filters"] = serde_json::json!(3);
    let mut events = Vec::new();
    Trainer::prepare(
        TrainJob {
            config: write_json(&fine, "config.json", &other),
            datalist: write_json(&fine, "datalist.json", &brain_datalist(2)),
            output_dir: fine.join("out2"),
            checkpoint: Some(ckpt.clone()),
            ..TrainJob::default()
        },
        &mut |e: &Event| events.push(e.clone()),
    )
    .unwrap();
    assert!(
        events.iter().any(|e| matches!(e, Event::Message { text }
            if text.contains("kept as initialised") && text.contains("of another shape"))),
        "{events:?}"
    );

    // A file that is no checkpoint is refused, naming it.
    let bogus = fine.join("datalist.json");
    let err = Trainer::prepare(
        TrainJob {
            config: write_json(&fine, "config.json", &cfg),
            datalist: bogus.clone(),
            output_dir: fine.join("out3"),
            checkpoint: Some(bogus.clone()),
            ..TrainJob::default()
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, TrainError::Checkpoint { path, .. } if path == &bogus),
        "{err}"
    );
}
