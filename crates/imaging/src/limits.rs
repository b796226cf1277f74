//! Read options and the two checks every reader makes before it allocates a voxel buffer:
//! the result fits the memory limit ([`ReadOptions::check`], counting the result's own
//! type: scaled or widened data is checked as what it becomes), and the input can hold the
//! bytes the header announces ([`check_available`]): raw data must be there, compressed
//! data must be long enough to inflate to it ([`inflated_bound`]). A header that claims a
//! huge image over a few bytes is refused before any memory is taken.

use std::path::Path;

use crate::{ImagingError, Result};

/// Default limit on the decoded size of one image: 4 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

/// The most a deflate stream (gzip, zlib) can expand: RFC 1951's longest match (258 bytes)
/// in two bits (one-bit codes for the length and the distance) is 1032:1.
pub const MAX_DEFLATE_RATIO: u64 = 1032;

/// Options shared by all readers.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Largest decoded voxel buffer (bytes) a reader may allocate.
    pub max_bytes: u64,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl ReadOptions {
    /// Checks `count` elements of `elem_bytes` against the limit, before allocating.
    /// Returns the byte count as `usize`.
    pub fn check(&self, path: &Path, count: u128, elem_bytes: usize) -> Result<usize> {
        let needed = count.saturating_mul(elem_bytes as u128);
        if needed > self.max_bytes as u128 || needed > usize::MAX as u128 {
            return Err(ImagingError::TooLarge {
                path: path.to_path_buf(),
                needed: needed.min(u64::MAX as u128) as u64,
                limit: self.max_bytes,
            });
        }
        Ok(needed as usize)
    }
}

/// The most plain bytes `compressed` bytes of deflate data can inflate to.
pub fn inflated_bound(compressed: u64) -> u64 {
    compressed.saturating_mul(MAX_DEFLATE_RATIO)
}

/// Refuses a header that announces `needed` bytes of voxel data when the input holds at
/// most `available` (for compressed input: [`inflated_bound`] of its length).
pub fn check_available(path: &Path, format: &'static str, needed: u64, available: u64) -> Result<()> {
    if needed > available {
        return Err(ImagingError::format(
            path,
            format,
            format!(
                "truncated: the header announces {needed} bytes of voxel data but the file holds at most {available}"
            ),
        ));
    }
    Ok(())
}
