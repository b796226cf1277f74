//! Which voxels belong to which class, and one pass of per-class counts and bounding boxes.
//!
//! * [`Classes::Binary`]: a mask; every non-zero voxel is foreground, reported as class 1.
//! * [`Classes::Labels`]: an integer label volume; class `c` is the set of voxels whose value
//!   equals `c` exactly (values of other labels, and 0, are background for `c`). Classes
//!   must be positive (0 is the background label).
//!
//! Any element type is accepted (label volumes are often written as `float32`); a NaN voxel
//! (both modes) or a non-integer value (label mode) is an error rather than silently
//! background: it usually means a probability map was passed where labels were expected.
//!
//! Internally each volume becomes a *slot map* (`u16` per voxel: 0 = no class, `s` = the
//! `s`-th class of the sorted class list), built in parallel.

use std::collections::BTreeSet;

use aiaa_imaging::voxels::Element;
use aiaa_imaging::{Volume, with_voxels};
use rayon::prelude::*;

use crate::{MetricsError, Result};

/// The classes to evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classes {
    /// Binary masks: non-zero voxels are foreground (reported as class 1).
    Binary,
    /// Label volumes: these label values (positive, any order; duplicates ignored).
    Labels(Vec<u32>),
}

impl Classes {
    /// Classes `1..=n` (a model with `n` foreground output classes).
    pub fn first_n(n: u32) -> Classes {
        Classes::Labels((1..=n).collect())
    }

    /// Every positive label value present in the prediction or the reference (sorted).
    /// Fails on NaN or non-integer voxel values, like evaluation itself.
    pub fn present_in(prediction: &Volume, reference: &Volume) -> Result<Classes> {
        let mut all = labels_of(prediction, "prediction")?;
        all.extend(labels_of(reference, "reference")?);
        Ok(Classes::Labels(all.into_iter().collect()))
    }

    /// The class ids reported, in order (`[1]` for binary masks).
    pub fn ids(&self) -> Vec<u32> {
        match self {
            Classes::Binary => vec![1],
            Classes::Labels(l) => {
                let mut l = l.clone();
                l.sort_unstable();
                l.dedup();
                l
            }
        }
    }

    /// Checks the class list (positive labels, at most `u16::MAX` classes).
    pub(crate) fn validate(&self) -> Result<()> {
        if let Classes::Labels(l) = self {
            if l.contains(&0) {
                return Err(MetricsError::InvalidArgument(
                    "class 0 is the background label and cannot be evaluated".into(),
                ));
            }
            if self.ids().len() > u16::MAX as usize {
                return Err(MetricsError::InvalidArgument(format!(
                    "{} classes; at most {} can be evaluated at once",
                    self.ids().len(),
                    u16::MAX
                )));
            }
        }
        Ok(())
    }
}

/// The positive integer labels of one volume.
fn labels_of(v: &Volume, side: &'static str) -> Result<BTreeSet<u32>> {
    with_voxels!(&v.voxels, x => x
    .par_chunks(1 << 16)
    .map(|chunk| {
        let mut set = BTreeSet::new();
        for &e in chunk {
            let f = e.to_f64();
            if f != 0.0 {
                check_label(f, side)?;
                if f > 0.0 && f <= u32::MAX as f64 {
                    set.insert(f as u32);
                }
            }
        }
        Ok(set)
    })
    .try_reduce(BTreeSet::new, |mut a, b| {
        a.extend(b);
        Ok(a)
    }))
}

fn check_label(f: f64, side: &'static str) -> Result<()> {
    if f.is_nan() || f.fract() != 0.0 {
        return Err(MetricsError::InvalidLabel { side, value: f });
    }
    Ok(())
}

/// The slot map of `vol` for `classes` (see the module docs); `ids` = `classes.ids()`.
pub(crate) fn slot_map(vol: &Volume, classes: &Classes, ids: &[u32], side: &'static str) -> Result<Vec<u16>> {
    let n = vol.voxel_count();
    let mut out = vec![0u16; n];
    let binary = matches!(classes, Classes::Binary);
    with_voxels!(&vol.voxels, x => out
    .par_chunks_mut(1 << 16)
    .zip(x[..n].par_chunks(1 << 16))
    .try_for_each(|(o, src)| {
        for (slot, &e) in o.iter_mut().zip(src) {
            let f = e.to_f64();
            if f == 0.0 {
                continue;
            }
            if binary {
                if f.is_nan() {
                    return Err(MetricsError::InvalidLabel { side, value: f });
                }
                *slot = 1;
                continue;
            }
            check_label(f, side)?;
            if f > 0.0
                && f <= u32::MAX as f64
                && let Ok(s) = ids.binary_search(&(f as u32))
            {
                *slot = (s + 1) as u16;
            }
        }
        Ok(())
    }))?;
    Ok(out)
}

/// Voxel counts and the bounding box of one class (slot) on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct SlotStats {
    /// Voxels of the class in the prediction.
    pub prediction: u64,
    /// Voxels of the class in the reference.
    pub reference: u64,
    /// Voxels of the class in both.
    pub intersection: u64,
    /// Inclusive bounding box `(lo, hi)` of the union of both sides, if not empty.
    pub bbox: Option<([usize; 3], [usize; 3])>,
}

impl SlotStats {
    fn add_point(&mut self, p: [usize; 3]) {
        self.bbox = Some(match self.bbox {
            None => (p, p),
            Some((lo, hi)) => (
                std::array::from_fn(|a| lo[a].min(p[a])),
                std::array::from_fn(|a| hi[a].max(p[a])),
            ),
        });
    }

    fn merge(&mut self, o: &SlotStats) {
        self.prediction += o.prediction;
        self.reference += o.reference;
        self.intersection += o.intersection;
        if let Some((lo, hi)) = o.bbox {
            self.add_point(lo);
            self.add_point(hi);
        }
    }
}

/// Per-slot statistics of two slot maps on the same grid (index 0 unused), in one parallel
/// pass over `k`-slices.
pub(crate) fn slot_stats(pred: &[u16], reference: &[u16], dims: [usize; 3], slots: usize) -> Vec<SlotStats> {
    let [nx, ny, _] = dims;
    let empty = || vec![SlotStats::default(); slots + 1];
    // `fold`: one accumulator per rayon job, not per slice (many classes stay cheap).
    pred.par_chunks(nx * ny)
        .zip(reference.par_chunks(nx * ny))
        .enumerate()
        .fold(empty, |mut st, (k, (ps, gs))| {
            for j in 0..ny {
                let (pr, gr) = (&ps[nx * j..][..nx], &gs[nx * j..][..nx]);
                for (i, (&p, &g)) in pr.iter().zip(gr).enumerate() {
                    if p == 0 && g == 0 {
                        continue;
                    }
                    if p != 0 {
                        let s = &mut st[p as usize];
                        s.prediction += 1;
                        s.add_point([i, j, k]);
                        if p == g {
                            s.intersection += 1;
                        }
                    }
                    if g != 0 {
                        let s = &mut st[g as usize];
                        s.reference += 1;
                        if g != p {
                            s.add_point([i, j, k]);
                        }
                    }
                }
            }
            st
        })
        .reduce(empty, |mut a, b| {
            for (x, y) in a.iter_mut().zip(&b) {
                x.merge(y);
            }
            a
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_imaging::{Geometry, Voxels};

    #[test]
    fn slot_maps_and_errors() {
        let v = Volume::scalar(
            [4, 1, 1],
            Geometry::default(),
            Voxels::F32(vec![0.0, 2.0, 7.0, 1.0]),
        )
        .unwrap();
        let c = Classes::Labels(vec![2, 1]);
        assert_eq!(
            slot_map(&v, &c, &c.ids(), "prediction").unwrap(),
            vec![0, 2, 0, 1]
        );
        assert_eq!(
            slot_map(&v, &Classes::Binary, &[1], "prediction").unwrap(),
            vec![0, 1, 1, 1]
        );
        assert_eq!(
            Classes::present_in(&v, &v).unwrap(),
            Classes::Labels(vec![1, 2, 7])
        );
        let bad = Volume::scalar([2, 1, 1], Geometry::default(), Voxels::F32(vec![0.0, 0.5])).unwrap();
        let e = slot_map(&bad, &c, &c.ids(), "reference").unwrap_err();
        assert!(e.to_string().contains("reference contains 0.5"), "{e}");
        assert!(Classes::present_in(&v, &bad).is_err());
        let nan = Volume::scalar([1, 1, 1], Geometry::default(), Voxels::F64(vec![f64::NAN])).unwrap();
        assert!(slot_map(&nan, &Classes::Binary, &[1], "prediction").is_err());
        assert!(Classes::Labels(vec![0, 1]).validate().is_err());
        assert_eq!(Classes::first_n(3).ids(), vec![1, 2, 3]);
    }

    #[test]
    fn stats_count_and_bound() {
        let dims = [3, 2, 2];
        let p = [0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let g = [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
        let st = slot_stats(&p, &g, dims, 2);
        assert_eq!(
            st[1],
            SlotStats {
                prediction: 2,
                reference: 2,
                intersection: 1,
                bbox: Some(([0, 0, 0], [2, 0, 1])),
            }
        );
        assert_eq!(st[2].prediction, 1);
        assert_eq!(st[2].reference, 0);
        assert_eq!(st[2].bbox, Some(([2, 1, 1], [2, 1, 1])));
    }
}
