//! What a job reads, and how it gets into the job's work folder.
//!
//! A request names each input as a [`SourceSpec`] (the proto's `Source`):
//!
//! - `inline_json`: the JSON text itself (a config, a datalist, export options);
//! - `datalist`: a datastore datalist's name (datalists only);
//! - `datastore_id`: a datastore item (an image item, else a label item of that id) whose
//!   bytes are the file;
//! - `registry_ref`: `org/team/name:version` (or `name:version`, org `aiaa`, team
//!   `default`), optionally `:path` for one file of the version; every file is checked
//!   against the manifest's size and sha256;
//! - `trainer_object`: an object of the trainer's own store, e.g. `jobs/<id>/model.ckpt`.
//!
//! Without a `:path`, a registry version stands for the file its [`Role`] needs: a train
//! config is the version's only `.json` file (or `config_train.json`), a checkpoint its
//! `model.ckpt` (or only `.ckpt`), a model its only `.pt` file (or `model.pt`); an
//! evaluation config is the version's engine config from the manifest.
//!
//! Datalists: the paths in a datalist given inline, as a datastore item, as a trainer
//! object or by datastore name are datastore item ids (`label` names a label item, every
//! other path an image item); each is downloaded once into the work folder (size and sha256
//! checked; a file already there with the same hash is kept, so a resumed job does not
//! download again) and the datalist is rewritten with the local paths. An absolute path is
//! allowed only under `--trainer-file-root` and used as it is. A datalist from the registry
//! names files of its own version (relative to it), which is downloaded whole. An `.mhd`
//! item brings its `ElementDataFile` item along.

use std::path::{Component, Path, PathBuf};

use aiaa_proto::datastore::v1::ItemKind;
use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_runtime::client::AiaaChannel;
use aiaa_runtime::registry::{WriteError, write_whole};
use aiaa_runtime::store::Store;
use bytes::Bytes;
use futures::Stream;

use crate::error::{Result, TrainerError};

mod datalist;
mod datastore;
mod registry;
mod spec;
mod store;

use registry::pick_file;
pub use spec::{Role, SourceSpec};

fn invalid(msg: String) -> TrainerError {
    TrainerError::InvalidRequest(msg)
}

pub use aiaa_runtime::registry::RegistryRef;

/// Maps a remote service's answer to our error, naming what was asked.
fn remote(service: &str, what: &str, s: &tonic::Status) -> TrainerError {
    let msg = format!("{service}: {what}: {}", s.message());
    match s.code() {
        tonic::Code::NotFound => TrainerError::NotFound(msg),
        tonic::Code::InvalidArgument => TrainerError::InvalidRequest(msg),
        tonic::Code::FailedPrecondition => TrainerError::FailedPrecondition(msg),
        _ => TrainerError::Unavailable(msg),
    }
}

fn io(path: &Path, e: std::io::Error) -> TrainerError {
    TrainerError::io(path, e)
}

/// Writes a stream of bytes to `target` whole or not at all (a temporary file next to it,
/// renamed into place), checking the size limit and, when given, the size and sha256.
async fn write_stream<S>(
    stream: S,
    target: &Path,
    what: &str,
    limit: u64,
    expect: Option<(u64, &str)>,
) -> Result<(u64, String)>
where
    S: Stream<Item = Result<Bytes>> + Unpin,
{
    write_whole(stream, target, limit, expect)
        .await
        .map_err(|e| match e {
            WriteError::Source(e) => e,
            WriteError::TooLarge { .. } => TrainerError::FailedPrecondition(format!(
                "{what} is larger than {limit} bytes (--trainer-max-source-bytes)"
            )),
            WriteError::Mismatch { size, sha256 } => {
                let (want_size, want_sha) = expect.unwrap_or_default();
                TrainerError::Unavailable(format!(
                    "{what} arrived with {size} bytes, sha256 {sha256}; its source says {want_size} bytes, {want_sha}"
                ))
            }
            WriteError::Io { path, source } => TrainerError::io(Path::new(&path), source),
        })
}

/// A relative path that stays inside its folder.
fn safe_relative(what: &str, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if rel.is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(invalid(format!("{what}: unsafe path {rel:?}")));
    }
    Ok(p.to_path_buf())
}

fn has_image_suffix(name: &str) -> bool {
    aiaa_imaging::io::image_stem(name).is_some()
}

/// Gets inputs for jobs from the datastore, the registry and the trainer's store.
#[derive(Clone)]
pub struct Fetcher {
    datastore: DatastoreServiceClient<AiaaChannel>,
    registry: RegistryServiceClient<AiaaChannel>,
    store: Store,
    max_bytes: u64,
    file_root: Option<PathBuf>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("max_bytes", &self.max_bytes)
            .field("file_root", &self.file_root)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher over these clients and the trainer's store; downloads larger than
    /// `max_bytes` fail; inline datalists may name absolute paths only under `file_root`.
    pub fn new(
        datastore: DatastoreServiceClient<AiaaChannel>,
        registry: RegistryServiceClient<AiaaChannel>,
        store: Store,
        max_bytes: u64,
        file_root: Option<PathBuf>,
    ) -> Fetcher {
        let file_root = file_root.map(|r| r.canonicalize().unwrap_or(r));
        Fetcher {
            datastore,
            registry,
            store,
            max_bytes,
            file_root,
        }
    }

    /// The trainer's store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The bytes of a JSON source (inline, datastore item, trainer object, registry file) as
    /// text; `role` picks the file of a registry version named without a path.
    pub async fn json_text(&self, spec: &SourceSpec, role: Role, dir: &Path) -> Result<String> {
        if let SourceSpec::InlineJson(t) = spec {
            return Ok(t.clone());
        }
        let file = self.file(spec, role, dir).await?;
        tokio::fs::read_to_string(&file).await.map_err(|e| io(&file, e))
    }

    /// Fetches a one-file source into `dir` and returns its path: inline JSON is written as
    /// the role's default name, other sources keep their file name.
    pub async fn file(&self, spec: &SourceSpec, role: Role, dir: &Path) -> Result<PathBuf> {
        tokio::fs::create_dir_all(dir).await.map_err(|e| io(dir, e))?;
        match spec {
            SourceSpec::InlineJson(text) => {
                let path = dir.join(role.default_name());
                tokio::fs::write(&path, text).await.map_err(|e| io(&path, e))?;
                Ok(path)
            }
            SourceSpec::Datalist(name) => Err(invalid(format!(
                "the {} cannot be a datalist (datalist {name:?}); name a datastore item, a registry \
                 file, a trainer object or give it inline",
                role.noun()
            ))),
            SourceSpec::DatastoreId(id) => {
                let name = Path::new(id)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| role.default_name().to_string());
                let target = dir.join(name);
                match self.datastore_item(ItemKind::Image, id, &target).await {
                    Err(TrainerError::NotFound(_)) => self
                        .datastore_item(ItemKind::Label, id, &target)
                        .await
                        .map_err(|e| match e {
                            TrainerError::NotFound(_) => TrainerError::NotFound(format!(
                                "datastore: no image or label item {id:?} (the {})",
                                role.noun()
                            )),
                            other => other,
                        }),
                    other => other,
                }
            }
            SourceSpec::TrainerObject(p) => {
                let name = Path::new(p)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| role.default_name().to_string());
                let target = dir.join(name);
                self.store_object(p, &target).await?;
                Ok(target)
            }
            SourceSpec::RegistryRef(r) => {
                let r = RegistryRef::parse(r)?;
                let manifest = self.manifest(&r).await?;
                if role == Role::EvalConfig && r.path.is_none() {
                    if manifest.engine_config_json.trim().is_empty() {
                        return Err(TrainerError::FailedPrecondition(format!(
                            "registry {} has no engine config to evaluate with; name the config",
                            r.version_ref()
                        )));
                    }
                    let path = dir.join(role.default_name());
                    tokio::fs::write(&path, &manifest.engine_config_json)
                        .await
                        .map_err(|e| io(&path, e))?;
                    return Ok(path);
                }
                let file = pick_file(&r, &manifest, role)?;
                let rel = safe_relative(&r.version_ref(), &file.path)?;
                let name = rel
                    .file_name()
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(role.default_name()));
                let target = dir.join(name);
                self.registry_file(&r, file, &target).await?;
                Ok(target)
            }
        }
    }

    /// Fetches a model for evaluation into `dir`: a registry version (without `:path`) is
    /// downloaded whole and its TorchScript file returned; other sources as [`Self::file`].
    pub async fn model(&self, spec: &SourceSpec, dir: &Path) -> Result<PathBuf> {
        if let SourceSpec::RegistryRef(text) = spec {
            let r = RegistryRef::parse(text)?;
            if r.path.is_none() {
                let manifest = self.manifest(&r).await?;
                let file = pick_file(&r, &manifest, Role::Model)?.clone();
                self.registry_version(&r, &manifest, dir).await?;
                return Ok(dir.join(safe_relative(&r.version_ref(), &file.path)?));
            }
        }
        self.file(spec, Role::Model, dir).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[tokio::test]
    async fn streams_are_written_whole_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/x.bin");
        let body = || {
            futures::stream::iter(vec![
                Ok(Bytes::from_static(b"hello ")),
                Ok(Bytes::from_static(b"world")),
            ])
        };
        let sha = hex::encode(Sha256::digest(b"hello world"));
        let (n, got) = write_stream(body(), &target, "x", 100, Some((11, &sha)))
            .await
            .unwrap();
        assert_eq!((n, got.as_str()), (11, sha.as_str()));
        assert_eq!(std::fs::read(&target).unwrap(), b"hello world");
        let other = dir.path().join("y.bin");
        let err = write_stream(body(), &other, "y", 100, Some((11, "00")))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sha256"), "{err}");
        assert!(!other.exists(), "a failed download leaves nothing");
        let err = write_stream(body(), &other, "y", 5, None).await.unwrap_err();
        assert!(err.to_string().contains("--trainer-max-source-bytes"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary files left: {left:?}");
    }
}
