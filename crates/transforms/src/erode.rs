//! `transforms.ErodeLabel` (ours): moves a label's surface inward by a distance in mm, so a
//! model can be trained to a tighter annotation convention than its labels were drawn in.
//! Brain masks differ this way: MNI152's mask takes in the CSF around the brain, while masks
//! drawn along the brain's surface (the ICBM152 2009c mask) lie about 2 mm inside it
//! (docs/interactive.md measures it). The distance is Euclidean, in physical units (the
//! image's spacing), exact (`aiaa_metrics::edt`), so the same millimetres hold on any grid:
//! put it before any resampling.

use serde::Deserialize;

use aiaa_imaging::voxels::Element;
use aiaa_imaging::with_voxels;

use crate::args::{ArgResult, Keys, check_positive};
use crate::data::Data;
use crate::registry::FromArgs;
use crate::{Result, SampleRng, Transform, TransformError};

/// Arguments of [`ErodeLabel`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErodeArgs {
    /// Keys to apply to.
    pub fields: Keys,
    /// How far (mm) the surface moves inward; greater than 0.
    pub distance_mm: f64,
}

/// `transforms.ErodeLabel`: in each channel, a foreground voxel (`> 0`) whose distance to
/// the nearest background voxel (any value not `> 0`) is at most `distance_mm` becomes 0;
/// the others keep their values and the element type is kept
/// (`scipy.ndimage.distance_transform_edt(mask, sampling=spacing) > distance_mm` on a 0/1
/// mask). Distances run between voxel centres; the volume's border is not a surface (a mask
/// that fills the whole volume stays whole).
#[derive(Debug)]
pub struct ErodeLabel {
    fields: Keys,
    distance_mm: f64,
}

impl FromArgs for ErodeLabel {
    type Args = ErodeArgs;
    fn from_args(a: ErodeArgs) -> ArgResult<Self> {
        Ok(ErodeLabel {
            fields: a.fields,
            distance_mm: check_positive("distance_mm", a.distance_mm)?,
        })
    }
}

/// Erodes one channel by `distance_mm` (see [`ErodeLabel`]); returns how many voxels it
/// took away.
pub fn erode<T: Element>(
    v: &mut [T],
    dims: [usize; 3],
    spacing: [f64; 3],
    distance_mm: f64,
) -> Result<usize> {
    let background: Vec<bool> = v.iter().map(|x| x.to_f64() <= 0.0).collect();
    if !background.contains(&true) {
        return Ok(0);
    }
    let squared = aiaa_metrics::edt::squared_distance_to(&background, dims, spacing)
        .map_err(|e| TransformError::invalid(format!("ErodeLabel: {e}")))?;
    let (zero, limit) = (T::from_f64(0.0), distance_mm * distance_mm);
    let mut taken = 0;
    for ((x, bg), d) in v.iter_mut().zip(&background).zip(&squared) {
        if !bg && *d <= limit {
            *x = zero;
            taken += 1;
        }
    }
    Ok(taken)
}

impl Transform for ErodeLabel {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.fields.iter() {
            let vol = &mut d.image_mut(k)?.vol;
            let (dims, n, spacing) = (vol.dims, vol.voxel_count(), vol.geometry.spacing);
            if n == 0 {
                continue;
            }
            with_voxels!(&mut vol.voxels, v => {
                for ch in v.chunks_exact_mut(n) {
                    erode(ch, dims, spacing, self.distance_mm)?;
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ball of `radius` mm centred in a grid of `dims` voxels of `spacing` mm.
    fn ball(dims: [usize; 3], spacing: [f64; 3], radius: f64) -> Vec<u8> {
        let centre = [0, 1, 2].map(|a| (dims[a] as f64 - 1.0) / 2.0 * spacing[a]);
        let mut v = Vec::with_capacity(dims.iter().product());
        for k in 0..dims[2] {
            for j in 0..dims[1] {
                for i in 0..dims[0] {
                    let p = [i, j, k].map(|x| x as f64);
                    let r2: f64 = (0..3).map(|a| (p[a] * spacing[a] - centre[a]).powi(2)).sum();
                    v.push(u8::from(r2.sqrt() <= radius));
                }
            }
        }
        v
    }

    #[test]
    fn a_ball_shrinks_by_the_distance_on_an_anisotropic_grid() {
        let (dims, spacing) = ([41, 41, 21], [0.5, 0.5, 1.0]);
        let mut v = ball(dims, spacing, 8.0);
        let before = v.iter().filter(|x| **x > 0).count();
        let taken = erode(&mut v, dims, spacing, 3.0).unwrap();
        // What is left is the ball of about 8 - 3 mm, up to the grid's steps.
        let expected = ball(dims, spacing, 5.0);
        let differ = v.iter().zip(&expected).filter(|(a, b)| a != b).count();
        let kept = v.iter().filter(|x| **x > 0).count();
        assert_eq!(before - taken, kept);
        assert!(differ * 20 < kept, "{differ} voxels differ of {kept}");
    }

    #[test]
    fn values_and_type_are_kept_and_a_full_volume_stays_whole() {
        let dims = [5, 5, 5];
        let mut full = vec![2.0f32; 125];
        assert_eq!(erode(&mut full, dims, [1.0; 3], 1.0).unwrap(), 0);
        // One background voxel in the middle: its face neighbours (1 mm) go, the corner
        // ones (1.73 mm) stay.
        full[62] = 0.0;
        assert_eq!(erode(&mut full, dims, [1.0; 3], 1.0).unwrap(), 6);
        assert_eq!(full[61], 0.0);
        assert_eq!(full[62 + 25 + 5 + 1], 2.0);
    }

    #[test]
    fn a_distance_that_is_not_positive_is_refused_by_name() {
        for d in [0.0, -1.0, f64::NAN] {
            let e = ErodeLabel::from_args(ErodeArgs {
                fields: Keys(vec!["label".into()]),
                distance_mm: d,
            })
            .unwrap_err();
            assert!(format!("{e:?}").contains("distance_mm"), "{e:?}");
        }
    }
}
