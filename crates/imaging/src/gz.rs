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
    let mut enc = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(block.len() / 2 + 64),
        Compression::new(level),
    );
    // Writing into a Vec cannot fail.
    let deflated = enc
        .write_all(block)
        .and_then(|_| enc.finish())
        .unwrap_or_default();
    let mut crc = Crc::new();
    crc.update(block);
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
    out.extend_from_slice(&(block.len() as u32).to_le_bytes());
    out
}

/// Gzip-compresses `data` in parallel blocks at `level` (0-9).
pub fn compress(data: &[u8], level: u32) -> Vec<u8> {
    let level = level.min(9);
    if data.is_empty() {
        return member(data, level);
    }
    let parts: Vec<Vec<u8>> = data
        .par_chunks(BLOCK_SIZE)
        .map(|b| member(b, level))
        .collect();
    parts.concat()
}

/// One member of an indexed file: where its deflate data lies and how much it inflates to.
struct Member {
    deflate: std::ops::Range<usize>,
    size: usize,
    crc: u32,
}

fn parse_members(bytes: &[u8]) -> Option<Vec<Member>> {
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
        members.push(Member {
            deflate: pos + HEADER_LEN..end - 8,
            crc: u32::from_le_bytes(trailer[..4].try_into().ok()?),
            size: u32::from_le_bytes(trailer[4..].try_into().ok()?) as usize,
        });
        pos = end;
    }
    Some(members)
}

/// Error from [`decompress_indexed`].
#[derive(Debug)]
pub enum IndexedError {
    /// The decoded size exceeds the caller's limit.
    TooLarge(u64),
    /// A member is corrupt.
    Corrupt(String),
}

/// Inflates a file written by [`compress`] in parallel. Returns `None` when `bytes` is not
/// such a file (use a sequential decoder then). `max_bytes` is checked before allocating.
pub fn decompress_indexed(bytes: &[u8], max_bytes: u64) -> Option<Result<Vec<u8>, IndexedError>> {
    let members = parse_members(bytes)?;
    let total: u64 = members.iter().map(|m| m.size as u64).sum();
    if total > max_bytes {
        return Some(Err(IndexedError::TooLarge(total)));
    }
    let mut out = vec![0u8; total as usize];
    let mut slices = Vec::with_capacity(members.len());
    let mut rest = out.as_mut_slice();
    for m in &members {
        let (head, tail) = rest.split_at_mut(m.size);
        slices.push((m, head));
        rest = tail;
    }
    let res: Result<(), IndexedError> = slices.into_par_iter().try_for_each(|(m, dst)| {
        let mut d = Decompress::new(false);
        let status = d
            .decompress(&bytes[m.deflate.clone()], dst, FlushDecompress::Finish)
            .map_err(|e| IndexedError::Corrupt(e.to_string()))?;
        if status != Status::StreamEnd || d.total_out() as usize != m.size {
            return Err(IndexedError::Corrupt(
                "member shorter than its recorded size".into(),
            ));
        }
        let mut crc = Crc::new();
        crc.update(dst);
        if crc.sum() != m.crc {
            return Err(IndexedError::Corrupt("CRC mismatch".into()));
        }
        Ok(())
    });
    Some(res.map(|_| out))
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
            let block =
                &data[(i * BLOCK_SIZE).min(data.len())..((i + 1) * BLOCK_SIZE).min(data.len())];
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

    #[test]
    fn round_trip_parallel_and_standard_decoder() {
        let data: Vec<u8> = (0..(BLOCK_SIZE * 2 + 1234))
            .map(|i| (i % 251) as u8)
            .collect();
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
