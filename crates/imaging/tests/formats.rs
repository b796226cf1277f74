//! MetaImage, PNG and DICOM reading/writing on real files, and their error cases.

mod common;

use std::path::{Path, PathBuf};

use aiaa_imaging::{ImagingError, ReadOptions, Volume, VoxelType, Voxels, dicom, io, mha, png};

fn opts() -> ReadOptions {
    ReadOptions::default()
}

#[test]
fn mha_mhd_round_trips_compressed_and_not() {
    let dir = tempfile::tempdir().unwrap();
    for src in [
        "nibabel/reoriented_anat_moved.nii",
        "nibabel/example4d.nii.gz",
        "mni152/MNI152_T1.nii.gz",
    ] {
        let v = io::read_volume(&common::data(src), &opts()).unwrap();
        for (name, compress) in [
            ("a.mha", true),
            ("b.mha", false),
            ("c.mhd", false),
            ("d.mhd", true),
        ] {
            let p = dir.path().join(name);
            mha::write(&v, &p, compress).unwrap();
            let back = io::read_volume(&p, &opts()).unwrap();
            assert_eq!(back.voxels, v.voxels, "{src} {name}");
            assert_eq!((back.dims, back.channels), (v.dims, v.channels));
            assert!(back.geometry.approx_eq(&v.geometry, 1e-12), "{src} {name}");
        }
    }
}

#[test]
fn mha_errors_name_the_file() {
    let v = io::read_volume(&common::data("nibabel/anatomical.nii"), &opts()).unwrap();
    let p = Path::new("t.mha");
    let bytes = mha::to_bytes(&v, true);
    let e = mha::read_bytes(p, &bytes[..bytes.len() - 100], &opts(), |_| unreachable!())
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.mha") && e.contains("truncated"), "{e}");
    let bytes = mha::to_bytes(&v, false);
    let e = mha::read_bytes(p, &bytes[..bytes.len() - 1], &opts(), |_| unreachable!())
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    let text = String::from_utf8_lossy(&bytes[..300]).replace("DimSize = 33 41 25", "DimSize = 0 41 25");
    let e = mha::read_bytes(p, text.as_bytes(), &opts(), |_| unreachable!())
        .unwrap_err()
        .to_string();
    assert!(e.contains("DimSize"), "{e}");
    let huge = String::from_utf8_lossy(&bytes[..300])
        .replace("DimSize = 33 41 25", "DimSize = 100000 100000 100000");
    let e = mha::read_bytes(p, huge.as_bytes(), &opts(), |_| unreachable!()).unwrap_err();
    assert!(matches!(e, ImagingError::TooLarge { .. }), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let hdr = dir.path().join("x.mhd");
    std::fs::write(
        &hdr,
        "NDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = missing.raw\n",
    )
    .unwrap();
    let e = io::read_volume(&hdr, &opts()).unwrap_err().to_string();
    assert!(e.contains("missing.raw"), "{e}");
}

#[test]
fn png_8_and_16_bit_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let g = Default::default();
    let v8 = Volume::new([5, 3, 1], 1, g, Voxels::U8((0..15).collect())).unwrap();
    let v16 = Volume::new([4, 2, 1], 3, g, Voxels::U16((0..24).map(|x| x * 2000).collect())).unwrap();
    for (v, name) in [(&v8, "a.png"), (&v16, "b.png")] {
        let p = dir.path().join(name);
        io::write_volume(v, &p).unwrap();
        let back = io::read_volume(&p, &opts()).unwrap();
        assert_eq!(&back, v);
    }
    let f = Volume::new([2, 2, 2], 1, g, Voxels::F32(vec![0.0; 8])).unwrap();
    assert!(png::to_bytes(&f).is_err());
    assert!(png::read_bytes(Path::new("z.png"), b"\x89PNG\r\n\x1a\nxx", &opts()).is_err());
}

fn pyd(rel: &str) -> PathBuf {
    common::data(&format!("pydicom/{rel}"))
}

#[test]
fn dicom_codecs_decode_to_identical_pixels() {
    let base = io::read_volume(&pyd("MR_small.dcm"), &opts()).unwrap();
    assert_eq!(base.dims, [64, 64, 1]);
    for f in [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_implicit.dcm",
    ] {
        let v = io::read_volume(&pyd(f), &opts()).unwrap();
        assert_eq!(v.voxels, base.voxels, "{f}");
        assert!(v.geometry.approx_eq(&base.geometry, 1e-9), "{f}");
    }
    // JPEG baseline (lossy) and JPEG 2000 decode.
    let j2k = io::read_volume(&pyd("JPEG2000.dcm"), &opts()).unwrap();
    assert_eq!(j2k.dims, [256, 1024, 1]);
    let rgb = io::read_volume(&pyd("SC_rgb_jpeg_dcmtk.dcm"), &opts()).unwrap();
    assert_eq!((rgb.dims, rgb.channels), ([100, 100, 1], 3));
}

#[test]
fn dicom_ct_rescale_and_geometry() {
    let v = io::read_volume(&pyd("CT_small.dcm"), &opts()).unwrap();
    assert_eq!(v.voxel_type(), VoxelType::I16);
    assert!((v.geometry.spacing[0] - 0.661468).abs() < 1e-9);
    assert_eq!(v.geometry.origin, [-158.135803, -179.035797, -75.699997]);
}

#[test]
fn dicom_multiframe() {
    let v = io::read_volume(&pyd("emri_small.dcm"), &opts()).unwrap();
    assert_eq!(v.dims, [64, 64, 10]);
    let rle = io::read_volume(&pyd("emri_small_RLE.dcm"), &opts()).unwrap();
    assert_eq!(rle.voxels, v.voxels);
}

#[test]
fn dicom_series_sorted_by_position() {
    let dir = pyd("dicomdirtests/98892001/CT5N");
    let v = dicom::read_dir(&dir, &opts()).unwrap();
    assert_eq!(v.dims, [16, 16, 5]);
    assert!((v.geometry.spacing[2] - 2.5).abs() < 1e-6, "{:?}", v.geometry);
    // Shuffled file order gives the same volume.
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.reverse();
    assert_eq!(dicom::read_files(&files, &opts()).unwrap(), v);
}

#[test]
fn dicom_series_errors_are_clear() {
    let e = dicom::read_dir(&pyd("dicomdirtests/77654033/CT2"), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("uneven slice spacing"), "{e}");
    let e = dicom::read_dir(&pyd("dicomdirtests/98892003/MR700"), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("ImageOrientationPatient differs"), "{e}");
    let e = dicom::read_dir(&pyd("dicomdirtests/98892003/MR2"), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("3 series"), "{e}");
    let mixed = [pyd("CT_small.dcm"), pyd("MR_small.dcm")];
    let e = dicom::read_files(&mixed, &opts()).unwrap_err().to_string();
    assert!(e.contains("mixed series"), "{e}");
    let not_dicom = common::data("nibabel/anatomical.nii");
    let e = dicom::read_files(&[not_dicom], &opts()).unwrap_err().to_string();
    assert!(e.contains("anatomical.nii"), "{e}");
    let dup = [pyd("CT_small.dcm"), pyd("CT_small.dcm")];
    let e = dicom::read_files(&dup, &opts()).unwrap_err().to_string();
    assert!(e.contains("duplicate"), "{e}");
    let e = io::read_volume(&pyd("MR_truncated.dcm"), &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("MR_truncated.dcm"), "{e}");
}

#[test]
fn dicom_size_limit() {
    let e = io::read_volume(&pyd("JPEG2000.dcm"), &ReadOptions { max_bytes: 1000 }).unwrap_err();
    assert!(matches!(e, ImagingError::TooLarge { .. }), "{e}");
}
