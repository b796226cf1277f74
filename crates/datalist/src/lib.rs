//! The seed's `datalist.json` (seed 5.2, 5.3), read in one place for every crate and service
//! that takes one (training, inference and evaluation, the datastore, the trainer service):
//!
//! ```json
//! {"training": [{"image": "train/im1.nii.gz", "label": "train/lb1.nii.gz"}],
//!  "validation": [{"image": "val/im1.nii.gz", "label": "val/lb1.nii.gz"},
//!                 {"image": "val/im2.nii.gz"}]}
//! ```
//!
//! The format as this crate reads it:
//!
//! - the file is a JSON object; its **lists** are its array values (`training`,
//!   `validation`, or another list such as the `testing` of `aiaa datalist from-msd`);
//! - a list holds **entries**, each an object; an entry's **files** are `image` (a path, or
//!   a non-empty list of paths, one per channel), `label` (a path), and the string of any
//!   other key that names an image file (a suffix of `aiaa_imaging::io::IMAGE_SUFFIXES`);
//!   other values are data, kept as they are;
//! - `null` is no value: an `image` or `label` that is `null` is as if it were absent;
//! - a relative path starts at the **root**: `--file_root` when given, else the datalist's
//!   folder ([`Datalist::root`], [`resolve`]); an absolute path stays as it is.
//!
//! Every error names the datalist and the place: the list (`training`), the entry
//! (`training[3]`) and the field (`image`). What a user requires beyond the format (which
//! lists must be there and non-empty, which top-level keys are allowed, whether an entry
//! needs a label, whether the files exist, what a path may be) is its own check, made on
//! top of these types; [`Datalist::invalid`] and [`Entry::invalid`] give its errors the same
//! shape.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// The key of an entry's image: one path, or a list of paths (one per channel).
pub const IMAGE: &str = "image";
/// The key of an entry's label: one path.
pub const LABEL: &str = "label";

/// Everything that can go wrong reading a datalist.
#[derive(Debug, thiserror::Error)]
pub enum DatalistError {
    /// The file cannot be read.
    #[error("datalist {}: {source}", file.display())]
    Read {
        /// The datalist file.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The datalist is malformed, or fails a user's check.
    #[error("datalist {}: {}{message}", file.display(), place(at, field))]
    Invalid {
        /// The datalist: its file, or the name a caller gave text it parsed.
        file: PathBuf,
        /// The list or entry at fault (`training`, `training[3]`); empty for the whole file.
        at: String,
        /// The entry's key at fault (`image`); empty for the entry or list itself.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// `training[3].image: `, `training: ` or nothing: where an [`DatalistError::Invalid`] is.
fn place(at: &str, field: &str) -> String {
    match (at.is_empty(), field.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!("{at}: "),
        (false, false) => format!("{at}.{field}: "),
    }
}

/// The crate's result type.
pub type Result<T, E = DatalistError> = std::result::Result<T, E>;

/// A JSON value shortened for an error message.
fn brief(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

/// Whether a string names an image file (by its suffix).
pub fn names_image(s: &str) -> bool {
    aiaa_imaging::io::image_stem(s).is_some()
}

/// A datalist path made usable: an absolute path as it is, a relative one under `root`.
pub fn resolve(root: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// A datalist: its top-level object, and the file it came from.
#[derive(Debug, Clone)]
pub struct Datalist {
    file: PathBuf,
    json: Map<String, Value>,
}

impl Datalist {
    /// Reads the datalist at `path`.
    pub fn read(path: &Path) -> Result<Datalist> {
        let text = std::fs::read_to_string(path).map_err(|source| DatalistError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Datalist::parse(&text, path)
    }

    /// Parses datalist text; `file` is how errors name it (a path, or a name given by the
    /// caller for text that came over the wire).
    pub fn parse(text: &str, file: impl Into<PathBuf>) -> Result<Datalist> {
        let file = file.into();
        match serde_json::from_str(text) {
            Ok(json) => Datalist::from_json(json, file),
            Err(e) => Err(invalid(&file, "", "", format!("not valid JSON: {e}"))),
        }
    }

    /// A datalist already parsed as JSON; `file` is how errors name it.
    pub fn from_json(json: Value, file: impl Into<PathBuf>) -> Result<Datalist> {
        let file = file.into();
        match json {
            Value::Object(json) => Ok(Datalist { file, json }),
            other => Err(invalid(
                &file,
                "",
                "",
                format!(
                    "expected a JSON object with a \"training\" (and \"validation\") list, got {}",
                    brief(&other)
                ),
            )),
        }
    }

    /// The file (or name) errors give.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The top-level keys.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.json.keys().map(String::as_str)
    }

    /// The first top-level key that is not in `known`.
    pub fn unknown_key(&self, known: &[&str]) -> Option<&str> {
        self.keys().find(|k| !known.contains(k))
    }

    /// The folder relative paths start from: `file_root` when given (the seed's
    /// `--file_root`), else the datalist's folder.
    pub fn root(&self, file_root: Option<&Path>) -> PathBuf {
        match file_root {
            Some(r) => r.to_path_buf(),
            None => self
                .file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        }
    }

    /// The entries of the list `key`; `None` when there is no such key (or it is `null`).
    /// An error when it is not a list, or one of its entries is not an object.
    pub fn list(&self, key: &str) -> Result<Option<Vec<Entry<'_>>>> {
        let Some((key, value)) = self.json.get_key_value(key) else {
            return Ok(None);
        };
        match value {
            Value::Null => Ok(None),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(index, v)| self.entry(key, index, v))
                .collect::<Result<Vec<_>>>()
                .map(Some),
            other => Err(self.invalid(
                key,
                "",
                format!(
                    "expected a list of entries such as {{\"image\": …, \"label\": …}}, got {}",
                    brief(other)
                ),
            )),
        }
    }

    fn entry<'a>(&'a self, list: &'a str, index: usize, v: &'a Value) -> Result<Entry<'a>> {
        entry(&self.file, list, index, v)
    }

    /// Replaces every file path of every list (see the module docs) with `f(key, path)`,
    /// where `key` is the entry's key naming the file; `null` images and labels are dropped.
    /// Values that are not lists are left alone.
    pub fn map_files<E: From<DatalistError>>(
        &mut self,
        mut f: impl FnMut(&str, &str) -> Result<String, E>,
    ) -> Result<(), E> {
        let file = &self.file;
        for (list, value) in &mut self.json {
            let Value::Array(items) = value else {
                continue;
            };
            for (index, item) in items.iter_mut().enumerate() {
                let mapped = entry(file, list, index, item)?.map_files(&mut f)?;
                *item = Value::Object(mapped);
            }
        }
        Ok(())
    }

    /// The datalist as JSON again (after [`Datalist::map_files`]).
    pub fn into_json(self) -> Value {
        Value::Object(self.json)
    }

    /// An error of this datalist at `at` (a list or entry, or empty) and `field` (or empty),
    /// for a user's own checks.
    pub fn invalid(&self, at: &str, field: &str, message: impl Into<String>) -> DatalistError {
        invalid(&self.file, at, field, message)
    }
}

fn invalid(file: &Path, at: &str, field: &str, message: impl Into<String>) -> DatalistError {
    DatalistError::Invalid {
        file: file.to_path_buf(),
        at: at.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

fn entry<'a>(file: &'a Path, list: &'a str, index: usize, v: &'a Value) -> Result<Entry<'a>> {
    match v {
        Value::Object(fields) => Ok(Entry {
            file,
            list,
            index,
            fields,
        }),
        other => Err(invalid(
            file,
            &format!("{list}[{index}]"),
            "",
            format!(
                "expected an object such as {{\"image\": …, \"label\": …}}, got {}",
                brief(other)
            ),
        )),
    }
}

/// One entry of a list.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    file: &'a Path,
    list: &'a str,
    index: usize,
    fields: &'a Map<String, Value>,
}

impl<'a> Entry<'a> {
    /// The list it is in.
    pub fn list(&self) -> &'a str {
        self.list
    }

    /// Its position in the list.
    pub fn index(&self) -> usize {
        self.index
    }

    /// `training[3]`.
    pub fn id(&self) -> String {
        format!("{}[{}]", self.list, self.index)
    }

    /// Its fields as they are written.
    pub fn fields(&self) -> &'a Map<String, Value> {
        self.fields
    }

    /// Whether `key` holds a value (present and not `null`).
    pub fn has(&self, key: &str) -> bool {
        self.fields.get(key).is_some_and(|v| !v.is_null())
    }

    /// The one path under `key` (as written, not resolved); `None` when absent or `null`;
    /// an error naming the field when it holds anything but a string (a list of channels
    /// included: a caller that takes a list reads [`Entry::map_files`]).
    pub fn path(&self, key: &str) -> Result<Option<&'a str>> {
        match self.fields.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.invalid(
                key,
                format!("expected a file path (a string), got {}", brief(other)),
            )),
        }
    }

    /// The entry's fields with every file path (see the module docs) replaced by
    /// `f(key, path)`, the shape kept (a list of channels stays a list); `null` images and
    /// labels are dropped. An `image` or `label` of another type is an error naming it.
    pub fn map_files<E: From<DatalistError>>(
        &self,
        mut f: impl FnMut(&str, &str) -> Result<String, E>,
    ) -> Result<Map<String, Value>, E> {
        let mut out = Map::new();
        for (key, value) in self.fields {
            let mapped = match (key.as_str(), value) {
                (IMAGE | LABEL, Value::Null) => continue,
                (IMAGE | LABEL, Value::String(p)) => Value::String(f(key, p)?),
                (_, Value::String(p)) if names_image(p) => Value::String(f(key, p)?),
                (IMAGE, Value::Array(paths)) if !paths.is_empty() && paths.iter().all(Value::is_string) => {
                    Value::Array(
                        paths
                            .iter()
                            .map(|p| f(key, p.as_str().unwrap_or_default()).map(Value::String))
                            .collect::<Result<Vec<_>, E>>()?,
                    )
                }
                (IMAGE, other) => {
                    return Err(self
                        .invalid(
                            key,
                            format!(
                                "expected a file path or a non-empty list of file paths (one per channel), got {}",
                                brief(other)
                            ),
                        )
                        .into());
                }
                (LABEL, other) => {
                    return Err(self
                        .invalid(key, format!("expected a file path, got {}", brief(other)))
                        .into());
                }
                (_, other) => other.clone(),
            };
            out.insert(key.clone(), mapped);
        }
        Ok(out)
    }

    /// An error of this entry at `field` (empty for the entry itself), for a user's own
    /// checks.
    pub fn invalid(&self, field: &str, message: impl Into<String>) -> DatalistError {
        invalid(self.file, &self.id(), field, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn list(json: Value) -> Datalist {
        Datalist::from_json(json, "dl.json").unwrap()
    }

    /// `(at, field, message)` of an [`DatalistError::Invalid`].
    fn parts(e: DatalistError) -> (String, String, String) {
        match e {
            DatalistError::Invalid {
                at, field, message, ..
            } => (at, field, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn lists_entries_and_paths() {
        let dl = list(json!({
            "name": "MSD-like",
            "training": [{"image": "a.nii.gz", "label": "a_seg.nii.gz", "weight": 2}],
            "validation": null,
            "testing": [{"image": ["c0.nii", "c1.nii"], "label": null}]
        }));
        let training = dl.list("training").unwrap().unwrap();
        assert_eq!(training.len(), 1);
        let e = training[0];
        assert_eq!(
            (e.list(), e.index(), e.id().as_str()),
            ("training", 0, "training[0]")
        );
        assert_eq!(e.path("image").unwrap(), Some("a.nii.gz"));
        assert_eq!(e.path("other").unwrap(), None);
        assert!(e.has("label") && !e.has("other"));
        assert!(dl.list("validation").unwrap().is_none(), "null is no list");
        assert!(dl.list("nope").unwrap().is_none());
        let t = dl.list("testing").unwrap().unwrap()[0];
        assert!(!t.has("label"), "a null label is no label");
        assert_eq!(t.path("label").unwrap(), None);
        let (at, field, msg) = parts(t.path("image").unwrap_err());
        assert_eq!((at.as_str(), field.as_str()), ("testing[0]", "image"));
        assert!(msg.contains("expected a file path"), "{msg}");
        assert_eq!(
            dl.unknown_key(&["training", "validation", "testing"]),
            Some("name")
        );
        assert_eq!(
            dl.unknown_key(&["name", "training", "validation", "testing"]),
            None
        );
    }

    #[test]
    fn files_are_mapped_in_their_shape() {
        let dl = list(json!({"training": [{
            "image": ["c0.nii.gz", "c1.nii.gz"], "label": "l.nii.gz", "prior": "p.mha",
            "note": "not a file", "weight": 2
        }, {"image": "b.nii.gz", "label": null}]}));
        let entries = dl.list("training").unwrap().unwrap();
        let mut seen = Vec::new();
        let mapped = entries[0]
            .map_files(|key, p| {
                seen.push(format!("{key}={p}"));
                Ok::<_, DatalistError>(format!("/r/{p}"))
            })
            .unwrap();
        assert_eq!(
            seen,
            [
                "image=c0.nii.gz",
                "image=c1.nii.gz",
                "label=l.nii.gz",
                "prior=p.mha"
            ]
        );
        assert_eq!(mapped["image"], json!(["/r/c0.nii.gz", "/r/c1.nii.gz"]));
        assert_eq!(mapped["prior"], json!("/r/p.mha"));
        assert_eq!(mapped["note"], json!("not a file"));
        assert_eq!(mapped["weight"], json!(2));
        let mapped = entries[1]
            .map_files(|_, p| Ok::<_, DatalistError>(p.to_string()))
            .unwrap();
        assert!(!mapped.contains_key("label"), "a null label is dropped");

        let mut whole = dl.clone();
        whole
            .map_files(|_, p| Ok::<_, DatalistError>(format!("x/{p}")))
            .unwrap();
        assert_eq!(whole.into_json()["training"][1]["image"], json!("x/b.nii.gz"));
    }

    #[test]
    fn errors_name_the_file_the_entry_and_the_field() {
        let ok = |_: &str, p: &str| Ok::<_, DatalistError>(p.to_string());
        for (image, label) in [
            (json!(3), json!("l")),
            (json!([]), json!("l")),
            (json!("i"), json!(["l"])),
        ] {
            let dl = list(json!({"training": [{"image": "a"}, {"image": image, "label": label}]}));
            let e = dl.list("training").unwrap().unwrap()[1]
                .map_files(ok)
                .unwrap_err();
            let text = e.to_string();
            assert!(text.starts_with("datalist dl.json: training[1]."), "{text}");
            assert!(text.contains("expected a file path"), "{text}");
        }
        let (at, _, msg) = parts(list(json!({"training": {}})).list("training").unwrap_err());
        assert_eq!(at, "training");
        assert!(msg.contains("expected a list"), "{msg}");
        let e = list(json!({"training": ["a.nii"]})).list("training").unwrap_err();
        assert_eq!(parts(e).0, "training[0]");
        let mut bad = list(json!({"name": "x", "testing": [{"image": "a"}, 3]}));
        let e = bad.map_files(ok).unwrap_err();
        assert_eq!(parts(e).0, "testing[1]");
        assert!(Datalist::from_json(json!([1]), "dl.json").is_err());
        let e = Datalist::parse("{nope", "brain").unwrap_err().to_string();
        assert!(e.starts_with("datalist brain: not valid JSON"), "{e}");
    }

    #[test]
    fn reading_and_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list.json");
        let e = Datalist::read(&p).unwrap_err().to_string();
        assert!(e.contains("list.json"), "{e}");
        std::fs::write(&p, r#"{"validation": [{"image": "x/im.nii.gz"}]}"#).unwrap();
        let dl = Datalist::read(&p).unwrap();
        assert_eq!(dl.file(), p);
        assert_eq!(dl.root(None), dir.path(), "relative to the list's folder");
        assert_eq!(
            dl.root(Some(Path::new("/r"))),
            Path::new("/r"),
            "or to --file_root"
        );
        let bare = Datalist::parse("{}", "list.json").unwrap();
        assert_eq!(bare.root(None), Path::new("."));
        assert_eq!(resolve(Path::new("/r"), "x/a.nii"), Path::new("/r/x/a.nii"));
        assert_eq!(resolve(Path::new("/r"), "/abs/a.nii"), Path::new("/abs/a.nii"));
    }
}
