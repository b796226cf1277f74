//! NRRD: round trips through our writer and reader, the header variants the reader accepts
//! and refuses, and agreement with SimpleITK both ways (tests/sitk_nrrd.py, run in the
//! project's Python environment, scripts/python-env.sh): files we write are read by
//! SimpleITK with identical voxels and geometry, and files SimpleITK writes (from the MNI152
//! template) or that are written by hand (RAS space, big endian, foreign gzip) are read by us
//! as SimpleITK reads them.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use aiaa_imaging::geometry::{Mat3, mat_mul};
use aiaa_imaging::io::{self, Format, MaskFormat};
use aiaa_imaging::{Geometry, ImagingError, ReadOptions, Volume, VoxelType, Voxels, nrrd};

const TYPES: [VoxelType; 6] = [
    VoxelType::U8,
    VoxelType::I16,
    VoxelType::U16,
    VoxelType::I32,
    VoxelType::F32,
    VoxelType::F64,
];

fn opts() -> ReadOptions {
    ReadOptions::default()
}

/// Rotation `Rz(c) * Ry(b) * Rx(a)`.
fn rotation(a: f64, b: f64, c: f64) -> Mat3 {
    let rx = [[1.0, 0.0, 0.0], [0.0, a.cos(), -a.sin()], [0.0, a.sin(), a.cos()]];
    let ry = [[b.cos(), 0.0, b.sin()], [0.0, 1.0, 0.0], [-b.sin(), 0.0, b.cos()]];
    let rz = [[c.cos(), -c.sin(), 0.0], [c.sin(), c.cos(), 0.0], [0.0, 0.0, 1.0]];
    mat_mul(&rz, &mat_mul(&ry, &rx))
}

fn oblique() -> Geometry {
    Geometry {
        spacing: [0.8, 1.25, 2.5],
        origin: [-12.5, 33.0, 7.125],
        direction: rotation(0.3, -0.5, 1.1),
    }
}

/// A volume whose values spread over the type's range (negative ones included).
fn volume(ty: VoxelType, dims: [usize; 3], channels: usize, geometry: Geometry) -> Volume {
    let n = dims.iter().product::<usize>() * channels;
    let voxels = match ty {
        VoxelType::U8 => Voxels::U8((0..n).map(|i| (i * 37 % 256) as u8).collect()),
        VoxelType::I16 => Voxels::I16(
            (0..n)
                .map(|i| ((i * 1237 % 65536) as i32 - 32768) as i16)
                .collect(),
        ),
        VoxelType::U16 => Voxels::U16((0..n).map(|i| (i * 4099 % 65536) as u16).collect()),
        VoxelType::I32 => Voxels::I32(
            (0..n)
                .map(|i| (i as u32).wrapping_mul(2654435761) as i32)
                .collect(),
        ),
        VoxelType::F32 => Voxels::F32((0..n).map(|i| (i as f32 * 0.37 - 100.0) * 1.5e3).collect()),
        VoxelType::F64 => Voxels::F64((0..n).map(|i| (i as f64 * 0.731).sin() * 1e7 + 1e-3).collect()),
    };
    Volume::new(dims, channels, geometry, voxels).unwrap()
}

fn assert_same(a: &Volume, b: &Volume, what: &str) {
    assert_eq!((a.dims, a.channels), (b.dims, b.channels), "{what}");
    assert_eq!(a.voxels, b.voxels, "{what}");
    assert!(
        a.geometry.approx_eq(&b.geometry, 1e-12),
        "{what}: {:?} vs {:?}",
        a.geometry,
        b.geometry
    );
}

#[test]
fn round_trip_all_types_oblique_and_channels() {
    let dir = tempfile::tempdir().unwrap();
    for ty in TYPES {
        for channels in [1, 3] {
            let v = volume(ty, [7, 5, 4], channels, oblique());
            for (name, compress) in [
                ("a.nrrd", true),
                ("b.nrrd", false),
                ("c.nhdr", true),
                ("d.nhdr", false),
            ] {
                let p = dir.path().join(name);
                nrrd::write(&v, &p, compress).unwrap();
                let back = io::read_volume(&p, &opts()).unwrap();
                assert_same(&back, &v, &format!("{ty:?} x{channels} {name}"));
            }
            for compress in [true, false] {
                let bytes = io::encode_bytes(&v, ".nrrd", compress).unwrap();
                let back = io::decode_bytes("up.nrrd", &bytes, &opts()).unwrap();
                assert_same(&back, &v, &format!("{ty:?} x{channels} in memory"));
                // Recognised from the bytes alone.
                let back = io::decode_bytes("upload", &bytes, &opts()).unwrap();
                assert_same(&back, &v, &format!("{ty:?} x{channels} sniffed"));
            }
        }
    }
    // write_volume: gzip; .nhdr puts the data next to the header.
    let v = volume(VoxelType::I16, [3, 2, 2], 2, oblique());
    io::write_volume(&v, &dir.path().join("w.nrrd")).unwrap();
    let text = std::fs::read(dir.path().join("w.nrrd")).unwrap();
    let head = String::from_utf8_lossy(&text[..text.windows(2).position(|w| w == b"\n\n").unwrap()]);
    for line in [
        "NRRD0004",
        "type: int16",
        "dimension: 4",
        "space: left-posterior-superior",
        "sizes: 2 3 2 2",
        "kinds: vector domain domain domain",
        "endian: little",
        "encoding: gzip",
        "space directions: none (",
        "space origin: (-12.5,33,7.125)",
    ] {
        assert!(head.contains(line), "{line:?} missing from\n{head}");
    }
    io::write_volume(&v, &dir.path().join("h.nhdr")).unwrap();
    assert!(dir.path().join("h.raw.gz").is_file());
    let header = std::fs::read(dir.path().join("h.nhdr")).unwrap();
    assert_same(
        &io::read_volume(&dir.path().join("h.nhdr"), &opts()).unwrap(),
        &v,
        "nhdr",
    );
    let e = io::decode_bytes("h.nhdr", &header, &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("h.raw.gz") && e.contains("single .nrrd"), "{e}");
    // Sniffed from the bytes when the name says nothing.
    std::fs::copy(dir.path().join("w.nrrd"), dir.path().join("noext")).unwrap();
    assert_same(
        &io::read_volume(&dir.path().join("noext"), &opts()).unwrap(),
        &v,
        "noext",
    );
}

#[test]
fn format_detection_and_mask_format() {
    assert_eq!(io::format_from_name(Path::new("a/B.NRRD")), Some(Format::Nrrd));
    assert_eq!(io::format_from_name(Path::new("b.nhdr")), Some(Format::Nrrd));
    assert_eq!(
        io::format_from_bytes(b"NRRD0005\ntype: float\n"),
        Some(Format::Nrrd)
    );
    assert_eq!(io::format_from_bytes(b"NRRD"), None);

    for ext in [".nrrd", "nrrd", ".NRRD"] {
        let m = MaskFormat::parse(Some(ext), Some("uint16"), Some(false), ".nii.gz").unwrap();
        assert_eq!(m.extension, ".nrrd");
        assert_eq!(m.filename(), "result.nrrd");
        let mask = volume(VoxelType::U8, [4, 3, 2], 1, oblique());
        let bytes = m.encode(&mask).unwrap();
        assert!(String::from_utf8_lossy(&bytes).contains("\nencoding: raw\n"));
        let back = io::decode_bytes("result.nrrd", &bytes, &opts()).unwrap();
        assert_same(&back, &mask.cast(VoxelType::U16), "mask");
    }
    let e = MaskFormat::parse(Some(".nhdr"), None, None, ".nii.gz").unwrap_err();
    assert!(e.contains(".nrrd"), "{e}");
    let e = io::encode_bytes(&volume(VoxelType::U8, [1, 1, 1], 1, oblique()), ".xyz", true).unwrap_err();
    assert!(e.to_string().contains(".nrrd"), "{e}");
}

fn header(fields: &[&str]) -> String {
    let mut s = String::from("NRRD0005\n# by hand\n");
    for f in fields {
        s += f;
        s += "\n";
    }
    s + "\n"
}

fn read_text(text: &str, data: &[u8]) -> aiaa_imaging::Result<Volume> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.extend_from_slice(data);
    nrrd::read_bytes(Path::new("hand.nrrd"), &bytes, &opts(), |name| {
        Err(ImagingError::InvalidArgument(format!("no data file {name}")))
    })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn reads_every_type_alias_and_byte_order() {
    // (aliases, our type, two values, their big-endian bytes)
    type Case = (&'static [&'static str], VoxelType, [f64; 2], Vec<u8>);
    let cases: &[Case] = &[
        (
            &["signed char", "int8", "int8_t"],
            VoxelType::I16,
            [-128.0, 127.0],
            vec![0x80, 0x7f],
        ),
        (
            &["uchar", "unsigned char", "uint8", "uint8_t"],
            VoxelType::U8,
            [0.0, 255.0],
            vec![0, 255],
        ),
        (
            &[
                "short",
                "short int",
                "signed short",
                "signed short int",
                "int16",
                "int16_t",
            ],
            VoxelType::I16,
            [-2.0, 258.0],
            vec![0xff, 0xfe, 0x01, 0x02],
        ),
        (
            &[
                "ushort",
                "unsigned short",
                "unsigned short int",
                "uint16",
                "uint16_t",
            ],
            VoxelType::U16,
            [65535.0, 258.0],
            vec![0xff, 0xff, 0x01, 0x02],
        ),
        (
            &["int", "signed int", "int32", "int32_t"],
            VoxelType::I32,
            [-2.0, 16909060.0],
            vec![0xff, 0xff, 0xff, 0xfe, 1, 2, 3, 4],
        ),
        (
            &["uint", "unsigned int", "uint32", "uint32_t"],
            VoxelType::F64,
            [4294967295.0, 16909060.0],
            vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4],
        ),
        (
            &["float"],
            VoxelType::F32,
            [1.5, -2.0],
            [1.5f32.to_be_bytes(), (-2.0f32).to_be_bytes()].concat(),
        ),
        (
            &["double"],
            VoxelType::F64,
            [0.1, -1e300],
            [0.1f64.to_be_bytes(), (-1e300f64).to_be_bytes()].concat(),
        ),
    ];
    for (aliases, ty, values, be) in cases {
        let width = be.len() / 2;
        let le: Vec<u8> = be.chunks(width).flat_map(|c| c.iter().rev().copied()).collect();
        for alias in *aliases {
            for (endian, data) in [("big", be), ("little", &le)] {
                for encoding in ["raw", "gzip", "gz"] {
                    let t = header(&[
                        &format!("type: {alias}"),
                        "dimension: 3",
                        "sizes: 2 1 1",
                        &format!("endian: {endian}"),
                        &format!("encoding: {encoding}"),
                    ]);
                    let payload = if encoding == "raw" {
                        data.clone()
                    } else {
                        gzip(data)
                    };
                    let v = read_text(&t, &payload).unwrap_or_else(|e| panic!("{alias} {endian}: {e}"));
                    assert_eq!(v.voxel_type(), *ty, "{alias}");
                    assert_eq!(
                        [v.get(0, 0, 0, 0), v.get(1, 0, 0, 0)],
                        *values,
                        "{alias} {endian} {encoding}"
                    );
                }
            }
        }
    }
    // One-byte types need no endian field.
    let v = read_text(
        &header(&["type: uchar", "dimension: 3", "sizes: 1 1 1", "encoding: raw"]),
        &[9],
    )
    .unwrap();
    assert_eq!(v.voxels, Voxels::U8(vec![9]));
}

#[test]
fn geometry_variants() {
    let dirs = "space directions: (0,2,0) (-1.5,0,0) (0,0,3)";
    let base = ["type: uchar", "dimension: 3", "sizes: 1 1 1", "encoding: raw"];
    let read = |extra: &[&str]| {
        let fields: Vec<&str> = base.iter().chain(extra).copied().collect();
        read_text(&header(&fields), &[0]).map(|v| v.geometry)
    };
    let lps = read(&["space: left-posterior-superior", dirs, "space origin: (1,2,3)"]).unwrap();
    assert_eq!(lps.spacing, [2.0, 1.5, 3.0]);
    assert_eq!(lps.origin, [1.0, 2.0, 3.0]);
    assert_eq!(
        lps.direction,
        [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    );
    for space in ["LPS", "space dimension: 3"] {
        let f = if space.contains(':') {
            space.to_string()
        } else {
            format!("space: {space}")
        };
        let g = read(&[&f, dirs, "space origin: (1,2,3)"]).unwrap();
        assert_eq!(g, lps, "{space}");
    }
    for space in ["right-anterior-superior", "RAS", "ras"] {
        let g = read(&[&format!("space: {space}"), dirs, "space origin: (1,2,3)"]).unwrap();
        assert_eq!(g.spacing, [2.0, 1.5, 3.0]);
        assert_eq!(g.origin, [-1.0, -2.0, 3.0]);
        assert_eq!(
            g.direction,
            [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
            "{space}"
        );
    }
    let las = read(&["space: LAS", dirs, "space origin: (1,2,3)"]).unwrap();
    assert_eq!(las.origin, [1.0, -2.0, 3.0]);
    // Spacings without space directions: identity direction, origin 0; nan = unknown (1 mm).
    let g = read(&["spacings: 0.5 nan 4"]).unwrap();
    assert_eq!(g.spacing, [0.5, 1.0, 4.0]);
    assert_eq!(g, Geometry::with_spacing([0.5, 1.0, 4.0]));
    // A leading list axis (no kinds: its space direction is none) becomes the channels.
    let t = header(&[
        "type: int16",
        "dimension: 4",
        "sizes: 2 3 1 1",
        "space: RAS",
        "space directions: none (1,0,0) (0,1,0) (0,0,1)",
        "endian: little",
        "encoding: raw",
    ]);
    let data: Vec<u8> = [1i16, -1, 2, -2, 3, -3]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let v = read_text(&t, &data).unwrap();
    assert_eq!((v.dims, v.channels), ([3, 1, 1], 2));
    assert_eq!(v.voxels, Voxels::I16(vec![1, 2, 3, -1, -2, -3]));
    assert_eq!(v.geometry.direction[0][0], -1.0);
    let t = t.replace(
        "space directions",
        "kinds: list domain domain domain\nspace directions",
    );
    assert_eq!(read_text(&t, &data).unwrap().voxels, v.voxels);
}

#[test]
fn refusals_name_the_field() {
    let ok = [
        "type: short",
        "dimension: 3",
        "sizes: 2 2 2",
        "endian: little",
        "encoding: raw",
    ];
    let data = [0u8; 16];
    assert!(read_text(&header(&ok), &data).is_ok());
    // The header with the field `replace` replaced by `by` (`+`: `by` appended).
    let with = |replace: &str, by: &str| -> String {
        let mut fields: Vec<String> = ok
            .iter()
            .map(|f| {
                if f.starts_with(replace) {
                    by.to_string()
                } else {
                    f.to_string()
                }
            })
            .collect();
        if replace == "+" {
            fields.push(by.to_string());
        }
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        header(&fields)
    };
    for (field, value, want) in [
        ("encoding", "encoding: bzip2", "encoding: bzip2"),
        ("encoding", "encoding: ascii", "encoding: ascii"),
        ("encoding", "encoding: hex", "encoding: hex"),
        ("encoding", "encoding: txt", "encoding: txt"),
        ("encoding", "encoding: zip", "encoding: unknown"),
        ("dimension", "dimension: 2", "dimension: 2"),
        ("dimension", "dimension: 5", "dimension: 5"),
        ("type", "type: int64", "type: int64"),
        ("type", "type: block", "type: block"),
        ("type", "type: char", "type: unknown"),
        ("+", "space: scanner-xyz", "space: scanner-xyz"),
        (
            "+",
            "space: right-anterior-superior-time",
            "space: right-anterior-superior-time",
        ),
        ("+", "space dimension: 2", "space dimension: 2"),
        ("+", "kinds: domain domain time", "kinds: time"),
        ("+", "kinds: vector domain domain", "kinds: vector domain domain"),
        ("+", "bogus field: 1", "unknown field \"bogus field\""),
        ("sizes", "sizes: 2 2", "sizes: 2 sizes"),
        ("sizes", "sizes: 2 0 2", "sizes: bad size \"0\""),
        ("sizes", "sizes: 2 -2 2", "sizes: bad size"),
        (
            "+",
            "space: LPS\nspace directions: (1,0,0) (0,0,0) (0,0,1)",
            "has no length",
        ),
        (
            "+",
            "space directions: (1,0,0) (0,1,0) (0,0,1)",
            "without \"space\"",
        ),
        ("+", "space: LPS\nspace directions: (1,0) (0,1) (0,0,1)", "not 3D"),
        ("+", "space: LPS\nspace origin: (1,2)", "space origin"),
        ("+", "spacings: 1 -1 1", "spacings: spacing -1"),
        ("+", "data file: LIST", "data file"),
        ("+", "endian: little\nendian: big", "appears twice"),
    ] {
        let t = with(field, value);
        let e = read_text(&t, &data).unwrap_err().to_string();
        assert!(e.contains("hand.nrrd") && e.contains(want), "{value:?}: {e}");
    }
    // 4D: the channel axis must come first, time is not read.
    let four = |kinds: &str| {
        header(&[
            "type: uchar",
            "dimension: 4",
            "sizes: 2 2 2 2",
            "encoding: raw",
            &format!("kinds: {kinds}"),
        ])
    };
    assert!(read_text(&four("vector domain domain domain"), &[0; 16]).is_ok());
    assert!(read_text(&four("RGB-color domain domain domain"), &[0; 16]).is_ok());
    for kinds in [
        "domain domain domain vector",
        "domain domain domain domain",
        "domain domain domain time",
    ] {
        let e = read_text(&four(kinds), &[0; 16]).unwrap_err().to_string();
        assert!(e.contains("kinds"), "{kinds}: {e}");
    }
    // Missing fields.
    for field in ["type", "dimension", "sizes", "encoding", "endian"] {
        let fields: Vec<&str> = ok.iter().copied().filter(|f| !f.starts_with(field)).collect();
        let e = read_text(&header(&fields), &data).unwrap_err().to_string();
        assert!(e.contains(&format!("missing field \"{field}\"")), "{field}: {e}");
    }
    // Truncated data, raw and gzip.
    let e = read_text(&header(&ok), &data[..15]).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    let e = read_text(&with("encoding", "encoding: gzip"), &gzip(&data[..15]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("truncated"), "{e}");
    let e = read_text(&with("encoding", "encoding: gzip"), &data)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not gzip"), "{e}");
}

#[test]
fn sizes_are_checked_before_allocating() {
    let small = ReadOptions { max_bytes: 1 << 20 };
    for (ty, sizes) in [
        ("short", "sizes: 100000 100000 100000"),
        ("uchar", "sizes: 1099511627776 1099511627776 1099511627776"),
        ("float", "sizes: 600 600 1"),
        ("uint", "sizes: 300 300 3"),
    ] {
        let t = header(&[
            &format!("type: {ty}"),
            "dimension: 3",
            sizes,
            "endian: little",
            "encoding: gzip",
        ]);
        let e =
            nrrd::read_bytes(Path::new("big.nrrd"), t.as_bytes(), &small, |_| unreachable!()).unwrap_err();
        assert!(matches!(e, ImagingError::TooLarge { .. }), "{sizes}: {e}");
    }
    // The whole 4D product counts, channels included.
    let t = header(&[
        "type: uchar",
        "dimension: 4",
        "sizes: 1000 100 100 100",
        "kinds: vector domain domain domain",
        "encoding: raw",
    ]);
    let e = nrrd::read_bytes(Path::new("big.nrrd"), t.as_bytes(), &small, |_| unreachable!()).unwrap_err();
    assert!(matches!(e, ImagingError::TooLarge { .. }), "{e}");
}

// ---------------------------------------------------------------- SimpleITK agreement

/// What SimpleITK read from one file.
struct SitkImage {
    size: Vec<usize>,
    components: usize,
    pixel: String,
    spacing: Vec<f64>,
    origin: Vec<f64>,
    direction: Vec<f64>,
    voxels: Vec<f64>,
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

fn load_dump(prefix: &Path) -> SitkImage {
    let text = std::fs::read_to_string(with_suffix(prefix, ".txt")).unwrap();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{key} missing in {text}"))
            .to_string()
    };
    let numbers = |key: &str| -> Vec<f64> {
        field(key)
            .split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect()
    };
    let raw = std::fs::read(with_suffix(prefix, ".raw")).unwrap();
    SitkImage {
        size: numbers("size").iter().map(|&x| x as usize).collect(),
        components: numbers("components")[0] as usize,
        pixel: field("pixel"),
        spacing: numbers("spacing"),
        origin: numbers("origin"),
        direction: numbers("direction"),
        voxels: raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect(),
    }
}

/// Our volume and SimpleITK's image of the same file agree: grid, channels, every voxel
/// exactly, geometry within 1e-6.
fn assert_agrees(ours: &Volume, s: &SitkImage, what: &str) {
    assert_eq!(s.size, ours.dims.to_vec(), "{what}: size");
    assert_eq!(s.components, ours.channels, "{what}: components");
    assert_eq!(s.voxels.len(), ours.voxels.len(), "{what}: voxel count");
    if let Some(i) = (0..s.voxels.len()).find(|&i| ours.voxels.get_f64(i) != s.voxels[i]) {
        panic!(
            "{what}: voxel {i} ours {} SimpleITK {}",
            ours.voxels.get_f64(i),
            s.voxels[i]
        );
    }
    let g = &ours.geometry;
    let close =
        |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6);
    let dir: Vec<f64> = g.direction.iter().flatten().copied().collect();
    assert!(
        close(&g.spacing, &s.spacing) && close(&g.origin, &s.origin) && close(&dir, &s.direction),
        "{what}: geometry ours {g:?}, SimpleITK spacing {:?} origin {:?} direction {:?}",
        s.spacing,
        s.origin,
        s.direction
    );
}

fn sitk_pixel(ty: VoxelType) -> &'static str {
    match ty {
        VoxelType::U8 => "8-bit unsigned integer",
        VoxelType::I16 => "16-bit signed integer",
        VoxelType::U16 => "16-bit unsigned integer",
        VoxelType::I32 => "32-bit signed integer",
        VoxelType::F32 => "32-bit float",
        VoxelType::F64 => "64-bit float",
    }
}

fn json_str(p: &Path) -> String {
    let s = p.to_str().expect("UTF-8 temp path");
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Hand-written RAS files: (name, bytes, expected LPS geometry, expected voxels).
fn hand_written_ras() -> Vec<(&'static str, Vec<u8>, Geometry, Voxels)> {
    // Column a of `m` is axis a's RAS direction times its spacing.
    let rot = rotation(-0.4, 0.25, 2.0);
    let spacing = [0.75, 1.5, 2.25];
    let origin_ras = [10.0, -20.0, 30.5];
    let axis = |a: usize| [0, 1, 2].map(|r| rot[r][a] * spacing[a]);
    let vec3 = |v: [f64; 3]| format!("({:?},{:?},{:?})", v[0], v[1], v[2]);
    let dirs = format!(
        "space directions: {} {} {}",
        vec3(axis(0)),
        vec3(axis(1)),
        vec3(axis(2))
    );
    let flip = |v: [f64; 3]| [-v[0], -v[1], v[2]];
    let mut lps_dir = rot;
    for row in lps_dir.iter_mut().take(2) {
        for x in row.iter_mut() {
            *x = -*x;
        }
    }
    let lps = Geometry {
        spacing,
        origin: flip(origin_ras),
        direction: lps_dir,
    };
    let n = 6 * 5 * 4;
    let u16s: Vec<u16> = (0..n).map(|i| (i * 523 % 65536) as u16).collect();
    let f32s: Vec<f32> = (0..n).map(|i| i as f32 * -0.25 + 3.0).collect();
    let mut out = Vec::new();
    // Long name, big-endian float, raw.
    let mut a = header(&[
        "type: float",
        "dimension: 3",
        "space: right-anterior-superior",
        "sizes: 6 5 4",
        &dirs,
        "kinds: domain domain domain",
        "endian: big",
        "encoding: raw",
        &format!("space origin: {}", vec3(origin_ras)),
    ])
    .into_bytes();
    a.extend(f32s.iter().flat_map(|x| x.to_be_bytes()));
    out.push(("ras_float_be.nrrd", a, lps, Voxels::F32(f32s)));
    // Abbreviation, alias type, single-member gzip (not ours), CRLF line ends.
    let mut b = header(&[
        "type: unsigned short",
        "dimension: 3",
        "space: RAS",
        "sizes: 6 5 4",
        &dirs,
        "kinds: space space space",
        "endian: little",
        "encoding: gz",
        &format!("space origin: {}", vec3(origin_ras)),
    ])
    .replace('\n', "\r\n")
    .into_bytes();
    b.extend(gzip(
        &u16s.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
    ));
    out.push(("ras_ushort_gz.nrrd", b, lps, Voxels::U16(u16s)));
    out
}

#[test]
fn agrees_with_simpleitk_both_ways() {
    let mni = common::data("mni152/MNI152_T1.nii.gz");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut jobs: Vec<String> = Vec::new();
    fn dump(file: &Path, jobs: &mut Vec<String>) -> PathBuf {
        let prefix = with_suffix(file, ".sitk");
        jobs.push(format!(
            "{{\"op\": \"dump\", \"path\": {}, \"out\": {}}}",
            json_str(file),
            json_str(&prefix)
        ));
        prefix
    }

    // 1. Files we write, read by SimpleITK.
    let mut ours: Vec<(PathBuf, Volume, PathBuf)> = Vec::new();
    for ty in TYPES {
        for (channels, compress, ext) in [
            (1, true, "nrrd"),
            (1, false, "nrrd"),
            (3, true, "nrrd"),
            (2, true, "nhdr"),
        ] {
            let v = volume(ty, [9, 7, 5], channels, oblique());
            let p = d.join(format!("ours_{ty:?}_{channels}_{compress}.{ext}"));
            nrrd::write(&v, &p, compress).unwrap();
            let prefix = dump(&p, &mut jobs);
            ours.push((p, v, prefix));
        }
    }
    // 2. Files SimpleITK writes from a real image, read by us.
    let mut theirs: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (name, compress, extra) in [
        ("mni_gzip.nrrd", true, "null, \"vector\": null"),
        ("mni_raw.nrrd", false, "null, \"vector\": null"),
        ("mni_int8.nrrd", true, "\"int8\", \"vector\": null"),
        ("mni_uint32.nrrd", false, "\"uint32\", \"vector\": null"),
        ("mni_vector.nrrd", true, "\"float32\", \"vector\": 2"),
        ("mni.nhdr", true, "null, \"vector\": null"),
    ] {
        let p = d.join(name);
        jobs.push(format!(
            "{{\"op\": \"convert\", \"src\": {}, \"dst\": {}, \"compress\": {compress}, \"cast\": {extra}}}",
            json_str(&mni),
            json_str(&p)
        ));
        let prefix = dump(&p, &mut jobs);
        theirs.push((p, prefix));
    }
    // 3. Hand-written RAS files, read by both.
    let hand = hand_written_ras();
    let mut hand_prefixes = Vec::new();
    for (name, bytes, ..) in &hand {
        let p = d.join(name);
        std::fs::write(&p, bytes).unwrap();
        hand_prefixes.push((p.clone(), dump(&p, &mut jobs)));
    }

    let jobs_file = d.join("jobs.json");
    std::fs::write(&jobs_file, format!("[\n{}\n]\n", jobs.join(",\n"))).unwrap();
    let out = Command::new(aiaa_testdata::python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sitk_nrrd.py"))
        .arg(&jobs_file)
        .output()
        .expect("run tests/sitk_nrrd.py");
    assert!(
        out.status.success(),
        "sitk_nrrd.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    for (p, v, prefix) in &ours {
        let s = load_dump(prefix);
        let what = format!("SimpleITK reading our {}", p.display());
        assert_agrees(v, &s, &what);
        assert!(
            s.pixel.contains(sitk_pixel(v.voxel_type())),
            "{what}: pixel {}",
            s.pixel
        );
    }
    let reference = io::read_volume(&mni, &opts()).unwrap();
    for (p, prefix) in &theirs {
        let s = load_dump(prefix);
        let v = io::read_volume(p, &opts()).unwrap_or_else(|e| panic!("{e}"));
        assert_agrees(&v, &s, &format!("our reading of SimpleITK's {}", p.display()));
        // And the same image as the NIfTI it came from (the casts aside).
        assert!(v.geometry.approx_eq(&reference.geometry, 1e-9), "{}", p.display());
        if v.voxel_type() == VoxelType::I16 && !p.ends_with("mni_int8.nrrd") {
            assert_eq!(v.voxels, reference.voxels, "{}", p.display());
        }
    }
    let vector = io::read_volume(&d.join("mni_vector.nrrd"), &opts()).unwrap();
    assert_eq!((vector.channels, vector.voxel_type()), (2, VoxelType::F32));
    assert_eq!(
        io::read_volume(&d.join("mni_int8.nrrd"), &opts())
            .unwrap()
            .voxel_type(),
        VoxelType::I16
    );
    assert_eq!(
        io::read_volume(&d.join("mni_uint32.nrrd"), &opts())
            .unwrap()
            .voxel_type(),
        VoxelType::F64
    );
    for ((p, prefix), (name, _, geometry, voxels)) in hand_prefixes.iter().zip(&hand) {
        let v = io::read_volume(p, &opts()).unwrap();
        assert_agrees(&v, &load_dump(prefix), &format!("hand-written {name}"));
        assert_eq!(v.dims, [6, 5, 4]);
        assert_eq!(&v.voxels, voxels, "{name}");
        assert!(
            v.geometry.approx_eq(geometry, 1e-12),
            "{name}: {:?} vs {geometry:?}",
            v.geometry
        );
    }
}
