//! One object-store factory from a URL, used by every service, so the same code runs on a
//! laptop folder and on S3 in a cluster:
//!
//! - `file:///abs/path` or a plain path (`./aiaa-data`): a local folder, created if missing;
//! - `memory://name`: an in-memory store, shared by name within the process (tests);
//! - `s3://bucket/prefix`: S3 or a compatible server. Endpoint, region and credentials come
//!   from the usual `AWS_*` variables (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT`, `AWS_REGION`,
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`); plain-HTTP endpoints are allowed for
//!   local servers.
//!
//! A local store also answers how much room its disk has left ([`free_bytes`]), and is swept
//! of the staging files that uploads cut off by a crash leave behind ([`sweep_staging`], run
//! when the store is first opened in a process).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;

use crate::RuntimeError;

/// A shared handle to an object store.
pub type Store = Arc<dyn ObjectStore>;

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

fn store_err(url: &str, reason: impl ToString) -> RuntimeError {
    RuntimeError::Store {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

/// Opens the store a URL names. Errors name the URL and the reason.
pub fn open(url: &str) -> Result<Store, RuntimeError> {
    if url.trim().is_empty() {
        return Err(store_err(url, "empty store URL"));
    }
    if !url.contains("://") {
        return open_local(url, Path::new(url));
    }
    let parsed = url::Url::parse(url).map_err(|e| store_err(url, e))?;
    match parsed.scheme() {
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|_| store_err(url, "not an absolute file path"))?;
            open_local(url, &path)
        }
        "memory" => {
            let name = format!("{}{}", parsed.host_str().unwrap_or(""), parsed.path());
            let mut stores = memory_stores().lock().unwrap_or_else(|e| e.into_inner());
            let store = stores
                .entry(name)
                .or_insert_with(|| Arc::new(InMemory::new()))
                .clone();
            Ok(store)
        }
        "s3" => {
            let bucket = parsed
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| store_err(url, "no bucket"))?;
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_allow_http(true);
            if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
                builder = builder.with_endpoint(endpoint);
            }
            if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
                builder = builder.with_region("us-east-1");
            }
            let s3: Store = Arc::new(builder.build().map_err(|e| store_err(url, e))?);
            with_prefix(url, s3, parsed.path())
        }
        other => Err(store_err(
            url,
            format!("unsupported scheme {other:?} (use file://, memory:// or s3://)"),
        )),
    }
}

fn open_local(url: &str, path: &Path) -> Result<Store, RuntimeError> {
    std::fs::create_dir_all(path).map_err(|e| store_err(url, format!("create {}: {e}", path.display())))?;
    let root = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    sweep_once(&root);
    let fs = LocalFileSystem::new_with_prefix(&root).map_err(|e| store_err(url, e))?;
    let store: Store = Arc::new(fs.with_automatic_cleanup(true));
    let mut roots = local_roots().lock().unwrap_or_else(|e| e.into_inner());
    roots.retain(|(s, _)| s.strong_count() > 0);
    roots.push((Arc::downgrade(&store), root));
    Ok(store)
}

/// Local stores opened in this process and their folders (for [`local_root`]).
#[allow(clippy::type_complexity)]
fn local_roots() -> &'static Mutex<Vec<(Weak<dyn ObjectStore>, PathBuf)>> {
    static ROOTS: OnceLock<Mutex<Vec<(Weak<dyn ObjectStore>, PathBuf)>>> = OnceLock::new();
    ROOTS.get_or_init(Default::default)
}

/// The gRPC code for an object-store failure, the same in every service: a missing object
/// is NOT_FOUND, a lost race on a conditional write FAILED_PRECONDITION, a bad path
/// INVALID_ARGUMENT, the store's own configuration or permissions INTERNAL (an operator must
/// act), anything else (network, S3 throttling, a full disk) UNAVAILABLE (retry later).
pub fn status_code(e: &object_store::Error) -> tonic::Code {
    use object_store::Error as E;
    match e {
        E::NotFound { .. } => tonic::Code::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } | E::NotModified { .. } => {
            tonic::Code::FailedPrecondition
        }
        E::InvalidPath { .. } => tonic::Code::InvalidArgument,
        E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::UnknownConfigurationKey { .. } => tonic::Code::Internal,
        _ => tonic::Code::Unavailable,
    }
}

/// The folder of a local store that [`open`] returned; `None` for memory and S3 stores (and
/// for a local store wrapped in another).
pub fn local_root(store: &Store) -> Option<PathBuf> {
    let roots = local_roots().lock().unwrap_or_else(|e| e.into_inner());
    roots
        .iter()
        .find(|(s, _)| s.upgrade().is_some_and(|s| Arc::ptr_eq(&s, store)))
        .map(|(_, root)| root.clone())
}

/// Bytes an unprivileged process may still write on the file system holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok((st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64))
}

/// How long a staging file may go unmodified before [`sweep_staging`] takes it for the
/// leftover of a crashed upload (a live upload writes to its file as its bytes arrive).
pub const STAGING_GRACE: Duration = Duration::from_secs(3600);

/// What a sweep removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Files removed.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Removes from the local store at `root` the staging files (`<object>#<digits>`, where an
/// upload writes before it is published by a rename) not modified for `grace`: an upload
/// cut off by `kill -9` or a power loss leaves one behind, and the store's listings hide
/// them, so nothing else would ever remove them.
pub fn sweep_staging(root: &Path, grace: Duration) -> std::io::Result<Swept> {
    let cutoff = SystemTime::now()
        .checked_sub(grace)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut swept = Swept::default();
    for entry in walkdir::WalkDir::new(root).follow_links(false) {
        let entry = entry.map_err(std::io::Error::other)?;
        if !entry.file_type().is_file() || !is_staging_name(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let meta = entry.metadata().map_err(std::io::Error::other)?;
        if meta.modified().is_ok_and(|m| m < cutoff) {
            std::fs::remove_file(entry.path())?;
            swept.files += 1;
            swept.bytes += meta.len();
        }
    }
    Ok(swept)
}

/// Whether a file name is an upload's staging name: `name#` and digits only.
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// [`sweep_staging`] with [`STAGING_GRACE`], the first time `root` is opened in this process.
fn sweep_once(root: &Path) {
    static SWEPT: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let first = SWEPT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(root.to_path_buf());
    if !first {
        return;
    }
    match sweep_staging(root, STAGING_GRACE) {
        Ok(s) if s.files > 0 => tracing::info!(
            store = %root.display(),
            files = s.files,
            bytes = s.bytes,
            "removed the staging files of uploads cut off by a crash"
        ),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(store = %root.display(), error = %e, "sweeping crashed uploads' staging files failed")
        }
    }
}

fn with_prefix(url: &str, store: Store, prefix: &str) -> Result<Store, RuntimeError> {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        return Ok(store);
    }
    let path = object_store::path::Path::parse(prefix).map_err(|e| store_err(url, e))?;
    Ok(Arc::new(PrefixStore::new(store, path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::path::Path;
    use object_store::{ObjectStoreExt, PutPayload};

    #[tokio::test]
    async fn memory_stores_are_shared_by_name() {
        let a = open("memory://shared-test").unwrap();
        a.put(&Path::from("x"), PutPayload::from_static(b"1"))
            .await
            .unwrap();
        let b = open("memory://shared-test").unwrap();
        assert_eq!(
            b.get(&Path::from("x"))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .as_ref(),
            b"1"
        );
        let c = open("memory://other-test").unwrap();
        assert!(c.get(&Path::from("x")).await.is_err());
    }

    #[tokio::test]
    async fn local_paths_and_file_urls() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/sub", dir.path().display());
        let s = open(&url).unwrap();
        s.put(&Path::from("a/b"), PutPayload::from_static(b"hi"))
            .await
            .unwrap();
        assert!(dir.path().join("sub/a/b").exists());
        let plain = open(dir.path().join("plain").to_str().unwrap()).unwrap();
        plain
            .put(&Path::from("c"), PutPayload::from_static(b"x"))
            .await
            .unwrap();
        assert!(dir.path().join("plain/c").exists());
    }

    #[test]
    fn local_stores_know_their_folder_and_its_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path().to_str().unwrap()).unwrap();
        let root = local_root(&s).unwrap();
        assert_eq!(root, dir.path().canonicalize().unwrap());
        assert!(free_bytes(&root).unwrap() > 0);
        assert!(local_root(&open("memory://root-test").unwrap()).is_none());
    }

    #[test]
    fn only_stale_staging_files_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("sessions/abc");
        std::fs::create_dir_all(&nested).unwrap();
        let stale = nested.join("image#1");
        let old = SystemTime::now() - Duration::from_secs(7200);
        for (name, bytes) in [
            ("image#1", 1000),
            ("image#12", 5),
            ("image", 7),
            ("a#b", 3),
            ("x#", 2),
        ] {
            let f = std::fs::File::create(nested.join(name)).unwrap();
            f.set_len(bytes).unwrap();
            f.set_modified(old).unwrap();
        }
        std::fs::write(nested.join("image#2"), b"live upload").unwrap();
        let swept = sweep_staging(dir.path(), STAGING_GRACE).unwrap();
        assert_eq!(
            swept,
            Swept {
                files: 2,
                bytes: 1005
            }
        );
        assert!(!stale.exists() && !nested.join("image#12").exists());
        for kept in ["image", "a#b", "x#", "image#2"] {
            assert!(nested.join(kept).exists(), "{kept}");
        }
    }

    #[test]
    fn bad_urls_are_named() {
        let err = open("ftp://x/y").err().unwrap().to_string();
        assert!(
            err.contains("ftp://x/y") && err.contains("unsupported scheme"),
            "{err}"
        );
        assert!(open("").is_err());
    }
}
