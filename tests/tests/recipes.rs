//! The annotation recipes (`recipes/annotation_*`, one per seed annotation model of appendix
//! 10.1) and `aiaa datalist from-msd`, through the real binary, on synthetic Medical
//! Segmentation Decathlon task folders: a `dataset.json` and small NIfTI volumes shaped like
//! the task (4D images with one volume per modality where the Decathlon has several, CT in
//! Hounsfield units, MR positive, labels with the task's values).
//!
//! - every recipe: `from-msd` with the flags docs/recipes.md gives for it, then `aiaa train
//!   segmentation --dry-run` (config, datalist and every file checked, two steps, one
//!   validation sample) with the recipe at a 32³ roi (the train command has no size
//!   override; everything else is the recipe file as it is, and the recipe itself is
//!   checked: its crops equal its roi, the roi suits its network, its intensity handling
//!   suits its modality). The hippocampus recipe also runs unchanged from `recipes/`;
//! - `from-msd` alone: the exact split of a seed, relative paths, the `testing` list,
//!   byte-identical reruns, label maps (cases left without foreground are left out and
//!   named), channel selection from 4D images, and errors that name the missing file or the
//!   offending field, with no datalist written.
//!
//! `AIAA_RECIPES_FULL=1` (for a machine with a GPU) dry-runs every recipe unchanged instead, on
//! `--device auto`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use aiaa_e2e::{repo_root, run_cli};
use aiaa_imaging::{Geometry, ReadOptions, Volume, Voxels};
use serde_json::{Value, json};

/// The roi the recipes are shrunk to for the CPU dry runs (a multiple of 2^levels = 16).
const TEST_ROI: u64 = 32;
/// Grid of the synthetic volumes.
const DIMS: [usize; 3] = [48, 48, 40];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Modality {
    Ct,
    Mr,
}

/// How the synthetic labels of a task are laid out inside its object (an ellipsoid).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Layout {
    /// One label, 1.
    Single,
    /// 1 with a 2 inside (organ and tumour).
    OrganTumour,
    /// 1 a tube along i, 2 a blob beside it (hepatic vessel and tumour).
    VesselTumour,
    /// 1 in the half with the lower i, 2 in the other (hippocampus anterior / posterior).
    Halves,
    /// 1 an outer shell, 2 the core (prostate PZ / TZ).
    ShellCore,
    /// 1 outer, 2 middle, 3 inner (brain tumour oedema / non-enhancing / enhancing).
    ThreeShells,
}

/// A synthetic Decathlon task.
#[derive(Debug, Clone, Copy)]
struct Task {
    folder: &'static str,
    modality: &'static [&'static str],
    labels: &'static [&'static str],
    kind: Modality,
    layout: Layout,
}

/// One recipe: its task folders and the `from-msd` flags docs/recipes.md gives it.
#[derive(Debug, Clone, Copy)]
struct Recipe {
    name: &'static str,
    tasks: &'static [Task],
    flags: &'static [&'static str],
}

const SPLEEN: Task = Task {
    folder: "Task09_Spleen",
    modality: &["CT"],
    labels: &["background", "spleen"],
    kind: Modality::Ct,
    layout: Layout::Single,
};
const LIVER: Task = Task {
    folder: "Task03_Liver",
    modality: &["CT"],
    labels: &["background", "liver", "cancer"],
    kind: Modality::Ct,
    layout: Layout::OrganTumour,
};
const HEPATIC: Task = Task {
    folder: "Task08_HepaticVessel",
    modality: &["CT"],
    labels: &["background", "Vessel", "Tumour"],
    kind: Modality::Ct,
    layout: Layout::VesselTumour,
};
const HIPPOCAMPUS: Task = Task {
    folder: "Task04_Hippocampus",
    modality: &["MRI"],
    labels: &["background", "Anterior", "Posterior"],
    kind: Modality::Mr,
    layout: Layout::Halves,
};
const LUNG: Task = Task {
    folder: "Task06_Lung",
    modality: &["CT"],
    labels: &["background", "cancer"],
    kind: Modality::Ct,
    layout: Layout::Single,
};
const PROSTATE: Task = Task {
    folder: "Task05_Prostate",
    modality: &["T2", "ADC"],
    labels: &["background", "PZ", "TZ"],
    kind: Modality::Mr,
    layout: Layout::ShellCore,
};
const HEART: Task = Task {
    folder: "Task02_Heart",
    modality: &["MRI"],
    labels: &["background", "left atrium"],
    kind: Modality::Mr,
    layout: Layout::Single,
};
const PANCREAS: Task = Task {
    folder: "Task07_Pancreas",
    modality: &["CT"],
    labels: &["background", "pancreas", "cancer"],
    kind: Modality::Ct,
    layout: Layout::OrganTumour,
};
const COLON: Task = Task {
    folder: "Task10_Colon",
    modality: &["CT"],
    labels: &["background", "colon cancer primaries"],
    kind: Modality::Ct,
    layout: Layout::Single,
};
const BRAIN: Task = Task {
    folder: "Task01_BrainTumour",
    modality: &["FLAIR", "T1w", "t1gd", "T2w"],
    labels: &["background", "edema", "non-enhancing tumor", "enhancing tumour"],
    kind: Modality::Mr,
    layout: Layout::ThreeShells,
};

const RECIPES: &[Recipe] = &[
    Recipe {
        name: "annotation_spleen",
        tasks: &[SPLEEN],
        flags: &[],
    },
    Recipe {
        name: "annotation_liver",
        tasks: &[LIVER],
        flags: &[],
    },
    Recipe {
        name: "annotation_livertumor",
        tasks: &[LIVER, HEPATIC],
        flags: &["--label-map", "2=1"],
    },
    Recipe {
        name: "annotation_hippocampus",
        tasks: &[HIPPOCAMPUS],
        flags: &[],
    },
    Recipe {
        name: "annotation_lung",
        tasks: &[LUNG],
        flags: &[],
    },
    Recipe {
        name: "annotation_prostate_cg",
        tasks: &[PROSTATE],
        flags: &["--channels", "0", "--label-map", "2=1"],
    },
    Recipe {
        name: "annotation_prostate_wg",
        tasks: &[PROSTATE],
        flags: &["--channels", "0"],
    },
    Recipe {
        name: "annotation_left_atrium",
        tasks: &[HEART],
        flags: &[],
    },
    Recipe {
        name: "annotation_pancreas",
        tasks: &[PANCREAS],
        flags: &[],
    },
    Recipe {
        name: "annotation_colon",
        tasks: &[COLON],
        flags: &[],
    },
    Recipe {
        name: "annotation_hepaticvessel",
        tasks: &[HEPATIC],
        flags: &["--label-map", "1=1"],
    },
    Recipe {
        name: "annotation_brain_t1ce_tc",
        tasks: &[BRAIN],
        flags: &["--channels", "2", "--label-map", "2=1,3=1"],
    },
    Recipe {
        name: "annotation_brain_t2_wt",
        tasks: &[BRAIN],
        flags: &["--channels", "3"],
    },
];

/// A small deterministic noise source (xorshift), so volumes differ between cases.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }
}

/// The label value of voxel `p` for `layout` around the object centred at `c`.
fn label_at(layout: Layout, p: [f64; 3], c: [f64; 3]) -> u8 {
    let radii = [11.0, 9.0, 7.0];
    let r = (0..3)
        .map(|a| ((p[a] - c[a]) / radii[a]).powi(2))
        .sum::<f64>()
        .sqrt();
    match layout {
        Layout::Single => u8::from(r < 1.0),
        Layout::OrganTumour => {
            let t = [
                (p[0] - c[0] - 3.0) / 4.0,
                (p[1] - c[1]) / 4.0,
                (p[2] - c[2]) / 3.0,
            ];
            if t.iter().map(|x| x * x).sum::<f64>() < 1.0 {
                2
            } else {
                u8::from(r < 1.0)
            }
        }
        Layout::VesselTumour => {
            let tube = (p[1] - c[1]).powi(2) + (p[2] - c[2]).powi(2) < 4.0 && (p[0] - c[0]).abs() < 12.0;
            let blob = (p[0] - c[0]).powi(2) + (p[1] - c[1] - 7.0).powi(2) + (p[2] - c[2]).powi(2) < 16.0;
            if tube {
                1
            } else if blob {
                2
            } else {
                0
            }
        }
        Layout::Halves if r < 1.0 => 1 + u8::from(p[0] >= c[0]),
        Layout::ShellCore if r < 1.0 => 1 + u8::from(r < 0.6),
        Layout::ThreeShells if r < 1.0 => 1 + u8::from(r < 0.7) + u8::from(r < 0.4),
        _ => 0,
    }
}

/// Intensity of a voxel with label `l` inside (`body`) or outside the body, channel `ch`.
fn intensity(kind: Modality, l: u8, body: bool, ch: usize, noise: f64) -> f64 {
    match kind {
        // Air, fat/soft tissue, then the object's Hounsfield units.
        Modality::Ct => {
            let hu = match (body, l) {
                (false, _) => -1000.0,
                (true, 0) => -80.0,
                (true, 1) => 120.0,
                (true, _) => 40.0,
            };
            hu + 30.0 * noise
        }
        // Zero outside (skull-stripped), positive inside; each channel its own contrast.
        Modality::Mr => {
            if !body {
                return 0.0;
            }
            let base = 300.0 + 80.0 * ch as f64;
            base + 150.0 * f64::from(l) * (1.0 + 0.3 * ch as f64) + 40.0 * noise
        }
    }
}

/// Writes a NIfTI-1 `.nii.gz` the way the Decathlon stores a multi-modal image: 4D, one
/// volume per modality along the 4th dimension (our writer stores channels as the 5th).
fn write_4d(vol: &Volume, path: &Path) {
    let mut h = aiaa_imaging::nifti::header_for(vol);
    h.dim[0] = 4;
    h.dim[4] = vol.channels as i64;
    h.dim[5] = 1;
    h.intent_code = 0;
    let mut bytes = aiaa_imaging::nifti::header::write_nifti1(&h);
    bytes.extend_from_slice(&vol.voxels.to_le_bytes());
    std::fs::write(path, aiaa_imaging::gz::compress(&bytes, 1)).unwrap();
}

/// Writes one case: `<dir>/imagesTr|imagesTs/<name>` and, with a label, `labelsTr/<name>`.
/// `no_tumour` drops the label values above 1 (an organ without tumour).
fn write_case(dir: &Path, task: &Task, name: &str, seed: u64, test: bool, no_tumour: bool) {
    let g = Geometry {
        spacing: [1.5, 1.5, 2.0],
        ..Geometry::default()
    };
    let shift = (seed % 5) as f64 - 2.0;
    let c = [
        DIMS[0] as f64 / 2.0 + shift,
        DIMS[1] as f64 / 2.0 - shift,
        DIMS[2] as f64 / 2.0,
    ];
    let n = DIMS.iter().product::<usize>();
    let mut noise = Noise(0x9e37_79b9 ^ (seed + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut label = vec![0u8; n];
    let mut body = vec![false; n];
    for k in 0..DIMS[2] {
        for j in 0..DIMS[1] {
            for i in 0..DIMS[0] {
                let idx = i + DIMS[0] * (j + DIMS[1] * k);
                let p = [i as f64, j as f64, k as f64];
                let mut l = label_at(task.layout, p, c);
                if no_tumour && l > 1 {
                    l = 1;
                }
                label[idx] = l;
                let q = [(p[0] - 23.5) / 22.0, (p[1] - 23.5) / 22.0, (p[2] - 19.5) / 19.0];
                body[idx] = q.iter().map(|x| x * x).sum::<f64>() < 1.0;
            }
        }
    }
    let channels = task.modality.len();
    let image = match task.kind {
        Modality::Ct => Voxels::I16(
            (0..n)
                .map(|idx| intensity(task.kind, label[idx], body[idx], 0, noise.next()).round() as i16)
                .collect(),
        ),
        Modality::Mr => Voxels::F32(
            (0..channels * n)
                .map(|x| {
                    let idx = x % n;
                    intensity(task.kind, label[idx], body[idx], x / n, noise.next()) as f32
                })
                .collect(),
        ),
    };
    let vol = Volume::new(DIMS, channels, g, image).unwrap();
    let images = dir.join(if test { "imagesTs" } else { "imagesTr" });
    std::fs::create_dir_all(&images).unwrap();
    if channels > 1 {
        write_4d(&vol, &images.join(name));
    } else {
        aiaa_imaging::io::write_volume(&vol, &images.join(name)).unwrap();
    }
    if !test {
        let labels = dir.join("labelsTr");
        std::fs::create_dir_all(&labels).unwrap();
        let lab = Volume::scalar(DIMS, g, Voxels::U8(label)).unwrap();
        aiaa_imaging::io::write_volume(&lab, &labels.join(name)).unwrap();
    }
}

/// A task folder under `root` with `cases` training cases and one test image; the cases in
/// `without_tumour` have no label above 1. Returns the folder.
fn write_task(root: &Path, task: &Task, cases: usize, without_tumour: &[usize]) -> PathBuf {
    let dir = root.join(task.folder);
    let short = task.folder.split('_').nth(1).unwrap_or("case").to_lowercase();
    let mut training = Vec::new();
    for i in 0..cases {
        let name = format!("{short}_{i}.nii.gz");
        write_case(&dir, task, &name, i as u64, false, without_tumour.contains(&i));
        training.push(json!({"image": format!("./imagesTr/{name}"), "label": format!("./labelsTr/{name}")}));
    }
    let test_name = format!("{short}_{cases}.nii.gz");
    write_case(&dir, task, &test_name, 99, true, false);
    let index = |names: &[&str]| -> Value {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (i.to_string(), json!(n)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let dataset = json!({
        "name": task.folder.split('_').nth(1).unwrap_or(task.folder),
        "description": "synthetic, shaped like the Decathlon task",
        "tensorImageSize": if task.modality.len() > 1 { "4D" } else { "3D" },
        "modality": index(task.modality),
        "labels": index(task.labels),
        "numTraining": cases,
        "numTest": 1,
        "training": training,
        "test": [format!("./imagesTs/{test_name}")],
    });
    std::fs::write(
        dir.join("dataset.json"),
        serde_json::to_string_pretty(&dataset).unwrap(),
    )
    .unwrap();
    dir
}

fn read(path: &Path) -> Volume {
    aiaa_imaging::io::read_volume(path, &ReadOptions::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Runs `aiaa datalist from-msd <tasks> -o <out> <flags>`; panics with its output on failure.
fn from_msd(tasks: &[PathBuf], out: &Path, flags: &[&str]) -> (String, String) {
    let mut args = vec!["datalist", "from-msd"];
    args.extend(tasks.iter().map(|t| s(t)));
    args.extend(["-o", s(out)]);
    args.extend(flags);
    let (status, stdout, stderr) = run_cli(&args, &[]);
    assert!(status.success(), "aiaa {args:?} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// Every `transforms.X` entry of a pipeline, by name.
fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect()
}

/// Checks what the recipe file itself promises (at its real size).
fn check_recipe(recipe: &Recipe, cfg: &Value) {
    let r = recipe.name;
    assert_eq!(cfg["num_channels"], 2, "{r}: image + extreme points");
    assert_eq!(cfg["num_classes"], 2, "{r}: background + object");
    let roi = cfg["network_input_size"].clone();
    let levels = cfg["net_config"]["levels"].as_u64().unwrap_or(4);
    for d in roi.as_array().unwrap() {
        assert_eq!(
            d.as_u64().unwrap() % (1 << levels),
            0,
            "{r}: roi {roi} vs {levels} levels"
        );
    }
    for section in ["train", "validate"] {
        let list = &cfg[section]["pre_transforms"];
        for t in list.as_array().unwrap() {
            if t["name"] == "transforms.CropForegroundObject" {
                assert_eq!(t["size"], roi, "{r}: {section} crop size differs from the roi");
                assert_eq!(t["foreground_only"], true, "{r}: every label value is the object");
            }
        }
        let n = names(list);
        assert_eq!(
            n.last(),
            Some(&"transforms.AddExtremePointsChannel"),
            "{r} {section}"
        );
        let ct = n.contains(&"transforms.ScaleIntensityRange");
        let mr = n.contains(&"transforms.NormalizeNonzeroIntensities");
        let kind = recipe.tasks[0].kind;
        assert_eq!(
            (ct, mr),
            (kind == Modality::Ct, kind == Modality::Mr),
            "{r} {section}: CT takes ScaleIntensityRange, MR NormalizeNonzeroIntensities"
        );
    }
    // The HU window is the same for training and validation.
    let window = |section: &str| {
        cfg[section]["pre_transforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "transforms.ScaleIntensityRange")
            .map(|t| (t["a_min"].clone(), t["a_max"].clone()))
    };
    assert_eq!(window("train"), window("validate"), "{r}: windows differ");
}

/// The recipe with every size set to `roi` (network, crops).
fn at_roi(cfg: &Value, roi: u64) -> Value {
    let mut c = cfg.clone();
    c["network_input_size"] = json!([roi, roi, roi]);
    for section in ["train", "validate"] {
        for t in c[section]["pre_transforms"].as_array_mut().unwrap() {
            if t.get("size").is_some() {
                t["size"] = json!([roi, roi, roi]);
            }
        }
    }
    c
}

/// `aiaa train segmentation -e CONFIG -d DATALIST -r OUT --dry-run --device DEVICE`.
fn dry_run(config: &Path, datalist: &Path, out: &Path, device: &str) -> String {
    let args = [
        "train",
        "segmentation",
        "-e",
        s(config),
        "-d",
        s(datalist),
        "-r",
        s(out),
        "--dry-run",
        "--device",
        device,
    ];
    let (status, stdout, stderr) = run_cli(&args, &[("AIAA_TORCH_THREADS", "2")]);
    assert!(
        status.success(),
        "dry run of {} failed:\n{stdout}\n{stderr}",
        config.display()
    );
    assert!(
        stdout.lines().any(|l| l.starts_with("summary dry-run")),
        "no dry-run summary:\n{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("validation ") && l.contains("mean_dice")),
        "the dry run validated nothing:\n{stdout}"
    );
    assert!(
        !out.exists(),
        "a dry run writes nothing, but {} exists",
        out.display()
    );
    stdout
}

/// The synthetic task folders of a recipe (4 cases each; for label maps that keep tumour
/// only, case 1 of the first task has none and must be left out).
fn recipe_tasks(root: &Path, recipe: &Recipe) -> (Vec<PathBuf>, usize) {
    let keeps_tumour_only = matches!(recipe.name, "annotation_livertumor");
    let mut dirs = Vec::new();
    let mut left_out = 0;
    for (i, t) in recipe.tasks.iter().enumerate() {
        let without: &[usize] = if keeps_tumour_only && i == 0 { &[1] } else { &[] };
        left_out += without.len();
        dirs.push(write_task(root, t, 4, without));
    }
    (dirs, left_out)
}

/// `from-msd` for `recipe`, checked: the split, the channels and the labels of the files the
/// datalist names. Returns the datalist path.
fn recipe_datalist(root: &Path, recipe: &Recipe) -> PathBuf {
    let (dirs, left_out) = recipe_tasks(root, recipe);
    let out = root.join("lists").join(format!("{}.json", recipe.name));
    let mut flags = recipe.flags.to_vec();
    flags.extend(["--validation-fraction", "0.25"]);
    let (_, stderr) = from_msd(&dirs, &out, &flags);
    let dl = read_json(&out);
    let r = recipe.name;
    let train = dl["training"].as_array().unwrap();
    let val = dl["validation"].as_array().unwrap();
    let test = dl["testing"].as_array().unwrap();
    assert_eq!(
        train.len() + val.len(),
        4 * recipe.tasks.len() - left_out,
        "{r}: {dl:#}"
    );
    assert_eq!(stderr.matches("left out").count(), left_out, "{r}: {stderr}");
    assert_eq!(test.len(), recipe.tasks.len(), "{r}");
    let channels: usize = match recipe.flags.iter().position(|f| *f == "--channels") {
        Some(i) => recipe.flags[i + 1].split(',').count(),
        None => recipe.tasks[0].modality.len(),
    };
    assert_eq!(
        channels, 1,
        "{r}: every seed annotation model takes one image channel"
    );
    let base = out.parent().unwrap();
    for item in train.iter().chain(val) {
        let image = read(&base.join(item["image"].as_str().unwrap()));
        assert_eq!(image.channels, channels, "{r}: {item}");
        let label = read(&base.join(item["label"].as_str().unwrap()));
        let max = label.voxels.min_max().unwrap().1;
        assert!(max > 0.0, "{r}: {item} has no foreground");
        if recipe.flags.contains(&"--label-map") {
            assert_eq!(max, 1.0, "{r}: mapped labels are 0/1");
        }
    }
    out
}

#[test]
fn every_recipe_prepares_its_decathlon_task_and_dry_runs() {
    let full = std::env::var("AIAA_RECIPES_FULL").is_ok_and(|v| v == "1");
    let tmp = tempfile::tempdir().unwrap();
    let root = repo_root();
    let docs = std::fs::read_to_string(root.join("docs/recipes.md")).expect("docs/recipes.md");
    let mut found: Vec<String> = std::fs::read_dir(root.join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("annotation_") && n != "annotation_mri_brain")
        .collect();
    found.sort();
    let mut listed: Vec<String> = RECIPES.iter().map(|r| r.name.to_string()).collect();
    listed.sort();
    assert_eq!(
        found, listed,
        "every recipes/annotation_* but the brain-extraction demo is a seed model tested here"
    );

    let mut timings = Vec::new();
    for recipe in RECIPES {
        let t0 = Instant::now();
        let dir = tmp.path().join(recipe.name);
        // The command docs/recipes.md gives for this recipe, with the same flags.
        let tasks: Vec<&str> = recipe.tasks.iter().map(|t| t.folder).collect();
        let mut command = format!("aiaa datalist from-msd {}", tasks.join(" "));
        for f in recipe.flags {
            command.push(' ');
            command.push_str(f);
        }
        command.push_str(" -o ");
        assert!(
            docs.contains(&command),
            "docs/recipes.md lacks `{command}...` for {}",
            recipe.name
        );
        assert!(docs.contains(&format!("recipes/{}/config_train.json", recipe.name)));

        let datalist = recipe_datalist(&dir, recipe);
        let config_path = root.join("recipes").join(recipe.name).join("config_train.json");
        let cfg = read_json(&config_path);
        check_recipe(recipe, &cfg);
        let run_config = if full || recipe.name == "annotation_hippocampus" {
            config_path
        } else {
            let p = dir.join("config_train.json");
            std::fs::write(&p, serde_json::to_string_pretty(&at_roi(&cfg, TEST_ROI)).unwrap()).unwrap();
            p
        };
        dry_run(
            &run_config,
            &datalist,
            &dir.join("out"),
            if full { "auto" } else { "cpu" },
        );
        timings.push(format!("{} {:.1}s", recipe.name, t0.elapsed().as_secs_f64()));
    }
    eprintln!("recipes: {}", timings.join(", "));
}

#[test]
fn from_msd_writes_the_seeded_split_with_relative_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let task = write_task(tmp.path(), &SPLEEN, 5, &[]);
    let out = tmp.path().join("lists/spleen.json");
    let (stdout, _) = from_msd(
        std::slice::from_ref(&task),
        &out,
        &["--validation-fraction", "0.4", "--seed", "0"],
    );
    assert!(stdout.contains("3 training, 2 validation, 1 testing"), "{stdout}");
    let case = |i: usize| {
        json!({"image": format!("../Task09_Spleen/imagesTr/spleen_{i}.nii.gz"),
               "label": format!("../Task09_Spleen/labelsTr/spleen_{i}.nii.gz")})
    };
    // Seed 0 draws cases 2 and 3 of 5 for validation (SplitMix64 + Fisher–Yates, checked
    // against an independent Python implementation; the CLI's unit tests pin the generator
    // itself). Both lists keep the dataset.json order.
    let dl = read_json(&out);
    assert_eq!(dl["training"], json!([case(0), case(1), case(4)]));
    assert_eq!(dl["validation"], json!([case(2), case(3)]));
    assert_eq!(
        dl["testing"],
        json!([{"image": "../Task09_Spleen/imagesTs/spleen_5.nii.gz"}])
    );
    assert_eq!(dl["modality"], json!({"0": "CT"}));
    assert_eq!(dl["labels"], json!({"0": "background", "1": "spleen"}));
    assert_eq!(dl["name"], "Spleen");

    // The same seed writes the same bytes; another seed another split; the datalist next to
    // the task folder names files without `..`.
    let first = std::fs::read(&out).unwrap();
    from_msd(
        std::slice::from_ref(&task),
        &out,
        &["--validation-fraction", "0.4", "--seed", "0"],
    );
    assert_eq!(std::fs::read(&out).unwrap(), first);
    from_msd(
        std::slice::from_ref(&task),
        &out,
        &["--validation-fraction", "0.4", "--seed", "7"],
    );
    let other = read_json(&out);
    assert_ne!(other["validation"], dl["validation"]);
    assert_eq!(other["validation"].as_array().unwrap().len(), 2);
    let inside = task.join("datalist.json");
    from_msd(std::slice::from_ref(&task), &inside, &["--no-testing"]);
    let dl = read_json(&inside);
    assert_eq!(
        dl["training"].as_array().unwrap().len(),
        4,
        "round(5 * 0.2) = 1 validation"
    );
    assert!(dl.get("testing").is_none());
    for item in dl["training"]
        .as_array()
        .unwrap()
        .iter()
        .chain(dl["validation"].as_array().unwrap())
    {
        let p = item["image"].as_str().unwrap();
        assert!(p.starts_with("imagesTr/spleen_"), "{p}");
        assert!(task.join(p).is_file());
    }
    // Fraction 0: everything trains.
    from_msd(std::slice::from_ref(&task), &out, &["--validation-fraction", "0"]);
    let dl = read_json(&out);
    assert_eq!(
        (
            dl["training"].as_array().unwrap().len(),
            dl["validation"].as_array().unwrap().len()
        ),
        (5, 0)
    );
}

#[test]
fn from_msd_maps_labels_and_selects_channels() {
    let tmp = tempfile::tempdir().unwrap();
    let brain = write_task(tmp.path(), &BRAIN, 3, &[]);
    let out = tmp.path().join("tc.json");
    let (_, stderr) = from_msd(
        std::slice::from_ref(&brain),
        &out,
        &[
            "--channels",
            "2",
            "--label-map",
            "2=1,3=1",
            "--validation-fraction",
            "0.34",
        ],
    );
    assert!(!stderr.contains("left out"), "{stderr}");
    let dl = read_json(&out);
    assert_eq!(dl["modality"], json!({"0": "t1gd"}));
    assert_eq!(
        dl["labels"],
        json!({"0": "background", "1": "non-enhancing tumor / enhancing tumour"})
    );
    let item = &dl["training"][0];
    let image_rel = item["image"].as_str().unwrap();
    assert!(
        image_rel.starts_with("tc_files/Task01_BrainTumour/imagesTr/"),
        "{image_rel}"
    );
    let name = Path::new(image_rel).file_name().unwrap();
    // The selected channel is channel 2 of the 4D original, voxel for voxel.
    let original = read(&brain.join("imagesTr").join(name));
    assert_eq!(original.channels, 4, "the synthetic Decathlon image is 4D");
    let selected = read(&tmp.path().join(image_rel));
    assert_eq!(selected.channels, 1);
    assert_eq!(selected.voxels, original.channel(2).unwrap().voxels);
    assert_eq!(selected.geometry, original.geometry);
    // The tumour core: labels 2 and 3 become 1, the oedema (1) background.
    let raw = read(&brain.join("labelsTr").join(name));
    let mapped = read(&tmp.path().join(item["label"].as_str().unwrap()));
    let (r, m) = (raw.voxels.to_f32_vec(), mapped.voxels.to_f32_vec());
    assert!(r.contains(&1.0) && r.contains(&2.0) && r.contains(&3.0));
    for (a, b) in r.iter().zip(&m) {
        assert_eq!(*b, if *a >= 2.0 { 1.0 } else { 0.0 });
    }
    // The test image gets the same channel.
    let t = read(&tmp.path().join(dl["testing"][0]["image"].as_str().unwrap()));
    assert_eq!(t.channels, 1);

    // Merged tasks with a map that keeps only the tumour: a liver without one is left out
    // and named.
    let liver = write_task(tmp.path(), &LIVER, 3, &[2]);
    let vessel = write_task(tmp.path(), &HEPATIC, 2, &[]);
    let out = tmp.path().join("tumour.json");
    let (stdout, stderr) = from_msd(&[liver, vessel], &out, &["--label-map", "2=1"]);
    assert!(
        stderr.contains("left out Task03_Liver training[2] (liver_2.nii.gz)"),
        "{stderr}"
    );
    assert!(stdout.contains("1 left out"), "{stdout}");
    let dl = read_json(&out);
    let all: Vec<&Value> = dl["training"]
        .as_array()
        .unwrap()
        .iter()
        .chain(dl["validation"].as_array().unwrap())
        .collect();
    assert_eq!(all.len(), 4);
    // Each task is split on its own: one validation case each.
    let val: Vec<&str> = dl["validation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["label"].as_str().unwrap())
        .collect();
    assert_eq!(val.len(), 2, "{val:?}");
    assert!(val.iter().any(|v| v.contains("Task03_Liver")) && val.iter().any(|v| v.contains("Task08")));
    assert_eq!(dl["labels"], json!({"0": "background", "1": "cancer / Tumour"}));
    assert_eq!(dl["name"], "Liver + HepaticVessel");
}

#[test]
fn from_msd_errors_name_the_file_and_field_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let task = write_task(tmp.path(), &PROSTATE, 3, &[]);
    let out = tmp.path().join("out/datalist.json");
    let fails = |args: &[&str]| {
        let mut a = vec!["datalist", "from-msd", s(&task), "-o", s(&out)];
        a.extend(args);
        let (status, stdout, stderr) = run_cli(&a, &[]);
        assert!(!status.success(), "{a:?} should fail:\n{stdout}");
        assert!(!out.exists(), "a failed run wrote {}", out.display());
        stderr
    };
    let e = fails(&["--channels", "2"]);
    assert!(
        e.contains("dataset.json") && e.contains("modality") && e.contains("T2, ADC"),
        "{e}"
    );
    let e = fails(&["--label-map", "3=1"]);
    assert!(e.contains("labels has no value 3"), "{e}");
    let e = fails(&["--label-map", "2"]);
    assert!(e.contains("not OLD=NEW"), "{e}");
    let e = fails(&["--validation-fraction", "1"]);
    assert!(e.contains("--validation-fraction"), "{e}");
    // Rewritten files never replace the originals.
    let label = task.join("labelsTr/prostate_0.nii.gz");
    let before = std::fs::read(&label).unwrap();
    let e = fails(&["--label-map", "2=1", "--derived-dir", s(tmp.path())]);
    assert!(e.contains("would overwrite the original"), "{e}");
    assert_eq!(std::fs::read(&label).unwrap(), before);

    // A missing label: named with its dataset.json field, its path, and the count of others.
    std::fs::remove_file(task.join("labelsTr/prostate_1.nii.gz")).unwrap();
    std::fs::remove_file(task.join("imagesTs/prostate_3.nii.gz")).unwrap();
    let e = fails(&[]);
    assert!(
        e.contains("Task05_Prostate/dataset.json")
            && e.contains("training[1].label names ./labelsTr/prostate_1.nii.gz, which does not exist")
            && e.contains("1 more file(s)"),
        "{e}"
    );
    // A broken dataset.json: the field is named.
    std::fs::write(task.join("dataset.json"), r#"{"training": [{"image": 3}]}"#).unwrap();
    let e = fails(&[]);
    assert!(e.contains("training[0].image: expected a file path"), "{e}");
    let e = {
        let (status, _, stderr) = run_cli(
            &[
                "datalist",
                "from-msd",
                s(&tmp.path().join("nowhere")),
                "-o",
                s(&out),
            ],
            &[],
        );
        assert!(!status.success());
        stderr
    };
    assert!(
        e.contains("nowhere") && e.contains("not a readable task folder"),
        "{e}"
    );
}
