//! Typed voxel buffers: one enum over the supported element types.

use crate::{ImagingError, Result};

/// Element type of a voxel buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VoxelType {
    U8,
    I16,
    U16,
    I32,
    F32,
    F64,
}

impl VoxelType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            VoxelType::U8 => 1,
            VoxelType::I16 | VoxelType::U16 => 2,
            VoxelType::I32 | VoxelType::F32 => 4,
            VoxelType::F64 => 8,
        }
    }

    /// Whether the type is floating point.
    pub fn is_float(self) -> bool {
        matches!(self, VoxelType::F32 | VoxelType::F64)
    }

    /// Smallest and largest representable value.
    pub fn range(self) -> (f64, f64) {
        match self {
            VoxelType::U8 => (0.0, u8::MAX as f64),
            VoxelType::I16 => (i16::MIN as f64, i16::MAX as f64),
            VoxelType::U16 => (0.0, u16::MAX as f64),
            VoxelType::I32 => (i32::MIN as f64, i32::MAX as f64),
            VoxelType::F32 => (f32::MIN as f64, f32::MAX as f64),
            VoxelType::F64 => (f64::MIN, f64::MAX),
        }
    }
}

/// A flat voxel buffer of one element type (layout: see the crate docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Voxels {
    U8(Vec<u8>),
    I16(Vec<i16>),
    U16(Vec<u16>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Applies `$body` to the typed vector inside a [`Voxels`], binding it as `$v`.
#[macro_export]
macro_rules! with_voxels {
    ($voxels:expr, $v:ident => $body:expr) => {
        match $voxels {
            $crate::Voxels::U8($v) => $body,
            $crate::Voxels::I16($v) => $body,
            $crate::Voxels::U16($v) => $body,
            $crate::Voxels::I32($v) => $body,
            $crate::Voxels::F32($v) => $body,
            $crate::Voxels::F64($v) => $body,
        }
    };
}

/// Element types storable in [`Voxels`].
pub trait Element: Copy + Default + Send + Sync + 'static {
    /// The matching [`VoxelType`].
    const TYPE: VoxelType;
    /// Lossless (for integers) widening to `f64`.
    fn to_f64(self) -> f64;
    /// Conversion from `f64`: rounds to nearest and saturates for integer types.
    fn from_f64(v: f64) -> Self;
    /// Wraps a vector of this type.
    fn wrap(v: Vec<Self>) -> Voxels;
    /// Decodes one element from little/big-endian bytes (`b.len() == size`).
    fn from_bytes(b: &[u8], big_endian: bool) -> Self;
    /// Appends the little-endian bytes of the element.
    fn put_le(self, out: &mut Vec<u8>);
}

/// Implements [`Element`] for a primitive; `$round` turns an `f64` into the value stored
/// before the `as` cast (integers round: `as` then saturates and maps NaN to 0).
macro_rules! element {
    ($t:ty, $variant:ident, $round:expr) => {
        impl Element for $t {
            const TYPE: VoxelType = VoxelType::$variant;
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn from_f64(v: f64) -> Self {
                ($round)(v) as $t
            }
            fn wrap(v: Vec<Self>) -> Voxels {
                Voxels::$variant(v)
            }
            fn from_bytes(b: &[u8], big_endian: bool) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                if big_endian {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }
            }
            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
element!(u8, U8, f64::round);
element!(i16, I16, f64::round);
element!(u16, U16, f64::round);
element!(i32, I32, f64::round);
element!(f32, F32, |v| v);
element!(f64, F64, |v| v);

/// Element types whose every bit pattern is a valid value and which have no padding, so a
fn decode<T: Element>(bytes: &[u8], big_endian: bool) -> Vec<T> {
    let n = size_of::<T>();
    bytes
        .chunks_exact(n)
        .map(|c| T::from_bytes(c, big_endian))
        .collect()
}

fn convert<S: Element, T: Element>(src: &[S]) -> Vec<T> {
    src.iter().map(|&v| T::from_f64(v.to_f64())).collect()
}

impl Voxels {
    /// Element type of the buffer.
    pub fn voxel_type(&self) -> VoxelType {
        match self {
            Voxels::U8(_) => VoxelType::U8,
            Voxels::I16(_) => VoxelType::I16,
            Voxels::U16(_) => VoxelType::U16,
            Voxels::I32(_) => VoxelType::I32,
            Voxels::F32(_) => VoxelType::F32,
            Voxels::F64(_) => VoxelType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_voxels!(self, v => v.len())
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A zero-filled buffer.
    pub fn zeros(ty: VoxelType, len: usize) -> Voxels {
        match ty {
            VoxelType::U8 => Voxels::U8(vec![0; len]),
            VoxelType::I16 => Voxels::I16(vec![0; len]),
            VoxelType::U16 => Voxels::U16(vec![0; len]),
            VoxelType::I32 => Voxels::I32(vec![0; len]),
            VoxelType::F32 => Voxels::F32(vec![0.0; len]),
            VoxelType::F64 => Voxels::F64(vec![0.0; len]),
        }
    }

    /// Decodes raw bytes (`bytes.len()` must be a multiple of the element size).
    pub fn from_bytes(ty: VoxelType, bytes: &[u8], big_endian: bool) -> Result<Voxels> {
        if !bytes.len().is_multiple_of(ty.size()) {
            return Err(ImagingError::InvalidArgument(format!(
                "{} bytes is not a whole number of {:?} elements",
                bytes.len(),
                ty
            )));
        }
        Ok(match ty {
            VoxelType::U8 => Voxels::U8(bytes.to_vec()),
            VoxelType::I16 => Voxels::I16(decode(bytes, big_endian)),
            VoxelType::U16 => Voxels::U16(decode(bytes, big_endian)),
            VoxelType::I32 => Voxels::I32(decode(bytes, big_endian)),
            VoxelType::F32 => Voxels::F32(decode(bytes, big_endian)),
            VoxelType::F64 => Voxels::F64(decode(bytes, big_endian)),
        })
    }

    /// The buffer's memory as bytes, in native byte order: lets readers inflate or read
    /// file data straight into a typed buffer (then call [`Voxels::swap_bytes`] if the file's
    /// byte order is not the machine's).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        with_voxels!(self, v => bytemuck::cast_slice_mut(v.as_mut_slice()))
    }

    /// Reverses the byte order of every element in place (in parallel).
    pub fn swap_bytes(&mut self) {
        use rayon::prelude::*;
        const CHUNK: usize = 1 << 16;
        match self {
            Voxels::U8(_) => {}
            Voxels::I16(v) => v
                .par_chunks_mut(CHUNK)
                .for_each(|c| c.iter_mut().for_each(|x| *x = x.swap_bytes())),
            Voxels::U16(v) => v
                .par_chunks_mut(CHUNK)
                .for_each(|c| c.iter_mut().for_each(|x| *x = x.swap_bytes())),
            Voxels::I32(v) => v
                .par_chunks_mut(CHUNK)
                .for_each(|c| c.iter_mut().for_each(|x| *x = x.swap_bytes())),
            Voxels::F32(v) => v.par_chunks_mut(CHUNK).for_each(|c| {
                c.iter_mut()
                    .for_each(|x| *x = f32::from_bits(x.to_bits().swap_bytes()))
            }),
            Voxels::F64(v) => v.par_chunks_mut(CHUNK).for_each(|c| {
                c.iter_mut()
                    .for_each(|x| *x = f64::from_bits(x.to_bits().swap_bytes()))
            }),
        }
    }

    /// Little-endian bytes of the buffer.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.le_bytes().into_owned()
    }

    /// The little-endian bytes of the buffer: the buffer itself on a little-endian machine
    /// (no copy; writers hand it straight to the file), a converted copy otherwise.
    pub fn le_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            return with_voxels!(self, v => std::borrow::Cow::Borrowed(bytemuck::cast_slice(v.as_slice())));
        }
        let mut out = Vec::new();
        self.write_le(&mut out);
        std::borrow::Cow::Owned(out)
    }

    /// Appends the little-endian bytes of the buffer to `out` (one copy, no temporary).
    pub fn write_le(&self, out: &mut Vec<u8>) {
        out.reserve_exact(self.len() * self.voxel_type().size());
        if cfg!(target_endian = "little") {
            with_voxels!(self, v => out.extend_from_slice(bytemuck::cast_slice(v.as_slice())));
        } else {
            with_voxels!(self, v => v.iter().for_each(|x| x.put_le(out)));
        }
    }

    /// Value at `idx` as `f64` (panics if out of range, like slice indexing).
    pub fn get_f64(&self, idx: usize) -> f64 {
        with_voxels!(self, v => v[idx].to_f64())
    }

    /// Converts to another element type (integers: rounded and saturated).
    pub fn cast(&self, ty: VoxelType) -> Voxels {
        if ty == self.voxel_type() {
            return self.clone();
        }
        with_voxels!(self, v => match ty {
            VoxelType::U8 => Voxels::U8(convert(v)),
            VoxelType::I16 => Voxels::I16(convert(v)),
            VoxelType::U16 => Voxels::U16(convert(v)),
            VoxelType::I32 => Voxels::I32(convert(v)),
            VoxelType::F32 => Voxels::F32(convert(v)),
            VoxelType::F64 => Voxels::F64(convert(v)),
        })
    }

    /// All values as `f32`.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        with_voxels!(self, v => v.iter().map(|x| x.to_f64() as f32).collect())
    }

    /// All values as `f32`: borrowed when they already are, converted otherwise (what a
    /// network tensor is made from without copying an `f32` volume).
    pub fn as_f32(&self) -> std::borrow::Cow<'_, [f32]> {
        match self {
            Voxels::F32(v) => std::borrow::Cow::Borrowed(v),
            other => std::borrow::Cow::Owned(other.to_f32_vec()),
        }
    }

    /// Copies `len` elements starting at `start` into a new buffer.
    pub fn slice(&self, start: usize, len: usize) -> Voxels {
        with_voxels!(self, v => Element::wrap(v[start..start + len].to_vec()))
    }

    /// Minimum and maximum value (NaNs ignored); `None` when empty.
    pub fn min_max(&self) -> Option<(f64, f64)> {
        let mut it = (0..self.len()).map(|i| self.get_f64(i)).filter(|x| !x.is_nan());
        let first = it.next()?;
        Some(it.fold((first, first), |(lo, hi), x| (lo.min(x), hi.max(x))))
    }
}
