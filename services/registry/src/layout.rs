//! How a catalogue is laid out in an object store, the same for the local store and for any
//! upstream catalogue a pull reads from:
//!
//! ```text
//! blobs/sha256/<hex>                                  file contents, content-addressed
//! models/<org>/<team>/<name>/<version>/manifest.json  one version (JSON, see StoredManifest)
//! ```
//!
//! A version exists exactly when its manifest exists. The manifest is written last, with
//! create-if-absent, after every blob it names is stored and verified: a failed, interrupted
//! or concurrent push or pull never leaves a partial or mixed version visible, and of two
//! concurrent pushes of one version exactly one wins.

use aiaa_proto::registry::v1::{Manifest, ModelFile, ModelName};
use aiaa_runtime::names;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::{RegistryError, Result};

/// The object path of a blob.
pub fn blob_path(sha256: &str) -> Path {
    Path::from(format!("blobs/sha256/{sha256}"))
}

/// The prefix under which every model lives.
pub fn models_prefix() -> Path {
    Path::from("models")
}

/// The folder of one model.
pub fn model_prefix(m: &ModelName) -> Path {
    Path::from(format!("models/{}/{}/{}", m.org, m.team, m.name))
}

/// The object path of one version's manifest.
pub fn manifest_path(m: &ModelName, version: &str) -> Path {
    Path::from(format!(
        "models/{}/{}/{}/{version}/manifest.json",
        m.org, m.team, m.name
    ))
}

/// `org/team/name` for messages.
pub fn display(m: &ModelName) -> String {
    format!("{}/{}/{}", m.org, m.team, m.name)
}

/// Checks a model name; an empty team becomes "default" (as NGC models without a team).
pub fn validate_model(m: Option<&ModelName>) -> Result<ModelName> {
    let m = m.ok_or_else(|| RegistryError::Invalid("model is required (org/team/name)".into()))?;
    let mut m = m.clone();
    if m.team.is_empty() {
        m.team = "default".into();
    }
    names::segment("model org", &m.org)?;
    names::segment("model team", &m.team)?;
    names::segment("model name", &m.name)?;
    Ok(m)
}

/// Checks a version string.
pub fn validate_version(v: &str) -> Result<()> {
    names::segment("model version", v)?;
    Ok(())
}

/// Checks a lower-case hex SHA-256.
pub fn validate_sha256(path: &str, sha: &str) -> Result<()> {
    if sha.len() != 64
        || !sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(RegistryError::Invalid(format!(
            "file {path:?}: sha256 {sha:?} is not 64 lower-case hex digits"
        )));
    }
    Ok(())
}

/// A file entry as stored.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredFile {
    /// Relative path inside the version.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// A manifest as stored in `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoredManifest {
    /// Organisation.
    pub org: String,
    /// Team.
    pub team: String,
    /// Model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Model type.
    pub model_type: String,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// The engine config, as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_config: Option<serde_json::Value>,
    /// Every file.
    pub files: Vec<StoredFile>,
    /// When it was stored, RFC 3339.
    pub created_at: String,
}

impl StoredManifest {
    /// Converts a wire manifest, validating every field.
    pub fn from_proto(m: &Manifest) -> Result<Self> {
        let model = validate_model(m.model.as_ref())?;
        validate_version(&m.version)?;
        let engine_config = if m.engine_config_json.trim().is_empty() {
            None
        } else {
            Some(serde_json::from_str(&m.engine_config_json).map_err(|e| {
                RegistryError::Invalid(format!("manifest engine_config_json is not valid JSON: {e}"))
            })?)
        };
        if m.files.is_empty() {
            return Err(RegistryError::Invalid("manifest lists no files".into()));
        }
        let mut seen = std::collections::HashSet::new();
        let mut files = Vec::with_capacity(m.files.len());
        for f in &m.files {
            names::relative_id("model file path", &f.path)?;
            validate_sha256(&f.path, &f.sha256)?;
            if !seen.insert(f.path.as_str()) {
                return Err(RegistryError::Invalid(format!(
                    "file {:?} is listed twice",
                    f.path
                )));
            }
            files.push(StoredFile {
                path: f.path.clone(),
                size: f.size,
                sha256: f.sha256.clone(),
            });
        }
        Ok(Self {
            org: model.org,
            team: model.team,
            name: model.name,
            version: m.version.clone(),
            model_type: m.model_type.clone(),
            labels: m.labels.clone(),
            description: m.description.clone(),
            engine_config,
            files,
            created_at: m.created_at.clone(),
        })
    }

    /// The wire form.
    pub fn to_proto(&self) -> Manifest {
        Manifest {
            model: Some(self.model()),
            version: self.version.clone(),
            model_type: self.model_type.clone(),
            labels: self.labels.clone(),
            description: self.description.clone(),
            engine_config_json: self
                .engine_config
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            files: self
                .files
                .iter()
                .map(|f| ModelFile {
                    path: f.path.clone(),
                    size: f.size,
                    sha256: f.sha256.clone(),
                })
                .collect(),
            created_at: self.created_at.clone(),
        }
    }

    /// The model's name.
    pub fn model(&self) -> ModelName {
        ModelName {
            org: self.org.clone(),
            team: self.team.clone(),
            name: self.name.clone(),
        }
    }

    /// Bytes in all files.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Parses `manifest.json` bytes read from `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| RegistryError::BadManifest {
            path: path.to_string(),
            reason: e.to_string(),
        })
    }
}
