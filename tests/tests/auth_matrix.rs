//! The authentication matrix, built from the contracts themselves so that a new RPC cannot
//! be left open: with `AIAA_API_KEY` set on `aiaa up`, every method of every `aiaa.*`
//! service in the reflection descriptor set is called on the service that serves it with no
//! key, a wrong key, a right key with another scheme case (RFC 7235), and the right key. The
//! first two must answer UNAUTHENTICATED before any handler runs; the others anything else.
//! Health and reflection stay anonymous (probes cannot send a key).
//!
//! The REST gateway likewise: every route of `aiaa_gateway::app::ROUTES` (the list the
//! router is built from) with no key, a wrong key, a `Basic` scheme, a lower-case `bearer`
//! and the right key; `/livez`, `/readyz` and `/metrics` answer without a key, every other
//! route 401 (`WWW-Authenticate: Bearer realm="aiaa"`, JSON error) without the right key.
//! The anonymous opt-in for NVIDIA's AIAA clients (`--gateway-anonymous-from`) lets an
//! AIAA-shaped upload and `/v1/models` through without credentials from a trusted network
//! only, never with a wrong key and never to the admin API.

use std::time::Duration;

use aiaa_e2e::aiaa_client::{Answer, python_body, python_request, send, simple};
use aiaa_e2e::{Platform, aiaa_bin, testdata};
use aiaa_gateway::app::ROUTES;
use aiaa_gateway::auth::Access;
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

/// `request` with an `Authorization` header added after its request line.
fn with_authorization(mut request: Vec<u8>, value: Option<&str>) -> Vec<u8> {
    if let Some(value) = value {
        let at = request.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        request.splice(at..at, format!("Authorization: {value}\r\n").into_bytes());
    }
    request
}

/// Asserts a 401 in the gateway's JSON error shape; returns its message.
fn refused(answer: &Answer, what: &str) -> String {
    assert_eq!(
        answer.status,
        401,
        "{what}: {}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer realm=\"aiaa\""),
        "{what}: {:?}",
        answer.headers
    );
    let body = answer.json();
    assert_eq!(body["success"], serde_json::json!(false), "{what}: {body}");
    assert_eq!(body["error"]["type"], "unauthorized", "{what}: {body}");
    body["error"]["message"][0].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_no_rest_route_answers_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::start(
        &[
            "up",
            "--store-url",
            dir.path().to_str().unwrap(),
            "--api-key",
            KEY,
        ],
        &[],
    )
    .await;
    let gw = platform.addrs["gateway"];
    assert!(ROUTES.len() >= 16, "{} routes", ROUTES.len());
    let mut checked = 0;
    for route in ROUTES {
        let path = route
            .path
            .replace("{id}", "no-such-session")
            .replace("{name}", "no-such-model");
        let request = format!(
            "{} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n",
            route.method
        )
        .into_bytes();
        for (authorization, allowed, says) in [
            (
                None,
                false,
                "needs an API key: send `Authorization: Bearer <key>`",
            ),
            (
                Some("Bearer wrong-key".to_string()),
                false,
                "the key given is wrong",
            ),
            (Some(format!("Basic {KEY}")), false, "not a Bearer token"),
            (Some(format!("bearer {KEY}")), true, ""),
            (Some(format!("Bearer {KEY}")), true, ""),
        ] {
            let what = format!("{} {path} with {authorization:?}", route.method);
            let answer = send(gw, &with_authorization(request.clone(), authorization.as_deref())).await;
            if allowed || route.access == Access::Open {
                assert_ne!(
                    answer.status,
                    401,
                    "{what}: {}",
                    String::from_utf8_lossy(&answer.body)
                );
            } else {
                if route.method == "HEAD" {
                    // A HEAD answer has no body: the status and the challenge are all it says.
                    assert_eq!(answer.status, 401, "{what}");
                    assert_eq!(
                        answer.header("www-authenticate"),
                        Some("Bearer realm=\"aiaa\""),
                        "{what}"
                    );
                    checked += 1;
                    continue;
                }
                let message = refused(&answer, &what);
                assert!(message.contains(says), "{what}: {message}");
                assert!(message.contains(route.path), "{what}: {message}");
            }
            checked += 1;
        }
    }
    // Unknown routes keep their 404.
    assert_eq!(send(gw, &simple("GET", "/v2/nothing")).await.status, 404);
    println!("{checked} REST calls over {} routes", ROUTES.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_annotation_only_from_trusted_networks() {
    let image = std::fs::read(testdata().join("mni152/MNI152_T1.nii.gz")).unwrap();
    // NVIDIA's Python client: PUT /session/ with a multipart upload, no credentials.
    let upload = python_request(
        "PUT",
        "/session/",
        &python_body(&[], &[("image", "MNI152_T1.nii.gz", &image)]),
    );

    let dir = tempfile::tempdir().unwrap();
    let trusted = Platform::start(
        &[
            "up",
            "--store-url",
            dir.path().to_str().unwrap(),
            "--api-key",
            KEY,
            "--gateway-anonymous-from",
            "127.0.0.1/32",
        ],
        &[],
    )
    .await;
    let gw = trusted.addrs["gateway"];
    let created = send(gw, &upload).await;
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    let session = send(gw, &simple("GET", &format!("/session/{id}"))).await;
    assert_eq!(session.status, 200, "{}", String::from_utf8_lossy(&session.body));
    let models = send(gw, &simple("GET", "/v1/models")).await;
    assert_eq!(models.status, 200, "{}", String::from_utf8_lossy(&models.body));
    assert!(models.json().is_array());
    // A wrong key is refused from a trusted network too.
    let message = refused(
        &send(gw, &with_authorization(upload.clone(), Some("Bearer wrong-key"))).await,
        "wrong key from a trusted network",
    );
    assert!(message.contains("the key given is wrong"), "{message}");
    // The admin API always needs the key.
    for method in ["GET", "PUT", "DELETE"] {
        let request =
            format!("{method} /admin/model/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n")
                .into_bytes();
        let message = refused(&send(gw, &request).await, &format!("{method} /admin/model/x"));
        assert!(message.contains("also from a network trusted"), "{message}");
        let keyed = send(gw, &with_authorization(request, Some(&format!("Bearer {KEY}")))).await;
        assert_ne!(keyed.status, 401, "{method} /admin/model/x with the key");
    }
    drop(trusted);

    // A network the peer is not in (set through the environment): the same requests are 401.
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = Platform::start(
        &[
            "up",
            "--store-url",
            dir.path().to_str().unwrap(),
            "--api-key",
            KEY,
        ],
        &[("AIAA_GATEWAY_ANONYMOUS_FROM", "10.0.0.0/8")],
    )
    .await;
    let gw = elsewhere.addrs["gateway"];
    refused(&send(gw, &upload).await, "PUT /session/ from outside 10.0.0.0/8");
    refused(
        &send(gw, &simple("GET", "/v1/models")).await,
        "GET /v1/models from outside 10.0.0.0/8",
    );
    let keyed = send(gw, &with_authorization(upload, Some(&format!("Bearer {KEY}")))).await;
    assert_eq!(keyed.status, 200, "{}", String::from_utf8_lossy(&keyed.body));
}

#[test]
fn aiaa_up_shows_the_anonymous_flag_and_refuses_a_bad_network() {
    let help = std::process::Command::new(aiaa_bin())
        .args(["up", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--gateway-anonymous-from <CIDR[,CIDR...]>")
            && help.contains("AIAA_GATEWAY_ANONYMOUS_FROM"),
        "{help}"
    );
    let mut up = std::process::Command::new(aiaa_bin())
        .args(["up", "--gateway-anonymous-from", "127.0.0.1/32,10.0.0/8"])
        .env("AIAA_REGISTRY_LISTEN", "127.0.0.1:0")
        .env("AIAA_DATASTORE_LISTEN", "127.0.0.1:0")
        .env("AIAA_GATEWAY_LISTEN", "127.0.0.1:0")
        .env("AIAA_INFERENCE_LISTEN", "127.0.0.1:0")
        .env("AIAA_TRAINER_LISTEN", "127.0.0.1:0")
        .env("AIAA_STORE_URL", "memory://bad-cidr")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = up.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = up.kill();
            panic!("aiaa up started with a bad network");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut up.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(
        stderr.contains("--gateway-anonymous-from") && stderr.contains("10.0.0/8"),
        "{stderr}"
    );
}
