//! The datastore's shared-resource limits against a real server on a real folder: per-client
//! session quotas (count and bytes, held from admission, rebuilt from the records after a
//! restart), the disk's free-space floor (checked before and while an upload streams;
//! nothing is left behind), and the sweep of crashed uploads' staging files at start.

mod common;

use std::time::{Duration, SystemTime};

use aiaa_datastore::DatastoreArgs;
use aiaa_proto::datastore::v1::{CreateSessionRequest, ItemKind, PutHeader, PutRequest, SessionHeader};
use aiaa_proto::framed;
use common::*;
use futures::StreamExt;
use tonic::{Code, Status};

/// A CreateSession of `data` for `client` (no `x-aiaa-client` when `None`).
async fn session_for(client: &mut Client, who: Option<&str>, data: &[u8]) -> Result<String, Status> {
    let header = SessionHeader {
        filename: "scan.nii".into(),
        ..Default::default()
    };
    let msgs: Vec<_> = framed::messages::<CreateSessionRequest>(header, data.to_vec().into()).collect();
    let mut request = tonic::Request::new(futures::stream::iter(msgs));
    if let Some(who) = who {
        request
            .metadata_mut()
            .insert("x-aiaa-client", who.parse().unwrap());
    }
    Ok(client.create_session(request).await?.into_inner().id)
}

fn reason(status: &Status) -> &str {
    status
        .metadata()
        .get("aiaa-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn quota_args() -> DatastoreArgs {
    DatastoreArgs {
        max_sessions_per_client: 2,
        max_session_bytes_per_client: 1 << 20,
        ..args()
    }
}

#[tokio::test]
async fn each_client_holds_at_most_its_quota_of_sessions_and_bytes() {
    let mut h = file_server(quota_args()).await;
    let small = vec![7u8; 1000];
    let a1 = session_for(&mut h.client, Some("key:aaaa"), &small)
        .await
        .unwrap();
    session_for(&mut h.client, Some("key:aaaa"), &small)
        .await
        .unwrap();
    let err = session_for(&mut h.client, Some("key:aaaa"), &small)
        .await
        .unwrap_err();
    assert_eq!((err.code(), reason(&err)), (Code::ResourceExhausted, "quota"));
    assert!(
        err.message().contains("--max-sessions-per-client") && err.message().contains("key:aaaa"),
        "{}",
        err.message()
    );
    // Another client is not held back; a deleted session gives its place back.
    session_for(&mut h.client, Some("anonymous:10.1.2.3"), &small)
        .await
        .unwrap();
    delete_session(&mut h.client, &a1).await.unwrap();
    session_for(&mut h.client, Some("key:aaaa"), &small)
        .await
        .unwrap();

    // Bytes: 700 KB fits in 1 MiB, a second 700 KB does not (refused as it streams, no
    // size declared), and nothing of it stays.
    let big = vec![1u8; 700_000];
    session_for(&mut h.client, Some("key:bbbb"), &big).await.unwrap();
    let err = session_for(&mut h.client, Some("key:bbbb"), &big)
        .await
        .unwrap_err();
    assert_eq!((err.code(), reason(&err)), (Code::ResourceExhausted, "quota"));
    assert!(
        err.message().contains("--max-session-bytes-per-client"),
        "{}",
        err.message()
    );
    let root = h.root.clone().unwrap();
    let stored = walk_files(&root.join("sessions"));
    assert_eq!(
        stored.iter().filter(|p| p.ends_with("image")).count(),
        4,
        "{stored:?}"
    );

    // Without x-aiaa-client a caller counts by its address: 127.0.0.1 here.
    session_for(&mut h.client, None, &small).await.unwrap();
    session_for(&mut h.client, None, &small).await.unwrap();
    let err = session_for(&mut h.client, None, &small).await.unwrap_err();
    assert!(err.message().contains("peer:127.0.0.1"), "{}", err.message());

    // A restarted datastore rebuilds the usage from the session records.
    let url = h.url.clone();
    h.stop().await;
    let (mut client, shutdown, server) = serve(&url, &quota_args(), None).await;
    let err = session_for(&mut client, Some("key:aaaa"), &small)
        .await
        .unwrap_err();
    assert_eq!(reason(&err), "quota", "{}", err.message());
    session_for(&mut client, Some("key:cccc"), &small).await.unwrap();
    shutdown.cancel();
    server.wait().await.unwrap();
}

fn walk_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn uploads_stop_at_the_disks_floor_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let free = aiaa_runtime::store::free_bytes(dir.path()).unwrap();
    // A floor above what is free: every upload is refused before a byte is written.
    let url = format!("file://{}", dir.path().display());
    let full = DatastoreArgs {
        min_free_bytes: free + (1 << 30),
        ..args()
    };
    let (mut client, shutdown, server) = serve(&url, &full, None).await;
    let err = put(&mut client, ItemKind::Image, "a.nii", b"bytes")
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), reason(&err)),
        (Code::ResourceExhausted, "insufficient-storage")
    );
    assert!(
        err.message().contains("--min-free-bytes") && err.message().contains("nearly full"),
        "{}",
        err.message()
    );
    let err = session_for(&mut client, None, b"bytes").await.unwrap_err();
    assert_eq!(reason(&err), "insufficient-storage", "{}", err.message());
    shutdown.cancel();
    server.wait().await.unwrap();

    // A floor 128 MiB below what is free: a 1 MiB upload passes; a 512 MiB stream is
    // stopped once it has eaten the margin, and no staging file stays.
    let free = aiaa_runtime::store::free_bytes(dir.path()).unwrap();
    let near = DatastoreArgs {
        min_free_bytes: free.saturating_sub(128 << 20),
        ..args()
    };
    let (mut client, shutdown, server) = serve(&url, &near, None).await;
    put(&mut client, ItemKind::Image, "small.nii", &vec![1u8; 1 << 20])
        .await
        .unwrap();
    let header = PutHeader {
        kind: ItemKind::Image as i32,
        id: "huge.nii".into(),
        ..Default::default()
    };
    let chunk = bytes::Bytes::from(vec![2u8; aiaa_proto::CHUNK_SIZE]);
    let pieces = (512 << 20) / aiaa_proto::CHUNK_SIZE;
    let body = framed::send::<PutRequest>(header, futures::stream::repeat(chunk).take(pieces));
    let err = client.put(body).await.unwrap_err();
    assert_eq!(reason(&err), "insufficient-storage", "{}", err.message());
    let left: Vec<_> = walk_files(dir.path())
        .into_iter()
        .filter(|p| p.contains("huge"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    shutdown.cancel();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn a_crashed_uploads_staging_file_is_swept_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    // What kill -9 during an upload leaves: the object's staging file, unlisted.
    let staged = dir.path().join("sessions/6f1c/image#1");
    std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&staged).unwrap();
    f.set_len(30 << 20).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(2 * 3600))
        .unwrap();
    let fresh = dir.path().join("images/b.nii#1");
    std::fs::create_dir_all(fresh.parent().unwrap()).unwrap();
    std::fs::write(&fresh, b"an upload in flight").unwrap();
    let url = format!("file://{}", dir.path().display());
    let (_client, shutdown, server) = serve(&url, &args(), None).await;
    assert!(!staged.exists(), "the stale staging file stays");
    assert!(fresh.exists(), "a recent staging file was swept");
    shutdown.cancel();
    server.wait().await.unwrap();
}
