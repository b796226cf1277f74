//! The platform as real containers: the images built the one way
//! (`scripts/docker/build-images.sh`, from this run's binaries, on the Debian-packages base of
//! `scripts/docker/base.sh`) and the top-level `docker-compose.yml` run by Debian's
//! docker-compose 1.29 with only its documented variables changed (image tag, host ports;
//! its own project, so its own volumes). Everything is checked from the host over 127.0.0.1:
//!
//! - images: sizes printed; `ldd` finds every library in every image; the registry, datastore
//!   and gateway images carry no libtorch; the CPU images' binaries do not need libtorch_cuda;
//!   the inference image's `check-config` accepts the mounted engine pool;
//! - all five services healthy; `/v1/models` lists both brain models; deepbet segments the
//!   ROBEX head through the gateway (Dice >= 0.95) and the DEXTR3D brain model annotates it
//!   from six extreme points on a session (>= 0.85); `aiaa push` / `aiaa pull -lm` against the
//!   registry container; the Python client of `examples/python-grpc` (stubs generated now
//!   from `proto/`) lists the registry, uploads the head to the datastore, runs inference on
//!   it directly and gets the same Dice; a training job on the trainer container leaves its
//!   checkpoint in the shared volume;
//! - faults: the inference container's process killed (SIGKILL, by its host PID): the gateway
//!   answers 503 JSON within 1 s, the restart policy brings inference back and requests
//!   succeed again through the same gateway; the same after `up --force-recreate inference`
//!   (a new container, a new address); a 1 MB `.nii.gz` that decodes to 1 GiB sent to
//!   `/v1/segmentation` costs at most the inference container (refused, or killed at its
//!   memory limit and restarted), the other four are untouched; a request in flight when every container is stopped
//!   (SIGTERM) completes and every container exits 0; after `down` and `up` the registry's
//!   versions, the datastore's items and the annotation session are still there.
//!
//! Takes a few minutes (most of it Docker's first image build); `cargo test -p aiaa-e2e --test
//! containers -- --nocapture` shows the timings.

use std::process::Command;
use std::time::{Duration, Instant};

use aiaa_e2e::aiaa_client::*;
use aiaa_e2e::docker::{Compose, Images, build_images, docker, free_port, run};
use aiaa_e2e::volumes::{decode, dice, foreground, read};
use aiaa_e2e::{aiaa_bin, put_item, python_env, repo_root, testdata};
use aiaa_proto::common::v1::{JobRef, JobState};
use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::datastore::v1::{GetRequest, ItemKind, PutDatalistRequest};
use aiaa_proto::trainer::v1::trainer_service_client::TrainerServiceClient;
use aiaa_proto::trainer::v1::{Source, TrainingRequest, source};
use aiaa_runtime::client::connect;
use futures::StreamExt;
use serde_json::json;

const SERVICES: &[&str] = &["registry", "datastore", "inference", "trainer", "gateway"];
/// The images a test run builds and runs (its own tag, beside users' images).
const TAG: &str = "e2e";

/// Runs a blocking step (docker, the CLI, Python) without stalling the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn phase(t0: Instant, what: &str) {
    eprintln!("[{:>6.1} s] {what}", t0.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_deployment_serves_survives_faults_and_keeps_its_data() {
    let t0 = Instant::now();
    testdata(); // the deepbet weights in models/ (mounted into inference)
    let images = blocking(|| build_images(TAG));
    phase(t0, &format!("images built in {:.1} s", images.took.as_secs_f64()));
    blocking(|| check_images(&images));

    // The deployment as users run it, on free host ports and its own project (volumes).
    blocking(remove_stale_projects);
    let ports: Vec<(&str, u16)> = SERVICES.iter().map(|s| (*s, free_port())).collect();
    let port = |s: &str| ports.iter().find(|(n, _)| *n == s).unwrap().1;
    // The inference memory limit (a documented variable) lowered from 8 GiB to what the brain
    // models need with room to spare, so that the bomb below meets it quickly.
    let mut env = vec![
        ("AIAA_IMAGE_TAG", TAG.to_string()),
        ("AIAA_INFERENCE_MEMORY", "4g".to_string()),
    ];
    for (s, p) in &ports {
        env.push((var_for(s), p.to_string()));
    }
    let compose = Compose::new(
        &format!("aiaa-e2e-{}", std::process::id()),
        &[repo_root().join("docker-compose.yml")],
        &env,
    );
    blocking(|| compose.run(&["up", "-d", "--no-build"]));
    blocking(|| compose.wait_healthy(SERVICES, Duration::from_secs(240)));
    phase(t0, "compose up: every service healthy");

    let gw: std::net::SocketAddr = format!("127.0.0.1:{}", port("gateway")).parse().unwrap();
    let url = |s: &str| format!("http://127.0.0.1:{}", port(s));
    let t = testdata();
    let head = std::fs::read(t.join("robex/atlas.nii.gz")).unwrap();
    let truth = read(&t.join("robex/atlas_mask.nii.gz"));

    // The annotation page, from the gateway image's binary.
    let page = send(
        gw,
        b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: text/html\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("id=\"gl\""), "{}", page.text());

    // The models the viewers see.
    let models = send(gw, &simple("GET", "/v1/models")).await.json();
    let names: Vec<&str> = models
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    for want in [
        "segmentation_mri_brain",
        "annotation_mri_brain",
        "deepgrow_mri_brain",
    ] {
        assert!(names.contains(&want), "/v1/models: {models}");
    }

    let seg_dice = segment(gw, &head, &truth).await;
    phase(t0, &format!("deepbet through the gateway: Dice {seg_dice:.4}"));
    assert!(seg_dice >= 0.95, "deepbet Dice {seg_dice}");

    let (session, ann_dice) = annotate_on_session(gw, &head, &truth).await;
    phase(t0, &format!("dextr3d on session {session}: Dice {ann_dice:.4}"));
    assert!(ann_dice >= 0.85, "dextr3d Dice {ann_dice}");

    // The CLI against the registry container.
    let registry = url("registry");
    blocking(|| push_and_pull(&registry));
    phase(t0, "aiaa push / pull -lm against the registry container");

    // The Python client, straight to the gRPC services.
    let py_item = blocking(|| python_client(port("registry"), port("datastore"), port("inference")));
    phase(t0, &format!("python gRPC client: datastore item {py_item}"));

    // A tiny training job on the trainer container; its checkpoint lands in the shared volume.
    let checkpoint = train(&url("datastore"), &url("trainer")).await;
    blocking(|| {
        compose.run(&[
            "exec",
            "-T",
            "trainer",
            "test",
            "-s",
            &format!("/data/trainer/{checkpoint}"),
        ])
    });
    // The named volume took the images' user as its owner, and so did what was written.
    let owners = blocking(|| {
        compose.run(&[
            "exec",
            "-T",
            "registry",
            "stat",
            "-c",
            "%u:%g %n",
            "/data",
            "/data/registry",
            "/data/datastore",
            &format!("/data/trainer/{checkpoint}"),
        ])
    });
    for line in owners.lines() {
        assert!(
            line.starts_with("10001:10001 "),
            "not owned by the images' user: {owners}"
        );
    }
    phase(
        t0,
        &format!("training job: /data/trainer/{checkpoint} in the volume"),
    );

    // Faults. The gateway stays the same container throughout.
    let gateway_started = blocking(|| compose.inspect("gateway", "{{.State.StartedAt}}"));

    // SIGKILL of inference's main process by its host PID (`docker kill` would count as a
    // manual stop, which the restart policy leaves alone).
    let pid = blocking(|| compose.inspect("inference", "{{.State.Pid}}"));
    let restarts: u32 = blocking(|| compose.inspect("inference", "{{.RestartCount}}"))
        .parse()
        .unwrap();
    blocking(|| run(Command::new("kill").args(["-9", &pid])));
    let started = Instant::now();
    let answer = send(
        gw,
        &cpp_request(
            "POST",
            &format!("/v1/segmentation?model=segmentation_mri_brain&session_id={session}&output=image"),
            &[("params", "{}")],
            &[],
        ),
    )
    .await;
    let took = started.elapsed();
    let message = answer.error(503);
    phase(
        t0,
        &format!(
            "inference killed: gateway 503 in {} ms: {message}",
            took.as_millis()
        ),
    );
    assert!(took < Duration::from_secs(1), "503 took {took:?}");
    blocking(|| compose.wait_healthy(&["inference"], Duration::from_secs(120)));
    let now: u32 = blocking(|| compose.inspect("inference", "{{.RestartCount}}"))
        .parse()
        .unwrap();
    assert!(
        now > restarts,
        "the restart policy did not restart inference ({restarts} -> {now})"
    );
    let d = until_segmentation_succeeds(gw, &head, &truth).await;
    phase(
        t0,
        &format!("inference restarted by its policy: Dice {d:.4} again"),
    );

    // A new container at a new address: the old one removed, its address taken by a
    // stand-in (Docker would hand it out again), then `up --force-recreate`.
    let ip = |c: &Compose| {
        c.inspect(
            "inference",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        )
    };
    let old_ip = blocking(|| ip(&compose));
    let old_id = blocking(|| compose.container("inference"));
    blocking(|| compose.run(&["rm", "-s", "-f", "inference"]));
    let network = format!("{}_default", compose.project);
    let stand_in = blocking(|| {
        docker(&[
            "run",
            "-d",
            "--rm",
            "--network",
            &network,
            &images.base.0,
            "sleep",
            "600",
        ])
    });
    blocking(|| {
        compose.run(&[
            "up",
            "-d",
            "--no-build",
            "--no-deps",
            "--force-recreate",
            "inference",
        ])
    });
    blocking(|| compose.wait_healthy(&["inference"], Duration::from_secs(120)));
    let _ = blocking(|| Command::new("docker").args(["rm", "-f", &stand_in]).output());
    let new_id = blocking(|| compose.container("inference"));
    let new_ip = blocking(|| ip(&compose));
    assert_ne!(old_id, new_id, "not recreated");
    assert_ne!(old_ip, new_ip, "the recreated inference kept its address");
    let d = until_segmentation_succeeds(gw, &head, &truth).await;
    phase(
        t0,
        &format!("inference recreated ({old_ip} -> {new_ip}): Dice {d:.4} through the same gateway"),
    );
    assert_eq!(
        blocking(|| compose.inspect("gateway", "{{.State.StartedAt}}")),
        gateway_started,
        "the gateway was restarted"
    );

    // One memory-exhausting input (of the hardening suite: a 1 MB .nii.gz that decodes to
    // 1 GiB) costs at most the inference container: refused, or inference killed at its
    // memory limit and brought back by its policy. The other four keep running untouched.
    let others = ["registry", "datastore", "trainer", "gateway"];
    let state = "{{.State.StartedAt}} {{.RestartCount}} {{.State.Running}}";
    let before: Vec<String> = others
        .iter()
        .map(|s| blocking(|| compose.inspect(s, state)))
        .collect();
    let bomb = blocking(decompression_bomb);
    let body = python_body(&[("params", "{}")], &[("image", "zeros.nii.gz", &bomb)]);
    let started = Instant::now();
    let answer = send(
        gw,
        &python_request("POST", "/v1/segmentation?model=segmentation_mri_brain", &body),
    )
    .await;
    let oom = blocking(|| compose.inspect("inference", "{{.State.OOMKilled}} {{.RestartCount}}"));
    phase(
        t0,
        &format!(
            "a 1 GiB decompression bomb: {} in {:.1} s ({}); inference OOMKilled/restarts: {oom}",
            answer.status,
            started.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&answer.body)
                .chars()
                .take(160)
                .collect::<String>()
        ),
    );
    assert!(
        answer.status >= 400,
        "a 1 GiB zero volume was segmented: {}",
        answer.status
    );
    blocking(|| compose.wait_healthy(&["inference"], Duration::from_secs(120)));
    let after: Vec<String> = others
        .iter()
        .map(|s| blocking(|| compose.inspect(s, state)))
        .collect();
    assert_eq!(before, after, "{others:?} were touched by the bomb");
    until_segmentation_succeeds(gw, &head, &truth).await;

    // SIGTERM to every container while a request is in flight: it completes, all exit 0.
    let in_flight = {
        let head = head.clone();
        tokio::spawn(async move {
            let body = python_body(&[("params", "{}")], &[("image", "atlas.nii.gz", &head)]);
            send(
                gw,
                &python_request("POST", "/v1/segmentation?model=segmentation_mri_brain", &body),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: Vec<(String, String)> = SERVICES
        .iter()
        .map(|s| (s.to_string(), blocking(|| compose.container(s))))
        .collect();
    blocking(|| compose.run(&["stop", "-t", "120"]));
    let answer = in_flight.await.unwrap();
    let result = parse_multipart_answer(&answer);
    let mask = decode("result.nii.gz", result.file.as_ref().unwrap());
    let d = dice(&foreground(&mask), &foreground(&truth));
    assert!(d >= 0.95, "the request in flight at the stop: Dice {d}");
    for (service, id) in &ids {
        let code = blocking(|| docker(&["inspect", "-f", "{{.State.ExitCode}}", id]));
        assert_eq!(code, "0", "{service} exited {code} on SIGTERM");
    }
    phase(
        t0,
        "stopped (SIGTERM): the request in flight completed, every container exited 0",
    );

    // The data lives in the volume, not in the containers.
    blocking(|| compose.run(&["down"]));
    blocking(|| compose.run(&["up", "-d", "--no-build"]));
    blocking(|| compose.wait_healthy(SERVICES, Duration::from_secs(240)));
    let versions = blocking(|| {
        run(Command::new(aiaa_bin()).args([
            "pull",
            "--registry",
            &registry,
            "-lv",
            "-m",
            "segmentation_mri_brain",
        ]))
    });
    assert!(
        versions.lines().any(|l| l.starts_with("1 ")),
        "registry versions after down/up: {versions}"
    );
    let mut ds = DatastoreServiceClient::new(connect(&url("datastore"), None).await.unwrap());
    for id in [py_item.as_str(), "ct/mni.nii.gz"] {
        let item = ds
            .stat(GetRequest {
                kind: ItemKind::Image as i32,
                id: id.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("datastore item {id} after down/up: {e}"))
            .into_inner();
        assert!(item.size > 0, "{item:?}");
    }
    let again = send(gw, &simple("GET", &format!("/session/{session}"))).await;
    assert_eq!(
        again.status,
        200,
        "session after down/up: {}",
        String::from_utf8_lossy(&again.body)
    );
    phase(
        t0,
        "down + up: registry versions, datastore items and the session are still there",
    );
}

/// A NIfTI-1 volume of 1024^3 zero bytes (1 GiB decoded), gzip-compressed to about 1 MB,
/// written by the Python environment's nibabel header and gzip.
fn decompression_bomb() -> Vec<u8> {
    let venv = python_env();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("zeros.nii.gz");
    let script = r#"
import gzip, sys
import nibabel, numpy
h = nibabel.Nifti1Header()
h.set_data_shape((1024, 1024, 1024))
h.set_data_dtype(numpy.uint8)
h.set_zooms((1.0, 1.0, 1.0))
h["vox_offset"] = 352
zeros = bytes(16 << 20)
with gzip.open(sys.argv[1], "wb", compresslevel=1) as f:
    f.write(h.binaryblock + b"\0\0\0\0")
    for _ in range(64):
        f.write(zeros)
"#;
    run(Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .arg(&out));
    std::fs::read(&out).unwrap()
}

/// The compose variable of a service's host port.
fn var_for(service: &str) -> &'static str {
    match service {
        "registry" => "AIAA_REGISTRY_PORT",
        "datastore" => "AIAA_DATASTORE_PORT",
        "inference" => "AIAA_INFERENCE_PORT",
        "trainer" => "AIAA_TRAINER_PORT",
        "gateway" => "AIAA_GATEWAY_PORT",
        other => panic!("no port variable for {other}"),
    }
}

/// Sizes printed; every image's libraries resolve; only inference and trainer carry libtorch,
/// without libtorch_cuda; the engine pool passes the inference image's own check.
fn check_images(images: &Images) {
    let (base, base_size) = &images.base;
    eprintln!("images (base {base}: {} MB):", base_size / 1_000_000);
    for target in SERVICES {
        let size = images.sizes[*target];
        eprintln!(
            "  {:<28} {:>5} MB  (+{} MB over the base)",
            images.name(target),
            size / 1_000_000,
            (size - base_size) / 1_000_000
        );
    }
    for target in SERVICES {
        let image = images.name(target);
        let ldd = docker(&[
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            image,
            "-c",
            "for f in /usr/local/bin/*; do echo \"== $f\"; ldd \"$f\"; done; echo '== lib'; ls /usr/local/lib",
        ]);
        assert!(
            !ldd.contains("not found"),
            "{image}: unresolved libraries:\n{ldd}"
        );
        let torch = ldd.contains("libtorch_cpu.so");
        if matches!(*target, "inference" | "trainer") {
            assert!(torch, "{image} does not load libtorch:\n{ldd}");
            assert!(!ldd.contains("libtorch_cuda"), "{image} is a CPU image:\n{ldd}");
        } else {
            assert!(
                !torch && !ldd.contains("libtorch"),
                "{image} carries libtorch:\n{ldd}"
            );
            let above = images.sizes[*target] - base_size;
            assert!(above < 100_000_000, "{image} is {above} bytes above the base");
        }
    }
    let models = repo_root().join("models");
    let out = docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/models:ro", models.display()),
        "-e",
        "AIAA_ENGINE_POOL=/models/engine_pool.json",
        images.name("inference"),
        "check-config",
    ]);
    assert!(out.contains("configuration ok"), "{out}");
}

/// Removes what earlier runs of this test left when they were killed (their process is gone).
fn remove_stale_projects() {
    let listing = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=com.docker.compose.project",
        "--format",
        "{{.ID}} {{.Label \"com.docker.compose.project\"}}",
    ]);
    for line in listing.lines() {
        let Some((id, project)) = line.split_once(' ') else {
            continue;
        };
        let Some(pid) = project
            .strip_prefix("aiaa-e2e-")
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
        }
    }
    let volumes = docker(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    for v in volumes.lines().filter(|v| v.starts_with("aiaa-e2e-")) {
        let pid = v["aiaa-e2e-".len()..]
            .split('_')
            .next()
            .and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
            let _ = Command::new("docker").args(["volume", "rm", v]).output();
        }
    }
}

/// deepbet through the gateway, the image inline (the Python client's shape): the Dice.
async fn segment(gw: std::net::SocketAddr, head: &[u8], truth: &aiaa_imaging::Volume) -> f64 {
    let body = python_body(&[("params", "{}")], &[("image", "atlas.nii.gz", head)]);
    let answer = send(
        gw,
        &python_request("POST", "/v1/segmentation?model=segmentation_mri_brain", &body),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let result = parse_multipart_answer(&answer);
    let mask = decode("result.nii.gz", result.file.as_ref().unwrap());
    assert_eq!(mask.dims, truth.dims);
    dice(&foreground(&mask), &foreground(truth))
}

/// Segmentation until it answers 200 (a restarted backend may take a moment to be reached
/// again; at most 10 s): the Dice.
async fn until_segmentation_succeeds(
    gw: std::net::SocketAddr,
    head: &[u8],
    truth: &aiaa_imaging::Volume,
) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = python_body(&[("params", "{}")], &[("image", "atlas.nii.gz", head)]);
    loop {
        let answer = send(
            gw,
            &python_request("POST", "/v1/segmentation?model=segmentation_mri_brain", &body),
        )
        .await;
        if answer.status == 200 {
            let mask = decode(
                "result.nii.gz",
                parse_multipart_answer(&answer).file.as_ref().unwrap(),
            );
            let d = dice(&foreground(&mask), &foreground(truth));
            assert!(d >= 0.95, "Dice {d} after the restart");
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "segmentation still fails: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A session with the head (the C++ client's shape), then dextr3d from the mask's six extreme
/// points on it: (session id, Dice).
async fn annotate_on_session(
    gw: std::net::SocketAddr,
    head: &[u8],
    truth: &aiaa_imaging::Volume,
) -> (String, f64) {
    let put = send(
        gw,
        &cpp_request("PUT", "/session/", &[], &[("image", "atlas.nii.gz", head)]),
    )
    .await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let session = put.json()["session_id"].as_str().unwrap().to_string();
    let points = aiaa_transforms::extreme::extreme_points(truth).unwrap();
    let params = json!({ "points": points }).to_string();
    let path = format!("/v1/dextr3d?model=annotation_mri_brain&session_id={session}");
    let answer = send(gw, &cpp_request("POST", &path, &[("params", &params)], &[])).await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let result = parse_multipart_answer(&answer);
    let mask = decode("result.nii.gz", result.file.as_ref().unwrap());
    assert_eq!(mask.dims, truth.dims);
    (session, dice(&foreground(&mask), &foreground(truth)))
}

/// `aiaa push` of deepbet's version 1, then `pull -lm`, `-lv` and a download whose files
/// equal the pushed ones.
fn push_and_pull(registry: &str) {
    let t = testdata();
    let model = repo_root().join("models/segmentation_mri_brain");
    let aiaa = aiaa_bin();
    run(Command::new(&aiaa)
        .args([
            "push",
            "--registry",
            registry,
            "-m",
            "segmentation_mri_brain",
            "-v",
            "1",
        ])
        .args(["--type", "segmentation", "--labels", "brain", "--engine-config"])
        .arg(model.join("config.json"))
        .arg(t.join("deepbet/model.pt"))
        .arg(t.join("deepbet/bbox_model.pt")));
    let listed = run(Command::new(&aiaa).args(["pull", "--registry", registry, "-lm"]));
    assert!(listed.contains("segmentation_mri_brain"), "pull -lm: {listed}");
    let dir = tempfile::tempdir().unwrap();
    run(Command::new(&aiaa)
        .args([
            "pull",
            "--registry",
            registry,
            "-m",
            "segmentation_mri_brain",
            "-v",
            "1",
            "-d",
        ])
        .arg(dir.path()));
    for f in ["model.pt", "bbox_model.pt"] {
        assert_eq!(
            std::fs::read(dir.path().join(f)).unwrap(),
            std::fs::read(t.join("deepbet").join(f)).unwrap(),
            "{f} pulled back differs"
        );
    }
}

/// Runs examples/python-grpc against the published ports, with stubs generated now from
/// proto/ in the project's Python environment (scripts/python-env.sh): returns the datastore
/// item it stored.
fn python_client(registry: u16, datastore: u16, inference: u16) -> String {
    let venv = python_env();
    let t = testdata();
    let out = tempfile::tempdir().unwrap();
    let stdout = run(Command::new(venv.join("bin/python"))
        .arg(repo_root().join("examples/python-grpc/aiaa_grpc_example.py"))
        .arg("--image")
        .arg(t.join("robex/atlas.nii.gz"))
        .arg("--reference")
        .arg(t.join("robex/atlas_mask.nii.gz"))
        .arg("--out")
        .arg(out.path().join("mask.nii.gz"))
        .args(["--registry", &format!("127.0.0.1:{registry}")])
        .args(["--datastore", &format!("127.0.0.1:{datastore}")])
        .args(["--inference", &format!("127.0.0.1:{inference}")])
        .arg("--proto-dir")
        .arg(repo_root().join("proto")));
    eprint!("{stdout}");
    assert!(
        stdout.contains("registry: aiaa/default/segmentation_mri_brain"),
        "{stdout}"
    );
    let d: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("dice: "))
        .unwrap_or_else(|| panic!("no dice line: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    assert!(d >= 0.95, "Python client's Dice {d}");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("datastore: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no datastore line: {stdout}"))
        .to_string()
}

/// Puts the MNI head (training) and ROBEX head (validation) with their masks into the
/// datastore, trains a tiny DEXTR3D network for one epoch on the trainer container and returns
/// the store path (under the trainer's prefix) of its checkpoint.
async fn train(datastore: &str, trainer: &str) -> String {
    let t = testdata();
    let mut ds = DatastoreServiceClient::new(connect(datastore, None).await.unwrap());
    for (kind, id, file) in [
        (ItemKind::Image, "ct/mni.nii.gz", "mni152/MNI152_T1.nii.gz"),
        (ItemKind::Label, "ct/mni.nii.gz", "mni152/MNI152_mask.nii.gz"),
        (ItemKind::Image, "ct/robex.nii.gz", "robex/atlas.nii.gz"),
        (ItemKind::Label, "ct/robex.nii.gz", "robex/atlas_mask.nii.gz"),
    ] {
        let bytes = std::fs::read(t.join(file)).unwrap();
        put_item(&mut ds, kind, id, bytes).await;
    }
    let mni = json!({"image": "ct/mni.nii.gz", "label": "ct/mni.nii.gz"});
    let list = json!({
        "training": [mni, mni],
        "validation": [{"image": "ct/robex.nii.gz", "label": "ct/robex.nii.gz"}]
    });
    ds.put_datalist(PutDatalistRequest {
        name: "brain".into(),
        datalist: None,
        json: list.to_string(),
    })
    .await
    .unwrap();

    // 24³ crops, a 2-level U-Net of 4 filters: seconds per epoch on a CPU.
    let crop = |pad: u64| {
        json!({"name": "transforms.CropForegroundObject", "size": [24, 24, 24],
               "image_field": "image", "label_field": "label", "pad": pad})
    };
    let pre = |pad: u64, pert: u64| {
        json!([
            {"name": "transforms.LoadNifty", "fields": ["image", "label"]},
            crop(pad),
            {"name": "transforms.NormalizeIntensity", "fields": "image"},
            {"name": "transforms.AddExtremePointsChannel", "image_field": "image",
             "label_field": "label", "sigma": 2, "pert": pert}
        ])
    };
    let config = json!({
        "num_channels": 2, "num_classes": 2, "batch_size": 2, "epochs": 1, "num_workers": 1,
        "network_input_size": [24, 24, 24], "num_training_epoch_per_valid": 1, "seed": 3,
        "checkpoint_interval_s": 0,
        "net_config": {"name": "UNet3D", "num_filters": 4, "levels": 2},
        "train": {
            "loss": {"name": "losses.dice_ce_loss"},
            "optimizer": {"name": "Adam", "lr": 1e-2},
            "pre_transforms": pre(20, 1)
        },
        "validate": {
            "metrics": [{"name": "MetricAverageFromArrayDice", "tag": "mean_dice",
                         "stopping_metric": true, "applied_key": "model"}],
            "pre_transforms": pre(13, 0)
        }
    });
    let mut trainer = TrainerServiceClient::new(connect(trainer, None).await.unwrap());
    let job = trainer
        .submit_training(TrainingRequest {
            config: Some(Source {
                kind: Some(source::Kind::InlineJson(config.to_string())),
            }),
            datalist: Some(Source {
                kind: Some(source::Kind::Datalist("brain".into())),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut watch = trainer
        .watch_job(JobRef { id: job.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let deadline = Instant::now() + Duration::from_secs(300);
    let last = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let job = tokio::time::timeout(left, watch.next())
            .await
            .expect("the training job did not end within 300 s")
            .expect("the watch ended early")
            .unwrap();
        if matches!(
            JobState::try_from(job.state),
            Ok(JobState::Succeeded | JobState::Failed | JobState::Cancelled)
        ) {
            break job;
        }
    };
    assert_eq!(
        JobState::try_from(last.state),
        Ok(JobState::Succeeded),
        "{last:#?}"
    );
    let result: serde_json::Value = serde_json::from_str(&last.result_json).unwrap();
    result["best_checkpoint"]
        .as_str()
        .or_else(|| {
            result["outputs"]
                .as_array()?
                .iter()
                .filter_map(|o| o.as_str())
                .find(|o| o.ends_with(".ckpt"))
        })
        .unwrap_or_else(|| panic!("no checkpoint in {result}"))
        .to_string()
}
