//! The platform as a whole: the start command brings every service to SERVING, each serves
//! health, reflection and `/metrics`, stops gracefully on SIGTERM; one CLI call is one trace
//! across two services; bad input gets the right code and a message naming the problem, and
//! the services stay healthy after a thousand such calls.

use std::time::{Duration, Instant};

use aiaa_e2e::otlp::OtlpReceiver;
use aiaa_e2e::{Platform, run_cli, wait_serving};
use aiaa_proto::common::v1::Chunk;
use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::datastore::v1::{GetRequest, ItemKind, PutHeader, PutRequest, SessionRef, put_request};
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_proto::registry::v1::{
    DeleteRequest, GetManifestRequest, ListVersionsRequest, Manifest, ModelFile, ModelName, PushHeader,
    PushRequest, push_request,
};
use aiaa_runtime::client::connect;
use aiaa_runtime::config::Secret;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_every_service_with_health_reflection_metrics_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Platform::start(&["up", "--store-url", dir.path().to_str().unwrap()], &[]).await;
    assert!(
        platform.addrs.contains_key("registry") && platform.addrs.contains_key("datastore"),
        "{:?}",
        platform.banner
    );
    for (service, name) in [
        (
            "registry",
            aiaa_proto::registry::v1::registry_service_server::SERVICE_NAME,
        ),
        (
            "datastore",
            aiaa_proto::datastore::v1::datastore_service_server::SERVICE_NAME,
        ),
        (
            "trainer",
            aiaa_proto::trainer::v1::trainer_service_server::SERVICE_NAME,
        ),
    ] {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let channel = connect(&platform.url(service), None).await.unwrap();
        let status = HealthClient::new(channel)
            .check(HealthCheckRequest { service: name.into() })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, 1, "{name} is not SERVING");
        // Prometheus text over plain HTTP/1.1 on the same port.
        let metrics = http_get(platform.addrs[service], "/metrics").await;
        assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
        assert!(metrics.contains("aiaa_rpc_calls_total"), "{metrics}");
    }
    // The AIAA REST gateway answers the viewers' first call, with an exact Content-Length.
    let livez = http_get(platform.addrs["gateway"], "/livez").await;
    assert!(livez.starts_with("HTTP/1.1 200"), "{livez}");
    let session = http_get(platform.addrs["gateway"], "/session/unknown").await;
    assert!(session.starts_with("HTTP/1.1 440"), "{session}");
    assert!(
        session.contains("content-length") || session.contains("Content-Length"),
        "{session}"
    );
    // Every data folder is under the one store root.
    assert!(dir.path().join("registry").is_dir() && dir.path().join("datastore").is_dir());
    // It restarted itself (same process id) with libtorch's OpenMP workers set to spin
    // briefly, unless this environment already says how they wait.
    let environ = std::fs::read(format!("/proc/{}/environ", platform.pid())).unwrap();
    let environ: Vec<String> = environ
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect();
    let spin = environ.iter().find(|v| v.starts_with("GOMP_SPINCOUNT="));
    match std::env::var("GOMP_SPINCOUNT") {
        Ok(own) => assert_eq!(spin, Some(&format!("GOMP_SPINCOUNT={own}"))),
        Err(_) if std::env::var_os("OMP_WAIT_POLICY").is_some() => assert_eq!(spin, None),
        Err(_) => assert_eq!(
            spin.map(String::as_str),
            Some("GOMP_SPINCOUNT=30000"),
            "{environ:?}"
        ),
    }
    let status = platform.stop().expect("aiaa stops on SIGTERM");
    assert!(status.success(), "graceful stop exits 0, got {status:?}");
}

/// A minimal HTTP/1.1 GET, to see exactly what a Prometheus scraper sees.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cli_call_is_one_trace_across_two_services() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = format!("http://{}", receiver.addr);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().to_str().unwrap();
    let env = [
        ("AIAA_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    // Two separate processes, as in a cluster.
    let registry = Platform::start(&["serve", "registry", "--store-url", store], &env).await;
    let datastore = Platform::start(&["serve", "datastore", "--store-url", store], &env).await;
    let (st, out, err) = run_cli(
        &[
            "status",
            "--registry",
            &registry.url("registry"),
            "--datastore",
            &datastore.url("datastore"),
        ],
        &env,
    );
    assert!(st.success(), "{out}\n{err}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = receiver.spans();
        let cli_traces: Vec<String> = spans
            .iter()
            .filter(|s| s.service == "aiaa-cli")
            .map(|s| s.trace_id.clone())
            .collect();
        let shared = cli_traces.iter().find(|t| {
            let services: std::collections::HashSet<&str> = spans
                .iter()
                .filter(|s| &&s.trace_id == t)
                .map(|s| s.service.as_str())
                .collect();
            services.contains("aiaa-registry") && services.contains("aiaa-datastore")
        });
        if shared.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no trace with spans from the CLI, the registry and the datastore; received: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn model(org: &str, team: &str, name: &str) -> Option<ModelName> {
    Some(ModelName {
        org: org.into(),
        team: team.into(),
        name: name.into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_the_services_stay_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::start(
        &["up", "--store-url", dir.path().to_str().unwrap()],
        &[("AIAA_API_KEY", "sesame"), ("AIAA_MAX_MESSAGE_BYTES", "2097152")],
    )
    .await;
    let reg_url = platform.url("registry");
    let ds_url = platform.url("datastore");
    let mut reg = RegistryServiceClient::new(connect(&reg_url, Some(Secret::new("sesame"))).await.unwrap())
        .max_encoding_message_size(64 << 20);
    let mut reg_wrong =
        RegistryServiceClient::new(connect(&reg_url, Some(Secret::new("wrong"))).await.unwrap());
    let mut reg_anon = RegistryServiceClient::new(connect(&reg_url, None).await.unwrap());
    let mut ds = DatastoreServiceClient::new(connect(&ds_url, Some(Secret::new("sesame"))).await.unwrap())
        .max_encoding_message_size(64 << 20);

    let long = "x".repeat(300);
    let bad_names = ["../x", "a/../../b", long.as_str(), ""];
    let mut calls = 0;
    while calls < 1000 {
        for bad in bad_names {
            let e = reg
                .get_manifest(GetManifestRequest {
                    model: model("aiaa", "default", bad),
                    version: "1".into(),
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
            assert!(e.message().contains("model name"), "{e:?}");
            let e = reg
                .get_manifest(GetManifestRequest {
                    model: model("aiaa", "default", "m"),
                    version: bad.into(),
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
            assert!(e.message().contains("version"), "{e:?}");
            let e = ds
                .stat(GetRequest {
                    kind: ItemKind::Image as i32,
                    id: bad.into(),
                })
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e:?}");
            calls += 3;
        }
        let e = reg
            .list_versions(ListVersionsRequest {
                model: model("aiaa", "default", "nothing-here"),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert!(e.message().contains("aiaa/default/nothing-here"), "{e:?}");
        let e = ds
            .get_session(SessionRef {
                id: "no-such-session".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        let e = reg_wrong
            .delete(DeleteRequest {
                model: model("aiaa", "default", "m"),
                version: "1".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        assert!(
            e.message().contains("Delete") && e.message().contains("wrong"),
            "{e:?}"
        );
        let e = reg_anon
            .delete(DeleteRequest {
                model: model("aiaa", "default", "m"),
                version: "1".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated);
        calls += 4;
    }

    // Oversized messages: a 3 MiB chunk against a 2 MiB limit.
    let big = vec![7u8; 3 << 20];
    let manifest = Manifest {
        model: model("aiaa", "default", "big"),
        version: "1".into(),
        files: vec![ModelFile {
            path: "f".into(),
            size: big.len() as u64,
            sha256: "0".repeat(64),
        }],
        ..Default::default()
    };
    let msgs = vec![
        PushRequest {
            kind: Some(push_request::Kind::Header(PushHeader {
                manifest: Some(manifest),
            })),
        },
        PushRequest {
            kind: Some(push_request::Kind::Chunk(Chunk {
                data: big.clone().into(),
            })),
        },
    ];
    let e = reg.push(futures::stream::iter(msgs)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("limit"), "{e:?}");
    let msgs = vec![
        PutRequest {
            kind: Some(put_request::Kind::Header(PutHeader {
                kind: ItemKind::Image as i32,
                id: "big.nii".into(),
                ..Default::default()
            })),
        },
        PutRequest {
            kind: Some(put_request::Kind::Chunk(Chunk { data: big.into() })),
        },
    ];
    let e = ds.put(futures::stream::iter(msgs)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");

    // Still healthy, still answering real work.
    wait_serving(platform.addrs["registry"], "registry").await;
    wait_serving(platform.addrs["datastore"], "datastore").await;
    let (st, out, err) = run_cli(&["pull", "--registry", &reg_url, "-lm", "-k", "sesame"], &[]);
    assert!(st.success(), "{out}\n{err}");
    // With a key configured, listing needs it too.
    let (st, _, err) = run_cli(&["pull", "--registry", &reg_url, "-lm"], &[]);
    assert!(!st.success());
    assert!(err.contains("API key"), "{err}");
    // The CLI reports a wrong key clearly and fails.
    let model_pt = aiaa_e2e::testdata().join("deepbet/bbox_model.pt");
    let (st, _, err) = run_cli(
        &[
            "push",
            "--registry",
            &reg_url,
            "-k",
            "nope",
            "-m",
            "m",
            "-v",
            "1",
            model_pt.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!st.success());
    assert!(err.contains("API key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_download_in_flight() {
    use aiaa_proto::registry::v1::DownloadRequest;
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let mut platform = Platform::start(&["up", "--store-url", dir.path().to_str().unwrap()], &[]).await;
    let reg_url = platform.url("registry");
    let model_pt = aiaa_e2e::testdata().join("deepbet/model.pt");
    let (st, out, err) = run_cli(
        &[
            "push",
            "--registry",
            &reg_url,
            "-m",
            "drain",
            "-v",
            "1",
            model_pt.to_str().unwrap(),
        ],
        &[],
    );
    assert!(st.success(), "{out}\n{err}");
    let mut reg = RegistryServiceClient::new(connect(&reg_url, None).await.unwrap());
    let mut stream = reg
        .download(DownloadRequest {
            model: model("aiaa", "default", "drain"),
            version: "1".into(),
            path: "model.pt".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.next().await.unwrap().unwrap();
    // Ask the process to stop while the download is in flight, then read slowly.
    let stopper = std::thread::spawn(move || platform.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut received = first.data.len();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => panic!(
                "the in-flight call completes: {e:?}; the process: {:?}",
                stopper.join()
            ),
        };
        received += chunk.data.len();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(received as u64, std::fs::metadata(&model_pt).unwrap().len());
    let status = stopper.join().unwrap().expect("it exits after draining");
    assert!(status.success(), "{status:?}");
}

/// On SIGTERM `aiaa up` stops the gateway first and the services behind it after: a request
/// the gateway accepted before the signal, whose call to inference comes after it (its
/// upload was still arriving), is answered 200, not 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_gateway_finish_a_request_that_reaches_inference_after_the_signal() {
    use aiaa_e2e::aiaa_client::{python_body, python_request, read_answer};
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let pool = aiaa_e2e::repo_root().join("models/engine_pool.json");
    let image = std::fs::read(aiaa_e2e::testdata().join("robex/atlas.nii.gz")).unwrap();
    let store = dir.path().join("data");
    let mut platform = Platform::start(
        &[
            "up",
            "--engine-pool",
            pool.to_str().unwrap(),
            "--store-url",
            store.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    let gw = platform.addrs["gateway"];
    let body = python_body(&[("params", "{}")], &[("image", "atlas.nii.gz", &image)]);
    let request = python_request("POST", "/v1/segmentation?model=segmentation_mri_brain", &body);
    let (head, tail) = request.split_at(request.len() - 4096);
    let mut conn = tokio::net::TcpStream::connect(gw).await.unwrap();
    conn.write_all(head).await.unwrap();
    conn.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopper = std::thread::spawn(move || platform.stop());
    // Every service has seen the signal by now; the upload completes after it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    conn.write_all(tail).await.unwrap();
    let answer = read_answer(&mut conn).await;
    assert_eq!(
        answer.status,
        200,
        "{}; the process: {:?}",
        String::from_utf8_lossy(&answer.body),
        stopper.join()
    );
    let status = stopper.join().unwrap().expect("it exits after draining");
    assert!(status.success(), "{status:?}");
}

/// One segmentation through the gateway is one trace in which the inference call's stages
/// appear as spans (decode on the async side; pre, infer, post, encode on the blocking and
/// device threads the work moves to).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inference_request_is_one_trace_with_its_stages() {
    use aiaa_e2e::aiaa_client::{python_body, python_request, send};
    let receiver = OtlpReceiver::start().await;
    let endpoint = format!("http://{}", receiver.addr);
    let dir = tempfile::tempdir().unwrap();
    let pool = aiaa_e2e::repo_root().join("models/engine_pool.json");
    let image = std::fs::read(aiaa_e2e::testdata().join("robex/atlas.nii.gz")).unwrap();
    let store = dir.path().join("data");
    let platform = Platform::start(
        &["up", "--engine-pool", pool.to_str().unwrap()],
        &[
            ("AIAA_STORE_URL", store.to_str().unwrap()),
            ("AIAA_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .await;
    let body = python_body(&[("params", "{}")], &[("image", "atlas.nii.gz", &image)]);
    let request = python_request("POST", "/v1/segmentation?model=segmentation_mri_brain", &body);
    let answer = send(platform.addrs["gateway"], &request).await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let wanted = ["decode", "pre", "infer", "post", "encode"];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let spans = receiver.spans();
        let traced = spans
            .iter()
            .filter(|s| s.name == "/aiaa.inference.v1.InferenceService/Infer")
            .any(|call| {
                wanted.iter().all(|stage| {
                    spans
                        .iter()
                        .any(|s| s.trace_id == call.trace_id && s.name == *stage)
                })
            });
        if traced {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Infer trace holding the spans {wanted:?}; received: {:#?}",
            spans
                .iter()
                .filter(|s| s.name.starts_with('/') || wanted.contains(&s.name.as_str()))
                .map(|s| (s.service.as_str(), s.name.as_str(), s.trace_id.as_str()))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
