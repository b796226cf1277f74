//! The engine pool: the loaded models by name. Models come from the seed's
//! `engine_pool.json` at start, and later from the admin API: a model config (JSON) whose
//! `model_path` the service can read, or a registry reference `org/team/name:version` whose
//! files are downloaded (checksums verified) into the model folder and loaded with the
//! version's engine config. Loading (and the networks' first load onto the device) runs on
//! a blocking thread; a model being replaced keeps serving until its successor is ready.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use aiaa_proto::inference::v1::ModelInfo;
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_proto::registry::v1::{GetManifestRequest, Manifest, ModelName};
use aiaa_runtime::client::AiaaChannel;
use aiaa_runtime::registry::{
    DownloadError, RegistryRef, TRAIN_CHECKPOINT, TRAIN_CONFIG, download_file, local_sha256,
};

use aiaa_engines::EngineKind;
use aiaa_engines::device::Devices;
use aiaa_engines::engines::{self, Engine, EngineSpec};
use aiaa_engines::pool::{ModelConfig, PoolEntry};

use crate::error::{InferenceError, Result};

/// An engine's [`aiaa_engines::ModelInfo`] as the gRPC API carries it.
pub fn proto_info(i: &aiaa_engines::ModelInfo) -> ModelInfo {
    ModelInfo {
        name: i.name.clone(),
        model_type: i.model_type.clone(),
        labels: i.labels.clone(),
        description: i.description.clone(),
        version: i.version.clone(),
        roi: i.roi.clone(),
        padding: i.padding,
        sigma: i.sigma,
        engine: i.engine.clone(),
        torchscript: i.torchscript.to_string(),
        monailabel_type: EngineKind::from_class(&i.engine)
            .map(|k| k.monailabel_type().to_string())
            .unwrap_or_default(),
        registry_ref: String::new(),
        trainable: false,
    }
}

/// Where a loaded model came from, when it was the registry: shown in [`ModelInfo`].
#[derive(Clone, Debug, Default)]
struct Origin {
    registry_ref: String,
    trainable: bool,
}

/// A loaded model and its origin.
#[derive(Clone)]
struct Loaded {
    engine: Arc<dyn Engine>,
    origin: Origin,
}

/// The loaded models.
#[derive(Clone)]
pub struct Models {
    loaded: Arc<RwLock<BTreeMap<String, Loaded>>>,
    devices: Devices,
    model_dir: PathBuf,
    /// Folders models loaded through the API may be read from (`model_dir` included).
    roots: Vec<PathBuf>,
}

impl Models {
    /// An empty pool on `devices`; registry models and uploads are stored under
    /// `model_dir`; models loaded through the API are read from `roots` (and `model_dir`).
    pub fn new(devices: Devices, model_dir: PathBuf, roots: Vec<PathBuf>) -> Models {
        let mut roots = roots;
        if !roots.contains(&model_dir) {
            roots.push(model_dir.clone());
        }
        Models {
            loaded: Arc::default(),
            devices,
            model_dir,
            roots,
        }
    }

    /// The devices.
    pub fn devices(&self) -> &Devices {
        &self.devices
    }

    /// The model called `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Engine>> {
        self.loaded
            .read()
            .map_err(|_| InferenceError::Internal("model table poisoned".into()))?
            .get(name)
            .map(|l| Arc::clone(&l.engine))
            .ok_or_else(|| {
                InferenceError::NotFound(format!(
                    "model {name:?} is not loaded (GET /v1/models lists the loaded ones)"
                ))
            })
    }

    /// What is loaded, sorted by name, filtered by type and label when given.
    pub fn list(&self, model_type: &str, label: &str) -> Vec<ModelInfo> {
        let loaded = self
            .loaded
            .read()
            .map(|m| m.values().cloned().collect::<Vec<_>>())
            .unwrap_or_default();
        loaded
            .iter()
            .map(|l| ModelInfo {
                registry_ref: l.origin.registry_ref.clone(),
                trainable: l.origin.trainable,
                ..proto_info(l.engine.info())
            })
            .filter(|i| model_type.is_empty() || i.model_type == model_type)
            .filter(|i| label.is_empty() || i.labels.iter().any(|l| l == label))
            .collect()
    }

    /// Builds and installs an engine (blocking).
    pub fn install(&self, spec: EngineSpec) -> Result<ModelInfo> {
        self.install_from(spec, Origin::default())
    }

    fn install_from(&self, spec: EngineSpec, origin: Origin) -> Result<ModelInfo> {
        let engine: Arc<dyn Engine> = Arc::from(engines::build(&spec, &self.devices)?);
        // The warm-up's forward passes leave hundreds of MB of freed activations in malloc's
        // arenas (deepbet: RSS +350 MB after its load, +140 MB after a trim).
        aiaa_runtime::memory::trim_when_quiet();
        let info = ModelInfo {
            registry_ref: origin.registry_ref.clone(),
            trainable: origin.trainable,
            ..proto_info(engine.info())
        };
        self.loaded
            .write()
            .map_err(|_| InferenceError::Internal("model table poisoned".into()))?
            .insert(spec.name.clone(), Loaded { engine, origin });
        tracing::info!(model = %info.name, engine = %info.engine, torchscript = %info.torchscript, "model loaded");
        metrics::gauge!("aiaa_inference_models_loaded").set(self.list("", "").len() as f64);
        Ok(info)
    }

    /// Removes a model; `false` when it was not loaded. Requests running on it finish.
    pub fn unload(&self, name: &str) -> bool {
        let removed = self
            .loaded
            .write()
            .map(|mut m| m.remove(name).is_some())
            .unwrap_or(false);
        metrics::gauge!("aiaa_inference_models_loaded").set(self.list("", "").len() as f64);
        removed
    }

    /// Loads one entry of `engine_pool.json` (blocking).
    pub fn load_entry(&self, entry: &PoolEntry) -> Result<ModelInfo> {
        self.install(EngineSpec::from_pool_entry(entry)?)
    }

    /// Loads a model from a config given as JSON text (blocking): its files must lie in the
    /// model roots; a relative `model_path` is taken from the first root, other relative
    /// paths (a locator's) from the model file's folder.
    pub fn load_config(&self, name: &str, json: &str, class: &str, labels: Vec<String>) -> Result<ModelInfo> {
        let base = self
            .roots
            .first()
            .cloned()
            .unwrap_or_else(|| self.model_dir.clone());
        self.install(EngineSpec::confined(
            name,
            json,
            class,
            labels,
            &base,
            &self.roots,
        )?)
    }

    /// Loads a model whose TorchScript file was uploaded to `file` (blocking): the config's
    /// `model_path` is replaced by it.
    pub fn load_uploaded(
        &self,
        name: &str,
        json: &str,
        file: &Path,
        class: &str,
        labels: Vec<String>,
    ) -> Result<ModelInfo> {
        let mut config: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
            .map_err(|e| InferenceError::Config(format!("model config of {name:?}: {e}")))?;
        config.insert("model_path".into(), file.display().to_string().into());
        let json = serde_json::Value::Object(config).to_string();
        self.load_config(name, &json, class, labels)
    }

    /// The folder uploaded model files of `name` go to.
    pub fn upload_dir(&self, name: &str) -> PathBuf {
        self.model_dir.join("uploads").join(name)
    }

    /// Downloads a registry version (verifying every file's sha256) into the model folder
    /// and loads it with its engine config.
    pub async fn load_registry(
        &self,
        registry: RegistryServiceClient<AiaaChannel>,
        name: &str,
        reference: &str,
        class: &str,
        labels: Vec<String>,
    ) -> Result<ModelInfo> {
        let (model, version) = parse_ref(reference)?;
        let (dir, manifest) = fetch(registry, &self.model_dir, &model, &version).await?;
        if manifest.engine_config_json.trim().is_empty() {
            return Err(InferenceError::Config(format!(
                "registry model {reference} has no engine config; push it with one (aiaa push --engine-config FILE)"
            )));
        }
        let config = ModelConfig::parse_confined(
            &manifest.engine_config_json,
            &format!("of registry model {reference}"),
            &dir,
            &self.roots,
        )?;
        // The manifest's type decides when neither the request nor the config names an engine.
        let class = if class.is_empty() && config.text("engine").is_none() && config.text("type").is_none() {
            EngineKind::for_type(&manifest.model_type)
                .map_err(|e| InferenceError::Config(format!("registry model {reference}: {e}")))?
                .class()
                .to_string()
        } else {
            engines::class_for(class, &config)?
        };
        let labels = if labels.is_empty() {
            manifest.labels.clone()
        } else {
            labels
        };
        let has = |f: &str| manifest.files.iter().any(|x| x.path == f);
        let origin = Origin {
            registry_ref: format!("{}/{}/{}:{version}", model.org, model.team, model.name),
            trainable: has(TRAIN_CHECKPOINT) && has(TRAIN_CONFIG),
        };
        let this = self.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || {
            this.install_from(
                EngineSpec {
                    name,
                    class,
                    labels,
                    version,
                    config,
                },
                origin,
            )
        })
        .await
        .map_err(|e| InferenceError::Internal(format!("loading task: {e}")))?
    }
}

/// `org/team/name:version` (or `name:version`, org `aiaa`, team `default`): a whole version.
fn parse_ref(reference: &str) -> Result<(ModelName, String)> {
    let r = RegistryRef::parse(reference).map_err(|e| InferenceError::Invalid(e.to_string()))?;
    if let Some(path) = r.path {
        return Err(InferenceError::Invalid(format!(
            "registry reference {reference:?}: a model is a whole version; drop the file path {path:?}"
        )));
    }
    Ok((r.model, r.version))
}

fn status_error(what: &str, s: &tonic::Status) -> InferenceError {
    match s.code() {
        tonic::Code::NotFound => InferenceError::NotFound(format!("registry: {what}: {}", s.message())),
        tonic::Code::InvalidArgument => InferenceError::Invalid(format!("registry: {what}: {}", s.message())),
        _ => InferenceError::Unavailable(format!("registry: {what}: {}", s.message())),
    }
}

/// Whether a manifest's relative file path would leave the version's folder.
fn escapes(rel: &Path) -> bool {
    rel.is_absolute()
        || rel
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
}

/// Whether `dir` holds every file of `manifest` with its size and sha256.
async fn holds_manifest(dir: &Path, manifest: &Manifest) -> bool {
    for file in &manifest.files {
        let rel = Path::new(&file.path);
        if escapes(rel) {
            return false;
        }
        match local_sha256(&dir.join(rel)).await {
            Some((size, sha)) if size == file.size && sha.eq_ignore_ascii_case(&file.sha256) => {}
            _ => return false,
        }
    }
    true
}

/// Downloads every file of a version into `<root>/<org>/<team>/<name>/<version>/` (whole
/// or not at all: a temporary folder renamed into place), reusing a complete earlier copy.
/// Returns the folder and the version's manifest (read once: it also holds the engine
/// config).
async fn fetch(
    mut registry: RegistryServiceClient<AiaaChannel>,
    root: &Path,
    model: &ModelName,
    version: &str,
) -> Result<(PathBuf, Manifest)> {
    let what = format!("{}/{}/{}:{version}", model.org, model.team, model.name);
    let dir = root
        .join(&model.org)
        .join(&model.team)
        .join(&model.name)
        .join(version);
    let manifest = registry
        .get_manifest(GetManifestRequest {
            model: Some(model.clone()),
            version: version.to_string(),
        })
        .await
        .map_err(|s| status_error(&what, &s))?
        .into_inner();
    // A complete earlier copy is reused only when it is this manifest's files: another
    // registry (or a re-pushed store) can have the same name and version with other weights.
    if dir.join(".complete").exists() && holds_manifest(&dir, &manifest).await {
        return Ok((dir, manifest));
    }
    let io = |e: std::io::Error| InferenceError::Internal(format!("model folder {}: {e}", dir.display()));
    let parent = dir.parent().unwrap_or(root);
    tokio::fs::create_dir_all(parent).await.map_err(io)?;
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(parent)
        .map_err(io)?;
    for file in &manifest.files {
        let rel = Path::new(&file.path);
        if escapes(rel) {
            return Err(InferenceError::Invalid(format!(
                "{what}: unsafe file path {:?}",
                file.path
            )));
        }
        let target = tmp.path().join(rel);
        download_file(&mut registry, model, version, file, &target, u64::MAX)
            .await
            .map_err(|e| match e {
                DownloadError::Remote(s) => status_error(&what, &s),
                DownloadError::Mismatch { .. } => InferenceError::Unavailable(format!("{what}: {e}")),
                DownloadError::TooLarge { .. } => InferenceError::Invalid(format!("{what}: {e}")),
                DownloadError::Io { .. } => {
                    InferenceError::Internal(format!("model folder {}: {e}", dir.display()))
                }
            })?;
    }
    tokio::fs::write(tmp.path().join(".complete"), b"")
        .await
        .map_err(io)?;
    let staged = tmp.keep();
    if dir.exists() {
        // A stale copy: set aside, then removed once the new one is in place.
        let stale = parent.join(format!(".stale-{}", uuid::Uuid::new_v4().simple()));
        if tokio::fs::rename(&dir, &stale).await.is_ok() {
            let _ = tokio::fs::remove_dir_all(&stale).await;
        }
    }
    if tokio::fs::rename(&staged, &dir).await.is_err() {
        // Another load got there first: theirs is complete, drop ours.
        let _ = tokio::fs::remove_dir_all(&staged).await;
        if !dir.join(".complete").exists() {
            return Err(InferenceError::Internal(format!(
                "could not place {}",
                dir.display()
            )));
        }
    }
    Ok((dir, manifest))
}
