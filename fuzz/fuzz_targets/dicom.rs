//! Fuzz target: reading one DICOM object from bytes must not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = aiaa_imaging::ReadOptions {
        max_bytes: 64 << 20,
    };
    let _ = aiaa_imaging::dicom::read_bytes(std::path::Path::new("fuzz.dcm"), data, &opts);
});
