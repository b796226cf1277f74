//! The datalist (seed 5.2, 5.3): `training` (required, non-empty) and `validation`
//! (optional) lists of items such as `{"image": "train/im1.nii.gz", "label": "train/lb1.nii.gz"}`.
//!
//! Relative paths are relative to the datalist's folder, or to `file_root` when given (the
//! seed's `--file_root`). An item's `image` is a file or a list of files (one per channel);
//! `label` a file. Other keys are kept (they reach the transforms as they are); a string
//! value of another key that names an image file (a suffix of
//! `aiaa_imaging::io::IMAGE_SUFFIXES`) is resolved and checked like `image` and `label`.
//!
//! Besides `training` and `validation`, the keys of a Medical Segmentation Decathlon
//! `dataset.json` (`name`, `description`, `labels`, `modality`, `numTraining`, `test`, …)
//! are accepted and ignored; any other top-level key is an error (a misspelt `validation`
//! must not silently mean "no validation").

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Result, TrainError};

const LISTS: &[&str] = &["training", "validation"];
const IGNORED: &[&str] = &[
    "name",
    "description",
    "reference",
    "licence",
    "license",
    "release",
    "tensorImageSize",
    "modality",
    "labels",
    "numTraining",
    "numTest",
    "numValidation",
    "test",
    "testing",
];

/// Which list an item comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `training`.
    Training,
    /// `validation`.
    Validation,
}

impl Split {
    /// The datalist key.
    pub fn key(self) -> &'static str {
        match self {
            Split::Training => "training",
            Split::Validation => "validation",
        }
    }
}

/// One item of the datalist, paths resolved.
#[derive(Debug, Clone)]
pub struct DataItem {
    /// Its list.
    pub split: Split,
    /// Its position in the list.
    pub index: usize,
    /// The item as JSON, with every file path absolute (what the transforms get).
    pub entry: Map<String, Value>,
    /// Every file the item names: (key, path).
    pub files: Vec<(String, PathBuf)>,
}

impl DataItem {
    /// `training[3]`.
    pub fn id(&self) -> String {
        format!("{}[{}]", self.split.key(), self.index)
    }

    /// The sample name used in errors: `training[3] (im1.nii.gz)`.
    pub fn name(&self) -> String {
        match self
            .files
            .iter()
            .find(|(k, _)| k == "image")
            .or(self.files.first())
        {
            Some((_, p)) => format!(
                "{} ({})",
                self.id(),
                p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
            ),
            None => self.id(),
        }
    }

    /// The single file under `key`, when the key holds exactly one.
    pub fn file(&self, key: &str) -> Option<&Path> {
        let mut it = self.files.iter().filter(|(k, _)| k == key);
        match (it.next(), it.next()) {
            (Some((_, p)), None) => Some(p),
            _ => None,
        }
    }
}

/// A parsed datalist.
#[derive(Debug, Clone)]
pub struct Datalist {
    /// The datalist file.
    pub file: PathBuf,
    /// The folder relative paths start from.
    pub root: PathBuf,
    /// `training`.
    pub training: Vec<DataItem>,
    /// `validation` (possibly empty).
    pub validation: Vec<DataItem>,
}

fn looks_like_image(s: &str) -> bool {
    aiaa_imaging::io::image_stem(s).is_some()
}

impl Datalist {
    /// Reads `path`; relative file paths start at `file_root`, else at the datalist's folder.
    /// Checks the structure and that every named file exists (not yet that it decodes: see
    /// [`crate::data::FileCache::load`]). `label_required` lists the splits whose items need a
    /// `label`.
    pub fn read(path: &Path, file_root: Option<&Path>, label_required: &[Split]) -> Result<Datalist> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| TrainError::Datalist {
            file: path.to_path_buf(),
            item: "(file)".into(),
            key: String::new(),
            message: format!("not valid JSON: {e}"),
        })?;
        let root = match file_root {
            Some(r) => r.to_path_buf(),
            None => path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        };
        Datalist::from_json(&json, path, root, label_required)
    }

    /// Parses a datalist given as JSON; `file` is named in errors, `root` starts relative
    /// paths.
    pub fn from_json(json: &Value, file: &Path, root: PathBuf, label_required: &[Split]) -> Result<Datalist> {
        let err = |item: &str, key: &str, message: String| TrainError::Datalist {
            file: file.to_path_buf(),
            item: item.to_string(),
            key: key.to_string(),
            message,
        };
        let obj = json
            .as_object()
            .ok_or_else(|| err("(top level)", "", "expected a JSON object".into()))?;
        if let Some(k) = obj
            .keys()
            .find(|k| !LISTS.contains(&k.as_str()) && !IGNORED.contains(&k.as_str()))
        {
            return Err(err(
                k,
                "",
                "unknown key (the lists are \"training\" and \"validation\")".into(),
            ));
        }
        let mut lists = Vec::new();
        for split in [Split::Training, Split::Validation] {
            let list = match obj.get(split.key()) {
                None | Some(Value::Null) if split == Split::Validation => Vec::new(),
                None | Some(Value::Null) => {
                    return Err(err(
                        "training",
                        "",
                        "the list is missing (seed 5.2: it is required)".into(),
                    ));
                }
                Some(Value::Array(a)) => a.clone(),
                Some(other) => {
                    return Err(err(
                        split.key(),
                        "",
                        format!(
                            "expected a list of items, got {}",
                            other.to_string().chars().take(40).collect::<String>()
                        ),
                    ));
                }
            };
            let mut items = Vec::with_capacity(list.len());
            for (index, v) in list.iter().enumerate() {
                items.push(parse_item(file, &root, split, index, v, label_required)?);
            }
            lists.push(items);
        }
        let validation = lists.pop().unwrap_or_default();
        let training = lists.pop().unwrap_or_default();
        if training.is_empty() {
            return Err(err("training", "", "the list is empty".into()));
        }
        Ok(Datalist {
            file: file.to_path_buf(),
            root,
            training,
            validation,
        })
    }

    /// Every item, training first.
    pub fn items(&self) -> impl Iterator<Item = &DataItem> {
        self.training.iter().chain(&self.validation)
    }
}

/// One item of a list (`v`, at `index`): its file keys (`image`, `label`, and strings that
/// look like images) resolved against `root`, each an existing file; `image` present, and
/// `label` where `split` needs one.
fn parse_item(
    file: &Path,
    root: &Path,
    split: Split,
    index: usize,
    v: &Value,
    label_required: &[Split],
) -> Result<DataItem> {
    let err = |item: &str, key: &str, message: String| TrainError::Datalist {
        file: file.to_path_buf(),
        item: item.to_string(),
        key: key.to_string(),
        message,
    };
    let id = format!("{}[{index}]", split.key());
    let Value::Object(map) = v else {
        return Err(err(
            &id,
            "",
            "expected an object such as {\"image\": …, \"label\": …}".into(),
        ));
    };
    let mut entry = map.clone();
    let mut files = Vec::new();
    for (key, value) in map {
        let is_file_key = key == "image" || key == "label";
        let mut resolve = |s: &str| -> Result<String> {
            if s.trim().is_empty() {
                return Err(err(&id, key, "an empty path".into()));
            }
            let p = Path::new(s);
            let full = if p.is_absolute() {
                p.to_path_buf()
            } else {
                root.join(p)
            };
            if !full.is_file() {
                return Err(err(
                    &id,
                    key,
                    format!("{} does not exist or is not a file", full.display()),
                ));
            }
            files.push((key.clone(), full.clone()));
            Ok(full.to_string_lossy().into_owned())
        };
        let resolved = match value {
            Value::String(s) if is_file_key || looks_like_image(s) => Value::String(resolve(s)?),
            Value::Array(a) if key == "image" && !a.is_empty() && a.iter().all(Value::is_string) => {
                Value::Array(
                    a.iter()
                        .map(|s| resolve(s.as_str().unwrap_or_default()).map(Value::String))
                        .collect::<Result<Vec<_>>>()?,
                )
            }
            _ if is_file_key => {
                return Err(err(
                    &id,
                    key,
                    if key == "label" {
                        "expected a file path".into()
                    } else {
                        "expected a file path or a list of file paths (one per channel)".into()
                    },
                ));
            }
            other => other.clone(),
        };
        entry.insert(key.clone(), resolved);
    }
    if !entry.contains_key("image") {
        return Err(err(&id, "image", "missing".into()));
    }
    if label_required.contains(&split) && !entry.contains_key("label") {
        return Err(err(
            &id,
            "label",
            format!("missing ({} items need a label)", split.key()),
        ));
    }
    Ok(DataItem {
        split,
        index,
        entry,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("train")).unwrap();
        for f in ["train/im1.nii.gz", "train/lb1.nii.gz", "train/im2.nii.gz"] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        dir
    }

    fn error(json: Value, root: &Path) -> (String, String, String) {
        match Datalist::from_json(
            &json,
            Path::new("dl.json"),
            root.to_path_buf(),
            &[Split::Training],
        ) {
            Err(TrainError::Datalist {
                item, key, message, ..
            }) => (item, key, message),
            other => panic!("expected a datalist error, got {other:?}"),
        }
    }

    #[test]
    fn paths_resolve_against_the_root_and_errors_name_the_item() {
        let dir = setup();
        let root = dir.path();
        let dl = Datalist::from_json(
            &json!({
                "name": "MSD-like", "numTraining": 1,
                "training": [{"image": "train/im1.nii.gz", "label": "train/lb1.nii.gz", "weight": 2}],
                "validation": [{"image": "train/im2.nii.gz"}]
            }),
            Path::new("dl.json"),
            root.to_path_buf(),
            &[Split::Training],
        )
        .unwrap();
        assert_eq!(dl.training.len(), 1);
        assert_eq!(dl.validation.len(), 1);
        let t = &dl.training[0];
        assert_eq!(t.file("image"), Some(root.join("train/im1.nii.gz").as_path()));
        assert_eq!(t.entry["weight"], json!(2));
        assert_eq!(t.name(), "training[0] (im1.nii.gz)");
        assert_eq!(dl.validation[0].id(), "validation[0]");

        let (item, key, msg) = error(
            json!({"training": [{"image": "train/im1.nii.gz", "label": "train/lb1.nii.gz"},
                                {"image": "train/im3.nii.gz", "label": "train/lb1.nii.gz"}]}),
            root,
        );
        assert_eq!((item.as_str(), key.as_str()), ("training[1]", "image"));
        assert!(
            msg.contains("im3.nii.gz") && msg.contains("does not exist"),
            "{msg}"
        );

        let (item, key, _) = error(json!({"training": [{"image": "train/im1.nii.gz"}]}), root);
        assert_eq!((item.as_str(), key.as_str()), ("training[0]", "label"));
        let (item, _, _) = error(
            json!({"training": [{"image": "train/im1.nii.gz", "label": "train/lb1.nii.gz"}], "validaton": []}),
            root,
        );
        assert_eq!(item, "validaton");
        let (item, _, msg) = error(json!({"training": []}), root);
        assert_eq!(item, "training");
        assert!(msg.contains("empty"), "{msg}");
        let (item, key, _) = error(
            json!({"training": [{"image": 3, "label": "train/lb1.nii.gz"}]}),
            root,
        );
        assert_eq!((item.as_str(), key.as_str()), ("training[0]", "image"));
        let (item, _, _) = error(json!({"training": ["train/im1.nii.gz"]}), root);
        assert_eq!(item, "training[0]");
    }
}
