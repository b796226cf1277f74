//! `transforms.ErodeLabel` on real masks: the MNI152 brain mask (1 mm) and its anisotropic
//! validation variant (1 × 1 × 1.5 mm) against scipy's exact distance transform
//! (`tests/reference/erode_label.json`, made by `tests/reference/erode_label.py`): the same
//! voxels kept, by count and by the sum of their indices.

mod common;

use std::path::Path;

use aiaa_imaging::io::read_volume;
use aiaa_imaging::{ReadOptions, Volume};
use aiaa_transforms::{Data, Image, Kind};
use common::*;
use serde_json::{Value, json};

/// `transforms.ErodeLabel` at `distance_mm` on `mask`, through the catalogue: its voxels.
fn erode_label(mask: Volume, distance_mm: f64) -> Vec<f64> {
    let mut sample = Data::named("m");
    sample.insert_image("label", Image::new(mask, Kind::Label));
    build(json!({"name": "transforms.ErodeLabel", "fields": "label", "distance_mm": distance_mm}))
        .apply(&mut sample, &mut rng(0))
        .unwrap();
    values(sample.volume("label").unwrap(), 0)
}

#[test]
fn erosion_keeps_the_voxels_scipy_keeps_on_the_mni152_masks() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/erode_label.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    for (file, want) in reference.as_object().unwrap() {
        let mask = read_volume(
            &aiaa_testdata::testdata().join("mni152").join(file),
            &ReadOptions::default(),
        )
        .unwrap();
        let zooms: Vec<f64> = want["zooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z.as_f64().unwrap())
            .collect();
        assert_eq!(mask.geometry.spacing.to_vec(), zooms, "{file}");
        for (d, kept) in want["eroded"].as_object().unwrap() {
            let t = std::time::Instant::now();
            let v = erode_label(mask.clone(), d.parse().unwrap());
            let took = t.elapsed();
            let fg = v.iter().enumerate().filter(|(_, x)| **x > 0.0);
            let count = fg.clone().count() as u64;
            let index_sum: u64 = fg.map(|(i, _)| i as u64).sum();
            assert_eq!(
                count,
                kept["count"].as_u64().unwrap(),
                "{file} eroded by {d} mm: count"
            );
            assert_eq!(
                index_sum,
                kept["index_sum"].as_u64().unwrap(),
                "{file} eroded by {d} mm: voxels"
            );
            eprintln!("{file} eroded by {d} mm: {count} voxels kept in {took:?}");
        }
    }
}

/// The deepgrow recipe's training label, `mni152/MNI152_mask_eroded_2mm.nii.gz`, is made by
/// `scripts/fetch-test-data.sh` before anything is built (with torch: a ball of 2 mm around
/// every background voxel); it must be exactly what `ErodeLabel` makes of MNI152's mask.
#[test]
fn the_recipes_eroded_mni152_label_is_erode_label_at_2_mm() {
    let data = aiaa_testdata::testdata().join("mni152");
    let read = |name: &str| read_volume(&data.join(name), &ReadOptions::default()).unwrap();
    let ours: Vec<bool> = erode_label(read("MNI152_mask.nii.gz"), 2.0)
        .iter()
        .map(|v| *v > 0.0)
        .collect();
    let file: Vec<bool> = values(&read("MNI152_mask_eroded_2mm.nii.gz"), 0)
        .iter()
        .map(|v| *v > 0.0)
        .collect();
    assert_eq!(ours.len(), file.len());
    let differ = ours.iter().zip(&file).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{differ} voxels differ from ErodeLabel's");
    assert!(ours.iter().filter(|v| **v).count() > 1_900_000);
}
