//! One object-store factory from a URL, used by every service, so the same code runs on a
//! laptop folder and on S3 in a cluster:
//!
//! - `file:///abs/path` or a plain path (`./aiaa-data`): a local folder, created if missing;
//! - `memory://name`: an in-memory store, shared by name within the process (tests);
//! - `s3://bucket/prefix`: S3 or a compatible server. Endpoint, region and credentials come
//!   from the usual `AWS_*` variables (`AWS_ENDPOINT_URL` or `AWS_ENDPOINT`, `AWS_REGION`,
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`); plain-HTTP endpoints are allowed for
//!   local servers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

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
        return open_local(url, std::path::Path::new(url));
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

fn open_local(url: &str, path: &std::path::Path) -> Result<Store, RuntimeError> {
    std::fs::create_dir_all(path).map_err(|e| store_err(url, format!("create {}: {e}", path.display())))?;
    let fs = LocalFileSystem::new_with_prefix(path).map_err(|e| store_err(url, e))?;
    Ok(Arc::new(fs.with_automatic_cleanup(true)))
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
    fn bad_urls_are_named() {
        let err = open("ftp://x/y").err().unwrap().to_string();
        assert!(
            err.contains("ftp://x/y") && err.contains("unsupported scheme"),
            "{err}"
        );
        assert!(open("").is_err());
    }
}
