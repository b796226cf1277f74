//! The `Volume` type: a voxel buffer with its grid size, channel count and geometry.

use crate::{Geometry, ImagingError, Result, VoxelType, Voxels};

/// A (multi-channel) 3D image. 2D images have `dims[2] == 1`.
///
/// Layout: `offset = i + nx * (j + ny * (k + nz * c))` (see the crate docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Grid size `[nx, ny, nz]`.
    pub dims: [usize; 3],
    /// Number of channels (1 for scalar images).
    pub channels: usize,
    /// Physical placement of the grid (LPS).
    pub geometry: Geometry,
    /// Voxel values, `nx * ny * nz * channels` of them.
    pub voxels: Voxels,
}

impl Volume {
    /// Builds a volume, checking that the buffer length matches the grid.
    pub fn new(dims: [usize; 3], channels: usize, geometry: Geometry, voxels: Voxels) -> Result<Volume> {
        let expected = dims
            .iter()
            .chain(std::iter::once(&channels))
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        if expected != Some(voxels.len()) || channels == 0 || dims.contains(&0) {
            return Err(ImagingError::InvalidArgument(format!(
                "grid {dims:?} x {channels} channels does not match {} voxels",
                voxels.len()
            )));
        }
        Ok(Volume {
            dims,
            channels,
            geometry,
            voxels,
        })
    }

    /// A scalar volume.
    pub fn scalar(dims: [usize; 3], geometry: Geometry, voxels: Voxels) -> Result<Volume> {
        Volume::new(dims, 1, geometry, voxels)
    }

    /// Element type.
    pub fn voxel_type(&self) -> VoxelType {
        self.voxels.voxel_type()
    }

    /// Voxels per channel (`nx * ny * nz`).
    pub fn voxel_count(&self) -> usize {
        self.dims[0] * self.dims[1] * self.dims[2]
    }

    /// Flat offset of voxel `(i, j, k)` in channel `c`.
    pub fn offset(&self, i: usize, j: usize, k: usize, c: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * (k + self.dims[2] * c))
    }

    /// Value of voxel `(i, j, k)` in channel `c` as `f64`.
    pub fn get(&self, i: usize, j: usize, k: usize, c: usize) -> f64 {
        self.voxels.get_f64(self.offset(i, j, k, c))
    }

    /// One channel as a scalar volume.
    pub fn channel(&self, c: usize) -> Result<Volume> {
        if c >= self.channels {
            return Err(ImagingError::InvalidArgument(format!(
                "channel {c} of a {}-channel volume",
                self.channels
            )));
        }
        let n = self.voxel_count();
        Volume::scalar(self.dims, self.geometry, self.voxels.slice(c * n, n))
    }

    /// The same volume with voxels converted to `ty`.
    pub fn cast(&self, ty: VoxelType) -> Volume {
        Volume {
            voxels: self.voxels.cast(ty),
            ..self.clone()
        }
    }
}
