//! Who the backends see: the gateway forwards the REST caller's own credentials (or its own
//! key for a trusted anonymous caller) and names the caller in `x-aiaa-client` on every
//! backend call. Checked two ways, without mocks: a small real gRPC server over TCP (HTTP/2)
//! that records the metadata of each call and answers a chosen status, and the real
//! datastore, whose per-client session quota counts by that identity (the gateway's 429).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aiaa_gateway::GatewayArgs;
use aiaa_runtime::config::{AuthArgs, GrpcArgs, Secret};
use axum::extract::{Request, State};
use axum::response::Response;
use common::*;
use http::HeaderMap;
use sha2::Digest;
use tokio_util::sync::CancellationToken;

const KEY: &str = "identity-key";

/// A status code and its `aiaa-reason`, if any.
type Reply = (tonic::Code, Option<&'static str>);

/// A gRPC endpoint that records each call's headers and answers `answer` (trailers only).
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    answer: Arc<Mutex<Option<Reply>>>,
}

impl Recorder {
    async fn start(shutdown: CancellationToken) -> (Recorder, SocketAddr) {
        let recorder = Recorder::default();
        let app = axum::Router::new().fallback(record).with_state(recorder.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
                .unwrap();
        });
        (recorder, addr)
    }

    fn answer(&self, code: tonic::Code, reason: Option<&'static str>) {
        *self.answer.lock().unwrap() = Some((code, reason));
    }

    /// The last call's path and metadata.
    fn last(&self) -> (String, HeaderMap) {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no backend call arrived")
    }
}

async fn record(State(recorder): State<Recorder>, req: Request) -> Response {
    recorder
        .seen
        .lock()
        .unwrap()
        .push((req.uri().path().to_string(), req.headers().clone()));
    let (code, reason) = recorder
        .answer
        .lock()
        .unwrap()
        .unwrap_or((tonic::Code::NotFound, None));
    let mut status = tonic::Status::new(code, "recorded");
    if let Some(reason) = reason {
        status
            .metadata_mut()
            .insert("aiaa-reason", reason.parse().unwrap());
    }
    status.into_http()
}

async fn gateway(
    datastore: SocketAddr,
    key: Option<&str>,
    anonymous_from: &str,
    shutdown: CancellationToken,
) -> SocketAddr {
    let args = GatewayArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        datastore_url: datastore.to_string(),
        anonymous_from: aiaa_gateway::auth::parse_networks(anonymous_from).unwrap(),
        ..Default::default()
    };
    let auth = AuthArgs {
        api_key: key.map(Secret::new),
    };
    aiaa_gateway::start(&args, &Default::default(), &auth, shutdown)
        .await
        .unwrap()
        .0
}

fn with_authorization(mut request: Vec<u8>, value: &str) -> Vec<u8> {
    let at = request.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    request.splice(at..at, format!("Authorization: {value}\r\n").into_bytes());
    request
}

fn key_identity(key: &str) -> String {
    format!("key:{}", &hex::encode(sha2::Sha256::digest(key.as_bytes()))[..12])
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn backend_calls_carry_the_callers_credentials_and_identity() {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let (recorder, backend) = Recorder::start(shutdown.clone()).await;
    let gw = gateway(backend, Some(KEY), "127.0.0.1/32", shutdown.clone()).await;

    // A keyed caller: its own authorization value (lower-case scheme and all) is forwarded.
    let answer = send(
        gw,
        &with_authorization(simple("GET", "/session/s1"), &format!("bearer {KEY}")),
    )
    .await;
    answer.error(440);
    let (path, seen) = recorder.last();
    assert_eq!(path, "/aiaa.datastore.v1.DatastoreService/GetSession");
    assert_eq!(
        header(&seen, "authorization"),
        Some(format!("bearer {KEY}").as_str())
    );
    assert_eq!(header(&seen, "x-aiaa-client"), Some(key_identity(KEY).as_str()));

    // A trusted anonymous caller: the gateway's own key, named by the peer address; on a
    // streamed upload too (the NVIDIA client's PUT /session/).
    let image = std::fs::read(testdata("mni152/MNI152_T1.nii.gz")).unwrap();
    let body = python_body(&[], &[("image", "MNI152_T1.nii.gz", &image)]);
    let answer = send(gw, &python_request("PUT", "/session/", &body)).await;
    answer.error(440);
    let (path, seen) = recorder.last();
    assert_eq!(path, "/aiaa.datastore.v1.DatastoreService/CreateSession");
    assert_eq!(
        header(&seen, "authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(header(&seen, "x-aiaa-client"), Some("anonymous:127.0.0.1"));

    // Refused at the edge: no backend call at all.
    let calls = recorder.seen.lock().unwrap().len();
    send(
        gw,
        &with_authorization(simple("GET", "/session/s1"), "Bearer wrong"),
    )
    .await
    .error(401);
    assert_eq!(recorder.seen.lock().unwrap().len(), calls);

    // The datastore's reasons for RESOURCE_EXHAUSTED: 429 (no Retry-After) and 507.
    recorder.answer(tonic::Code::ResourceExhausted, Some("quota"));
    let answer = send(gw, &simple("DELETE", "/session/s1")).await;
    let msg = answer.error(429);
    assert!(answer.header("retry-after").is_none(), "{:?}", answer.headers);
    assert!(msg.contains("recorded"), "{msg}");
    recorder.answer(tonic::Code::ResourceExhausted, Some("insufficient-storage"));
    send(gw, &simple("DELETE", "/session/s1")).await.error(507);

    // Without a key configured: nothing forwarded, the caller named `open:<ip>`.
    recorder.answer(tonic::Code::NotFound, None);
    let open = gateway(backend, None, "", shutdown.clone()).await;
    send(open, &simple("GET", "/session/s2")).await.error(440);
    let (_, seen) = recorder.last();
    assert_eq!(header(&seen, "authorization"), None);
    assert_eq!(header(&seen, "x-aiaa-client"), Some("open:127.0.0.1"));
}

#[tokio::test]
async fn the_datastore_counts_sessions_per_caller_identity() {
    let dir = tempfile::tempdir().unwrap();
    let store = aiaa_runtime::store::open(&format!("file://{}", dir.path().display())).unwrap();
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let ds_args = aiaa_datastore::DatastoreArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_sessions_per_client: 1,
        ..Default::default()
    };
    let grpc = GrpcArgs {
        drain_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let auth = AuthArgs {
        api_key: Some(Secret::new(KEY)),
    };
    let ds = aiaa_datastore::start(&ds_args, store, &grpc, &auth, shutdown.clone())
        .await
        .unwrap();
    let gw = gateway(ds.addr, Some(KEY), "127.0.0.0/8", shutdown.clone()).await;
    let image = std::fs::read(testdata("mni152/MNI152_T1.nii.gz")).unwrap();
    let body = python_body(&[], &[("image", "MNI152_T1.nii.gz", &image)]);
    let upload = python_request("PUT", "/session/", &body);

    // The anonymous client (anonymous:127.0.0.1) may hold one session.
    let first = send(gw, &upload).await;
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    let msg = send(gw, &upload).await.error(429);
    assert!(msg.contains("\"anonymous:127.0.0.1\""), "{msg}");
    // A caller with the key is another client, with its own quota.
    let keyed = send(gw, &with_authorization(upload.clone(), &format!("Bearer {KEY}"))).await;
    assert_eq!(keyed.status, 200, "{}", String::from_utf8_lossy(&keyed.body));
    let msg = send(gw, &with_authorization(upload, &format!("Bearer {KEY}")))
        .await
        .error(429);
    assert!(msg.contains(&key_identity(KEY)), "{msg}");
    // Deleting its session gives the anonymous client room again.
    let id = first.json()["session_id"].as_str().unwrap().to_string();
    assert_eq!(
        send(gw, &simple("DELETE", &format!("/session/{id}")))
            .await
            .status,
        200
    );
    let again = send(gw, &python_request("PUT", "/session/", &body)).await;
    assert_eq!(again.status, 200, "{}", String::from_utf8_lossy(&again.body));
}
