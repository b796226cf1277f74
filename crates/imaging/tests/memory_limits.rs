//! Hostile headers and decompression bombs cost no memory: every reader checks the result's
//! size (in its final voxel type) against the limit and that the input can hold the data
//! its header announces before it allocates. Each case also checks the process's peak RSS
//! (`VmHWM`) did not move by more than a few MiB, so an allocation that merely happens to
//! fail later would be caught.

mod common;

use std::io::Write;
use std::path::Path;

use aiaa_imaging::io::{self, ImageInfo};
use aiaa_imaging::nifti::header::{self, Header};
use aiaa_imaging::{
    Geometry, ImagingError, ReadOptions, Volume, VoxelType, Voxels, dicom, gz, mha, nifti, nrrd, png,
};

/// Growth of the peak RSS a refused read may cause (headers, chunk buffers, decoder state).
const SLACK: u64 = 48 << 20;

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// Runs `f`, asserting it leaves the peak RSS within [`SLACK`] of where it was.
fn costs_nothing<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let before = peak_rss();
    let out = f();
    let grew = peak_rss().saturating_sub(before);
    assert!(grew < SLACK, "{what}: the peak RSS grew by {} MiB", grew >> 20);
    out
}

/// A NIfTI-1 header (352 bytes, data at 352) of a `dims` volume of `datatype`.
fn nifti_header(dims: [i64; 3], datatype: i16, slope: f64) -> Vec<u8> {
    let one = Volume::scalar([1; 3], Geometry::default(), Voxels::U8(vec![0])).unwrap();
    let mut h: Header = nifti::header_for(&one);
    h.dim[1..4].copy_from_slice(&dims);
    h.datatype = datatype;
    h.scl_slope = slope;
    header::write_nifti1(&h)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `prefix` then `n` zero bytes, gzipped without ever holding them.
fn gzip_zeros(prefix: &[u8], n: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    write_zeros(&mut e, prefix, n);
    e.finish().unwrap()
}

/// `prefix` then `n` zero bytes, zlib-compressed.
fn zlib_zeros(prefix: &[u8], n: usize) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    write_zeros(&mut e, prefix, n);
    e.finish().unwrap()
}

fn write_zeros(w: &mut impl Write, prefix: &[u8], n: usize) {
    let block = vec![0u8; 1 << 20];
    w.write_all(prefix).unwrap();
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        w.write_all(&block[..k]).unwrap();
        left -= k;
    }
}

fn mha_header(dims: &str, ty: &str, compressed: bool) -> String {
    format!(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n\
         CompressedData = {}\nDimSize = {dims}\nElementType = {ty}\nElementDataFile = LOCAL\n",
        if compressed { "True" } else { "False" }
    )
}

fn nrrd_header(sizes: &str, encoding: &str) -> String {
    format!("NRRD0004\ntype: uint8\ndimension: 3\nsizes: {sizes}\nencoding: {encoding}\n\n")
}

fn no_file(_: &str) -> aiaa_imaging::Result<(std::path::PathBuf, Vec<u8>)> {
    Err(ImagingError::InvalidArgument("no data files here".into()))
}

/// A PNG's bytes with its IHDR width and height replaced (CRC fixed).
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let tiny = Volume::new([1, 1, 1], 1, Geometry::default(), Voxels::U8(vec![7])).unwrap();
    let mut b = png::to_bytes(&tiny).unwrap();
    // Signature (8), length (4), "IHDR" (4), width, height at 16..24, CRC at 29..33.
    b[16..20].copy_from_slice(&width.to_be_bytes());
    b[20..24].copy_from_slice(&height.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&b[12..29]);
    b[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    b
}

fn assert_truncated(what: &str, r: aiaa_imaging::Result<Volume>) {
    let e = r.unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, ImagingError::Format { .. }) && text.contains("truncated"),
        "{what}: {text}"
    );
}

/// A 352-byte NIfTI header claiming 1600³ u8 (3.8 GiB, under the default 4 GiB limit) is
/// refused as truncated in every container before anything is allocated: raw, a gzip
/// stream, our indexed gzip, and an indexed member whose recorded size is forged.
#[test]
fn a_header_claiming_a_huge_image_costs_no_memory() {
    let opts = ReadOptions::default();
    let p = Path::new("claim.nii");
    let h = nifti_header([1600, 1600, 1600], header::dt::UINT8, 1.0);
    let mut forged = gz::compress(&h, 1);
    let n = forged.len();
    forged[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    for (what, bytes) in [
        ("raw", h.clone()),
        ("gzip stream", gzip(&h)),
        ("indexed gzip", gz::compress(&h, 1)),
        ("forged member size", forged),
    ] {
        costs_nothing(what, || {
            assert_truncated(what, nifti::read_bytes(p, &bytes, &opts))
        });
    }
    // The same through a file (the streaming path reads the file's length).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("claim.nii.gz");
    std::fs::write(&file, gzip(&h)).unwrap();
    costs_nothing("file", || assert_truncated("file", nifti::read(&file, &opts)));

    let p = Path::new("claim.mha");
    for compressed in [false, true] {
        let mut b = mha_header("1600 1600 1600", "MET_UCHAR", compressed).into_bytes();
        b.extend_from_slice(&if compressed { zlib(&[0; 64]) } else { vec![0; 64] });
        costs_nothing("mha", || {
            assert_truncated("mha", mha::read_bytes(p, &b, &opts, no_file))
        });
    }
    let p = Path::new("claim.nrrd");
    for (encoding, data) in [("raw", vec![0u8; 64]), ("gzip", gzip(&[0; 64]))] {
        let mut b = nrrd_header("1600 1600 1600", encoding).into_bytes();
        b.extend_from_slice(&data);
        costs_nothing("nrrd", || {
            assert_truncated("nrrd", nrrd::read_bytes(p, &b, &opts, no_file))
        });
    }
    let b = png_claiming(40000, 40000);
    costs_nothing("png", || {
        assert_truncated("png", png::read_bytes(Path::new("claim.png"), &b, &opts))
    });
}

/// Zeros that inflate to 4x the limit are refused by the limit, read from the header, before
/// inflating: gzip NIfTI (stream and indexed), zlib MetaImage, gzip NRRD and PNG.
#[test]
fn decompression_bombs_are_refused_before_inflating() {
    let opts = ReadOptions { max_bytes: 32 << 20 };
    let n = 128usize << 20;
    let dims = [1024, 1024, 128];
    let too_large = |what: &str, r: aiaa_imaging::Result<Volume>| {
        let e = r.unwrap_err();
        assert!(matches!(e, ImagingError::TooLarge { .. }), "{what}: {e}");
    };
    let h = nifti_header(dims, header::dt::UINT8, 1.0);
    let stream = gzip_zeros(&h, n);
    assert!(stream.len() < 1 << 20, "a bomb: {} bytes", stream.len());
    let mut plain = h.clone();
    plain.resize(h.len() + (8 << 20), 0);
    let indexed = gz::compress(&plain, 9);
    let mut m = mha_header("1024 1024 128", "MET_UCHAR", true).into_bytes();
    m.extend_from_slice(&zlib_zeros(&[], n));
    let mut r = nrrd_header("1024 1024 128", "gzip").into_bytes();
    r.extend_from_slice(&gzip_zeros(&[], n));
    let b = {
        let mut out = Vec::new();
        {
            let mut enc = ::png::Encoder::new(&mut out, 16384, 8192);
            enc.set_color(::png::ColorType::Grayscale);
            enc.set_compression(::png::Compression::High);
            let mut header = enc.write_header().unwrap();
            let mut w = header.stream_writer().unwrap();
            write_zeros(&mut w, &[], n);
            w.finish().unwrap();
        }
        out
    };
    let started = std::time::Instant::now();
    let p = Path::new("bomb.nii.gz");
    costs_nothing("nifti stream", || {
        too_large("nifti", nifti::read_bytes(p, &stream, &opts))
    });
    costs_nothing("nifti indexed", || {
        too_large("indexed", nifti::read_bytes(p, &indexed, &opts))
    });
    costs_nothing("mha", || {
        too_large("mha", mha::read_bytes(Path::new("b.mha"), &m, &opts, no_file))
    });
    costs_nothing("nrrd", || {
        too_large("nrrd", nrrd::read_bytes(Path::new("b.nrrd"), &r, &opts, no_file))
    });
    costs_nothing("png", || {
        too_large("png", png::read_bytes(Path::new("b.png"), &b, &opts))
    });
    // Refused from the headers: no inflating (128 MiB each would take seconds).
    assert!(
        started.elapsed().as_secs_f64() < 0.5,
        "refusals took {:?}",
        started.elapsed()
    );
}

/// A DICOM whose Rows/Columns were raised over a small RLE or JPEG fragment (a compressed
/// "bomb") is refused by the limit before its pixel data is decoded.
#[test]
fn dicom_compressed_bombs_are_refused_by_the_declared_size() {
    let opts = ReadOptions { max_bytes: 4 << 20 };
    for name in [
        "MR_small_RLE.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "JPEG-LL.dcm",
        "color3d_jpeg_baseline.dcm",
    ] {
        let mut b = std::fs::read(common::data(&format!("pydicom/{name}"))).unwrap();
        let mut patched = 0;
        // Explicit VR little endian Rows (0028,0010) and Columns (0028,0011): "US", length 2.
        for tag in [[0x28u8, 0, 0x10, 0], [0x28, 0, 0x11, 0]] {
            let at = b
                .windows(8)
                .position(|w| w[..4] == tag && w[4..8] == *b"US\x02\x00")
                .unwrap_or_else(|| panic!("{name}: no {tag:?}"));
            b[at + 8..at + 10].copy_from_slice(&4096u16.to_le_bytes());
            patched += 1;
        }
        assert_eq!(patched, 2);
        let e = costs_nothing(name, || dicom::read_bytes(Path::new(name), &b, &opts)).unwrap_err();
        assert!(matches!(e, ImagingError::TooLarge { .. }), "{name}: {e}");
    }
}

/// `scl_slope` turns u8 into f32: the limit is checked against the f32 result, and the
/// conversion runs into that result without a second copy.
#[test]
fn scaling_counts_in_the_size_check() {
    let p = Path::new("scaled.nii");
    let n = 64usize * 64 * 64; // 256 KiB of u8, 1 MiB as f32
    let with = |slope: f64| {
        let mut b = nifti_header([64, 64, 64], header::dt::UINT8, slope);
        b.extend((0..n).map(|i| (i % 251) as u8));
        b
    };
    let opts = ReadOptions { max_bytes: 512 << 10 };
    assert!(nifti::read_bytes(p, &with(1.0), &opts).is_ok());
    let e = nifti::read_bytes(p, &with(2.0), &opts).unwrap_err();
    match e {
        ImagingError::TooLarge { needed, .. } => assert_eq!(needed, 4 * n as u64),
        other => panic!("{other}"),
    }
    let v = nifti::read_bytes(p, &with(2.0), &ReadOptions::default()).unwrap();
    assert_eq!(v.voxel_type(), VoxelType::F32);
    assert_eq!(v.voxels.get_f64(300), ((300 % 251) * 2) as f64);
    // The gzip stream and indexed paths agree.
    let gz_stream = nifti::read_bytes(p, &gzip(&with(2.0)), &ReadOptions::default()).unwrap();
    let indexed = nifti::read_bytes(p, &gz::compress(&with(2.0), 1), &ReadOptions::default()).unwrap();
    assert_eq!(gz_stream.voxels, v.voxels);
    assert_eq!(indexed.voxels, v.voxels);
}

/// A spatial axis of several voxels needs a real `pixdim`: NaN, infinite and 0 are refused
/// with the field named; a single-voxel axis keeps the 1 mm fallback.
#[test]
fn pixdim_that_is_not_a_size_is_refused() {
    let p = Path::new("pix.nii");
    let with = |dims: [i64; 3], axis: usize, value: f32| {
        let mut b = nifti_header(dims, header::dt::UINT8, 1.0);
        b[76 + 4 * axis..80 + 4 * axis].copy_from_slice(&value.to_le_bytes());
        b.resize(352 + (dims[0] * dims[1] * dims[2]) as usize, 1);
        b
    };
    for value in [f32::NAN, f32::INFINITY, 0.0] {
        let e = nifti::read_bytes(p, &with([4, 5, 6], 2, value), &ReadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("pix.nii") && e.contains("pixdim[2]"), "{value}: {e}");
    }
    let v = nifti::read_bytes(p, &with([4, 5, 1], 3, 0.0), &ReadOptions::default()).unwrap();
    assert_eq!(v.geometry.spacing[2], 1.0);
    // Negative sizes are sizes (their sign is the orientation's business, as in nifti1_io).
    let v = nifti::read_bytes(p, &with([4, 5, 6], 1, -2.5), &ReadOptions::default()).unwrap();
    assert_eq!(v.geometry.spacing[0], 2.5);
}

/// `probe_bytes` reads what a decode would produce (grid, channels, type, scaling included)
/// from the header alone, for every single-file format, and refuses a header whose data
/// cannot be there.
#[test]
fn probe_reads_the_header_only() {
    let v = io::read_volume(&common::data("nibabel/anatomical.nii"), &ReadOptions::default()).unwrap();
    for ext in [".nii.gz", ".nii", ".mha", ".nrrd"] {
        let bytes = io::encode_bytes(&v, ext, true).unwrap();
        let name = format!("x{ext}");
        let info = io::probe_bytes(&name, &bytes).unwrap();
        let back = io::decode_bytes(&name, &bytes, &ReadOptions::default()).unwrap();
        assert_eq!(
            (info.dims, info.channels, info.voxel_type),
            (back.dims, back.channels, back.voxel_type()),
            "{ext}"
        );
        assert!(info.geometry.approx_eq(&back.geometry, 1e-9), "{ext}");
        assert_eq!(ImageInfo::from(&back).bytes(), info.bytes());
    }
    let png_vol = Volume::new([9, 7, 1], 3, Geometry::default(), Voxels::U16(vec![9; 189])).unwrap();
    let info = io::probe_bytes("x.png", &png::to_bytes(&png_vol).unwrap()).unwrap();
    assert_eq!(
        (info.dims, info.channels, info.voxel_type),
        ([9, 7, 1], 3, VoxelType::U16)
    );
    // Scaling shows in the type; a header over missing data is refused, as a read is.
    let mut scaled = nifti_header([16, 16, 16], header::dt::UINT8, 3.0);
    scaled.resize(352 + 4096, 1);
    let info = io::probe_bytes("scaled.nii", &scaled).unwrap();
    assert_eq!(
        (info.dims, info.voxel_type, info.bytes()),
        ([16; 3], VoxelType::F32, 4 * 4096)
    );
    let claim = nifti_header([1600, 1600, 1600], header::dt::UINT8, 3.0);
    for (name, bytes) in [("claim.nii", claim.clone()), ("claim.nii.gz", gzip(&claim))] {
        let e = costs_nothing("probe", || io::probe_bytes(name, &bytes)).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{name}: {e}");
    }
    let e = io::probe_bytes("x.dcm", b"whatever").unwrap_err().to_string();
    assert!(e.contains("DICOM"), "{e}");
}
