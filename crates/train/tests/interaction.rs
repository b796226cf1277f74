//! Training an interactive (deepgrow) model with simulated clicks (`interaction` in the train
//! config, `aiaa_train::interaction`) on the real MNI152 head, resized whole to 24³
//! (`transforms.Resize`): the run completes with finite losses and validates after one
//! click; the same seed gives the same losses (the clicks are seeded per step); the export is
//! a deepgrow model config the deepgrow engine loads and answers clicks with; a config whose
//! `num_channels` does not count the guidance channels, or whose `max_shift` moves nothing,
//! is refused naming the key.

mod common;

use common::{lock, train_tiny, write_json};
use serde_json::{Value, json};

fn interactive_config(epochs: u64) -> Value {
    let load = json!({"name": "transforms.LoadNifty", "fields": ["image", "label"]});
    let resize =
        json!({"name": "transforms.Resize", "fields": ["image", "label"], "spatial_size": [24, 24, 24]});
    let normalize = json!({"name": "transforms.NormalizeIntensity", "fields": "image"});
    json!({
        "num_channels": 4,
        "num_classes": 2,
        "batch_size": 2,
        "epochs": epochs,
        "num_workers": 1,
        "network_input_size": [24, 24, 24],
        "num_training_epoch_per_valid": 1,
        "seed": 3,
        "checkpoint_interval_s": 0,
        "interaction": {"max_rounds": 2, "no_click_probability": 0.25, "sigma": 1.0,
                        "previous_mask": true, "damaged_mask_probability": 0.5, "max_damage": 2},
        "net_config": {"name": "UNet3D", "num_filters": 4, "levels": 1},
        "train": {
            "loss": {"name": "losses.dice_ce_loss"},
            "optimizer": {"name": "Adam", "lr": 1e-2},
            "pre_transforms": [load.clone(), resize.clone(),
                               {"name": "transforms.FlipAxisRandom", "fields": ["image", "label"], "axis": [0]},
                               normalize.clone()]
        },
        "validate": {
            "metrics": [{"name": "MetricAverageFromArrayDice", "tag": "mean_dice",
                         "stopping_metric": true, "applied_key": "model"}],
            "pre_transforms": [load, resize, normalize]
        }
    })
}

fn losses(events: &[aiaa_train::Event]) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .filter(|v| v["event"] == "step")
        .map(|v| v["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn a_click_simulation_run_trains_validates_after_one_click_and_repeats() {
    let _l = lock();
    let a = tempfile::tempdir().unwrap();
    let (summary, events) = train_tiny(a.path(), &interactive_config(2), 2);
    let s = serde_json::to_value(&summary).unwrap();
    assert_eq!(s["epochs_done"], 2, "{s}");
    let first = losses(&events);
    assert_eq!(first.len(), 2, "one step per epoch: {s}");
    assert!(first.iter().all(|l| l.is_finite()), "{first:?}");
    let dice = s["best_metric"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&dice), "{s}");
    eprintln!("interactive smoke: losses {first:?}, Dice after one click {dice:.4}");

    let b = tempfile::tempdir().unwrap();
    let (_, again) = train_tiny(b.path(), &interactive_config(2), 2);
    assert_eq!(losses(&again), first, "the same seed, the same clicks and losses");

    // Export: a deepgrow model config, which the deepgrow engine loads.
    let exported = aiaa_train::export::export(&aiaa_train::export::ExportJob {
        checkpoint: a.path().join("out/model.ckpt"),
        output_dir: a.path().join("exported"),
        model_name: "model".into(),
        precision: aiaa_nets::export::Precision::Fp32,
        device: aiaa_train::DeviceChoice::Cpu,
        engine: None,
        padding: None,
        labels: vec!["brain".into()],
        description: None,
        version: None,
        thresh: 0.5,
        input_node_names: None,
        output_node_names: None,
    })
    .unwrap();
    let c = &exported.config;
    assert_eq!(c["type"], "deepgrow", "{c}");
    assert_eq!(c["roi"], json!([24, 24, 24]), "{c}");
    assert_eq!(
        (c["previous_mask"].clone(), c["automatic"].clone()),
        (json!(true), json!(true)),
        "{c}"
    );
    assert_eq!(c["sigma"], 1.0, "{c}");
    // Loading and resizing are the engine's: only the normalisation is left.
    assert_eq!(
        c["pre_transforms"],
        json!([{"name": "transforms.NormalizeIntensity", "fields": "image"}]),
        "{c}"
    );
    let entry = aiaa_engines::pool::PoolEntry {
        name: "dg".into(),
        class: String::new(),
        module: None,
        config_file: exported.config_path.clone(),
        labels: vec![],
    };
    let mut spec = aiaa_engines::engines::EngineSpec::from_pool_entry(&entry).unwrap();
    spec.class = aiaa_engines::engines::class_for("", &spec.config).unwrap();
    assert_eq!(spec.class, "DeepgrowEngine");
    let devices = aiaa_engines::device::Devices::start(&[tch::Device::Cpu], 1).unwrap();
    let engine = aiaa_engines::engines::build(&spec, &devices).unwrap();
    let head = aiaa_imaging::io::read_volume(
        &common::testdata().join("mni152/MNI152_T1.nii.gz"),
        &aiaa_imaging::ReadOptions::default(),
    )
    .unwrap();
    let params = json!({"foreground": [[90, 108, 90]], "background": []});
    let mut t = aiaa_engines::engines::Timings::default();
    let out = engine.infer(&head, params.as_object().unwrap(), &mut t).unwrap();
    assert_eq!(out.mask.dims, head.dims);
    assert_eq!(out.params["foreground"], json!([[90.0, 108.0, 90.0]]));
    assert_eq!(out.params["previous_mask"], "none");
    // Background clicks with nothing to correct are refused, naming the key.
    let bg = json!({"background": [[10, 10, 10]]});
    let e = engine
        .infer(&head, bg.as_object().unwrap(), &mut t)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("params.background"), "{e}");

    // num_channels must count the guidance and mask channels.
    let mut bad = interactive_config(1);
    bad["num_channels"] = json!(1);
    let c = tempfile::tempdir().unwrap();
    let e = aiaa_train::TrainConfig::read(&write_json(c.path(), "bad.json", &bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("interaction") && e.contains("num_channels"), "{e}");
    // A shift of less than half a voxel moves nothing: refused, naming the key.
    let mut bad = interactive_config(1);
    bad["interaction"]["shift_probability"] = json!(0.5);
    bad["interaction"]["max_shift"] = json!(0.2);
    let e = aiaa_train::TrainConfig::read(&write_json(c.path(), "shift.json", &bad))
        .unwrap_err()
        .to_string();
    assert!(e.contains("interaction") && e.contains("max_shift"), "{e}");
}
