//! The deepgrow inference transforms and the DeepEdit transforms against MONAI 1.6's own,
//! run on the same inputs in the project's Python environment (`aiaa_testdata::python()`),
//! one Python run per test, its answers printed as JSON (voxels as files) and compared here.
//!
//! Real data: the MNI152 brain mask at a quarter of its resolution (46 × 55 × 46). DeepEdit
//! gets it split into two labels (`left`: i < 23, value 1; `right`: value 2) and a prediction
//! shifted by three voxels along i, so every label has missed and extra voxels and `left`
//! claims more than 50 voxels of `right` and of the background.
//!
//! Exact (no tolerance): clicks, crop coordinates and cropped voxels, discrepancy regions,
//! where DeepEdit's next clicks are drawn. Within 1e-6: guidance channels (MONAI blurs in
//! float32). Within 1e-9 relative: click probabilities.
//!
//! Random transforms: our generator cannot reproduce MONAI's draws, so the draw is taken out
//! of both: MONAI's generator is replaced by one that picks the likeliest voxel (and records
//! the odds it was given), ours is compared by its odds and by that same voxel; the drop
//! probability of `DiscardAddGuidance` is compared loosely (4 binomial standard deviations).

mod common;

use aiaa_imaging::{Geometry, Volume, Voxels};
use aiaa_transforms::deepedit::{LabelClicks, LabelNames, click_regions, label_discrepancies, seed_odds};
use aiaa_transforms::deepgrow::points_to_current;
use aiaa_transforms::guidance::Clicks;
use aiaa_transforms::{Data, Image, Item, Kind};
use common::{build, monai, quarter_mask, read_f32, read_f64, rng, write_f32};
use serde_json::{Value, json};

fn image(v: Vec<f32>, dims: [usize; 3], channels: usize, kind: Kind) -> Image {
    Image::new(
        Volume::new(dims, channels, Geometry::default(), Voxels::F32(v)).unwrap(),
        kind,
    )
}

fn run(d: &mut Data, t: Value) {
    build(t).apply(d, &mut rng(0)).unwrap();
}

fn clicks(d: &Data, key: &str) -> Clicks {
    match d.get(key) {
        Some(Item::Clicks(c)) => c.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

fn numbers(d: &Data, key: &str) -> Vec<f64> {
    match d.get(key) {
        Some(Item::Numbers(v)) => v.clone(),
        other => panic!("{key}: {other:?}"),
    }
}

/// MONAI's `[pos, neg]` guidance as our clicks.
fn as_clicks(v: &Value) -> Clicks {
    let points = |v: &Value| -> Vec<[f64; 3]> { serde_json::from_value(v.clone()).unwrap() };
    Clicks {
        foreground: points(&v[0]),
        background: points(&v[1]),
    }
}

fn as_numbers(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).unwrap()
}

const DEEPGROW: &str = r#"
import json, sys
import numpy as np
from monai.apps.deepgrow.transforms import AddGuidanceFromPointsd, SpatialCropGuidanced, ResizeGuidanced

d = sys.argv[1]
spec = json.load(open(f"{d}/spec.json"))
out = {}
for depth_first in (False, True):
    current = list(np.roll(spec["current"], 1)) if depth_first else spec["current"]
    r = AddGuidanceFromPointsd(ref_image="image", spatial_dims=3, depth_first=depth_first)({
        "image": np.zeros(current, np.float32),
        "image_meta_dict": {"spatial_shape": np.array(spec["original"])},
        "foreground": spec["fg"], "background": spec["bg"]})
    out[f"points_{int(depth_first)}"] = r["guidance"]

image = np.fromfile(f"{d}/resized.f32", dtype="<f4").reshape(spec["current"], order="F")[None]
for case in spec["crops"]:
    # MONAI's depth axis is its first; the "rolled" case moves our k there.
    a = np.moveaxis(image, 3, 1) if case["rolled"] else image
    # Integer clicks, as AddGuidanceFromPointsd makes them.
    g = [[[int(x) for x in p] for p in s] for s in case["guidance"]]
    r = SpatialCropGuidanced(keys="image", guidance="guidance", spatial_size=case["spatial_size"],
                             margin=case["margin"])({"image": a.copy(), "image_meta_dict": {}, "guidance": g})
    m = r["image_meta_dict"]
    res = {"start": [int(x) for x in m["foreground_start_coord"]],
           "end": [int(x) for x in m["foreground_end_coord"]],
           "cropped": [int(x) for x in m["foreground_cropped_shape"][1:]],
           "guidance": r["guidance"]}
    np.asarray(r["image"])[0].astype("<f4").ravel(order="F").tofile(f"{d}/crop_{case['name']}.f32")
    if case["name"] == "wide":
        res["resized"] = ResizeGuidanced(guidance="guidance", ref_image="image")({
            "guidance": r["guidance"], "image": np.zeros((1, *spec["resize"]), np.float32),
            "image_meta_dict": m})["guidance"]
    out[case["name"]] = res
print(json.dumps(out))
"#;

/// `AddGuidanceFromPoints`, `SpatialCropGuidance` and `ResizeGuidance` give MONAI's clicks,
/// crop coordinates and cropped voxels exactly.
#[test]
fn points_crop_and_resize_agree_with_monai() {
    let (mask, dims) = quarter_mask();
    let mut d = Data::named("mni");
    d.insert_image("image", image(mask.clone(), dims, 1, Kind::Intensity));
    d.insert_image("label", image(mask, dims, 1, Kind::Label));
    // Fractional, edge and corner clicks on the loaded grid.
    let fg = json!([[20.7, 30.0, 25.0], [10.0, 40.2, 33.9], [45.0, 54.0, 45.0]]);
    let bg = json!([[2.0, 3.0, 4.0]]);
    d.insert("foreground", Item::Json(fg.clone()));
    d.insert("background", Item::Json(bg.clone()));
    let current = [40, 48, 36];
    run(
        &mut d,
        json!({"name": "transforms.Resize", "fields": ["image", "label"], "spatial_size": current}),
    );
    run(
        &mut d,
        json!({"name": "transforms.AddGuidanceFromPoints", "ref_image": "image"}),
    );
    let resized = d.clone();
    let dir = tempfile::tempdir().unwrap();
    write_f32(
        &dir.path().join("resized.f32"),
        &resized.volume("image").unwrap().voxels.to_f32_vec(),
    );

    // Crops: the clicks' box (wider than spatial_size), and a window about two close clicks,
    // with the depth axis first (MONAI's) and last (ours, MONAI given the rolled array).
    let close = Clicks {
        foreground: vec![[20.0, 24.0, 18.0]],
        background: vec![[22.0, 26.0, 20.0]],
    };
    let roll = |p: &[f64; 3]| [p[2], p[0], p[1]];
    let rolled = json!([
        close.foreground.iter().map(roll).collect::<Vec<_>>(),
        close.background.iter().map(roll).collect::<Vec<_>>()
    ]);
    let wide = clicks(&resized, "guidance");
    let cases = [
        (
            "wide",
            wide.clone(),
            0,
            json!([wide.foreground, wide.background]),
            false,
        ),
        (
            "window",
            close.clone(),
            0,
            json!([close.foreground, close.background]),
            false,
        ),
        ("window_k", close.clone(), 2, rolled, true),
    ];
    let resize = [32, 32, 32];
    let spec = json!({
        "original": dims, "current": current, "fg": fg, "bg": bg, "resize": resize,
        "crops": cases.iter().map(|(name, _, _, g, rolled)| json!({
            "name": name, "guidance": g, "rolled": rolled, "spatial_size": [24, 24, 24], "margin": 4,
        })).collect::<Vec<_>>(),
    });
    let theirs = monai(DEEPGROW, dir.path(), &spec);

    // The clicks on the resized grid, in both axis orders.
    assert_eq!(wide, as_clicks(&theirs["points_0"]));
    let fg: Vec<[f64; 3]> = serde_json::from_value(fg).unwrap();
    let bg: Vec<[f64; 3]> = serde_json::from_value(bg).unwrap();
    let depth_first = [current[2], current[0], current[1]];
    let ours = Clicks {
        foreground: points_to_current(&fg, dims, depth_first, true),
        background: points_to_current(&bg, dims, depth_first, true),
    };
    assert_eq!(ours, as_clicks(&theirs["points_1"]));

    for (name, guidance, depth_axis, _, rolled) in &cases {
        let mut d = resized.clone();
        d.insert("guidance", Item::Clicks(guidance.clone()));
        run(
            &mut d,
            json!({"name": "transforms.SpatialCropGuidance", "fields": ["image", "label"],
                   "spatial_size": [24, 24, 24], "margin": 4, "depth_axis": depth_axis}),
        );
        let t = &theirs[name];
        // MONAI's axes are ours rolled in the "window_k" case.
        let unroll = |v: Vec<f64>| if *rolled { vec![v[1], v[2], v[0]] } else { v };
        assert_eq!(
            numbers(&d, "foreground_start_coord"),
            unroll(as_numbers(&t["start"])),
            "{name}"
        );
        assert_eq!(
            numbers(&d, "foreground_end_coord"),
            unroll(as_numbers(&t["end"])),
            "{name}"
        );
        assert_eq!(
            numbers(&d, "foreground_cropped_shape"),
            unroll(as_numbers(&t["cropped"])),
            "{name}"
        );
        let moved = as_clicks(&t["guidance"]);
        let unroll_p = |p: &[f64; 3]| if *rolled { [p[1], p[2], p[0]] } else { *p };
        let moved = Clicks {
            foreground: moved.foreground.iter().map(unroll_p).collect(),
            background: moved.background.iter().map(unroll_p).collect(),
        };
        assert_eq!(clicks(&d, "guidance"), moved, "{name}");
        if !rolled {
            let crop = read_f32(&dir.path().join(format!("crop_{name}.f32")));
            assert_eq!(
                d.volume("image").unwrap().voxels.to_f32_vec(),
                crop,
                "{name}: voxels"
            );
        }
        eprintln!("{name}: crop from {:?}", numbers(&d, "foreground_start_coord"));
        if *name == "wide" {
            run(
                &mut d,
                json!({"name": "transforms.Resize", "fields": ["image", "label"], "spatial_size": resize}),
            );
            let mut without = d.clone();
            run(&mut d, json!({"name": "transforms.ResizeGuidance"}));
            assert_eq!(clicks(&d, "guidance"), as_clicks(&t["resized"]));
            // Without the recorded crop shape, the image's own record gives the same.
            without.remove("foreground_cropped_shape");
            run(&mut without, json!({"name": "transforms.ResizeGuidance"}));
            assert_eq!(clicks(&without, "guidance"), clicks(&d, "guidance"));
        }
    }
}

const DEEPEDIT: &str = r#"
import json, sys, random
import numpy as np
from monai.apps.deepedit.transforms import (AddGuidanceSignalDeepEditd, FindDiscrepancyRegionsDeepEditd,
    AddInitialSeedPointDeepEditd, AddInitialSeedPointMissingLabelsd, AddRandomGuidanceDeepEditd)

d = sys.argv[1]
spec = json.load(open(f"{d}/spec.json"))
dims = tuple(spec["dims"])
def load(name):
    return np.fromfile(f"{d}/{name}", dtype="<f4").reshape(dims, order="F")[None]
def save(name, a):
    np.asarray(a, dtype="<f8").ravel(order="F").tofile(f"{d}/{name}")
label, pred = load("label.f32"), load("pred.f32")
names = dict(spec["names"])
out = {}

image = AddGuidanceSignalDeepEditd(keys="image", guidance="guidance")(
    {"image": label.copy(), "guidance": dict(spec["guidance"])})["image"]
save("signal.f64", np.moveaxis(image, 0, -1))  # channels slowest, as ours

disc = FindDiscrepancyRegionsDeepEditd(keys="label")({"label": label, "pred": pred, "label_names": names})["discrepancy"]
for n in names:
    save(f"missed_{n}.f64", disc[n][0][0]); save(f"extra_{n}.f64", disc[n][1][0])

class Likeliest:
    """Stands in for the generator: records the odds, picks the likeliest voxel."""
    def __init__(self): self.odds = []
    def choice(self, a, size=None, p=None, replace=True):
        self.odds.append((np.asarray(a), np.asarray(p)))
        return np.asarray(a)[[int(np.argmax(p))]]

with_absent = dict(names, absent=7)
t = AddInitialSeedPointMissingLabelsd(keys="label", guidance="guidance", sids="sids")
t.R = Likeliest()
g = t({"label": label, "label_names": with_absent, "sids": {n: [] for n in with_absent}})["guidance"]
out["seeds"] = {n: json.loads(v) for n, v in g.items()}
for n, (idx, p) in zip(with_absent, t.R.odds):
    save(f"odds_{n}.f64", np.bincount(idx, p, label.size).reshape(label.shape)[0])
try:
    AddInitialSeedPointDeepEditd(keys="label", sids="sids")(
        {"label": label, "label_names": with_absent, "sids": {n: [] for n in with_absent}})
    out["absent_raises"] = False
except AssertionError:
    out["absent_raises"] = True

# AddRandomGuidanceDeepEditd with its draws taken out: every call of find_guidance is
# recorded and answers [call number, 0, 0, 0]; no label loses its clicks (randint -> 10**6).
t = AddRandomGuidanceDeepEditd(keys="NA", guidance="guidance", discrepancy="discrepancy", probability="probability")
calls = []
def find_guidance(region):
    calls.append(np.asarray(region)[0] > 0)
    return [len(calls) - 1, 0, 0, 0]
t.find_guidance = find_guidance
random.randint = lambda a, b: 10**6
g = t({"guidance": {n: json.dumps([[-1, -1, -1, -1]]) for n in names}, "discrepancy": disc,
       "probability": 1.0, "label_names": names, "label": label})["guidance"]
out["targets"] = {n: [c[0] for c in v] for n, v in g.items()}
for i, c in enumerate(calls):
    save(f"region_{i}.f64", c)
out["regions"] = len(calls)
print(json.dumps(out))
"#;

/// Two labels from the brain mask (left half 1, right half 2) and a prediction three voxels
/// to the right.
fn two_labels() -> (Vec<f32>, Vec<f32>, [usize; 3]) {
    let (mask, dims) = quarter_mask();
    let half = dims[0] / 2;
    let at = |o: usize| o % dims[0];
    let label: Vec<f32> = mask
        .iter()
        .enumerate()
        .map(|(o, &m)| {
            if m > 0.5 {
                1.0 + f32::from(u8::from(at(o) >= half))
            } else {
                0.0
            }
        })
        .collect();
    let pred = (0..label.len())
        .map(|o| if at(o) >= 3 { label[o - 3] } else { 0.0 })
        .collect();
    (label, pred, dims)
}

/// The DeepEdit transforms: guidance channels, discrepancies, first clicks (odds and the
/// likeliest voxel, placeholder and error for an absent label), where the next clicks go.
#[test]
fn deepedit_transforms_agree_with_monai() {
    let (label, pred, dims) = two_labels();
    let names = LabelNames(vec![
        ("left".into(), 1.0),
        ("right".into(), 2.0),
        ("background".into(), 0.0),
    ]);
    let names_json = json!(names.0);
    let guidance = LabelClicks(vec![
        ("left".into(), vec![[20.0, 30.0, 25.0], [10.6, 40.2, 33.9]]),
        ("right".into(), vec![[-1.0, -1.0, -1.0]]),
        ("background".into(), vec![[2.0, 3.0, 4.0], [500.0, 12.0, 7.0]]),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    write_f32(&p.join("label.f32"), &label);
    write_f32(&p.join("pred.f32"), &pred);
    // Pairs, not a JSON object: MONAI's channel order is its dictionary's order.
    let guidance_json: Vec<Value> = guidance.0.iter().map(|(n, c)| json!([n, c])).collect();
    let spec = json!({"dims": dims, "names": names_json, "guidance": guidance_json});
    let theirs = monai(DEEPEDIT, p, &spec);
    let n: usize = dims.iter().product();

    let mut d = Data::named("mni");
    d.insert_image("image", image(label.clone(), dims, 1, Kind::Intensity));
    d.insert_image("label", image(label.clone(), dims, 1, Kind::Label));
    d.insert_image("pred", image(pred.clone(), dims, 1, Kind::Label));
    d.insert("guidance", Item::LabelClicks(guidance));

    // Guidance channels (the image channel kept).
    run(&mut d, json!({"name": "transforms.AddGuidanceSignalDeepEdit"}));
    let ours = d.volume("image").unwrap();
    assert_eq!(ours.channels, 4);
    let want = read_f64(&p.join("signal.f64"));
    let worst = (0..4 * n)
        .map(|o| (ours.voxels.get_f64(o) - want[o]).abs())
        .fold(0.0, f64::max);
    eprintln!("guidance channels: max |ours - MONAI| = {worst:e}");
    assert!(worst < 1e-6, "guidance channels: {worst:e}");

    // Discrepancies.
    run(
        &mut d,
        json!({"name": "transforms.FindDiscrepancyRegionsDeepEdit", "label_names": names_json}),
    );
    let disc = d.volume("discrepancy").unwrap();
    let channel = |c: usize| {
        (0..n)
            .map(|o| disc.voxels.get_f64(c * n + o) > 0.5)
            .collect::<Vec<_>>()
    };
    let as_bool = |v: Vec<f64>| v.iter().map(|x| *x > 0.5).collect::<Vec<_>>();
    for (l, (name, _)) in names.0.iter().enumerate() {
        assert_eq!(
            channel(2 * l),
            as_bool(read_f64(&p.join(format!("missed_{name}.f64")))),
            "{name}"
        );
        assert_eq!(
            channel(2 * l + 1),
            as_bool(read_f64(&p.join(format!("extra_{name}.f64")))),
            "{name}"
        );
        assert!(
            channel(2 * l).contains(&true) && channel(2 * l + 1).contains(&true),
            "{name}"
        );
    }

    // First clicks: the same odds, and the likeliest voxel is MONAI's pick.
    for (name, value) in &names.0 {
        let odds = seed_odds(&label, name, *value, dims);
        let want = read_f64(&p.join(format!("odds_{name}.f64")));
        for &(o, q) in &odds {
            assert!(
                (q - want[o]).abs() <= 1e-9 * want[o],
                "{name}: voxel {o}: {q:e} vs {:e}",
                want[o]
            );
        }
        assert_eq!(odds.len(), want.iter().filter(|x| **x > 0.0).count(), "{name}");
        // np.argmax: the first of the likeliest in numpy's (C) order, the smallest [i, j, k].
        let top = odds.iter().map(|x| x.1).fold(0.0, f64::max);
        let at = |o: usize| [o % dims[0], (o / dims[0]) % dims[1], o / (dims[0] * dims[1])];
        let pick = odds.iter().filter(|x| x.1 == top).map(|x| at(x.0)).min().unwrap();
        let theirs_pick: Vec<Vec<i64>> = serde_json::from_value(theirs["seeds"][name].clone()).unwrap();
        assert_eq!(theirs_pick[0][1..], pick.map(|x| x as i64), "{name}");
    }
    let with_absent = json!([["left", 1], ["right", 2], ["background", 0], ["absent", 7]]);
    let mut seeded = d.clone();
    run(
        &mut seeded,
        json!({"name": "transforms.AddInitialSeedPointMissingLabels", "label_names": with_absent}),
    );
    let Some(Item::LabelClicks(seeds)) = seeded.get("guidance") else {
        panic!("no seeds")
    };
    assert_eq!(seeds.get("absent"), Some(&vec![[-1.0; 3]]));
    assert_eq!(theirs["seeds"]["absent"], json!([[-1, -1, -1, -1]]));
    let t = build(json!({"name": "transforms.AddInitialSeedPointDeepEdit", "label_names": with_absent}));
    assert!(t.apply(&mut d.clone(), &mut rng(0)).is_err());
    assert_eq!(theirs["absent_raises"], json!(true));

    // Where the next clicks are drawn, and for which label.
    let discrepancies = label_discrepancies(&label, &pred, &names);
    let ours = click_regions(&label, &discrepancies, &names);
    assert_eq!(ours.len() as u64, theirs["regions"].as_u64().unwrap());
    for (i, (target, region)) in ours.iter().enumerate() {
        assert_eq!(
            *region,
            as_bool(read_f64(&p.join(format!("region_{i}.f64")))),
            "region {i}"
        );
        let got: Vec<u64> = serde_json::from_value(theirs["targets"][&names.0[*target].0].clone()).unwrap();
        assert!(
            got.contains(&(i as u64)),
            "region {i} goes to {}",
            names.0[*target].0
        );
    }
    let others = ours.iter().filter(|(t, r)| discrepancies[*t].0 != *r).count();
    eprintln!(
        "{} next-click regions, {others} in another label's region",
        ours.len()
    );
    assert!(others >= 2, "the > 50 voxels rule was exercised");
    // The transform itself: the earlier clicks (4, placeholder dropped) plus at most one per
    // region, fewer when labels are dropped; never none, as every label gets a click.
    run(
        &mut d,
        json!({"name": "transforms.AddRandomGuidanceDeepEdit", "label_names": names_json}),
    );
    let Some(Item::LabelClicks(next)) = d.get("guidance") else {
        panic!("no clicks")
    };
    let total: usize = next.0.iter().map(|(_, c)| c.len()).sum();
    assert!(total >= 1 && total <= ours.len() + 4, "{total}");
}

const DISCARD: &str = r#"
import json, sys
import numpy as np
from monai.apps.deepedit.transforms import DiscardAddGuidanced

d = sys.argv[1]
spec = json.load(open(f"{d}/spec.json"))
a = np.asarray(spec["image"], dtype=np.float32)
names = {"fg": 1, "background": 0}
out = {}
for name, channels, p in (("overwrite", 3, 1.0), ("append", 1, 1.0), ("keep", 3, 0.0)):
    r = DiscardAddGuidanced(keys="image", probability=p, label_names=names)({"image": a[:channels].copy()})
    out[name] = np.asarray(r["image"]).tolist()
np.random.seed(0)
t = DiscardAddGuidanced(keys="image", probability=0.3, label_names=names)
trials = spec["trials"]
out["dropped"] = sum(
    bool(np.all(np.asarray(t({"image": a.copy()})["image"])[1:] == 0)) for _ in range(trials))
print(json.dumps(out))
"#;

/// `DiscardAddGuidance`: the same channels when it drops (overwritten or appended) and when
/// it keeps; the drop rate over many seeds near MONAI's over as many draws.
#[test]
fn discard_add_guidance_agrees_with_monai() {
    // A small synthetic image, 3 channels of 4 × 3 × 2: intensity, then two guidance.
    let dims = [4usize, 3, 2];
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..3 * n).map(|o| 1.0 + o as f32).collect();
    // numpy `[C, i, j, k]` of the same voxels.
    let nested: Vec<Value> = (0..3)
        .map(|c| {
            json!(
                (0..dims[0])
                    .map(|i| (0..dims[1])
                        .map(|j| (0..dims[2])
                            .map(|k| v[c * n + i + dims[0] * (j + dims[1] * k)])
                            .collect::<Vec<_>>())
                        .collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            )
        })
        .collect();
    let trials = 4000;
    let dir = tempfile::tempdir().unwrap();
    let theirs = monai(DISCARD, dir.path(), &json!({"image": nested, "trials": trials}));
    let to_ours = |t: &Value| -> Vec<f32> {
        let a: Vec<Vec<Vec<Vec<f32>>>> = serde_json::from_value(t.clone()).unwrap();
        let mut out = vec![0.0; a.len() * n];
        for (c, x) in a.iter().enumerate() {
            for (i, y) in x.iter().enumerate() {
                for (j, z) in y.iter().enumerate() {
                    for (k, w) in z.iter().enumerate() {
                        out[c * n + i + dims[0] * (j + dims[1] * k)] = *w;
                    }
                }
            }
        }
        out
    };
    let names = json!([["fg", 1], ["background", 0]]);
    for (case, channels, p) in [("overwrite", 3, 1.0), ("append", 1, 1.0), ("keep", 3, 0.0)] {
        let mut d = Data::named("x");
        d.insert_image(
            "image",
            image(v[..channels * n].to_vec(), dims, channels, Kind::Intensity),
        );
        run(
            &mut d,
            json!({"name": "transforms.DiscardAddGuidance", "probability": p, "label_names": names}),
        );
        assert_eq!(
            d.volume("image").unwrap().voxels.to_f32_vec(),
            to_ours(&theirs[case]),
            "{case}"
        );
    }
    let t = build(json!({"name": "transforms.DiscardAddGuidance", "probability": 0.3, "label_names": names}));
    let ours = (0..trials)
        .filter(|&i| {
            let mut d = Data::named("x");
            d.insert_image("image", image(v.clone(), dims, 3, Kind::Intensity));
            t.apply(&mut d, &mut rng(i)).unwrap();
            d.volume("image").unwrap().voxels.to_f32_vec()[n..]
                .iter()
                .all(|x| *x == 0.0)
        })
        .count() as f64
        / trials as f64;
    let monai_rate = theirs["dropped"].as_f64().unwrap() / trials as f64;
    let sd = (0.3f64 * 0.7 / trials as f64).sqrt();
    eprintln!("drop rate: ours {ours}, MONAI {monai_rate} (p = 0.3, sd {sd:.4})");
    assert!((ours - 0.3).abs() < 4.0 * sd && (monai_rate - 0.3).abs() < 4.0 * sd);
}
