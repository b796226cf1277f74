//! Voxel grid geometry in ITK's LPS physical space and the index <-> physical transforms.

/// A 3x3 matrix, row-major: `m[row][col]`.
pub type Mat3 = [[f64; 3]; 3];

/// Identity matrix.
pub const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// Geometry of a voxel grid in LPS physical space (millimetres).
///
/// `physical = origin + direction * diag(spacing) * index`; the columns of `direction` are
/// the unit physical directions of the `i`, `j` and `k` axes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    /// Voxel size along `i`, `j`, `k` (mm, positive).
    pub spacing: [f64; 3],
    /// Physical (LPS) position of the centre of voxel `(0, 0, 0)`.
    pub origin: [f64; 3],
    /// Row-major direction cosines; column `c` is axis `c`'s direction.
    pub direction: Mat3,
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry {
            spacing: [1.0; 3],
            origin: [0.0; 3],
            direction: IDENTITY,
        }
    }
}

/// `a * b` for 3x3 matrices.
pub fn mat_mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut r = [[0.0; 3]; 3];
    for (i, row) in r.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

/// `m * v`.
pub fn mat_vec(m: &Mat3, v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|r| m[r][0] * v[0] + m[r][1] * v[1] + m[r][2] * v[2])
}

/// Determinant.
pub fn det(m: &Mat3) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// Inverse, or `None` when (nearly) singular.
pub fn inverse(m: &Mat3) -> Option<Mat3> {
    let d = det(m);
    if !d.is_finite() || d.abs() < 1e-12 {
        return None;
    }
    let c = |r0: usize, c0: usize, r1: usize, c1: usize| m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
    Some([
        [c(1, 1, 2, 2) / d, -c(0, 1, 2, 2) / d, c(0, 1, 1, 2) / d],
        [-c(1, 0, 2, 2) / d, c(0, 0, 2, 2) / d, -c(0, 0, 1, 2) / d],
        [c(1, 0, 2, 1) / d, -c(0, 0, 2, 1) / d, c(0, 0, 1, 1) / d],
    ])
}

/// Cross product.
pub fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Dot product.
pub fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// Euclidean norm.
pub fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

impl Geometry {
    /// Axis-aligned geometry with the given spacing at the origin.
    pub fn with_spacing(spacing: [f64; 3]) -> Geometry {
        Geometry {
            spacing,
            ..Geometry::default()
        }
    }

    /// `direction * diag(spacing)`: maps index offsets to physical offsets.
    pub fn linear(&self) -> Mat3 {
        let mut m = self.direction;
        for row in m.iter_mut() {
            for (c, cell) in row.iter_mut().enumerate() {
                *cell *= self.spacing[c];
            }
        }
        m
    }

    /// Physical (LPS) point of a continuous index `[i, j, k]`.
    pub fn index_to_physical(&self, index: [f64; 3]) -> [f64; 3] {
        let d = mat_vec(&self.linear(), index);
        [0, 1, 2].map(|r| self.origin[r] + d[r])
    }

    /// Continuous index of a physical (LPS) point; `None` for a degenerate geometry.
    pub fn physical_to_index(&self, point: [f64; 3]) -> Option<[f64; 3]> {
        let inv = inverse(&self.linear())?;
        Some(mat_vec(&inv, [0, 1, 2].map(|r| point[r] - self.origin[r])))
    }

    /// Builds a geometry from a 3x4 LPS affine `[linear | translation]` (rows = x, y, z).
    /// Spacing is the column norms; a zero column becomes spacing 1 with a unit direction
    /// orthogonal to the others. Returns `None` if the affine is degenerate.
    pub fn from_affine(a: &[[f64; 4]; 3]) -> Option<Geometry> {
        let mut spacing = [0.0; 3];
        let mut direction = [[0.0; 3]; 3];
        for c in 0..3 {
            let col = [a[0][c], a[1][c], a[2][c]];
            let n = norm(col);
            if !n.is_finite() || n <= 0.0 {
                return None;
            }
            spacing[c] = n;
            for r in 0..3 {
                direction[r][c] = col[r] / n;
            }
        }
        if det(&direction).abs() < 1e-6 {
            return None;
        }
        Some(Geometry {
            spacing,
            origin: [a[0][3], a[1][3], a[2][3]],
            direction,
        })
    }

    /// The 3x4 LPS affine `[direction * diag(spacing) | origin]`.
    pub fn affine(&self) -> [[f64; 4]; 3] {
        let l = self.linear();
        [0, 1, 2].map(|r| [l[r][0], l[r][1], l[r][2], self.origin[r]])
    }

    /// The 3x4 RAS affine (NIfTI convention) of this geometry.
    pub fn ras_affine(&self) -> [[f64; 4]; 3] {
        let mut a = self.affine();
        for row in a.iter_mut().take(2) {
            for v in row.iter_mut() {
                *v = -*v;
            }
        }
        a
    }

    /// Geometry from a NIfTI RAS affine (flips x and y to LPS).
    pub fn from_ras_affine(a: &[[f64; 4]; 3]) -> Option<Geometry> {
        let mut l = *a;
        for row in l.iter_mut().take(2) {
            for v in row.iter_mut() {
                *v = -*v;
            }
        }
        Geometry::from_affine(&l)
    }

    /// Whether both geometries share direction (within `tol`).
    pub fn same_direction(&self, other: &Geometry, tol: f64) -> bool {
        (0..3).all(|r| (0..3).all(|c| (self.direction[r][c] - other.direction[r][c]).abs() <= tol))
    }

    /// Whether two geometries are equal within `tol` (mm / cosine units).
    pub fn approx_eq(&self, other: &Geometry, tol: f64) -> bool {
        self.same_direction(other, tol)
            && (0..3).all(|i| {
                (self.spacing[i] - other.spacing[i]).abs() <= tol
                    && (self.origin[i] - other.origin[i]).abs() <= tol
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_physical_round_trip() {
        let g = Geometry {
            spacing: [0.7, 0.8, 2.5],
            origin: [-10.0, 20.0, 30.0],
            direction: [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
        };
        let p = g.index_to_physical([1.0, 2.0, 3.0]);
        assert!((p[0] - (-10.0 + 1.6)).abs() < 1e-12);
        assert!((p[1] - (20.0 - 0.7)).abs() < 1e-12);
        assert!((p[2] - (30.0 + 7.5)).abs() < 1e-12);
        let i = g.physical_to_index(p).unwrap();
        for (a, b) in i.iter().zip([1.0, 2.0, 3.0]) {
            assert!((a - b).abs() < 1e-12);
        }
        let back = Geometry::from_affine(&g.affine()).unwrap();
        assert!(back.approx_eq(&g, 1e-12));
        let ras = Geometry::from_ras_affine(&g.ras_affine()).unwrap();
        assert!(ras.approx_eq(&g, 1e-12));
    }

    #[test]
    fn inverse_is_inverse() {
        let m = [[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 4.0]];
        let p = mat_mul(&m, &inverse(&m).unwrap());
        for r in 0..3 {
            for c in 0..3 {
                assert!((p[r][c] - IDENTITY[r][c]).abs() < 1e-12);
            }
        }
        assert!(inverse(&[[0.0; 3]; 3]).is_none());
    }
}
