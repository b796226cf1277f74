//! Shared helpers for the integration tests: locating the real test data.

use std::path::PathBuf;

/// The test data directory: `$AIAA_TESTDATA` or the repository's `testdata/`. Panics with
/// instructions when it is missing (tests must not silently skip).
pub fn testdata() -> PathBuf {
    let dir = std::env::var_os("AIAA_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata"));
    assert!(
        dir.join("mni152/MNI152_T1.nii.gz").is_file(),
        "test data missing at {}: run scripts/fetch-test-data.sh (or set AIAA_TESTDATA)",
        dir.display()
    );
    dir
}

/// Path of one test file.
#[allow(dead_code)] // not every test binary uses it
pub fn data(rel: &str) -> PathBuf {
    testdata().join(rel)
}
