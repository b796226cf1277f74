//! Download throughput through the registry's gRPC stream against reading the same object
//! straight from the store, side by side in one run; prints both and their ratio (target ≥ 0.8).
//!
//! `cargo bench -p aiaa-registry --bench download_throughput [-- SIZE_MIB ROUNDS]`

use std::time::Instant;

use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_proto::registry::v1::{DownloadRequest, Manifest, ModelFile, ModelName};
use aiaa_registry::{Catalogue, RegistryArgs, layout};
use aiaa_runtime::config::{AuthArgs, GrpcArgs};
use futures::StreamExt;
use object_store::ObjectStoreExt;
use sha2::Digest;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let size_mib: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(256);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let dir = tempfile::tempdir()?;
    let store = aiaa_runtime::store::open(dir.path().to_str().expect("utf-8 temp dir"))?;

    // A pseudo-random payload (incompressible, like model weights).
    let mut data = vec![0u8; size_mib << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let sha = hex::encode(sha2::Sha256::digest(&data));
    let model = ModelName {
        org: "bench".into(),
        team: "default".into(),
        name: "weights".into(),
    };
    let manifest = Manifest {
        model: Some(model.clone()),
        version: "1".into(),
        files: vec![ModelFile {
            path: "model.pt".into(),
            size: data.len() as u64,
            sha256: sha.clone(),
        }],
        ..Default::default()
    };
    let catalogue = Catalogue::new(store.clone(), "bench");
    let mut push = catalogue.begin_push(&manifest, u64::MAX).await?;
    push.write(bytes::Bytes::from(data)).await?;
    push.finish().await?;

    let shutdown = tokio_util::sync::CancellationToken::new();
    let args = RegistryArgs {
        addr: "127.0.0.1:0".parse()?,
        max_model_bytes: u64::MAX,
    };
    let server = aiaa_registry::start(
        &args,
        store.clone(),
        "bench",
        &GrpcArgs::default(),
        &AuthArgs::default(),
        shutdown.clone(),
    )
    .await?;
    let channel = aiaa_runtime::client::connect(&format!("http://{}", server.addr), None).await?;
    let mut client = RegistryServiceClient::new(channel);

    let bytes = (size_mib << 20) as f64;
    let (mut direct, mut grpc) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let mut s = store.get(&layout::blob_path(&sha)).await?.into_stream();
        let mut n = 0usize;
        while let Some(piece) = s.next().await {
            n += piece?.len();
        }
        assert_eq!(n, size_mib << 20);
        direct.push(bytes / t.elapsed().as_secs_f64() / 1e6);

        let t = Instant::now();
        let mut s = client
            .download(DownloadRequest {
                model: Some(model.clone()),
                version: "1".into(),
                path: "model.pt".into(),
            })
            .await?
            .into_inner();
        let mut n = 0usize;
        while let Some(chunk) = s.next().await {
            n += chunk?.data.len();
        }
        assert_eq!(n, size_mib << 20);
        grpc.push(bytes / t.elapsed().as_secs_f64() / 1e6);
    }
    let (d, g) = (median(direct), median(grpc));
    println!("payload {size_mib} MiB, {rounds} rounds, medians:");
    println!("  straight from the store : {d:8.1} MB/s");
    println!("  registry gRPC Download  : {g:8.1} MB/s");
    println!("  ratio gRPC / store      : {:8.3} (target >= 0.8)", g / d);
    shutdown.cancel();
    server.wait().await?;
    Ok(())
}
