//! Polygons on mask slices, for `/v1/mask2polygon` and `/v1/fixpolygon`:
//!
//! - [`contour`]: outer contours of a binary slice by Moore-neighbour tracing, thinned to
//!   about one vertex every N boundary pixels;
//! - [`raster`]: the mask a set of polygons covers (scanline fill plus the edges);
//! - [`fix`]: moving one vertex, with its neighbours (and in 3D the neighbouring slices)
//!   following with decaying weight.
//!
//! Coordinates are `[x, y]` pixel indices of the slice (`x` = `i`, `y` = `j`), slices are
//! indexed by `z` = `k`.

pub mod contour;
pub mod fix;
pub mod raster;

/// A vertex `[x, y]` in pixel coordinates.
pub type Point = [f64; 2];
/// A closed polygon (the last vertex connects to the first).
pub type Polygon = Vec<Point>;

/// A binary view of one `width x height` slice, row-major (`x` fastest).
#[derive(Clone, Debug)]
pub struct Slice {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `true` where the mask is set; `width * height` values.
    pub pixels: Vec<bool>,
}

impl Slice {
    /// An empty slice.
    pub fn empty(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            pixels: vec![false; width * height],
        }
    }

    /// Whether `(x, y)` is inside the slice and set.
    pub fn at(&self, x: isize, y: isize) -> bool {
        x >= 0
            && y >= 0
            && (x as usize) < self.width
            && (y as usize) < self.height
            && self.pixels[y as usize * self.width + x as usize]
    }

    /// Sets `(x, y)` when it lies inside the slice.
    pub fn set(&mut self, x: isize, y: isize) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            self.pixels[y as usize * self.width + x as usize] = true;
        }
    }

    /// How many pixels are set.
    pub fn count(&self) -> usize {
        self.pixels.iter().filter(|&&p| p).count()
    }
}

/// Slice `z` of a volume's first channel as a binary mask (non-zero is set).
pub fn slice_of(volume: &aiaa_imaging::Volume, z: usize) -> Slice {
    let [w, h, _] = volume.dims;
    let start = z * w * h;
    let pixels = (start..start + w * h)
        .map(|o| volume.voxels.get_f64(o) != 0.0)
        .collect();
    Slice {
        width: w,
        height: h,
        pixels,
    }
}

/// The signed area of a polygon (shoelace formula); positive or negative by orientation.
pub fn signed_area(poly: &[Point]) -> f64 {
    let n = poly.len();
    (0..n)
        .map(|i| {
            let [x0, y0] = poly[i];
            let [x1, y1] = poly[(i + 1) % n];
            x0 * y1 - x1 * y0
        })
        .sum::<f64>()
        / 2.0
}
