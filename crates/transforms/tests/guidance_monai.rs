//! The guidance transforms against MONAI 1.6's deepgrow dictionary transforms, run on the
//! same inputs in the project's Python environment (`aiaa_testdata::python()`): the MNI152
//! brain mask at a quarter of its resolution as the label, the same mask shifted by three
//! voxels as a prediction (so both kinds of discrepancy exist), and clicks with fractional,
//! out-of-range and placeholder (negative) coordinates.
//!
//! Checked: `AddGuidanceSignald` (the same channels within 1e-6), `FindDiscrepancyRegionsd`
//! (the same voxels), SciPy's `distance_transform_cdt` as `AddInitialSeedPointd` and
//! `AddRandomGuidanced` call it (the same distances), and the probability each of them gives
//! every voxel of being clicked (within 1e-9 relative).

mod common;

use aiaa_transforms::guidance::{chessboard_distance, click_weights, discrepancy, guidance_signal};
use common::{monai, quarter_mask, read_f64, write_f32};
use serde_json::json;

const MONAI: &str = r#"
import json, sys
import numpy as np
import torch
from scipy.ndimage import distance_transform_cdt
from monai.apps.deepgrow.transforms import AddGuidanceSignald, FindDiscrepancyRegionsd

d = sys.argv[1]
spec = json.load(open(f"{d}/spec.json"))
dims = tuple(spec["dims"])
def load(name):  # our files: f32, i fastest
    return np.fromfile(f"{d}/{name}", dtype="<f4").reshape(dims, order="F")
def save(name, a):
    np.asarray(a, dtype="<f8").ravel(order="F").tofile(f"{d}/{name}")
label, pred = load("label.f32")[None], load("pred.f32")[None]

out = AddGuidanceSignald(image="image", guidance="guidance", sigma=spec["sigma"])(
    {"image": np.zeros((1, *dims), np.float32), "guidance": json.dumps(spec["guidance"])})["image"]
save("signal_fg.f64", out[1]); save("signal_bg.f64", out[2])

pos, neg = FindDiscrepancyRegionsd()({"label": label, "pred": pred})["discrepancy"]
save("missed.f64", pos[0]); save("extra.f64", neg[0])

# The click distributions of AddRandomGuidanced.find_guidance (on a discrepancy) and of
# AddInitialSeedPointd._apply (on the label), as they compute them: on the channelled array.
for name, region in (("missed", pos), ("label", (label > 0.5).astype(np.float32))):
    distance = distance_transform_cdt(region).flatten()
    probability = np.exp(distance) - 1.0
    idx = np.where(region.flatten() > 0)[0]
    save(f"cdt_{name}.f64", distance.reshape(region.shape)[0])
    save(f"prob_{name}.f64", np.zeros(region.size) if idx.size == 0 else
         np.bincount(idx, probability[idx] / np.sum(probability[idx]), region.size).reshape(region.shape)[0])
print(json.dumps({"version": __import__("monai").__version__}))
"#;

#[test]
fn guidance_signal_discrepancy_and_click_odds_agree_with_monai() {
    // Every fourth voxel: 46 × 55 × 46.
    let (label, dims) = quarter_mask();
    let n: usize = dims.iter().product();
    // The brain shifted three voxels along i.
    let mut pred = vec![0.0f32; n];
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 3..dims[0] {
                let o = i + dims[0] * (j + dims[1] * k);
                pred[o] = label[o - 3];
            }
        }
    }
    let foreground = [[20.0, 30.0, 25.0], [10.6, 40.2, 33.9], [500.0, 12.0, 7.0]];
    let background = [[2.0, 3.0, 4.0], [-1.0, -1.0, -1.0]];
    let sigma = 2.0;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_f32(&d.join("label.f32"), &label);
    write_f32(&d.join("pred.f32"), &pred);
    let spec = json!({"dims": dims, "sigma": sigma, "guidance": [foreground, background]});
    let answer = monai(MONAI, d, &spec);
    assert!(answer["version"].is_string(), "{answer}");
    let theirs = |name: &str| read_f64(&d.join(name));

    // The guidance channels.
    for (name, points) in [
        ("signal_fg.f64", &foreground[..]),
        ("signal_bg.f64", &background[..]),
    ] {
        let ours = guidance_signal(dims, points, sigma);
        let want = theirs(name);
        let worst = ours
            .iter()
            .zip(&want)
            .map(|(a, b)| (f64::from(*a) - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "{name}: max difference {worst:e}");
        assert!(want.contains(&1.0), "{name}: MONAI drew something");
    }

    // The discrepancy.
    let (missed, extra) = discrepancy(&label, &pred);
    let as_bool = |v: Vec<f64>| v.iter().map(|x| *x > 0.5).collect::<Vec<_>>();
    assert_eq!(missed, as_bool(theirs("missed.f64")));
    assert_eq!(extra, as_bool(theirs("extra.f64")));
    assert!(missed.iter().any(|m| *m) && extra.iter().any(|e| *e));

    // Distances and click odds, on a discrepancy and on the label.
    let label_region: Vec<bool> = label.iter().map(|v| *v > 0.5).collect();
    for (name, region) in [("missed", &missed), ("label", &label_region)] {
        let dist: Vec<f64> = chessboard_distance(region, dims)
            .iter()
            .map(|&x| f64::from(x))
            .collect();
        assert_eq!(dist, theirs(&format!("cdt_{name}.f64")), "{name}: distances");
        let mut ours = vec![0.0; n];
        for (o, p) in click_weights(region, dims) {
            ours[o] = p;
        }
        let want = theirs(&format!("prob_{name}.f64"));
        for (o, (a, b)) in ours.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-9 * b.abs().max(1e-300),
                "{name}: voxel {o}: ours {a:e}, MONAI {b:e}"
            );
        }
        let deepest = dist.iter().cloned().fold(0.0, f64::max);
        eprintln!(
            "{name}: {} voxels, deepest {deepest} voxels in",
            region.iter().filter(|r| **r).count()
        );
    }
}
