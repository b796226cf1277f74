//! Imaging core of AIAA: 3D medical volumes, their geometry, file IO and resampling.
//!
//! # Data conventions (stated once, here; tests in `tests/conventions.rs` pin them)
//!
//! * **Voxels + geometry.** A [`Volume`] is a typed voxel buffer ([`Voxels`]: `u8`, `i16`,
//!   `u16`, `i32`, `f32`, `f64`) plus a [`Geometry`]: `spacing` (mm), `origin` (mm, physical
//!   position of voxel `(0,0,0)`'s centre) and a 3x3 `direction` whose **columns** are the unit
//!   physical directions of the `i`, `j`, `k` axes.
//! * **Physical space is ITK's LPS** (like SimpleITK, ITK-SNAP, MHA, DICOM): `+x` = patient
//!   Left, `+y` = Posterior, `+z` = Superior. NIfTI's RAS affines are converted on read and
//!   write, NRRD's `right-anterior-superior` space on read (the first two physical axes
//!   flip sign).
//!   `physical = origin + direction * diag(spacing) * [i, j, k]`.
//! * **Memory layout: `i` (x) fastest**, like NIfTI and MHA files:
//!   `offset = i + nx * (j + ny * (k + nz * c))`. Channels (`c`, e.g. RGB or NIfTI's 5th
//!   dimension) are the **slowest** axis, so each channel is a contiguous 3D block.
//! * **Points on the wire** are voxel indices `[x, y, z]` = NIfTI `(i, j, k)` of the image.
//! * Masks are integer labels on the image grid; geometry survives every load, crop,
//!   resample and save.
//!
//! Formats: NIfTI-1/2 (`.nii`, `.nii.gz`), MetaImage (`.mha`, `.mhd` + raw), NRRD (`.nrrd`,
//! `.nhdr` + data file), DICOM series, PNG (2D, 8/16 bit). The format comes from the file
//! name, then from the bytes ([`io::read_volume`]); [`io::probe_bytes`] reads only what a
//! header says (grid, channels, voxel type) so a caller can budget a decode before it runs.
//!
//! Memory: every reader checks the result's size (in its final voxel type) against
//! [`ReadOptions::max_bytes`] and that the input can hold the data its header announces
//! before it allocates ([`limits`]), and converts stored data chunk by chunk into the result
//! ([`decode`]): a read never holds two copies of the volume.

pub mod convert;
pub mod crop;
pub mod decode;
pub mod dicom;
pub mod error;
pub mod geometry;
pub mod gz;
pub mod io;
pub mod limits;
pub mod mha;
pub mod nifti;
pub mod nrrd;
pub mod png;
pub mod resample;
pub mod volume;
pub mod voxels;

pub use error::{ImagingError, Result};
pub use geometry::Geometry;
pub use limits::ReadOptions;
pub use volume::Volume;
pub use voxels::{VoxelType, Voxels};
