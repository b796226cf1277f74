//! Streams a large synthetic image into the datastore and back out over gRPC, and prints the
//! process's peak resident memory, to show that memory stays bounded while streaming.
//!
//! ```text
//! cargo run -p aiaa-datastore --example rss_stream [SIZE_MIB (default 1024)] [STORE_URL]
//! ```
//!
//! How it is measured: the server (on 127.0.0.1:0, over a `file://` temp dir unless a store
//! URL is given) and the client run in this one process, and the peak is the kernel's
//! high-water mark `VmHWM` from `/proc/self/status`, so the number printed is an upper bound
//! for the server alone. The payload is generated chunk by chunk and never held whole; both
//! sides' SHA-256 must agree.

use std::time::Instant;

use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::datastore::v1::{GetRequest, GetResponse, ItemKind, PutHeader, PutRequest};
use aiaa_proto::framed;
use aiaa_runtime::config::{AuthArgs, GrpcArgs};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One deterministic 1 MiB chunk (xorshift, so it does not compress or dedupe).
fn chunk(index: u64) -> Vec<u8> {
    let mut state = index.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(aiaa_proto::CHUNK_SIZE);
    while out.len() < aiaa_proto::CHUNK_SIZE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut argv = std::env::args().skip(1);
    let mib: u64 = argv.next().map(|s| s.parse()).transpose()?.unwrap_or(1024);
    let dir = tempfile::tempdir()?;
    let url = argv
        .next()
        .unwrap_or_else(|| format!("file://{}", dir.path().display()));
    let baseline = status_kib("VmHWM:");

    let shutdown = CancellationToken::new();
    let args = aiaa_datastore::DatastoreArgs {
        listen: "127.0.0.1:0".parse()?,
        ..Default::default()
    };
    let store = aiaa_runtime::store::open(&url)?;
    let server = aiaa_datastore::start(
        &args,
        store,
        &GrpcArgs::default(),
        &AuthArgs::default(),
        shutdown.clone(),
    )
    .await?;
    let channel = aiaa_runtime::client::connect(&server.addr.to_string(), None).await?;
    let mut client = DatastoreServiceClient::new(channel);

    let started = Instant::now();
    let header = PutHeader {
        kind: ItemKind::Image as i32,
        id: "rss/synthetic.nii".into(),
        metadata: Default::default(),
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let body = futures::stream::unfold(
        (0u64, Sha256::new(), Some(tx)),
        move |(i, mut hasher, tx)| async move {
            if i == mib {
                if let Some(tx) = tx {
                    let _ = tx.send(hex::encode(hasher.finalize()));
                }
                return None;
            }
            let data = chunk(i);
            hasher.update(&data);
            Some((Bytes::from(data), (i + 1, hasher, tx)))
        },
    );
    let item = client
        .put(framed::send::<PutRequest>(header, body))
        .await?
        .into_inner();
    let sent_sha = rx.await?;
    let put_secs = started.elapsed().as_secs_f64();
    assert_eq!(item.size, mib << 20);
    assert_eq!(
        item.sha256, sent_sha,
        "the server's SHA-256 differs from the client's"
    );
    let after_put = status_kib("VmHWM:");

    let started = Instant::now();
    let stream = client
        .get(GetRequest {
            kind: ItemKind::Image as i32,
            id: item.id.clone(),
        })
        .await?
        .into_inner();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let (_, mut body) = framed::receive::<GetResponse, _>(stream).await?;
    while let Some(piece) = body.next().await {
        let piece = piece?;
        size += piece.len() as u64;
        hasher.update(&piece);
    }
    let get_secs = started.elapsed().as_secs_f64();
    assert_eq!(size, item.size);
    assert_eq!(
        hex::encode(hasher.finalize()),
        item.sha256,
        "the bytes read back differ"
    );
    let peak = status_kib("VmHWM:");

    println!(
        "streamed {mib} MiB in ({put_secs:.1} s) and out ({get_secs:.1} s) through gRPC; SHA-256 {}",
        item.sha256
    );
    println!(
        "peak RSS (VmHWM, server + client in one process): at start {} MB, after put {} MB, after get {} MB",
        baseline / 1024,
        after_put / 1024,
        peak / 1024
    );
    shutdown.cancel();
    server.wait().await?;
    Ok(())
}
