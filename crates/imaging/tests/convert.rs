//! Directory conversion: outputs per input, resampling, label mode, overwrite refusal.

mod common;

use std::path::Path;

use aiaa_imaging::convert::{ConvertOptions, Event, convert_dir};
use aiaa_imaging::{ImagingError, VoxelType, io};

fn options(input: &Path, output: &Path, ins: &str, outs: &str) -> ConvertOptions {
    ConvertOptions {
        input_dir: input.to_path_buf(),
        output_dir: output.to_path_buf(),
        input_suffix: ins.into(),
        output_suffix: outs.into(),
        spacing: None,
        label: false,
        overwrite: false,
        read: Default::default(),
    }
}

#[test]
fn converts_a_tree_of_nifti_files_with_resampling_and_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    std::fs::copy(common::data("robex/atlas_mask.nii.gz"), input.join("mask.nii.gz")).unwrap();
    std::fs::copy(common::data("nibabel/anatomical.nii"), input.join("sub/anat.nii")).unwrap();
    std::fs::write(input.join("notes.txt"), "ignored").unwrap();
    let out = tmp.path().join("out");
    let mut o = options(&input, &out, ".nii.gz", ".mha");
    o.spacing = Some([3.0; 3]);
    o.label = true;
    let mut events = Vec::new();
    let r = convert_dir(&o, &mut |e| events.push(format!("{e:?}"))).unwrap();
    assert_eq!(r.converted.len(), 1);
    assert!(events.iter().any(|e| e.contains("Planned { total: 1 }")));
    let m = io::read_volume(&out.join("mask.mha"), &Default::default()).unwrap();
    assert_eq!(m.geometry.spacing, [3.0; 3]);
    assert_eq!(m.dims, [58, 75, 78]);
    // .nii inputs, in a subdirectory, mirrored.
    let o2 = options(&input, &out, ".nii", ".nii.gz");
    convert_dir(&o2, &mut |_| {}).unwrap();
    let a = io::read_volume(&out.join("sub/anat.nii.gz"), &Default::default()).unwrap();
    let src = io::read_volume(&common::data("nibabel/anatomical.nii"), &Default::default()).unwrap();
    assert_eq!(a, src);
    // No temp files left behind.
    let leftovers: Vec<_> = walk(&out)
        .into_iter()
        .filter(|p| p.contains(".aiaa-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p.display().to_string());
        }
    }
    v
}

#[test]
fn refuses_to_overwrite_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(common::data("nibabel/anatomical.nii"), input.join("a.nii")).unwrap();
    let out = tmp.path().join("out");
    let mut o = options(&input, &out, "nii", "nii.gz");
    convert_dir(&o, &mut |_| {}).unwrap();
    let e = convert_dir(&o, &mut |_| {}).unwrap_err();
    assert!(matches!(e, ImagingError::OutputExists { .. }), "{e}");
    assert!(e.to_string().contains("a.nii.gz"), "{e}");
    o.overwrite = true;
    convert_dir(&o, &mut |_| {}).unwrap();
}

#[test]
fn dicom_series_become_one_volume_each() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("dcm");
    let series = input.join("patient1/ct");
    std::fs::create_dir_all(&series).unwrap();
    for e in std::fs::read_dir(common::data("pydicom/dicomdirtests/98892001/CT5N")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(
            &p,
            series.join(format!("{}.dcm", p.file_name().unwrap().to_string_lossy())),
        )
        .unwrap();
    }
    std::fs::write(series.join("junk.dcm"), b"not dicom").unwrap();
    let out = tmp.path().join("out");
    let mut o = options(&input, &out, ".dcm", ".nii.gz");
    o.spacing = Some([1.0; 3]);
    let mut skipped = 0;
    let r = convert_dir(&o, &mut |e| {
        if let Event::Skipped { .. } = e {
            skipped += 1
        }
    })
    .unwrap();
    assert_eq!(skipped, 1);
    assert_eq!(r.converted.len(), 1);
    let v = io::read_volume(&out.join("patient1/ct.nii.gz"), &Default::default()).unwrap();
    assert_eq!(v.geometry.spacing, [1.0; 3]);
    assert_eq!(v.voxel_type(), VoxelType::I16);
    assert_eq!(v.dims, [8, 8, 13]);
}

#[test]
fn bad_suffixes_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(convert_dir(&options(tmp.path(), tmp.path(), ".jpg", ".nii"), &mut |_| {}).is_err());
    assert!(convert_dir(&options(tmp.path(), tmp.path(), ".nii", ".dcm"), &mut |_| {}).is_err());
}
