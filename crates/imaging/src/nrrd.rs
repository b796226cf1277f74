//! NRRD reading and writing: `.nrrd` (header and data in one file) and `.nhdr` (header
//! naming one separate data file), raw or gzip.
//!
//! Read: magic `NRRD0001`..`NRRD0005`; `type` under any of its NRRD names (`int8` is widened
//! to `i16` and `uint32` to `f64`, like the NIfTI and MetaImage readers; 64-bit integers are
//! refused); `encoding` `raw` or `gzip`/`gz`; either `endian`; `line skip` and `byte skip`; a
//! 3D domain, optionally after one leading range axis (`kinds: vector domain domain domain`,
//! also `list`, `RGB-color`, ...) which becomes the channels. Geometry from `space directions`
//! (each domain axis' direction times its spacing) and `space origin` in
//! `left-posterior-superior` (as is), `right-anterior-superior` (x and y flipped to LPS),
//! `left-anterior-superior` (y flipped) or a plain `space dimension: 3` (taken as LPS, like
//! ITK); without `space directions`, `spacings` with the identity direction and origin 0.
//! Everything else (`ascii`/`hex`/`bzip2` encodings, other spaces, a non-3D domain, data file
//! lists or patterns, unknown fields) is refused with an error naming the field.
//!
//! Write: `NRRD0004`, `space: left-posterior-superior`, little endian, raw or gzip
//! ([`crate::gz::compress`], level 1); channels as a leading `vector` axis, interleaved per
//! voxel as NRRD stores them (the crate keeps channels slowest; see [`crate::mha::interleave`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::decode::{Decode, Stored};
use crate::io::ImageInfo;
use crate::limits::{check_available, inflated_bound};
use crate::{Geometry, ImagingError, ReadOptions, Result, Volume, VoxelType, gz};

const FORMAT: &str = "NRRD";

/// Longest header accepted (bytes up to the blank line).
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Largest `byte skip` honoured.
const MAX_BYTE_SKIP: u64 = 256 << 20;

fn fmt_err(path: &Path, reason: impl Into<String>) -> ImagingError {
    ImagingError::format(path, FORMAT, reason)
}

fn unsupported(path: &Path, reason: impl Into<String>) -> ImagingError {
    ImagingError::unsupported(path, FORMAT, reason)
}

/// Whether `head` starts with a NRRD magic (`NRRD000` and a version digit).
pub fn is_nrrd(head: &[u8]) -> bool {
    head.starts_with(b"NRRD000")
}

/// The fields NRRD defines, spaces removed (teem accepts both spellings, e.g. `data file`
/// and `datafile`).
const KNOWN_FIELDS: &[&str] = &[
    "type",
    "dimension",
    "sizes",
    "spacings",
    "space",
    "spacedimension",
    "spacedirections",
    "spaceorigin",
    "spaceunits",
    "measurementframe",
    "kinds",
    "endian",
    "encoding",
    "content",
    "number",
    "blocksize",
    "min",
    "max",
    "oldmin",
    "oldmax",
    "axismins",
    "axismaxs",
    "units",
    "labels",
    "centers",
    "centerings",
    "thicknesses",
    "sampleunits",
    "datafile",
    "lineskip",
    "byteskip",
];

/// A parsed header: fields (name as written, normalised key, value) and where the data
/// starts (after the blank line), if the header ends with one.
struct Header {
    fields: Vec<(String, String, String)>,
    data_start: Option<usize>,
}

impl Header {
    /// The field with normalised key `key`: (name as written, value).
    fn get(&self, key: &str) -> Option<(&str, &str)> {
        self.fields
            .iter()
            .find(|(_, k, _)| k == key)
            .map(|(n, _, v)| (n.as_str(), v.as_str()))
    }
}

fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let line_end = |pos: usize| bytes[pos..].iter().position(|&b| b == b'\n').map(|e| pos + e);
    let strip_cr = |l: &[u8]| -> usize { l.len() - usize::from(l.last() == Some(&b'\r')) };
    let first_end = line_end(0).unwrap_or(bytes.len());
    let first = &bytes[..strip_cr(&bytes[..first_end])];
    let version_ok = first.len() == 8 && first.starts_with(b"NRRD000") && (b'1'..=b'5').contains(&first[7]);
    if !version_ok {
        return Err(if first.starts_with(b"NRRD") {
            unsupported(
                path,
                format!(
                    "magic {:?} (NRRD0001 to NRRD0005 are read)",
                    String::from_utf8_lossy(first)
                ),
            )
        } else {
            fmt_err(
                path,
                "no NRRD magic (the first line must be NRRD0001 .. NRRD0005)",
            )
        });
    }
    let mut fields: Vec<(String, String, String)> = Vec::new();
    let mut pos = first_end + 1;
    let mut line_no = 1;
    while pos < bytes.len() {
        line_no += 1;
        let end = line_end(pos);
        if end.unwrap_or(bytes.len()) > MAX_HEADER_BYTES {
            return Err(fmt_err(
                path,
                format!("header longer than {MAX_HEADER_BYTES} bytes (no blank line ending it)"),
            ));
        }
        let raw = &bytes[pos..end.unwrap_or(bytes.len())];
        let line = &raw[..strip_cr(raw)];
        pos = end.map_or(bytes.len(), |e| e + 1);
        if line.is_empty() {
            return Ok(Header {
                fields,
                data_start: Some(pos),
            });
        }
        if line.starts_with(b"#") {
            continue;
        }
        let text = std::str::from_utf8(line)
            .map_err(|_| fmt_err(path, format!("header line {line_no} is not text")))?;
        let colon = text.find(':').ok_or_else(|| {
            fmt_err(
                path,
                format!("header line {line_no} is neither a field nor a comment: {text:.60}"),
            )
        })?;
        if text[colon + 1..].starts_with('=') {
            continue; // key:=value pairs carry no geometry or data layout
        }
        let name = text[..colon].trim().to_string();
        let key = normalise(&name);
        if !KNOWN_FIELDS.contains(&key.as_str()) {
            return Err(unsupported(
                path,
                format!("unknown field {name:?} (line {line_no})"),
            ));
        }
        if fields.iter().any(|(_, k, _)| *k == key) {
            return Err(fmt_err(path, format!("field {name:?} appears twice")));
        }
        fields.push((name, key, text[colon + 1..].trim().to_string()));
    }
    Ok(Header {
        fields,
        data_start: None,
    })
}

fn parse_type(path: &Path, name: &str, value: &str) -> Result<Stored> {
    let v = value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase();
    Ok(match v.as_str() {
        "signed char" | "int8" | "int8_t" => Stored::I8,
        "uchar" | "unsigned char" | "uint8" | "uint8_t" => Stored::U8,
        "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => Stored::I16,
        "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => Stored::U16,
        "int" | "signed int" | "int32" | "int32_t" => Stored::I32,
        "uint" | "unsigned int" | "uint32" | "uint32_t" => Stored::U32,
        "float" => Stored::F32,
        "double" => Stored::F64,
        "longlong"
        | "long long"
        | "long long int"
        | "signed long long"
        | "signed long long int"
        | "int64"
        | "int64_t"
        | "ulonglong"
        | "unsigned long long"
        | "unsigned long long int"
        | "uint64"
        | "uint64_t"
        | "block" => {
            return Err(unsupported(path, format!("{name}: {value}")));
        }
        _ => return Err(fmt_err(path, format!("{name}: unknown type {value:?}"))),
    })
}

fn type_name(ty: VoxelType) -> &'static str {
    match ty {
        VoxelType::U8 => "uint8",
        VoxelType::I16 => "int16",
        VoxelType::U16 => "uint16",
        VoxelType::I32 => "int32",
        VoxelType::F32 => "float",
        VoxelType::F64 => "double",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Raw,
    Gzip,
}

fn parse_encoding(path: &Path, name: &str, value: &str) -> Result<Encoding> {
    Ok(match value.to_ascii_lowercase().as_str() {
        "raw" => Encoding::Raw,
        "gzip" | "gz" => Encoding::Gzip,
        "txt" | "text" | "ascii" | "hex" | "bzip2" | "bz2" | "zrl" => {
            return Err(unsupported(
                path,
                format!("{name}: {value} (raw and gzip are read)"),
            ));
        }
        _ => return Err(fmt_err(path, format!("{name}: unknown encoding {value:?}"))),
    })
}

/// How an axis' kind classes it: part of the image domain, or a range (per-voxel vector)
/// axis that becomes the channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AxisKind {
    Domain,
    Range,
}

fn parse_kind(path: &Path, name: &str, kind: &str) -> Result<AxisKind> {
    let k = kind.to_ascii_lowercase();
    Ok(match k.as_str() {
        "domain" | "space" | "???" | "none" => AxisKind::Domain,
        "time" => return Err(unsupported(path, format!("{name}: time axes are not read"))),
        "list"
        | "point"
        | "vector"
        | "covariant-vector"
        | "normal"
        | "stub"
        | "scalar"
        | "complex"
        | "2-vector"
        | "3-color"
        | "rgb-color"
        | "hsv-color"
        | "xyz-color"
        | "4-color"
        | "rgba-color"
        | "3-vector"
        | "3-gradient"
        | "3-normal"
        | "4-vector"
        | "quaternion"
        | "2d-symmetric-matrix"
        | "2d-masked-symmetric-matrix"
        | "2d-matrix"
        | "2d-masked-matrix"
        | "3d-symmetric-matrix"
        | "3d-masked-symmetric-matrix"
        | "3d-matrix"
        | "3d-masked-matrix" => AxisKind::Range,
        _ => return Err(fmt_err(path, format!("{name}: unknown kind {kind:?}"))),
    })
}

fn parse_number(path: &Path, name: &str, t: &str) -> Result<f64> {
    t.trim()
        .parse::<f64>()
        .map_err(|_| fmt_err(path, format!("{name}: bad number {t:?}")))
}

/// A `(x,y,z)` vector or `none`, as in `space directions` and `space origin`.
fn parse_vectors(path: &Path, name: &str, value: &str) -> Result<Vec<Option<Vec<f64>>>> {
    let mut out = Vec::new();
    let mut rest = value.trim_start();
    while !rest.is_empty() {
        if out.len() > 16 {
            return Err(fmt_err(path, format!("{name}: too many vectors")));
        }
        if let Some(r) = rest.strip_prefix("none") {
            out.push(None);
            rest = r.trim_start();
        } else if let Some(r) = rest.strip_prefix('(') {
            let close = r
                .find(')')
                .ok_or_else(|| fmt_err(path, format!("{name}: missing ')' in {value:?}")))?;
            let v = r[..close]
                .split(',')
                .map(|t| parse_number(path, name, t))
                .collect::<Result<Vec<_>>>()?;
            out.push(Some(v));
            rest = r[close + 1..].trim_start();
        } else {
            return Err(fmt_err(
                path,
                format!("{name}: expected (x,y,z) or none in {value:?}"),
            ));
        }
    }
    Ok(out)
}

/// Sign flips taking the header's space to LPS.
fn space_flip(path: &Path, h: &Header) -> Result<Option<[f64; 3]>> {
    if let Some((name, v)) = h.get("space") {
        let flip = match v.to_ascii_lowercase().as_str() {
            "left-posterior-superior" | "lps" => [1.0, 1.0, 1.0],
            "right-anterior-superior" | "ras" => [-1.0, -1.0, 1.0],
            "left-anterior-superior" | "las" => [1.0, -1.0, 1.0],
            _ => {
                return Err(unsupported(
                    path,
                    format!(
                        "{name}: {v} (left-posterior-superior, right-anterior-superior and \
                         left-anterior-superior are read)"
                    ),
                ));
            }
        };
        return Ok(Some(flip));
    }
    if let Some((name, v)) = h.get("spacedimension") {
        if v.trim() != "3" {
            return Err(unsupported(path, format!("{name}: {v} (3 is read)")));
        }
        return Ok(Some([1.0; 3]));
    }
    Ok(None)
}

/// The image layout a header describes.
struct Layout {
    dims: [usize; 3],
    channels: usize,
    stored: Stored,
    encoding: Encoding,
    big_endian: bool,
    geometry: Geometry,
    /// Voxel count including channels.
    count: u128,
}

fn layout(path: &Path, h: &Header) -> Result<Layout> {
    let need = |key: &str, shown: &str| {
        h.get(key)
            .ok_or_else(|| fmt_err(path, format!("missing field {shown:?}")))
    };
    let (tn, tv) = need("type", "type")?;
    let stored = parse_type(path, tn, tv)?;
    let (dn, dv) = need("dimension", "dimension")?;
    let dim: usize = dv
        .trim()
        .parse()
        .map_err(|_| fmt_err(path, format!("{dn}: bad value {dv:?}")))?;
    if !(3..=4).contains(&dim) {
        return Err(unsupported(
            path,
            format!("{dn}: {dim} (a 3D image, or 4D with a leading vector/list axis, is read)"),
        ));
    }
    let (sn, sv) = need("sizes", "sizes")?;
    let sizes = sv
        .split_whitespace()
        .map(|t| {
            t.parse::<u64>()
                .ok()
                .filter(|&n| (1..=1 << 40).contains(&n))
                .ok_or_else(|| fmt_err(path, format!("{sn}: bad size {t:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    if sizes.len() != dim {
        return Err(fmt_err(
            path,
            format!("{sn}: {} sizes for dimension {dim}", sizes.len()),
        ));
    }
    let directions = match h.get("spacedirections") {
        Some((n, v)) => {
            let d = parse_vectors(path, n, v)?;
            if d.len() != dim {
                return Err(fmt_err(
                    path,
                    format!("{n}: {} entries for dimension {dim}", d.len()),
                ));
            }
            Some((n, d))
        }
        None => None,
    };
    let kinds = match h.get("kinds") {
        Some((n, v)) => {
            let k = v
                .split_whitespace()
                .map(|t| parse_kind(path, n, t))
                .collect::<Result<Vec<_>>>()?;
            if k.len() != dim {
                return Err(fmt_err(
                    path,
                    format!("{n}: {} kinds for dimension {dim}", k.len()),
                ));
            }
            k
        }
        // Without kinds, an axis without a space direction is a range axis (as in ITK).
        None => (0..dim)
            .map(|a| match &directions {
                Some((_, d)) if d[a].is_none() => AxisKind::Range,
                _ => AxisKind::Domain,
            })
            .collect(),
    };
    let first_domain = dim - 3;
    let shape_ok = kinds[..first_domain].iter().all(|&k| k == AxisKind::Range)
        && kinds[first_domain..].iter().all(|&k| k == AxisKind::Domain);
    if !shape_ok {
        return Err(unsupported(
            path,
            format!(
                "kinds: {} (a 3D domain is read: `domain domain domain`, or `vector domain domain \
                 domain` for channels)",
                h.get("kinds").map_or("absent", |(_, v)| v)
            ),
        ));
    }
    let channels = if dim == 4 { sizes[0] as usize } else { 1 };
    let dims = [0, 1, 2].map(|a| sizes[first_domain + a] as usize);
    let count = sizes.iter().map(|&n| n as u128).product::<u128>();

    let encoding = match h.get("encoding") {
        Some((n, v)) => parse_encoding(path, n, v)?,
        None => return Err(fmt_err(path, "missing field \"encoding\"")),
    };
    let big_endian = match h.get("endian") {
        Some((n, v)) => match v.to_ascii_lowercase().as_str() {
            "little" => false,
            "big" => true,
            _ => return Err(fmt_err(path, format!("{n}: {v:?} is neither little nor big"))),
        },
        None if stored.size() == 1 => false,
        None => {
            return Err(fmt_err(
                path,
                "missing field \"endian\" (needed for multi-byte types)",
            ));
        }
    };

    let mut g = Geometry::default();
    let flip = space_flip(path, h)?;
    if let Some((n, d)) = &directions {
        if flip.is_none() {
            return Err(fmt_err(
                path,
                format!("{n} without \"space\" or \"space dimension\""),
            ));
        }
        if d[..first_domain].iter().any(Option::is_some) {
            return Err(fmt_err(path, format!("{n}: the vector axis must be \"none\"")));
        }
        for a in 0..3 {
            let v = d[first_domain + a]
                .as_deref()
                .ok_or_else(|| fmt_err(path, format!("{n}: domain axis {a} is \"none\"")))?;
            if v.len() != 3 {
                return Err(fmt_err(path, format!("{n}: vector {v:?} is not 3D")));
            }
            let norm = crate::geometry::norm([v[0], v[1], v[2]]);
            if !(norm.is_finite() && norm > 0.0) {
                return Err(fmt_err(path, format!("{n}: vector {v:?} has no length")));
            }
            g.spacing[a] = norm;
            for (row, x) in g.direction.iter_mut().zip(v) {
                row[a] = x / norm;
            }
        }
    } else if let Some((n, v)) = h.get("spacings") {
        let s = v
            .split_whitespace()
            .map(|t| parse_number(path, n, t))
            .collect::<Result<Vec<_>>>()?;
        if s.len() != dim {
            return Err(fmt_err(
                path,
                format!("{n}: {} values for dimension {dim}", s.len()),
            ));
        }
        for a in 0..3 {
            let x = s[first_domain + a];
            if x.is_nan() {
                continue; // unknown: 1 mm, like ITK
            }
            if !(x.is_finite() && x > 0.0) {
                return Err(fmt_err(path, format!("{n}: spacing {x} is not positive")));
            }
            g.spacing[a] = x;
        }
    }
    if let Some((n, v)) = h.get("spaceorigin") {
        let o = parse_vectors(path, n, v)?;
        match o.as_slice() {
            [Some(o)] if o.len() == 3 && o.iter().all(|x| x.is_finite()) => g.origin = [o[0], o[1], o[2]],
            _ => return Err(fmt_err(path, format!("{n}: {v:?} is not one 3D vector"))),
        }
    }
    if let Some(f) = flip {
        for ((o, row), f) in g.origin.iter_mut().zip(&mut g.direction).zip(f) {
            *o *= f;
            row.iter_mut().for_each(|x| *x *= f);
        }
    }
    Ok(Layout {
        dims,
        channels,
        stored,
        encoding,
        big_endian,
        geometry: g,
        count,
    })
}

/// Reads a `.nrrd` or `.nhdr` file (a detached data file is read from the header's folder).
pub fn read(path: &Path, opts: &ReadOptions) -> Result<Volume> {
    let bytes = crate::io::read_file(path, opts)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    read_bytes(path, &bytes, opts, |name| {
        let p = dir.join(name);
        crate::io::read_file(&p, opts).map(|b| (p, b))
    })
}

/// Reads NRRD from the bytes of a header (with attached data, or naming a data file that
/// `load` fetches by name); `path` names the file in errors.
pub fn read_bytes(
    path: &Path,
    bytes: &[u8],
    opts: &ReadOptions,
    load: impl FnOnce(&str) -> Result<(PathBuf, Vec<u8>)>,
) -> Result<Volume> {
    let h = parse_header(path, bytes)?;
    let l = layout(path, &h)?;
    let decode = Decode::new(l.stored, l.big_endian).interleaved(l.channels);
    opts.check(path, l.count, decode.output().size())?;
    let count = l.count as usize;
    let nbytes = decode.stored_bytes(count);

    let line_skip = match h.get("lineskip") {
        Some((n, v)) => v
            .trim()
            .parse::<u64>()
            .map_err(|_| fmt_err(path, format!("{n}: bad value {v:?}")))?,
        None => 0,
    };
    let byte_skip = match h.get("byteskip") {
        Some((n, v)) => match v.trim().parse::<i64>() {
            Ok(-1) => None,
            Ok(b) if (0..=MAX_BYTE_SKIP as i64).contains(&b) => Some(b as u64),
            _ => return Err(fmt_err(path, format!("{n}: bad value {v:?}"))),
        },
        None => Some(0),
    };

    let external;
    let (data_path, mut data): (PathBuf, &[u8]) = match h.get("datafile") {
        Some((n, v)) => {
            if v.is_empty() || v.starts_with("LIST") || v.contains('%') {
                return Err(unsupported(
                    path,
                    format!("{n}: {v:?} (one data file is read, not lists or patterns)"),
                ));
            }
            let (p, b) = load(v)?;
            external = b;
            (p, &external[..])
        }
        None => {
            let start = h.data_start.ok_or_else(|| {
                fmt_err(
                    path,
                    "the header does not end with a blank line and names no \"data file\"",
                )
            })?;
            (path.to_path_buf(), &bytes[start..])
        }
    };
    for done in 0..line_skip {
        let nl = data.iter().position(|&b| b == b'\n').ok_or_else(|| {
            fmt_err(
                &data_path,
                format!("line skip: the data ends after {done} of {line_skip} lines"),
            )
        })?;
        data = &data[nl + 1..];
    }
    let truncated = |have: usize| {
        fmt_err(
            &data_path,
            format!("truncated: {have} bytes of voxel data, expected {nbytes}"),
        )
    };
    let voxels = match (l.encoding, byte_skip) {
        (Encoding::Raw, None) => {
            let from = data
                .len()
                .checked_sub(nbytes)
                .ok_or_else(|| truncated(data.len()))?;
            decode.read(&data_path, FORMAT, &mut &data[from..], count)?
        }
        (Encoding::Raw, Some(skip)) => {
            let rest = data.get(skip as usize..).unwrap_or_default();
            let src = rest.get(..nbytes).ok_or_else(|| truncated(rest.len()))?;
            decode.read(&data_path, FORMAT, &mut &src[..], count)?
        }
        (Encoding::Gzip, None) => {
            return Err(unsupported(
                path,
                "byte skip: -1 with gzip encoding (it applies to raw data only)",
            ));
        }
        (Encoding::Gzip, Some(skip)) => inflate(&data_path, data, skip, decode, count, opts)?,
    };
    Volume::new(l.dims, l.channels, l.geometry, voxels)
}

/// What a NRRD header with attached data, in memory, says, without decoding the voxels;
/// refused, like a read, when the data is elsewhere or cannot be as long as announced.
pub fn probe_bytes(path: &Path, bytes: &[u8]) -> Result<ImageInfo> {
    let h = parse_header(path, bytes)?;
    let l = layout(path, &h)?;
    let start = match (h.get("datafile"), h.data_start) {
        (None, Some(start)) => start,
        _ => {
            return Err(ImagingError::InvalidArgument(
                "the header names a separate data file (or none); send a single .nrrd file instead".into(),
            ));
        }
    };
    let count = usize::try_from(l.count).unwrap_or(usize::MAX);
    let needed = count.saturating_mul(l.stored.size()) as u64;
    let have = (bytes.len() - start) as u64;
    let available = match l.encoding {
        Encoding::Raw => have,
        Encoding::Gzip => inflated_bound(have),
    };
    check_available(path, FORMAT, needed, available)?;
    Ok(ImageInfo {
        dims: l.dims,
        channels: l.channels,
        voxel_type: Decode::new(l.stored, l.big_endian).output(),
        geometry: l.geometry,
    })
}

/// Inflates gzip data, skipping `skip` inflated bytes, into `count` voxels. Our own
/// writer's files (members recording their length) are inflated in parallel.
fn inflate(
    path: &Path,
    data: &[u8],
    skip: u64,
    decode: Decode,
    count: usize,
    opts: &ReadOptions,
) -> Result<crate::Voxels> {
    if !gz::is_gzip(data) {
        return Err(fmt_err(path, "encoding: gzip, but the data is not gzip"));
    }
    let needed = skip + decode.stored_bytes(count) as u64;
    let members = gz::members(data);
    let available = match &members {
        Some(m) => m.iter().map(|m| m.size as u64).sum(),
        None => inflated_bound(data.len() as u64),
    };
    check_available(path, FORMAT, needed, available)?;
    if let Some(members) = members.filter(|_| decode.is_direct()) {
        return decode.fill(count, |dst| {
            gz::inflate_indexed_range(data, &members, skip as usize, dst).map_err(|e| match e {
                gz::IndexedError::TooLarge(n) => ImagingError::TooLarge {
                    path: path.to_path_buf(),
                    needed: n,
                    limit: opts.max_bytes,
                },
                gz::IndexedError::Corrupt(why) => fmt_err(path, format!("gzip: {why}")),
            })
        });
    }
    let mut dec = flate2::read::MultiGzDecoder::new(data);
    let skipped = std::io::copy(&mut (&mut dec).take(skip), &mut std::io::sink())
        .map_err(|e| fmt_err(path, format!("gzip: {e}")))?;
    if skipped != skip {
        return Err(fmt_err(path, "byte skip: the data ends before the voxels"));
    }
    decode.read(path, FORMAT, &mut dec, count)
}

/// A number as NRRD text: shortest form that reads back to the same `f64`.
fn num(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-5..1e15).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

fn vector(v: [f64; 3]) -> String {
    format!("({},{},{})", num(v[0]), num(v[1]), num(v[2]))
}

fn header_text(vol: &Volume, compress: bool, data_file: Option<&str>) -> String {
    let g = &vol.geometry;
    let axes: Vec<String> = (0..3)
        .map(|a| vector([0, 1, 2].map(|r| g.direction[r][a] * g.spacing[a])))
        .collect();
    let [nx, ny, nz] = vol.dims;
    let multi = vol.channels > 1;
    let mut s = String::from(
        "NRRD0004\n# Complete NRRD file format specification at:\n\
         # http://teem.sourceforge.net/nrrd/format.html\n",
    );
    s += &format!("type: {}\n", type_name(vol.voxel_type()));
    s += &format!("dimension: {}\n", if multi { 4 } else { 3 });
    s += "space: left-posterior-superior\n";
    if multi {
        s += &format!("sizes: {} {nx} {ny} {nz}\n", vol.channels);
        s += &format!("space directions: none {}\n", axes.join(" "));
        s += "kinds: vector domain domain domain\n";
    } else {
        s += &format!("sizes: {nx} {ny} {nz}\n");
        s += &format!("space directions: {}\n", axes.join(" "));
        s += "kinds: domain domain domain\n";
    }
    s += "endian: little\n";
    s += if compress {
        "encoding: gzip\n"
    } else {
        "encoding: raw\n"
    };
    s += &format!("space origin: {}\n", vector(g.origin));
    match data_file {
        Some(f) => s += &format!("data file: {f}\n"),
        None => s += "\n",
    }
    s
}

fn payload(vol: &Volume, compress: bool) -> Vec<u8> {
    let raw = if vol.channels > 1 {
        crate::mha::interleave(&vol.voxels, vol.channels).to_le_bytes()
    } else {
        vol.voxels.to_le_bytes()
    };
    if compress { gz::compress(&raw, 1) } else { raw }
}

/// Encodes `vol` as a single-file `.nrrd` (gzip when `compress`, else raw).
pub fn to_bytes(vol: &Volume, compress: bool) -> Vec<u8> {
    let mut out = header_text(vol, compress, None).into_bytes();
    out.extend_from_slice(&payload(vol, compress));
    out
}

/// Writes `.nrrd` (one file) or `.nhdr` + `.raw`/`.raw.gz` next to it, atomically per file.
pub fn write(vol: &Volume, path: &Path, compress: bool) -> Result<()> {
    if crate::io::has_suffix(path, ".nhdr") {
        let raw_path = path.with_extension(if compress { "raw.gz" } else { "raw" });
        let name = raw_path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ImagingError::InvalidArgument(format!("{}: bad file name", path.display())))?;
        crate::io::write_atomic(&raw_path, &payload(vol, compress))?;
        crate::io::write_atomic(path, header_text(vol, compress, Some(name)).as_bytes())
    } else {
        crate::io::write_atomic(path, &to_bytes(vol, compress))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Voxels;

    fn sample(channels: usize) -> Volume {
        let dims = [5, 4, 3];
        let n = 60 * channels;
        let g = Geometry {
            spacing: [0.7, 1.3, 2.1],
            origin: [-10.5, 20.25, 3.0],
            direction: [[0.0, 0.6, 0.8], [1.0, 0.0, 0.0], [0.0, 0.8, -0.6]],
        };
        Volume::new(
            dims,
            channels,
            g,
            Voxels::I16((0..n as i16).map(|x| x * 7 - 50).collect()),
        )
        .unwrap()
    }

    fn no_load(_: &str) -> Result<(PathBuf, Vec<u8>)> {
        Err(ImagingError::InvalidArgument("no data files here".into()))
    }

    #[test]
    fn round_trip_in_memory() {
        for channels in [1, 3] {
            let v = sample(channels);
            for compress in [false, true] {
                let b = to_bytes(&v, compress);
                let back = read_bytes(Path::new("t.nrrd"), &b, &ReadOptions::default(), no_load).unwrap();
                assert_eq!(back.voxels, v.voxels);
                assert_eq!((back.dims, back.channels), (v.dims, v.channels));
                assert!(back.geometry.approx_eq(&v.geometry, 1e-12));
            }
        }
    }

    #[test]
    fn numbers_read_back_exactly() {
        for x in [
            0.0,
            -0.0,
            1.0,
            -90.0,
            0.1,
            1.0 / 3.0,
            1e-7,
            123456.789,
            1e20,
            -2.5e-300,
        ] {
            assert_eq!(num(x).parse::<f64>().unwrap(), x, "{x} -> {}", num(x));
        }
    }

    #[test]
    fn truncations_and_mutations_never_panic() {
        let opts = ReadOptions { max_bytes: 1 << 20 };
        let mut inputs = Vec::new();
        for (channels, compress) in [(1, false), (1, true), (2, false), (2, true)] {
            inputs.push(to_bytes(&sample(channels), compress));
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as usize
        };
        let alphabet = b"0123456789-.,() :=\n\r#abcdefnoprstuvwxyzNRD%";
        for bytes in &inputs {
            for cut in 0..bytes.len().min(600) {
                let _ = read_bytes(Path::new("t.nrrd"), &bytes[..cut], &opts, no_load);
            }
            let _ = read_bytes(Path::new("t.nrrd"), &bytes[..bytes.len() - 1], &opts, no_load);
            let header_len = bytes.windows(2).position(|w| w == b"\n\n").unwrap_or(200) + 2;
            for _ in 0..3000 {
                let mut m = bytes.clone();
                for _ in 0..1 + next() % 4 {
                    let at = if next() % 8 == 0 {
                        next() % m.len()
                    } else {
                        next() % header_len
                    };
                    m[at] = match next() % 3 {
                        0 => next() as u8,
                        _ => alphabet[next() % alphabet.len()],
                    };
                }
                if next() % 4 == 0 {
                    m.truncate(next() % m.len());
                }
                let _ = read_bytes(Path::new("t.nrrd"), &m, &opts, no_load);
            }
        }
    }

    #[test]
    fn header_edge_cases() {
        let opts = ReadOptions::default();
        let read = |text: &str| read_bytes(Path::new("e.nrrd"), text.as_bytes(), &opts, no_load);
        let base = "NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 1 1\nencoding: raw\n";
        // Comments, key/value pairs, CRLF line ends and the spelling without spaces.
        let v = read(&format!(
            "{base}# c\nfoo:=bar\r\nlineskip: 1\r\n\r\nskipped\n\x01\x02"
        ))
        .unwrap();
        assert_eq!(v.voxels, Voxels::U8(vec![1, 2]));
        let v = read(&format!("{base}byte skip: -1\n\nxyz\x05\x06")).unwrap();
        assert_eq!(v.voxels, Voxels::U8(vec![5, 6]));
        for (extra, want) in [
            ("bogus: 1\n", "unknown field \"bogus\""),
            ("type: float\n", "appears twice"),
            ("data file: LIST\n", "data file"),
            ("data file: im%03d.raw 1 3 1\n", "data file"),
            ("space: scanner-xyz\n", "space: scanner-xyz"),
        ] {
            let e = read(&format!("{base}{extra}\n\x01\x02")).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("e.nrrd"), "{extra}: {e}");
        }
        let e = read("NRRD0006\n").unwrap_err().to_string();
        assert!(e.contains("NRRD0006"), "{e}");
        let e = read("P5\n").unwrap_err().to_string();
        assert!(e.contains("magic"), "{e}");
        let e = read(base).unwrap_err().to_string();
        assert!(e.contains("blank line"), "{e}");
        let e = read(&format!("{base}data file: x.raw\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no data files here"), "{e}");
    }
}
