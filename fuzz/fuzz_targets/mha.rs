//! Fuzz target: the MetaImage reader (LOCAL data only) must not panic on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = aiaa_imaging::ReadOptions {
        max_bytes: 64 << 20,
    };
    let _ = aiaa_imaging::mha::read_bytes(std::path::Path::new("fuzz.mha"), data, &opts, |name| {
        Err(aiaa_imaging::ImagingError::InvalidArgument(format!(
            "no external file {name}"
        )))
    });
});
