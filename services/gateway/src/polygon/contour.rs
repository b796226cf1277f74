//! Outer contours of a binary slice by Moore-neighbour tracing (8-connected components).
//!
//! Each component is found in raster order (its first pixel is its top-left-most, so the
//! pixel to its west is background), traced clockwise (in image coordinates, `y` down)
//! around its outside until the first step repeats, and thinned to about one vertex every
//! `step` boundary pixels. Holes are not traced: the clients want outer contours.

use super::{Point, Polygon, Slice};

/// The 8 neighbour offsets, clockwise with `y` down, starting east.
const DIRS: [(isize, isize); 8] = [
    (1, 0),
    (1, 1),
    (0, 1),
    (-1, 1),
    (-1, 0),
    (-1, -1),
    (0, -1),
    (1, -1),
];

fn dir_of(dx: isize, dy: isize) -> usize {
    DIRS.iter().position(|&d| d == (dx, dy)).unwrap_or(4)
}

/// Marks the 8-connected component containing `(x, y)` in `seen`.
fn flood(slice: &Slice, seen: &mut [bool], x: usize, y: usize) {
    let mut stack = vec![(x, y)];
    seen[y * slice.width + x] = true;
    while let Some((cx, cy)) = stack.pop() {
        for (dx, dy) in DIRS {
            let (nx, ny) = (cx as isize + dx, cy as isize + dy);
            if slice.at(nx, ny) {
                let o = ny as usize * slice.width + nx as usize;
                if !seen[o] {
                    seen[o] = true;
                    stack.push((nx as usize, ny as usize));
                }
            }
        }
    }
}

/// The boundary pixels of the component whose top-left-most pixel is `start`, in order.
pub fn trace(slice: &Slice, start: (isize, isize)) -> Vec<(isize, isize)> {
    let mut boundary = vec![start];
    let mut p = start;
    // We "came from" the west, which is background for a top-left-most pixel.
    let mut back = 4usize;
    let mut first_move: Option<(isize, isize)> = None;
    let cap = 4 * slice.width * slice.height + 16;
    for _ in 0..cap {
        let mut next = None;
        for k in 1..=8 {
            let d = (back + k) % 8;
            let q = (p.0 + DIRS[d].0, p.1 + DIRS[d].1);
            if slice.at(q.0, q.1) {
                // The cell scanned just before q is background: it is q's new backtrack.
                let prev = (back + k + 7) % 8;
                let c = (p.0 + DIRS[prev].0, p.1 + DIRS[prev].1);
                next = Some((q, dir_of(c.0 - q.0, c.1 - q.1)));
                break;
            }
        }
        let Some((q, new_back)) = next else {
            return boundary; // an isolated pixel
        };
        match first_move {
            None => first_move = Some(q),
            Some(first) if p == start && q == first => {
                boundary.pop(); // `start` was appended again on arrival
                return boundary;
            }
            Some(_) => {}
        }
        boundary.push(q);
        p = q;
        back = new_back;
    }
    boundary
}

/// Keeps about one boundary pixel every `step` (at least 3 vertices when there are that
/// many boundary pixels).
pub fn thin(boundary: &[(isize, isize)], step: usize) -> Polygon {
    let n = boundary.len();
    let step = step.max(1).min((n / 3).max(1));
    boundary
        .iter()
        .step_by(step)
        .map(|&(x, y)| [x as f64, y as f64] as Point)
        .collect()
}

/// The outer contours of every component of `slice`, thinned to one vertex every `step`
/// boundary pixels, in raster order of their top-left-most pixel; `None` as soon as they
/// hold more than `max_vertices` vertices (a polygon counts at least one).
pub fn contours(slice: &Slice, step: usize, max_vertices: usize) -> Option<Vec<Polygon>> {
    let mut seen = vec![false; slice.pixels.len()];
    let mut out = Vec::new();
    let mut count = 0usize;
    for y in 0..slice.height {
        for x in 0..slice.width {
            let o = y * slice.width + x;
            if slice.pixels[o] && !seen[o] {
                flood(slice, &mut seen, x, y);
                let boundary = trace(slice, (x as isize, y as isize));
                let poly = thin(&boundary, step);
                count += poly.len().max(1);
                if count > max_vertices {
                    return None;
                }
                out.push(poly);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::polygon::signed_area;

    fn rect(w: usize, h: usize, x0: usize, y0: usize, x1: usize, y1: usize) -> Slice {
        let mut s = Slice::empty(w, h);
        for y in y0..=y1 {
            for x in x0..=x1 {
                s.set(x as isize, y as isize);
            }
        }
        s
    }

    #[test]
    fn rectangle_boundary() {
        let s = rect(10, 10, 2, 3, 6, 7); // 5 x 5
        let b = trace(&s, (2, 3));
        assert_eq!(b.len(), 16, "{b:?}");
        let poly = thin(&b, 1);
        assert_eq!(signed_area(&poly).abs(), 16.0);
        assert!(b.iter().all(|&(x, y)| s.at(x, y)));
    }

    #[test]
    fn components_single_pixels_and_lines() {
        let mut s = rect(12, 12, 1, 1, 3, 3);
        s.set(8, 8);
        for x in 5..10 {
            s.set(x, 1);
        }
        let c = contours(&s, 1, usize::MAX).unwrap();
        assert_eq!(c.len(), 3);
        assert!(contours(&s, 1, 10).is_none(), "over the vertex budget");
        assert_eq!(c[2], vec![[8.0, 8.0]]);
        // A one-pixel-wide line is walked there and back.
        assert_eq!(c[1].len(), 8);
    }

    #[test]
    fn thinning() {
        let s = rect(40, 40, 5, 5, 24, 24);
        let c = contours(&s, 4, usize::MAX).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].len(), 76 / 4);
    }
}
