//! NIfTI-1 / NIfTI-2 reading (`.nii`, `.nii.gz`, either byte order) and NIfTI-1 writing.
//!
//! Geometry follows ITK (see [`orientation`]); `scl_slope`/`scl_inter` are applied when
//! they are not the identity (result `f32`, or `f64` for 32-bit integer and `f64` data).
//! Dimensions 4 and 5 (time, vector) become channels. Before any voxel buffer is allocated
//! the result's size (in its final type, scaling included) is checked against the limit and
//! the file is checked to be long enough for the data its header announces; conversions run
//! chunk by chunk into the result ([`crate::decode`]).
//!
//! A spatial axis of more than one voxel whose `pixdim` is 0, NaN or infinite is refused:
//! nifti1_io and ITK silently read it as 1 mm, which puts every measurement made on the
//! image (volumes, distances, resampling) off by an unknown factor. A single-voxel axis
//! keeps the 1 mm fallback: its spacing changes nothing but the slab's thickness.

pub mod header;
pub mod orientation;

use std::io::Read;
use std::path::Path;

use header::Header;

use crate::decode::{Decode, Stored};
use crate::io::ImageInfo;
use crate::limits::{check_available, inflated_bound};
use crate::{Geometry, ImagingError, ReadOptions, Result, Volume, gz};

const FORMAT: &str = "NIfTI";

/// Largest gap between header and voxel data (extensions) we skip over.
const MAX_EXTENSION_BYTES: u64 = 256 << 20;

fn fmt_err(path: &Path, reason: impl Into<String>) -> ImagingError {
    ImagingError::format(path, FORMAT, reason)
}

/// Reads a `.nii` or `.nii.gz` file.
///
/// A plain `.nii` is read from the file straight into the voxel buffer (one copy from the
/// page cache). Gzip files written by [`crate::gz::compress`] (our writer: independent members that
/// record their length) are read whole and their members inflated in parallel; any other
/// gzip file is inflated as a stream from the file; both inflate straight into the final
/// voxel buffer.
pub fn read(path: &Path, opts: &ReadOptions) -> Result<Volume> {
    use std::io::{BufReader, Seek};
    let mut file = std::fs::File::open(path).map_err(|e| ImagingError::io(path, e))?;
    let len = file.metadata().map_err(|e| ImagingError::io(path, e))?.len();
    let mut head = [0u8; 20];
    let n = file
        .read(&mut head)
        .and_then(|n| file.rewind().map(|_| n))
        .map_err(|e| ImagingError::io(path, e))?;
    if !gz::is_gzip(&head[..n]) {
        // Plain: the voxels are read from the file straight into their buffer (the header's
        // claims are checked against the file's length before anything is allocated).
        return read_stream(path, BufReader::with_capacity(1 << 16, file), len, opts, false);
    }
    if gz::looks_indexed(&head[..n]) {
        drop(file);
        let bytes = crate::io::read_file(path, opts)?;
        return read_bytes(path, &bytes, opts);
    }
    let dec = flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 18, file));
    read_stream(path, dec, inflated_bound(len), opts, true)
}

/// Reads NIfTI from the bytes of a (possibly gzipped) file; `path` names it in errors.
pub fn read_bytes(path: &Path, bytes: &[u8], opts: &ReadOptions) -> Result<Volume> {
    if gz::is_gzip(bytes) {
        if let Some(members) = gz::members(bytes) {
            return read_indexed(path, bytes, &members, opts);
        }
        let available = inflated_bound(bytes.len() as u64);
        return read_stream(
            path,
            flate2::read::MultiGzDecoder::new(bytes),
            available,
            opts,
            true,
        );
    }
    read_stream(path, bytes, bytes.len() as u64, opts, false)
}

/// What the header of a (possibly gzipped) NIfTI file in memory says, without decoding
/// the voxels; refused, like a read, when the file cannot hold the data it announces.
pub fn probe_bytes(path: &Path, bytes: &[u8]) -> Result<ImageInfo> {
    let (h, available) = if gz::is_gzip(bytes) {
        let available = match gz::members(bytes) {
            Some(m) => m.iter().map(|m| m.size as u64).sum(),
            None => inflated_bound(bytes.len() as u64),
        };
        let h = read_header(path, &mut flate2::read::MultiGzDecoder::new(bytes))?;
        (h, available)
    } else {
        (read_header(path, &mut &bytes[..])?, bytes.len() as u64)
    };
    probe_header(path, h, available)
}

/// What a (possibly gzipped) NIfTI file of `len` bytes holds, from its first bytes `head`
/// (the header, inflated if need be, must be in them): a service checks an upload this way
/// without reading its voxels; refused when `len` bytes (inflated: at most 1032 times as
/// many) cannot hold the data the header announces. A read checks exactly.
pub fn probe_head(path: &Path, head: &[u8], len: u64) -> Result<ImageInfo> {
    if gz::is_gzip(head) {
        let h = read_header(path, &mut flate2::read::MultiGzDecoder::new(head))?;
        return probe_header(path, h, inflated_bound(len));
    }
    probe_header(path, read_header(path, &mut &head[..])?, len)
}

fn probe_header(path: &Path, h: Header, available: u64) -> Result<ImageInfo> {
    let plan = Plan::new(path, h, &ReadOptions { max_bytes: u64::MAX })?;
    plan.check_available(path, available)?;
    Ok(ImageInfo {
        dims: plan.dims,
        channels: plan.channels,
        voxel_type: plan.decode.output(),
        geometry: plan.geometry,
    })
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

/// How a datatype is stored: the element type and the values per voxel (3 for RGB24).
fn stored(datatype: i16) -> Option<(Stored, usize)> {
    use header::dt;
    Some(match datatype {
        dt::UINT8 => (Stored::U8, 1),
        dt::INT8 => (Stored::I8, 1),
        dt::INT16 => (Stored::I16, 1),
        dt::UINT16 => (Stored::U16, 1),
        dt::INT32 => (Stored::I32, 1),
        dt::UINT32 => (Stored::U32, 1),
        dt::FLOAT32 => (Stored::F32, 1),
        dt::FLOAT64 => (Stored::F64, 1),
        dt::RGB24 => (Stored::U8, 3),
        _ => return None,
    })
}

/// Refuses a spatial axis of more than one voxel without a usable `pixdim` (see the module
/// docs for why this is not read as 1 mm).
fn check_pixdim(path: &Path, h: &Header, dims: [usize; 3]) -> Result<()> {
    for (a, &n) in dims.iter().enumerate() {
        let p = h.pixdim[a + 1];
        if n > 1 && !(p.is_finite() && p != 0.0) {
            return Err(fmt_err(
                path,
                format!(
                    "pixdim[{}] = {p} is not a voxel size: axis {} has {} voxels and needs its spacing in mm",
                    a + 1,
                    a + 1,
                    n
                ),
            ));
        }
    }
    Ok(())
}

/// What the header says about the voxel data, checked.
struct Plan {
    h: Header,
    dims: [usize; 3],
    /// Channels of the result (RGB's three components included).
    channels: usize,
    geometry: Geometry,
    decode: Decode,
    /// Stored elements (voxels x channels x components).
    count: usize,
    /// Stored bytes.
    nbytes: u64,
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
        let (st, components) = stored(h.datatype)
            .ok_or_else(|| ImagingError::unsupported(path, FORMAT, format!("datatype {}", h.datatype)))?;
        let decode = Decode::new(st, h.big_endian)
            .interleaved(components)
            .scaled(h.scl_slope, h.scl_inter);
        // Saturating: NIfTI-2 dims are i64, so the product can exceed even u128.
        let count = dims
            .iter()
            .map(|&d| d as u128)
            .chain([channels as u128, components as u128])
            .fold(1u128, u128::saturating_mul);
        // The result, in the type it ends up in, is the only voxel buffer a read holds.
        opts.check(path, count, decode.output().size())?;
        let count = count as usize;
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
        check_pixdim(path, &h, dims)?;
        let geometry = orientation::geometry(&h).map_err(|e| ImagingError::unsupported(path, FORMAT, e))?;
        Ok(Plan {
            nbytes: decode.stored_bytes(count) as u64,
            count,
            h,
            dims,
            channels: channels * components,
            geometry,
            decode,
            skip,
        })
    }

    /// Refuses the read when the input (`available` plain bytes at most, header included)
    /// cannot hold the extensions and the voxel data.
    fn check_available(&self, path: &Path, available: u64) -> Result<()> {
        let before = self.h.header_len() as u64 + self.skip;
        check_available(path, FORMAT, before + self.nbytes, available)
    }

    fn volume(self, voxels: crate::Voxels) -> Result<Volume> {
        Volume::new(self.dims, self.channels, self.geometry, voxels)
    }
}

/// Reads header and voxels from `r` (`gzip`: a decoder, whose trailer is checked too).
fn read_stream<R: Read + Send>(
    path: &Path,
    mut r: R,
    available: u64,
    opts: &ReadOptions,
    gzip: bool,
) -> Result<Volume> {
    let h = read_header(path, &mut r)?;
    let plan = Plan::new(path, h, opts)?;
    plan.check_available(path, available)?;
    let skip = plan.skip;
    let skipped = std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink())
        .map_err(|e| fmt_err(path, format!("reading extensions: {e}")))?;
    if skipped != skip {
        return Err(fmt_err(path, "truncated: file ends before the voxel data"));
    }
    let voxels = plan.decode.read(path, FORMAT, &mut r, plan.count)?;
    if gzip {
        // One more read makes the decoder reach the end of the member that held the last
        // voxels and check its trailer (CRC and length): a file cut inside the trailer, or
        // inside the final bytes of the deflate stream, is refused rather than read.
        let mut next = [0u8; 1];
        r.read(&mut next).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                fmt_err(path, "truncated: the gzip stream ends before its trailer")
            } else {
                fmt_err(path, format!("gzip: {e}"))
            }
        })?;
    }
    plan.volume(voxels)
}

/// Reads a gzip file written by our writer: header from the first member, voxel data
/// inflated member by member in parallel, straight into the voxel buffer (scaled or
/// widened data: inflated in order, converted chunk by chunk).
fn read_indexed(path: &Path, bytes: &[u8], members: &[gz::Member], opts: &ReadOptions) -> Result<Volume> {
    let total: u64 = members.iter().map(|m| m.size as u64).sum();
    let h = read_header(path, &mut flate2::read::MultiGzDecoder::new(bytes))?;
    let plan = Plan::new(path, h, opts)?;
    plan.check_available(path, total)?;
    let offset = plan.h.header_len() as u64 + plan.skip;
    if !plan.decode.is_direct() {
        let mut r = flate2::read::MultiGzDecoder::new(bytes);
        std::io::copy(&mut (&mut r).take(offset), &mut std::io::sink())
            .map_err(|e| fmt_err(path, format!("gzip: {e}")))?;
        let voxels = plan.decode.read(path, FORMAT, &mut r, plan.count)?;
        return plan.volume(voxels);
    }
    let voxels = plan.decode.fill(plan.count, |dst| {
        gz::inflate_indexed_range(bytes, members, offset as usize, dst).map_err(|e| match e {
            gz::IndexedError::TooLarge(n) => ImagingError::TooLarge {
                path: path.to_path_buf(),
                needed: n,
                limit: opts.max_bytes,
            },
            gz::IndexedError::Corrupt(why) => fmt_err(path, format!("gzip: {why}")),
        })
    })?;
    plan.volume(voxels)
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

/// Refuses a volume NIfTI-1's 16-bit dimensions cannot describe.
fn check_nifti1(vol: &Volume) -> Result<()> {
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
    Ok(())
}

/// Encodes `vol` as NIfTI-1 bytes, gzipped (parallel blocks, level 1: these bytes answer a
/// request, where latency counts) when `gzip` is set.
pub fn to_bytes(vol: &Volume, gzip: bool) -> Result<Vec<u8>> {
    check_nifti1(vol)?;
    let mut out = header::write_nifti1(&header_for(vol));
    if gzip {
        // Compressed from the volume's own buffer: a volume-sized copy (and its page faults)
        // cost a 182 x 218 x 182 mask's answer as much as its compression.
        let voxels = vol.voxels.le_bytes();
        return Ok(gz::compress_parts(&[&out, &voxels], 1));
    }
    vol.voxels.write_le(&mut out);
    Ok(out)
}

/// Writes `vol` to `path` (`.nii.gz` compresses at [`gz::FILE_LEVEL`]), atomically (temp
/// file + rename). The voxels go from the volume's own buffer to the file (or to the
/// compressor, block by block): no copy of the volume is made.
pub fn write(vol: &Volume, path: &Path) -> Result<()> {
    use std::io::Write;
    check_nifti1(vol)?;
    let gzip = crate::io::has_suffix(path, ".gz");
    let head = header::write_nifti1(&header_for(vol));
    let voxels = vol.voxels.le_bytes();
    aiaa_files::write_with(path, |tmp| {
        let mut f = std::fs::OpenOptions::new().write(true).open(tmp)?;
        if gzip {
            gz::compress_to(&mut f, &[&head, &voxels], gz::FILE_LEVEL)
        } else {
            f.write_all(&head)?;
            f.write_all(&voxels)
        }
    })
    .map_err(|e| ImagingError::io(path, e))
}

/// Geometry-only helper for tests and tools: the LPS geometry a header describes.
pub fn geometry_of(path: &Path, h: &Header) -> Result<Geometry> {
    orientation::geometry(h).map_err(|e| ImagingError::unsupported(path, FORMAT, e))
}
