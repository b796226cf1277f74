//! The catalogue itself, independent of gRPC: listing, manifests, verified pushes, file
//! streams, pulls from an upstream catalogue, and deletion (see [`crate::layout`] for how a
//! version becomes visible atomically).

use std::collections::{BTreeMap, HashSet};

use aiaa_proto::registry::v1::{
    ListModelsRequest, Manifest, ModelName, ModelSummary, PullProgress, VersionSummary,
};
use aiaa_runtime::store::Store;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::blob::BlobWriter;
use crate::error::{RegistryError, Result};
use crate::layout::{
    self, StoredFile, StoredManifest, blob_path, manifest_path, validate_model, validate_version,
};

/// A catalogue on one object store.
#[derive(Clone)]
pub struct Catalogue {
    store: Store,
    /// Where it lives, for messages (a URL; never credentials).
    name: String,
}

impl Catalogue {
    /// A catalogue on `store`; `name` says where it is in messages.
    pub fn new(store: Store, name: impl Into<String>) -> Self {
        Self {
            store,
            name: name.into(),
        }
    }

    /// Where it lives.
    pub fn name(&self) -> &str {
        &self.name
    }

    async fn read_manifest(&self, model: &ModelName, version: &str) -> Result<Option<StoredManifest>> {
        let path = manifest_path(model, version);
        match self.store.get(&path).await {
            Ok(r) => Ok(Some(StoredManifest::parse(&path, &r.bytes().await?)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One version's manifest.
    pub async fn manifest(&self, model: Option<&ModelName>, version: &str) -> Result<StoredManifest> {
        let model = validate_model(model)?;
        validate_version(version)?;
        self.read_manifest(&model, version).await?.ok_or_else(|| {
            RegistryError::NotFound(format!("model {} version {version}", layout::display(&model)))
        })
    }

    /// Every manifest under `prefix`.
    async fn manifests_under(&self, prefix: &Path) -> Result<Vec<StoredManifest>> {
        let paths: Vec<Path> = self
            .store
            .list(Some(prefix))
            .try_filter_map(|meta| async move {
                Ok((meta.location.filename() == Some("manifest.json")).then_some(meta.location))
            })
            .try_collect()
            .await?;
        futures::stream::iter(paths)
            .map(|path| async move {
                match self.store.get(&path).await {
                    Ok(r) => Ok(Some(StoredManifest::parse(&path, &r.bytes().await?)?)),
                    // Deleted between listing and reading: no longer part of the catalogue.
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(RegistryError::from(e)),
                }
            })
            .buffer_unordered(16)
            .try_filter_map(|m| async move { Ok(m) })
            .try_collect()
            .await
    }

    /// Models matching the filters, sorted by org/team/name; each summarised by its newest
    /// version.
    pub async fn list_models(&self, req: &ListModelsRequest) -> Result<Vec<ModelSummary>> {
        let mut by_model: BTreeMap<(String, String, String), Vec<StoredManifest>> = BTreeMap::new();
        for m in self.manifests_under(&layout::models_prefix()).await? {
            by_model
                .entry((m.org.clone(), m.team.clone(), m.name.clone()))
                .or_default()
                .push(m);
        }
        let name_filter = req.name.to_lowercase();
        let mut out = Vec::new();
        for ((org, team, name), mut versions) in by_model {
            versions.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.version.cmp(&b.version)));
            let Some(latest) = versions.last() else { continue };
            let keep = (req.org.is_empty() || req.org == org)
                && (req.team.is_empty() || req.team == team)
                && (name_filter.is_empty() || name.to_lowercase().contains(&name_filter))
                && (req.label.is_empty() || versions.iter().any(|v| v.labels.contains(&req.label)))
                && (req.model_type.is_empty() || versions.iter().any(|v| v.model_type == req.model_type));
            if keep {
                out.push(ModelSummary {
                    model: Some(latest.model()),
                    model_type: latest.model_type.clone(),
                    labels: latest.labels.clone(),
                    description: latest.description.clone(),
                    latest_version: latest.version.clone(),
                    version_count: versions.len() as u32,
                });
            }
        }
        Ok(out)
    }

    /// The versions of one model, oldest first.
    pub async fn list_versions(&self, model: Option<&ModelName>) -> Result<Vec<VersionSummary>> {
        let model = validate_model(model)?;
        let mut versions = self.manifests_under(&layout::model_prefix(&model)).await?;
        if versions.is_empty() {
            return Err(RegistryError::NotFound(format!(
                "model {}",
                layout::display(&model)
            )));
        }
        versions.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.version.cmp(&b.version)));
        Ok(versions
            .iter()
            .map(|m| VersionSummary {
                version: m.version.clone(),
                created_at: m.created_at.clone(),
                total_size: m.total_size(),
                file_count: m.files.len() as u32,
            })
            .collect())
    }

    /// Starts a push of the version `manifest` describes. Fails early when it exists.
    pub async fn begin_push(&self, manifest: &Manifest, max_bytes: u64) -> Result<PushSession> {
        let stored = StoredManifest::from_proto(manifest)?;
        if stored.total_size() > max_bytes {
            return Err(RegistryError::TooLarge(format!(
                "model version of {} bytes exceeds the registry's limit of {max_bytes} bytes (--max-model-bytes)",
                stored.total_size()
            )));
        }
        if self
            .read_manifest(&stored.model(), &stored.version)
            .await?
            .is_some()
        {
            return Err(RegistryError::AlreadyExists {
                model: layout::display(&stored.model()),
                version: stored.version.clone(),
            });
        }
        Ok(PushSession {
            catalogue: self.clone(),
            manifest: stored,
            next: 0,
            current: None,
        })
    }

    /// Makes a version visible: writes its manifest if (and only if) none exists.
    async fn commit(&self, mut manifest: StoredManifest) -> Result<StoredManifest> {
        manifest.created_at = aiaa_runtime::now_rfc3339();
        let path = manifest_path(&manifest.model(), &manifest.version);
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self.store.put_opts(&path, PutPayload::from(body), opts).await {
            Ok(_) => Ok(manifest),
            Err(object_store::Error::AlreadyExists { .. })
            | Err(object_store::Error::Precondition { .. }) => Err(RegistryError::AlreadyExists {
                model: layout::display(&manifest.model()),
                version: manifest.version.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// One file of one version: its entry and its bytes.
    pub async fn file(
        &self,
        model: Option<&ModelName>,
        version: &str,
        path: &str,
    ) -> Result<(StoredFile, BoxStream<'static, Result<Bytes>>)> {
        let manifest = self.manifest(model, version).await?;
        let file = manifest
            .files
            .iter()
            .find(|f| f.path == path)
            .cloned()
            .ok_or_else(|| {
                RegistryError::NotFound(format!(
                    "file {path:?} in model {} version {version}",
                    layout::display(&manifest.model())
                ))
            })?;
        let stream = self
            .store
            .get(&blob_path(&file.sha256))
            .await?
            .into_stream()
            .map_err(RegistryError::from)
            .boxed();
        Ok((file, stream))
    }

    /// Copies one version from `upstream`, verifying every file, reporting progress through
    /// `progress` (a closed receiver aborts the pull). Nothing is visible unless it succeeds.
    pub async fn pull(
        &self,
        upstream: &Catalogue,
        model: Option<&ModelName>,
        version: &str,
        progress: &tokio::sync::mpsc::Sender<PullProgress>,
    ) -> Result<StoredManifest> {
        let model = validate_model(model)?;
        validate_version(version)?;
        let theirs = upstream
            .read_manifest(&model, version)
            .await
            .map_err(|e| RegistryError::Upstream {
                url: upstream.name.clone(),
                reason: e.to_string(),
            })?;
        let theirs = theirs.ok_or_else(|| RegistryError::Upstream {
            url: upstream.name.clone(),
            reason: format!(
                "model {} version {version} not found there",
                layout::display(&model)
            ),
        })?;
        // Re-validate what the upstream says before trusting any of it.
        let theirs = StoredManifest::from_proto(&theirs.to_proto())?;
        if self.read_manifest(&model, version).await?.is_some() {
            return Err(RegistryError::AlreadyExists {
                model: layout::display(&model),
                version: version.into(),
            });
        }
        let bytes_total = theirs.total_size();
        let files_total = theirs.files.len() as u32;
        let mut bytes_done = 0u64;
        for (i, file) in theirs.files.iter().enumerate() {
            let report = |bytes_done| PullProgress {
                path: file.path.clone(),
                bytes_done,
                bytes_total,
                files_done: i as u32,
                files_total,
                done: false,
                manifest: None,
            };
            progress
                .send(report(bytes_done))
                .await
                .map_err(|_| RegistryError::Cancelled("the client stopped listening to the pull".into()))?;
            let mut source = upstream
                .store
                .get(&blob_path(&file.sha256))
                .await
                .map_err(|e| RegistryError::Upstream {
                    url: upstream.name.clone(),
                    reason: format!("file {:?} (blob {}): {e}", file.path, file.sha256),
                })?
                .into_stream();
            let mut writer = BlobWriter::create(&self.store, file).await?;
            let corrupted = |reason: String| RegistryError::Corrupted {
                path: file.path.clone(),
                source_name: upstream.name.clone(),
                expected: file.sha256.clone(),
                actual: reason,
            };
            while let Some(piece) = source.next().await {
                let piece = match piece {
                    Ok(p) => p,
                    Err(e) => {
                        writer.abort().await;
                        return Err(RegistryError::Upstream {
                            url: upstream.name.clone(),
                            reason: format!("reading {:?}: {e}", file.path),
                        });
                    }
                };
                let len = piece.len() as u64;
                if let Err(m) = writer.write(piece).await? {
                    writer.abort().await;
                    return Err(corrupted(m.to_string()));
                }
                bytes_done += len;
                if progress.send(report(bytes_done)).await.is_err() {
                    writer.abort().await;
                    return Err(RegistryError::Cancelled(
                        "the client stopped listening to the pull".into(),
                    ));
                }
            }
            if let Err(m) = writer.finish().await? {
                return Err(match m {
                    crate::blob::Mismatch::Sha256 { actual, .. } => corrupted(actual),
                    other => corrupted(other.to_string()),
                });
            }
        }
        self.commit(theirs).await
    }

    /// Deletes one version, or every version when `version` is empty; then removes the blobs
    /// no remaining version refers to. Returns the versions removed.
    ///
    /// Known race, left for a later change: a push or pull that commits a version sharing a
    /// blob with the one being deleted, between this scan and the blob's removal, would lose
    /// that blob (its manifest then names a missing file, which Download reports as
    /// NOT_FOUND). Closing it needs a lease on blobs (or a mark-and-sweep collector that
    /// skips blobs younger than the oldest push in flight).
    pub async fn delete(&self, model: Option<&ModelName>, version: &str) -> Result<Vec<String>> {
        let model = validate_model(model)?;
        let doomed: Vec<StoredManifest> = if version.is_empty() {
            self.manifests_under(&layout::model_prefix(&model)).await?
        } else {
            validate_version(version)?;
            self.read_manifest(&model, version).await?.into_iter().collect()
        };
        if doomed.is_empty() {
            let what = if version.is_empty() {
                format!("model {}", layout::display(&model))
            } else {
                format!("model {} version {version}", layout::display(&model))
            };
            return Err(RegistryError::NotFound(what));
        }
        // The manifest goes first: from then on the version is invisible.
        for m in &doomed {
            self.store.delete(&manifest_path(&model, &m.version)).await?;
        }
        let still_used: HashSet<String> = self
            .manifests_under(&layout::models_prefix())
            .await?
            .into_iter()
            .flat_map(|m| m.files.into_iter().map(|f| f.sha256))
            .collect();
        for sha in doomed
            .iter()
            .flat_map(|m| m.files.iter().map(|f| &f.sha256))
            .collect::<HashSet<_>>()
        {
            if !still_used.contains(sha) {
                match self.store.delete(&blob_path(sha)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => tracing::warn!(blob = %sha, error = %e, "could not remove an unused blob"),
                }
            }
        }
        Ok(doomed.into_iter().map(|m| m.version).collect())
    }
}

/// A push in progress: bytes arrive in manifest order and are cut into files by their
/// declared sizes.
pub struct PushSession {
    catalogue: Catalogue,
    manifest: StoredManifest,
    next: usize,
    current: Option<BlobWriter>,
}

impl PushSession {
    fn mismatch(&self, index: usize, reason: String) -> RegistryError {
        RegistryError::PushMismatch {
            path: self.manifest.files[index].path.clone(),
            reason,
        }
    }

    /// Completes every finished file (including empty ones) and opens the next one.
    async fn advance(&mut self) -> Result<()> {
        loop {
            if let Some(w) = &self.current {
                if w.remaining() > 0 {
                    return Ok(());
                }
                let w = self.current.take().expect("checked above");
                if let Err(m) = w.finish().await? {
                    return Err(self.mismatch(self.next - 1, m.to_string()));
                }
            }
            if self.next == self.manifest.files.len() {
                return Ok(());
            }
            let file = self.manifest.files[self.next].clone();
            self.current = Some(BlobWriter::create(&self.catalogue.store, &file).await?);
            self.next += 1;
        }
    }

    /// Takes the next bytes of the stream.
    pub async fn write(&mut self, mut data: Bytes) -> Result<()> {
        while !data.is_empty() {
            self.advance().await?;
            let Some(w) = self.current.as_mut() else {
                return Err(RegistryError::PushMismatch {
                    path: self
                        .manifest
                        .files
                        .last()
                        .map(|f| f.path.clone())
                        .unwrap_or_default(),
                    reason: "more bytes were sent than the manifest's files declare".into(),
                });
            };
            let take = (w.remaining() as usize).min(data.len());
            let piece = data.split_to(take);
            if let Err(m) = w.write(piece).await? {
                return Err(self.mismatch(self.next - 1, m.to_string()));
            }
        }
        Ok(())
    }

    /// Ends the stream: verifies the last file and makes the version visible.
    pub async fn finish(mut self) -> Result<StoredManifest> {
        self.advance().await?;
        if let Some(w) = self.current.take() {
            let index = self.next - 1;
            let reason = format!(
                "the stream ended with {} bytes of this file missing",
                w.remaining()
            );
            w.abort().await;
            return Err(self.mismatch(index, reason));
        }
        let manifest = self.manifest.clone();
        self.catalogue.commit(manifest).await
    }

    /// Drops whatever was being written.
    pub async fn abort(mut self) {
        if let Some(w) = self.current.take() {
            w.abort().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_proto::registry::v1::ModelFile;
    use sha2::Digest;

    fn file(path: &str, data: &[u8]) -> ModelFile {
        ModelFile {
            path: path.into(),
            size: data.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(data)),
        }
    }

    fn manifest(files: Vec<ModelFile>) -> Manifest {
        Manifest {
            model: Some(ModelName {
                org: "o".into(),
                team: "t".into(),
                name: "m".into(),
            }),
            version: "1".into(),
            files,
            ..Default::default()
        }
    }

    async fn push(c: &Catalogue, m: &Manifest, stream: &[u8], chunk: usize) -> Result<StoredManifest> {
        let mut session = c.begin_push(m, u64::MAX).await?;
        for piece in stream.chunks(chunk) {
            if let Err(e) = session.write(Bytes::copy_from_slice(piece)).await {
                session.abort().await;
                return Err(e);
            }
        }
        session.finish().await
    }

    fn catalogue(name: &str) -> Catalogue {
        Catalogue::new(
            aiaa_runtime::store::open(&format!("memory://{name}")).unwrap(),
            name,
        )
    }

    #[tokio::test]
    async fn files_are_cut_by_declared_sizes_across_chunks() {
        let c = catalogue("cut");
        let (a, b, d) = (b"first file".to_vec(), Vec::new(), vec![9u8; 3000]);
        let m = manifest(vec![file("a.bin", &a), file("empty", &b), file("dir/d.bin", &d)]);
        let stream = [a.clone(), b, d.clone()].concat();
        let stored = push(&c, &m, &stream, 7).await.unwrap();
        assert_eq!(stored.files.len(), 3);
        for (path, want) in [("a.bin", a), ("dir/d.bin", d)] {
            let (_, bytes) = c.file(m.model.as_ref(), "1", path).await.unwrap();
            let got: Vec<u8> = bytes.try_collect::<Vec<_>>().await.unwrap().concat();
            assert_eq!(got, want);
        }
        let again = push(&c, &m, &stream, 7).await.unwrap_err();
        assert!(matches!(again, RegistryError::AlreadyExists { .. }), "{again}");
    }

    #[tokio::test]
    async fn wrong_bytes_leave_no_version() {
        let c = catalogue("wrong");
        let a = b"0123456789".to_vec();
        let m = manifest(vec![file("a.bin", &a)]);
        let short = push(&c, &m, &a[..4], 3).await.unwrap_err().to_string();
        assert!(short.contains("a.bin") && short.contains("missing"), "{short}");
        let long = push(&c, &m, &[a.clone(), b"x".to_vec()].concat(), 4)
            .await
            .unwrap_err()
            .to_string();
        assert!(long.contains("more bytes"), "{long}");
        let mut other = a.clone();
        other[0] = b'X';
        let bad = push(&c, &m, &other, 4).await.unwrap_err().to_string();
        assert!(bad.contains("a.bin") && bad.contains("sha256"), "{bad}");
        assert!(matches!(
            c.manifest(m.model.as_ref(), "1").await,
            Err(RegistryError::NotFound(_))
        ));
        assert!(
            c.list_models(&ListModelsRequest::default())
                .await
                .unwrap()
                .is_empty()
        );
    }
}
