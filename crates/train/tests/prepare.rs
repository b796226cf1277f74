//! Everything is checked before training, and each error names its file and the key or
//! item at fault: bad config keys and transforms, missing, unreadable and empty files, an
//! output folder that would be overwritten, a resume with nothing to resume.

mod common;

use std::path::Path;

use aiaa_imaging::{Geometry, Volume, Voxels};
use aiaa_train::{TrainError, TrainJob, Trainer};
use common::{brain_datalist, testdata, tiny_config, write_json};
use serde_json::json;

fn job(dir: &Path) -> TrainJob {
    TrainJob {
        config: dir.join("config.json"),
        datalist: dir.join("datalist.json"),
        output_dir: dir.join("out"),
        dry_run: false,
        ..TrainJob::default()
    }
}

fn prepare(job: TrainJob) -> Result<Trainer, TrainError> {
    Trainer::prepare(job, &mut |_| {})
}

fn write_volume(path: &Path, voxels: Voxels) {
    let vol = Volume::scalar([8, 8, 8], Geometry::default(), voxels).unwrap();
    aiaa_imaging::io::write_volume(&vol, path).unwrap();
}

#[test]
fn config_errors_name_the_file_and_key() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    write_json(dir.path(), "datalist.json", &brain_datalist(1));
    let cases = [
        (
            "/train/pre_transforms/2/name",
            json!("transforms.RandomFlip"),
            "train.pre_transforms",
            "RandomFlip",
        ),
        (
            "/train/optimizer/name",
            json!("Adamax"),
            "train.optimizer.name",
            "Adamax",
        ),
        ("/net_config/levels", json!(9), "net_config.levels", "1..=6"),
        (
            "/validate/metrics/0/tag",
            json!(3),
            "validate.metrics[0].tag",
            "string",
        ),
        (
            "/network_input_size",
            json!([16, 16]),
            "network_input_size",
            "three",
        ),
    ];
    for (pointer, value, key, words) in cases {
        let mut cfg = tiny_config(2, 1);
        *cfg.pointer_mut(pointer).unwrap() = value;
        write_json(dir.path(), "config.json", &cfg);
        match prepare(job(dir.path())) {
            Err(e @ TrainError::Config { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("config.json") && msg.contains(&format!("`{key}`")) && msg.contains(words),
                    "{pointer}: {msg}"
                );
            }
            other => panic!("{pointer}: expected a config error, got {other:?}"),
        }
    }
    // A validation list without a validate section.
    let mut cfg = tiny_config(2, 1);
    cfg.as_object_mut().unwrap().remove("validate");
    write_json(dir.path(), "config.json", &cfg);
    let msg = prepare(job(dir.path())).unwrap_err().to_string();
    assert!(msg.contains("`validate`"), "{msg}");
}

#[test]
fn datalist_errors_name_the_item_and_key() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_json(d, "config.json", &tiny_config(2, 1));
    let t = testdata();
    let image = t.join("mni152/MNI152_T1.nii.gz");
    let label = t.join("mni152/MNI152_mask.nii.gz");
    write_volume(&d.join("empty_label.nii.gz"), Voxels::U8(vec![0; 512]));
    write_volume(&d.join("small.nii.gz"), Voxels::F32(vec![1.0; 512]));
    std::fs::write(d.join("garbage.nii.gz"), b"not a NIfTI file at all").unwrap();

    let expect = |datalist: serde_json::Value, words: &[&str]| {
        write_json(d, "datalist.json", &datalist);
        match prepare(job(d)) {
            Err(e @ TrainError::Datalist { .. }) => {
                let msg = e.to_string();
                for w in words {
                    assert!(msg.contains(w), "missing {w:?} in: {msg}");
                }
            }
            other => panic!("expected a datalist error for {datalist}, got {other:?}"),
        }
    };
    // A missing file: relative paths start at the datalist's folder.
    expect(
        json!({"training": [{"image": image, "label": label}, {"image": image, "label": "nope/lb.nii.gz"}]}),
        &[
            "datalist.json",
            "training[1]",
            "`label`",
            "nope/lb.nii.gz",
            "does not exist",
        ],
    );
    // A file that does not decode.
    expect(
        json!({"training": [{"image": "garbage.nii.gz", "label": label}]}),
        &["training[0]", "`image`", "garbage.nii.gz", "cannot be read"],
    );
    // A validation label without foreground, which CropForegroundObject needs.
    expect(
        json!({"training": [{"image": image, "label": label}],
               "validation": [{"image": "small.nii.gz", "label": "empty_label.nii.gz"}]}),
        &["validation[0]", "`label`", "empty_label.nii.gz", "no foreground"],
    );
    // Validation items need a label when there are metrics.
    expect(
        json!({"training": [{"image": image, "label": label}], "validation": [{"image": image}]}),
        &["validation[0]", "`label`", "missing"],
    );
    // A misspelt list.
    expect(
        json!({"training": [{"image": image, "label": label}], "validaton": []}),
        &["validaton", "unknown key"],
    );

    // --file_root moves relative paths.
    write_json(
        d,
        "datalist.json",
        &json!({"training": [{"image": "mni152/MNI152_T1.nii.gz", "label": "mni152/MNI152_mask.nii.gz"}]}),
    );
    let mut cfg = tiny_config(2, 1);
    cfg.as_object_mut().unwrap().remove("validate");
    write_json(d, "config.json", &cfg);
    let msg = prepare(job(d)).unwrap_err().to_string();
    assert!(
        msg.contains("training[0]") && msg.contains("does not exist"),
        "{msg}"
    );
    let ok = prepare(TrainJob {
        file_root: Some(t.clone()),
        ..job(d)
    });
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn output_folder_and_checkpoint_errors() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_json(d, "config.json", &tiny_config(2, 1));
    write_json(d, "datalist.json", &brain_datalist(1));
    let msg = prepare(TrainJob {
        resume: true,
        ..job(d)
    })
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("final_model.ckpt") && msg.contains("nothing to resume"),
        "{msg}"
    );
    let msg = prepare(TrainJob {
        checkpoint: Some(d.join("pretrained.ckpt")),
        ..job(d)
    })
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("pretrained.ckpt") && msg.contains("no such file"),
        "{msg}"
    );
    std::fs::create_dir_all(d.join("out")).unwrap();
    std::fs::write(d.join("out/final_model.ckpt"), b"x").unwrap();
    let msg = prepare(job(d)).unwrap_err().to_string();
    assert!(msg.contains("already holds a training run"), "{msg}");
    // A damaged last checkpoint is named when resuming.
    let msg = prepare(TrainJob {
        resume: true,
        ..job(d)
    })
    .unwrap_err()
    .to_string();
    assert!(msg.contains("final_model.ckpt"), "{msg}");
}
