//! Shared helpers for the integration tests: the real test data ([`aiaa_testdata`]).

#[allow(unused_imports)] // not every test binary uses both
pub use aiaa_testdata::{data, testdata};
