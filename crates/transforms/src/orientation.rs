//! `transforms.Orientation` (ours, not the seed's; MONAI's `Orientationd`, nibabel's
//! `as_closest_canonical` for `"RAS"`): reorients images so that voxel axis `a` points
//! toward the anatomical direction `axcodes[a]`.
//!
//! * **Codes.** Three letters, one of each pair `L`/`R`, `P`/`A`, `I`/`S` (any order, any
//!   case: 48 codes), naming the direction each voxel axis *increases toward*, as nibabel's
//!   `aff2axcodes`: in an `"RAS"` image `i` increases toward the patient's Right, `j`
//!   toward Anterior, `k` toward Superior. Our world is LPS (x toward Left, y toward
//!   Posterior), so an `"RAS"` image has direction columns close to `(-1, 0, 0)`,
//!   `(0, -1, 0)`, `(0, 0, 1)`, and an identity direction is `"LPS"`.
//! * **Closest axes** (nibabel's `io_orientation`): the direction matrix (columns
//!   normalised) is replaced by its closest orthogonal matrix (polar decomposition); then,
//!   for voxel axes `i`, `j`, `k` in turn, the world axis with the largest absolute cosine
//!   not taken by an earlier axis is its axis, the cosine's sign its direction.
//! * **Reorienting**: a transposition of the voxel axes ([`spatial::permute`]) then flips
//!   ([`spatial::flip`]), each recorded ([`crate::record`]; nothing when already
//!   oriented), so [`crate::invert`] undoes it voxel-exactly. The geometry follows: every
//!   voxel keeps its physical position; an oblique image stays oblique (its direction
//!   columns are only permuted and negated), as in nibabel and MONAI.
//! * Any image kind, element type (kept) and channel count; each key by its own geometry.

use serde::Deserialize;

use aiaa_imaging::geometry::{Mat3, inverse};

use crate::args::{ArgError, ArgResult, Keys};
use crate::data::Data;
use crate::registry::FromArgs;
use crate::{Result, SampleRng, Transform, TransformError, spatial};

/// For each LPS world axis: the letter of its positive direction, then of its negative one.
const LETTERS: [[char; 2]; 3] = [['L', 'R'], ['P', 'A'], ['S', 'I']];

/// Where one voxel axis points: an LPS world axis (0 x, 1 y, 2 z) and whether it points
/// toward the negative end (R, A or I).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AxisCode {
    /// World axis.
    pub world: usize,
    /// Toward the negative LPS direction.
    pub negative: bool,
}

impl AxisCode {
    /// The anatomical letter (`L`, `R`, `P`, `A`, `S`, `I`).
    pub fn letter(self) -> char {
        LETTERS[self.world][usize::from(self.negative)]
    }
}

/// Parses an orientation code like `"RAS"` or `"lps"`: three letters naming three
/// different world axes.
pub fn parse_axcodes(code: &str) -> std::result::Result<[AxisCode; 3], String> {
    let letters: Vec<char> = code.chars().map(|c| c.to_ascii_uppercase()).collect();
    if letters.len() != 3 {
        return Err(format!("{code:?} must be three letters (e.g. \"RAS\")"));
    }
    let mut out = [AxisCode {
        world: 0,
        negative: false,
    }; 3];
    for (a, &c) in letters.iter().enumerate() {
        let (world, side) = LETTERS
            .iter()
            .enumerate()
            .find_map(|(w, pair)| pair.iter().position(|&l| l == c).map(|s| (w, s)))
            .ok_or_else(|| format!("{code:?}: {c:?} is not one of L, R, P, A, S, I"))?;
        if out[..a].iter().any(|o| o.world == world) {
            return Err(format!(
                "{code:?} names the {}/{} axis twice",
                LETTERS[world][0], LETTERS[world][1]
            ));
        }
        out[a] = AxisCode {
            world,
            negative: side == 1,
        };
    }
    Ok(out)
}

/// The orthogonal polar factor of a non-singular `m` (the orthogonal matrix closest to it,
/// `U Vᵀ` of its SVD) by Newton's iteration `X ← (X + X⁻ᵀ) / 2`.
fn polar(m: &Mat3) -> Option<Mat3> {
    let mut x = *m;
    for _ in 0..100 {
        let inv = inverse(&x)?;
        let next: Mat3 = std::array::from_fn(|r| std::array::from_fn(|c| 0.5 * (x[r][c] + inv[c][r])));
        let change = (0..3)
            .flat_map(|r| (0..3).map(move |c| (r, c)))
            .map(|(r, c)| (next[r][c] - x[r][c]).abs())
            .fold(0.0, f64::max);
        x = next;
        if change < 1e-15 {
            break;
        }
    }
    Some(x)
}

/// Where each voxel axis of a grid with this `direction` (LPS, columns = axes) points, by
/// nibabel's `io_orientation` (see the module docs). An error for a degenerate matrix.
pub fn axis_codes(direction: &Mat3) -> Result<[AxisCode; 3]> {
    let degenerate = || TransformError::invalid(format!("direction {direction:?} is degenerate"));
    let mut unit = *direction;
    for c in 0..3 {
        let n = (0..3).map(|r| direction[r][c].powi(2)).sum::<f64>().sqrt();
        if !(n.is_finite() && n > 0.0) {
            return Err(degenerate());
        }
        for row in unit.iter_mut() {
            row[c] /= n;
        }
    }
    let mut r = polar(&unit).ok_or_else(degenerate)?;
    let mut out = [AxisCode {
        world: 0,
        negative: false,
    }; 3];
    let mut taken = [false; 3];
    for (a, code) in out.iter_mut().enumerate() {
        // First largest |cosine| (numpy argmax); rows of taken axes are zeroed.
        let mut best = (0..3).find(|&w| !taken[w]).ok_or_else(degenerate)?;
        for w in 0..3 {
            if r[w][a].abs() > r[best][a].abs() {
                best = w;
            }
        }
        *code = AxisCode {
            world: best,
            negative: r[best][a] < 0.0,
        };
        taken[best] = true;
        r[best] = [0.0; 3];
    }
    Ok(out)
}

/// The axis order and flips taking a grid with `direction` to the orientation `target`:
/// output axis `b` is input axis `order[b]`, reversed when `flip[b]` (apply
/// [`spatial::permute`] then [`spatial::flip`]).
pub fn reorientation(direction: &Mat3, target: &[AxisCode; 3]) -> Result<([usize; 3], [bool; 3])> {
    let have = axis_codes(direction)?;
    let mut order = [0; 3];
    let mut flip = [false; 3];
    for (b, t) in target.iter().enumerate() {
        let a = have
            .iter()
            .position(|h| h.world == t.world)
            .ok_or_else(|| TransformError::invalid("orientation codes must name three different axes"))?;
        order[b] = a;
        flip[b] = have[a].negative != t.negative;
    }
    Ok((order, flip))
}

/// Arguments of [`Orientation`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrientationArgs {
    /// Keys to apply to.
    pub fields: Keys,
    /// Target orientation code (default `"RAS"`).
    #[serde(default = "ras")]
    pub axcodes: String,
}

fn ras() -> String {
    "RAS".into()
}

/// `transforms.Orientation` (see the module docs).
#[derive(Debug)]
pub struct Orientation {
    fields: Keys,
    target: [AxisCode; 3],
}

impl FromArgs for Orientation {
    type Args = OrientationArgs;
    fn from_args(a: OrientationArgs) -> ArgResult<Self> {
        let target = parse_axcodes(&a.axcodes).map_err(|e| ArgError::new("axcodes", e))?;
        Ok(Orientation {
            fields: a.fields,
            target,
        })
    }
}

impl Transform for Orientation {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.fields.iter() {
            let im = d.image_mut(k)?;
            let (order, flip) = reorientation(&im.vol.geometry.direction, &self.target)?;
            spatial::image_permute(im, order)?;
            spatial::image_flip(im, flip);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_and_print() {
        let c = parse_axcodes("ras").unwrap();
        assert_eq!(c.map(AxisCode::letter), ['R', 'A', 'S']);
        assert_eq!(
            parse_axcodes("PLI").unwrap().map(AxisCode::letter),
            ['P', 'L', 'I']
        );
        for bad in ["RA", "RASS", "RAX", "RLS", "SIA ", "AAS"] {
            assert!(parse_axcodes(bad).is_err(), "{bad}");
        }
        // All 48 codes.
        let mut n = 0;
        for a in "LRPAIS".chars() {
            for b in "LRPAIS".chars() {
                for c in "LRPAIS".chars() {
                    n += usize::from(parse_axcodes(&format!("{a}{b}{c}")).is_ok());
                }
            }
        }
        assert_eq!(n, 48);
    }

    #[test]
    fn identity_direction_is_lps() {
        let id = aiaa_imaging::geometry::IDENTITY;
        assert_eq!(axis_codes(&id).unwrap().map(AxisCode::letter), ['L', 'P', 'S']);
        let ras = parse_axcodes("RAS").unwrap();
        assert_eq!(
            reorientation(&id, &ras).unwrap(),
            ([0, 1, 2], [true, true, false])
        );
        let pli = parse_axcodes("PLI").unwrap();
        assert_eq!(
            reorientation(&id, &pli).unwrap(),
            ([1, 0, 2], [false, false, true])
        );
    }

    #[test]
    fn polar_factor_of_a_sheared_matrix_is_orthogonal() {
        let m = [[1.0, 0.3, 0.0], [0.1, 1.0, 0.2], [0.0, -0.1, 1.0]];
        let q = polar(&m).unwrap();
        for a in 0..3 {
            for b in 0..3 {
                let dot: f64 = (0..3).map(|r| q[r][a] * q[r][b]).sum();
                assert!((dot - f64::from(u8::from(a == b))).abs() < 1e-12);
            }
        }
    }
}
