//! The chart's containers run: the Helm chart rendered with its default values (only the image
//! tag changed to the images this run builds), and every rendered pod run in Docker the way a
//! kubelet would run it, from the rendered objects alone:
//!
//! - each container with its rendered image, command and args, env (literal values and the
//!   rendered Secret's keys), ports (published on 127.0.0.1), memory limit, user and groups
//!   (runAsUser, runAsGroup, fsGroup), read-only root filesystem, dropped capabilities and no
//!   privilege escalation; its volumes as host folders: emptyDirs and claims as empty folders,
//!   the ConfigMap as its files, subPath mounts as single files;
//! - Services as names on one Docker network (each pod answers to the names of the Services
//!   that select it), so the services find each other exactly as in the cluster;
//! - the inference pod's init container first: it waits (saying so) until the models are
//!   published, which this test does with the `aiaa push` commands of the chart's NOTES;
//! - then every container's rendered probes, executed from the host as the kubelet would:
//!   `grpc:` probes as grpc.health.v1 checks with the probe's service name, `httpGet:` as HTTP
//!   GETs; startup until it passes within periodSeconds x failureThreshold, then liveness and
//!   readiness;
//! - `/v1/models` through the gateway lists the engine pool's models; every container stopped
//!   with SIGTERM and its terminationGracePeriodSeconds exits 0.
//!
//! Needs Docker (installed and started by `aiaa_e2e::docker` when missing); the images are the
//! ones `scripts/docker/build-images.sh` builds, shared with the `containers` suite.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use aiaa_e2e::docker::{build_images, docker, output};
use aiaa_e2e::{aiaa_bin, repo_root, testdata};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../helm/chart.rs"]
mod chart;
use chart::*;

/// The images of this run (shared with tests/tests/containers.rs).
const TAG: &str = "e2e";

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn phase(t0: Instant, what: &str) {
    eprintln!("[{:>6.1} s] {what}", t0.elapsed().as_secs_f64());
}

/// The Docker stand-in for a cluster: one network, host folders for volumes, and the
/// containers started; all removed when dropped.
struct Cluster {
    network: String,
    label: String,
    dir: tempfile::TempDir,
    /// Claims by name: one folder each, shared by the pods that mount them.
    claims: HashMap<String, PathBuf>,
}

/// One pod's volumes, by name: the host folder each stands for.
struct PodVolumes(HashMap<String, PathBuf>);

/// A started container: its id and its ports (container port -> host port on 127.0.0.1).
struct Started {
    id: String,
    ports: HashMap<i64, u16>,
}

impl Cluster {
    fn new() -> Cluster {
        let label = format!("aiaa-helm-{}", std::process::id());
        // Containers of an earlier run that died before cleaning up.
        let stale = docker(&["ps", "-aq", "--filter", "label=aiaa.test=helm"]);
        for id in stale.split_whitespace() {
            let _ = output(Command::new("docker").args(["rm", "-f", id]));
        }
        let _ = output(Command::new("docker").args(["network", "rm", &label]));
        docker(&["network", "create", "--label", "aiaa.test=helm", &label]);
        let dir = tempfile::tempdir().expect("tempdir");
        Cluster {
            network: label.clone(),
            label,
            dir,
            claims: HashMap::new(),
        }
    }

    /// A world-writable folder, as an emptyDir is (and a claim is to the pod's fsGroup).
    fn folder(&self, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        path
    }

    /// Lays out a pod's volumes from the rendered objects.
    fn volumes(&mut self, r: &Rendered, d: &Value) -> PodVolumes {
        let pod_name = d["metadata"]["name"].as_str().unwrap();
        let mut out = HashMap::new();
        for v in pod(d)["volumes"].as_array().into_iter().flatten() {
            let name = v["name"].as_str().unwrap();
            let path = if v.get("emptyDir").is_some() {
                self.folder(&format!("{pod_name}/{name}"))
            } else if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
                r.one("PersistentVolumeClaim", claim); // rendered, so the cluster would bind it
                let folder = self.folder(&format!("claims/{claim}"));
                self.claims.entry(claim.to_string()).or_insert(folder).clone()
            } else if let Some(cm) = v["configMap"]["name"].as_str() {
                let folder = self.folder(&format!("{pod_name}/{name}"));
                for (key, text) in r.one("ConfigMap", cm)["data"].as_object().unwrap() {
                    std::fs::write(folder.join(key), text.as_str().unwrap()).unwrap();
                }
                folder
            } else {
                panic!("{pod_name}: volume kind not emulated here: {v}");
            };
            out.insert(name.to_string(), path);
        }
        PodVolumes(out)
    }

    /// `docker run -d` of one container of a pod, as the kubelet would run it.
    fn run(&self, r: &Rendered, d: &Value, c: &Value, volumes: &PodVolumes, aliases: &[String]) -> Started {
        let p = pod(d);
        let pod_name = d["metadata"]["name"].as_str().unwrap();
        let name = format!("{}-{pod_name}-{}", self.label, c["name"].as_str().unwrap());
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            name.clone(),
            "--label".into(),
            "aiaa.test=helm".into(),
            "--network".into(),
            self.network.clone(),
            "--hostname".into(),
            pod_name.into(),
        ];
        for a in aliases {
            args.extend(["--network-alias".into(), a.clone()]);
        }
        // Security: the pod's user and groups, the container's restrictions.
        let psc = &p["securityContext"];
        if let Some(uid) = psc["runAsUser"].as_i64() {
            let gid = psc["runAsGroup"].as_i64().unwrap_or(uid);
            args.extend(["--user".into(), format!("{uid}:{gid}")]);
        }
        if let Some(fs) = psc["fsGroup"].as_i64() {
            args.extend(["--group-add".into(), fs.to_string()]);
        }
        let sc = &c["securityContext"];
        if sc["readOnlyRootFilesystem"] == true {
            args.push("--read-only".into());
        }
        if sc["allowPrivilegeEscalation"] == false {
            args.extend(["--security-opt".into(), "no-new-privileges".into()]);
        }
        for cap in sc["capabilities"]["drop"].as_array().into_iter().flatten() {
            args.extend(["--cap-drop".into(), cap.as_str().unwrap().into()]);
        }
        if let Some(mem) = c["resources"]["limits"]["memory"].as_str() {
            args.extend(["--memory".into(), bytes(mem).to_string()]);
        }
        assert!(
            gpus(c).is_none(),
            "{name}: GPUs are not emulated (render without them)"
        );
        // Env: literal values, and the Secret's keys (missing optional keys left unset).
        for e in c["env"].as_array().into_iter().flatten() {
            let var = e["name"].as_str().unwrap();
            let value = if let Some(v) = e["value"].as_str() {
                Some(v.to_string())
            } else {
                let s = &e["valueFrom"]["secretKeyRef"];
                let found = secret_value(r, s["name"].as_str().unwrap(), s["key"].as_str().unwrap());
                assert!(
                    found.is_some() || s["optional"] == true,
                    "{name}: {var}: no such secret key"
                );
                found
            };
            if let Some(v) = value {
                args.extend(["-e".into(), format!("{var}={v}")]);
            }
        }
        // Volumes: every mount (a subPath mount is the one file or folder).
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            let mut src = volumes.0[m["name"].as_str().unwrap()].clone();
            if let Some(sub) = m["subPath"].as_str() {
                src = src.join(sub);
            }
            let ro = if m["readOnly"] == true { ",readonly" } else { "" };
            args.extend([
                "--mount".into(),
                format!(
                    "type=bind,src={},dst={}{ro}",
                    src.display(),
                    m["mountPath"].as_str().unwrap()
                ),
            ]);
        }
        let mut ports = Vec::new();
        for port in c["ports"].as_array().into_iter().flatten() {
            let n = port["containerPort"].as_i64().unwrap();
            args.extend(["-p".into(), format!("127.0.0.1::{n}")]);
            ports.push(n);
        }
        // command replaces the image's ENTRYPOINT, args its CMD.
        let command: Vec<String> = strings(&c["command"]);
        if let Some((entry, rest)) = command.split_first() {
            args.extend(["--entrypoint".into(), entry.clone()]);
            args.push(c["image"].as_str().unwrap().into());
            args.extend(rest.iter().cloned());
        } else {
            args.push(c["image"].as_str().unwrap().into());
        }
        args.extend(strings(&c["args"]));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = docker(&refs);
        let ports = ports
            .into_iter()
            .map(|n| {
                let published = docker(&["port", &id, &format!("{n}/tcp")]);
                let host = published.lines().next().unwrap().rsplit(':').next().unwrap();
                (n, host.parse().unwrap())
            })
            .collect();
        Started { id, ports }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids = output(Command::new("docker").args(["ps", "-aq", "--filter", "label=aiaa.test=helm"]));
        for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
            let _ = output(Command::new("docker").args(["rm", "-f", id]));
        }
        let _ = output(Command::new("docker").args(["network", "rm", &self.network]));
        // Files the containers wrote belong to their user; the temp dir removes them as root.
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Kubernetes quantities of memory ("512Mi", "4Gi", "1G", "1000") in bytes.
fn bytes(q: &str) -> u64 {
    let split = q.find(|ch: char| ch.is_ascii_alphabetic()).unwrap_or(q.len());
    let (n, unit) = q.split_at(split);
    let n: f64 = n.parse().unwrap_or_else(|e| panic!("quantity {q}: {e}"));
    let mult: f64 = match unit {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => panic!("quantity {q}: unit {unit}"),
    };
    (n * mult) as u64
}

/// A key of a rendered Secret (the chart writes stringData).
fn secret_value(r: &Rendered, name: &str, key: &str) -> Option<String> {
    let secrets = r.objects("Secret");
    let s = secrets.iter().find(|s| s["metadata"]["name"] == name)?;
    assert!(
        s.get("data").is_none(),
        "Secret {name}: data (base64) is not emulated here"
    );
    s["stringData"][key].as_str().map(str::to_string)
}

/// The names of the Services that select a Deployment's pods.
fn service_names(r: &Rendered, d: &Value) -> Vec<String> {
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    r.objects("Service")
        .into_iter()
        .filter(|s| {
            s["spec"]["selector"]
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| &labels[k] == v)
        })
        .map(|s| s["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// Runs one probe once, as the kubelet would, against a started container.
async fn probe_once(c: &Value, started: &Started, probe: &Value) -> Result<String, String> {
    let timeout = Duration::from_secs(probe["timeoutSeconds"].as_u64().unwrap_or(1));
    let host_port = |port: &Value| -> u16 {
        let n = match port {
            Value::String(name) => chart::port(c, name),
            other => other.as_i64().unwrap(),
        };
        started.ports[&n]
    };
    if let Some(g) = probe.get("grpc") {
        use tonic_health::pb::health_check_response::ServingStatus;
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let port = host_port(&g["port"]);
        let service = g["service"].as_str().unwrap_or_default().to_string();
        let check = async {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                .unwrap()
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            let status = HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: service.clone(),
                })
                .await
                .map_err(|s| format!("{}: {}", s.code(), s.message()))?
                .into_inner()
                .status();
            if status == ServingStatus::Serving {
                Ok(format!("grpc {service:?} SERVING"))
            } else {
                Err(format!("grpc {service:?} {}", status.as_str_name()))
            }
        };
        tokio::time::timeout(timeout, check)
            .await
            .map_err(|_| format!("grpc {service:?}: no answer in {timeout:?}"))?
    } else if let Some(h) = probe.get("httpGet") {
        let port = host_port(&h["port"]);
        let path = h["path"].as_str().unwrap_or("/");
        let (status, _) = tokio::time::timeout(timeout, http_get(port, path))
            .await
            .map_err(|_| format!("GET {path}: no answer in {timeout:?}"))??;
        // The kubelet's rule: 200 <= status < 400 passes.
        if (200..400).contains(&status) {
            Ok(format!("GET {path} {status}"))
        } else {
            Err(format!("GET {path} {status}"))
        }
    } else {
        Err(format!("probe kind not emulated here: {probe}"))
    }
}

/// Runs a probe until it passes, every periodSeconds, at most failureThreshold times (a
/// startup or readiness probe), or panics with the container's log tail.
async fn probe_until(what: &str, c: &Value, started: &Started, probe: &Value) -> Duration {
    let t0 = Instant::now();
    let period = Duration::from_secs(probe["periodSeconds"].as_u64().unwrap_or(10));
    let tries = probe["failureThreshold"].as_u64().unwrap_or(3);
    let mut last = String::new();
    for _ in 0..tries {
        match probe_once(c, started, probe).await {
            Ok(_) => return t0.elapsed(),
            Err(e) => last = e,
        }
        tokio::time::sleep(period).await;
    }
    let logs = output(Command::new("docker").args(["logs", "--tail", "30", &started.id]));
    panic!(
        "{what}: did not pass in {tries} tries every {period:?}: {last}\n{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
}

/// A plain HTTP/1.1 GET on 127.0.0.1: status and body.
async fn http_get(port: u16, path: &str) -> Result<(u16, String), String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path}: no HTTP status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The `aiaa push` commands of the chart's NOTES (run from the repository's root), aimed at
/// `registry` instead of the port-forward's 127.0.0.1:<port>, with `testdata/` wherever
/// the test data really is (`$AIAA_TESTDATA`).
fn notes_push_commands(notes: &str, port: i64, registry: &str) -> Vec<Vec<String>> {
    let joined = notes.replace("\\\n", " ");
    joined
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("aiaa push "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .map(|w| match w.strip_prefix("testdata/") {
                    Some(rest) => testdata().join(rest).display().to_string(),
                    None => w.replace(&format!("http://127.0.0.1:{port}"), registry),
                })
                .collect()
        })
        .collect()
}

fn container_state(id: &str) -> (String, i64) {
    let s = docker(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id]);
    let (status, code) = s.split_once(' ').unwrap();
    (status.to_string(), code.parse().unwrap())
}

fn logs(id: &str) -> String {
    let out = output(Command::new("docker").args(["logs", id]));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_containers_run_with_their_rendered_settings_and_pass_their_probes() {
    let t0 = Instant::now();
    testdata(); // deepbet's weights, which the NOTES' push commands publish
    let images = blocking(|| build_images(TAG));
    phase(t0, &format!("images built in {:.1} s", images.took.as_secs_f64()));

    // The default values, but for the images' tag and a shorter wait between the init
    // container's tries.
    let r = blocking(|| {
        render_ok(
            &[],
            &[json!({"image": {"tag": TAG}, "models": {"fetch": {"retrySeconds": 2}}})],
        )
    });
    let mut cluster = Cluster::new();
    let mut started: BTreeMap<&str, (Started, &Value)> = BTreeMap::new();
    let mut inference_volumes = None;
    let mut init = None;
    for svc in SERVICES {
        let d = r.deployment(svc);
        let volumes = cluster.volumes(&r, d);
        let aliases = service_names(&r, d);
        assert_eq!(aliases, [format!("aiaa-{svc}")], "{svc}: its Service");
        if let Some(inits) = pod(d)["initContainers"].as_array() {
            // The kubelet runs init containers first; the main container waits for them.
            assert_eq!(inits.len(), 1, "{svc}");
            init = Some(blocking(|| cluster.run(&r, d, &inits[0], &volumes, &[])));
            inference_volumes = Some(volumes);
            continue;
        }
        let c = main_container(d);
        let s = blocking(|| cluster.run(&r, d, c, &volumes, &aliases));
        started.insert(svc, (s, c));
    }
    phase(
        t0,
        "registry, datastore, trainer, gateway and inference's fetch-models started",
    );

    // The services without models come up by their own startup probes.
    for svc in ["registry", "datastore", "trainer"] {
        let (s, c) = &started[svc];
        let took = probe_until(&format!("{svc} startupProbe"), c, s, &c["startupProbe"]).await;
        phase(
            t0,
            &format!("{svc}: startupProbe passed after {:.1} s", took.as_secs_f64()),
        );
    }

    // fetch-models waits for the models and says so, until the NOTES' commands publish them.
    let init = init.expect("the inference pod's init container");
    let waiting = Instant::now();
    while !logs(&init.id).contains("fetch-models: waiting for aiaa/default/") {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "fetch-models does not say what it waits for: {}",
            logs(&init.id)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        container_state(&init.id).0,
        "running",
        "fetch-models gave up: {}",
        logs(&init.id)
    );
    let (registry, registry_c) = &started["registry"];
    let registry_url = format!("http://127.0.0.1:{}", registry.ports[&port(registry_c, "grpc")]);
    let pushes = notes_push_commands(r.notes(), port(registry_c, "grpc"), &registry_url);
    assert_eq!(
        pushes.len(),
        3,
        "the NOTES publish the three models: {}",
        r.notes()
    );
    for args in pushes {
        let out = blocking(|| {
            Command::new(aiaa_bin())
                .args(&args)
                .current_dir(repo_root())
                .output()
                .unwrap()
        });
        assert!(
            out.status.success(),
            "aiaa {args:?} (from the NOTES): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    phase(t0, "models published with the NOTES' aiaa push commands");
    let deadline = Instant::now() + Duration::from_secs(60);
    while container_state(&init.id).0 == "running" {
        assert!(
            Instant::now() < deadline,
            "fetch-models still running: {}",
            logs(&init.id)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        container_state(&init.id).1,
        0,
        "fetch-models failed: {}",
        logs(&init.id)
    );
    let pulled = inference_volumes.as_ref().unwrap().0["models"].clone();
    for f in [
        "segmentation_mri_brain/model.pt",
        "segmentation_mri_brain/bbox_model.pt",
        "annotation_mri_brain/model.pt",
        "deepgrow_mri_brain/model.pt",
    ] {
        assert!(pulled.join(f).is_file(), "fetch-models did not pull {f}");
    }
    phase(t0, "fetch-models pulled the weights and exited 0");

    // The inference container, on the pod's volumes, and its startup probe (models loaded).
    let d = r.deployment("inference");
    let c = main_container(d);
    let s = blocking(|| {
        cluster.run(
            &r,
            d,
            c,
            inference_volumes.as_ref().unwrap(),
            &service_names(&r, d),
        )
    });
    started.insert("inference", (s, c));
    let (s, c) = &started["inference"];
    let took = probe_until("inference startupProbe", c, s, &c["startupProbe"]).await;
    phase(
        t0,
        &format!(
            "inference: startupProbe passed after {:.1} s (engine pool loaded)",
            took.as_secs_f64()
        ),
    );
    let (s, c) = &started["gateway"];
    probe_until("gateway startupProbe", c, s, &c["startupProbe"]).await;

    // Liveness passes at once; readiness within its threshold (the gateway's needs its
    // backends).
    for svc in SERVICES {
        let (s, c) = &started[svc];
        let live = probe_once(c, s, &c["livenessProbe"]).await;
        assert!(live.is_ok(), "{svc} livenessProbe: {live:?}");
        probe_until(&format!("{svc} readinessProbe"), c, s, &c["readinessProbe"]).await;
        eprintln!("  {svc}: liveness {}, ready", live.unwrap());
    }
    phase(
        t0,
        "every container passed its startup, liveness and readiness probes",
    );

    // The gateway serves the engine pool's models, reached through the Services' names.
    let (gw, gw_c) = &started["gateway"];
    let (status, body) = http_get(gw.ports[&port(gw_c, "http")], "/v1/models")
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    for model in ["segmentation_mri_brain", "annotation_mri_brain"] {
        assert!(body.contains(model), "/v1/models lacks {model}: {body}");
    }

    // SIGTERM with the pod's grace period: each drains and exits 0 (front to back).
    for svc in ["gateway", "inference", "trainer", "datastore", "registry"] {
        let (s, _) = &started[svc];
        let grace = pod(r.deployment(svc))["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap();
        let t = Instant::now();
        blocking(|| docker(&["stop", "-t", &grace.to_string(), &s.id]));
        let (_, code) = container_state(&s.id);
        assert_eq!(code, 0, "{svc} exited {code} after SIGTERM: {}", logs(&s.id));
        assert!(
            t.elapsed() < Duration::from_secs(grace as u64),
            "{svc} used its whole grace period"
        );
    }
    phase(t0, "every container stopped by SIGTERM exited 0");
    drop(cluster);
}
