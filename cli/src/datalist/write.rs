//! Writing the datalist: [`from_msd`] reads the tasks, derives the files, splits the cases and
//! writes the JSON, its paths relative to the datalist's folder.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use serde_json::{Map, Value, json};

use super::FromMsdArgs;
use super::derive::{Job, derived_path, parse_label_map, run_jobs};
use super::msd::read_task;
use super::split::split;

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
/// What [`from_msd`] did.
#[derive(Debug)]
pub struct Report {
    /// The cases left out, one line each (`Task03_Liver training[4] (liver_4.nii.gz): ...`).
    pub left_out: Vec<String>,
    /// One line for the terminal.
    pub summary: String,
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
