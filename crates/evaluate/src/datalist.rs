//! The datalist as inference and evaluation read it (seed 5.2, 5.3): the format is
//! `aiaa_datalist`'s,
//!
//! ```json
//! {"training": [{"image": "train/im1.nii.gz", "label": "train/lb1.nii.gz"}],
//!  "validation": [{"image": "val/im1.nii.gz", "label": "val/lb1.nii.gz"},
//!                 {"image": "val/im2.nii.gz"}]}
//! ```
//!
//! and what `tlt-infer` and `tlt-evaluate` add on top: they run over one list, `validation`
//! (another with `--data_list_key`); the other lists and keys are not looked at. An entry
//! needs one `image` file and may have a `label` (inference runs on entries without one;
//! evaluation and click simulation need it); an empty string is no file; other keys are
//! ignored. A relative path is relative to `--file_root` when given, else to the
//! datalist's folder. Whether the files exist is not checked here: a missing file fails its
//! case only, when it is read.

use std::path::{Path, PathBuf};

use aiaa_datalist::{Datalist, DatalistError, Entry, IMAGE, LABEL};

use crate::error::Result;

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
    let list = Datalist::read(path)?;
    Ok(cases(&list, section, &list.root(file_root))?)
}

/// The cases of `section` of a datalist already read; relative paths start at `root`.
pub fn cases(list: &Datalist, section: &str, root: &Path) -> std::result::Result<Vec<Case>, DatalistError> {
    let Some(entries) = list.list(section)? else {
        let keys: Vec<&str> = list.keys().collect();
        return Err(list.invalid(
            "",
            "",
            format!(
                "has no \"{section}\" section (it has: {}); pick one with --data_list_key",
                if keys.is_empty() {
                    "nothing".to_string()
                } else {
                    keys.join(", ")
                }
            ),
        ));
    };
    entries.iter().map(|e| case(e, root)).collect()
}

/// One entry as a case: its `image` (required) and `label`, an empty path being none.
fn case(e: &Entry<'_>, root: &Path) -> std::result::Result<Case, DatalistError> {
    let file = |key: &str| -> std::result::Result<Option<&str>, DatalistError> {
        Ok(e.path(key)?.filter(|s| !s.trim().is_empty()))
    };
    let image = file(IMAGE)?.ok_or_else(|| e.invalid(IMAGE, "missing"))?;
    Ok(Case {
        index: e.index(),
        name: image.to_string(),
        image: aiaa_datalist::resolve(root, image),
        label: file(LABEL)?.map(|l| aiaa_datalist::resolve(root, l)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The cases of `section`, or the error's text.
    fn parse(json: &Value, section: &str, root: &Path) -> std::result::Result<Vec<Case>, String> {
        let list = Datalist::from_json(json.clone(), "dl.json").map_err(|e| e.to_string())?;
        cases(&list, section, root).map_err(|e| e.to_string())
    }

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
        assert_eq!(e, "datalist dl.json: validation[0].image: missing");
        let e = parse(
            &json!({"validation": [{"image": 3}]}),
            "validation",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.contains("validation[0].image: expected a file path"), "{e}");
        let e = parse(&json!({"validation": ["a.nii"]}), "validation", Path::new("/")).unwrap_err();
        assert!(e.contains("validation[0]: expected an object"), "{e}");
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
