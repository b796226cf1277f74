//! Read options: the memory limit checked before any voxel buffer is allocated.

use std::path::Path;

use crate::{ImagingError, Result};

/// Default limit on the decoded size of one image: 4 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

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
