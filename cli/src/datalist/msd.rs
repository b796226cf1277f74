//! Reading a Decathlon task folder: its `dataset.json`, checked, and the files it names
//! resolved (see the module docs of `datalist`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

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
