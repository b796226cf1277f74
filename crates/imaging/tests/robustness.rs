//! No panics on damaged input: real files with deterministic random byte flips and
//! truncations go through every reader (a cheap stand-in for the fuzz targets in fuzz/).

mod common;

use std::path::Path;

use aiaa_imaging::{ReadOptions, dicom, mha, nifti, nrrd, png};

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
}

fn mutants(bytes: &[u8], seed: u64, header_len: usize) -> Vec<Vec<u8>> {
    let mut rng = Lcg(seed);
    let mut out = Vec::new();
    for _ in 0..30 {
        let mut b = bytes.to_vec();
        for _ in 0..1 + rng.next() % 4 {
            let at = rng.next() % header_len.min(b.len());
            b[at] = rng.next() as u8;
        }
        if rng.next().is_multiple_of(3) {
            b.truncate(rng.next() % b.len());
        }
        out.push(b);
    }
    out
}

#[test]
fn readers_survive_mutations() {
    let opts = ReadOptions { max_bytes: 8 << 20 };
    let anat = std::fs::read(common::data("nibabel/anatomical.nii")).unwrap();
    let p = Path::new("m");
    for m in mutants(&anat, 1, 352) {
        let _ = nifti::read_bytes(p, &m, &opts);
    }
    let v = nifti::read_bytes(p, &anat, &opts).unwrap();
    let gz = nifti::to_bytes(&v, true).unwrap();
    for m in mutants(&gz, 2, gz.len()) {
        let _ = nifti::read_bytes(p, &m, &opts);
    }
    for compress in [true, false] {
        let mh = mha::to_bytes(&v, compress);
        for m in mutants(&mh, 3, 400) {
            let _ = mha::read_bytes(p, &m, &opts, |_| {
                Err(aiaa_imaging::ImagingError::InvalidArgument("x".into()))
            });
        }
        let nr = nrrd::to_bytes(&v, compress);
        for m in mutants(&nr, 6, 400) {
            let _ = nrrd::read_bytes(p, &m, &opts, |_| {
                Err(aiaa_imaging::ImagingError::InvalidArgument("x".into()))
            });
        }
    }
    for f in [
        "CT_small.dcm",
        "MR_small_RLE.dcm",
        "emri_small.dcm",
        "MR_small_jp2klossless.dcm",
    ] {
        let d = std::fs::read(common::data(&format!("pydicom/{f}"))).unwrap();
        for m in mutants(&d, 4, d.len()) {
            let _ = dicom::read_bytes(p, &m, &opts);
        }
    }
    let png_bytes = png::to_bytes(
        &aiaa_imaging::Volume::new(
            [7, 5, 1],
            1,
            Default::default(),
            aiaa_imaging::Voxels::U8((0..35).collect()),
        )
        .unwrap(),
    )
    .unwrap();
    for m in mutants(&png_bytes, 5, png_bytes.len()) {
        let _ = png::read_bytes(p, &m, &opts);
    }
}
