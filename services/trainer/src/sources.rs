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

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::datastore::v1::{DatalistRef, GetRequest, ItemKind, get_response};
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_proto::registry::v1::{GetManifestRequest, Manifest, ModelFile};
use aiaa_proto::trainer::v1::{Source, source};
use aiaa_runtime::client::AiaaChannel;
use aiaa_runtime::names;
use aiaa_runtime::registry::{DownloadError, WriteError, download_file, local_sha256, write_whole};
use aiaa_runtime::store::Store;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, TrainerError};

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
    fn noun(self) -> &'static str {
        match self {
            Role::TrainConfig => "train config",
            Role::EvalConfig => "evaluation config",
            Role::Checkpoint => "checkpoint",
            Role::Model => "model",
            Role::ExportOptions => "export options",
        }
    }

    /// The file name it gets in the work folder when the source has none.
    fn default_name(self) -> &'static str {
        match self {
            Role::TrainConfig => "config_train.json",
            Role::EvalConfig => "config_eval.json",
            Role::Checkpoint => "model.ckpt",
            Role::Model => "model.pt",
            Role::ExportOptions => "export_options.json",
        }
    }
}

fn invalid(msg: String) -> TrainerError {
    TrainerError::InvalidRequest(msg)
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

/// The suffix a datastore format gets when an item's id has no image suffix.
fn suffix_for_format(format: &str) -> &'static str {
    match format {
        "nifti" => ".nii",
        "nifti-gz" => ".nii.gz",
        "mha" => ".mha",
        "mhd" => ".mhd",
        "png" => ".png",
        "dicom" => ".dcm",
        _ => "",
    }
}

fn has_image_suffix(name: &str) -> bool {
    aiaa_imaging::io::image_stem(name).is_some()
}

/// The datastore kind of a datalist key's files.
fn kind_of_key(key: &str) -> ItemKind {
    if key == "label" {
        ItemKind::Label
    } else {
        ItemKind::Image
    }
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

    /// Fetches a datalist and every file it names into `dir` (see the module docs) and
    /// writes the rewritten list to `dir/datalist.json`; `progress(done, total)` is called
    /// per file.
    pub async fn datalist(
        &self,
        spec: &SourceSpec,
        dir: &Path,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<PathBuf> {
        tokio::fs::create_dir_all(dir).await.map_err(|e| io(dir, e))?;
        let (text, registry_dir) = match spec {
            SourceSpec::InlineJson(t) => (t.clone(), None),
            SourceSpec::Datalist(name) => {
                let list = self
                    .datastore
                    .clone()
                    .get_datalist(DatalistRef { name: name.clone() })
                    .await
                    .map_err(|s| remote("datastore", &format!("datalist {name:?}"), &s))?
                    .into_inner();
                (list.json, None)
            }
            SourceSpec::DatastoreId(_) | SourceSpec::TrainerObject(_) => {
                let file = self.file(spec, Role::ExportOptions, &dir.join("source")).await?;
                (
                    tokio::fs::read_to_string(&file).await.map_err(|e| io(&file, e))?,
                    None,
                )
            }
            SourceSpec::RegistryRef(text) => {
                let r = RegistryRef::parse(text)?;
                let manifest = self.manifest(&r).await?;
                let version_dir = dir.join("registry");
                self.registry_version(&r, &manifest, &version_dir).await?;
                let file = match &r.path {
                    Some(p) => version_dir.join(safe_relative(&r.version_ref(), p)?),
                    None => {
                        let jsons: Vec<&ModelFile> = manifest
                            .files
                            .iter()
                            .filter(|f| f.path.ends_with(".json"))
                            .collect();
                        match jsons.as_slice() {
                            [one] => version_dir.join(safe_relative(&r.version_ref(), &one.path)?),
                            _ => {
                                return Err(invalid(format!(
                                    "registry {}: name the datalist file as {}:PATH",
                                    r.version_ref(),
                                    r.version_ref()
                                )));
                            }
                        }
                    }
                };
                let text = tokio::fs::read_to_string(&file).await.map_err(|e| io(&file, e))?;
                (text, Some(version_dir))
            }
        };
        let what = format!("datalist ({})", spec.describe());
        let mut list: Value =
            serde_json::from_str(&text).map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))?;
        let Value::Object(sections) = &mut list else {
            return Err(invalid(format!(
                "{what} must be a JSON object with a training (and validation) list"
            )));
        };
        // Every path to its local place (datastore items are noted in `wanted`), then the
        // downloads, then the places the downloads actually took (a suffix may be added).
        let mut wanted: BTreeMap<(i32, String), PathBuf> = BTreeMap::new();
        for_each_path(sections, &what, &mut |key, p| {
            let local = self.local_path(&what, key, p, registry_dir.as_deref(), dir, &mut wanted)?;
            Ok(local.to_string_lossy().into_owned())
        })?;
        let total = wanted.len() as u64;
        progress(0, total);
        let mut moved: BTreeMap<String, String> = BTreeMap::new();
        for (done, ((kind, id), target)) in wanted.iter().enumerate() {
            let kind = ItemKind::try_from(*kind).unwrap_or(ItemKind::Image);
            let actual = self.datastore_item(kind, id, target).await?;
            if &actual != target {
                moved.insert(
                    target.to_string_lossy().into_owned(),
                    actual.to_string_lossy().into_owned(),
                );
            }
            progress(done as u64 + 1, total);
        }
        if !moved.is_empty() {
            for_each_path(sections, &what, &mut |_, p| {
                Ok(moved.get(p).cloned().unwrap_or_else(|| p.to_string()))
            })?;
        }
        let path = dir.join("datalist.json");
        let text = serde_json::to_string_pretty(&list).map_err(|e| TrainerError::Internal(e.to_string()))?;
        tokio::fs::write(&path, text).await.map_err(|e| io(&path, e))?;
        Ok(path)
    }

    /// Where a datalist path lives locally; datastore items are added to `wanted`.
    fn local_path(
        &self,
        what: &str,
        key: &str,
        p: &str,
        registry_dir: Option<&Path>,
        dir: &Path,
        wanted: &mut BTreeMap<(i32, String), PathBuf>,
    ) -> Result<PathBuf> {
        let path = Path::new(p);
        if path.is_absolute() {
            let Some(root) = &self.file_root else {
                return Err(invalid(format!(
                    "{what}: {key} {p:?} is an absolute path; datalists name datastore items (relative \
                     ids), or files under --trainer-file-root when the service sets one"
                )));
            };
            let real = path
                .canonicalize()
                .map_err(|e| invalid(format!("{what}: {key} {p:?}: {e}")))?;
            if !real.starts_with(root) {
                return Err(invalid(format!(
                    "{what}: {key} {p:?} is outside --trainer-file-root {}",
                    root.display()
                )));
            }
            return Ok(real);
        }
        if let Some(version_dir) = registry_dir {
            return Ok(version_dir.join(safe_relative(what, p)?));
        }
        names::relative_id("datastore item id", p).map_err(|e| invalid(format!("{what}: {key}: {e}")))?;
        let kind = kind_of_key(key);
        let folder = if kind == ItemKind::Label {
            "labels"
        } else {
            "images"
        };
        let target = dir.join(folder).join(p);
        wanted
            .entry((kind as i32, p.to_string()))
            .or_insert(target.clone());
        Ok(target)
    }

    /// Downloads a datastore item to `target` (or keeps an identical file already there);
    /// returns the path, with a suffix added when the id has none and the format is known.
    /// An `.mhd` header brings its data file along.
    pub async fn datastore_item(&self, kind: ItemKind, id: &str, target: &Path) -> Result<PathBuf> {
        let noun = if kind == ItemKind::Label { "label" } else { "image" };
        let what = format!("datastore {noun} {id:?}");
        let mut stream = self
            .datastore
            .clone()
            .get(GetRequest {
                kind: kind as i32,
                id: id.to_string(),
            })
            .await
            .map_err(|s| remote("datastore", &format!("{noun} {id:?}"), &s))?
            .into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| TrainerError::Unavailable(format!("{what}: the answer was empty")))?
            .map_err(|s| remote("datastore", &format!("{noun} {id:?}"), &s))?;
        let Some(get_response::Kind::Item(item)) = first.kind else {
            return Err(TrainerError::Unavailable(format!(
                "{what}: the answer did not start with the item"
            )));
        };
        if item.size > self.max_bytes {
            return Err(TrainerError::FailedPrecondition(format!(
                "{what} has {} bytes, more than --trainer-max-source-bytes {}",
                item.size, self.max_bytes
            )));
        }
        let mut target = target.to_path_buf();
        if !has_image_suffix(id) && !suffix_for_format(&item.format).is_empty() && !id.ends_with(".json") {
            let mut name = target.as_os_str().to_owned();
            name.push(suffix_for_format(&item.format));
            target = PathBuf::from(name);
        }
        let have = local_sha256(&target).await;
        if have
            .as_ref()
            .is_some_and(|(n, sha)| *n == item.size && sha.eq_ignore_ascii_case(&item.sha256))
        {
            tracing::debug!(item = %id, "kept the local copy");
        } else {
            let body = stream.map(|m| match m {
                Ok(m) => match m.kind {
                    Some(get_response::Kind::Chunk(c)) => Ok(c.data),
                    _ => Err(TrainerError::Unavailable(format!(
                        "datastore {id:?}: an unexpected message in the stream"
                    ))),
                },
                Err(s) => Err(remote("datastore", &format!("{id:?}"), &s)),
            });
            let expect = (!item.sha256.is_empty()).then_some((item.size, item.sha256.as_str()));
            write_stream(body, &target, &what, self.max_bytes, expect).await?;
        }
        if id.to_ascii_lowercase().ends_with(".mhd") {
            self.mhd_companion(kind, id, &target).await?;
        }
        Ok(target)
    }

    /// Fetches the data file an `.mhd` header names (`ElementDataFile`), next to it.
    async fn mhd_companion(&self, kind: ItemKind, id: &str, header: &Path) -> Result<()> {
        let text = tokio::fs::read(header).await.map_err(|e| io(header, e))?;
        let text = String::from_utf8_lossy(&text);
        let Some(file) = text.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "ElementDataFile").then(|| v.trim().to_string())
        }) else {
            return Ok(());
        };
        if file.eq_ignore_ascii_case("LOCAL") || file.contains(' ') || file.contains('%') {
            return Ok(());
        }
        let companion_id = match id.rfind('/') {
            Some(pos) => format!("{}/{file}", &id[..pos]),
            None => file.clone(),
        };
        names::relative_id("datastore item id", &companion_id)?;
        let target = header.with_file_name(&file);
        Box::pin(self.datastore_item(kind, &companion_id, &target))
            .await
            .map(|_| ())
    }

    /// Downloads an object of the trainer's store to `target`.
    pub async fn store_object(&self, path: &str, target: &Path) -> Result<()> {
        let location = object_store::path::Path::parse(path)
            .map_err(|e| invalid(format!("trainer object {path:?}: {e}")))?;
        let got = self.store.get(&location).await.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                TrainerError::NotFound(format!("the trainer's store has no object {path:?}"))
            }
            other => TrainerError::Store {
                context: format!("read {path}"),
                source: other,
            },
        })?;
        if got.meta.size > self.max_bytes {
            return Err(TrainerError::FailedPrecondition(format!(
                "trainer object {path:?} has {} bytes, more than --trainer-max-source-bytes {}",
                got.meta.size, self.max_bytes
            )));
        }
        let body = got.into_stream().map(|r| {
            r.map_err(|e| TrainerError::Store {
                context: format!("read {path}"),
                source: e,
            })
        });
        write_stream(
            body,
            target,
            &format!("trainer object {path:?}"),
            self.max_bytes,
            None,
        )
        .await?;
        Ok(())
    }

    /// Downloads every object under `prefix` of the trainer's store into `dir`, mirroring the
    /// tree (skipping `job.json`); returns the relative paths.
    pub async fn store_prefix(&self, prefix: &str, dir: &Path) -> Result<Vec<String>> {
        let folder = prefix.trim_end_matches('/');
        let location = object_store::path::Path::parse(folder)
            .map_err(|e| invalid(format!("output prefix {prefix:?}: {e}")))?;
        let mut listing = self.store.list(Some(&location));
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| TrainerError::Store {
                context: format!("list {prefix}"),
                source: e,
            })?;
            let full = meta.location.to_string();
            let Some(rel) = full.strip_prefix(folder).map(|r| r.trim_start_matches('/')) else {
                continue;
            };
            if rel.is_empty() || rel == crate::jobs::RECORD_FILE {
                continue;
            }
            found.push(rel.to_string());
        }
        for rel in &found {
            let target = dir.join(safe_relative(prefix, rel)?);
            self.store_object(&format!("{folder}/{rel}"), &target).await?;
        }
        Ok(found)
    }

    async fn manifest(&self, r: &RegistryRef) -> Result<Manifest> {
        Ok(self
            .registry
            .clone()
            .get_manifest(GetManifestRequest {
                model: Some(r.model.clone()),
                version: r.version.clone(),
            })
            .await
            .map_err(|s| remote("registry", &r.version_ref(), &s))?
            .into_inner())
    }

    /// Downloads one file of a registry version to `target`, checked against the manifest.
    async fn registry_file(&self, r: &RegistryRef, file: &ModelFile, target: &Path) -> Result<()> {
        let what = format!("registry {}:{}", r.version_ref(), file.path);
        download_file(
            &mut self.registry.clone(),
            &r.model,
            &r.version,
            file,
            target,
            self.max_bytes,
        )
        .await
        .map_err(|e| match e {
            DownloadError::Remote(s) => remote("registry", &what, &s),
            DownloadError::TooLarge { size, .. } => TrainerError::FailedPrecondition(format!(
                "{what} has {size} bytes, more than --trainer-max-source-bytes {}",
                self.max_bytes
            )),
            DownloadError::Mismatch { .. } => {
                TrainerError::Unavailable(format!("registry {}: {e}", r.version_ref()))
            }
            DownloadError::Io { .. } => TrainerError::Internal(format!("{what}: {e}")),
        })
    }

    /// Downloads every file of a registry version into `dir`.
    async fn registry_version(&self, r: &RegistryRef, manifest: &Manifest, dir: &Path) -> Result<()> {
        for file in &manifest.files {
            let target = dir.join(safe_relative(&r.version_ref(), &file.path)?);
            self.registry_file(r, file, &target).await?;
        }
        Ok(())
    }
}

/// Calls `f(key, path)` on every path of a datalist's lists (`image` strings or lists,
/// `label`, and other keys' strings that name image files) and replaces the path with its
/// answer.
fn for_each_path(
    sections: &mut serde_json::Map<String, Value>,
    what: &str,
    f: &mut dyn FnMut(&str, &str) -> Result<String>,
) -> Result<()> {
    let mut one = |key: &str, value: &mut Value| -> Result<()> {
        if let Value::String(p) = value
            && (key == "image" || key == "label" || has_image_suffix(p))
        {
            *value = Value::String(f(key, p)?);
        }
        Ok(())
    };
    for (section, entries) in sections.iter_mut() {
        let Value::Array(entries) = entries else {
            continue;
        };
        for (i, entry) in entries.iter_mut().enumerate() {
            let Value::Object(fields) = entry else {
                return Err(invalid(format!("{what}: {section}[{i}] must be an object")));
            };
            for (key, value) in fields.iter_mut() {
                match value {
                    Value::Array(items) if key == "image" => {
                        for v in items {
                            one(key, v)?;
                        }
                    }
                    v => one(key, v)?,
                }
            }
        }
    }
    Ok(())
}

/// The file of a registry version that `role` means (see the module docs).
fn pick_file<'a>(r: &RegistryRef, manifest: &'a Manifest, role: Role) -> Result<&'a ModelFile> {
    if let Some(p) = &r.path {
        return manifest.files.iter().find(|f| &f.path == p).ok_or_else(|| {
            TrainerError::NotFound(format!(
                "registry {} has no file {p:?} (it has {})",
                r.version_ref(),
                list_files(manifest)
            ))
        });
    }
    let (suffix, preferred) = match role {
        Role::TrainConfig => (".json", "config_train.json"),
        Role::EvalConfig | Role::ExportOptions => (".json", "config.json"),
        Role::Checkpoint => (".ckpt", "model.ckpt"),
        Role::Model => (".pt", "model.pt"),
    };
    let base = |f: &ModelFile| f.path.rsplit('/').next().unwrap_or(&f.path).to_string();
    if let Some(f) = manifest.files.iter().find(|f| base(f) == preferred) {
        return Ok(f);
    }
    let matching: Vec<&ModelFile> = manifest
        .files
        .iter()
        .filter(|f| f.path.ends_with(suffix))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(TrainerError::NotFound(format!(
            "registry {} has no {suffix} file for the {} (it has {})",
            r.version_ref(),
            role.noun(),
            list_files(manifest)
        ))),
        _ => Err(invalid(format!(
            "registry {} has several {suffix} files; name the {} as {}:PATH",
            r.version_ref(),
            role.noun(),
            r.version_ref()
        ))),
    }
}

fn list_files(manifest: &Manifest) -> String {
    let names: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    if names.is_empty() {
        "no files".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn registry_refs() {
        let r = RegistryRef::parse("nvidia/med/brain:2").unwrap();
        assert_eq!(r.version_ref(), "nvidia/med/brain:2");
        assert!(r.path.is_none());
        let r = RegistryRef::parse("brain:1:sub/model.ckpt").unwrap();
        assert_eq!(r.model.org, "aiaa");
        assert_eq!(r.path.as_deref(), Some("sub/model.ckpt"));
        for bad in ["brain", "a/b/c/d:1", "brain:1:../x", "br ain:1", ":1"] {
            assert!(RegistryRef::parse(bad).is_err(), "{bad}");
        }
    }

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

    #[test]
    fn registry_files_by_role() {
        let f = |p: &str| ModelFile {
            path: p.into(),
            size: 1,
            sha256: String::new(),
        };
        let m = Manifest {
            files: vec![f("net.pt"), f("a.ckpt"), f("b.ckpt"), f("config.json")],
            ..Default::default()
        };
        let r = RegistryRef::parse("m:1").unwrap();
        assert_eq!(pick_file(&r, &m, Role::Model).unwrap().path, "net.pt");
        assert_eq!(pick_file(&r, &m, Role::TrainConfig).unwrap().path, "config.json");
        let err = pick_file(&r, &m, Role::Checkpoint).unwrap_err().to_string();
        assert!(err.contains("several .ckpt"), "{err}");
        let r = RegistryRef::parse("m:1:b.ckpt").unwrap();
        assert_eq!(pick_file(&r, &m, Role::Checkpoint).unwrap().path, "b.ckpt");
        let r = RegistryRef::parse("m:1:c.ckpt").unwrap();
        assert!(matches!(
            pick_file(&r, &m, Role::Checkpoint),
            Err(TrainerError::NotFound(_))
        ));
    }

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
