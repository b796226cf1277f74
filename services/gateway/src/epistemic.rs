//! Epistemic uncertainty of a segmentation model on an image, by test-time augmentation:
//! the model segments several plausible variants of the image (the image itself, its
//! left-right mirror, seeded Gaussian noise, two intensity gammas), each answer is mapped
//! back onto the image's grid, and the score is the mean binary vote entropy (bits) over
//! the voxels that any member calls foreground. A confident model agrees with itself under
//! such small changes (score near 0); an image it does not understand (another contrast,
//! heavy noise, an inverted head) splits its votes (score towards 1). Averaging over the
//! union, not the whole grid as MONAI Label's epistemic scoring does, keeps the score from
//! depending on the field of view. No member finding anything scores 1: the model sees no
//! structure at all, which for the models served here (every image holds a brain) is the
//! most informative image to label.
//!
//! Our TorchScript models hold no dropout, so MONAI Label's Monte-Carlo dropout has nothing
//! to sample: test-time augmentation is the uncertainty that every served model supports.

use aiaa_imaging::{Volume, VoxelType, Voxels};
use rand::{Rng, SeedableRng};

use crate::error::{GatewayError, Result};

/// The augmentations, in the order [`variant`] builds them; `simulation_size` takes the
/// first ones.
pub const MEMBERS: &[&str] = &["identity", "mirror", "noise", "gamma_0.75", "gamma_1.33"];

/// The relative noise level: sigma as a fraction of the 1st-99th percentile range.
const NOISE: f32 = 0.05;

/// The voxel axis closest to the patient's left-right direction (mirroring along it keeps
/// a head a plausible head).
pub fn left_right_axis(image: &Volume) -> usize {
    let d = image.geometry.direction;
    (0..3)
        .max_by(|&a, &b| d[0][a].abs().total_cmp(&d[0][b].abs()))
        .unwrap_or(0)
}

/// The 1st and 99th intensity percentiles (over a strided sample of at most ~1M voxels).
fn robust_range(values: &[f32]) -> (f32, f32) {
    let stride = (values.len() / 1_000_000).max(1);
    let mut sample: Vec<f32> = values
        .iter()
        .step_by(stride)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if sample.is_empty() {
        return (0.0, 1.0);
    }
    sample.sort_by(f32::total_cmp);
    let at = |q: f64| sample[((sample.len() - 1) as f64 * q).round() as usize];
    let (lo, hi) = (at(0.01), at(0.99));
    if hi > lo { (lo, hi) } else { (lo, lo + 1.0) }
}

/// Mirrors a scalar field along voxel axis `axis` (its own inverse).
pub fn mirror<T: Copy>(values: &[T], dims: [usize; 3], axis: usize) -> Vec<T> {
    let [nx, ny, nz] = dims;
    let mut out = Vec::with_capacity(values.len());
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                let (mut a, mut b, mut c) = (i, j, k);
                match axis {
                    0 => a = nx - 1 - i,
                    1 => b = ny - 1 - j,
                    _ => c = nz - 1 - k,
                }
                out.push(values[a + nx * (b + ny * c)]);
            }
        }
    }
    out
}

/// Member `index` of [`MEMBERS`] built from `image` (scalar), as float32 voxels on the
/// image's grid; `seed` makes the noise reproducible.
pub fn variant(image: &Volume, index: usize, seed: u64) -> Result<Volume> {
    if image.channels != 1 {
        return Err(GatewayError::BadRequest(format!(
            "epistemic scoring needs a single-channel image, not {} channels",
            image.channels
        )));
    }
    let values = image.voxels.as_f32();
    let (lo, hi) = robust_range(&values);
    let out: Vec<f32> = match MEMBERS.get(index).copied() {
        Some("identity") => values.into_owned(),
        Some("mirror") => mirror(&values, image.dims, left_right_axis(image)),
        Some("noise") => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let sigma = NOISE * (hi - lo);
            values
                .iter()
                .map(|v| {
                    // Box-Muller: one standard normal from two uniforms.
                    let (u1, u2): (f32, f32) = (rng.random::<f32>().max(f32::MIN_POSITIVE), rng.random());
                    v + sigma * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                })
                .collect()
        }
        Some(name) if name.starts_with("gamma_") => {
            let gamma: f32 = name["gamma_".len()..].parse().unwrap_or(1.0);
            values
                .iter()
                .map(|v| lo + (hi - lo) * ((v - lo) / (hi - lo)).clamp(0.0, 1.0).powf(gamma))
                .collect()
        }
        _ => {
            return Err(GatewayError::BadRequest(format!(
                "simulation_size may be at most {}",
                MEMBERS.len()
            )));
        }
    };
    Volume::new(image.dims, 1, image.geometry, Voxels::F32(out))
        .map_err(|e| GatewayError::Internal(format!("building an augmented image: {e}")))
}

/// A member's answer (a mask on the image's grid) as foreground flags on the image's own
/// orientation: the mirror member's answer is mirrored back.
pub fn foreground(image: &Volume, index: usize, answer: &Volume) -> Result<Vec<bool>> {
    if answer.dims != image.dims {
        return Err(GatewayError::Internal(format!(
            "the model answered on a {:?} grid for a {:?} image",
            answer.dims, image.dims
        )));
    }
    let mask: Vec<bool> = match &answer.voxels {
        Voxels::U8(v) => v[..image.voxel_count()].iter().map(|&x| x > 0).collect(),
        other => other
            .cast(VoxelType::F32)
            .as_f32()
            .iter()
            .take(image.voxel_count())
            .map(|&x| x > 0.0)
            .collect(),
    };
    Ok(if MEMBERS.get(index) == Some(&"mirror") {
        mirror(&mask, image.dims, left_right_axis(image))
    } else {
        mask
    })
}

/// The mean binary vote entropy (bits) over the voxels some member calls foreground; 1 when
/// none does. `masks` hold one flag per voxel each, at least two of them.
pub fn vote_entropy(masks: &[Vec<bool>]) -> f64 {
    let n = masks.len();
    let voxels = masks.first().map_or(0, Vec::len);
    let (mut union, mut total) = (0u64, 0.0f64);
    // The entropy of each possible vote count, computed once.
    let entropy: Vec<f64> = (0..=n)
        .map(|votes| {
            let p = votes as f64 / n as f64;
            if votes == 0 || votes == n {
                0.0
            } else {
                -(p * p.log2() + (1.0 - p) * (1.0 - p).log2())
            }
        })
        .collect();
    for i in 0..voxels {
        let votes = masks.iter().filter(|m| m[i]).count();
        if votes > 0 {
            union += 1;
            total += entropy[votes];
        }
    }
    if union == 0 { 1.0 } else { total / union as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_imaging::Geometry;

    fn image(dims: [usize; 3]) -> Volume {
        let n = dims.iter().product();
        let values = (0..n).map(|i| (i % 97) as f32).collect();
        Volume::new(dims, 1, Geometry::default(), Voxels::F32(values)).unwrap()
    }

    #[test]
    fn mirroring_twice_is_the_identity_and_moves_voxels_along_one_axis() {
        let dims = [3, 4, 5];
        let values: Vec<u32> = (0..60).collect();
        for axis in 0..3 {
            let once = mirror(&values, dims, axis);
            assert_ne!(once, values);
            assert_eq!(mirror(&once, dims, axis), values);
        }
        // Voxel (0, 1, 2) lands on (2, 1, 2) along i.
        assert_eq!(mirror(&values, dims, 0)[2 + 3 * (1 + 4 * 2)], 3 * (1 + 4 * 2));
    }

    #[test]
    fn the_left_right_axis_follows_the_direction_cosines() {
        let mut v = image([2, 2, 2]);
        assert_eq!(left_right_axis(&v), 0);
        // Axis k points along patient x.
        v.geometry.direction = [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];
        assert_eq!(left_right_axis(&v), 2);
    }

    #[test]
    fn a_mirrored_answer_is_mirrored_back_onto_the_image() {
        let img = image([4, 3, 2]);
        let mut answer = vec![0u8; 24];
        answer[3] = 1; // voxel (3, 0, 0) of the mirrored image is (0, 0, 0) of the image.
        let answer = Volume::new([4, 3, 2], 1, Geometry::default(), Voxels::U8(answer)).unwrap();
        let back = foreground(&img, 1, &answer).unwrap();
        assert!(back[0] && back.iter().filter(|&&b| b).count() == 1);
        let wrong = Volume::new([4, 3, 1], 1, Geometry::default(), Voxels::U8(vec![0; 12])).unwrap();
        assert!(foreground(&img, 1, &wrong).is_err());
    }

    #[test]
    fn the_variants_are_seeded_and_keep_the_grid() {
        let img = image([8, 8, 8]);
        for index in 0..MEMBERS.len() {
            let v = variant(&img, index, 7).unwrap();
            assert_eq!((v.dims, v.geometry), (img.dims, img.geometry));
        }
        assert_eq!(variant(&img, 2, 7).unwrap(), variant(&img, 2, 7).unwrap());
        assert_ne!(variant(&img, 2, 7).unwrap(), variant(&img, 2, 8).unwrap());
        assert_eq!(variant(&img, 0, 7).unwrap().voxels.as_f32(), img.voxels.as_f32());
        assert!(variant(&img, MEMBERS.len(), 7).is_err());
    }

    #[test]
    fn vote_entropy_is_zero_for_agreement_one_for_an_even_split_or_nothing_found() {
        let a = vec![true, true, false, false];
        assert_eq!(vote_entropy(&[a.clone(), a.clone()]), 0.0);
        let b = vec![false, false, true, true];
        assert!((vote_entropy(&[a.clone(), b]) - 1.0).abs() < 1e-12);
        assert_eq!(vote_entropy(&[vec![false; 4], vec![false; 4]]), 1.0);
        // One voxel of two split 1:2, the other agreed: (0.918 + 0) / 2.
        let c = vec![vec![true, true], vec![true, false], vec![true, false]];
        assert!((vote_entropy(&c) - 0.918_295_834 / 2.0).abs() < 1e-6);
    }
}
