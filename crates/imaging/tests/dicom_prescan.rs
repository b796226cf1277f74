//! The DICOM length pre-scan (`dicom::prescan`): every file of testdata/pydicom that
//! dicom-object reads passes it, and the fuzz inputs that made dicom-object reserve
//! gigabytes are refused by it, quickly, with an error naming the file and the element.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aiaa_imaging::{ReadOptions, dicom};
use dicom_dictionary_std::tags;
use dicom_object::OpenFileOptions;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn every_file_dicom_object_reads_passes_the_prescan() {
    let mut all = Vec::new();
    files(&common::data("pydicom"), &mut all);
    all.sort();
    let (mut read, mut headers) = (0, 0);
    for p in &all {
        let bytes = std::fs::read(p).unwrap();
        if OpenFileOptions::new().open_file(p).is_ok() {
            read += 1;
            dicom::prescan::check_file(p, None).unwrap_or_else(|e| panic!("{e}"));
            dicom::prescan::check_bytes(p, &bytes, None).unwrap_or_else(|e| panic!("{e}"));
        }
        if OpenFileOptions::new()
            .read_until(tags::PIXEL_DATA)
            .open_file(p)
            .is_ok()
        {
            headers += 1;
            dicom::prescan::check_file(p, Some(tags::PIXEL_DATA)).unwrap_or_else(|e| panic!("{e}"));
        }
        if OpenFileOptions::new().from_reader(&bytes[..]).is_ok() {
            dicom::prescan::check_bytes(p, &bytes, None).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // testdata/pydicom: ~150 files, most of them readable DICOM
    assert!(
        read > 100 && headers >= read,
        "{read} / {headers} of {}",
        all.len()
    );
}

#[test]
fn truncated_pixel_data_is_refused_by_the_prescan() {
    let p = common::data("pydicom/MR_truncated.dcm");
    let e = dicom::prescan::check_file(&p, None).unwrap_err().to_string();
    assert!(e.contains("MR_truncated.dcm") && e.contains("(7FE0,0010)"), "{e}");
    // the header alone is fine
    dicom::prescan::check_file(&p, Some(tags::PIXEL_DATA)).unwrap();
}

/// Fuzz inputs (fuzz/artifacts/dicom/oom-*) on which dicom-object 0.10.1 reserved 2-4 GB
/// for a declared element length: the prescan refuses each one before dicom-object sees
/// it, so no such allocation happens.
#[test]
fn oom_fuzz_inputs_are_refused_before_dicom_object() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !(name.starts_with("dicom-oom-") || name == "dicom-huge-element-length.dcm") {
            continue;
        }
        n += 1;
        let bytes = std::fs::read(&p).unwrap();
        let t = Instant::now();
        let e = dicom::prescan::check_bytes(&p, &bytes, None)
            .expect_err(&name)
            .to_string();
        assert!(e.contains(&name) && e.contains("declares a value of"), "{e}");
        let e2 = dicom::prescan::check_file(&p, None).expect_err(&name).to_string();
        assert_eq!(e, e2);
        // and the reader returns that error
        let e3 = dicom::read_bytes(&p, &bytes, &ReadOptions { max_bytes: 64 << 20 })
            .expect_err(&name)
            .to_string();
        assert_eq!(e, e3);
        assert!(t.elapsed() < Duration::from_secs(2), "{name}: {:?}", t.elapsed());
    }
    assert_eq!(n, 8);
}

/// All `oom-*` inputs of the fuzz run, where that (git-ignored) directory exists.
#[test]
fn all_oom_artifacts_are_refused_when_present() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/artifacts/dicom");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    for e in rd {
        let p = e.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("oom-") {
            let bytes = std::fs::read(&p).unwrap();
            let e = dicom::prescan::check_bytes(&p, &bytes, None).expect_err(&p.display().to_string());
            assert!(e.to_string().contains("declares a value of"), "{e}");
        }
    }
}
