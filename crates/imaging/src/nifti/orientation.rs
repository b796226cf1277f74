//! NIfTI qform/sform -> LPS geometry, choosing the matrix as ITK 5's `NiftiImageIO` does,
//! and LPS geometry -> qform/sform for writing.
//!
//! Reading (port of `SetImageIOOrientationFromNIfTI`):
//! 1. both codes unknown: origin 0, identity direction, spacing from `pixdim`;
//! 2. the sform is preferred when it equals the qform (3x3 within 1e-5, offset within
//!    1e-7), or when it is orthonormal after removing column scales and either the qform
//!    code is unknown, or `sform_code == SCANNER_ANAT`, or both codes are known and the two
//!    matrices agree within 1e-4 (ITK compares SVD factors; we compare unit columns, column
//!    norms and offsets, which is the same test for rigid matrices);
//! 3. otherwise the qform if its code is known, else an error.
//!
//! Spacing always comes from `pixdim[1..=3]` (ITK), direction from the chosen matrix's
//! normalised columns with x and y negated (RAS -> LPS), origin from its offset likewise.

use super::header::Header;
use crate::geometry::{Geometry, Mat3, det};

const SCANNER_ANAT: i32 = 1;

fn pix(p: f64) -> f64 {
    if p.is_finite() && p != 0.0 { p.abs() } else { 1.0 }
}

/// The qform's 3x4 RAS matrix (nifti1_io's `nifti_quatern_to_mat44`).
pub fn qform_matrix(h: &Header) -> [[f64; 4]; 3] {
    let [mut b, mut c, mut d] = h.quatern;
    let mut a = 1.0 - (b * b + c * c + d * d);
    if a < 1e-7 {
        let n = 1.0 / (b * b + c * c + d * d).sqrt();
        b *= n;
        c *= n;
        d *= n;
        a = 0.0;
    } else {
        a = a.sqrt();
    }
    let (xd, yd) = (pix(h.pixdim[1]), pix(h.pixdim[2]));
    let zd = if h.pixdim[0] < 0.0 {
        -pix(h.pixdim[3])
    } else {
        pix(h.pixdim[3])
    };
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    std::array::from_fn(|i| [r[i][0] * xd, r[i][1] * yd, r[i][2] * zd, h.qoffset[i]])
}

fn unit_columns(m: &[[f64; 4]; 3]) -> Option<(Mat3, [f64; 3])> {
    let mut u = [[0.0; 3]; 3];
    let mut norms = [0.0; 3];
    for c in 0..3 {
        let n = (0..3).map(|r| m[r][c] * m[r][c]).sum::<f64>().sqrt();
        if !n.is_finite() || n == 0.0 {
            return None;
        }
        norms[c] = n;
        for r in 0..3 {
            u[r][c] = m[r][c] / n;
        }
    }
    Some((u, norms))
}

fn orthonormal(u: &Mat3) -> bool {
    (0..3).all(|i| {
        (0..3).all(|j| {
            let dotp: f64 = (0..3).map(|k| u[i][k] * u[j][k]).sum();
            (dotp - if i == j { 1.0 } else { 0.0 }).abs() <= 1e-4
        })
    }) && det(u).abs() > 0.5
}

/// Picks the RAS matrix ITK would use; `Ok(None)` when both codes are unknown.
pub fn choose_matrix(h: &Header) -> Result<Option<[[f64; 4]; 3]>, String> {
    let (qcode, scode) = (h.qform_code, h.sform_code);
    if qcode <= 0 && scode <= 0 {
        return Ok(None);
    }
    let q = if qcode > 0 {
        qform_matrix(h)
    } else {
        std::array::from_fn(|r| {
            let mut row = [0.0; 4];
            row[r] = pix(h.pixdim[r + 1]);
            row
        })
    };
    let s = if scode > 0 { h.srow } else { [[0.0; 4]; 3] };
    let similar = (0..3).all(|r| (0..3).all(|c| (s[r][c] - q[r][c]).abs() <= 1e-5))
        && (0..3).map(|r| (s[r][3] - q[r][3]).abs()).sum::<f64>() <= 1e-7;
    let mut prefer_s = similar;
    if (!prefer_s || scode > 0)
        && let Some((su, snorm)) = unit_columns(&s).filter(|(u, _)| orthonormal(u))
    {
        if qcode <= 0 && scode > 0 || scode == SCANNER_ANAT {
            prefer_s = true;
        } else if qcode > 0 && scode > 0 {
            prefer_s = unit_columns(&q).is_some_and(|(qu, qnorm)| {
                (0..3).all(|r| {
                    (snorm[r] - qnorm[r]).abs() <= 1e-4
                        && (s[r][3] - q[r][3]).abs() <= 1e-4
                        && (0..3).all(|c| (su[r][c] - qu[r][c]).abs() <= 1e-4)
                })
            });
        }
    }
    if prefer_s {
        Ok(Some(s))
    } else if qcode > 0 {
        Ok(Some(q))
    } else {
        Err("sform is not orthonormal and there is no qform".into())
    }
}

/// LPS geometry of a header (see the module docs).
pub fn geometry(h: &Header) -> Result<Geometry, String> {
    let spacing = [pix(h.pixdim[1]), pix(h.pixdim[2]), pix(h.pixdim[3])];
    let Some(m) = choose_matrix(h)? else {
        return Ok(Geometry::with_spacing(spacing));
    };
    let (u, _) = unit_columns(&m).ok_or("degenerate orientation matrix")?;
    let flip = [-1.0, -1.0, 1.0];
    Ok(Geometry {
        spacing,
        origin: std::array::from_fn(|r| flip[r] * m[r][3]),
        direction: std::array::from_fn(|r| std::array::from_fn(|c| flip[r] * u[r][c])),
    })
}

/// Quaternion `(b, c, d)` and `qfac` of a rotation (nifti1_io's `nifti_mat44_to_quatern`).
pub fn quaternion(r: &Mat3) -> ([f64; 3], f64) {
    let mut r = *r;
    let qfac = if det(&r) < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
        -1.0
    } else {
        1.0
    };
    let (r11, r12, r13) = (r[0][0], r[0][1], r[0][2]);
    let (r21, r22, r23) = (r[1][0], r[1][1], r[1][2]);
    let (r31, r32, r33) = (r[2][0], r[2][1], r[2][2]);
    let (a, b, c, d);
    if r11 + r22 + r33 + 1.0 > 0.5 {
        let aa = 0.5 * (r11 + r22 + r33 + 1.0).sqrt();
        a = aa;
        b = 0.25 * (r32 - r23) / aa;
        c = 0.25 * (r13 - r31) / aa;
        d = 0.25 * (r21 - r12) / aa;
    } else {
        let xd = 1.0 + r11 - (r22 + r33);
        let yd = 1.0 + r22 - (r11 + r33);
        let zd = 1.0 + r33 - (r11 + r22);
        if xd > 1.0 {
            let bb = 0.5 * xd.sqrt();
            b = bb;
            c = 0.25 * (r12 + r21) / bb;
            d = 0.25 * (r13 + r31) / bb;
            a = 0.25 * (r32 - r23) / bb;
        } else if yd > 1.0 {
            let cc = 0.5 * yd.sqrt();
            c = cc;
            b = 0.25 * (r12 + r21) / cc;
            d = 0.25 * (r23 + r32) / cc;
            a = 0.25 * (r13 - r31) / cc;
        } else {
            let dd = 0.5 * zd.sqrt();
            d = dd;
            b = 0.25 * (r13 + r31) / dd;
            c = 0.25 * (r23 + r32) / dd;
            a = 0.25 * (r21 - r12) / dd;
        }
    }
    if a < 0.0 {
        ([-b, -c, -d], qfac)
    } else {
        ([b, c, d], qfac)
    }
}
