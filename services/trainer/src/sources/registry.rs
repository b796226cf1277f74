//! Fetching from the model registry: a version's manifest, one file or the whole version
//! (checked against the manifest), and the file a [`Role`] means.

use std::path::Path;

use aiaa_proto::registry::v1::{GetManifestRequest, Manifest, ModelFile};
use aiaa_runtime::registry::{DownloadError, TRAIN_CHECKPOINT, TRAIN_CONFIG, download_file};

use crate::error::{Result, TrainerError};

use super::{Fetcher, RegistryRef, Role, invalid, remote, safe_relative};

impl Fetcher {
    pub(super) async fn manifest(&self, r: &RegistryRef) -> Result<Manifest> {
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
    pub(super) async fn registry_file(&self, r: &RegistryRef, file: &ModelFile, target: &Path) -> Result<()> {
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
    pub(super) async fn registry_version(
        &self,
        r: &RegistryRef,
        manifest: &Manifest,
        dir: &Path,
    ) -> Result<()> {
        for file in &manifest.files {
            let target = dir.join(safe_relative(&r.version_ref(), &file.path)?);
            self.registry_file(r, file, &target).await?;
        }
        Ok(())
    }
}

/// The file of a registry version that `role` means (see the module docs).
pub(super) fn pick_file<'a>(r: &RegistryRef, manifest: &'a Manifest, role: Role) -> Result<&'a ModelFile> {
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
        Role::TrainConfig => (".json", TRAIN_CONFIG),
        Role::EvalConfig | Role::ExportOptions => (".json", "config.json"),
        Role::Checkpoint => (".ckpt", TRAIN_CHECKPOINT),
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
}
