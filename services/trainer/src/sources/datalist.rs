//! Fetching a datalist: the list itself (inline, datastore, trainer object or registry), then
//! every file it names (the files of `aiaa_datalist`'s format, in every list), and the list
//! rewritten with the local paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aiaa_proto::datastore::v1::{DatalistRef, ItemKind};
use aiaa_proto::registry::v1::ModelFile;
use aiaa_runtime::names;

use crate::error::{Result, TrainerError};

use super::{Fetcher, RegistryRef, Role, SourceSpec, invalid, io, remote, safe_relative};

impl Fetcher {
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
        // Read as every datalist is (`aiaa_datalist`), named as the request names it.
        let mut list = aiaa_datalist::Datalist::parse(&text, format!("({})", spec.describe()))?;
        let what = format!("datalist ({})", spec.describe());
        // Every path to its local place (datastore items are noted in `wanted`), then the
        // downloads, then the places the downloads actually took (a suffix may be added).
        let mut wanted: BTreeMap<(i32, String), PathBuf> = BTreeMap::new();
        list.map_files(|key, p| {
            let local = self.local_path(&what, key, p, registry_dir.as_deref(), dir, &mut wanted)?;
            Ok::<_, TrainerError>(local.to_string_lossy().into_owned())
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
            list.map_files(|_, p| {
                Ok::<_, TrainerError>(moved.get(p).cloned().unwrap_or_else(|| p.to_string()))
            })?;
        }
        let path = dir.join("datalist.json");
        let text = serde_json::to_string_pretty(&list.into_json())
            .map_err(|e| TrainerError::Internal(e.to_string()))?;
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
}

/// The datastore kind of a datalist key's files.
fn kind_of_key(key: &str) -> ItemKind {
    if key == "label" {
        ItemKind::Label
    } else {
        ItemKind::Image
    }
}
