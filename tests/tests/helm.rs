//! The Helm chart `helm/aiaa`, without a cluster: `helm lint --strict` and `helm template`
//! through Helm's own library (PyPI helm-python-sdk, driven by `tests/helm/chart.py`) with
//! the default values, the GPU values file and every option switched on; every rendered
//! object validated against the Kubernetes JSON schemas (kubernetes-validate, strict) of the
//! oldest supported and a recent Kubernetes; then what a cluster would only find out at run
//! time: probes and resources on every container, GPUs only where asked, Services that select
//! a pod and name its ports, an engine pool the inference binary accepts, and env variables
//! that the binaries read.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use aiaa_e2e::{repo_root, service_bin};
use serde_json::{Value, json};

#[path = "../helm/chart.rs"]
mod chart;
use chart::*;

fn grpc_service(svc: &str) -> String {
    let mut cap = svc.to_string();
    cap[..1].make_ascii_uppercase();
    format!("aiaa.{svc}.v1.{cap}Service")
}

/// What every rendering must hold, whatever the values: probes, resources, security,
/// grace periods, Services that select a pod, volumes that exist, the secret refs.
fn check_common(r: &Rendered, gpu_services: &[&str], secret: &str) {
    let deployments = r.objects("Deployment");
    let names: BTreeSet<String> = deployments
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let want: BTreeSet<String> = SERVICES.iter().map(|s| format!("aiaa-{s}")).collect();
    assert_eq!(names, want, "one Deployment per service");

    for svc in SERVICES {
        let d = r.deployment(svc);
        let p = pod(d);
        let c = main_container(d);
        assert_eq!(p["securityContext"]["runAsNonRoot"], true, "{svc}: non-root");
        assert!(
            p["securityContext"]["runAsUser"].as_i64() > Some(0),
            "{svc}: a user id"
        );
        assert_eq!(p["automountServiceAccountToken"], false, "{svc}: no API token");
        for c in all_containers(d) {
            let name = c["name"].as_str().unwrap();
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{svc}/{name}: read-only root");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{svc}/{name}");
            assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{svc}/{name}");
            let res = &c["resources"];
            for key in ["cpu", "memory"] {
                assert!(res["requests"][key].is_string(), "{svc}/{name}: requests.{key}");
            }
            assert!(
                res["limits"]["memory"].is_string(),
                "{svc}/{name}: a memory limit"
            );
            // A read-only root filesystem: /tmp must be a volume.
            let mounts: Vec<&str> = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| m["mountPath"].as_str().unwrap())
                .collect();
            assert!(mounts.contains(&"/tmp"), "{svc}/{name}: /tmp is not writable");
            // Secrets come from the release's Secret (or existingSecret), optional keys.
            for e in c["env"].as_array().into_iter().flatten() {
                if let Some(s) = e.get("valueFrom") {
                    assert_eq!(s["secretKeyRef"]["name"], secret, "{svc}/{name}: {e}");
                    assert_eq!(s["secretKeyRef"]["key"], e["name"], "{svc}/{name}: {e}");
                    assert_eq!(s["secretKeyRef"]["optional"], true, "{svc}/{name}: {e}");
                }
            }
        }
        // Probes: native gRPC on the gRPC port (readiness on the service's own name), the
        // gateway's /livez and /readyz on its HTTP port.
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let pr = &c[probe];
            assert!(pr.is_object(), "{svc}: no {probe}");
            if svc == "gateway" {
                let path = if probe == "readinessProbe" {
                    "/readyz"
                } else {
                    "/livez"
                };
                assert_eq!(pr["httpGet"]["path"], path, "{svc} {probe}");
                assert_eq!(pr["httpGet"]["port"], "http", "{svc} {probe}");
            } else {
                assert_eq!(
                    pr["grpc"]["port"].as_i64(),
                    Some(port(c, "grpc")),
                    "{svc} {probe}"
                );
                let service = if probe == "readinessProbe" {
                    grpc_service(svc)
                } else {
                    String::new()
                };
                assert_eq!(pr["grpc"]["service"], service.as_str(), "{svc} {probe}");
            }
        }
        // The grace period outlasts the drain (and the trainer's job checkpoint); the
        // gateway, which has no drain limit and reads no drain variable, gets its own.
        let drain = match env(c).get("AIAA_DRAIN_TIMEOUT") {
            Some(d) => d.trim_end_matches('s').parse::<i64>().unwrap(),
            None => {
                assert_eq!(svc, "gateway", "{svc}: no AIAA_DRAIN_TIMEOUT");
                30
            }
        };
        let need = if svc == "trainer" { drain + 60 } else { drain };
        assert!(
            p["terminationGracePeriodSeconds"].as_i64() > Some(need),
            "{svc}: terminationGracePeriodSeconds {} <= {need}",
            p["terminationGracePeriodSeconds"]
        );
        // The listen address matches the container port every probe and Service uses.
        let port_name = if svc == "gateway" { "http" } else { "grpc" };
        let var = format!("AIAA_{}_LISTEN", svc.to_uppercase());
        assert_eq!(env(c)[&var], format!("0.0.0.0:{}", port(c, port_name)), "{svc}");
        // Every mount names a volume of the pod; every claim is rendered (or existing).
        let volumes: Vec<&Value> = p["volumes"].as_array().unwrap().iter().collect();
        for c in all_containers(d) {
            for m in c["volumeMounts"].as_array().into_iter().flatten() {
                assert!(volumes.iter().any(|v| v["name"] == m["name"]), "{svc}: mount {m}");
            }
        }
        for v in volumes {
            if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
                r.one("PersistentVolumeClaim", claim);
            }
            if let Some(cm) = v["configMap"]["name"].as_str() {
                r.one("ConfigMap", cm);
            }
        }
        // GPUs exactly where asked, and only on the service's own container.
        let asked = gpu_services.contains(&svc);
        for c in all_containers(d) {
            let n = gpus(c);
            if asked && c == main_container(d) {
                assert!(n > Some(0), "{svc}: no nvidia.com/gpu");
            } else {
                assert_eq!(n, None, "{svc}/{}: nvidia.com/gpu not asked for", c["name"]);
            }
        }
        assert_eq!(
            p["runtimeClassName"].is_string(),
            asked,
            "{svc}: runtimeClassName only with GPUs (in these values)"
        );
    }

    // Every Service selects exactly one Deployment's pods and targets a named port of it.
    for s in r.objects("Service") {
        let selector = s["spec"]["selector"].as_object().unwrap();
        let selected: Vec<&&Value> = deployments
            .iter()
            .filter(|d| {
                let labels = &d["spec"]["template"]["metadata"]["labels"];
                selector.iter().all(|(k, v)| &labels[k] == v)
            })
            .collect();
        assert_eq!(
            selected.len(),
            1,
            "{} selects {}",
            s["metadata"]["name"],
            selected.len()
        );
        assert_eq!(
            selected[0]["spec"]["selector"]["matchLabels"]
                .as_object()
                .unwrap(),
            selector,
            "Service and Deployment select the same pods"
        );
        for p in s["spec"]["ports"].as_array().unwrap() {
            port(main_container(selected[0]), p["targetPort"].as_str().unwrap());
        }
    }
}

/// The models ConfigMap holds the repository's engine pool and configs, and the inference
/// pod mounts each where the pool names it and pulls every model's weights.
fn check_models(r: &Rendered) {
    let cm = r.one("ConfigMap", "aiaa-models");
    let data = cm["data"].as_object().unwrap();
    let read = |p: &str| std::fs::read_to_string(repo_root().join("models").join(p)).unwrap();
    assert_eq!(
        data["engine_pool.json"].as_str().unwrap().trim(),
        read("engine_pool.json").trim(),
        "the chart's engine pool is models/engine_pool.json (helm/aiaa/files/models is a copy)"
    );
    let pool: Vec<Value> = serde_json::from_str(&read("engine_pool.json")).unwrap();
    let d = r.deployment("inference");
    let c = main_container(d);
    let init = &pod(d)["initContainers"][0];
    let script = init["args"][0].as_str().unwrap();
    for entry in &pool {
        let file = entry["config_file"].as_str().unwrap();
        let key = file.replace('/', "__");
        assert_eq!(
            data[&key].as_str().unwrap().trim(),
            read(file).trim(),
            "{file}: the chart's copy differs from models/{file}"
        );
        let mounted = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == format!("/models/{file}") && m["subPath"] == key.as_str());
        assert!(mounted, "{file} is not mounted at /models/{file}");
        let name = entry["name"].as_str().unwrap();
        let folder = Path::new(file).parent().unwrap().to_str().unwrap();
        assert!(
            script.contains(&format!("fetch {folder} aiaa default {name} 1\n")),
            "the init container does not pull {name}: {script}"
        );
    }
    assert_eq!(env(c)["AIAA_ENGINE_POOL"], "/models/engine_pool.json");
    assert_eq!(init["command"], json!(["/bin/sh", "-c"]));
}

#[test]
fn chart_renders_valid_objects_with_default_and_gpu_values() {
    // Defaults: CPU only, a claim per stateful service, no API key, no extras.
    let r = render_ok(&[], &[]);
    check_common(&r, &[], "aiaa");
    check_models(&r);
    let claims: BTreeSet<&str> = r
        .objects("PersistentVolumeClaim")
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        claims,
        BTreeSet::from(["aiaa-registry", "aiaa-datastore", "aiaa-trainer"])
    );
    for c in r.objects("PersistentVolumeClaim") {
        assert_eq!(
            c["spec"]["accessModes"],
            json!(["ReadWriteOnce"]),
            "no claim is shared"
        );
    }
    for svc in ["registry", "datastore", "trainer"] {
        let d = r.deployment(svc);
        assert_eq!(env(main_container(d))["AIAA_STORE_URL"], "/data");
        assert_eq!(
            d["spec"]["strategy"]["type"], "Recreate",
            "{svc}: one instance per store"
        );
    }
    for svc in SERVICES {
        assert_eq!(r.deployment(svc)["spec"]["replicas"], 1, "{svc}");
    }
    let secret = r.one("Secret", "aiaa");
    assert!(
        secret["stringData"].as_object().is_none_or(|m| m.is_empty()),
        "no key set, no key stored (an empty AIAA_API_KEY would turn authentication on): {secret}"
    );
    assert!(r.objects("Ingress").is_empty() && r.objects("ServiceMonitor").is_empty());
    assert!(r.notes().contains(
        "aiaa push --registry http://127.0.0.1:5101 -o aiaa -t default -m segmentation_mri_brain -v 1"
    ));
    assert!(r.notes().contains("port-forward svc/aiaa-gateway 5000:5000"));

    // The GPU values file: GPUs, runtime class, CUDA images and devices for inference and the
    // trainer only; S3 instead of claims.
    let r = render_ok(&["values-gpu.yaml"], &[]);
    check_common(&r, &["inference", "trainer"], "aiaa");
    check_models(&r);
    assert!(r.objects("PersistentVolumeClaim").is_empty(), "S3: no claims");
    for (svc, var) in [
        ("inference", "AIAA_INFERENCE_DEVICE"),
        ("trainer", "AIAA_TRAINER_DEVICE"),
    ] {
        let d = r.deployment(svc);
        let c = main_container(d);
        assert_eq!(
            env(c)[var],
            "cuda",
            "{svc}: a GPU pod must not fall back to the CPU silently"
        );
        assert!(
            c["image"].as_str().unwrap().contains("-cuda:"),
            "{svc}: {}",
            c["image"]
        );
        assert!(
            pod(d)["tolerations"].as_array().is_some_and(|t| !t.is_empty()),
            "{svc}"
        );
    }
    let init_image = pod(r.deployment("inference"))["initContainers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(
        !init_image.contains("cuda"),
        "fetch-models needs no CUDA image: {init_image}"
    );
    for svc in ["registry", "datastore", "trainer"] {
        let c = main_container(r.deployment(svc));
        assert!(env(c)["AIAA_STORE_URL"].starts_with("s3://"), "{svc}");
        let names = env_names(c);
        for var in [
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(names.iter().any(|n| n == var), "{svc}: {var}");
        }
    }
    for svc in ["inference", "gateway"] {
        let names = env_names(main_container(r.deployment(svc)));
        assert!(
            !names.iter().any(|n| n.starts_with("AWS_")),
            "{svc} keeps no data"
        );
    }
}

#[test]
fn chart_renders_every_option_switched_on() {
    let r = render_ok(
        &["values-gpu.yaml"],
        &[json!({
            "auth": {"apiKey": "k3y"},
            "store": {"s3": {"accessKeyId": "AKIA", "secretAccessKey": "s3cret"}},
            "telemetry": {"otlpEndpoint": "http://otel-collector.observability:4317"},
            "metrics": {"serviceMonitor": {"enabled": true, "labels": {"release": "prometheus"}}},
            "gateway": {"replicaCount": 3, "ingress": {
                "enabled": true, "className": "nginx",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "1g"},
                "tls": [{"secretName": "aiaa-tls", "hosts": ["aiaa.example.org"]}]}},
            "datastore": {"env": {"AIAA_DATASTORE_SESSION_MAX_EXPIRY": "8h"}},
            "grpcEnv": {"AIAA_DRAIN_TIMEOUT": "40s"},
        })],
    );
    check_common(&r, &["inference", "trainer"], "aiaa");
    let secret = &r.one("Secret", "aiaa")["stringData"];
    assert_eq!(
        secret,
        &json!({"AIAA_API_KEY": "k3y", "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s3cret"})
    );
    for svc in SERVICES {
        let c = main_container(r.deployment(svc));
        assert!(
            env_names(c).iter().any(|n| n == "AIAA_API_KEY"),
            "{svc}: every service sends the key"
        );
        assert_eq!(
            env(c)["AIAA_OTLP_ENDPOINT"],
            "http://otel-collector.observability:4317",
            "{svc}"
        );
        if svc != "gateway" {
            assert_eq!(env(c)["AIAA_DRAIN_TIMEOUT"], "40s", "{svc}");
        }
    }
    // The gateway follows the datastore's longest session lifetime.
    let gw = r.deployment("gateway");
    assert_eq!(env(main_container(gw))["AIAA_GATEWAY_SESSION_MAX_EXPIRY"], "8h");
    assert_eq!(gw["spec"]["replicas"], 3);
    // The Ingress routes to the gateway's Service by its port's name.
    let ing = r.one("Ingress", "aiaa-gateway");
    let backend = &ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"];
    assert_eq!(backend["name"], "aiaa-gateway");
    assert_eq!(backend["port"]["name"], "http");
    assert_eq!(ing["spec"]["ingressClassName"], "nginx");
    // The ServiceMonitor selects every Service and scrapes ports they have.
    let sm = r.one("ServiceMonitor", "aiaa");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let selector = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let endpoints: BTreeSet<&str> = sm["spec"]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["path"], "/metrics");
            e["port"].as_str().unwrap()
        })
        .collect();
    let services = r.objects("Service");
    assert_eq!(services.len(), 5);
    for s in services {
        assert!(
            selector.iter().all(|(k, v)| &s["metadata"]["labels"][k] == v),
            "{}",
            s["metadata"]["name"]
        );
        let port = s["spec"]["ports"][0]["name"].as_str().unwrap();
        assert!(
            endpoints.contains(port),
            "{} port {port} is not scraped",
            s["metadata"]["name"]
        );
    }
    assert!(!r.notes().contains("WARNING"), "a key is set: {}", r.notes());

    // An existing Secret instead of the chart's; an exposed gateway without a key warns.
    let r = render_ok(&[], &[json!({"existingSecret": "platform-keys"})]);
    assert!(r.objects("Secret").is_empty());
    check_common(&r, &[], "platform-keys");
    let r = render_ok(&[], &[json!({"gateway": {"service": {"type": "LoadBalancer"}}})]);
    assert!(r.notes().contains("WARNING"), "{}", r.notes());
}

#[test]
fn chart_refuses_values_that_would_break_the_services_and_names_them() {
    for (values, says) in [
        // values.schema.json: typos, wrong types, numbers Helm would round.
        (
            json!({"inference": {"gpus": 1}}),
            "additional properties 'gpus' not allowed",
        ),
        (json!({"inference": {"gpu": -1}}), "/inference/gpu"),
        (
            json!({"env": {"AIAA_MAX_MESSAGE_BYTES": 8388608}}),
            "/env/AIAA_MAX_MESSAGE_BYTES",
        ),
        (
            json!({"env": {"RUST_LOG": "debug"}}),
            "invalid propertyName 'RUST_LOG'",
        ),
        (json!({"store": {"url": "/mnt/data"}}), "/store/url"),
        (
            json!({"models": {"weights": {"annotation_mri_brain": "annotation_mri_brain"}}}),
            "/models/weights/annotation_mri_brain",
        ),
        // The templates' own checks.
        (
            json!({"registry": {"env": {"AIAA_REGISTRY_LISTEN": "0.0.0.0:9"}}}),
            "registry.env (or env) sets AIAA_REGISTRY_LISTEN",
        ),
        (
            json!({"grpcEnv": {"AIAA_DRAIN_TIMEOUT": "50s"}}),
            "terminationGracePeriodSeconds=45 must exceed 50 s",
        ),
        (
            json!({"env": {"AIAA_DRAIN_TIMEOUT": "60s"}}),
            "env sets AIAA_DRAIN_TIMEOUT, which only the gRPC services read: set it in grpcEnv",
        ),
        (
            json!({"trainer": {"env": {"AIAA_TRAINER_CANCEL_GRACE": "5m"}}}),
            "trainer.terminationGracePeriodSeconds=120 must exceed 330 s",
        ),
        (
            json!({"grpcEnv": {"AIAA_DRAIN_TIMEOUT": "30 secs"}}),
            "AIAA_DRAIN_TIMEOUT=\"30 secs\"",
        ),
        (
            json!({"models": {"weights": {"annotation_mri_brain": null}}}),
            "models.weights has no entry for the engine pool's model \"annotation_mri_brain\"",
        ),
        (
            json!({"models": {"enginePool": "[{\"name\": \"x\", \"config_file\": \"/etc/x.json\"}]"}}),
            "config_file \"/etc/x.json\" must be a relative path",
        ),
        (
            json!({"models": {"enginePool": "[{\"name\": \"x\", \"config_file\": \"x/config.json\"}]", "weights": {"x": "aiaa/default/x:1"}}}),
            "names config_file \"x/config.json\", which is neither in models.configs",
        ),
    ] {
        let message = refused(values.clone());
        assert!(
            message.contains(says),
            "{values}: expected {says:?} in: {message}"
        );
    }
    // The schema validation is strict: a field Kubernetes does not know is reported.
    let r = render(&[], &[json!({"inference": {"affinity": {"nodeAfinity": {}}}})]);
    let invalid = r["invalid"].to_string();
    assert!(
        invalid.contains("Deployment/aiaa-inference") && invalid.contains("nodeAfinity"),
        "kubernetes-validate let an unknown field through: {invalid}"
    );
    // A model of the user's own, config and pool given as files' text, is mounted and pulled.
    let pool = r#"[{"name": "liver", "class": "SegmentationEngine", "module": "m", "config_file": "liver/config.json", "labels": ["liver"]}]"#;
    let r = render_ok(
        &[],
        &[json!({"models": {
            "enginePool": pool,
            "configs": {"liver/config.json": "{\"model_path\": \"model.pt\"}"},
            "weights": {"liver": "hospital/ct/liver:7"},
        }})],
    );
    let d = r.deployment("inference");
    assert!(
        pod(d)["initContainers"][0]["args"][0]
            .as_str()
            .unwrap()
            .contains("fetch liver hospital ct liver 7\n")
    );
    assert!(
        r.notes().contains("liver  <-  hospital/ct/liver:7"),
        "{}",
        r.notes()
    );
    assert!(
        r.notes().contains("aiaa push --registry http://127.0.0.1:5101 -o hospital -t ct -m liver -v 7 --engine-config liver/config.json"),
        "{}",
        r.notes()
    );
    assert!(
        !r.notes().contains("mri_brain"),
        "only the pool's models: {}",
        r.notes()
    );
    assert_eq!(
        r.one("ConfigMap", "aiaa-models")["data"]["liver__config.json"]
            .as_str()
            .map(str::trim),
        Some("{\"model_path\": \"model.pt\"}")
    );
}

/// `aiaa-<svc> env`: the variables the binary reads.
fn accepted(svc: &str) -> BTreeSet<String> {
    let out = Command::new(service_bin(&format!("aiaa-{svc}")))
        .arg("env")
        .output()
        .expect("run env");
    assert!(out.status.success(), "aiaa-{svc} env");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Lays the models ConfigMap out as the inference pod mounts it, under `dir`.
fn lay_out_models(r: &Rendered, dir: &Path) {
    let d = r.deployment("inference");
    let cm = r.one("ConfigMap", "aiaa-models");
    for m in main_container(d)["volumeMounts"].as_array().unwrap() {
        if m["name"] != "models-config" {
            continue;
        }
        let rel = m["mountPath"].as_str().unwrap().strip_prefix("/models/").unwrap();
        let target = dir.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(
            &target,
            cm["data"][m["subPath"].as_str().unwrap()].as_str().unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn chart_env_and_engine_pool_are_what_the_binaries_accept() {
    let tmp = tempfile::tempdir().unwrap();
    for (files, label) in [(&[][..], "default"), (&["values-gpu.yaml"][..], "gpu")] {
        let r = render_ok(
            files,
            &[json!({"telemetry": {"otlpEndpoint": "http://otel:4317"}, "auth": {"apiKey": "k"}})],
        );
        for svc in SERVICES {
            let known = accepted(svc);
            let c = main_container(r.deployment(svc));
            for name in env_names(c) {
                let stores = ["registry", "datastore", "trainer"].contains(&svc);
                assert!(
                    known.contains(&name) || (stores && STORE_ENV.contains(&name.as_str())),
                    "{label}: aiaa-{svc} does not read {name} (it reads: {known:?})"
                );
            }
            // The image sets the trainer's job command; the chart must not lose it.
            if svc == "trainer" {
                assert!(!env(c).contains_key("AIAA_TRAINER_COMMAND"));
            }
        }
        // Each service's check-config with the rendered env (the pod's paths mapped to
        // temporary folders; URLs are not dialled), exactly as the container would run it.
        if label != "default" {
            continue; // the GPU values ask for cuda, which this machine has not
        }
        let models = tmp.path().join("models");
        lay_out_models(&r, &models);
        for svc in SERVICES {
            let c = main_container(r.deployment(svc));
            let mut cmd = Command::new(service_bin(&format!("aiaa-{svc}")));
            cmd.arg("check-config").env_clear();
            for (k, v) in env(c) {
                let v = v
                    .replace("/models", models.to_str().unwrap())
                    .replace("/var/lib/aiaa-trainer", tmp.path().join("work").to_str().unwrap());
                let v = if v == "/data" {
                    tmp.path().join("data").display().to_string()
                } else {
                    v
                };
                cmd.env(k, v);
            }
            let out = cmd.output().expect("run check-config");
            assert!(
                out.status.success(),
                "aiaa-{svc} check-config refuses the chart's configuration: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    // And it does refuse a pool it cannot load: the check is not a formality.
    let r = render_ok(
        &[],
        &[json!({"models": {
            "enginePool": r#"[{"name": "x", "class": "NoSuchEngine", "module": "m", "config_file": "x/config.json", "labels": []}]"#,
            "configs": {"x/config.json": "{\"model_path\": \"model.pt\"}"},
            "weights": {"x": "aiaa/default/x:1"},
        }})],
    );
    let bad = tmp.path().join("bad");
    lay_out_models(&r, &bad);
    let out = Command::new(service_bin("aiaa-inference"))
        .arg("check-config")
        .env("AIAA_ENGINE_POOL", bad.join("engine_pool.json"))
        .env("AIAA_INFERENCE_DEVICE", "cpu")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NoSuchEngine"));
}
