//! A job's inputs as the request names them: [`SourceSpec`] (read from the proto's `Source`,
//! persisted with the job) and the [`Role`] a fetched file plays.

use aiaa_proto::trainer::v1::{Source, source};
use aiaa_runtime::names;
use aiaa_runtime::registry::{TRAIN_CHECKPOINT, TRAIN_CONFIG};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Result;

use super::{RegistryRef, invalid};

/// One input of a job, as the request named it (persisted with the job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum SourceSpec {
    /// JSON text.
    InlineJson(String),
    /// A datastore datalist's name.
    Datalist(String),
    /// A datastore item id.
    DatastoreId(String),
    /// A registry reference `org/team/name:version[:path]`.
    RegistryRef(String),
    /// An object of the trainer's store.
    TrainerObject(String),
}

/// What a fetched file is for; picks the file of a registry version named without `:path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A train config.
    TrainConfig,
    /// An evaluation (inference) config.
    EvalConfig,
    /// A checkpoint.
    Checkpoint,
    /// A TorchScript model.
    Model,
    /// Export options (JSON).
    ExportOptions,
}

impl Role {
    pub(super) fn noun(self) -> &'static str {
        match self {
            Role::TrainConfig => "train config",
            Role::EvalConfig => "evaluation config",
            Role::Checkpoint => "checkpoint",
            Role::Model => "model",
            Role::ExportOptions => "export options",
        }
    }

    /// The file name it gets in the work folder when the source has none.
    pub(super) fn default_name(self) -> &'static str {
        match self {
            Role::TrainConfig => TRAIN_CONFIG,
            Role::EvalConfig => "config_eval.json",
            Role::Checkpoint => TRAIN_CHECKPOINT,
            Role::Model => "model.pt",
            Role::ExportOptions => "export_options.json",
        }
    }
}

impl SourceSpec {
    /// Reads the proto's `Source` of request field `field`: `None` when unset, an error when
    /// set but empty or malformed.
    pub fn from_proto(field: &str, s: Option<&Source>) -> Result<Option<SourceSpec>> {
        let Some(kind) = s.and_then(|s| s.kind.as_ref()) else {
            return Ok(None);
        };
        let empty = |what: &str| invalid(format!("{field}.{what} is empty"));
        let spec = match kind {
            source::Kind::InlineJson(t) => {
                if t.trim().is_empty() {
                    return Err(empty("inline_json"));
                }
                serde_json::from_str::<Value>(t)
                    .map_err(|e| invalid(format!("{field}.inline_json is not valid JSON: {e}")))?;
                SourceSpec::InlineJson(t.clone())
            }
            source::Kind::Datalist(n) => {
                if n.is_empty() {
                    return Err(empty("datalist"));
                }
                names::relative_id("datalist name", n)?;
                SourceSpec::Datalist(n.clone())
            }
            source::Kind::DatastoreId(id) => {
                if id.is_empty() {
                    return Err(empty("datastore_id"));
                }
                names::relative_id("datastore item id", id)?;
                SourceSpec::DatastoreId(id.clone())
            }
            source::Kind::RegistryRef(r) => {
                if r.is_empty() {
                    return Err(empty("registry_ref"));
                }
                RegistryRef::parse(r)?;
                SourceSpec::RegistryRef(r.clone())
            }
            source::Kind::TrainerObject(p) => {
                if p.is_empty() {
                    return Err(empty("trainer_object"));
                }
                names::relative_id("trainer object", p)?;
                SourceSpec::TrainerObject(p.clone())
            }
        };
        Ok(Some(spec))
    }

    /// Like [`SourceSpec::from_proto`] for a field that must be set.
    pub fn required(field: &str, s: Option<&Source>) -> Result<SourceSpec> {
        Self::from_proto(field, s)?.ok_or_else(|| invalid(format!("{field} is missing")))
    }

    /// A short description for messages: `datastore item "x"`.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::InlineJson(_) => "inline JSON".into(),
            SourceSpec::Datalist(n) => format!("datastore datalist {n:?}"),
            SourceSpec::DatastoreId(id) => format!("datastore item {id:?}"),
            SourceSpec::RegistryRef(r) => format!("registry {r}"),
            SourceSpec::TrainerObject(p) => format!("trainer object {p:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_from_the_proto() {
        let s = |kind| Source { kind: Some(kind) };
        assert_eq!(SourceSpec::from_proto("config", None).unwrap(), None);
        assert_eq!(
            SourceSpec::from_proto("config", Some(&Source { kind: None })).unwrap(),
            None
        );
        let err = SourceSpec::required("datalist", None).unwrap_err().to_string();
        assert!(err.contains("datalist is missing"), "{err}");
        let err = SourceSpec::from_proto("config", Some(&s(source::Kind::InlineJson("{".into()))))
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.inline_json is not valid JSON"), "{err}");
        let err = SourceSpec::from_proto("checkpoint", Some(&s(source::Kind::TrainerObject("../x".into()))))
            .unwrap_err()
            .to_string();
        assert!(err.contains("trainer object"), "{err}");
        assert_eq!(
            SourceSpec::from_proto("d", Some(&s(source::Kind::Datalist("brain".into())))).unwrap(),
            Some(SourceSpec::Datalist("brain".into()))
        );
        // Persisted form.
        let text = serde_json::to_string(&SourceSpec::DatastoreId("a/b.nii".into())).unwrap();
        assert_eq!(text, r#"{"kind":"datastore_id","value":"a/b.nii"}"#);
    }
}
