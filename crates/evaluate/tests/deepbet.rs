//! `evaluate` with the real brain-extraction model (deepbet, models/segmentation_mri_brain)
//! over MNI152 and ROBEX: the Dice in the reports is the Dice aiaa-metrics computes on the
//! mask the annotation server's engine returns (loaded from models/engine_pool.json as the
//! server loads it), and the written predictions are that mask voxel for voxel.

mod common;

use aiaa_engines::device::Devices;
use aiaa_engines::engines::{EngineSpec, Timings, build};
use aiaa_evaluate::{EvaluateOptions, ModelSource, Options, run_evaluate};
use aiaa_metrics::{Classes, MetricOptions};
use common::*;
use serde_json::{Map, json};

#[test]
fn deepbet_reports_the_dice_of_the_servers_masks() {
    let data = testdata();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("datalist.json");
    let cases = [
        ("mni152/MNI152_T1.nii.gz", "mni152/MNI152_mask.nii.gz", 0.95),
        ("robex/atlas.nii.gz", "robex/atlas_mask.nii.gz", 0.96),
    ];
    let entries: Vec<_> = cases
        .iter()
        .map(|(i, l, _)| json!({"image": i, "label": l}))
        .collect();
    std::fs::write(&list, json!({"validation": entries}).to_string()).unwrap();
    let opts = Options {
        source: ModelSource {
            model: Some(data.join("deepbet/model.pt")),
            config: repo_root().join("models/segmentation_mri_brain/config.json"),
            ..Default::default()
        },
        data_file: list,
        file_root: Some(data.clone()),
        output: dir.path().join("eval"),
        device: "cpu".into(),
        ..Default::default()
    };
    let s = run_evaluate(&opts, &EvaluateOptions::default(), &Recorder::default()).unwrap();
    assert!(s.failed.is_empty(), "{:#?}", s.failed);
    eprintln!(
        "deepbet evaluate: mean Dice {:.4}; {:.3} cases/s; model waited {:.1}% of the time; {:?}",
        s.mean_dice.unwrap(),
        s.throughput.cases_per_s,
        100.0 * s.throughput.model_wait_share.unwrap(),
        s.throughput
    );

    // The server's engine, loaded from the engine pool as `aiaa up` loads it.
    let devices = Devices::start(&[tch::Device::Cpu], 0).unwrap();
    let entry = aiaa_engines::pool::read_pool(&repo_root().join("models/engine_pool.json"))
        .unwrap()
        .into_iter()
        .find(|e| e.name == "segmentation_mri_brain")
        .unwrap();
    let engine = build(&EngineSpec::from_pool_entry(&entry).unwrap(), &devices).unwrap();
    for (n, (image, label, min_dice)) in cases.iter().enumerate() {
        let mask = engine
            .infer(&read(&data.join(image)), &Map::new(), &mut Timings::default())
            .unwrap()
            .mask;
        let truth = read(&data.join(label));
        let expected =
            aiaa_metrics::evaluate(&mask, &truth, &Classes::Binary, &MetricOptions::default()).unwrap();
        let r = &s.results[n];
        assert_eq!(r.file, *image);
        let got = r.metrics.as_ref().unwrap();
        assert_eq!(
            got, &expected,
            "{image}: the report holds the metrics of the server's mask"
        );
        let dice = got.classes[0].dice;
        eprintln!(
            "{image}: Dice {dice:.4}, NSD {:.4}, HD95 {:.2} mm",
            got.classes[0].nsd, got.classes[0].hd95_mm
        );
        assert!(dice >= *min_dice, "{image}: Dice {dice}");
        // The written prediction is the engine's mask, voxel for voxel, on the image's grid.
        let name = aiaa_transforms::load::input_name(std::path::Path::new(image));
        let written = read(&opts.output.join(format!("{name}/{name}_prediction.nii.gz")));
        assert_eq!(
            r.outputs,
            vec![opts.output.join(format!("{name}/{name}_prediction.nii.gz"))]
        );
        assert_eq!(written.dims, mask.dims);
        assert!(written.geometry.approx_eq(&mask.geometry, 1e-6));
        assert_eq!(written.voxels.to_f32_vec(), mask.voxels.to_f32_vec(), "{image}");
    }
    // The report files: one row per file, the seed's names.
    let raw = std::fs::read_to_string(opts.output.join("mean_dice_raw_results.txt")).unwrap();
    assert!(raw.contains("\nmni152/MNI152_T1.nii.gz\t1\t-\t0.9"), "{raw}");
    assert!(opts.output.join("mean_dice_summary_results.txt").is_file());
    assert!(opts.output.join("aiaa_evaluate_summary.json").is_file());
}
