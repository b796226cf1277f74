//! The authentication matrix, built from the contracts themselves so that a new RPC cannot
//! be left open: with `AIAA_API_KEY` set on `aiaa up`, every method of every `aiaa.*`
//! service in the reflection descriptor set is called on the service that serves it with no
//! key, a wrong key, a right key with another scheme case (RFC 7235), and the right key. The
//! first two must answer UNAUTHENTICATED before any handler runs; the others anything else.
//! Health and reflection stay anonymous (probes cannot send a key).

use std::time::Duration;

use aiaa_e2e::Platform;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;

const KEY: &str = "matrix-key";

/// `/pkg.Service/Method` for every method of every `aiaa.*` service, with its service's
/// short name (`registry`, ...).
fn every_rpc() -> Vec<(String, String)> {
    let set = prost_types::FileDescriptorSet::decode(aiaa_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = Vec::new();
    for file in set.file {
        let package = file.package().to_string();
        if !package.starts_with("aiaa.") || package.starts_with("aiaa.common") {
            continue;
        }
        // aiaa.<service>.v1
        let short = package.split('.').nth(1).unwrap().to_string();
        for service in &file.service {
            for method in &service.method {
                rpcs.push((
                    short.clone(),
                    format!("/{package}.{}/{}", service.name(), method.name()),
                ));
            }
        }
    }
    rpcs
}

/// Calls `path` with one empty message (valid for any request type: every field at its
/// default), as a stream, so one call shape fits unary and streaming methods alike, and
/// returns the status code (OK when a message or a clean end came back).
async fn call(channel: Channel, path: &str, authorization: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(futures::stream::iter([()]));
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let path: http::uri::PathAndQuery = path.parse().unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(20), async {
        match grpc.streaming(request, path, codec).await {
            Err(status) => status.code(),
            Ok(response) => match response.into_inner().message().await {
                Ok(_) => Code::Ok,
                Err(status) => status.code(),
            },
        }
    })
    .await;
    answer.unwrap_or(Code::DeadlineExceeded)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_no_rpc_answers_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::start(
        &["up", "--store-url", dir.path().to_str().unwrap()],
        &[("AIAA_API_KEY", KEY)],
    )
    .await;
    let rpcs = every_rpc();
    assert!(rpcs.len() >= 30, "the descriptor set lists {} RPCs", rpcs.len());
    let mut checked = 0;
    for (service, path) in &rpcs {
        let channel = Channel::from_shared(platform.url(service))
            .unwrap()
            .connect()
            .await
            .unwrap();
        for (authorization, allowed) in [
            (None, false),
            (Some("Bearer wrong-key".to_string()), false),
            (Some(format!("Basic {KEY}")), false),
            (Some(format!("bearer {KEY}")), true),
            (Some(format!("Bearer {KEY}")), true),
        ] {
            let t0 = std::time::Instant::now();
            let code = call(channel.clone(), path, authorization.as_deref()).await;
            if t0.elapsed() > Duration::from_secs(2) {
                println!("{path} took {:?} ({code:?})", t0.elapsed());
            }
            if allowed {
                assert_ne!(
                    code,
                    Code::Unauthenticated,
                    "{path} refused the right key ({authorization:?})"
                );
            } else {
                assert_eq!(
                    code,
                    Code::Unauthenticated,
                    "{path} answered {code:?} to {authorization:?}"
                );
            }
            checked += 1;
        }
    }
    // Health stays anonymous on every gRPC service.
    for service in ["registry", "datastore", "inference", "trainer"] {
        let channel = Channel::from_shared(platform.url(service))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("{service} health without a key: {e}"))
            .into_inner();
        assert_eq!(
            status.status(),
            tonic_health::pb::health_check_response::ServingStatus::Serving
        );
    }
    println!("{checked} calls over {} RPCs", rpcs.len());
}
