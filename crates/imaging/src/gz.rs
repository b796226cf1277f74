//! Gzip helpers: parallel multi-member compression and a matching parallel decoder.
//!
//! [`compress`] splits the data into independent blocks, deflates them in parallel and
//! writes each as its own gzip member (RFC 1952 allows concatenated members; zlib's
//! `gzread`, Python's `gzip` and nibabel read them as one stream). Every member carries an
//! `FEXTRA` subfield `AI` holding its total compressed length, so [`decompress_indexed`] can
//! find the members without inflating and inflate them in parallel. Any other gzip file is
//! read sequentially with [`flate2::read::MultiGzDecoder`].

use std::io::Write;

use flate2::{Compression, Crc, Decompress, FlushDecompress, Status};
use rayon::prelude::*;

/// Size of one independently compressed block.
pub const BLOCK_SIZE: usize = 4 << 20;

const HEADER_LEN: usize = 10 + 2 + 8; // fixed header + XLEN + one 8-byte subfield

/// Whether `bytes` start with the gzip magic.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
}

fn member(block: &[u8], level: u32) -> Vec<u8> {
    member_of(&[block], level)
}

/// One member holding the concatenation of `pieces` (written into the encoder one after
/// the other: nothing is copied to join them).
fn member_of(pieces: &[&[u8]], level: u32) -> Vec<u8> {
    let len: usize = pieces.iter().map(|p| p.len()).sum();
    let mut enc =
        flate2::write::DeflateEncoder::new(Vec::with_capacity(len / 2 + 64), Compression::new(level));
    // Writing into a Vec cannot fail.
    let deflated = pieces
        .iter()
        .try_for_each(|p| enc.write_all(p))
        .and_then(|_| enc.finish())
        .unwrap_or_default();
    let mut crc = Crc::new();
    pieces.iter().for_each(|p| crc.update(p));
    let total = (HEADER_LEN + deflated.len() + 8) as u32;
    let mut out = Vec::with_capacity(total as usize);
    // ID1 ID2 CM FLG(FEXTRA) MTIME(4) XFL OS(255 = unknown)
    out.extend_from_slice(&[0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 255]);
    out.extend_from_slice(&8u16.to_le_bytes());
    out.extend_from_slice(b"AI");
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&total.to_le_bytes());
    out.extend_from_slice(&deflated);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out
}

/// The level of files written to disk (`.nii.gz`): zlib's default, 6, which SimpleITK
/// (zlib-ng) also writes; our output is then within 0.1% of its size (the 4 MiB members
/// cost a few bytes each). Level 1, kept for answers over the network where latency counts
/// ([`crate::io::encode_bytes`]), is zlib-rs' `deflate_quick` and gives files 10-70%
/// larger on CT and MR volumes.
pub const FILE_LEVEL: u32 = 6;

/// Gzip-compresses the concatenation of `parts` in parallel blocks at `level` (0-9) and
/// writes the members to `w` in order as they are done, a few blocks per thread at a time,
/// so neither the concatenation nor the whole compressed file is ever held. Each part
/// starts a new member (a header can be written ahead of the voxels without copying them).
pub fn compress_to(w: &mut dyn Write, parts: &[&[u8]], level: u32) -> std::io::Result<()> {
    let level = level.min(9);
    let blocks: Vec<&[u8]> = parts.iter().flat_map(|p| p.chunks(BLOCK_SIZE)).collect();
    if blocks.is_empty() {
        return w.write_all(&member(&[], level));
    }
    let batch = 2 * rayon::current_num_threads().max(1);
    for group in blocks.chunks(batch) {
        let members: Vec<Vec<u8>> = group.par_iter().map(|b| member(b, level)).collect();
        for m in &members {
            w.write_all(m)?;
        }
    }
    Ok(())
}

/// Gzip-compresses `data` in parallel blocks at `level` (0-9).
pub fn compress(data: &[u8], level: u32) -> Vec<u8> {
    compress_parts(&[data], level)
}

/// [`compress`] of the concatenation of `parts`, without making it: the blocks are cut from
/// the concatenation (the same members as [`compress`] gives, so a result smaller than
/// [`BLOCK_SIZE`] is one plain gzip member, as strict readers want), and a block spanning
/// two parts is fed to its encoder piece by piece. A header and a volume's voxels are
/// compressed where they lie.
pub fn compress_parts(parts: &[&[u8]], level: u32) -> Vec<u8> {
    let level = level.min(9);
    let members: Vec<Vec<u8>> = blocks(parts, BLOCK_SIZE)
        .par_iter()
        .map(|pieces| member_of(pieces, level))
        .collect();
    members.concat()
}

/// The concatenation of `parts` cut into blocks of `block` bytes (the last shorter; one
/// empty block for no bytes), each as the slices of the parts it covers.
fn blocks<'a>(parts: &[&'a [u8]], block: usize) -> Vec<Vec<&'a [u8]>> {
    let block = block.max(1);
    let (mut out, mut current, mut room) = (Vec::new(), Vec::new(), block);
    for part in parts {
        let mut rest = *part;
        while !rest.is_empty() {
            let (piece, after) = rest.split_at(room.min(rest.len()));
            current.push(piece);
            room -= piece.len();
            rest = after;
            if room == 0 {
                out.push(std::mem::take(&mut current));
                room = block;
            }
        }
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

/// One member of an indexed file: where its deflate data lies and how much it inflates to.
#[derive(Debug, Clone)]
pub struct Member {
    deflate: std::ops::Range<usize>,
    /// Inflated size (bytes).
    pub size: usize,
    crc: u32,
}

/// The members of a file written by [`compress`] (every member carries the `AI` length
/// subfield, the members tile `bytes` exactly, and each member's deflate data is long enough
/// for its recorded size), or `None` for any other file.
pub fn members(bytes: &[u8]) -> Option<Vec<Member>> {
    let mut members = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let h = bytes.get(pos..pos + HEADER_LEN)?;
        if h[..4] != [0x1f, 0x8b, 8, 4] || h[10..12] != 8u16.to_le_bytes() || &h[12..14] != b"AI" {
            return None;
        }
        let total = u32::from_le_bytes(h[16..20].try_into().ok()?) as usize;
        let end = pos.checked_add(total)?;
        if total < HEADER_LEN + 8 || end > bytes.len() {
            return None;
        }
        let trailer = &bytes[end - 8..end];
        let deflate = pos + HEADER_LEN..end - 8;
        let size = u32::from_le_bytes(trailer[4..].try_into().ok()?) as usize;
        // A recorded size its deflate data cannot inflate to is a lie (a truncated or forged
        // file): not ours, so the sequential decoder reads it and finds where it ends.
        if size as u64 > crate::limits::inflated_bound(deflate.len() as u64) {
            return None;
        }
        members.push(Member {
            deflate,
            crc: u32::from_le_bytes(trailer[..4].try_into().ok()?),
            size,
        });
        pos = end;
    }
    if members.is_empty() {
        return None;
    }
    Some(members)
}

/// Whether `head` (the first bytes of a file) starts like a member written by [`compress`].
pub fn looks_indexed(head: &[u8]) -> bool {
    head.len() >= HEADER_LEN
        && head[..4] == [0x1f, 0x8b, 8, 4]
        && head[10..12] == 8u16.to_le_bytes()
        && &head[12..14] == b"AI"
}

/// Error from [`decompress_indexed`] and [`inflate_indexed_range`].
#[derive(Debug)]
pub enum IndexedError {
    /// The decoded size exceeds the caller's limit.
    TooLarge(u64),
    /// A member is corrupt.
    Corrupt(String),
}

fn corrupt(why: impl Into<String>) -> IndexedError {
    IndexedError::Corrupt(why.into())
}

/// Inflates from `input` (a raw deflate stream, resumed in `d`) until `out` is full.
fn fill(d: &mut Decompress, input: &[u8], out: &mut [u8]) -> Result<(), IndexedError> {
    let mut done = 0;
    while done < out.len() {
        let (in0, out0) = (d.total_in(), d.total_out());
        let rest = input.get(in0 as usize..).unwrap_or_default();
        let st = d
            .decompress(rest, &mut out[done..], FlushDecompress::None)
            .map_err(|e| corrupt(e.to_string()))?;
        let produced = (d.total_out() - out0) as usize;
        done += produced;
        if done < out.len() && (st == Status::StreamEnd || (produced == 0 && d.total_in() == in0)) {
            return Err(corrupt("member shorter than its recorded size"));
        }
    }
    Ok(())
}

/// Inflates one member, writing plain bytes `[skip, skip + dst.len())` of it into `dst`
/// and checking its size and CRC.
fn inflate_member(bytes: &[u8], m: &Member, skip: usize, dst: &mut [u8]) -> Result<(), IndexedError> {
    let input = &bytes[m.deflate.clone()];
    let mut d = Decompress::new(false);
    let mut crc = Crc::new();
    let mut scratch = Vec::new();
    let mut discard = |d: &mut Decompress, crc: &mut Crc, mut n: usize| {
        while n > 0 {
            let k = n.min(1 << 16);
            scratch.resize(k, 0);
            fill(d, input, &mut scratch)?;
            crc.update(&scratch);
            n -= k;
        }
        Ok::<_, IndexedError>(())
    };
    discard(&mut d, &mut crc, skip)?;
    fill(&mut d, input, dst)?;
    crc.update(dst);
    discard(&mut d, &mut crc, m.size - skip - dst.len())?;
    // The stream must end exactly here.
    let mut probe = [0u8; 1];
    let before = d.total_out();
    let rest = input.get(d.total_in() as usize..).unwrap_or_default();
    let st = d
        .decompress(rest, &mut probe, FlushDecompress::Finish)
        .map_err(|e| corrupt(e.to_string()))?;
    if st != Status::StreamEnd || d.total_out() != before {
        return Err(corrupt("member size does not match its recorded size"));
    }
    if crc.sum() != m.crc {
        return Err(corrupt("CRC mismatch"));
    }
    Ok(())
}

/// Inflates the plain bytes `[offset, offset + dst.len())` of a file written by
/// [`compress`] straight into `dst`, members in parallel. Every member is inflated and
/// CRC-checked, also those outside the range.
pub fn inflate_indexed_range(
    bytes: &[u8],
    members: &[Member],
    offset: usize,
    dst: &mut [u8],
) -> Result<(), IndexedError> {
    let total: usize = members.iter().map(|m| m.size).sum();
    if offset.checked_add(dst.len()).is_none_or(|end| end > total) {
        return Err(corrupt("truncated: fewer bytes than the header announces"));
    }
    let end = offset + dst.len();
    let mut jobs = Vec::with_capacity(members.len());
    let (mut start, mut rest) = (0usize, dst);
    for m in members {
        // Plain bytes of this member that land in dst: [lo, hi).
        let lo = offset.clamp(start, start + m.size);
        let hi = end.clamp(lo, start + m.size);
        let (mine, tail) = rest.split_at_mut(hi - lo);
        jobs.push((m, lo - start, mine));
        rest = tail;
        start += m.size;
    }
    jobs.into_par_iter()
        .try_for_each(|(m, skip, out)| inflate_member(bytes, m, skip, out))
}

/// Inflates a file written by [`compress`] in parallel. Returns `None` when `bytes` is not
/// such a file (use a sequential decoder then). `max_bytes` is checked before allocating.
pub fn decompress_indexed(bytes: &[u8], max_bytes: u64) -> Option<Result<Vec<u8>, IndexedError>> {
    let members = members(bytes)?;
    let total: u64 = members.iter().map(|m| m.size as u64).sum();
    if total > max_bytes {
        return Some(Err(IndexedError::TooLarge(total)));
    }
    let mut out = vec![0u8; total as usize];
    Some(inflate_indexed_range(bytes, &members, 0, &mut out).map(|_| out))
}

/// Adler-32 checksum (RFC 1950).
pub fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65521;
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in data.chunks(5552) {
        for &x in chunk {
            a += x as u32;
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// Zlib-compresses `data` (RFC 1950), deflating blocks in parallel like pigz: every block
/// but the last ends with a sync flush, so the raw outputs concatenate into one stream.
pub fn zlib_compress(data: &[u8], level: u32) -> Vec<u8> {
    let level = Compression::new(level.min(9));
    let n = data.len().div_ceil(BLOCK_SIZE).max(1);
    let parts: Vec<Vec<u8>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let block = &data[(i * BLOCK_SIZE).min(data.len())..((i + 1) * BLOCK_SIZE).min(data.len())];
            let flush = if i + 1 == n {
                flate2::FlushCompress::Finish
            } else {
                flate2::FlushCompress::Sync
            };
            let mut c = flate2::Compress::new(level, false);
            let mut out = Vec::with_capacity(block.len() / 2 + 1024);
            loop {
                let consumed = c.total_in() as usize;
                if out.capacity() - out.len() < 1024 {
                    out.reserve(out.capacity().max(4096));
                }
                let st = c.compress_vec(&block[consumed..], &mut out, flush);
                let done_input = c.total_in() as usize == block.len();
                match st {
                    Ok(Status::StreamEnd) => break,
                    Ok(_)
                        if done_input
                            && flush == flate2::FlushCompress::Sync
                            && out.capacity() > out.len() =>
                    {
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            out
        })
        .collect();
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum::<usize>() + 6);
    out.extend_from_slice(&[0x78, 0x01]);
    for p in &parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Compressing parts gives the very bytes compressing their concatenation gives: the
    /// same members, however the parts fall against the blocks (a 352-byte header then the
    /// voxels; parts ending exactly on a block; empty parts; nothing at all).
    #[test]
    fn parts_compress_as_their_concatenation() {
        let data: Vec<u8> = (0..(BLOCK_SIZE * 2 + 4321))
            .map(|i| ((i * 31) % 253) as u8)
            .collect();
        for cuts in [
            vec![352],
            vec![BLOCK_SIZE],
            vec![0, 10, BLOCK_SIZE - 1, BLOCK_SIZE + 7],
            vec![data.len()],
        ] {
            let mut parts = Vec::new();
            let mut at = 0;
            for &c in &cuts {
                parts.push(&data[at..c]);
                at = c;
            }
            parts.push(&data[at..]);
            assert!(compress_parts(&parts, 1) == compress(&data, 1), "cuts {cuts:?}");
        }
        assert_eq!(
            members(&compress_parts(&[&data[..352], &data[352..1000]], 1))
                .unwrap()
                .len(),
            1
        );
        assert!(compress_parts(&[], 1) == compress(&[], 1));
    }

    #[test]
    fn round_trip_parallel_and_standard_decoder() {
        let data: Vec<u8> = (0..(BLOCK_SIZE * 2 + 1234)).map(|i| (i % 251) as u8).collect();
        let gz = compress(&data, 1);
        assert_eq!(decompress_indexed(&gz, u64::MAX).unwrap().unwrap(), data);
        let mut std_out = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut std_out)
            .unwrap();
        assert_eq!(std_out, data);
        assert!(matches!(
            decompress_indexed(&gz, 10),
            Some(Err(IndexedError::TooLarge(_)))
        ));
        let mut bad = gz.clone();
        let n = bad.len();
        bad[n - 9] ^= 0xff;
        assert!(matches!(decompress_indexed(&bad, u64::MAX), Some(Err(_))));
        assert!(decompress_indexed(&gz[..gz.len() - 1], u64::MAX).is_none());
    }

    /// Parts written by `compress_to` read back as their concatenation, with the standard
    /// decoder and with the parallel one (each part starts a member; the blocks in between
    /// are written in batches).
    #[test]
    fn compress_to_writes_the_parts_as_members() {
        let head: Vec<u8> = (0..352).map(|i| i as u8).collect();
        let body: Vec<u8> = (0..(BLOCK_SIZE * 5 + 77)).map(|i| (i % 239) as u8).collect();
        let mut gz = Vec::new();
        compress_to(&mut gz, &[&head, &body], FILE_LEVEL).unwrap();
        let whole = [head.clone(), body.clone()].concat();
        assert_eq!(members(&gz).unwrap().len(), 1 + 6);
        assert_eq!(decompress_indexed(&gz, u64::MAX).unwrap().unwrap(), whole);
        let mut std_out = Vec::new();
        flate2::read::MultiGzDecoder::new(&gz[..])
            .read_to_end(&mut std_out)
            .unwrap();
        assert_eq!(std_out, whole);
        let mut empty = Vec::new();
        compress_to(&mut empty, &[], FILE_LEVEL).unwrap();
        assert!(decompress_indexed(&empty, u64::MAX).unwrap().unwrap().is_empty());
    }

    #[test]
    fn indexed_range_spans_members() {
        let data: Vec<u8> = (0..(BLOCK_SIZE * 2 + 1234)).map(|i| (i % 241) as u8).collect();
        let gz = compress(&data, 1);
        let m = members(&gz).unwrap();
        assert_eq!(m.len(), 3);
        for (off, len) in [
            (0, 10),
            (BLOCK_SIZE - 10, BLOCK_SIZE + 20),
            (BLOCK_SIZE * 2, 1234),
        ] {
            let mut out = vec![0u8; len];
            inflate_indexed_range(&gz, &m, off, &mut out).unwrap();
            assert_eq!(out, &data[off..off + len]);
        }
        let mut out = vec![0u8; 2];
        assert!(inflate_indexed_range(&gz, &m, data.len() - 1, &mut out).is_err());
        assert!(!looks_indexed(b"\x1f\x8b\x08\x00"));
        assert!(looks_indexed(&gz));
    }

    #[test]
    fn zlib_parallel_round_trip() {
        for len in [0usize, 10, BLOCK_SIZE, BLOCK_SIZE * 2 + 77] {
            let data: Vec<u8> = (0..len).map(|i| ((i * 7) % 253) as u8).collect();
            let z = zlib_compress(&data, 1);
            let mut out = Vec::new();
            flate2::read::ZlibDecoder::new(&z[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data, "len {len}");
        }
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
    }
}
