//! The datalist as training reads it (seed 5.2, 5.3): the format is `aiaa_datalist`'s (lists
//! of entries such as `{"image": "train/im1.nii.gz", "label": "train/lb1.nii.gz"}`, file
//! paths relative to the datalist's folder or to `file_root`, the seed's `--file_root`; an
//! `image` a file or a list of files, one per channel; other keys' strings that name image
//! files resolved like `image` and `label`; other keys kept, they reach the transforms as
//! they are). What training adds on top:
//!
//! - `training` is required and non-empty, `validation` optional;
//! - besides these two lists, the keys of a Medical Segmentation Decathlon `dataset.json`
//!   (`name`, `description`, `labels`, `modality`, `numTraining`, `test`, …) are accepted and
//!   ignored; any other top-level key is an error (a misspelt `validation` must not silently
//!   mean "no validation");
//! - every file named exists, every item has an `image`, and a `label` where its list needs
//!   one.

use std::path::{Path, PathBuf};

use aiaa_datalist::{Entry, IMAGE, LABEL};
use serde_json::{Map, Value};

use crate::error::Result;

/// The top-level keys read: the two lists, and a Decathlon `dataset.json`'s others.
const KNOWN: &[&str] = &[
    "training",
    "validation",
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
        match self.files.iter().find(|(k, _)| k == IMAGE).or(self.files.first()) {
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

impl Datalist {
    /// Reads `path` (with `aiaa_datalist`); relative file paths start at `file_root`, else at
    /// the datalist's folder. Checks what training needs on top of the format (see the
    /// module docs) and that every named file exists (not yet that it decodes: see
    /// [`crate::data::FileCache::load`]). `label_required` lists the splits whose items need
    /// a `label`.
    pub fn read(path: &Path, file_root: Option<&Path>, label_required: &[Split]) -> Result<Datalist> {
        let list = aiaa_datalist::Datalist::read(path)?;
        let root = list.root(file_root);
        Datalist::check(&list, root, label_required)
    }

    /// Parses a datalist given as JSON; `file` is named in errors, `root` starts relative
    /// paths.
    pub fn from_json(json: &Value, file: &Path, root: PathBuf, label_required: &[Split]) -> Result<Datalist> {
        let list = aiaa_datalist::Datalist::from_json(json.clone(), file)?;
        Datalist::check(&list, root, label_required)
    }

    /// The lists of `list` as training reads them: no unknown top-level key, a non-empty
    /// `training`, every item checked by [`item`].
    fn check(list: &aiaa_datalist::Datalist, root: PathBuf, label_required: &[Split]) -> Result<Datalist> {
        if let Some(k) = list.unknown_key(KNOWN) {
            return Err(list
                .invalid(
                    k,
                    "",
                    "unknown key (the lists are \"training\" and \"validation\")",
                )
                .into());
        }
        let mut lists = Vec::new();
        for split in [Split::Training, Split::Validation] {
            let entries = match list.list(split.key())? {
                Some(entries) => entries,
                None if split == Split::Validation => Vec::new(),
                None => {
                    return Err(list
                        .invalid("training", "", "the list is missing (seed 5.2: it is required)")
                        .into());
                }
            };
            let items = entries
                .iter()
                .map(|e| item(e, &root, split, label_required))
                .collect::<Result<Vec<_>>>()?;
            lists.push(items);
        }
        let validation = lists.pop().unwrap_or_default();
        let training = lists.pop().unwrap_or_default();
        if training.is_empty() {
            return Err(list.invalid("training", "", "the list is empty").into());
        }
        Ok(Datalist {
            file: list.file().to_path_buf(),
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

/// One entry of a list: its files resolved against `root`, each an existing file; `image`
/// present, and `label` where `split` needs one.
fn item(e: &Entry<'_>, root: &Path, split: Split, label_required: &[Split]) -> Result<DataItem> {
    let mut files = Vec::new();
    let entry = e.map_files(|key, s| {
        if s.trim().is_empty() {
            return Err(e.invalid(key, "an empty path"));
        }
        let full = aiaa_datalist::resolve(root, s);
        if !full.is_file() {
            return Err(e.invalid(key, format!("{} does not exist or is not a file", full.display())));
        }
        files.push((key.to_string(), full.clone()));
        Ok(full.to_string_lossy().into_owned())
    })?;
    if !entry.contains_key(IMAGE) {
        return Err(e.invalid(IMAGE, "missing").into());
    }
    if label_required.contains(&split) && !entry.contains_key(LABEL) {
        return Err(e
            .invalid(LABEL, format!("missing ({} items need a label)", split.key()))
            .into());
    }
    Ok(DataItem {
        split,
        index: e.index(),
        entry,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrainError;
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
