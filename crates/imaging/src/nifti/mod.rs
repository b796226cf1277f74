//! NIfTI-1 / NIfTI-2 reading (`.nii`, `.nii.gz`, either byte order) and NIfTI-1 writing.
//!
//! Geometry follows ITK (see [`orientation`]); `scl_slope`/`scl_inter` are applied when
//! they are not the identity (result `f32`, or `f64` for 32-bit integer and `f64` data).
//! Dimensions 4 and 5 (time, vector) become channels. The size limit is checked against the
//! header before any voxel buffer is allocated.

pub mod header;
pub mod orientation;

use std::io::Read;
use std::path::Path;

use header::Header;

use crate::{
    Geometry, ImagingError, ReadOptions, Result, Volume, VoxelType, Voxels, gz, with_voxels,
};

const FORMAT: &str = "NIfTI";

/// Largest gap between header and voxel data (extensions) we skip over.
const MAX_EXTENSION_BYTES: u64 = 256 << 20;

fn fmt_err(path: &Path, reason: impl Into<String>) -> ImagingError {
    ImagingError::format(path, FORMAT, reason)
}

/// Reads a `.nii` or `.nii.gz` file.
pub fn read(path: &Path, opts: &ReadOptions) -> Result<Volume> {
    let bytes = crate::io::read_file(path, opts)?;
    read_bytes(path, &bytes, opts)
}

/// Reads NIfTI from the bytes of a (possibly gzipped) file; `path` names it in errors.
pub fn read_bytes(path: &Path, bytes: &[u8], opts: &ReadOptions) -> Result<Volume> {
    if gz::is_gzip(bytes) {
        let margin = MAX_EXTENSION_BYTES + header::NIFTI2_LEN as u64;
        if let Some(res) = gz::decompress_indexed(bytes, opts.max_bytes.saturating_add(margin)) {
            let plain = res.map_err(|e| match e {
                gz::IndexedError::TooLarge(n) => ImagingError::TooLarge {
                    path: path.to_path_buf(),
                    needed: n,
                    limit: opts.max_bytes,
                },
                gz::IndexedError::Corrupt(why) => fmt_err(path, format!("gzip: {why}")),
            })?;
            return read_stream(path, &mut &plain[..], opts);
        }
        let mut dec = flate2::read::MultiGzDecoder::new(bytes);
        return read_stream(path, &mut dec, opts);
    }
    read_stream(path, &mut &bytes[..], opts)
}

fn read_exact_or(path: &Path, r: &mut dyn Read, buf: &mut [u8], what: &str) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            fmt_err(path, format!("truncated: file ends inside the {what}"))
        } else {
            fmt_err(path, format!("reading the {what}: {e}"))
        }
    })
}

/// Parses the header at the start of `r`.
pub fn read_header(path: &Path, r: &mut dyn Read) -> Result<Header> {
    let mut buf = vec![0u8; header::NIFTI2_LEN];
    read_exact_or(path, r, &mut buf[..4], "header")?;
    let kind = header::kind(&buf[..4])
        .ok_or_else(|| fmt_err(path, "sizeof_hdr is neither 348 nor 540"))?;
    read_exact_or(path, r, &mut buf[4..kind.header_len()], "header")?;
    header::parse(&buf, kind).map_err(|e| fmt_err(path, e))
}

/// Grid size and channel count from `dim`, validated.
fn shape(path: &Path, h: &Header) -> Result<([usize; 3], usize)> {
    let ndim = h.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(fmt_err(path, format!("dim[0] = {ndim} is not in 1..=7")));
    }
    let mut d = [1usize; 7];
    for i in 1..=ndim as usize {
        let v = h.dim[i];
        if v <= 0 {
            return Err(fmt_err(path, format!("dim[{i}] = {v} is not positive")));
        }
        d[i - 1] = usize::try_from(v).map_err(|_| fmt_err(path, "dimension too large"))?;
    }
    if d[5] != 1 || d[6] != 1 {
        return Err(ImagingError::unsupported(
            path,
            FORMAT,
            format!("dims 6 and 7 ({}, {})", d[5], d[6]),
        ));
    }
    Ok(([d[0], d[1], d[2]], d[3].saturating_mul(d[4])))
}

fn decode_stored(h: &Header, st: header::Storage, raw: &[u8]) -> Result<Voxels> {
    let be = h.big_endian;
    Ok(match h.datatype {
        header::dt::INT8 => Voxels::I16(raw.iter().map(|&b| b as i8 as i16).collect()),
        header::dt::UINT32 => Voxels::F64(
            raw.chunks_exact(4)
                .map(|c| {
                    let a = [c[0], c[1], c[2], c[3]];
                    (if be {
                        u32::from_be_bytes(a)
                    } else {
                        u32::from_le_bytes(a)
                    }) as f64
                })
                .collect(),
        ),
        _ => Voxels::from_bytes(st.voxel_type, raw, be)?,
    })
}

fn read_stream(path: &Path, r: &mut dyn Read, opts: &ReadOptions) -> Result<Volume> {
    let h = read_header(path, r)?;
    if !h.single_file {
        return Err(ImagingError::unsupported(
            path,
            FORMAT,
            "header/image pairs (.hdr/.img)",
        ));
    }
    let (dims, mut channels) = shape(path, &h)?;
    let st = header::storage(h.datatype).ok_or_else(|| {
        ImagingError::unsupported(path, FORMAT, format!("datatype {}", h.datatype))
    })?;
    let count = dims.iter().map(|&d| d as u128).product::<u128>()
        * channels as u128
        * st.components as u128;
    // Check both the stored and the decoded size before allocating either.
    let nbytes = opts.check(path, count, st.stored_size)?;
    opts.check(path, count, st.voxel_type.size())?;
    let header_len = if h.version == 1 {
        header::NIFTI1_LEN
    } else {
        header::NIFTI2_LEN
    } as f64;
    if !(h.vox_offset.is_finite()) || h.vox_offset < 0.0 {
        return Err(fmt_err(
            path,
            format!("vox_offset {} is invalid", h.vox_offset),
        ));
    }
    let skip = (h.vox_offset - header_len).max(0.0) as u64;
    if skip > MAX_EXTENSION_BYTES {
        return Err(fmt_err(
            path,
            format!("vox_offset {} is implausibly large", h.vox_offset),
        ));
    }
    let skipped = std::io::copy(&mut r.take(skip), &mut std::io::sink())
        .map_err(|e| fmt_err(path, format!("reading extensions: {e}")))?;
    if skipped != skip {
        return Err(fmt_err(path, "truncated: file ends before the voxel data"));
    }
    let mut raw = vec![0u8; nbytes];
    read_exact_or(path, r, &mut raw, "voxel data")?;
    let mut voxels = decode_stored(&h, st, &raw)?;
    drop(raw);
    if st.components == 3 {
        voxels = deinterleave_rgb(voxels, count as usize / 3);
        channels *= 3;
    }
    voxels = apply_scaling(voxels, h.scl_slope, h.scl_inter);
    let geometry =
        orientation::geometry(&h).map_err(|e| ImagingError::unsupported(path, FORMAT, e))?;
    Volume::new(dims, channels, geometry, voxels)
}

fn deinterleave_rgb(v: Voxels, n: usize) -> Voxels {
    match v {
        Voxels::U8(b) => Voxels::U8(
            (0..3)
                .flat_map(|c| b.iter().skip(c).step_by(3).copied())
                .take(3 * n)
                .collect(),
        ),
        other => other,
    }
}

/// Applies `value * slope + inter` when the pair is not the identity (slope 0 = no scaling).
pub fn apply_scaling(v: Voxels, slope: f64, inter: f64) -> Voxels {
    if !slope.is_finite() || !inter.is_finite() || slope == 0.0 || (slope == 1.0 && inter == 0.0) {
        return v;
    }
    use crate::voxels::Element;
    match v.voxel_type() {
        VoxelType::I32 | VoxelType::F64 => {
            with_voxels!(&v, x => Voxels::F64(x.iter().map(|&e| e.to_f64() * slope + inter).collect()))
        }
        // Computed in f64 and rounded once, like ITK.
        _ => {
            with_voxels!(&v, x => Voxels::F32(x.iter().map(|&e| (e.to_f64() * slope + inter) as f32).collect()))
        }
    }
}

/// The NIfTI-1 header describing `vol` (sform and qform both `SCANNER_ANAT`, like ITK).
pub fn header_for(vol: &Volume) -> Header {
    let g = &vol.geometry;
    let ras = g.ras_affine();
    let flip = [-1.0, -1.0, 1.0];
    let rot = std::array::from_fn(|r| std::array::from_fn(|c| flip[r] * g.direction[r][c]));
    let (quatern, qfac) = orientation::quaternion(&rot);
    let (datatype, bitpix) = header::datatype_of(vol.voxel_type());
    let mut dim = [1i64; 8];
    dim[0] = if vol.channels > 1 { 5 } else { 3 };
    for i in 0..3 {
        dim[i + 1] = vol.dims[i] as i64;
    }
    dim[5] = vol.channels as i64;
    let mut pixdim = [1.0; 8];
    pixdim[0] = qfac;
    pixdim[1..4].copy_from_slice(&g.spacing);
    Header {
        version: 1,
        big_endian: false,
        dim,
        datatype,
        bitpix,
        pixdim,
        vox_offset: 352.0,
        scl_slope: 1.0,
        scl_inter: 0.0,
        qform_code: 1,
        sform_code: 1,
        quatern,
        qoffset: [ras[0][3], ras[1][3], ras[2][3]],
        srow: ras,
        intent_code: if vol.channels > 1 { 1007 } else { 0 },
        single_file: true,
    }
}

/// Encodes `vol` as NIfTI-1 bytes, gzipped (parallel blocks) when `gzip` is set.
pub fn to_bytes(vol: &Volume, gzip: bool) -> Result<Vec<u8>> {
    if vol
        .dims
        .iter()
        .chain([&vol.channels])
        .any(|&d| d > i16::MAX as usize)
    {
        return Err(ImagingError::InvalidArgument(format!(
            "NIfTI-1 cannot store dimensions {:?} x {}",
            vol.dims, vol.channels
        )));
    }
    let mut out = header::write_nifti1(&header_for(vol));
    out.extend_from_slice(&vol.voxels.to_le_bytes());
    Ok(if gzip { gz::compress(&out, 1) } else { out })
}

/// Writes `vol` to `path` (`.nii.gz` compresses), atomically (temp file + rename).
pub fn write(vol: &Volume, path: &Path) -> Result<()> {
    let gzip = crate::io::has_suffix(path, ".gz");
    let bytes = to_bytes(vol, gzip)?;
    crate::io::write_atomic(path, &bytes)
}

/// Geometry-only helper for tests and tools: the LPS geometry a header describes.
pub fn geometry_of(path: &Path, h: &Header) -> Result<Geometry> {
    orientation::geometry(h).map_err(|e| ImagingError::unsupported(path, FORMAT, e))
}
