//! Which way dependencies point (issue 13), read from the manifests so a new dependency
//! that breaks it fails here: no crate under `crates/` depends on a crate under
//! `services/`; no service depends on another service's crate; `crates/engines` and
//! `crates/train` depend on neither tonic nor the generated protos (their edge is plain Rust
//! types), nor does `crates/jit`; the gateway, registry and datastore reach no libtorch
//! (tch, torch-sys, the link helper, the jit shim) through their normal dependencies.
//!
//! Normal, dev and build dependencies all count, with one named exception ([`KNOWN`]): a
//! service's tests that start another service in-process. The manifests are read line by
//! line (the workspace's style: one dependency a line, `name.workspace = true` or
//! `name = ...`).

/// Service-to-service dev-dependencies that exist today, to be removed (the tests would
/// start the other service through the e2e harness instead); a new one fails the test.
const KNOWN: &[(&str, &str)] = &[
    // services/gateway/tests/common: an in-process datastore for the gateway's own tests.
    ("aiaa-gateway", "aiaa-datastore"),
];

use std::collections::BTreeMap;

/// A package of the workspace: its name, its folder (`crates/x`, `services/x`) and every
/// dependency it names.
#[derive(Debug)]
struct Manifest {
    name: String,
    dir: String,
    /// `(dependency, section)`, e.g. `("tch", "dependencies")`.
    deps: Vec<(String, String)>,
}

use aiaa_testdata::repo_root;

fn read(dir: &str) -> Manifest {
    let path = repo_root().join(dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut section = String::new();
    let mut name = None;
    let mut deps = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_string();
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if section == "package" && key == "name" {
            name = Some(value.trim().trim_matches('"').to_string());
        }
        // [dependencies], [dev-dependencies], [build-dependencies], [target.'...'.dependencies]
        if section.ends_with("dependencies") {
            let dep = key.split('.').next().unwrap_or(key).trim_matches('"');
            deps.push((dep.to_string(), section.clone()));
        }
    }
    Manifest {
        name: name.unwrap_or_else(|| panic!("{}: no [package] name", path.display())),
        dir: dir.to_string(),
        deps,
    }
}

/// Every package under `crates/` and `services/`.
fn manifests() -> Vec<Manifest> {
    let mut out = Vec::new();
    for top in ["crates", "services"] {
        let mut dirs: Vec<_> = std::fs::read_dir(repo_root().join(top))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("Cargo.toml").is_file())
            .map(|e| format!("{top}/{}", e.file_name().to_string_lossy()))
            .collect();
        dirs.sort();
        out.extend(dirs.iter().map(|d| read(d)));
    }
    out
}

#[test]
fn dependencies_point_down() {
    let all = manifests();
    let by_name: BTreeMap<&str, &Manifest> = all.iter().map(|m| (m.name.as_str(), m)).collect();
    assert!(by_name.contains_key("aiaa-engines"), "{all:#?}");
    assert!(by_name.contains_key("aiaa-inference"), "{all:#?}");
    assert!(by_name.contains_key("aiaa-train"), "{all:#?}");
    let mut wrong = Vec::new();
    for m in &all {
        for (dep, section) in &m.deps {
            let Some(target) = by_name.get(dep.as_str()) else {
                continue;
            };
            let service = target.dir.starts_with("services/");
            if m.dir.starts_with("crates/") && service {
                wrong.push(format!("{} ({}) depends on the service {dep}", m.name, m.dir));
            }
            let known = section == "dev-dependencies" && KNOWN.contains(&(m.name.as_str(), dep.as_str()));
            if m.dir.starts_with("services/") && service && target.name != m.name && !known {
                wrong.push(format!(
                    "the service {} depends on another service's crate {dep}",
                    m.name
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "dependencies that point the wrong way:\n{}",
        wrong.join("\n")
    );
}

/// gRPC and the generated protos: what a crate with a plain Rust edge must not depend on.
const GRPC: &[&str] = &[
    "tonic",
    "tonic-prost",
    "tonic-health",
    "tonic-reflection",
    "aiaa-proto",
];

/// `dir`'s package is `name`, links libtorch (tch) and depends on none of `banned`.
fn assert_plain_edge(dir: &str, name: &str, banned: &[&str]) {
    let m = read(dir);
    assert_eq!(m.name, name);
    assert!(m.deps.iter().any(|(d, _)| d == "tch"), "{m:?}");
    for banned in banned {
        assert!(
            !m.deps.iter().any(|(d, _)| d == banned),
            "{dir} depends on {banned}: its edge must be plain Rust types"
        );
    }
}

#[test]
fn the_engines_have_no_grpc_at_their_edge() {
    let mut banned = GRPC.to_vec();
    banned.extend(["prost", "prost-types"]);
    assert_plain_edge("crates/engines", "aiaa-engines", &banned);
}

/// The TorchScript serving path (aiaa-jit, under the engines and the training core's export):
/// libtorch and nothing of the services.
#[test]
fn the_jit_crate_has_no_grpc_and_no_service() {
    let mut banned = GRPC.to_vec();
    banned.push("aiaa-runtime");
    assert_plain_edge("crates/jit", "aiaa-jit", &banned);
}

/// The training core: no gRPC, no protos, no service, nor the services' runtime (the trainer
/// service runs it through the `aiaa` command). `prost` is allowed: TensorBoard's event
/// records are protobuf messages written to a file.
#[test]
fn the_training_core_has_no_grpc_and_no_service() {
    let mut banned = GRPC.to_vec();
    banned.push("aiaa-runtime");
    let services: Vec<String> = manifests()
        .into_iter()
        .filter(|m| m.dir.starts_with("services/"))
        .map(|m| m.name)
        .collect();
    assert!(services.iter().any(|s| s == "aiaa-trainer"), "{services:?}");
    banned.extend(services.iter().map(String::as_str));
    assert_plain_edge("crates/train", "aiaa-train", &banned);
}

/// The gateway, registry and datastore images carry no libtorch, and `aiaa-convert` (the
/// binary `aiaa convert` hands over to, so a conversion does not pay libtorch's start-up)
/// loads none: nothing they depend on (normal dependencies, followed through the
/// workspace's crates, as `cargo tree -e normal` would) names tch, torch-sys or the libtorch
/// link helper.
#[test]
fn the_services_without_models_do_not_reach_libtorch() {
    let all = manifests();
    let by_name: BTreeMap<&str, &Manifest> = all.iter().map(|m| (m.name.as_str(), m)).collect();
    // aiaa-jit builds a C++ shim against libtorch: a service reaching it needs libtorch too.
    let torch = ["tch", "torch-sys", "aiaa-torch-link", "aiaa-jit"];
    for service in ["aiaa-gateway", "aiaa-registry", "aiaa-datastore", "aiaa-convert"] {
        let mut seen = vec![service];
        let mut path: BTreeMap<&str, &str> = BTreeMap::new();
        let mut i = 0;
        while i < seen.len() {
            let m = by_name[seen[i]];
            for (dep, section) in &m.deps {
                if section != "dependencies" && !section.ends_with(".dependencies") {
                    continue;
                }
                assert!(
                    !torch.contains(&dep.as_str()),
                    "{service} reaches {dep} through {}: it would need (and load) libtorch",
                    chain(&path, m.name.as_str())
                );
                if let Some((name, _)) = by_name.get_key_value(dep.as_str())
                    && !seen.contains(name)
                {
                    seen.push(name);
                    path.insert(name, m.name.as_str());
                }
            }
            i += 1;
        }
        // The walk did follow the workspace: the gateway reaches imaging and files.
        if service == "aiaa-gateway" {
            assert!(
                seen.contains(&"aiaa-imaging") && seen.contains(&"aiaa-files"),
                "{seen:?}"
            );
        }
    }
    // And the check can fail: inference reaches libtorch.
    let inference = by_name["aiaa-inference"];
    assert!(
        inference.deps.iter().any(|(d, _)| torch.contains(&d.as_str())),
        "{inference:?}"
    );
}

/// `a <- b <- ... <- service`, from the walk's parents.
fn chain(parents: &BTreeMap<&str, &str>, from: &str) -> String {
    let mut out = vec![from.to_string()];
    let mut at = from;
    while let Some(parent) = parents.get(at) {
        out.push((*parent).to_string());
        at = parent;
    }
    out.join(" <- ")
}
