//! Simulated user clicks for annotation (DEXTR 3D) models: the six extreme points of the
//! label, as a user would click them, optionally perturbed.
//!
//! * **Points**: `aiaa_transforms::extreme::extreme_points` of the label's foreground
//!   (`> 0`): `[min i, max i, min j, max j, min k, max k]`, ties broken by the middle voxel
//!   in memory order (the same rule `transforms.AddExtremePointsChannel` uses in training).
//! * **Perturbation** (`--pert P` voxels, `--seed S`): each coordinate of each point moves
//!   by an integer drawn uniformly in `[-P, P]` (`P` rounded down), then is clamped into
//!   the image: a click is a voxel, so the points stay voxel indices, exactly what a client
//!   would send to `/v1/dextr3d`. The draws of case `n` of the datalist come from the
//!   generator `aiaa_transforms::rng::sample_rng(S, 0, n)`, so they depend only on the seed
//!   and the case's position, not on threads or timing. `P = 0` gives the exact points.
//! * The label must lie on the image's grid (its voxel indices are the image's); an empty
//!   label has no extreme points and fails the case.

use aiaa_imaging::Volume;
use aiaa_transforms::rng::{sample_rng, uniform_int};

/// The clicks for case `index`: the label's extreme points moved by up to `pert` voxels per
/// coordinate (see the module docs). `None` when the label has no foreground.
pub fn simulate(label: &Volume, pert: f64, seed: u64, index: usize) -> Option<Vec<[usize; 3]>> {
    let points = aiaa_transforms::extreme::extreme_points(label)?;
    let p = pert.max(0.0).floor() as i64;
    let mut rng = sample_rng(seed, 0, index as u64);
    Some(
        points
            .iter()
            .map(|pt| {
                std::array::from_fn(|a| {
                    let d = uniform_int(&mut rng, -p, p);
                    (pt[a] as i64 + d).clamp(0, label.dims[a] as i64 - 1) as usize
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_imaging::{Geometry, Voxels};

    fn cube() -> Volume {
        // A 4x3x2 box at i 3..7, j 2..5, k 5..7 in a 10x8x12 volume.
        let dims = [10, 8, 12];
        let mut v = vec![0u8; 10 * 8 * 12];
        for k in 5..7 {
            for j in 2..5 {
                for i in 3..7 {
                    v[i + 10 * (j + 8 * k)] = 1;
                }
            }
        }
        Volume::scalar(dims, Geometry::default(), Voxels::U8(v)).unwrap()
    }

    #[test]
    fn exact_points_without_perturbation() {
        let pts = simulate(&cube(), 0.0, 1, 0).unwrap();
        assert_eq!(pts.len(), 6);
        assert_eq!(pts[0][0], 3);
        assert_eq!(pts[1][0], 6);
        assert_eq!(pts[2][1], 2);
        assert_eq!(pts[3][1], 4);
        assert_eq!(pts[4][2], 5);
        assert_eq!(pts[5][2], 6);
        let empty = Volume::scalar([2, 2, 2], Geometry::default(), Voxels::U8(vec![0; 8])).unwrap();
        assert!(simulate(&empty, 3.0, 1, 0).is_none());
    }

    #[test]
    fn perturbation_is_bounded_seeded_and_per_case() {
        let exact = simulate(&cube(), 0.0, 1, 0).unwrap();
        let a = simulate(&cube(), 2.0, 7, 3).unwrap();
        assert_eq!(
            a,
            simulate(&cube(), 2.0, 7, 3).unwrap(),
            "same seed and case, same clicks"
        );
        assert_ne!(
            a,
            simulate(&cube(), 2.0, 8, 3).unwrap(),
            "another seed moves them"
        );
        assert_ne!(a, simulate(&cube(), 2.0, 7, 4).unwrap(), "another case too");
        assert_ne!(a, exact);
        for (p, e) in a.iter().zip(&exact) {
            for ax in 0..3 {
                assert!((p[ax] as i64 - e[ax] as i64).abs() <= 2, "{p:?} vs {e:?}");
            }
        }
        // Clamped into the image.
        let far = simulate(&cube(), 50.0, 7, 3).unwrap();
        assert!(far.iter().all(|p| p[0] < 10 && p[1] < 8 && p[2] < 12));
    }
}
