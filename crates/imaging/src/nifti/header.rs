//! NIfTI-1 (348-byte) and NIfTI-2 (540-byte) headers, parsed and written by hand.

use crate::VoxelType;

/// NIfTI-1 header length.
pub const NIFTI1_LEN: usize = 348;
/// NIfTI-2 header length.
pub const NIFTI2_LEN: usize = 540;

/// NIfTI datatype codes (subset).
pub mod dt {
    pub const UINT8: i16 = 2;
    pub const INT16: i16 = 4;
    pub const INT32: i16 = 8;
    pub const FLOAT32: i16 = 16;
    pub const FLOAT64: i16 = 64;
    pub const RGB24: i16 = 128;
    pub const INT8: i16 = 256;
    pub const UINT16: i16 = 512;
    pub const UINT32: i16 = 768;
}

/// The header fields this crate uses, in a version-independent form.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// 1 or 2.
    pub version: u8,
    /// Whether the file is big-endian.
    pub big_endian: bool,
    pub dim: [i64; 8],
    pub datatype: i16,
    pub bitpix: i16,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub intent_code: i32,
    /// `"n+1"`/`"n+2"` (single file) vs `"ni1"`/`"ni2"` (header/image pair).
    pub single_file: bool,
}

impl Header {
    /// Length of the header on disk (348 for NIfTI-1, 540 for NIfTI-2).
    pub fn header_len(&self) -> usize {
        if self.version == 1 { NIFTI1_LEN } else { NIFTI2_LEN }
    }
}

/// How the first four bytes identify the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Nifti1 { big_endian: bool },
    Nifti2 { big_endian: bool },
}

impl Kind {
    /// Header length for this kind.
    pub fn header_len(self) -> usize {
        match self {
            Kind::Nifti1 { .. } => NIFTI1_LEN,
            Kind::Nifti2 { .. } => NIFTI2_LEN,
        }
    }
}

/// Identifies the header from `sizeof_hdr`; `None` if it is not NIfTI.
pub fn kind(first4: &[u8]) -> Option<Kind> {
    let b: [u8; 4] = first4.get(..4)?.try_into().ok()?;
    match (i32::from_le_bytes(b), i32::from_be_bytes(b)) {
        (348, _) => Some(Kind::Nifti1 { big_endian: false }),
        (_, 348) => Some(Kind::Nifti1 { big_endian: true }),
        (540, _) => Some(Kind::Nifti2 { big_endian: false }),
        (_, 540) => Some(Kind::Nifti2 { big_endian: true }),
        _ => None,
    }
}

struct Fields<'a> {
    b: &'a [u8],
    be: bool,
}

impl Fields<'_> {
    fn arr<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.b[off..off + N]);
        if self.be {
            a.reverse();
        }
        a
    }
    fn i16(&self, off: usize) -> i16 {
        i16::from_le_bytes(self.arr(off))
    }
    fn i32(&self, off: usize) -> i32 {
        i32::from_le_bytes(self.arr(off))
    }
    fn i64(&self, off: usize) -> i64 {
        i64::from_le_bytes(self.arr(off))
    }
    fn f32(&self, off: usize) -> f64 {
        f32::from_le_bytes(self.arr(off)) as f64
    }
    fn f64(&self, off: usize) -> f64 {
        f64::from_le_bytes(self.arr(off))
    }
}

/// Parses a header of `kind` from `b` (`b.len() >= kind.header_len()`). Returns an error text.
pub fn parse(b: &[u8], kind: Kind) -> Result<Header, String> {
    if b.len() < kind.header_len() {
        return Err(format!("header truncated at {} bytes", b.len()));
    }
    match kind {
        Kind::Nifti1 { big_endian } => {
            let f = Fields { b, be: big_endian };
            let magic = &b[344..348];
            let single_file = match magic {
                b"n+1\0" => true,
                b"ni1\0" => false,
                _ => return Err(format!("bad NIfTI-1 magic {magic:?}")),
            };
            Ok(Header {
                version: 1,
                big_endian,
                dim: std::array::from_fn(|i| f.i16(40 + 2 * i) as i64),
                datatype: f.i16(70),
                bitpix: f.i16(72),
                pixdim: std::array::from_fn(|i| f.f32(76 + 4 * i)),
                vox_offset: f.f32(108),
                scl_slope: f.f32(112),
                scl_inter: f.f32(116),
                qform_code: f.i16(252) as i32,
                sform_code: f.i16(254) as i32,
                quatern: std::array::from_fn(|i| f.f32(256 + 4 * i)),
                qoffset: std::array::from_fn(|i| f.f32(268 + 4 * i)),
                srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f32(280 + 16 * r + 4 * c))),
                intent_code: f.i16(68) as i32,
                single_file,
            })
        }
        Kind::Nifti2 { big_endian } => {
            let f = Fields { b, be: big_endian };
            let magic = &b[4..12];
            let single_file = match magic {
                b"n+2\0\r\n\x1a\n" => true,
                b"ni2\0\r\n\x1a\n" => false,
                _ => return Err(format!("bad NIfTI-2 magic {magic:?}")),
            };
            Ok(Header {
                version: 2,
                big_endian,
                dim: std::array::from_fn(|i| f.i64(16 + 8 * i)),
                datatype: f.i16(12),
                bitpix: f.i16(14),
                pixdim: std::array::from_fn(|i| f.f64(104 + 8 * i)),
                vox_offset: f.i64(168) as f64,
                scl_slope: f.f64(176),
                scl_inter: f.f64(184),
                qform_code: f.i32(344),
                sform_code: f.i32(348),
                quatern: std::array::from_fn(|i| f.f64(352 + 8 * i)),
                qoffset: std::array::from_fn(|i| f.f64(376 + 8 * i)),
                srow: std::array::from_fn(|r| std::array::from_fn(|c| f.f64(400 + 32 * r + 8 * c))),
                intent_code: f.i32(504),
                single_file,
            })
        }
    }
}

/// How stored elements map to our voxel types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    /// Type of the stored elements as read (before widening).
    pub stored_size: usize,
    /// Our type after reading (`i8` widens to `i16`, `u32` to `f64`).
    pub voxel_type: VoxelType,
    /// Interleaved components per voxel (3 for RGB24).
    pub components: usize,
}

/// Maps a NIfTI datatype code to how we store it.
pub fn storage(datatype: i16) -> Option<Storage> {
    let s = |stored_size, voxel_type| Storage {
        stored_size,
        voxel_type,
        components: 1,
    };
    Some(match datatype {
        dt::UINT8 => s(1, VoxelType::U8),
        dt::INT8 => s(1, VoxelType::I16),
        dt::INT16 => s(2, VoxelType::I16),
        dt::UINT16 => s(2, VoxelType::U16),
        dt::INT32 => s(4, VoxelType::I32),
        dt::UINT32 => s(4, VoxelType::F64),
        dt::FLOAT32 => s(4, VoxelType::F32),
        dt::FLOAT64 => s(8, VoxelType::F64),
        dt::RGB24 => Storage {
            stored_size: 1,
            voxel_type: VoxelType::U8,
            components: 3,
        },
        _ => return None,
    })
}

/// NIfTI datatype code and bitpix for one of our voxel types.
pub fn datatype_of(ty: VoxelType) -> (i16, i16) {
    match ty {
        VoxelType::U8 => (dt::UINT8, 8),
        VoxelType::I16 => (dt::INT16, 16),
        VoxelType::U16 => (dt::UINT16, 16),
        VoxelType::I32 => (dt::INT32, 32),
        VoxelType::F32 => (dt::FLOAT32, 32),
        VoxelType::F64 => (dt::FLOAT64, 64),
    }
}

/// Serializes a little-endian single-file NIfTI-1 header plus the 4-byte extension flag
/// (352 bytes; voxel data follows at offset 352).
pub fn write_nifti1(h: &Header) -> Vec<u8> {
    let mut b = vec![0u8; NIFTI1_LEN + 4];
    let put = |b: &mut Vec<u8>, off: usize, bytes: &[u8]| b[off..off + bytes.len()].copy_from_slice(bytes);
    put(&mut b, 0, &348i32.to_le_bytes());
    put(&mut b, 38, b"r");
    for (i, d) in h.dim.iter().enumerate() {
        put(&mut b, 40 + 2 * i, &(*d as i16).to_le_bytes());
    }
    put(&mut b, 68, &(h.intent_code as i16).to_le_bytes());
    put(&mut b, 70, &h.datatype.to_le_bytes());
    put(&mut b, 72, &h.bitpix.to_le_bytes());
    for (i, p) in h.pixdim.iter().enumerate() {
        put(&mut b, 76 + 4 * i, &(*p as f32).to_le_bytes());
    }
    put(&mut b, 108, &(h.vox_offset as f32).to_le_bytes());
    put(&mut b, 112, &(h.scl_slope as f32).to_le_bytes());
    put(&mut b, 116, &(h.scl_inter as f32).to_le_bytes());
    put(&mut b, 123, &[10u8]); // xyzt_units: mm + s
    put(&mut b, 148, b"aiaa-imaging");
    put(&mut b, 252, &(h.qform_code as i16).to_le_bytes());
    put(&mut b, 254, &(h.sform_code as i16).to_le_bytes());
    for i in 0..3 {
        put(&mut b, 256 + 4 * i, &(h.quatern[i] as f32).to_le_bytes());
        put(&mut b, 268 + 4 * i, &(h.qoffset[i] as f32).to_le_bytes());
    }
    for r in 0..3 {
        for c in 0..4 {
            put(&mut b, 280 + 16 * r + 4 * c, &(h.srow[r][c] as f32).to_le_bytes());
        }
    }
    put(&mut b, 344, b"n+1\0");
    b
}
