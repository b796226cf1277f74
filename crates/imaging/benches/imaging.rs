//! Criterion benchmarks: gzip NIfTI read, linear resample to 1 mm, NIfTI gz write, on a
//! synthetic CT-like volume (256x256x120 int16, 0.7x0.7x2.5 mm; smaller than the
//! scripts/imaging/bench_vs_sitk.py volume to keep runs short).

use std::hint::black_box;

use aiaa_imaging::resample::{Interpolation, resample_to_spacing};
use aiaa_imaging::{Geometry, Volume, Voxels, nifti};
use criterion::{Criterion, criterion_group, criterion_main};

fn ct() -> Volume {
    let (nx, ny, nz) = (256usize, 256usize, 120usize);
    let mut v = Vec::with_capacity(nx * ny * nz);
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let x = 1000.0 * (i as f64 / 20.0).sin() * (j as f64 / 25.0).cos() + 5.0 * k as f64 - 1024.0;
                v.push(x as i16 + ((i * 7 + j * 13 + k) % 17) as i16);
            }
        }
    }
    Volume::scalar(
        [nx, ny, nz],
        Geometry::with_spacing([0.7, 0.7, 2.5]),
        Voxels::I16(v),
    )
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let vol = ct();
    let gz = nifti::to_bytes(&vol, true).unwrap();
    let p = std::path::Path::new("bench.nii.gz");
    c.bench_function("nifti_gz_read_indexed", |b| {
        b.iter(|| nifti::read_bytes(p, black_box(&gz), &Default::default()).unwrap())
    });
    let mut plain = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut plain, &nifti::to_bytes(&vol, false).unwrap()).unwrap();
    let single = plain.finish().unwrap();
    c.bench_function("nifti_gz_read_single_member", |b| {
        b.iter(|| nifti::read_bytes(p, black_box(&single), &Default::default()).unwrap())
    });
    c.bench_function("resample_linear_1mm", |b| {
        b.iter(|| resample_to_spacing(black_box(&vol), [1.0; 3], Interpolation::Linear).unwrap())
    });
    c.bench_function("nifti_gz_write", |b| {
        b.iter(|| nifti::to_bytes(black_box(&vol), true).unwrap())
    });
}

criterion_group! {
    name = imaging;
    config = Criterion::default().sample_size(10);
    targets = benches
}
criterion_main!(imaging);
