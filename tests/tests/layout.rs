//! The source layout (project issue 13): no `.rs` file under a workspace member's `src/` is
//! over [`LIMIT`] lines, except the cohesive single-format readers of [`ALLOWED`], each with
//! its reason. The members are read from the root `Cargo.toml`, so a new crate is covered
//! without touching this test. The allow-list is kept honest: an entry whose file is gone or
//! no longer over the limit fails too.

use std::path::{Path, PathBuf};

/// The most lines a source file may have.
const LIMIT: usize = 800;

/// Files allowed over [`LIMIT`] (paths relative to the repository root), with why: one file
/// format each, read (and written) in one place.
const ALLOWED: &[(&str, &str)] = &[
    (
        "crates/imaging/src/nrrd.rs",
        "the NRRD reader and writer (.nrrd/.nhdr, raw or gzip): one format",
    ),
    (
        "crates/imaging/src/dicom/prescan.rs",
        "the DICOM length pre-scan: one walk of the DICOM file structure",
    ),
];

/// The workspace members, from the root `Cargo.toml`'s `members = [...]`.
fn members(root: &Path) -> Vec<String> {
    let manifest = root.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let start = text
        .find("members = [")
        .unwrap_or_else(|| panic!("{}: no `members = [`", manifest.display()));
    let list = &text[start + "members = [".len()..];
    let end = list
        .find(']')
        .unwrap_or_else(|| panic!("{}: `members = [` is not closed", manifest.display()));
    let members: Vec<String> = list[..end]
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect();
    assert!(
        members.iter().all(|m| !m.contains('*')),
        "{}: a glob among the members ({members:?}); list them or teach this test globs",
        manifest.display()
    );
    members
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .count()
}

/// Every `.rs` file under the members' `src/`, relative to `root` (`/`-separated), with its
/// line count.
fn sources(root: &Path) -> Vec<(String, usize)> {
    let mut files = Vec::new();
    for member in members(root) {
        let src = root.join(&member).join("src");
        assert!(src.is_dir(), "member {member} has no src/ ({})", src.display());
        rust_files(&src, &mut files);
    }
    let mut out: Vec<(String, usize)> = files
        .iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap_or(p);
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            (rel, line_count(p))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn no_source_file_is_over_the_limit() {
    let root = aiaa_testdata::repo_root();
    let all = sources(&root);
    assert!(
        all.iter().any(|(p, _)| p == "cli/src/main.rs"),
        "the walk found no cli/src/main.rs under {}: {} files",
        root.display(),
        all.len()
    );
    let offenders: Vec<String> = all
        .iter()
        .filter(|(p, n)| *n > LIMIT && !ALLOWED.iter().any(|(a, _)| a == p))
        .map(|(p, n)| format!("  {p}: {n} lines"))
        .collect();
    assert!(
        offenders.is_empty(),
        "source files over {LIMIT} lines (split them by role into a module folder, or, for a \
         cohesive single-format reader, add them to ALLOWED in tests/tests/layout.rs with the \
         reason):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_allow_list_is_honest() {
    let root = aiaa_testdata::repo_root();
    let all = sources(&root);
    let stale: Vec<String> = ALLOWED
        .iter()
        .filter_map(|(p, why)| match all.iter().find(|(f, _)| f == p) {
            None => Some(format!("  {p} ({why}): no such file under a member's src/")),
            Some((_, n)) if *n <= LIMIT => Some(format!("  {p} ({why}): {n} lines, no longer over {LIMIT}")),
            Some(_) => None,
        })
        .collect();
    assert!(
        stale.is_empty(),
        "ALLOWED in tests/tests/layout.rs names files it need not (remove them):\n{}",
        stale.join("\n")
    );
}
