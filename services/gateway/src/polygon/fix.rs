//! Moving one polygon vertex, as `/v1/fixpolygon` does: vertex `v` of polygon `p` moves by
//! the offset; the vertices within `neighbors` positions along the polygon follow with
//! weight `1 - d / (neighbors + 1)`. In 3D the same polygon on the slices within
//! `neighbors_3d` follows too, its nearest vertex to the moved one taking the role of `v`,
//! with the slice's own weight `1 - |dz| / (neighbors_3d + 1)` on top.

use super::{Point, Polygon};

/// Moves vertex `vertex` of `poly` by `offset * weight`, its neighbours with decaying weight;
/// coordinates are kept inside `[0, limit)`.
pub fn move_vertex(
    poly: &mut Polygon,
    vertex: usize,
    offset: Point,
    neighbors: usize,
    weight: f64,
    limit: [usize; 2],
) {
    let n = poly.len();
    if n == 0 || vertex >= n {
        return;
    }
    let reach = neighbors.min((n - 1) / 2);
    let mut moved = vec![false; n];
    for d in 0..=reach {
        let w = weight * (1.0 - d as f64 / (neighbors as f64 + 1.0));
        for i in [(vertex + d) % n, (vertex + n - d % n) % n] {
            if moved[i] {
                continue;
            }
            moved[i] = true;
            for c in 0..2 {
                let v = poly[i][c] + offset[c] * w;
                poly[i][c] = v.round().clamp(0.0, limit[c].saturating_sub(1) as f64);
            }
        }
    }
}

/// The index of the vertex of `poly` nearest to `to`.
pub fn nearest(poly: &[Point], to: Point) -> Option<usize> {
    poly.iter()
        .enumerate()
        .min_by(|(_, a), (_, b)| {
            let da = (a[0] - to[0]).powi(2) + (a[1] - to[1]).powi(2);
            let db = (b[0] - to[0]).powi(2) + (b[1] - to[1]).powi(2);
            da.total_cmp(&db)
        })
        .map(|(i, _)| i)
}

/// Where a 3D edit starts.
#[derive(Clone, Copy, Debug)]
pub struct Edit3d {
    /// The slice.
    pub slice: usize,
    /// The polygon on that slice.
    pub polygon: usize,
    /// The vertex of that polygon.
    pub vertex: usize,
    /// The offset `[dx, dy]`.
    pub offset: Point,
    /// Vertices along the polygon that follow.
    pub neighbors: usize,
    /// Slices on each side that follow.
    pub neighbors_3d: usize,
}

/// Applies a 3D edit to per-slice polygons.
pub fn move_vertex_3d(slices: &mut [Vec<Polygon>], edit: Edit3d, limit: [usize; 2]) {
    let Some(anchor) = slices
        .get(edit.slice)
        .and_then(|s| s.get(edit.polygon))
        .and_then(|p| p.get(edit.vertex))
        .copied()
    else {
        return;
    };
    let lo = edit.slice.saturating_sub(edit.neighbors_3d);
    let hi = (edit.slice + edit.neighbors_3d).min(slices.len().saturating_sub(1));
    for (z, polys) in slices.iter_mut().enumerate().take(hi + 1).skip(lo) {
        let dz = z.abs_diff(edit.slice);
        let weight = 1.0 - dz as f64 / (edit.neighbors_3d as f64 + 1.0);
        let Some(poly) = polys.get_mut(edit.polygon) else {
            continue;
        };
        let vertex = if z == edit.slice {
            Some(edit.vertex)
        } else {
            nearest(poly, anchor)
        };
        if let Some(v) = vertex {
            move_vertex(poly, v, edit.offset, edit.neighbors, weight, limit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Polygon {
        vec![
            [10.0, 10.0],
            [20.0, 10.0],
            [30.0, 10.0],
            [30.0, 20.0],
            [30.0, 30.0],
            [20.0, 30.0],
            [10.0, 30.0],
            [10.0, 20.0],
        ]
    }

    #[test]
    fn decaying_neighbours() {
        let mut p = square();
        move_vertex(&mut p, 0, [-4.0, -4.0], 1, 1.0, [100, 100]);
        assert_eq!(p[0], [6.0, 6.0]);
        assert_eq!(p[1], [18.0, 8.0]);
        assert_eq!(p[7], [8.0, 18.0]);
        assert_eq!(p[2], [30.0, 10.0]);
        let mut q = square();
        move_vertex(&mut q, 0, [-40.0, 0.0], 0, 1.0, [100, 100]);
        assert_eq!(q[0], [0.0, 10.0], "clamped to the image");
    }

    #[test]
    fn slices_follow() {
        let mut slices = vec![vec![square()], vec![square()], vec![square()], vec![square()]];
        let edit = Edit3d {
            slice: 1,
            polygon: 0,
            vertex: 2,
            offset: [6.0, 0.0],
            neighbors: 0,
            neighbors_3d: 1,
        };
        move_vertex_3d(&mut slices, edit, [100, 100]);
        assert_eq!(slices[1][0][2], [36.0, 10.0]);
        assert_eq!(slices[0][0][2], [33.0, 10.0]);
        assert_eq!(slices[2][0][2], [33.0, 10.0]);
        assert_eq!(slices[3][0][2], [30.0, 10.0]);
    }
}
