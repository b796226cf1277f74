//! MetaImage reading and writing: `.mha` (header + data in one file) and `.mhd` (header
//! naming a separate raw file), zlib-compressed (`CompressedData = True`) or not.
//!
//! `TransformMatrix` lists the direction vector of axis 0, then axis 1, then axis 2 (ITK's
//! `MetaImageIO` order); `Offset` is the origin. Multi-channel data is stored interleaved
//! per voxel on disk and converted to the crate's channel-slowest layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::decode::{Decode, Stored};
use crate::io::ImageInfo;
use crate::limits::{check_available, inflated_bound};
use crate::{Geometry, ImagingError, ReadOptions, Result, Volume, VoxelType, Voxels, gz, with_voxels};

const FORMAT: &str = "MetaImage";

fn fmt_err(path: &Path, reason: impl Into<String>) -> ImagingError {
    ImagingError::format(path, FORMAT, reason)
}

/// Parsed header: keys (as written) to values, plus where the header text ends.
struct HeaderText {
    fields: HashMap<String, String>,
    data_start: usize,
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<HeaderText> {
    let mut fields = HashMap::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let end = bytes[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |e| pos + e + 1);
        let line = std::str::from_utf8(&bytes[pos..end])
            .map_err(|_| fmt_err(path, "header is not text"))?
            .trim();
        pos = end;
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| fmt_err(path, format!("header line without '=': {line:.60}")))?;
        let key = k.trim().to_string();
        let last = key == "ElementDataFile";
        fields.insert(key, v.trim().to_string());
        if last {
            return Ok(HeaderText {
                fields,
                data_start: pos,
            });
        }
        if fields.len() > 200 {
            break;
        }
    }
    Err(fmt_err(path, "no ElementDataFile line"))
}

fn numbers(path: &Path, f: &HashMap<String, String>, key: &str) -> Result<Option<Vec<f64>>> {
    let Some(v) = f.get(key) else { return Ok(None) };
    v.split_whitespace()
        .map(|t| {
            t.parse::<f64>()
                .map_err(|_| fmt_err(path, format!("{key}: bad number {t:?}")))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn element_type(path: &Path, name: &str) -> Result<Stored> {
    Ok(match name {
        "MET_UCHAR" => Stored::U8,
        "MET_CHAR" => Stored::I8,
        "MET_SHORT" => Stored::I16,
        "MET_USHORT" => Stored::U16,
        "MET_INT" | "MET_LONG" => Stored::I32,
        "MET_UINT" | "MET_ULONG" => Stored::U32,
        "MET_FLOAT" => Stored::F32,
        "MET_DOUBLE" => Stored::F64,
        other => {
            return Err(ImagingError::unsupported(
                path,
                FORMAT,
                format!("ElementType {other}"),
            ));
        }
    })
}

fn type_name(ty: VoxelType) -> &'static str {
    match ty {
        VoxelType::U8 => "MET_UCHAR",
        VoxelType::I16 => "MET_SHORT",
        VoxelType::U16 => "MET_USHORT",
        VoxelType::I32 => "MET_INT",
        VoxelType::F32 => "MET_FLOAT",
        VoxelType::F64 => "MET_DOUBLE",
    }
}

/// Reads a `.mha` or `.mhd` file.
pub fn read(path: &Path, opts: &ReadOptions) -> Result<Volume> {
    let bytes = crate::io::read_file(path, opts)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    read_bytes(path, &bytes, opts, |name| {
        let p = dir.join(name);
        crate::io::read_file(&p, opts).map(|b| (p, b))
    })
}

/// The image a header describes.
struct Layout {
    h: HeaderText,
    dims: [usize; 3],
    channels: usize,
    geometry: Geometry,
    decode: Decode,
    compressed: bool,
    /// Stored elements (voxels x channels).
    count: u128,
}

fn layout(path: &Path, bytes: &[u8]) -> Result<Layout> {
    let h = parse_header(path, bytes)?;
    let f = &h.fields;
    let ndims = numbers(path, f, "NDims")?
        .and_then(|v| v.first().copied())
        .ok_or_else(|| fmt_err(path, "missing NDims"))?;
    if !(2.0..=3.0).contains(&ndims) || ndims.fract() != 0.0 {
        return Err(ImagingError::unsupported(
            path,
            FORMAT,
            format!("NDims = {ndims}"),
        ));
    }
    let nd = ndims as usize;
    let size = numbers(path, f, "DimSize")?.ok_or_else(|| fmt_err(path, "missing DimSize"))?;
    if size.len() != nd || size.iter().any(|&d| d < 1.0 || d.fract() != 0.0 || d > 1e9) {
        return Err(fmt_err(path, format!("bad DimSize {size:?}")));
    }
    let mut dims = [1usize; 3];
    for i in 0..nd {
        dims[i] = size[i] as usize;
    }
    let channels = match numbers(path, f, "ElementNumberOfChannels")? {
        Some(v) if v.len() == 1 && v[0] >= 1.0 && v[0] <= 1024.0 && v[0].fract() == 0.0 => v[0] as usize,
        Some(v) => return Err(fmt_err(path, format!("bad ElementNumberOfChannels {v:?}"))),
        None => 1,
    };
    let stored = element_type(path, f.get("ElementType").map_or("", |s| s.as_str()))?;
    let mut g = Geometry::default();
    if let Some(s) = numbers(path, f, "ElementSpacing")?.or(numbers(path, f, "ElementSize")?) {
        if s.len() != nd || s.iter().any(|&x| !(x > 0.0 && x.is_finite())) {
            return Err(fmt_err(path, format!("bad ElementSpacing {s:?}")));
        }
        g.spacing[..nd].copy_from_slice(&s);
    }
    let origin = numbers(path, f, "Offset")?
        .or(numbers(path, f, "Origin")?)
        .or(numbers(path, f, "Position")?);
    if let Some(o) = origin {
        if o.len() != nd {
            return Err(fmt_err(path, format!("bad Offset {o:?}")));
        }
        g.origin[..nd].copy_from_slice(&o);
    }
    let m = numbers(path, f, "TransformMatrix")?
        .or(numbers(path, f, "Rotation")?)
        .or(numbers(path, f, "Orientation")?);
    if let Some(m) = m {
        if m.len() != nd * nd {
            return Err(fmt_err(path, format!("bad TransformMatrix {m:?}")));
        }
        for axis in 0..nd {
            for r in 0..nd {
                g.direction[r][axis] = m[axis * nd + r];
            }
        }
    }
    let big_endian = ["BinaryDataByteOrderMSB", "ElementByteOrderMSB"]
        .iter()
        .any(|k| f.get(*k).is_some_and(|v| v.eq_ignore_ascii_case("true")));
    let compressed = f
        .get("CompressedData")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let count = dims.iter().map(|&d| d as u128).product::<u128>() * channels as u128;
    Ok(Layout {
        h,
        dims,
        channels,
        geometry: g,
        decode: Decode::new(stored, big_endian).interleaved(channels),
        compressed,
        count,
    })
}

/// What a single-file MetaImage header in memory says, without decoding the voxels;
/// refused, like a read, when the data is elsewhere or cannot be as long as announced.
pub fn probe_bytes(path: &Path, bytes: &[u8]) -> Result<ImageInfo> {
    let l = layout(path, bytes)?;
    let data_file =
        l.h.fields
            .get("ElementDataFile")
            .map(String::as_str)
            .unwrap_or("");
    if !data_file.eq_ignore_ascii_case("LOCAL") {
        return Err(ImagingError::InvalidArgument(format!(
            "the header names a separate data file {data_file:?}; send a single .mha file instead"
        )));
    }
    let count = usize::try_from(l.count).unwrap_or(usize::MAX);
    let needed = l.decode.stored_bytes(count) as u64;
    let have = (bytes.len() - l.h.data_start) as u64;
    check_available(
        path,
        FORMAT,
        needed,
        if l.compressed { inflated_bound(have) } else { have },
    )?;
    Ok(ImageInfo {
        dims: l.dims,
        channels: l.channels,
        voxel_type: l.decode.output(),
        geometry: l.geometry,
    })
}

/// Reads MetaImage from header bytes; `load` fetches a separate data file by name.
pub fn read_bytes(
    path: &Path,
    bytes: &[u8],
    opts: &ReadOptions,
    load: impl FnOnce(&str) -> Result<(PathBuf, Vec<u8>)>,
) -> Result<Volume> {
    let l = layout(path, bytes)?;
    let f = &l.h.fields;
    opts.check(path, l.count, l.decode.output().size())?;
    let count = l.count as usize;
    let nbytes = l.decode.stored_bytes(count);
    let compressed = l.compressed;

    let data_file = f.get("ElementDataFile").map(String::as_str).unwrap_or("");
    let (data_path, external);
    let data: &[u8] = if data_file.eq_ignore_ascii_case("LOCAL") {
        data_path = path.to_path_buf();
        &bytes[l.h.data_start..]
    } else if data_file.is_empty() || data_file.starts_with("LIST") || data_file.contains('%') {
        return Err(ImagingError::unsupported(
            path,
            FORMAT,
            format!("ElementDataFile = {data_file}"),
        ));
    } else {
        let (p, b) = load(data_file)?;
        data_path = p;
        external = b;
        let header_size = numbers(path, f, "HeaderSize")?
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0);
        let skip = if header_size < 0.0 && !compressed {
            external.len().saturating_sub(nbytes)
        } else {
            header_size.max(0.0) as usize
        };
        external
            .get(skip..)
            .ok_or_else(|| fmt_err(&data_path, "HeaderSize beyond end of file"))?
    };
    let voxels = if compressed {
        check_available(
            &data_path,
            FORMAT,
            nbytes as u64,
            inflated_bound(data.len() as u64),
        )?;
        let mut dec = flate2::read::ZlibDecoder::new(data);
        l.decode.read(&data_path, FORMAT, &mut dec, count)?
    } else {
        if data.len() < nbytes {
            return Err(fmt_err(
                &data_path,
                format!("truncated: {} bytes of voxel data, expected {nbytes}", data.len()),
            ));
        }
        l.decode.read(&data_path, FORMAT, &mut &data[..nbytes], count)?
    };
    Volume::new(l.dims, l.channels, l.geometry, voxels)
}

/// Per-voxel interleaved -> channel-slowest.
pub fn deinterleave(v: &Voxels, channels: usize) -> Voxels {
    with_voxels!(v, x => {
        let n = x.len() / channels;
        let mut out = Vec::with_capacity(x.len());
        for c in 0..channels {
            out.extend((0..n).map(|i| x[i * channels + c]));
        }
        crate::voxels::Element::wrap(out)
    })
}

/// Channel-slowest -> per-voxel interleaved.
pub fn interleave(v: &Voxels, channels: usize) -> Voxels {
    with_voxels!(v, x => {
        let n = x.len() / channels;
        let mut out = Vec::with_capacity(x.len());
        for i in 0..n {
            out.extend((0..channels).map(|c| x[c * n + i]));
        }
        crate::voxels::Element::wrap(out)
    })
}

fn header_text(vol: &Volume, compressed: bool, compressed_size: usize, data_file: &str) -> String {
    let g = &vol.geometry;
    let j = |v: &[f64]| v.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(" ");
    let tm: Vec<f64> = (0..3)
        .flat_map(|axis| (0..3).map(move |r| g.direction[r][axis]))
        .collect();
    let mut s = String::new();
    s += "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n";
    s += &format!("CompressedData = {}\n", if compressed { "True" } else { "False" });
    if compressed {
        s += &format!("CompressedDataSize = {compressed_size}\n");
    }
    s += &format!("TransformMatrix = {}\n", j(&tm));
    s += &format!("Offset = {}\n", j(&g.origin));
    s += "CenterOfRotation = 0 0 0\n";
    s += &format!("ElementSpacing = {}\n", j(&g.spacing));
    s += &format!("DimSize = {} {} {}\n", vol.dims[0], vol.dims[1], vol.dims[2]);
    if vol.channels > 1 {
        s += &format!("ElementNumberOfChannels = {}\n", vol.channels);
    }
    s += &format!("ElementType = {}\n", type_name(vol.voxel_type()));
    s += &format!("ElementDataFile = {data_file}\n");
    s
}

fn payload(vol: &Volume, compress: bool) -> Vec<u8> {
    let raw = if vol.channels > 1 {
        interleave(&vol.voxels, vol.channels).to_le_bytes()
    } else {
        vol.voxels.to_le_bytes()
    };
    if compress { gz::zlib_compress(&raw, 1) } else { raw }
}

/// Encodes `vol` as a single-file `.mha`.
pub fn to_bytes(vol: &Volume, compress: bool) -> Vec<u8> {
    let data = payload(vol, compress);
    let mut out = header_text(vol, compress, data.len(), "LOCAL").into_bytes();
    out.extend_from_slice(&data);
    out
}

/// Writes `.mha` (one file) or `.mhd` + `.raw`/`.zraw` next to it, atomically per file.
pub fn write(vol: &Volume, path: &Path, compress: bool) -> Result<()> {
    if crate::io::has_suffix(path, ".mhd") {
        let data = payload(vol, compress);
        let raw_path = path.with_extension(if compress { "zraw" } else { "raw" });
        let name = raw_path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| ImagingError::InvalidArgument(format!("{}: bad file name", path.display())))?;
        crate::io::write_atomic(&raw_path, &data)?;
        crate::io::write_atomic(path, header_text(vol, compress, data.len(), name).as_bytes())
    } else {
        crate::io::write_atomic(path, &to_bytes(vol, compress))
    }
}
