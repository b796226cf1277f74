//! Stored voxel data to [`Voxels`], the same way in every reader: stored elements (any byte
//! order, maybe interleaved per voxel, maybe scaled) are converted chunk by chunk straight
//! into the final buffer, so a read holds the result and one chunk, never a second copy of
//! the volume. When the stored bytes already are the result's (same type, no scaling, one
//! value per voxel) they are read straight into it.
//!
//! The readers check the result's size ([`Decode::output`] times the count) against the
//! limit, and that the input can hold the stored bytes ([`crate::limits`]), before calling
//! in here.

use std::io::Read;
use std::path::Path;

use crate::voxels::Element;
use crate::{ImagingError, Result, VoxelType, Voxels, with_voxels};

/// Element type as stored in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    F32,
    F64,
}

impl Stored {
    /// Bytes per stored element.
    pub fn size(self) -> usize {
        match self {
            Stored::I8 | Stored::U8 => 1,
            Stored::I16 | Stored::U16 => 2,
            Stored::I32 | Stored::U32 | Stored::F32 => 4,
            Stored::F64 => 8,
        }
    }

    /// The crate's type for these values: `int8` widens to `i16`, `uint32` to `f64` (every
    /// value kept exactly).
    pub fn voxel_type(self) -> VoxelType {
        match self {
            Stored::U8 => VoxelType::U8,
            Stored::I8 | Stored::I16 => VoxelType::I16,
            Stored::U16 => VoxelType::U16,
            Stored::I32 => VoxelType::I32,
            Stored::U32 | Stored::F64 => VoxelType::F64,
            Stored::F32 => VoxelType::F32,
        }
    }

    /// One stored element (`b.len() == self.size()`) as `f64` (exact for every type).
    fn value(self, b: &[u8], big_endian: bool) -> f64 {
        match self {
            Stored::I8 => b[0] as i8 as f64,
            Stored::U8 => b[0] as f64,
            Stored::I16 => i16::from_bytes(b, big_endian) as f64,
            Stored::U16 => u16::from_bytes(b, big_endian) as f64,
            Stored::I32 => i32::from_bytes(b, big_endian) as f64,
            Stored::U32 => {
                let a = [b[0], b[1], b[2], b[3]];
                (if big_endian {
                    u32::from_be_bytes(a)
                } else {
                    u32::from_le_bytes(a)
                }) as f64
            }
            Stored::F32 => f32::from_bytes(b, big_endian) as f64,
            Stored::F64 => f64::from_bytes(b, big_endian),
        }
    }
}

/// Whether `(slope, inter)` changes values (NIfTI: a slope of 0 or a non-finite pair means
/// no scaling).
pub fn is_scaling(slope: f64, inter: f64) -> bool {
    slope.is_finite() && inter.is_finite() && slope != 0.0 && !(slope == 1.0 && inter == 0.0)
}

/// How a file's stored elements become the voxels of a volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decode {
    /// The stored element type.
    pub stored: Stored,
    /// The stored byte order.
    pub big_endian: bool,
    /// Values stored per voxel, interleaved (RGB, vectors); they become channels, the
    /// slowest axis.
    pub interleaved: usize,
    /// `value * slope + inter`, when it is not the identity.
    pub scale: Option<(f64, f64)>,
}

/// Stored bytes converted per chunk (a multiple of every element size).
const CHUNK_BYTES: usize = 1 << 20;

/// Bytes read between two page-mapping steps of a direct read.
const PREFAULT_BYTES: usize = 64 << 20;

impl Decode {
    /// Plain values of `stored` in `big_endian` order, one per voxel.
    pub fn new(stored: Stored, big_endian: bool) -> Decode {
        Decode {
            stored,
            big_endian,
            interleaved: 1,
            scale: None,
        }
    }

    /// `n` values per voxel, interleaved.
    pub fn interleaved(self, n: usize) -> Decode {
        Decode {
            interleaved: n.max(1),
            ..self
        }
    }

    /// Values scaled as `value * slope + inter` (no-op for the identity, see [`is_scaling`]).
    pub fn scaled(self, slope: f64, inter: f64) -> Decode {
        Decode {
            scale: is_scaling(slope, inter).then_some((slope, inter)),
            ..self
        }
    }

    /// The result's voxel type: the stored one (widened, see [`Stored::voxel_type`]);
    /// scaled values are `f32`, or `f64` for 32-bit integer and `f64` data (as ITK).
    pub fn output(&self) -> VoxelType {
        let ty = self.stored.voxel_type();
        match (self.scale, ty) {
            (None, _) => ty,
            (Some(_), VoxelType::I32 | VoxelType::F64) => VoxelType::F64,
            (Some(_), _) => VoxelType::F32,
        }
    }

    /// Whether the stored bytes are the result's bytes (up to the byte order).
    pub fn is_direct(&self) -> bool {
        self.scale.is_none() && self.interleaved == 1 && self.stored.size() == self.output().size()
    }

    /// Bytes of `count` stored elements.
    pub fn stored_bytes(&self, count: usize) -> usize {
        count.saturating_mul(self.stored.size())
    }

    /// Reads `count` stored elements from `r` into a buffer of [`Decode::output`]; `what`
    /// names the data in the truncation error.
    pub fn read(
        &self,
        path: &Path,
        format: &'static str,
        r: &mut (dyn Read + Send),
        count: usize,
    ) -> Result<Voxels> {
        if self.is_direct() {
            return self.fill(count, |dst| read_direct(path, format, r, dst));
        }
        let mut out = Voxels::zeros(self.output(), count);
        let size = self.stored.size();
        let mut chunk = vec![0u8; CHUNK_BYTES.min(count * size).max(size)];
        let mut at = 0;
        while at < count {
            let n = (chunk.len() / size).min(count - at);
            read_exact(path, format, r, &mut chunk[..n * size])?;
            self.convert(&chunk[..n * size], &mut out, at, count);
            at += n;
        }
        Ok(out)
    }

    /// Direct decoding only ([`Decode::is_direct`]): allocates the result, lets `fill`
    /// write the stored bytes into it, then fixes the byte order when it is not the
    /// machine's.
    pub fn fill(&self, count: usize, fill: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<Voxels> {
        debug_assert!(self.is_direct());
        let mut v = Voxels::zeros(self.output(), count);
        fill(v.as_bytes_mut())?;
        if self.big_endian != cfg!(target_endian = "big") {
            v.swap_bytes();
        }
        Ok(v)
    }

    /// Converts the stored elements `bytes` (elements `at..` of `count`) into `out`.
    fn convert(&self, bytes: &[u8], out: &mut Voxels, at: usize, count: usize) {
        let (stored, be, per) = (self.stored, self.big_endian, self.interleaved);
        let n = count / per;
        let scale = self.scale;
        with_voxels!(out, o => {
            for (k, b) in bytes.chunks_exact(stored.size()).enumerate() {
                let e = at + k;
                // Element e is value e % per of voxel e / per: channel-slowest index.
                let dst = if per == 1 { e } else { (e % per) * n + e / per };
                let v = stored.value(b, be);
                let v = match scale {
                    Some((slope, inter)) => v * slope + inter,
                    None => v,
                };
                o[dst] = Element::from_f64(v);
            }
        });
    }
}

fn read_exact(path: &Path, format: &'static str, r: &mut dyn Read, buf: &mut [u8]) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ImagingError::format(path, format, "truncated: the data ends inside the voxels")
        } else {
            ImagingError::format(path, format, format!("reading the voxel data: {e} (corrupt)"))
        }
    })
}

/// Touches one byte per page so the kernel maps the pages now.
fn prefault(buf: &mut [u8]) {
    for page in buf.chunks_mut(4096) {
        page[0] = std::hint::black_box(0);
    }
}

/// Reads `dst.len()` bytes; large buffers map the next step's pages on another thread while
/// one step is read (a decompressor then does not stop for page faults), never more than
/// one step ahead of the data that actually arrived.
fn read_direct(path: &Path, format: &'static str, r: &mut (dyn Read + Send), dst: &mut [u8]) -> Result<()> {
    if dst.len() < 2 * PREFAULT_BYTES {
        return read_exact(path, format, r, dst);
    }
    let mut steps = dst.chunks_mut(PREFAULT_BYTES).peekable();
    while let Some(step) = steps.next() {
        match steps.peek_mut() {
            Some(next) => {
                let (res, ()) = rayon::join(|| read_exact(path, format, r, step), || prefault(next));
                res?;
            }
            None => read_exact(path, format, r, step)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of<T: Element>(v: &[T], big_endian: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for &x in v {
            let mut le = Vec::new();
            x.put_le(&mut le);
            if big_endian {
                le.reverse();
            }
            out.extend_from_slice(&le);
        }
        out
    }

    #[test]
    fn direct_and_converted_reads_agree() {
        let p = Path::new("t");
        let vals: Vec<i16> = (0..5000).map(|i| (i * 7 - 9000) as i16).collect();
        for be in [false, true] {
            let raw = bytes_of(&vals, be);
            let d = Decode::new(Stored::I16, be);
            assert!(d.is_direct());
            assert_eq!(
                d.read(p, "T", &mut &raw[..], 5000).unwrap(),
                Voxels::I16(vals.clone())
            );
            let s = d.scaled(2.0, 1.0);
            assert_eq!(s.output(), VoxelType::F32);
            let want: Vec<f32> = vals.iter().map(|&v| v as f32 * 2.0 + 1.0).collect();
            assert_eq!(s.read(p, "T", &mut &raw[..], 5000).unwrap(), Voxels::F32(want));
        }
        // i8 widens, u32 to f64, i32 scaled to f64.
        let d = Decode::new(Stored::I8, false);
        assert_eq!(
            d.read(p, "T", &mut &[255u8, 1][..], 2).unwrap(),
            Voxels::I16(vec![-1, 1])
        );
        let d = Decode::new(Stored::U32, true);
        let raw = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            d.read(p, "T", &mut &raw[..], 1).unwrap(),
            Voxels::F64(vec![4294967295.0])
        );
        assert_eq!(
            Decode::new(Stored::I32, false).scaled(0.5, 0.0).output(),
            VoxelType::F64
        );
        // Identity and non-finite scalings are no scaling.
        assert!(Decode::new(Stored::U8, false).scaled(1.0, 0.0).is_direct());
        assert!(Decode::new(Stored::U8, false).scaled(0.0, 5.0).is_direct());
        assert!(Decode::new(Stored::U8, false).scaled(f64::NAN, 5.0).is_direct());
    }

    #[test]
    fn interleaved_values_become_channels() {
        let p = Path::new("t");
        let raw: Vec<u8> = vec![1, 2, 3, 4, 5, 6];
        let d = Decode::new(Stored::U8, false).interleaved(3);
        assert_eq!(
            d.read(p, "T", &mut &raw[..], 6).unwrap(),
            Voxels::U8(vec![1, 4, 2, 5, 3, 6])
        );
    }

    #[test]
    fn short_data_is_truncated_not_a_panic() {
        let p = Path::new("short.x");
        for d in [
            Decode::new(Stored::I16, false),
            Decode::new(Stored::I16, false).scaled(2.0, 0.0),
        ] {
            let e = d.read(p, "T", &mut &[1u8, 2, 3][..], 2).unwrap_err().to_string();
            assert!(e.contains("short.x") && e.contains("truncated"), "{e}");
        }
    }
}
