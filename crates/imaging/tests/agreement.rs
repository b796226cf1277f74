//! Runs scripts/imaging/compare_sitk.py (SimpleITK + nibabel as independent readers) against
//! the `dump` example, in the project's Python environment (scripts/python-env.sh, created on
//! first use).

mod common;

use std::path::PathBuf;
use std::process::Command;

use aiaa_testdata::repo_root;

fn dump_example() -> PathBuf {
    // target/<profile>/deps/agreement-<hash> -> target/<profile>/examples/dump
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().join("examples");
    let p = dir.join(format!("dump{}", std::env::consts::EXE_SUFFIX));
    assert!(
        p.is_file(),
        "{} missing: `cargo test` builds examples; run it for the whole package",
        p.display()
    );
    p
}

#[test]
fn agrees_with_simpleitk_and_nibabel() {
    let data = common::testdata();
    let root = repo_root();
    let out = Command::new(aiaa_testdata::python())
        .arg(root.join("scripts/imaging/compare_sitk.py"))
        .arg("--dump")
        .arg(dump_example())
        .arg("--testdata")
        .arg(&data)
        .output()
        .expect("run compare_sitk.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "compare_sitk.py reported disagreements:\n{text}"
    );
    assert!(text.contains("0 failure(s)"), "{text}");
}
