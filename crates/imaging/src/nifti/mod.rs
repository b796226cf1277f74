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

use crate::{Geometry, ImagingError, ReadOptions, Result, Volume, VoxelType, Voxels, gz, with_voxels};

const FORMAT: &str = "NIfTI";

/// Largest gap between header and voxel data (extensions) we skip over.
const MAX_EXTENSION_BYTES: u64 = 256 << 20;

fn fmt_err(path: &Path, reason: impl Into<String>) -> ImagingError {
    ImagingError::format(path, FORMAT, reason)
}

/// Reads a `.nii` or `.nii.gz` file.
///
/// Gzip files written by [`crate::gz::compress`] (our writer: independent members that
/// record their length) are read whole and their members inflated in parallel; any other
/// gzip file is inflated as a stream from the file; both inflate straight into the final
/// voxel buffer.
pub fn read(path: &Path, opts: &ReadOptions) -> Result<Volume> {
    use std::io::{BufReader, Seek};
    let mut file = std::fs::File::open(path).map_err(|e| ImagingError::io(path, e))?;
    let mut head = [0u8; 20];
    let n = file
        .read(&mut head)
        .and_then(|n| file.rewind().map(|_| n))
        .map_err(|e| ImagingError::io(path, e))?;
    if !gz::is_gzip(&head[..n]) || gz::looks_indexed(&head[..n]) {
        drop(file);
        let bytes = crate::io::read_file(path, opts)?;
        return read_bytes(path, &bytes, opts);
    }
    let dec = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 18, file));
    read_stream(path, dec, opts)
}

/// Reads NIfTI from the bytes of a (possibly gzipped) file; `path` names it in errors.
pub fn read_bytes(path: &Path, bytes: &[u8], opts: &ReadOptions) -> Result<Volume> {
    if gz::is_gzip(bytes) {
        if let Some(members) = gz::members(bytes) {
            return read_indexed(path, bytes, &members, opts);
        }
        return read_stream(path, flate2::read::MultiGzDecoder::new(bytes), opts);
    }
    read_stream(path, bytes, opts)
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
    let kind = header::kind(&buf[..4]).ok_or_else(|| fmt_err(path, "sizeof_hdr is neither 348 nor 540"))?;
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

/// What the header says about the voxel data.
struct Plan {
    h: Header,
    dims: [usize; 3],
    channels: usize,
    st: header::Storage,
    /// Stored elements (voxels x channels x components).
    count: usize,
    /// Stored bytes.
    nbytes: usize,
    /// Bytes between the end of the header and the voxel data.
    skip: u64,
}

impl Plan {
    fn new(path: &Path, h: Header, opts: &ReadOptions) -> Result<Plan> {
        if !h.single_file {
            return Err(ImagingError::unsupported(
                path,
                FORMAT,
                "header/image pairs (.hdr/.img)",
            ));
        }
        let (dims, channels) = shape(path, &h)?;
        let st = header::storage(h.datatype)
            .ok_or_else(|| ImagingError::unsupported(path, FORMAT, format!("datatype {}", h.datatype)))?;
        // Saturating: NIfTI-2 dims are i64, so the product can exceed even u128.
        let count = dims
            .iter()
            .map(|&d| d as u128)
            .chain([channels as u128, st.components as u128])
            .fold(1u128, u128::saturating_mul);
        // Check both the stored and the decoded size before allocating either.
        let nbytes = opts.check(path, count, st.stored_size)?;
        opts.check(path, count, st.voxel_type.size())?;
        if !(h.vox_offset.is_finite()) || h.vox_offset < 0.0 {
            return Err(fmt_err(path, format!("vox_offset {} is invalid", h.vox_offset)));
        }
        let skip = (h.vox_offset - h.header_len() as f64).max(0.0) as u64;
        if skip > MAX_EXTENSION_BYTES {
            return Err(fmt_err(
                path,
                format!("vox_offset {} is implausibly large", h.vox_offset),
            ));
        }
        Ok(Plan {
            count: count as usize,
            h,
            dims,
            channels,
            st,
            nbytes,
            skip,
        })
    }

    /// Allocates the voxel buffer once, lets `fill` write the stored bytes into it, then
    /// fixes the byte order (only when the file's is not the machine's) and decodes.
    fn load(self, path: &Path, fill: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<Volume> {
        let Plan {
            h,
            dims,
            mut channels,
            st,
            count,
            nbytes,
            ..
        } = self;
        let direct = st.components == 1 && st.stored_size == st.voxel_type.size();
        let mut voxels = if direct {
            let mut v = Voxels::zeros(st.voxel_type, count);
            fill(v.as_bytes_mut())?;
            if h.big_endian != cfg!(target_endian = "big") {
                v.swap_bytes();
            }
            v
        } else {
            let mut raw = vec![0u8; nbytes];
            fill(&mut raw)?;
            decode_stored(&h, st, &raw)?
        };
        if st.components == 3 {
            voxels = deinterleave_rgb(voxels, count / 3);
            channels *= 3;
        }
        voxels = apply_scaling(voxels, h.scl_slope, h.scl_inter);
        let geometry = orientation::geometry(&h).map_err(|e| ImagingError::unsupported(path, FORMAT, e))?;
        Volume::new(dims, channels, geometry, voxels)
    }
}

/// Touches one byte per page so the kernel maps the pages now (run on another thread
/// while the first half of a buffer is being inflated).
fn prefault(buf: &mut [u8]) {
    for page in buf.chunks_mut(4096) {
        page[0] = std::hint::black_box(0);
    }
}

fn read_stream<R: Read + Send>(path: &Path, mut r: R, opts: &ReadOptions) -> Result<Volume> {
    let h = read_header(path, &mut r)?;
    let plan = Plan::new(path, h, opts)?;
    let skip = plan.skip;
    let skipped = std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink())
        .map_err(|e| fmt_err(path, format!("reading extensions: {e}")))?;
    if skipped != skip {
        return Err(fmt_err(path, "truncated: file ends before the voxel data"));
    }
    plan.load(path, |dst| {
        // Large buffers: map the second half's pages on another thread while the first
        // half is read, so the reader does not stop for page faults there.
        if dst.len() >= 1 << 24 {
            let (a, b) = dst.split_at_mut(dst.len() / 2);
            let (res, ()) = rayon::join(|| read_exact_or(path, &mut r, a, "voxel data"), || prefault(b));
            res?;
            read_exact_or(path, &mut r, b, "voxel data")
        } else {
            read_exact_or(path, &mut r, dst, "voxel data")
        }
    })
}

/// Reads a gzip file written by our writer: header from the first member, voxel data
/// inflated member by member in parallel, straight into the voxel buffer.
fn read_indexed(path: &Path, bytes: &[u8], members: &[gz::Member], opts: &ReadOptions) -> Result<Volume> {
    let total: u64 = members.iter().map(|m| m.size as u64).sum();
    let margin = MAX_EXTENSION_BYTES + header::NIFTI2_LEN as u64;
    if total > opts.max_bytes.saturating_add(margin) {
        return Err(ImagingError::TooLarge {
            path: path.to_path_buf(),
            needed: total,
            limit: opts.max_bytes,
        });
    }
    let h = read_header(path, &mut flate2::read::MultiGzDecoder::new(bytes))?;
    let plan = Plan::new(path, h, opts)?;
    let offset = plan.h.header_len() as u64 + plan.skip;
    if offset + plan.nbytes as u64 > total {
        return Err(fmt_err(path, "truncated: file ends inside the voxel data"));
    }
    plan.load(path, |dst| {
        gz::inflate_indexed_range(bytes, members, offset as usize, dst).map_err(|e| match e {
            gz::IndexedError::TooLarge(n) => ImagingError::TooLarge {
                path: path.to_path_buf(),
                needed: n,
                limit: opts.max_bytes,
            },
            gz::IndexedError::Corrupt(why) => fmt_err(path, format!("gzip: {why}")),
        })
    })
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
