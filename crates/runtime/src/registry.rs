//! Reading models from the registry service, shared by the services that do (inference loads
//! model versions, the trainer fetches configs, datalists and checkpoints): the reference
//! syntax users type, and the checked download of one file of a version.
//!
//! A reference is `org/team/name:version`, `org/name:version` (team `default`) or
//! `name:version` (org `aiaa`, team `default`), optionally followed by `:path` naming one file
//! of the version. Each segment follows [`crate::names::segment`], the path
//! [`crate::names::relative_id`].

use std::path::Path;

use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_proto::registry::v1::{DownloadRequest, ModelFile, ModelName};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::RuntimeError;

/// A registry version's checkpoint file (an `aiaa train` checkpoint): what a training job
/// fine-tunes from when it names the version, and with [`TRAIN_CONFIG`] what makes a served
/// model trainable from MONAI Label's `/train/`.
pub const TRAIN_CHECKPOINT: &str = "model.ckpt";
/// A registry version's train config file (the seed's `config_train.json`).
pub const TRAIN_CONFIG: &str = "config_train.json";
use crate::client::AiaaChannel;
use crate::names;

/// A parsed registry reference; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryRef {
    /// The model.
    pub model: ModelName,
    /// The version.
    pub version: String,
    /// One file of the version, when named.
    pub path: Option<String>,
}

impl RegistryRef {
    /// Parses `org/team/name:version[:path]` (see the module docs).
    pub fn parse(reference: &str) -> Result<RegistryRef, RuntimeError> {
        let bad = || RuntimeError::InvalidName {
            what: "registry reference",
            value: reference.chars().take(200).collect(),
            reason: "expected org/team/name:version (or name:version), optionally followed by :path",
        };
        let mut parts = reference.splitn(3, ':');
        let model = parts.next().ok_or_else(bad)?;
        let version = parts.next().ok_or_else(bad)?;
        let path = parts.next().map(str::to_string);
        let segments: Vec<&str> = model.split('/').collect();
        let (org, team, name) = match segments.as_slice() {
            [name] => ("aiaa", "default", *name),
            [org, name] => (*org, "default", *name),
            [org, team, name] => (*org, *team, *name),
            _ => return Err(bad()),
        };
        for p in [org, team, name, version] {
            names::segment("registry reference", p)?;
        }
        if let Some(p) = &path {
            names::relative_id("registry file path", p)?;
        }
        Ok(RegistryRef {
            model: ModelName {
                org: org.into(),
                team: team.into(),
                name: name.into(),
            },
            version: version.to_string(),
            path,
        })
    }

    /// `org/team/name:version`.
    pub fn version_ref(&self) -> String {
        format!(
            "{}/{}/{}:{}",
            self.model.org, self.model.team, self.model.name, self.version
        )
    }
}

/// Why a download failed; each service maps it to its own error once.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The registry answered with an error.
    #[error("{0}")]
    Remote(tonic::Status),
    /// The file is larger than the caller's limit.
    #[error("{path} has {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// The file's path in the version.
        path: String,
        /// Its size (as announced or as received so far).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// What arrived is not what the manifest lists.
    #[error(
        "{path} arrived with {size} bytes, sha256 {sha256}; the manifest says {want_size} bytes, {want_sha256}"
    )]
    Mismatch {
        /// The file's path in the version.
        path: String,
        /// Bytes received.
        size: u64,
        /// Their sha256.
        sha256: String,
        /// The manifest's size.
        want_size: u64,
        /// The manifest's sha256.
        want_sha256: String,
    },
    /// The local file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The local path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Downloads `file` of `model:version` to `target`, whole or not at all (a temporary file
/// next to it, synced and renamed into place), refusing more than `limit` bytes and checking
/// size and sha256 against `file` (the manifest's entry). Returns at once when `target`
/// already holds exactly that file.
pub async fn download_file(
    registry: &mut RegistryServiceClient<AiaaChannel>,
    model: &ModelName,
    version: &str,
    file: &ModelFile,
    target: &Path,
    limit: u64,
) -> Result<(), DownloadError> {
    let too_large = |size| DownloadError::TooLarge {
        path: file.path.clone(),
        size,
        limit,
    };
    if file.size > limit {
        return Err(too_large(file.size));
    }
    if local_sha256(target)
        .await
        .is_some_and(|(n, sha)| n == file.size && sha.eq_ignore_ascii_case(&file.sha256))
    {
        return Ok(());
    }
    let stream = registry
        .download(DownloadRequest {
            model: Some(model.clone()),
            version: version.to_string(),
            path: file.path.clone(),
        })
        .await
        .map_err(DownloadError::Remote)?
        .into_inner()
        .map(|chunk| chunk.map(|c| c.data));
    write_whole(stream, target, limit, Some((file.size, &file.sha256)))
        .await
        .map_err(|e| match e {
            WriteError::Source(s) => DownloadError::Remote(s),
            WriteError::TooLarge { size } => too_large(size),
            WriteError::Mismatch { size, sha256 } => DownloadError::Mismatch {
                path: file.path.clone(),
                size,
                sha256,
                want_size: file.size,
                want_sha256: file.sha256.clone(),
            },
            WriteError::Io { path, source } => DownloadError::Io { path, source },
        })?;
    Ok(())
}

/// Why [`write_whole`] wrote nothing.
#[derive(Debug)]
pub enum WriteError<E> {
    /// The stream itself failed.
    Source(E),
    /// More bytes than the limit arrived (`size` so far).
    TooLarge {
        /// Bytes received when the limit was passed.
        size: u64,
    },
    /// What arrived differs from the expected size and sha256.
    Mismatch {
        /// Bytes received.
        size: u64,
        /// Their sha256.
        sha256: String,
    },
    /// The local file could not be written.
    Io {
        /// The local path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Writes a stream of bytes to `target` whole or not at all: a temporary file next to it
/// (the usual file mode, not a temporary file's owner-only one), synced and renamed into
/// place, refusing more than `limit` bytes and, when `expect` gives a size and sha256,
/// anything else. Returns the size and lower-case hex sha256 written.
pub async fn write_whole<S, B, E>(
    mut stream: S,
    target: &Path,
    limit: u64,
    expect: Option<(u64, &str)>,
) -> Result<(u64, String), WriteError<E>>
where
    S: futures::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    let io = |path: &Path, source| WriteError::Io {
        path: path.display().to_string(),
        source,
    };
    let dir = target.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir).await.map_err(|e| io(dir, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".download-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| io(dir, e))?;
    let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(|e| io(tmp.path(), e))?);
    let mut hash = Sha256::new();
    let mut size = 0u64;
    while let Some(piece) = stream.next().await {
        let piece = piece.map_err(WriteError::Source)?;
        let piece = piece.as_ref();
        size += piece.len() as u64;
        if size > limit {
            return Err(WriteError::TooLarge { size });
        }
        hash.update(piece);
        out.write_all(piece).await.map_err(|e| io(tmp.path(), e))?;
    }
    out.flush().await.map_err(|e| io(tmp.path(), e))?;
    out.sync_all().await.map_err(|e| io(tmp.path(), e))?;
    drop(out);
    let sha256 = hex::encode(hash.finalize());
    if let Some((want_size, want_sha)) = expect
        && (size != want_size || !sha256.eq_ignore_ascii_case(want_sha))
    {
        return Err(WriteError::Mismatch { size, sha256 });
    }
    tmp.persist(target).map_err(|e| io(target, e.error))?;
    Ok((size, sha256))
}

/// Size and lower-case hex sha256 of a local file, when it can be read (on a blocking thread).
pub async fn local_sha256(path: &Path) -> Option<(u64, String)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path).ok()?;
        let mut h = Sha256::new();
        let n = std::io::copy(&mut f, &mut h).ok()?;
        Some((n, hex::encode(h.finalize())))
    })
    .await
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_defaults_and_paths() {
        let r = RegistryRef::parse("brain:1").unwrap();
        assert_eq!(
            (r.model.org.as_str(), r.model.team.as_str(), r.model.name.as_str()),
            ("aiaa", "default", "brain")
        );
        assert_eq!((r.version.as_str(), r.path), ("1", None));
        let r = RegistryRef::parse("nvidia/med/spleen:2.0:models/model.pt").unwrap();
        assert_eq!(r.version_ref(), "nvidia/med/spleen:2.0");
        assert_eq!(r.path.as_deref(), Some("models/model.pt"));
        assert_eq!(RegistryRef::parse("org/spleen:3").unwrap().model.team, "default");
        for bad in [
            "spleen",
            "a/b/c/d:1",
            "spleen:",
            ":1",
            "x:1:../etc/passwd",
            "sp een:1",
        ] {
            let e = RegistryRef::parse(bad).unwrap_err().to_string();
            assert!(e.contains("registry"), "{bad}: {e}");
        }
    }
}
