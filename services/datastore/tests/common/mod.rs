//! Test harness: a real datastore server on 127.0.0.1:0 over a `file://` temp dir or a
//! `memory://` store, and a generated client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use aiaa_datastore::DatastoreArgs;
use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::datastore::v1::{
    CreateSessionRequest, GetRequest, GetResponse, Item, ItemKind, PutHeader, PutRequest, Session,
    SessionHeader, SessionRef,
};
use aiaa_proto::framed;
use aiaa_runtime::client::AiaaChannel;
use aiaa_runtime::config::{AuthArgs, GrpcArgs, Secret};
use aiaa_runtime::server::RunningServer;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tonic::Status;

pub type Client = DatastoreServiceClient<AiaaChannel>;

pub struct Harness {
    pub client: Client,
    pub root: Option<PathBuf>,
    pub url: String,
    pub shutdown: CancellationToken,
    pub server: Option<RunningServer>,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.wait().await.unwrap();
        }
    }
}

pub fn args() -> DatastoreArgs {
    DatastoreArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

pub async fn serve(
    url: &str,
    args: &DatastoreArgs,
    key: Option<&str>,
) -> (Client, CancellationToken, RunningServer) {
    let store = aiaa_runtime::store::open(url).unwrap();
    let shutdown = CancellationToken::new();
    let auth = AuthArgs {
        api_key: key.map(Secret::new),
    };
    let grpc = GrpcArgs {
        drain_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let server = aiaa_datastore::start(args, store, &grpc, &auth, shutdown.clone())
        .await
        .unwrap();
    let channel = aiaa_runtime::client::connect(&server.addr.to_string(), key.map(Secret::new))
        .await
        .unwrap();
    (DatastoreServiceClient::new(channel), shutdown, server)
}

/// A server over a fresh `file://` temp dir.
pub async fn file_server(args: DatastoreArgs) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let (client, shutdown, server) = serve(&url, &args, None).await;
    Harness {
        client,
        root: Some(dir.path().to_path_buf()),
        url,
        shutdown,
        server: Some(server),
        _dir: Some(dir),
    }
}

/// A server over a fresh `memory://` store.
pub async fn memory_server(args: DatastoreArgs) -> Harness {
    let url = format!("memory://test-{}", uuid::Uuid::new_v4());
    let (client, shutdown, server) = serve(&url, &args, None).await;
    Harness {
        client,
        root: None,
        url,
        shutdown,
        server: Some(server),
        _dir: None,
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn put_messages(kind: ItemKind, id: &str, data: &[u8]) -> Vec<PutRequest> {
    let header = PutHeader {
        kind: kind as i32,
        id: id.to_string(),
        metadata: [("source".to_string(), "test".to_string())].into(),
        ..Default::default()
    };
    framed::messages::<PutRequest>(header, data.to_vec().into()).collect()
}

pub async fn put(client: &mut Client, kind: ItemKind, id: &str, data: &[u8]) -> Result<Item, Status> {
    client
        .put(futures::stream::iter(put_messages(kind, id, data)))
        .await
        .map(|r| r.into_inner())
}

pub async fn collect(stream: tonic::Streaming<GetResponse>) -> Result<(Item, Vec<u8>), Status> {
    let broken = |e: framed::FrameError| e.status().cloned().expect("the item first, then only chunks");
    let (item, mut body) = framed::receive::<GetResponse, _>(stream).await.map_err(broken)?;
    let mut data = Vec::new();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(broken)?;
        assert!(piece.len() <= aiaa_proto::CHUNK_SIZE);
        data.extend_from_slice(&piece);
    }
    Ok((item, data))
}

pub async fn get(client: &mut Client, kind: ItemKind, id: &str) -> Result<(Item, Vec<u8>), Status> {
    let stream = client
        .get(GetRequest {
            kind: kind as i32,
            id: id.to_string(),
        })
        .await?
        .into_inner();
    collect(stream).await
}

pub async fn stat(client: &mut Client, kind: ItemKind, id: &str) -> Result<Item, Status> {
    client
        .stat(GetRequest {
            kind: kind as i32,
            id: id.to_string(),
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn create_session(
    client: &mut Client,
    expiry: u64,
    filename: &str,
    data: &[u8],
) -> Result<Session, Status> {
    let header = SessionHeader {
        expiry_seconds: expiry,
        filename: filename.to_string(),
        ..Default::default()
    };
    let msgs: Vec<_> = framed::messages::<CreateSessionRequest>(header, data.to_vec().into()).collect();
    client
        .create_session(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

pub async fn get_session(client: &mut Client, id: &str) -> Result<Session, Status> {
    client
        .get_session(SessionRef { id: id.to_string() })
        .await
        .map(|r| r.into_inner())
}

/// Every file under `root`, relative, sorted.
pub fn files_under(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Waits until `check` holds (polling), or panics after `timeout`.
pub async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The MNI152 T1 volume (fetching the test data first if `testdata/` is missing).
pub fn mni152() -> Vec<u8> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = root.join("testdata/mni152/MNI152_T1.nii.gz");
    if !path.exists() {
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/fetch-test-data.sh"))
            .current_dir(&root)
            .status()
            .expect("run scripts/fetch-test-data.sh");
        assert!(status.success(), "scripts/fetch-test-data.sh failed");
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A TCP proxy in front of `target`; aborting the returned task cuts every connection through
/// it, as a client that dies midway would.
pub async fn proxy(target: std::net::SocketAddr) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                break;
            };
            conns.spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(target).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });
    (addr, task)
}

pub async fn delete_session(client: &mut Client, id: &str) -> Result<bool, Status> {
    client
        .delete_session(SessionRef { id: id.to_string() })
        .await
        .map(|r| r.into_inner().deleted)
}
