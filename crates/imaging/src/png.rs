//! PNG (2D) reading and writing: 8- and 16-bit grey, grey+alpha, RGB and RGBA. A PNG is a
//! volume with `dims = [width, height, 1]`, unit spacing, and one channel per colour
//! component (channel-slowest layout). Palette and sub-byte images are expanded to 8 bit.

use std::io::Cursor;
use std::path::Path;

use crate::io::ImageInfo;
use crate::limits::{check_available, inflated_bound};
use crate::{Geometry, ImagingError, ReadOptions, Result, Volume, VoxelType, Voxels, mha};

const FORMAT: &str = "PNG";

/// Reads a PNG file.
pub fn read(path: &Path, opts: &ReadOptions) -> Result<Volume> {
    let bytes = crate::io::read_file(path, opts)?;
    read_bytes(path, &bytes, opts)
}

/// Decodes PNG bytes; `path` names the source in errors.
pub fn read_bytes(path: &Path, bytes: &[u8], opts: &ReadOptions) -> Result<Volume> {
    let err = |e: png::DecodingError| ImagingError::format(path, FORMAT, e.to_string());
    let limit = usize::try_from(opts.max_bytes).unwrap_or(usize::MAX);
    let mut dec = png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: limit });
    dec.set_transformations(png::Transformations::EXPAND);
    let mut reader = dec.read_info().map_err(err)?;
    let (w, h) = {
        let info = reader.info();
        (info.width as usize, info.height as usize)
    };
    let (color, depth) = reader.output_color_type();
    let comps = color.samples();
    let bytes_per = if depth == png::BitDepth::Sixteen { 2 } else { 1 };
    let count = w as u128 * h as u128 * comps as u128;
    // Held at once: the decoded rows, the 16-bit values, the channel-slowest copy.
    let held = bytes_per + usize::from(bytes_per == 2) * 2 + usize::from(comps > 1) * bytes_per;
    opts.check(path, count, held)?;
    let size = opts.check(path, count, bytes_per)?;
    // The image data is zlib: it cannot inflate to more than its ratio allows.
    check_available(path, FORMAT, size as u64, inflated_bound(bytes.len() as u64))?;
    let mut buf = vec![0u8; size];
    reader.next_frame(&mut buf).map_err(err)?;
    let inter = if bytes_per == 2 {
        Voxels::from_bytes(VoxelType::U16, &buf, true)?
    } else {
        Voxels::U8(buf)
    };
    let voxels = if comps > 1 {
        mha::deinterleave(&inter, comps)
    } else {
        inter
    };
    Volume::new([w, h, 1], comps, Geometry::default(), voxels)
}

/// What a PNG in memory is (size, channels, 8 or 16 bit), without decoding its pixels;
/// refused when its compressed data is too short for that many pixels.
pub fn probe_bytes(path: &Path, bytes: &[u8]) -> Result<ImageInfo> {
    let err = |e: png::DecodingError| ImagingError::format(path, FORMAT, e.to_string());
    let mut dec = png::Decoder::new(Cursor::new(bytes));
    dec.set_transformations(png::Transformations::EXPAND);
    let reader = dec.read_info().map_err(err)?;
    let (w, h) = (reader.info().width as usize, reader.info().height as usize);
    let (color, depth) = reader.output_color_type();
    let bytes_per = if depth == png::BitDepth::Sixteen { 2 } else { 1 };
    let needed = w as u64 * h as u64 * color.samples() as u64 * bytes_per;
    check_available(path, FORMAT, needed, inflated_bound(bytes.len() as u64))?;
    Ok(ImageInfo {
        dims: [w, h, 1],
        channels: color.samples(),
        voxel_type: if depth == png::BitDepth::Sixteen {
            VoxelType::U16
        } else {
            VoxelType::U8
        },
        geometry: Geometry::default(),
    })
}

/// Encodes a 2D volume (`dims[2] == 1`, u8 or u16, 1-4 channels) as PNG bytes.
pub fn to_bytes(vol: &Volume) -> Result<Vec<u8>> {
    let bad = |why: String| ImagingError::InvalidArgument(format!("PNG: {why}"));
    if vol.dims[2] != 1 {
        return Err(bad(format!("PNG is 2D but the volume is {:?}", vol.dims)));
    }
    let color = match vol.channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        n => return Err(bad(format!("{n} channels"))),
    };
    let inter = if vol.channels > 1 {
        mha::interleave(&vol.voxels, vol.channels)
    } else {
        vol.voxels.clone()
    };
    let (depth, data) = match inter {
        Voxels::U8(v) => (png::BitDepth::Eight, v),
        Voxels::U16(v) => (
            png::BitDepth::Sixteen,
            v.iter().flat_map(|x| x.to_be_bytes()).collect(),
        ),
        other => {
            return Err(bad(format!(
                "{:?} voxels (cast to u8 or u16 first)",
                other.voxel_type()
            )));
        }
    };
    let (w, h) = (u32::try_from(vol.dims[0]), u32::try_from(vol.dims[1]));
    let (Ok(w), Ok(h)) = (w, h) else {
        return Err(bad("too large".into()));
    };
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(color);
        enc.set_depth(depth);
        let e = |e: png::EncodingError| bad(e.to_string());
        let mut wr = enc.write_header().map_err(e)?;
        wr.write_image_data(&data).map_err(e)?;
        wr.finish().map_err(e)?;
    }
    Ok(out)
}

/// Writes a PNG atomically.
pub fn write(vol: &Volume, path: &Path) -> Result<()> {
    crate::io::write_atomic(path, &to_bytes(vol)?)
}
