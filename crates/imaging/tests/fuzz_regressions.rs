//! Inputs found by the cargo-fuzz targets (fuzz/, see docs/imaging.md), kept as
//! regression tests: every reader returns an error, never panics.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use aiaa_imaging::{ReadOptions, dicom, nifti};

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn data(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn opts() -> ReadOptions {
    ReadOptions { max_bytes: 64 << 20 }
}

/// One test (not several) so the panic hook sees only this file's reads.
#[test]
fn fuzz_findings_are_errors() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        prev(info);
    }));

    // RLE fragment whose segment decodes to fewer than Rows x Columns bytes: dicom-rs's
    // RLE decoder indexes past its buffer. Rejected by our check before the decoder runs,
    // so nothing panics, not even inside catch_unwind.
    let rle = data("dicom-rle-short-segment.dcm");
    let err = dicom::read_bytes(Path::new("rle.dcm"), &rle, &opts()).unwrap_err();
    assert!(err.to_string().contains("RLE"), "{err}");
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "RLE input reached a panic");

    // NIfTI-2 header whose i64 dims multiply past u128: the size check saturates.
    let n2 = data("nifti-dims-product-overflow.nii");
    assert!(nifti::read_bytes(Path::new("n2.nii"), &n2, &opts()).is_err());
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "NIfTI input reached a panic");

    // An element length of ~3.7 GB in a 674-byte file: refused by the length pre-scan
    // (dicom::prescan) before dicom-object could reserve that much. The other such inputs
    // (dicom-oom-*.dcm) are checked in tests/dicom_prescan.rs.
    let big = data("dicom-huge-element-length.dcm");
    let err = dicom::read_bytes(Path::new("big.dcm"), &big, &opts()).unwrap_err();
    assert!(err.to_string().contains("declares a value of"), "{err}");

    // Corrupt JPEG 2000 codestream (its SIZ marker agrees with Rows/Columns/Samples, so no
    // cheap header check tells it apart): in the fuzz build (debug assertions, UB checks) openjp2
    // trips a "dealloc with a mismatched layout" check while freeing its tile, a panic
    // that catch_unwind in the assembler contains; plain builds decode or fail. Either way
    // the call returns.
    let j2k = data("dicom-j2k-openjp2-panic.dcm");
    let _ = dicom::read_bytes(Path::new("j2k.dcm"), &j2k, &opts());

    // JPEG baseline frame larger than Rows x Columns: dicom-rs's JPEG adapter (jpeg.rs:81)
    // would slice its destination out of range. Rejected by our frame-header check before
    // the decoder runs, so nothing panics.
    let before = PANICS.load(Ordering::SeqCst);
    let jpeg = data("dicom-jpeg-frame-overflows-buffer.dcm");
    let err = dicom::read_bytes(Path::new("jpeg.dcm"), &jpeg, &opts()).unwrap_err();
    assert!(err.to_string().contains("JPEG"), "{err}");
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        before,
        "JPEG input reached a panic"
    );
    let _ = std::panic::take_hook();
}
