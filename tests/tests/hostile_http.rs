//! Hostile HTTP against the whole platform (`aiaa up`: registry, datastore, inference with the
//! real models of `models/engine_pool.json`, gateway in one process, in a 2 GiB memory
//! cgroup made by the test: [`aiaa_e2e::hostile::Confined`]), as the issue found it:
//!
//! - coordinates at ±1e300 / NaN on every endpoint that takes points or polygons (a vertex at
//!   1e300 froze every service of the process), a 99 MB `params` (also on MONAI Label's
//!   `/infer`, and as the JSON body of `/train`, `/scoring` and `/activelearning`), a session
//!   form of 9000 `files` parts, a mask of isolated dots,
//!   two 2 GiB chunked bodies, 200 slowloris connections, slow headers and slow bodies: each
//!   gets its 4xx (or its close) within its time, while `/livez` and the gRPC health of the
//!   registry and the datastore, probed all along on fresh connections, answer within 1 s;
//!   the process's memory stays within 200 MB of where it was before them (the clicks'
//!   working memory is the inference service's, bounded separately);
//! - positive controls meanwhile: four concurrent dextr3d clicks on a session, and a 1 GB
//!   upload (streamed: the process holds none of it);
//! - at a low file-descriptor limit, a flood of connections on the gateway and on a gRPC port
//!   leaves every other service answering (it stopped every service before).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aiaa_e2e::aiaa_client::*;
use aiaa_e2e::hostile::Confined;
use aiaa_e2e::{Platform, aiaa_bin, repo_root, testdata};
use aiaa_imaging::{Geometry, Volume, Voxels};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `program` running `aiaa up` with the real models (see the fd-limit test), on free ports.
async fn up(program: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pool = repo_root().join("models/engine_pool.json");
    testdata();
    let store = dir.path().join("data");
    let mut full: Vec<&str> = args.to_vec();
    full.extend(["up", "--engine-pool", pool.to_str().unwrap()]);
    let mut env: Vec<(&str, &str)> = env.to_vec();
    env.push(("AIAA_STORE_URL", store.to_str().unwrap()));
    let platform = Platform::start_program(program, &full, &env).await;
    (platform, dir)
}

/// The process's resident memory, in MiB.
fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// Whether a gRPC service answers health SERVING on a fresh connection within `limit`.
async fn grpc_serving(addr: SocketAddr, limit: Duration) -> Result<(), String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let check = async {
        let channel = aiaa_runtime::client::connect(&format!("http://{addr}"), None)
            .await
            .map_err(|e| e.to_string())?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map_err(|e| e.to_string())?;
        if answer.get_ref().status == ServingStatus::Serving as i32 {
            Ok(())
        } else {
            Err(format!("status {}", answer.get_ref().status))
        }
    };
    tokio::time::timeout(limit, check)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
}

/// Probes, every 100 ms on fresh connections, the gateway's `/livez` and the registry's and
/// the datastore's gRPC health, and samples the process's memory.
struct Watch {
    started: Instant,
    stop: Arc<AtomicBool>,
    /// The slowest `/livez` and the slowest gRPC health answer, in ms.
    worst_ms: Arc<[AtomicU64; 2]>,
    peak_mib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Result<u64, String>>,
}

impl Watch {
    fn start(platform: &Platform) -> Watch {
        let gw = platform.addrs["gateway"];
        let grpc = [platform.addrs["registry"], platform.addrs["datastore"]];
        let pid = platform.pid();
        let stop = Arc::new(AtomicBool::new(false));
        let worst_ms = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let peak_mib = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let (s, w, p) = (stop.clone(), worst_ms.clone(), peak_mib.clone());
        let task = tokio::spawn(async move {
            let mut rounds = 0;
            // A slow answer is logged when it happens, so a failure says which phase it was in.
            let note = |what: &str, t: Instant| {
                let ms = t.elapsed().as_millis() as u64;
                if ms >= 300 {
                    eprintln!(
                        "slow probe: {what} {ms} ms, {:?} into the watch",
                        started.elapsed()
                    );
                }
                ms
            };
            while !s.load(Ordering::Relaxed) {
                let t = Instant::now();
                let live =
                    tokio::time::timeout(Duration::from_secs(5), send(gw, &simple("GET", "/livez"))).await;
                match live {
                    Ok(a) if a.status == 200 => {}
                    Ok(a) => return Err(format!("/livez answered {}", a.status)),
                    Err(_) => return Err("/livez did not answer within 5 s".into()),
                }
                w[0].fetch_max(note("/livez", t), Ordering::Relaxed);
                for addr in grpc {
                    let t = Instant::now();
                    grpc_serving(addr, Duration::from_secs(5)).await?;
                    w[1].fetch_max(note("gRPC health", t), Ordering::Relaxed);
                }
                p.fetch_max(rss_mib(pid), Ordering::Relaxed);
                rounds += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(rounds)
        });
        Watch {
            started,
            stop,
            worst_ms,
            peak_mib,
            task,
        }
    }

    /// Logs the end of a phase, in the slow probes' time.
    fn mark(&self, phase: &str) {
        eprintln!("{:?} into the watch: {phase} done", self.started.elapsed());
    }

    fn peak(&self) -> u64 {
        self.peak_mib.load(Ordering::Relaxed)
    }

    /// The peak so far; counting starts again.
    fn reset_peak(&self) -> u64 {
        self.peak_mib.swap(0, Ordering::Relaxed)
    }

    /// Stops; asserts every probe answered within 1 s. Returns the slowest `/livez` and gRPC
    /// health answers (ms) and the memory peak (MiB).
    async fn finish(self) -> ([u64; 2], u64) {
        self.stop.store(true, Ordering::Relaxed);
        let rounds = self.task.await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        let worst = [0, 1].map(|i| self.worst_ms[i].load(Ordering::Relaxed));
        assert!(rounds > 0);
        assert!(
            worst[0] < 1000 && worst[1] < 1000,
            "health probes took {worst:?} ms"
        );
        (worst, self.peak_mib.load(Ordering::Relaxed))
    }
}

/// Sends `request` while reading the answer (a refusal may come before the body is sent).
async fn exchange(addr: SocketAddr, request: Vec<u8>) -> (u16, String) {
    let c = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&request).await;
        w
    });
    let answer = read_http(&mut r).await;
    writer.abort();
    answer
}

/// Reads one HTTP answer (headers, Content-Length bytes): status and body.
async fn read_http(r: &mut (impl AsyncReadExt + Unpin)) -> (u16, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = r.read(&mut byte).await.unwrap_or(0);
        assert_eq!(
            n,
            1,
            "closed inside the headers: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Streams a chunked multipart body of up to `total` bytes; returns the answer.
async fn chunked_upload(addr: SocketAddr, total: u64) -> (u16, String) {
    let c = TcpStream::connect(addr).await.unwrap();
    let (mut r, mut w) = c.into_split();
    let writer = tokio::spawn(async move {
        let head = format!(
            "PUT /session/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary={PY_LIMIT}\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        w.write_all(head.as_bytes()).await?;
        let part = format!(
            "--{PY_LIMIT}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.nii\"\r\n\r\n"
        );
        w.write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
            .await?;
        let piece = vec![0u8; 1 << 20];
        let mut sent = 0u64;
        while sent < total {
            w.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).await?;
            w.write_all(&piece).await?;
            w.write_all(b"\r\n").await?;
            sent += piece.len() as u64;
        }
        w.write_all(b"0\r\n\r\n").await
    });
    let answer = tokio::time::timeout(Duration::from_secs(120), read_http(&mut r))
        .await
        .expect("no answer to the chunked body within 120 s");
    writer.abort();
    answer
}

/// How long until the server closes `conn`.
async fn time_to_close(conn: &mut TcpStream, started: Instant, limit: Duration) -> Duration {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the connection was not closed within {limit:?}"))
}

fn png(w: usize, h: usize) -> Vec<u8> {
    let vol = Volume::scalar([w, h, 1], Geometry::default(), Voxels::U8(vec![100; w * h])).unwrap();
    aiaa_imaging::png::to_bytes(&vol).unwrap()
}

fn nifti(dims: [usize; 3], voxels: Vec<u8>) -> Vec<u8> {
    let vol = Volume::scalar(dims, Geometry::default(), Voxels::U8(voxels)).unwrap();
    aiaa_imaging::nifti::to_bytes(&vol, true).unwrap()
}

/// Six extreme points of the MNI head's brain, in its voxel grid.
const CLICKS: &str = "[[20,109,72],[160,109,72],[90,25,72],[90,190,72],[90,109,10],[90,109,150]]";

/// Endpoint, params with `value` at a coordinate, the field the refusal must name.
fn geometry_cases(value: &str, session: &str) -> Vec<(String, String, &'static str)> {
    let six = format!("[[20,109,72],[160,109,72],[90,25,72],[90,190,72],[90,109,10],[90,109,{value}]]");
    let square = |v: &str| format!("[[10,10],[30,10],[30,{v}],[10,30]]");
    let dextr = format!("/v1/dextr3d?model=annotation_mri_brain&session_id={session}");
    vec![
        (dextr.clone(), format!("{{\"points\": {six}}}"), "points[5][2]"),
        (
            "/v1/deepgrow?model=annotation_mri_brain".into(),
            format!("{{\"foreground\": [[1,{value},3]]}}"),
            "foreground[0][1]",
        ),
        (
            "/v1/fixpolygon".into(),
            format!(
                "{{\"poly\": [{}], \"vertex_offset\": [1,1], \"polygon_index\": 0, \"vertex_index\": 0, \"dimension\": 2}}",
                square(value)
            ),
            "params.poly",
        ),
        (
            "/v1/fixpolygon".into(),
            format!(
                "{{\"poly\": [{}], \"vertex_offset\": [{value},1], \"polygon_index\": 0, \"vertex_index\": 0, \"dimension\": 2}}",
                square("30")
            ),
            "params.vertex_offset",
        ),
        (
            "/v1/fixpolygon".into(),
            format!(
                "{{\"poly\": [[{}]], \"vertex_offset\": [1,1], \"polygon_index\": 0, \"vertex_index\": 0, \"slice_index\": 0, \"dimension\": 3}}",
                square(value)
            ),
            "params.poly",
        ),
        (
            "/v1/mask2polygon".into(),
            format!("{{\"more_points\": {value}}}"),
            "more_points",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_requests_get_their_answer_in_time_and_the_platform_keeps_serving() {
    // The whole platform in a 2 GiB memory cgroup (the OOM killer past it).
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let pool = repo_root().join("models/engine_pool.json");
    testdata();
    let confined = Confined::start(
        2 << 30,
        &["up", "--engine-pool", pool.to_str().unwrap()],
        &[
            ("AIAA_STORE_URL", store.to_str().unwrap()),
            ("AIAA_GATEWAY_HEADER_TIMEOUT", "2s"),
            ("AIAA_GATEWAY_IDLE_TIMEOUT", "3s"),
            ("AIAA_GATEWAY_BODY_MIN_RATE", "4096"),
            ("AIAA_GATEWAY_BODY_RATE_WINDOW", "2s"),
        ],
    )
    .await;
    let platform = &confined.platform;
    let gw = confined.gateway();
    let pid = confined.pid();
    let suite = Instant::now();

    // Warm up (a session, one click), then the baseline.
    let mni = std::fs::read(testdata().join("mni152/MNI152_T1.nii.gz")).unwrap();
    let body = python_body(&[], &[("image", "MNI152_T1.nii.gz", &mni)]);
    let created = send(gw, &python_request("PUT", "/session/", &body)).await;
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    let session = created.json()["session_id"].as_str().unwrap().to_string();
    let click = python_request(
        "POST",
        &format!("/v1/dextr3d?model=annotation_mri_brain&session_id={session}&output=json"),
        &python_body(&[("params", &json!({"points": CLICKS}).to_string())], &[]),
    );
    // Four concurrent clicks, as during the suite below: what they allocate is the service
    // working, not the hostile input.
    let warm: Vec<_> = (0..4)
        .map(|_| {
            let click = click.clone();
            tokio::spawn(async move { send(gw, &click).await.status })
        })
        .collect();
    for c in warm {
        assert_eq!(c.await.unwrap(), 200);
    }
    let baseline = rss_mib(pid);
    let watch = Watch::start(platform);

    // Slowloris: 200 silent connections, 10 trickling headers, 10 trickling bodies; four
    // concurrent clicks are served meanwhile.
    let silent: Vec<_> = (0..200)
        .map(|_| {
            tokio::spawn(async move {
                let t = Instant::now();
                let mut c = TcpStream::connect(gw).await.unwrap();
                time_to_close(&mut c, t, Duration::from_secs(8)).await
            })
        })
        .collect();
    let trickling_headers: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(async move {
                let t = Instant::now();
                let c = TcpStream::connect(gw).await.unwrap();
                let (mut r, mut w) = c.into_split();
                let writer = tokio::spawn(async move {
                    for b in b"GET /livez HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                        if w.write_all(&[*b]).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
                let mut buf = [0u8; 64];
                let closed = tokio::time::timeout(Duration::from_secs(8), async {
                    while let Ok(n) = r.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    t.elapsed()
                })
                .await
                .expect("a trickling header must be closed");
                writer.abort();
                closed
            })
        })
        .collect();
    let trickling_bodies: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(async move {
                let request = python_request(
                    "PUT",
                    "/session/",
                    &python_body(&[], &[("image", "x.nii", &vec![0u8; 50_000])]),
                );
                let c = TcpStream::connect(gw).await.unwrap();
                let (mut r, mut w) = c.into_split();
                let t = Instant::now();
                let writer = tokio::spawn(async move {
                    for chunk in request.chunks(50) {
                        if w.write_all(chunk).await.is_err() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                });
                let answer = tokio::time::timeout(Duration::from_secs(8), read_http(&mut r))
                    .await
                    .expect("the slow body must be answered");
                writer.abort();
                (t.elapsed(), answer)
            })
        })
        .collect();
    let clicks: Vec<_> = (0..4)
        .map(|_| {
            let click = click.clone();
            tokio::spawn(async move { send(gw, &click).await.status })
        })
        .collect();
    for c in clicks {
        assert_eq!(c.await.unwrap(), 200, "a click while slowloris runs");
    }
    let mut worst_close = Duration::ZERO;
    for t in silent.into_iter().chain(trickling_headers) {
        worst_close = worst_close.max(t.await.unwrap());
    }
    assert!(
        worst_close < Duration::from_millis(3500),
        "closed after {worst_close:?}"
    );
    for t in trickling_bodies {
        let (took, (status, msg)) = t.await.unwrap();
        assert_eq!(status, 408, "{msg}");
        assert!(msg.contains("--gateway-body-min-rate"), "{msg}");
        assert!(took < Duration::from_millis(3500), "{took:?}");
    }
    watch.mark("slowloris");
    eprintln!("slowloris: 210 connections closed within {worst_close:?}, 10 slow bodies answered 408");

    // The clicks' working memory is the inference service's (its budget is tested
    // elsewhere); from here on, the hostile inputs alone.
    let clicked = rss_mib(pid);
    let clicks_peak = watch.reset_peak();
    eprintln!("memory after slowloris and 4 clicks: {clicked} MiB (peak {clicks_peak})");
    // Coordinates at ±1e300 / NaN / inf on every endpoint taking points or polygons.
    let slice = png(64, 48);
    let mut refused = 0;
    for value in ["1e300", "-1e300", "\"NaN\"", "\"inf\"", "1e400"] {
        for (path, params, field) in geometry_cases(value, &session) {
            let files: Vec<(&str, &str, &[u8])> = if path.contains("session_id") {
                vec![]
            } else {
                vec![("image", "slice.png", &slice)]
            };
            let body = python_body(&[("params", &params)], &files);
            let t = Instant::now();
            let answer = send(gw, &python_request("POST", &path, &body)).await;
            let msg = answer.error(400);
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "{path} {value}: {:?}",
                t.elapsed()
            );
            assert!(
                msg.contains(field) || (value == "1e400" && msg.contains("out of range")),
                "{path} {value}: {field:?} not in {msg:?}"
            );
            refused += 1;
        }
    }
    watch.mark("hostile coordinates");
    eprintln!("{refused} hostile coordinates refused with 400 within 1 s each");

    eprintln!(
        "memory after hostile coordinates: {} MiB (peak {})",
        rss_mib(pid),
        watch.peak()
    );
    // A 99 MB params, on a model endpoint and a polygon endpoint: refused as soon as the field
    // passes its limit.
    let huge = format!("{{\"points\": \"{}\"}}", "1".repeat(99 << 20));
    for path in ["/v1/dextr3d?model=annotation_mri_brain", "/v1/fixpolygon"] {
        let body = python_body(&[("params", &huge)], &[("image", "slice.png", &slice)]);
        let t = Instant::now();
        let (status, msg) = exchange(gw, python_request("POST", path, &body)).await;
        assert_eq!(status, 413, "{path}: {msg}");
        assert!(msg.contains("\\\"params\\\" exceeds the limit"), "{path}: {msg}");
        assert!(t.elapsed() < Duration::from_secs(3), "{path}: {:?}", t.elapsed());
    }

    // MONAI Label's routes: the same params as a multipart field of /infer, and as the JSON
    // body of the task and strategy routes (at most 1 MiB).
    let body = python_body(&[("params", &huge)], &[("file", "slice.png", &slice)]);
    let (status, msg) = exchange(gw, python_request("POST", "/infer/annotation_mri_brain", &body)).await;
    assert_eq!(status, 413, "/infer: {msg}");
    for path in [
        "/train/annotation_mri_brain",
        "/scoring/dice",
        "/activelearning/random",
    ] {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            huge.len()
        )
        .into_bytes();
        request.extend_from_slice(huge.as_bytes());
        let t = Instant::now();
        let (status, msg) = exchange(gw, request).await;
        assert_eq!(status, 413, "{path}: {msg}");
        assert!(msg.contains("exceeds 1048576 bytes"), "{path}: {msg}");
        assert!(t.elapsed() < Duration::from_secs(3), "{path}: {:?}", t.elapsed());
    }
    // MONAI Label's session upload takes a DICOM series as `files` parts: a form of 9000
    // parts is refused at the part limit, before their spool files pile up.
    let parts: Vec<(&str, &str, &[u8])> = (0..9000).map(|_| ("files", "s.dcm", &b"x"[..])).collect();
    let body = python_body(&[], &parts);
    let t = Instant::now();
    let (status, msg) = exchange(gw, python_request("PUT", "/session/", &body)).await;
    assert_eq!(status, 400, "9000 parts: {msg}");
    assert!(msg.contains("more than 8192 parts"), "{msg}");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "9000 parts: {:?}",
        t.elapsed()
    );
    watch.mark("big params and 9000 parts");
    eprintln!(
        "memory after 99 MB params: {} MiB (peak {})",
        rss_mib(pid),
        watch.peak()
    );
    // A mask of isolated dots (3.1 M one-pixel contours): refused past the vertex limit.
    let (w, h, nz) = (512, 512, 48);
    let dots: Vec<u8> = (0..w * h * nz)
        .map(|o| u8::from(o % w % 2 == 0 && o / w % h % 2 == 0))
        .collect();
    let mask = nifti([w, h, nz], dots);
    let body = python_body(&[("params", "{}")], &[("datapoint", "dots.nii.gz", &mask)]);
    let t = Instant::now();
    let msg = send(gw, &python_request("POST", "/v1/mask2polygon", &body))
        .await
        .error(400);
    assert!(msg.contains("--gateway-max-polygon-vertices"), "{msg}");
    watch.mark("mask2polygon");
    eprintln!(
        "mask2polygon on {} KB of dots refused in {:?}",
        mask.len() / 1024,
        t.elapsed()
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    eprintln!(
        "memory after mask2polygon: {} MiB (peak {})",
        rss_mib(pid),
        watch.peak()
    );
    // Two 2 GiB chunked bodies at once: 413 once each passes the 1 GiB limit, none held.
    let t = Instant::now();
    let uploads: Vec<_> = (0..2)
        .map(|_| tokio::spawn(chunked_upload(gw, 2 << 30)))
        .collect();
    for u in uploads {
        let (status, msg) = u.await.unwrap();
        assert_eq!(status, 413, "{msg}");
        assert!(msg.contains("--gateway-max-body-bytes"), "{msg}");
    }
    watch.mark("chunked bodies");
    eprintln!(
        "two 2 GiB chunked bodies refused in {:?}; memory peak so far {} MiB (baseline {baseline})",
        t.elapsed(),
        watch.peak()
    );

    eprintln!(
        "memory after chunked bodies: {} MiB (peak {})",
        rss_mib(pid),
        watch.peak()
    );
    // Positive control: a 1 GB upload (a 1000 x 1000 x 500 u16 NIfTI) becomes a session.
    let t = Instant::now();
    let vol = Volume::scalar([10, 10, 5], Geometry::default(), Voxels::U16(vec![0; 500])).unwrap();
    let mut header = aiaa_imaging::nifti::to_bytes(&vol, false).unwrap();
    header.truncate(352);
    for (i, d) in [3i16, 1000, 1000, 500].iter().enumerate() {
        header[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    let data_len = 1000u64 * 1000 * 500 * 2;
    let part = format!(
        "--{PY_LIMIT}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"big.nii\"\r\n\r\n"
    );
    let tail = format!("\r\n--{PY_LIMIT}--\r\n");
    let length = part.len() as u64 + header.len() as u64 + data_len + tail.len() as u64;
    let c = TcpStream::connect(gw).await.unwrap();
    let (mut r, mut wr) = c.into_split();
    let writer = tokio::spawn(async move {
        let head = format!(
            "PUT /session/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary={PY_LIMIT}\r\nContent-Length: {length}\r\n\r\n"
        );
        wr.write_all(head.as_bytes()).await.unwrap();
        wr.write_all(part.as_bytes()).await.unwrap();
        wr.write_all(&header).await.unwrap();
        let piece = vec![0u8; 4 << 20];
        let mut left = data_len;
        while left > 0 {
            let n = left.min(piece.len() as u64) as usize;
            wr.write_all(&piece[..n]).await.unwrap();
            left -= n as u64;
        }
        wr.write_all(tail.as_bytes()).await.unwrap();
        wr
    });
    let (status, msg) = tokio::time::timeout(Duration::from_secs(180), read_http(&mut r))
        .await
        .expect("the 1 GB upload must be answered within 180 s");
    drop(writer.await.unwrap());
    assert_eq!(status, 200, "{msg}");
    let big: Value = serde_json::from_str(&msg).unwrap();
    assert_eq!(big["image"]["size"], json!(352 + data_len));
    let id = big["session_id"].as_str().unwrap();
    assert_eq!(
        send(gw, &simple("DELETE", &format!("/session/{id}")))
            .await
            .status,
        200
    );
    watch.mark("1 GB upload");
    eprintln!("1 GB upload: a session in {:?}", t.elapsed());

    confined.assert_alive("the hostile inputs");
    let (worst, peak) = watch.finish().await;
    eprintln!("{}", confined.memory_report());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_mib(pid);
    eprintln!(
        "memory: baseline {baseline} MiB, {clicked} MiB after the clicks, peak {peak} MiB under the hostile inputs, after {after} MiB; worst /livez {} ms, worst gRPC health {} ms; suite {:?}",
        worst[0],
        worst[1],
        suite.elapsed()
    );
    assert!(
        clicks_peak < baseline + 500,
        "peak {clicks_peak} MiB during the clicks vs baseline {baseline} MiB"
    );
    assert!(
        peak < clicked + 200,
        "peak {peak} MiB under the hostile inputs vs {clicked} MiB before them"
    );
    assert!(after < clicked + 200, "after {after} MiB vs {clicked} MiB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn at_a_low_fd_limit_a_connection_flood_leaves_every_service_answering() {
    // 512 descriptors: each server caps its connections at 64, an eighth.
    let script = "ulimit -n 512 && exec \"$0\" \"$@\"";
    let bin = aiaa_bin();
    let bash = std::path::Path::new("/bin/bash");
    let args = ["-c", script, bin.to_str().unwrap()];
    let (platform, _dir) = up(bash, &args, &[]).await;
    let gw = platform.addrs["gateway"];
    let registry = platform.addrs["registry"];
    let datastore = platform.addrs["datastore"];

    // 600 connections held on the gateway: 64 are served, the rest answered 503 and closed.
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..600 {
        let mut c = TcpStream::connect(gw).await.unwrap();
        c.write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let (status, _) = read_http(&mut c).await;
        if status == 503 {
            refused += 1;
        } else {
            assert_eq!(status, 200);
            held.push(c);
        }
    }
    assert_eq!(held.len(), 64, "{} served, {refused} refused", held.len());
    // Every gRPC service still answers on new connections.
    for addr in [registry, datastore, platform.addrs["inference"]] {
        grpc_serving(addr, Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
    }
    // 600 connections held on the registry's gRPC port: the others are unaffected, and so
    // are the gateway's calls to the datastore and inference (their channels are open).
    let mut grpc_held = Vec::new();
    for _ in 0..600 {
        grpc_held.push(TcpStream::connect(registry).await.unwrap());
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    grpc_serving(datastore, Duration::from_secs(2)).await.unwrap();
    let models = send(gw, &simple("GET", "/v1/models")).await;
    assert_eq!(models.status, 200, "{}", String::from_utf8_lossy(&models.body));
    let mni = std::fs::read(testdata().join("mni152/MNI152_T1.nii.gz")).unwrap();
    let body = python_body(&[], &[("image", "MNI152_T1.nii.gz", &mni)]);
    assert_eq!(
        send(gw, &python_request("PUT", "/session/", &body)).await.status,
        200
    );
    // When the flood ends, the registry serves new connections again.
    drop(grpc_held);
    let t = Instant::now();
    while let Err(e) = grpc_serving(registry, Duration::from_secs(2)).await {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the registry did not recover: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
