//! `aiaa evaluate` and `aiaa infer` end to end: the real binary with the seed's flags, the
//! real brain-extraction model (deepbet, models/segmentation_mri_brain) over MNI152 and the
//! ROBEX head, against the real platform's gateway.
//!
//! - the Dice the reports hold is the Dice of the mask the gateway returns for the same
//!   image (computed here), and the predictions written are that mask voxel for voxel;
//! - a missing file in the list is reported on stderr and in the reports, and skipped;
//! - `infer` runs an unlabelled list; the throughput and the model's waiting share are
//!   printed.

use std::path::Path;

use aiaa_e2e::aiaa_client::*;
use aiaa_e2e::volumes::{decode, dice, foreground, read};
use aiaa_e2e::{Platform, repo_root, run_cli, testdata};
use aiaa_imaging::Volume;
use serde_json::json;

/// The gateway's mask for an image, as the Python client gets it.
async fn gateway_mask(platform: &Platform, image: &Path) -> Volume {
    let bytes = std::fs::read(image).unwrap();
    let body = python_body(&[("params", "{}")], &[("image", "image.nii.gz", &bytes)]);
    let answer = send(
        platform.addrs["gateway"],
        &python_request("POST", "/v1/segmentation?model=segmentation_mri_brain", &body),
    )
    .await;
    let result = parse_multipart_answer(&answer);
    decode("result.nii.gz", result.file.as_ref().expect("a mask"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_reports_the_dice_of_the_gateways_masks() {
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("mni152/MNI152_T1.nii.gz", "mni152/MNI152_mask.nii.gz", 0.95),
        ("robex/atlas.nii.gz", "robex/atlas_mask.nii.gz", 0.96),
    ];

    // The gateway's answers, with the engine pool `aiaa up` serves.
    let pool = repo_root().join("models/engine_pool.json");
    let store = dir.path().join("store");
    let mut platform = Platform::start(
        &["up", "--engine-pool", pool.to_str().unwrap()],
        &[("AIAA_STORE_URL", store.to_str().unwrap())],
    )
    .await;
    let mut masks = Vec::new();
    for (image, _, _) in &cases {
        masks.push(gateway_mask(&platform, &data.join(image)).await);
    }
    platform.stop();

    // The seed's command line (6.4.2.6), plus a missing case.
    let list = dir.path().join("datalist.json");
    let mut entries: Vec<_> = cases
        .iter()
        .map(|(i, l, _)| json!({"image": i, "label": l}))
        .collect();
    entries.push(json!({"image": "mni152/missing.nii.gz", "label": "mni152/MNI152_mask.nii.gz"}));
    std::fs::write(&list, json!({"validation": entries}).to_string()).unwrap();
    let out = dir.path().join("eval");
    let model = data.join("deepbet/model.pt");
    let config = repo_root().join("models/segmentation_mri_brain/config.json");
    let (status, _, stderr) = run_cli(
        &[
            "evaluate",
            "--model_save_path",
            model.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--file_root",
            data.to_str().unwrap(),
            "--output_path",
            out.to_str().unwrap(),
            "--data_file",
            list.to_str().unwrap(),
            "--setup",
            "standard",
            "--device",
            "cpu",
        ],
        &[],
    );
    eprintln!("{stderr}");
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("FAILED mni152/missing.nii.gz (read)"), "{stderr}");
    assert!(
        stderr.contains("cases/s") && stderr.contains("waited for data"),
        "{stderr}"
    );

    let raw = std::fs::read_to_string(out.join("mean_dice_raw_results.txt")).unwrap();
    for ((image, label, min_dice), mask) in cases.iter().zip(&masks) {
        let truth = read(&data.join(label));
        let expected = dice(&foreground(mask), &foreground(&truth));
        let row = raw
            .lines()
            .find(|l| l.starts_with(&format!("{image}\t1\t")))
            .unwrap_or_else(|| panic!("no row for {image}: {raw}"));
        let reported: f64 = row.split('\t').nth(3).unwrap().parse().unwrap();
        eprintln!("{image}: gateway Dice {expected:.6}, reported {reported:.6}");
        assert!(
            (reported - expected).abs() < 1e-6,
            "{image}: {reported} vs {expected}"
        );
        assert!(reported >= *min_dice, "{image}: Dice {reported}");
        let name = image.rsplit('/').next().unwrap().trim_end_matches(".nii.gz");
        let written = read(&out.join(format!("{name}/{name}_prediction.nii.gz")));
        assert_eq!(written.dims, mask.dims);
        assert!(written.geometry.approx_eq(&mask.geometry, 1e-6));
        assert_eq!(
            written.voxels.to_f32_vec(),
            mask.voxels.to_f32_vec(),
            "{image}: the written prediction is the gateway's mask"
        );
    }
    assert!(raw.contains("# failed\tmni152/missing.nii.gz\tread\t"), "{raw}");
    let summary = std::fs::read_to_string(out.join("mean_dice_summary_results.txt")).unwrap();
    assert!(summary.contains("# failed: 1 of 3 files"), "{summary}");
    assert!(out.join("mean_dice_raw_results.json").is_file());
    assert!(out.join("mean_dice_summary_results.json").is_file());

    // tlt-infer over an unlabelled list (6.4.2.5): the model folder instead of the file.
    let list = dir.path().join("infer.json");
    std::fs::write(&list, json!({"validation": [{"image": cases[1].0}]}).to_string()).unwrap();
    let out = dir.path().join("infer");
    let (status, _, stderr) = run_cli(
        &[
            "infer",
            "--model_save_path",
            repo_root()
                .join("models/segmentation_mri_brain")
                .to_str()
                .unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--file_root",
            data.to_str().unwrap(),
            "--output_path",
            out.to_str().unwrap(),
            "--data_file",
            list.to_str().unwrap(),
            "--device",
            "cpu",
        ],
        &[],
    );
    assert!(status.success(), "{stderr}");
    let written = read(&out.join("atlas/atlas_prediction.nii.gz"));
    assert_eq!(written.voxels.to_f32_vec(), masks[1].voxels.to_f32_vec());
    assert!(!out.join("mean_dice_raw_results.txt").exists());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("aiaa_infer_summary.json")).unwrap()).unwrap();
    assert_eq!(summary["succeeded"], 1);

    // A run that cannot start says why and fails.
    let (status, _, stderr) = run_cli(
        &[
            "evaluate",
            "--config",
            config.to_str().unwrap(),
            "--output_path",
            out.to_str().unwrap(),
            "--data_file",
            dir.path().join("nope.json").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!status.success());
    assert!(stderr.contains("nope.json"), "{stderr}");
}

/// `aiaa evaluate` with the trained DEXTR3D brain model (clicks simulated from the label,
/// no perturbation) reports the Dice of the mask the gateway returns for the same clicks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluate_with_the_dextr3d_model_agrees_with_the_gateway() {
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    let (image, label) = ("robex/atlas.nii.gz", "robex/atlas_mask.nii.gz");
    let truth = read(&data.join(label));
    let points = aiaa_transforms::extreme::extreme_points(&truth).unwrap();

    let pool = repo_root().join("models/engine_pool.json");
    let store = dir.path().join("store");
    let mut platform = Platform::start(
        &["up", "--engine-pool", pool.to_str().unwrap()],
        &[("AIAA_STORE_URL", store.to_str().unwrap())],
    )
    .await;
    let bytes = std::fs::read(data.join(image)).unwrap();
    let params = json!({ "points": points }).to_string();
    let body = python_body(&[("params", &params)], &[("image", "atlas.nii.gz", &bytes)]);
    let answer = send(
        platform.addrs["gateway"],
        &python_request("POST", "/v1/dextr3d?model=annotation_mri_brain", &body),
    )
    .await;
    let mask = decode(
        "result.nii.gz",
        parse_multipart_answer(&answer).file.as_ref().unwrap(),
    );
    platform.stop();
    let expected = dice(&foreground(&mask), &foreground(&truth));

    let list = dir.path().join("datalist.json");
    std::fs::write(
        &list,
        json!({"validation": [{"image": image, "label": label}]}).to_string(),
    )
    .unwrap();
    let out = dir.path().join("eval");
    let model_dir = repo_root().join("models/annotation_mri_brain");
    let config = model_dir.join("config.json");
    let (status, _, stderr) = run_cli(
        &[
            "evaluate",
            "--model_save_path",
            model_dir.join("model.pt").to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--file_root",
            data.to_str().unwrap(),
            "--output_path",
            out.to_str().unwrap(),
            "--data_file",
            list.to_str().unwrap(),
            "--device",
            "cpu",
        ],
        &[],
    );
    assert!(status.success(), "{stderr}");
    let raw = std::fs::read_to_string(out.join("mean_dice_raw_results.txt")).unwrap();
    let row = raw
        .lines()
        .find(|l| l.starts_with(&format!("{image}\t1\t")))
        .unwrap_or_else(|| panic!("no row for {image}: {raw}"));
    let reported: f64 = row.split('\t').nth(3).unwrap().parse().unwrap();
    eprintln!("annotation_mri_brain on ROBEX: gateway Dice {expected:.6}, aiaa evaluate {reported:.6}");
    assert!((reported - expected).abs() < 1e-6, "{reported} vs {expected}");
    assert!(reported >= 0.85, "Dice {reported}");
}
