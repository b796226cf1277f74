//! NIfTI reading and writing on real files, and clear errors on bad ones.

mod common;

use aiaa_imaging::{ImagingError, ReadOptions, VoxelType, io, nifti};

fn opts() -> ReadOptions {
    ReadOptions::default()
}

#[test]
fn mni152_reads_with_itk_geometry() {
    let v = io::read_volume(&common::data("mni152/MNI152_T1.nii.gz"), &opts()).unwrap();
    assert_eq!(v.dims, [182, 218, 182]);
    assert_eq!(v.voxel_type(), VoxelType::I16);
    assert_eq!(v.geometry.spacing, [1.0; 3]);
    let want = [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]];
    let got: Vec<f64> = v.geometry.direction.iter().flatten().map(|x| x + 0.0).collect();
    assert_eq!(got, want.iter().flatten().copied().collect::<Vec<f64>>());
    let (lo, hi) = v.voxels.min_max().unwrap();
    assert!(lo >= 0.0 && hi > 1000.0, "{lo} {hi}");
}

#[test]
fn round_trip_nii_and_gz_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    for src in [
        "robex/atlas.nii.gz",
        "nibabel/reoriented_anat_moved.nii",
        "nibabel/example4d.nii.gz",
    ] {
        let v = io::read_volume(&common::data(src), &opts()).unwrap();
        for ext in ["nii", "nii.gz"] {
            let out = dir.path().join(format!("o.{ext}"));
            io::write_volume(&v, &out).unwrap();
            let back = io::read_volume(&out, &opts()).unwrap();
            assert_eq!(back.voxels, v.voxels, "{src} -> {ext}");
            assert_eq!((back.dims, back.channels), (v.dims, v.channels));
            assert!(
                back.geometry.approx_eq(&v.geometry, 1e-5),
                "{src}: {:?} vs {:?}",
                back.geometry,
                v.geometry
            );
        }
    }
}

#[test]
fn nifti2_and_4d_become_channels() {
    let v = io::read_volume(&common::data("nibabel/example_nifti2.nii.gz"), &opts()).unwrap();
    assert_eq!((v.dims, v.channels), ([32, 20, 12], 2));
    let v4 = io::read_volume(&common::data("nibabel/example4d.nii.gz"), &opts()).unwrap();
    assert_eq!((v4.dims, v4.channels), ([128, 96, 24], 2));
    assert!((v.geometry.spacing[2] - 2.2).abs() < 1e-5);
}

#[test]
fn size_limit_is_checked_before_allocating() {
    let small = ReadOptions { max_bytes: 1000 };
    let e = io::read_volume(&common::data("mni152/MNI152_T1.nii.gz"), &small).unwrap_err();
    assert!(matches!(e, ImagingError::TooLarge { .. }), "{e}");
    assert!(e.to_string().contains("MNI152_T1.nii.gz"));
}

#[test]
fn truncated_gzip_is_a_clear_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(common::data("mni152/MNI152_T1.nii.gz")).unwrap();
    let p = dir.path().join("cut.nii.gz");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    let e = io::read_volume(&p, &opts()).unwrap_err().to_string();
    assert!(e.contains("cut.nii.gz") && e.contains("truncated"), "{e}");
    // Our own (indexed, multi-member) gzip output truncated too.
    let v = io::read_volume(&common::data("nibabel/anatomical.nii"), &opts()).unwrap();
    let q = dir.path().join("ours.nii.gz");
    io::write_volume(&v, &q).unwrap();
    let b = std::fs::read(&q).unwrap();
    std::fs::write(&q, &b[..b.len() - 10]).unwrap();
    let e = io::read_volume(&q, &opts()).unwrap_err().to_string();
    assert!(e.contains("ours.nii.gz") && e.contains("truncated"), "{e}");
}

fn header_bytes() -> Vec<u8> {
    let v = io::read_volume(&common::data("nibabel/anatomical.nii"), &opts()).unwrap();
    nifti::to_bytes(&v, false).unwrap()
}

#[test]
fn bad_headers_are_rejected() {
    let p = std::path::Path::new("bad.nii");
    let mut b = header_bytes();
    b[42..44].copy_from_slice(&0i16.to_le_bytes()); // dim[1] = 0
    let e = nifti::read_bytes(p, &b, &opts()).unwrap_err().to_string();
    assert!(e.contains("bad.nii") && e.contains("dim[1]"), "{e}");
    let mut b = header_bytes();
    b[42..44].copy_from_slice(&(-5i16).to_le_bytes());
    assert!(nifti::read_bytes(p, &b, &opts()).is_err());
    let mut b = header_bytes();
    b[70..72].copy_from_slice(&2048i16.to_le_bytes()); // complex128
    let e = nifti::read_bytes(p, &b, &opts()).unwrap_err();
    assert!(matches!(e, ImagingError::Unsupported { .. }), "{e}");
    let b = header_bytes();
    let e = nifti::read_bytes(p, &b[..200], &opts()).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    let e = nifti::read_bytes(p, &b[..b.len() - 1], &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    let mut b = header_bytes();
    b[0..4].copy_from_slice(&1234i32.to_le_bytes());
    assert!(nifti::read_bytes(p, &b, &opts()).is_err());
}

#[test]
fn scaling_is_applied() {
    let mut b = header_bytes();
    b[112..116].copy_from_slice(&2.0f32.to_le_bytes());
    b[116..120].copy_from_slice(&(-1.0f32).to_le_bytes());
    let raw = nifti::read_bytes(std::path::Path::new("x.nii"), &header_bytes(), &opts()).unwrap();
    let scaled = nifti::read_bytes(std::path::Path::new("x.nii"), &b, &opts()).unwrap();
    assert_eq!(scaled.voxel_type(), VoxelType::F32);
    for i in [0, 100, 5000] {
        assert_eq!(scaled.voxels.get_f64(i), raw.voxels.get_f64(i) * 2.0 - 1.0);
    }
}

#[test]
fn big_endian_header_reads() {
    // nibabel's example4d is little-endian; build a big-endian copy by hand from anatomical.
    let v = io::read_volume(&common::data("nibabel/anatomical.nii"), &opts()).unwrap();
    let le = nifti::to_bytes(&v, false).unwrap();
    let mut be = le.clone();
    let swap = |b: &mut [u8], off: usize, n: usize| b[off..off + n].reverse();
    swap(&mut be, 0, 4);
    for i in 0..8 {
        swap(&mut be, 40 + 2 * i, 2);
        swap(&mut be, 76 + 4 * i, 4);
    }
    for off in [68, 70, 72, 252, 254] {
        swap(&mut be, off, 2);
    }
    for off in (108..124).step_by(4).chain((256..328).step_by(4)) {
        if off != 120 {
            swap(&mut be, off, 4);
        }
    }
    for px in be[352..].chunks_exact_mut(2) {
        px.reverse();
    }
    let back = nifti::read_bytes(std::path::Path::new("be.nii"), &be, &opts()).unwrap();
    assert_eq!(back.voxels, v.voxels);
    assert!(back.geometry.approx_eq(&v.geometry, 1e-5));
}
