//! The seed's `datalist.json` (seed 5.2, 5.3), read for inference and evaluation:
//!
//! ```json
//! {"training": [{"image": "train/im1.nii.gz", "label": "train/lb1.nii.gz"}],
//!  "validation": [{"image": "val/im1.nii.gz", "label": "val/lb1.nii.gz"},
//!                 {"image": "val/im2.nii.gz"}]}
//! ```
//!
//! `tlt-infer` and `tlt-evaluate` run over the `validation` section (another section with
//! `--data_list_key`). Entries are objects with a string `image` and an optional string
//! `label` (inference runs on entries without one; evaluation and click simulation need it);
//! other keys are ignored. A relative path is relative to `--file_root` when given, else to
//! the datalist's folder; absolute paths are used as they are. Whether the files exist is
//! not checked here: a missing file fails its case only, when it is read.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{EvaluateError, Result};

/// One entry of the datalist's section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// Position in the section (also the click simulation's random stream).
    pub index: usize,
    /// The image as the datalist writes it: how reports name the case.
    pub name: String,
    /// The image file, resolved.
    pub image: PathBuf,
    /// The label file, resolved, when the entry has one.
    pub label: Option<PathBuf>,
}

impl Case {
    /// The writers' `<input name>`: the image's file name without image extensions.
    pub fn input_name(&self) -> String {
        aiaa_transforms::load::input_name(&self.image)
    }
}

/// Reads `section` of the datalist at `path`; relative paths start at `file_root`, else at
/// the datalist's folder.
pub fn read(path: &Path, section: &str, file_root: Option<&Path>) -> Result<Vec<Case>> {
    let bad = |reason: String| EvaluateError::Datalist {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let root = match file_root {
        Some(r) => r.to_path_buf(),
        None => path.parent().unwrap_or(Path::new(".")).to_path_buf(),
    };
    parse(&json, section, &root).map_err(bad)
}

/// Parses `section` of a datalist already read; errors name the entry.
pub fn parse(json: &Value, section: &str, root: &Path) -> std::result::Result<Vec<Case>, String> {
    let obj = json
        .as_object()
        .ok_or("must be a JSON object with a \"training\" and/or \"validation\" list")?;
    let list = match obj.get(section) {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(format!(
                "\"{section}\" must be a list of {{\"image\", \"label\"}} objects"
            ));
        }
        None => {
            let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            return Err(format!(
                "has no \"{section}\" section (it has: {}); pick one with --data_list_key",
                if keys.is_empty() {
                    "nothing".to_string()
                } else {
                    keys.join(", ")
                }
            ));
        }
    };
    let resolve = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        }
    };
    list.iter()
        .enumerate()
        .map(|(index, entry)| {
            let fields = entry.as_object().ok_or_else(|| {
                format!("{section}[{index}] must be an object with \"image\" (and \"label\")")
            })?;
            let text = |key: &str| -> std::result::Result<Option<&str>, String> {
                match fields.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s)),
                    Some(v) => Err(format!(
                        "{section}[{index}].{key} must be a path (a string), not {v}"
                    )),
                }
            };
            let image = text("image")?.ok_or_else(|| format!("{section}[{index}].image is missing"))?;
            Ok(Case {
                index,
                name: image.to_string(),
                image: resolve(image),
                label: text("label")?.map(resolve),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sections_paths_and_errors() {
        let list = json!({
            "training": [{"image": "t.nii.gz", "label": "tl.nii.gz"}],
            "validation": [
                {"image": "val/a.nii.gz", "label": "val/a_seg.nii.gz"},
                {"image": "/abs/b.mha"},
                {"image": "c.nii", "label": ""}
            ]
        });
        let cases = parse(&list, "validation", Path::new("/data")).unwrap();
        assert_eq!(cases.len(), 3);
        assert_eq!(cases[0].image, PathBuf::from("/data/val/a.nii.gz"));
        assert_eq!(cases[0].label, Some(PathBuf::from("/data/val/a_seg.nii.gz")));
        assert_eq!(cases[0].name, "val/a.nii.gz");
        assert_eq!(cases[0].input_name(), "a");
        assert_eq!(cases[1].image, PathBuf::from("/abs/b.mha"));
        assert_eq!(cases[1].label, None);
        assert_eq!(cases[2].label, None, "an empty label is no label");
        assert_eq!(parse(&list, "training", Path::new("/d")).unwrap().len(), 1);

        let e = parse(&list, "testing", Path::new("/d")).unwrap_err();
        assert!(
            e.contains("no \"testing\" section") && e.contains("training, validation"),
            "{e}"
        );
        let e = parse(
            &json!({"validation": [{"label": "x"}]}),
            "validation",
            Path::new("/"),
        )
        .unwrap_err();
        assert_eq!(e, "validation[0].image is missing");
        let e = parse(
            &json!({"validation": [{"image": 3}]}),
            "validation",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("validation[0].image must be a path"), "{e}");
        let e = parse(&json!({"validation": ["a.nii"]}), "validation", Path::new("/")).unwrap_err();
        assert!(e.contains("validation[0] must be an object"), "{e}");
        assert!(parse(&json!([]), "validation", Path::new("/")).is_err());
    }

    #[test]
    fn reading_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list.json");
        std::fs::write(&p, "{not json").unwrap();
        let e = read(&p, "validation", None).unwrap_err().to_string();
        assert!(e.contains("list.json") && e.contains("not valid JSON"), "{e}");
        std::fs::write(&p, r#"{"validation": [{"image": "x/im.nii.gz"}]}"#).unwrap();
        let cases = read(&p, "validation", None).unwrap();
        assert_eq!(
            cases[0].image,
            dir.path().join("x/im.nii.gz"),
            "relative to the list's folder"
        );
        let cases = read(&p, "validation", Some(Path::new("/root"))).unwrap();
        assert_eq!(
            cases[0].image,
            PathBuf::from("/root/x/im.nii.gz"),
            "or to --file_root"
        );
        let e = read(&dir.path().join("none.json"), "validation", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.json"), "{e}");
    }
}
