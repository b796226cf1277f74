//! `aiaa datalist from-msd`: a datalist (seed 5.2, 5.3) from Medical Segmentation Decathlon
//! task folders.
//!
//! ```text
//! aiaa datalist from-msd TASK_DIR [TASK_DIR...] [-o datalist.json] [--validation-fraction 0.2]
//!     [--seed 0] [--label-map OLD=NEW[,OLD=NEW...]] [--channels C[,C...]] [--derived-dir DIR]
//!     [--no-testing] [--threads N]
//! ```
//!
//! Each task folder holds the Decathlon's `dataset.json` (`name`, `modality` `{"0": "CT"}`,
//! `labels` `{"0": "background", "1": "spleen"}`, `numTraining`, `training`
//! `[{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}]`, `test`
//! `["./imagesTs/y.nii.gz"]`). Every file it names must exist (the first missing one is named,
//! with the count of the others). The output is our datalist:
//!
//! - `training` and `validation`: the task's training cases split at random, each task on its
//!   own (so merged tasks keep their proportions): `round(n * fraction)` cases go to
//!   `validation`, at least one when the fraction is above 0 and the task has two or more
//!   cases, and never all of them. The draw is a Fisher–Yates shuffle driven by SplitMix64
//!   seeded with `--seed` and the task's position, so a seed gives the same split on every
//!   machine and version. Both lists keep the order of `dataset.json`.
//! - `testing`: the `test` images as `{"image": ...}` items (for `aiaa infer
//!   --data_list_key testing`), unless `--no-testing`.
//! - `name`, `description`, `modality` and `labels`: what the lists hold, after the options
//!   below (the trainer ignores these keys, as it ignores the Decathlon's).
//!
//! Paths are relative to the datalist's folder (the seed's convention), computed from the
//! canonical paths of both.
//!
//! Options that derive files (written atomically under `--derived-dir`, by default the
//! folder `<datalist stem>_files` next to the datalist, as `<task folder>/imagesTr/<file>`
//! and so on; the datalist then names these files):
//!
//! - `--label-map OLD=NEW,...`: every label file is rewritten as `u8` with each listed value
//!   `OLD` replaced by `NEW` and every value not listed set to 0 (`2=1` keeps only label 2, as
//!   1). Every `OLD` must be a label of each task's `dataset.json`. A case whose rewritten
//!   label has no foreground is left out (and named on stderr): the annotation recipes crop
//!   around the foreground and could not use it.
//! - `--channels C,...`: every image (training and test) is rewritten with only these
//!   channels, in this order (indices of `modality`; a Decathlon 4D image stores one
//!   modality per volume), e.g. `--channels 0` keeps the T2 of the prostate task.
//!
//! Merging several tasks (`from-msd Task03_Liver Task08_HepaticVessel`) needs the same
//! number of modalities in each; their label names are listed per value.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use aiaa_imaging::voxels::Element;
use aiaa_imaging::{ReadOptions, Volume, Voxels, with_voxels};
use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value, json};

/// `aiaa datalist`.
#[derive(Debug, clap::Args)]
pub struct DatalistArgs {
    #[command(subcommand)]
    kind: DatalistKind,
}

#[derive(Debug, clap::Subcommand)]
enum DatalistKind {
    /// Writes a datalist from Medical Segmentation Decathlon task folders (their dataset.json).
    #[command(name = "from-msd")]
    FromMsd(FromMsdArgs),
}

/// The flags of `aiaa datalist from-msd`.
#[derive(Debug, Clone, clap::Args)]
pub struct FromMsdArgs {
    /// Decathlon task folders (each with dataset.json); several are merged.
    #[arg(required = true, value_name = "TASK_DIR")]
    pub tasks: Vec<PathBuf>,
    /// The datalist to write; its paths are relative to its folder.
    #[arg(short = 'o', long, default_value = "datalist.json")]
    pub output: PathBuf,
    /// Fraction of each task's training cases that go to `validation` (0 to below 1).
    #[arg(
        long = "validation-fraction",
        visible_alias = "validation_fraction",
        default_value_t = 0.2
    )]
    pub validation_fraction: f64,
    /// Seed of the split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Rewrite labels: OLD=NEW pairs, comma-separated; values not listed become 0.
    #[arg(
        long = "label-map",
        visible_alias = "label_map",
        value_name = "OLD=NEW[,OLD=NEW...]"
    )]
    pub label_map: Option<String>,
    /// Keep only these image channels (modality indices), in this order.
    #[arg(long, value_delimiter = ',', value_name = "C[,C...]")]
    pub channels: Option<Vec<usize>>,
    /// Where rewritten files go (default: `<datalist stem>_files` next to the datalist).
    #[arg(long = "derived-dir", visible_alias = "derived_dir")]
    pub derived_dir: Option<PathBuf>,
    /// Leave the test images out (no `testing` list).
    #[arg(long = "no-testing", visible_alias = "no_testing")]
    pub no_testing: bool,
    /// Files rewritten in parallel (default: the CPU count, at most 4: volumes can be large).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// `aiaa datalist`.
pub fn run(args: DatalistArgs) -> anyhow::Result<()> {
    match args.kind {
        DatalistKind::FromMsd(a) => {
            let report = from_msd(&a)?;
            for line in &report.left_out {
                eprintln!("left out {line}");
            }
            println!("{}", report.summary);
            Ok(())
        }
    }
}

/// One training case of a task, paths absolute and canonical.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// The image (possibly 4D: one volume per modality).
    pub image: PathBuf,
    /// The label.
    pub label: PathBuf,
}

/// A Decathlon task folder as its `dataset.json` describes it.
#[derive(Debug, Clone)]
pub struct MsdTask {
    /// The folder (canonical).
    pub dir: PathBuf,
    /// Its `dataset.json`.
    pub file: PathBuf,
    /// `name` (the folder name when absent).
    pub name: String,
    /// `modality`, by channel index.
    pub modality: BTreeMap<usize, String>,
    /// `labels`, by value.
    pub labels: BTreeMap<i64, String>,
    /// `training`.
    pub training: Vec<Case>,
    /// `test` (images only).
    pub test: Vec<PathBuf>,
}

impl MsdTask {
    /// The folder's own name (`Task09_Spleen`).
    pub fn folder_name(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.name.clone())
    }
}

/// Reads and checks `<dir>/dataset.json`: its fields, and that every file it names exists.
pub fn read_task(dir: &Path) -> anyhow::Result<MsdTask> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{}: not a readable task folder", dir.display()))?;
    let file = dir.join("dataset.json");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("{}: cannot read the Decathlon dataset.json", file.display()))?;
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", file.display()))?;
    let f = file.display();
    let obj = json
        .as_object()
        .ok_or_else(|| anyhow!("{f}: expected a JSON object"))?;
    let name = match obj.get("name") {
        None => dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => bail!("{f}: name: expected a string, got {v}"),
    };
    let modality = match obj.get("modality") {
        None => BTreeMap::from([(0, "unknown".to_string())]),
        Some(v) => index_map(v).map_err(|m| anyhow!("{f}: modality: {m}"))?,
    };
    let channels: Vec<usize> = modality.keys().copied().collect();
    if channels != (0..channels.len()).collect::<Vec<_>>() {
        bail!("{f}: modality: the channel keys must be 0, 1, ... without gaps, got {channels:?}");
    }
    let labels = match obj.get("labels") {
        None => BTreeMap::new(),
        Some(v) => index_map(v)
            .map_err(|m| anyhow!("{f}: labels: {m}"))?
            .into_iter()
            .map(|(k, n)| (k as i64, n))
            .collect(),
    };
    let entries = match obj.get("training") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => bail!("{f}: training: the list is empty"),
        Some(v) => bail!("{f}: training: expected a list of {{\"image\", \"label\"}} items, got {v}"),
        None => bail!("{f}: training: required key is missing"),
    };
    let mut missing: Vec<String> = Vec::new();
    let mut resolve = |field: String, v: Option<&Value>| -> anyhow::Result<PathBuf> {
        let rel = match v {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(v) => bail!("{f}: {field}: expected a file path, got {v}"),
            None => bail!("{f}: {field}: required key is missing"),
        };
        // Joined without `.` components (`./imagesTr/x.nii.gz`), for messages.
        let path: PathBuf = dir.join(rel).components().collect();
        match path.canonicalize() {
            Ok(p) if p.is_file() => Ok(p),
            _ => {
                missing.push(format!(
                    "{field} names {rel}, which does not exist ({})",
                    path.display()
                ));
                Ok(path)
            }
        }
    };
    let mut training = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let Some(item) = e.as_object() else {
            bail!("{f}: training[{i}]: expected an object with \"image\" and \"label\", got {e}");
        };
        training.push(Case {
            image: resolve(format!("training[{i}].image"), item.get("image"))?,
            label: resolve(format!("training[{i}].label"), item.get("label"))?,
        });
    }
    let mut test = Vec::new();
    match obj.get("test") {
        None => {}
        Some(Value::Array(a)) => {
            for (i, e) in a.iter().enumerate() {
                // The Decathlon lists test images as paths; an {"image": ...} item is accepted too.
                let v = e.get("image").unwrap_or(e);
                test.push(resolve(format!("test[{i}]"), Some(v))?);
            }
        }
        Some(v) => bail!("{f}: test: expected a list of image paths, got {v}"),
    }
    if let Some(first) = missing.first() {
        let more = match missing.len() - 1 {
            0 => String::new(),
            n => format!(" ({n} more file(s) it names are missing too)"),
        };
        bail!("{f}: {first}{more}");
    }
    if let Some(n) = obj.get("numTraining").and_then(Value::as_u64)
        && n != training.len() as u64
    {
        eprintln!(
            "warning: {f}: numTraining is {n} but training lists {} cases; using the list",
            training.len()
        );
    }
    Ok(MsdTask {
        dir,
        file,
        name,
        modality,
        labels,
        training,
        test,
    })
}

/// `{"0": "CT", "1": "MR"}` as a map from index to name.
fn index_map(v: &Value) -> Result<BTreeMap<usize, String>, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("expected an object such as {{\"0\": \"name\"}}, got {v}"))?;
    obj.iter()
        .map(|(k, n)| {
            let i = k
                .trim()
                .parse::<usize>()
                .map_err(|_| format!("key {k:?} is not a non-negative integer"))?;
            let name = n
                .as_str()
                .ok_or_else(|| format!("\"{k}\": expected a name, got {n}"))?;
            Ok((i, name.to_string()))
        })
        .collect()
}

/// Parses `--label-map`: `OLD=NEW` pairs, comma-separated, `NEW` in 0..=255, at least one
/// `NEW` above 0, no `OLD` twice.
pub fn parse_label_map(s: &str) -> anyhow::Result<BTreeMap<i64, u8>> {
    let mut map = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (old, new) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--label-map: {pair:?} is not OLD=NEW"))?;
        let old: i64 = old
            .trim()
            .parse()
            .map_err(|_| anyhow!("--label-map: {pair:?}: {:?} is not an integer label", old.trim()))?;
        let new: u8 = new.trim().parse().map_err(|_| {
            anyhow!(
                "--label-map: {pair:?}: {:?} is not a label in 0..=255",
                new.trim()
            )
        })?;
        if map.insert(old, new).is_some() {
            bail!("--label-map: label {old} is mapped twice");
        }
    }
    if map.is_empty() {
        bail!("--label-map: give at least one OLD=NEW pair, e.g. 2=1");
    }
    if map.values().all(|&v| v == 0) {
        bail!("--label-map: every label maps to 0, so no case would have foreground");
    }
    Ok(map)
}

/// SplitMix64 (Steele, Lea, Flood 2014): the split's random source, fixed here so that a seed
/// means the same split everywhere.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by rejection (no modulo bias).
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// How many of `n` cases go to validation for `fraction`: see the module docs.
pub fn validation_count(n: usize, fraction: f64) -> usize {
    if n < 2 || fraction <= 0.0 {
        return 0;
    }
    ((n as f64 * fraction).round() as usize).clamp(1, n - 1)
}

/// Which of `n` cases are validation cases: a seeded Fisher–Yates shuffle of `0..n`, the first
/// [`validation_count`] of it. `stream` separates the tasks of one run.
pub fn split(n: usize, fraction: f64, seed: u64, stream: u64) -> Vec<bool> {
    let mut rng = SplitMix64(seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let mut validation = vec![false; n];
    for &i in &order[..validation_count(n, fraction)] {
        validation[i] = true;
    }
    validation
}

/// `path` relative to the folder `base` (both absolute), with `..` where needed.
pub fn relative_to(path: &Path, base: &Path) -> PathBuf {
    let p: Vec<Component> = path.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out
}

/// A path as a datalist string (`/` separators).
fn path_string(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// The label rewritten by `map` (values not listed become 0), as `u8`; `None` when nothing is
/// foreground.
pub fn map_label(vol: &Volume, map: &BTreeMap<i64, u8>) -> Option<Volume> {
    let n = vol.voxel_count();
    let mut any = false;
    let out: Vec<u8> = with_voxels!(&vol.voxels, v => v[..n].iter().map(|x| {
        let f = x.to_f64();
        let m = if f.fract() == 0.0 { map.get(&(f as i64)).copied().unwrap_or(0) } else { 0 };
        any |= m > 0;
        m
    }).collect());
    any.then(|| Volume {
        channels: 1,
        voxels: Voxels::U8(out),
        ..vol.clone()
    })
}

/// The channels `keep` of `vol`, in that order, same element type.
pub fn select_channels(vol: &Volume, keep: &[usize]) -> anyhow::Result<Volume> {
    if let Some(&c) = keep.iter().find(|&&c| c >= vol.channels) {
        bail!("has {} channel(s); channel {c} was asked for", vol.channels);
    }
    let n = vol.voxel_count();
    let voxels = with_voxels!(&vol.voxels, v => {
        let mut out = Vec::with_capacity(n * keep.len());
        for &c in keep {
            out.extend_from_slice(&v[c * n..(c + 1) * n]);
        }
        Element::wrap(out)
    });
    Ok(Volume::new(vol.dims, keep.len(), vol.geometry, voxels)?)
}

/// What [`from_msd`] did.
#[derive(Debug)]
pub struct Report {
    /// The cases left out, one line each (`Task03_Liver training[4] (liver_4.nii.gz): ...`).
    pub left_out: Vec<String>,
    /// One line for the terminal.
    pub summary: String,
}

/// A file to rewrite, and the result.
enum Job {
    Label { src: PathBuf, dst: PathBuf },
    Image { src: PathBuf, dst: PathBuf },
}

/// Runs `jobs` on `threads` threads; each result is `Ok(true)` written, `Ok(false)` left out
/// (a label without foreground). The first error stops the rest.
fn run_jobs(
    jobs: &[Job],
    threads: usize,
    map: Option<&BTreeMap<i64, u8>>,
    channels: Option<&[usize]>,
) -> anyhow::Result<Vec<bool>> {
    // Never over an original (a derived folder that is the tasks' parent would do that).
    for job in jobs {
        let (Job::Label { src, dst } | Job::Image { src, dst }) = job;
        if src == dst || dst.canonicalize().is_ok_and(|d| &d == src) {
            bail!(
                "--derived-dir would overwrite the original {}: choose a folder other than the one \
                 holding the task folders",
                src.display()
            );
        }
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<bool>>> = Mutex::new(vec![None; jobs.len()]);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let one = |job: &Job| -> anyhow::Result<bool> {
        let (src, dst) = match job {
            Job::Label { src, dst } | Job::Image { src, dst } => (src, dst),
        };
        let vol = aiaa_imaging::io::read_volume(src, &ReadOptions::default())
            .with_context(|| format!("{}: cannot be read", src.display()))?;
        let out = match job {
            Job::Label { .. } => match map.and_then(|m| map_label(&vol, m)) {
                Some(v) => v,
                None => return Ok(false),
            },
            Job::Image { .. } => match channels {
                Some(c) => select_channels(&vol, c).map_err(|e| anyhow!("{}: {e}", src.display()))?,
                None => vol,
            },
        };
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        aiaa_imaging::io::write_volume(&out, dst).with_context(|| format!("write {}", dst.display()))?;
        Ok(true)
    };
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs.len() || failure.lock().is_ok_and(|f| f.is_some()) {
                        return;
                    }
                    match one(&jobs[i]) {
                        Ok(r) => {
                            if let Ok(mut all) = results.lock() {
                                all[i] = Some(r);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    let all = results
        .into_inner()
        .map_err(|_| anyhow!("a worker thread panicked"))?;
    all.into_iter()
        .enumerate()
        .map(|(i, r)| r.ok_or_else(|| anyhow!("file {i} was not processed")))
        .collect()
}

/// `dst` for `src` of `task` under `derived`: `<derived>/<task folder>/<parent folder>/<file>`.
fn derived_path(derived: &Path, task: &MsdTask, src: &Path) -> PathBuf {
    let rel = src
        .strip_prefix(&task.dir)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| PathBuf::from(src.file_name().unwrap_or_default()));
    derived.join(task.folder_name()).join(rel)
}

/// The datalist as JSON text, keys in the given order, one list item per line.
pub fn render(entries: &[(&str, Value)]) -> anyhow::Result<String> {
    let compact = |v: &Value| -> anyhow::Result<String> {
        Ok(match v {
            Value::Object(o) => {
                let fields = o
                    .iter()
                    .map(|(k, x)| {
                        Ok(format!(
                            "{}: {}",
                            serde_json::to_string(k)?,
                            serde_json::to_string(x)?
                        ))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                format!("{{{}}}", fields.join(", "))
            }
            other => serde_json::to_string(other)?,
        })
    };
    let mut text = String::from("{\n");
    for (i, (key, value)) in entries.iter().enumerate() {
        let body = match value {
            Value::Array(items) if items.is_empty() => "[]".to_string(),
            Value::Array(items) => {
                let lines = items
                    .iter()
                    .map(|x| compact(x).map(|l| format!("    {l}")))
                    .collect::<anyhow::Result<Vec<_>>>()?;
                format!("[\n{}\n  ]", lines.join(",\n"))
            }
            other => compact(other)?,
        };
        let comma = if i + 1 < entries.len() { "," } else { "" };
        text.push_str(&format!("  {}: {body}{comma}\n", serde_json::to_string(key)?));
    }
    text.push_str("}\n");
    Ok(text)
}

/// Writes the datalist `args` describe; see the module docs.
pub fn from_msd(args: &FromMsdArgs) -> anyhow::Result<Report> {
    let fraction = args.validation_fraction;
    if !(0.0..1.0).contains(&fraction) {
        bail!("--validation-fraction must be in [0, 1), got {fraction}");
    }
    let map = args.label_map.as_deref().map(parse_label_map).transpose()?;
    let channels = args.channels.clone();
    if let Some(c) = &channels {
        if c.is_empty() {
            bail!("--channels: give at least one channel index");
        }
        if let Some(d) = c.iter().enumerate().find(|(i, x)| c[..*i].contains(x)) {
            bail!("--channels: channel {} is listed twice", d.1);
        }
    }
    let tasks = args
        .tasks
        .iter()
        .map(|d| read_task(d))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first = &tasks[0];
    for (i, t) in tasks.iter().enumerate() {
        // Rewritten files go to `<derived>/<task folder>/...`: one folder name, one task.
        if let Some(o) = tasks[..i].iter().find(|o| o.folder_name() == t.folder_name()) {
            bail!(
                "{} and {} are both task folder {:?}: give each task once",
                o.dir.display(),
                t.dir.display(),
                t.folder_name()
            );
        }
    }
    for t in &tasks[1..] {
        if t.modality.len() != first.modality.len() {
            bail!(
                "{} has {} modalities ({:?}) but {} has {} ({:?}): merged tasks must give the \
                 network the same channels",
                t.file.display(),
                t.modality.len(),
                t.modality.values().collect::<Vec<_>>(),
                first.file.display(),
                first.modality.len(),
                first.modality.values().collect::<Vec<_>>()
            );
        }
    }
    for t in &tasks {
        if let Some(c) = &channels
            && let Some(bad) = c.iter().find(|&&c| !t.modality.contains_key(&c))
        {
            bail!(
                "--channels: {}: modality has {} channel(s), 0 to {} ({}), not {bad}",
                t.file.display(),
                t.modality.len(),
                t.modality.len() - 1,
                t.modality.values().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        if let Some(m) = &map
            && let Some(bad) = m.keys().find(|v| !t.labels.contains_key(v))
        {
            bail!(
                "--label-map: {}: labels has no value {bad} (it lists {})",
                t.file.display(),
                t.labels
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }

    let output = if args.output.is_absolute() {
        args.output.clone()
    } else {
        std::env::current_dir()
            .context("the current folder")?
            .join(&args.output)
    };
    let out_name = output
        .file_name()
        .ok_or_else(|| anyhow!("--output {}: not a file name", args.output.display()))?
        .to_string_lossy()
        .into_owned();
    let out_parent = output.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(out_parent).with_context(|| format!("create {}", out_parent.display()))?;
    let out_dir = out_parent
        .canonicalize()
        .with_context(|| format!("{}: cannot be resolved", out_parent.display()))?;
    let stem = out_name.strip_suffix(".json").unwrap_or(&out_name);
    let derived = match &args.derived_dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => std::env::current_dir().context("the current folder")?.join(d),
        None => out_dir.join(format!("{stem}_files")),
    };
    let rewriting = map.is_some() || channels.is_some();
    if rewriting {
        std::fs::create_dir_all(&derived).with_context(|| format!("create {}", derived.display()))?;
    }
    let derived = if rewriting {
        derived
            .canonicalize()
            .with_context(|| format!("{}: cannot be resolved", derived.display()))?
    } else {
        derived
    };
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4)
    });

    // Labels first: which cases keep foreground.
    let mut keep: Vec<Vec<bool>> = tasks.iter().map(|t| vec![true; t.training.len()]).collect();
    let mut label_of: Vec<Vec<PathBuf>> = tasks
        .iter()
        .map(|t| t.training.iter().map(|c| c.label.clone()).collect())
        .collect();
    let mut left_out = Vec::new();
    if let Some(m) = &map {
        let mut jobs = Vec::new();
        for t in &tasks {
            for c in &t.training {
                jobs.push(Job::Label {
                    src: c.label.clone(),
                    dst: derived_path(&derived, t, &c.label),
                });
            }
        }
        let done = run_jobs(&jobs, threads, Some(m), None)?;
        let mut it = done.into_iter().zip(jobs);
        for (ti, t) in tasks.iter().enumerate() {
            for (ci, c) in t.training.iter().enumerate() {
                let Some((written, Job::Label { dst, .. })) = it.next() else {
                    bail!("internal error: label jobs out of step");
                };
                if written {
                    label_of[ti][ci] = dst;
                } else {
                    keep[ti][ci] = false;
                    left_out.push(format!(
                        "{} training[{ci}] ({}): no voxel of its label maps to a foreground value",
                        t.folder_name(),
                        c.label.file_name().unwrap_or_default().to_string_lossy()
                    ));
                }
            }
        }
    }
    // Then the images of the cases kept, and the test images.
    let mut image_of: Vec<Vec<PathBuf>> = tasks
        .iter()
        .map(|t| t.training.iter().map(|c| c.image.clone()).collect())
        .collect();
    let mut test_of: Vec<Vec<PathBuf>> = tasks.iter().map(|t| t.test.clone()).collect();
    if let Some(ch) = &channels {
        let mut jobs = Vec::new();
        let mut slots = Vec::new();
        for (ti, t) in tasks.iter().enumerate() {
            for (ci, c) in t.training.iter().enumerate() {
                if keep[ti][ci] {
                    jobs.push(Job::Image {
                        src: c.image.clone(),
                        dst: derived_path(&derived, t, &c.image),
                    });
                    slots.push((ti, Some(ci), None));
                }
            }
            if !args.no_testing {
                for (si, p) in t.test.iter().enumerate() {
                    jobs.push(Job::Image {
                        src: p.clone(),
                        dst: derived_path(&derived, t, p),
                    });
                    slots.push((ti, None, Some(si)));
                }
            }
        }
        run_jobs(&jobs, threads, None, Some(ch))?;
        for (job, slot) in jobs.into_iter().zip(slots) {
            let Job::Image { dst, .. } = job else {
                bail!("internal error: image jobs out of step");
            };
            match slot {
                (ti, Some(ci), _) => image_of[ti][ci] = dst,
                (ti, None, Some(si)) => test_of[ti][si] = dst,
                _ => bail!("internal error: image job without a slot"),
            }
        }
    }

    // The split and the lists.
    let rel = |p: &Path| Value::String(path_string(&relative_to(p, &out_dir)));
    let (mut training, mut validation, mut testing) = (Vec::new(), Vec::new(), Vec::new());
    let mut parts = Vec::new();
    for (ti, t) in tasks.iter().enumerate() {
        let kept: Vec<usize> = (0..t.training.len()).filter(|&ci| keep[ti][ci]).collect();
        let is_val = split(kept.len(), fraction, args.seed, ti as u64);
        let nval = is_val.iter().filter(|&&v| v).count();
        for (k, &ci) in kept.iter().enumerate() {
            let item = json!({"image": rel(&image_of[ti][ci]), "label": rel(&label_of[ti][ci])});
            if is_val[k] {
                validation.push(item);
            } else {
                training.push(item);
            }
        }
        if !args.no_testing {
            testing.extend(test_of[ti].iter().map(|p| json!({"image": rel(p)})));
        }
        let dropped = t.training.len() - kept.len();
        parts.push(format!(
            "{} ({} training, {} validation{}{})",
            t.folder_name(),
            kept.len() - nval,
            nval,
            if args.no_testing || t.test.is_empty() {
                String::new()
            } else {
                format!(", {} testing", t.test.len())
            },
            if dropped > 0 {
                format!(", {dropped} left out")
            } else {
                String::new()
            }
        ));
    }
    if training.is_empty() {
        bail!("no training case is left: {}", parts.join("; "));
    }

    let mut modality = Map::new();
    match &channels {
        Some(c) => {
            for (i, ch) in c.iter().enumerate() {
                modality.insert(i.to_string(), json!(first.modality[ch]));
            }
        }
        None => {
            for (i, n) in &first.modality {
                modality.insert(i.to_string(), json!(n));
            }
        }
    }
    // Label names per value, every task's (deduplicated).
    let mut names: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    let mut add = |v: i64, n: &str| {
        let e = names.entry(v).or_default();
        if !e.iter().any(|x| x == n) {
            e.push(n.to_string());
        }
    };
    for t in &tasks {
        match &map {
            Some(m) => {
                add(0, "background");
                for (old, &new) in m {
                    if new > 0 {
                        add(new as i64, &t.labels[old]);
                    }
                }
            }
            None => t.labels.iter().for_each(|(v, n)| add(*v, n)),
        }
    }
    let mut labels = Map::new();
    for (v, n) in &names {
        labels.insert(v.to_string(), json!(n.join(" / ")));
    }
    let mut what = vec![
        format!("seed {}", args.seed),
        format!("validation fraction {fraction}"),
    ];
    if let Some(m) = &map {
        let pairs: Vec<String> = m.iter().map(|(o, n)| format!("{o}={n}")).collect();
        what.push(format!("labels mapped {} (others 0)", pairs.join(",")));
    }
    if let Some(c) = &channels {
        what.push(format!(
            "channels {}",
            c.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",")
        ));
    }
    let description = format!(
        "aiaa datalist from-msd: {}; {}",
        parts.join(", "),
        what.join(", ")
    );
    let name = tasks
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(" + ");
    let mut out: Vec<(&str, Value)> = vec![
        ("name", json!(name)),
        ("description", json!(description)),
        ("modality", Value::Object(modality)),
        ("labels", Value::Object(labels)),
        ("training", Value::Array(training)),
        ("validation", Value::Array(validation)),
    ];
    if !args.no_testing && !testing.is_empty() {
        out.push(("testing", Value::Array(testing)));
    }
    let target = out_dir.join(&out_name);
    let text = render(&out)?;
    aiaa_imaging::io::write_atomic(&target, text.as_bytes())
        .with_context(|| format!("write {}", target.display()))?;
    let summary = format!("wrote {}: {}", target.display(), parts.join(", "));
    Ok(Report { left_out, summary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_imaging::Geometry;

    #[test]
    fn the_split_is_seeded_sized_and_stable() {
        assert_eq!(validation_count(41, 0.2), 8);
        assert_eq!(validation_count(131, 0.2), 26);
        assert_eq!(validation_count(2, 0.2), 1);
        assert_eq!(validation_count(2, 0.9), 1);
        assert_eq!(validation_count(1, 0.5), 0);
        assert_eq!(validation_count(10, 0.0), 0);
        let a = split(41, 0.2, 0, 0);
        assert_eq!(a.iter().filter(|&&v| v).count(), 8);
        assert_eq!(a, split(41, 0.2, 0, 0));
        assert_ne!(a, split(41, 0.2, 1, 0));
        assert_ne!(a, split(41, 0.2, 0, 1));
        // The exact draw is part of the contract (same seed, same split everywhere).
        let picked: Vec<usize> = (0..10).filter(|&i| split(10, 0.3, 0, 0)[i]).collect();
        assert_eq!(picked, PICKED_10_03_SEED0);
    }

    /// `split(10, 0.3, 0, 0)`, cross-checked with an independent Python SplitMix64 +
    /// Fisher–Yates.
    const PICKED_10_03_SEED0: [usize; 3] = [2, 3, 6];

    #[test]
    fn splitmix64_matches_the_reference() {
        // The first output for seed 0 (Vigna's splitmix64.c).
        assert_eq!(SplitMix64(0).next(), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn label_maps_parse_strictly() {
        assert_eq!(parse_label_map("2=1").unwrap(), BTreeMap::from([(2, 1)]));
        assert_eq!(
            parse_label_map(" 2 = 1 , 3=1").unwrap(),
            BTreeMap::from([(2, 1), (3, 1)])
        );
        for (bad, needle) in [
            ("2", "not OLD=NEW"),
            ("x=1", "not an integer"),
            ("2=300", "0..=255"),
            ("2=1,2=0", "twice"),
            ("1=0", "every label maps to 0"),
            ("", "at least one"),
        ] {
            let e = parse_label_map(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }

    #[test]
    fn labels_map_and_channels_select() {
        let g = Geometry::default();
        let lab = Volume::scalar([4, 1, 1], g, Voxels::I16(vec![0, 1, 2, 3])).unwrap();
        let m = BTreeMap::from([(2, 1), (3, 1)]);
        let out = map_label(&lab, &m).unwrap();
        assert_eq!(out.voxels, Voxels::U8(vec![0, 0, 1, 1]));
        assert!(map_label(&lab, &BTreeMap::from([(7, 1)])).is_none());
        let img = Volume::new([2, 1, 1], 3, g, Voxels::F32(vec![1., 2., 3., 4., 5., 6.])).unwrap();
        let one = select_channels(&img, &[2]).unwrap();
        assert_eq!((one.channels, one.voxels.clone()), (1, Voxels::F32(vec![5., 6.])));
        let two = select_channels(&img, &[1, 0]).unwrap();
        assert_eq!(two.voxels, Voxels::F32(vec![3., 4., 1., 2.]));
        assert!(
            select_channels(&img, &[3])
                .unwrap_err()
                .to_string()
                .contains("3 channel(s)")
        );
    }

    #[test]
    fn the_datalist_renders_in_order_and_parses_back() {
        let entries = vec![
            ("name", json!("Spleen")),
            ("labels", json!({"0": "background", "1": "spleen"})),
            (
                "training",
                json!([{"image": "a b.nii.gz", "label": "\"q\".nii.gz"}]),
            ),
            ("validation", json!([])),
        ];
        let text = render(&entries).unwrap();
        assert_eq!(
            text,
            "{\n  \"name\": \"Spleen\",\n  \"labels\": {\"0\": \"background\", \"1\": \"spleen\"},\n  \
             \"training\": [\n    {\"image\": \"a b.nii.gz\", \"label\": \"\\\"q\\\".nii.gz\"}\n  ],\n  \
             \"validation\": []\n}\n"
        );
        let back: Value = serde_json::from_str(&text).unwrap();
        let want: Map<String, Value> = entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(back, Value::Object(want));
    }

    #[test]
    fn relative_paths_climb_when_needed() {
        let r = |p: &str, b: &str| path_string(&relative_to(Path::new(p), Path::new(b)));
        assert_eq!(r("/d/Task09/imagesTr/a.nii.gz", "/d/Task09"), "imagesTr/a.nii.gz");
        assert_eq!(
            r("/d/Task09/imagesTr/a.nii.gz", "/d/lists"),
            "../Task09/imagesTr/a.nii.gz"
        );
        assert_eq!(r("/d/a.nii", "/x/y"), "../../d/a.nii");
    }
}
