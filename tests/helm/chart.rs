//! Renders the Helm chart `helm/aiaa` for the chart's test binaries (`helm`, `helm_containers`)
//! through `tests/helm/chart.py` (Helm's library: `helm lint --strict`, `helm template`, and
//! the Kubernetes JSON schemas), and reads the rendered objects.
#![allow(dead_code)] // each test binary uses its own part

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use aiaa_e2e::{python_env, repo_root};
use serde_json::{Value, json};

/// The Kubernetes versions the objects are validated against: the chart's kubeVersion floor
/// (native gRPC probes are GA there) and a recent one.
pub const KUBE_VERSIONS: [&str; 2] = ["1.27.0", "1.37.0"];
pub const SERVICES: [&str; 5] = ["registry", "datastore", "inference", "trainer", "gateway"];
/// Variables a service reads outside its own flags: the object store's (object_store's
/// `from_env`), given only to the services that keep data.
pub const STORE_ENV: [&str; 4] = [
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
];

pub fn chart_dir() -> PathBuf {
    repo_root().join("helm/aiaa")
}

/// `chart.py`'s report for the chart with these values files (relative to the chart) and
/// values merged over them; `--name aiaa` so that resources are called `aiaa-<service>`.
pub fn render(files: &[&str], set: &[Value]) -> Value {
    let mut cmd = Command::new(python_env().join("bin/python"));
    cmd.arg(repo_root().join("tests/helm/chart.py")).arg(chart_dir());
    for f in files {
        cmd.arg("-f").arg(chart_dir().join(f));
    }
    for v in set {
        cmd.arg("--set-json").arg(v.to_string());
    }
    for k in KUBE_VERSIONS {
        cmd.args(["--kube-version", k]);
    }
    let out = cmd.output().expect("run tests/helm/chart.py");
    assert!(
        out.status.success(),
        "chart.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "chart.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A rendering the chart accepted, linted without warnings and valid for every version.
pub fn render_ok(files: &[&str], set: &[Value]) -> Rendered {
    let r = render(files, set);
    assert!(
        r.get("error").is_none(),
        "{files:?} {set:?}: the chart refused: {}",
        r["error"]
    );
    for m in r["lint"]["messages"].as_array().expect("lint messages") {
        // 1 is INFO ("icon is recommended"); 2 WARNING, 3 ERROR.
        assert!(m["severity"].as_i64() < Some(2), "{files:?}: helm lint: {m}");
    }
    assert_eq!(r["lint"]["errors"], json!([]), "{files:?}: helm lint");
    assert_eq!(
        r["invalid"],
        json!([]),
        "{files:?} {set:?}: objects the Kubernetes schemas refuse"
    );
    let unvalidated: Vec<&str> = r["unvalidated"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        unvalidated.iter().all(|n| n.starts_with("ServiceMonitor/")),
        "only the ServiceMonitor (a CRD) lacks a Kubernetes schema: {unvalidated:?}"
    );
    Rendered(r)
}

/// The message of a rendering the chart refused.
pub fn refused(set: Value) -> String {
    let r = render(&[], std::slice::from_ref(&set));
    r["error"]
        .as_str()
        .unwrap_or_else(|| panic!("the chart accepted {set}"))
        .to_string()
}

pub struct Rendered(pub Value);

impl Rendered {
    pub fn objects(&self, kind: &str) -> Vec<&Value> {
        self.0["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == kind)
            .collect()
    }
    pub fn one(&self, kind: &str, name: &str) -> &Value {
        let found: Vec<&Value> = self
            .objects(kind)
            .into_iter()
            .filter(|o| o["metadata"]["name"] == name)
            .collect();
        assert_eq!(found.len(), 1, "{kind}/{name}");
        found[0]
    }
    pub fn deployment(&self, svc: &str) -> &Value {
        self.one("Deployment", &format!("aiaa-{svc}"))
    }
    pub fn notes(&self) -> &str {
        self.0["notes"].as_str().unwrap_or_default()
    }
}

pub fn pod(d: &Value) -> &Value {
    &d["spec"]["template"]["spec"]
}

pub fn main_container(d: &Value) -> &Value {
    let containers = pod(d)["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1, "one container per pod");
    &containers[0]
}

pub fn all_containers(d: &Value) -> Vec<&Value> {
    let p = pod(d);
    let mut out: Vec<&Value> = p["containers"].as_array().unwrap().iter().collect();
    if let Some(init) = p["initContainers"].as_array() {
        out.extend(init);
    }
    out
}

/// The container's env variables with literal values (secrets are left out).
pub fn env(c: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap().to_string();
        if let Some(v) = e["value"].as_str() {
            assert!(out.insert(name.clone(), v.to_string()).is_none(), "{name} twice");
        }
    }
    out
}

pub fn env_names(c: &Value) -> Vec<String> {
    c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

pub fn port(c: &Value, name: &str) -> i64 {
    c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{}: no port {name}", c["name"]))["containerPort"]
        .as_i64()
        .unwrap()
}

pub fn gpus(c: &Value) -> Option<i64> {
    let r = &c["resources"];
    r["limits"]["nvidia.com/gpu"]
        .as_i64()
        .or(r["requests"]["nvidia.com/gpu"].as_i64())
}
