//! Datalists in the seed's `datalist.json` shape:
//!
//! ```json
//! {"training": [{"image": "train/im1.nii.gz", "label": "train/lb1.nii.gz"}],
//!  "validation": [{"image": "val/im1.nii.gz"}]}
//! ```
//!
//! `training` is required and every training case needs a label; `validation` is optional and
//! its cases may lack a label (lists that only feed inference); an entry has these two keys
//! only. Paths are relative item ids (no `..`, no leading `/`). The text is read by
//! `aiaa_datalist` (the format's one reader); these checks are the datastore's, on top.
//! Errors name the entry, e.g. `training[3].image is missing`.
//!
//! A datalist is stored as JSON text at `datalists/<name>.json`: the text the client sent
//! (after validation) when it sent text, else the canonical rendering of the structured list,
//! so the text read back is the text stored.

use aiaa_datalist::{Entry, IMAGE, LABEL};
use aiaa_proto::datastore::v1::{Datalist, DatalistItem};
use aiaa_runtime::names;
use aiaa_runtime::store::Store;
use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Map, Value};

use crate::blob;
use crate::error::{DatastoreError, Result};

/// The stored datalists.
#[derive(Clone)]
pub struct Datalists {
    store: Store,
}

/// Validates one path of a datalist entry.
fn check_path(field: &str, path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(DatastoreError::InvalidArgument(format!("{field} is missing")));
    }
    names::relative_id("path", path).map_err(|e| DatastoreError::InvalidArgument(format!("{field}: {e}")))
}

fn check_items(section: &str, items: &[DatalistItem], label_required: bool) -> Result<()> {
    for (i, item) in items.iter().enumerate() {
        check_path(&format!("{section}[{i}].image"), &item.image)?;
        if label_required || !item.label.is_empty() {
            check_path(&format!("{section}[{i}].label"), &item.label)?;
        }
    }
    Ok(())
}

/// Checks a structured datalist (training cases need labels; validation cases may lack them).
pub fn validate(training: &[DatalistItem], validation: &[DatalistItem]) -> Result<()> {
    check_items("training", training, true)?;
    check_items("validation", validation, false)
}

/// One list of a datalist as stored: entries of a path `image` and an optional path `label`,
/// nothing else (a stored datalist holds only these: another key would be lost).
fn parse_section(entries: &[Entry<'_>]) -> Result<Vec<DatalistItem>> {
    let mut items = Vec::with_capacity(entries.len());
    for e in entries {
        if let Some(key) = e.fields().keys().find(|k| *k != IMAGE && *k != LABEL) {
            return Err(DatastoreError::InvalidArgument(format!(
                "{} has an unknown key {key:?} (entries have \"image\" and \"label\")",
                e.id()
            )));
        }
        items.push(DatalistItem {
            image: e.path(IMAGE)?.unwrap_or_default().to_string(),
            label: e.path(LABEL)?.unwrap_or_default().to_string(),
        });
    }
    Ok(items)
}

/// Parses and validates the seed's `datalist.json` text (read by `aiaa_datalist`; `name`
/// names it in errors): the lists `training` (required) and `validation`, no other key, each
/// entry checked by [`validate`].
pub fn parse(name: &str, json: &str) -> Result<(Vec<DatalistItem>, Vec<DatalistItem>)> {
    let list = aiaa_datalist::Datalist::parse(json, name)?;
    if let Some(key) = list.unknown_key(&["training", "validation"]) {
        return Err(DatastoreError::InvalidArgument(format!(
            "datalist has an unknown key {key:?} (a datalist has \"training\" and \"validation\")"
        )));
    }
    let training = match list.list("training")? {
        Some(entries) => parse_section(&entries)?,
        None => {
            return Err(DatastoreError::InvalidArgument(
                "datalist: training is missing".into(),
            ));
        }
    };
    let validation = match list.list("validation")? {
        Some(entries) => parse_section(&entries)?,
        None => Vec::new(),
    };
    validate(&training, &validation)?;
    Ok((training, validation))
}

fn render_items(items: &[DatalistItem]) -> Value {
    Value::Array(
        items
            .iter()
            .map(|item| {
                let mut entry = Map::new();
                entry.insert("image".into(), Value::String(item.image.clone()));
                if !item.label.is_empty() {
                    entry.insert("label".into(), Value::String(item.label.clone()));
                }
                Value::Object(entry)
            })
            .collect(),
    )
}

/// Renders a validated datalist as the seed's JSON (no `validation` key when it is empty).
pub fn render(training: &[DatalistItem], validation: &[DatalistItem]) -> String {
    let mut top = Map::new();
    top.insert("training".into(), render_items(training));
    if !validation.is_empty() {
        top.insert("validation".into(), render_items(validation));
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(top)).unwrap_or_default();
    text.push('\n');
    text
}

impl Datalists {
    /// Datalists on `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    fn path(name: &str) -> Result<object_store::path::Path> {
        blob::path(&format!("datalists/{name}.json"))
    }

    fn check_name(name: &str) -> Result<()> {
        names::relative_id("datalist name", name)?;
        Ok(())
    }

    /// Stores a datalist given either structured (`datalist`) or as JSON text (`json`).
    pub async fn put(&self, name: &str, datalist: Option<&Datalist>, json: &str) -> Result<Datalist> {
        let name = match (name, datalist.map(|d| d.name.as_str()).unwrap_or("")) {
            ("", "") => {
                return Err(DatastoreError::InvalidArgument("datalist name is missing".into()));
            }
            ("", inner) => inner,
            (outer, "") => outer,
            (outer, inner) if outer == inner => outer,
            (outer, inner) => {
                return Err(DatastoreError::InvalidArgument(format!(
                    "name {outer:?} and datalist.name {inner:?} differ"
                )));
            }
        };
        Self::check_name(name)?;
        let (training, validation, text) = match datalist {
            Some(d) => {
                validate(&d.training, &d.validation)?;
                (
                    d.training.clone(),
                    d.validation.clone(),
                    render(&d.training, &d.validation),
                )
            }
            None if !json.trim().is_empty() => {
                let (training, validation) = parse(name, json)?;
                (training, validation, json.to_string())
            }
            None => {
                return Err(DatastoreError::InvalidArgument(format!(
                    "datalist {name:?}: give either datalist or json"
                )));
            }
        };
        self.store
            .put(&Self::path(name)?, text.clone().into_bytes().into())
            .await
            .map_err(|e| DatastoreError::store(format!("write datalist {name:?}"), e))?;
        tracing::info!(
            name,
            training = training.len(),
            validation = validation.len(),
            "datalist stored"
        );
        Ok(Datalist {
            name: name.to_string(),
            training,
            validation,
            json: text,
        })
    }

    /// Reads a datalist: its lists and its stored text.
    pub async fn get(&self, name: &str) -> Result<Datalist> {
        Self::check_name(name)?;
        let location = Self::path(name)?;
        let found = match self.store.get(&location).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(DatastoreError::NotFound(format!("datalist {name:?} not found")));
            }
            Err(e) => return Err(DatastoreError::store(format!("read datalist {name:?}"), e)),
        };
        let bytes = found
            .bytes()
            .await
            .map_err(|e| DatastoreError::store(format!("read datalist {name:?}"), e))?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| DatastoreError::Internal(format!("stored datalist {name:?} is not UTF-8")))?;
        let (training, validation) = parse(name, &text).map_err(|e| {
            DatastoreError::Internal(format!("stored datalist {name:?} no longer validates: {e}"))
        })?;
        Ok(Datalist {
            name: name.to_string(),
            training,
            validation,
            json: text,
        })
    }

    /// The stored datalists' names, sorted.
    pub async fn list(&self) -> Result<Vec<String>> {
        let root = blob::path("datalists")?;
        let mut listing = self.store.list(Some(&root));
        let mut names = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| DatastoreError::store("list datalists", e))?;
            if let Some(name) = meta
                .location
                .as_ref()
                .strip_prefix("datalists/")
                .and_then(|rest| rest.strip_suffix(".json"))
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Deletes a datalist; `false` when there was none.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        Self::check_name(name)?;
        let deleted = blob::delete(&self.store, &Self::path(name)?, &format!("datalist {name:?}")).await?;
        if deleted {
            tracing::info!(name, "datalist deleted");
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_format() {
        let text = r#"{
  "training": [
    {"image": "train/im1.nii.gz", "label": "train/lb1.nii.gz"},
    {"image": "train/im2.nii.gz", "label": "train/lb2.nii.gz"}
  ],
  "validation": [
    {"image": "val/im1.nii.gz", "label": "val/lb1.nii.gz"},
    {"image": "val/im2.nii.gz"}
  ]
}"#;
        let (t, v) = parse("spleen", text).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(v[1].label, "");
        let again: Value = serde_json::from_str(&render(&t, &v)).unwrap();
        assert_eq!(again, serde_json::from_str::<Value>(text).unwrap());
        let (t, v) = parse("empty", r#"{"training": []}"#).unwrap();
        assert!(t.is_empty() && v.is_empty());
        assert_eq!(render(&t, &v).trim(), "{\n  \"training\": []\n}");
    }

    #[test]
    fn errors_name_the_entry() {
        let cases = [
            (
                r#"{"training": [{"image": "a", "label": "b"}, {"label": "c"}]}"#,
                "training[1].image is missing",
            ),
            (
                r#"{"training": [{"image": "a"}]}"#,
                "training[0].label is missing",
            ),
            (
                r#"{"training": [], "validation": [{"image": "../x"}]}"#,
                "validation[0].image",
            ),
            (
                r#"{"training": [{"image": "/abs", "label": "b"}]}"#,
                "training[0].image",
            ),
            (
                r#"{"training": [{"image": 3, "label": "b"}]}"#,
                "datalist bad: training[0].image: expected a file path",
            ),
            (
                r#"{"training": [{"image": "a", "label": "b", "x": 1}]}"#,
                "unknown key \"x\"",
            ),
            (r#"{"validation": []}"#, "training is missing"),
            (r#"{"training": [], "testing": []}"#, "unknown key \"testing\""),
            (r#"[1]"#, "expected a JSON object"),
            (r#"{"training": {}}"#, "training: expected a list"),
            ("{nope", "datalist bad: not valid JSON"),
        ];
        for (text, expected) in cases {
            let err = parse("bad", text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let err = parse("bad", r#"{"training": [{"image": "a/../../b", "label": "b"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("training[0].image") && err.contains(".."), "{err}");
    }
}
