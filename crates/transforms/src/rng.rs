//! Seeded randomness. Every pipeline has a seed; the generator a transform gets for a sample
//! depends only on (pipeline seed, the transform's position, the sample index), so output is
//! identical whatever the number of worker threads or the order samples are processed in,
//! and adding a transform does not change the draws of the others.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator handed to [`crate::Transform::apply`].
pub type SampleRng = ChaCha8Rng;

/// SplitMix64 finaliser: decorrelates nearby seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The generator for transform `position` of a pipeline seeded `seed`, on sample `index`:
/// the key comes from (seed, position), the ChaCha stream is the sample index.
pub fn sample_rng(seed: u64, position: usize, index: u64) -> SampleRng {
    let mut r = ChaCha8Rng::seed_from_u64(mix(seed ^ mix(position as u64 + 1)));
    r.set_stream(index);
    r
}

/// A uniform draw in `[lo, hi]` (returns `lo` when the range is empty).
pub fn uniform(rng: &mut SampleRng, lo: f64, hi: f64) -> f64 {
    if hi > lo {
        lo + (hi - lo) * rng.random::<f64>()
    } else {
        lo
    }
}

/// A uniform integer in `[lo, hi]` (inclusive; `lo` when `hi < lo`).
pub fn uniform_int(rng: &mut SampleRng, lo: i64, hi: i64) -> i64 {
    if hi > lo { rng.random_range(lo..=hi) } else { lo }
}

/// A Bernoulli draw with probability `p` (clamped to `[0, 1]`).
pub fn chance(rng: &mut SampleRng, p: f64) -> bool {
    rng.random::<f64>() < p.clamp(0.0, 1.0)
}

/// A standard normal draw (Box-Muller).
pub fn normal(rng: &mut SampleRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_inputs_same_stream_and_streams_differ() {
        let a: Vec<u64> = (0..4).map(|_| sample_rng(7, 2, 5).random()).collect();
        let b: Vec<u64> = (0..4).map(|_| sample_rng(7, 2, 5).random()).collect();
        assert_eq!(a, b);
        let mut x = sample_rng(7, 2, 5);
        let mut y = sample_rng(7, 2, 6);
        let mut z = sample_rng(7, 3, 5);
        let v: u64 = x.random();
        assert_ne!(v, y.random::<u64>());
        assert_ne!(v, z.random::<u64>());
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut r = sample_rng(1, 0, 0);
        let xs: Vec<f64> = (0..200_000).map(|_| normal(&mut r)).collect();
        let m = xs.iter().sum::<f64>() / xs.len() as f64;
        let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / xs.len() as f64;
        assert!(m.abs() < 0.01 && (v - 1.0).abs() < 0.01, "{m} {v}");
    }
}
