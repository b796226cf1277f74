//! Pins the crate's data conventions: memory layout (i fastest, channels slowest), LPS
//! physical space, and that NIfTI files we write put voxel (i, j, k) where other readers
//! (the `nifti` crate) expect it.

mod common;

use aiaa_imaging::{Geometry, Volume, Voxels, io, nifti};

fn ramp() -> Volume {
    let dims = [4, 3, 2];
    let v: Vec<i16> = (0..2 * 24).map(|x| x as i16).collect();
    Volume::new(dims, 2, Geometry::with_spacing([0.5, 1.0, 2.0]), Voxels::I16(v)).unwrap()
}

#[test]
fn layout_is_i_fastest_channels_slowest() {
    let vol = ramp();
    assert_eq!(vol.offset(1, 0, 0, 0), 1);
    assert_eq!(vol.offset(0, 1, 0, 0), 4);
    assert_eq!(vol.offset(0, 0, 1, 0), 12);
    assert_eq!(vol.offset(0, 0, 0, 1), 24);
    assert_eq!(vol.get(3, 2, 1, 1), (3 + 4 * (2 + 3 * (1 + 2))) as f64);
    assert_eq!(vol.channel(1).unwrap().get(0, 0, 0, 0), 24.0);
}

#[test]
fn written_nifti_matches_independent_reader_layout_and_ras() {
    use ::nifti::{IntoNdArray, NiftiObject, ReaderOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ramp.nii");
    let mut vol = ramp().channel(0).unwrap();
    vol.geometry.origin = [10.0, 20.0, 30.0];
    io::write_volume(&vol, &path).unwrap();
    let obj = ReaderOptions::new().read_file(&path).unwrap();
    let h = obj.header().clone();
    let arr = obj.into_volume().into_ndarray::<f64>().unwrap();
    assert_eq!(arr.shape(), &[4, 3, 2]);
    for (k, j, i) in [(0, 0, 0), (1, 2, 3), (0, 1, 2), (1, 0, 1)] {
        assert_eq!(arr[[i, j, k]], vol.get(i, j, k, 0), "voxel ({i},{j},{k})");
    }
    // LPS origin (10, 20, 30) is RAS (-10, -20, 30).
    assert_eq!(h.srow_x[3], -10.0);
    assert_eq!(h.srow_y[3], -20.0);
    assert_eq!(h.srow_z[3], 30.0);
    assert_eq!(h.srow_x[0], -0.5);
    assert_eq!(h.sform_code, 1);
    assert_eq!(h.qform_code, 1);
    let back = nifti::read(&path, &Default::default()).unwrap();
    assert!(back.geometry.approx_eq(&vol.geometry, 1e-6));
    assert_eq!(back.voxels, vol.voxels);
}

#[test]
fn real_file_agrees_with_nifti_crate_voxels() {
    use ::nifti::{IntoNdArray, NiftiObject, ReaderOptions};
    let p = common::data("nibabel/anatomical.nii");
    let ours = io::read_volume(&p, &Default::default()).unwrap();
    let arr = ReaderOptions::new()
        .read_file(&p)
        .unwrap()
        .into_volume()
        .into_ndarray::<f64>()
        .unwrap();
    let [nx, ny, nz] = ours.dims;
    assert_eq!(arr.shape(), &[nx, ny, nz]);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                assert_eq!(arr[[i, j, k]], ours.get(i, j, k, 0));
            }
        }
    }
}

#[test]
fn index_physical_transform_on_real_geometry() {
    let vol = io::read_volume(&common::data("mni152/MNI152_T1.nii.gz"), &Default::default()).unwrap();
    // FSL's MNI152 1 mm: RAS sform [-1 0 0 90; 0 1 0 -126; 0 0 1 -72] -> LPS below.
    let g = vol.geometry;
    assert_eq!(g.origin, [-90.0, 126.0, -72.0]);
    let p = g.index_to_physical([90.0, 126.0, 72.0]);
    assert!(p.iter().all(|x| x.abs() < 1e-9), "{p:?}");
    let i = g.physical_to_index([0.0, 0.0, 0.0]).unwrap();
    assert!((i[0] - 90.0).abs() < 1e-9 && (i[1] - 126.0).abs() < 1e-9 && (i[2] - 72.0).abs() < 1e-9);
}
