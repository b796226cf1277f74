//! Fuzz target: the NIfTI reader must return errors, never panic, on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let opts = aiaa_imaging::ReadOptions {
        max_bytes: 64 << 20,
    };
    let _ = aiaa_imaging::nifti::read_bytes(std::path::Path::new("fuzz.nii"), data, &opts);
});
