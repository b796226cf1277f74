//! The mask a set of polygons covers: each polygon is filled by scanlines through the pixel
//! centres (even-odd rule, half-open edges so a vertex on a scanline counts once), and its
//! edges are drawn too (Bresenham), so a contour through boundary pixel centres gives back
//! the pixels it was traced from. Polygons are united.

use super::{Point, Slice};

/// Sets every pixel of `slice` that `poly` covers.
pub fn fill(slice: &mut Slice, poly: &[Point]) {
    let n = poly.len();
    if n == 0 {
        return;
    }
    let (lo, hi) = poly
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p[1]), hi.max(p[1]))
        });
    let y0 = lo.ceil().max(0.0) as isize;
    let y1 = hi.floor().min(slice.height as f64 - 1.0) as isize;
    let mut xs = Vec::new();
    for y in y0..=y1 {
        let yf = y as f64;
        xs.clear();
        for i in 0..n {
            let [ax, ay] = poly[i];
            let [bx, by] = poly[(i + 1) % n];
            if (ay <= yf && yf < by) || (by <= yf && yf < ay) {
                xs.push(ax + (yf - ay) * (bx - ax) / (by - ay));
            }
        }
        xs.sort_by(f64::total_cmp);
        for pair in xs.chunks_exact(2) {
            let from = pair[0].ceil().max(0.0) as isize;
            let to = pair[1].floor().min(slice.width as f64 - 1.0) as isize;
            for x in from..=to {
                slice.set(x, y);
            }
        }
    }
    for i in 0..n {
        line(slice, poly[i], poly[(i + 1) % n]);
    }
}

/// Draws the segment `a`-`b` (rounded to pixels).
fn line(slice: &mut Slice, a: Point, b: Point) {
    let (mut x, mut y) = (a[0].round() as isize, a[1].round() as isize);
    let (x1, y1) = (b[0].round() as isize, b[1].round() as isize);
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
        let polys = contour::contours(&disc, 1);
        assert_eq!(rasterize(40, 40, &polys).pixels, disc.pixels);
    }
}
