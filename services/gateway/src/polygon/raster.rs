//! The mask a set of polygons covers: each polygon is filled by scanlines through the pixel
//! centres (even-odd rule, half-open edges so a vertex on a scanline counts once), and its
//! edges are drawn too (Bresenham), so a contour through boundary pixel centres gives back
//! the pixels it was traced from. Polygons are united.
//!
//! The work is bounded by the image, not by the coordinates: edges are clipped to the image
//! before they are drawn, and only the scanlines inside it are filled. Its cost (scanline
//! crossings plus edge pixels, [`cost`]) is known before any is done, so a caller refuses
//! polygons too costly for their image (self-crossing zigzags) up front.

use super::{Point, Slice};

/// The part of segment `a`-`b` inside `[x0, x1] x [y0, y1]` (Liang-Barsky).
fn clip(a: Point, b: Point, [x0, x1, y0, y1]: [f64; 4]) -> Option<(Point, Point)> {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a[0] - x0),
        (dx, x1 - a[0]),
        (-dy, a[1] - y0),
        (dy, y1 - a[1]),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                if r > t1 {
                    return None;
                }
                t0 = t0.max(r);
            } else {
                if r < t0 {
                    return None;
                }
                t1 = t1.min(r);
            }
        }
    }
    Some(([a[0] + t0 * dx, a[1] + t0 * dy], [a[0] + t1 * dx, a[1] + t1 * dy]))
}

/// Segment `a`-`b` clipped to the image with a one-pixel margin, rounded to pixels.
fn clipped_line(width: usize, height: usize, a: Point, b: Point) -> Option<([i64; 2], [i64; 2])> {
    let (a, b) = clip(a, b, [-1.0, width as f64, -1.0, height as f64])?;
    Some((
        [a[0].round() as i64, a[1].round() as i64],
        [b[0].round() as i64, b[1].round() as i64],
    ))
}

/// The image rows `y` an edge crosses under the half-open rule (`min <= y < max`), clamped
/// to the image: `(first, last)`, empty when `first > last`.
fn rows(height: usize, ay: f64, by: f64) -> (i64, i64) {
    let (lo, hi) = if ay <= by { (ay, by) } else { (by, ay) };
    let first = lo.ceil().max(0.0) as i64;
    let last = (hi.ceil() - 1.0).min(height as f64 - 1.0) as i64;
    (first, last)
}

/// The work of drawing and filling `poly` on a `width x height` slice: scanline crossings
/// plus edge pixels, after clipping.
pub fn cost(width: usize, height: usize, poly: &[Point]) -> u64 {
    let n = poly.len();
    (0..n)
        .map(|i| {
            let (a, b) = (poly[i], poly[(i + 1) % n]);
            let (first, last) = rows(height, a[1], b[1]);
            let crossings = if a[1] == b[1] {
                0
            } else {
                (last - first + 1).max(0) as u64
            };
            let pixels = clipped_line(width, height, a, b).map_or(0, |(p, q)| {
                (p[0] - q[0]).unsigned_abs().max((p[1] - q[1]).unsigned_abs()) + 1
            });
            crossings + pixels
        })
        .sum()
}

/// Sets every pixel of `slice` that `poly` covers.
pub fn fill(slice: &mut Slice, poly: &[Point]) {
    let n = poly.len();
    if n == 0 {
        return;
    }
    // Every (row, x) where an edge crosses a pixel-centre scanline, sorted: consecutive
    // pairs on a row bound the inside.
    let mut crossings: Vec<(i64, f64)> = Vec::new();
    for i in 0..n {
        let [ax, ay] = poly[i];
        let [bx, by] = poly[(i + 1) % n];
        if ay == by {
            continue;
        }
        let (first, last) = rows(slice.height, ay, by);
        for y in first..=last {
            let yf = y as f64;
            crossings.push((y, ax + (yf - ay) * (bx - ax) / (by - ay)));
        }
    }
    crossings.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    for row in crossings.chunk_by(|a, b| a.0 == b.0) {
        let y = row[0].0 as isize;
        for pair in row.chunks_exact(2) {
            let from = pair[0].1.ceil().max(0.0) as isize;
            let to = pair[1].1.floor().min(slice.width as f64 - 1.0) as isize;
            for x in from..=to {
                slice.set(x, y);
            }
        }
    }
    for i in 0..n {
        line(slice, poly[i], poly[(i + 1) % n]);
    }
}

/// Draws the segment `a`-`b` (rounded to pixels), clipped to the slice.
fn line(slice: &mut Slice, a: Point, b: Point) {
    let Some((p, q)) = clipped_line(slice.width, slice.height, a, b) else {
        return;
    };
    let (mut x, mut y) = (p[0] as isize, p[1] as isize);
    let (x1, y1) = (q[0] as isize, q[1] as isize);
    let dx = (x1 - x).abs();
    let dy = -(y1 - y).abs();
    let sx = if x < x1 { 1 } else { -1 };
    let sy = if y < y1 { 1 } else { -1 };
    let mut err = dx + dy;
    loop {
        slice.set(x, y);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// A `width x height` slice covered by `polys`.
pub fn rasterize(width: usize, height: usize, polys: &[Vec<Point>]) -> Slice {
    let mut slice = Slice::empty(width, height);
    for poly in polys {
        fill(&mut slice, poly);
    }
    slice
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::polygon::contour;

    #[test]
    fn square_and_triangle() {
        let s = rasterize(10, 10, &[vec![[2.0, 2.0], [5.0, 2.0], [5.0, 5.0], [2.0, 5.0]]]);
        assert_eq!(s.count(), 16);
        let t = rasterize(10, 10, &[vec![[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]]);
        assert_eq!(t.count(), 15);
    }

    #[test]
    fn contour_round_trip() {
        // A disc: tracing then filling gives back exactly the disc.
        let mut disc = Slice::empty(40, 40);
        for y in 0..40isize {
            for x in 0..40isize {
                if (x - 20).pow(2) + (y - 18).pow(2) <= 100 {
                    disc.set(x, y);
                }
            }
        }
        let polys = contour::contours(&disc, 1, usize::MAX).unwrap();
        assert_eq!(rasterize(40, 40, &polys).pixels, disc.pixels);
    }

    #[test]
    fn far_vertices_cost_what_the_image_holds() {
        // A triangle with a vertex at 1e6: clipped, its work is bounded by the image.
        let tri = vec![[2.0, 2.0], [1e6, 5.0], [2.0, 8.0]];
        assert!(cost(10, 10, &tri) < 100, "{}", cost(10, 10, &tri));
        let s = rasterize(10, 10, &[tri]);
        // Rows 2..=8 from x=2 to the right edge (the far vertex is outside).
        assert_eq!(s.count(), 7 * 8);
        // A zigzag of many tall edges costs its crossings.
        let zigzag: Vec<Point> = (0..1000)
            .map(|i| [i as f64 % 10.0, if i % 2 == 0 { 0.0 } else { 9.0 }])
            .collect();
        assert!(cost(10, 10, &zigzag) >= 1000 * 9);
        // Entirely outside: nothing to do.
        let out = vec![[-1e6, -1e6], [-1e6 + 5.0, -1e6], [-1e6, -1e6 + 5.0]];
        assert_eq!(cost(10, 10, &out), 0);
        assert_eq!(rasterize(10, 10, &[out]).count(), 0);
    }
}
