//! Mask post-processing (ours, not the seed's; MONAI-style, for hosting segmentation
//! models whose pipelines end with it): `transforms.KeepLargestConnectedComponent` and
//! `transforms.FillHoles`. Both work on each channel separately, keep the element type and
//! run in linear time on row runs: the voxels of each `i` row are grouped into maximal runs,
//! runs of neighbouring rows are joined in a union-find (the root of a component is its
//! first run in memory order), so a 256³ mask costs a few scans.

use serde::Deserialize;

use aiaa_imaging::voxels::Element;
use aiaa_imaging::with_voxels;

use crate::args::{ArgError, ArgResult, Keys};
use crate::channels::FieldsArgs;
use crate::data::Data;
use crate::registry::FromArgs;
use crate::{Result, SampleRng, Transform};

/// Which voxels touch: sharing a face (6), a face or an edge (18), or any corner (26).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connectivity {
    /// Face neighbours.
    Six,
    /// Face and edge neighbours.
    Eighteen,
    /// Face, edge and corner neighbours.
    TwentySix,
}

impl Connectivity {
    /// From the number of neighbours (6, 18 or 26).
    pub fn from_count(n: u32) -> Option<Connectivity> {
        match n {
            6 => Some(Connectivity::Six),
            18 => Some(Connectivity::Eighteen),
            26 => Some(Connectivity::TwentySix),
            _ => None,
        }
    }

    /// How far apart along `i` two runs of rows `(dj, dk)` apart may be and still touch
    /// (`Some(0)`: they must overlap; `Some(1)`: diagonal contact counts), `None` if such
    /// rows never touch.
    fn reach(self, dj: i64, dk: i64) -> Option<u32> {
        let face = dj.abs() + dk.abs() == 1;
        match (self, face) {
            (Connectivity::Six, true) => Some(0),
            (Connectivity::Six, false) => None,
            (Connectivity::Eighteen, true) => Some(1),
            (Connectivity::Eighteen, false) => Some(0),
            (Connectivity::TwentySix, _) => Some(1),
        }
    }
}

/// The connected components of the voxels `inside` selects in one channel, as row runs.
#[derive(Debug)]
pub struct Components {
    /// `[start, end)` along `i` of each run, rows in memory order.
    pub runs: Vec<(u32, u32)>,
    /// Row `j + ny k` holds runs `rows[r]..rows[r + 1]`.
    pub rows: Vec<usize>,
    /// The component of each run: the index of its first run (in memory order).
    pub root: Vec<usize>,
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

/// Labels the components of `{x in v : inside(x)}` (one channel, `dims`) under `conn`.
pub fn components<T: Element>(
    v: &[T],
    dims: [usize; 3],
    conn: Connectivity,
    inside: impl Fn(T) -> bool,
) -> Components {
    let [nx, ny, nz] = dims;
    let mut runs = Vec::new();
    let mut rows = Vec::with_capacity(ny * nz + 1);
    for row in v.chunks_exact(nx.max(1)).take(ny * nz) {
        rows.push(runs.len());
        let mut i = 0;
        while i < nx {
            if inside(row[i]) {
                let s = i;
                while i < nx && inside(row[i]) {
                    i += 1;
                }
                runs.push((s as u32, i as u32));
            }
            i += 1;
        }
    }
    rows.push(runs.len());
    let mut parent: Vec<usize> = (0..runs.len()).collect();
    // Rows already visited that may touch row (j, k).
    let back: Vec<(i64, i64, u32)> = [(-1, 0), (0, -1), (-1, -1), (1, -1)]
        .into_iter()
        .filter_map(|(dj, dk)| conn.reach(dj, dk).map(|d| (dj, dk, d)))
        .collect();
    for k in 0..nz as i64 {
        for j in 0..ny as i64 {
            let r = (j + ny as i64 * k) as usize;
            for &(dj, dk, d) in &back {
                let (j2, k2) = (j + dj, k + dk);
                if j2 < 0 || j2 >= ny as i64 || k2 < 0 {
                    continue;
                }
                let r2 = (j2 + ny as i64 * k2) as usize;
                let (mut a, mut b) = (rows[r], rows[r2]);
                while a < rows[r + 1] && b < rows[r2 + 1] {
                    let ((a0, a1), (b0, b1)) = (runs[a], runs[b]);
                    if a0 < b1 + d && b0 < a1 + d {
                        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                        if ra != rb {
                            parent[ra.max(rb)] = ra.min(rb);
                        }
                    }
                    // The run ending first touches nothing further in the other row.
                    if a1 <= b1 {
                        a += 1;
                    } else {
                        b += 1;
                    }
                }
            }
        }
    }
    let root = (0..runs.len()).map(|x| find(&mut parent, x)).collect();
    Components { runs, rows, root }
}

/// Arguments of [`KeepLargestConnectedComponent`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LargestArgs {
    /// Keys to apply to.
    pub fields: Keys,
    /// 6, 18 or 26 (default, like `cc3d`).
    #[serde(default = "twenty_six")]
    pub connectivity: u32,
}

fn twenty_six() -> u32 {
    26
}

/// `transforms.KeepLargestConnectedComponent` (ours; like MONAI's
/// `KeepLargestConnectedComponentd` on a binary mask, `cc3d` connectivity): in each channel
/// the voxels `> 0` are foreground; only the largest connected component (by voxel count)
/// keeps its values, every other foreground voxel becomes 0. Ties: the component whose
/// first voxel comes first in memory order. Element type kept; an empty mask is left as
/// it is.
#[derive(Debug)]
pub struct KeepLargestConnectedComponent {
    fields: Keys,
    connectivity: Connectivity,
}

impl FromArgs for KeepLargestConnectedComponent {
    type Args = LargestArgs;
    fn from_args(a: LargestArgs) -> ArgResult<Self> {
        let connectivity = Connectivity::from_count(a.connectivity)
            .ok_or_else(|| ArgError::new("connectivity", format!("{} is not 6, 18 or 26", a.connectivity)))?;
        Ok(KeepLargestConnectedComponent {
            fields: a.fields,
            connectivity,
        })
    }
}

/// Zeroes every voxel `> 0` of one channel outside its largest component (see
/// [`KeepLargestConnectedComponent`]).
pub fn keep_largest<T: Element>(v: &mut [T], dims: [usize; 3], conn: Connectivity) {
    let c = components(v, dims, conn, |x| x.to_f64() > 0.0);
    let mut size = vec![0usize; c.runs.len()];
    for (&(s, e), &r) in c.runs.iter().zip(&c.root) {
        size[r] += (e - s) as usize;
    }
    // Roots in increasing order are components in order of their first voxel.
    let Some(best) = (0..c.runs.len())
        .filter(|&x| c.root[x] == x)
        .reduce(|b, x| if size[x] > size[b] { x } else { b })
    else {
        return;
    };
    for_runs(&c, dims[0], |off, (s, e), root| {
        if root != best {
            v[off + s as usize..off + e as usize].fill(T::default());
        }
    });
}

/// Calls `f(row offset, run, root)` for every run.
fn for_runs(c: &Components, nx: usize, mut f: impl FnMut(usize, (u32, u32), usize)) {
    for (r, w) in c.rows.windows(2).enumerate() {
        for x in w[0]..w[1] {
            f(r * nx, c.runs[x], c.root[x]);
        }
    }
}

impl Transform for KeepLargestConnectedComponent {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.fields.iter() {
            let vol = &mut d.image_mut(k)?.vol;
            let (dims, n) = (vol.dims, vol.voxel_count());
            if n == 0 {
                continue;
            }
            with_voxels!(&mut vol.voxels, v => {
                v.chunks_exact_mut(n).for_each(|ch| keep_largest(ch, dims, self.connectivity));
            });
        }
        Ok(())
    }
}

/// `transforms.FillHoles` (ours; like `fill_voids.fill` on a binary mask): in each
/// channel, the background voxels (`== 0`) that cannot reach the border of the volume
/// through background voxels (6-connectivity) become 1; all other voxels keep their
/// values (on a 0/1 mask this is `fill_voids.fill`; the other labels of a multi-label
/// image are kept, the holes get 1). An axis of size 1 has no border faces, so a
/// single-slice image (`nz = 1`) is filled as a 2D image (4-connectivity in its plane); a
/// single voxel is all border. Element type kept.
#[derive(Debug)]
pub struct FillHoles {
    fields: Keys,
}

impl FromArgs for FillHoles {
    type Args = FieldsArgs;
    fn from_args(a: FieldsArgs) -> ArgResult<Self> {
        Ok(FillHoles { fields: a.fields })
    }
}

/// Fills the holes of one channel (see [`FillHoles`]); returns how many voxels it filled.
pub fn fill_holes<T: Element>(v: &mut [T], dims: [usize; 3]) -> usize {
    let [nx, ny, nz] = dims;
    let c = components(v, dims, Connectivity::Six, |x| x.to_f64() == 0.0);
    let flat = dims.iter().all(|&n| n == 1);
    let edge = |x: usize, n: usize| n > 1 && (x == 0 || x == n - 1);
    let mut open = vec![false; c.runs.len()];
    for_runs(&c, nx, |off, (s, e), root| {
        let (j, k) = ((off / nx) % ny, off / nx / ny);
        if flat || edge(j, ny) || edge(k, nz) || (nx > 1 && (s == 0 || e as usize == nx)) {
            open[root] = true;
        }
    });
    let mut filled = 0;
    let one = T::from_f64(1.0);
    for_runs(&c, nx, |off, (s, e), root| {
        if !open[root] {
            v[off + s as usize..off + e as usize].fill(one);
            filled += (e - s) as usize;
        }
    });
    filled
}

impl Transform for FillHoles {
    fn apply(&self, d: &mut Data, _: &mut SampleRng) -> Result<()> {
        for k in self.fields.iter() {
            let vol = &mut d.image_mut(k)?.vol;
            let (dims, n) = (vol.dims, vol.voxel_count());
            if n == 0 {
                continue;
            }
            with_voxels!(&mut vol.voxels, v => {
                v.chunks_exact_mut(n).for_each(|ch| {
                    fill_holes(ch, dims);
                });
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference labelling: flood fill over explicit neighbour offsets.
    fn brute_sizes(mask: &[bool], dims: [usize; 3], conn: Connectivity) -> Vec<(usize, usize)> {
        let [nx, ny, nz] = dims;
        let mut offs = Vec::new();
        for dk in -1i64..=1 {
            for dj in -1i64..=1 {
                for di in -1i64..=1 {
                    let m = di.abs() + dj.abs() + dk.abs();
                    let ok = match conn {
                        Connectivity::Six => m == 1,
                        Connectivity::Eighteen => (1..=2).contains(&m),
                        Connectivity::TwentySix => m >= 1,
                    };
                    if ok {
                        offs.push([di, dj, dk]);
                    }
                }
            }
        }
        let mut seen = vec![false; mask.len()];
        let mut out = Vec::new(); // (first voxel, size)
        for start in 0..mask.len() {
            if !mask[start] || seen[start] {
                continue;
            }
            seen[start] = true;
            let mut stack = vec![start];
            let mut size = 0;
            while let Some(x) = stack.pop() {
                size += 1;
                let p = [x % nx, (x / nx) % ny, x / nx / ny].map(|v| v as i64);
                for o in &offs {
                    let q = [p[0] + o[0], p[1] + o[1], p[2] + o[2]];
                    if q.iter().zip(dims).any(|(&c, n)| c < 0 || c >= n as i64) {
                        continue;
                    }
                    let y = q[0] as usize + nx * (q[1] as usize + ny * q[2] as usize);
                    if mask[y] && !seen[y] {
                        seen[y] = true;
                        stack.push(y);
                    }
                }
            }
            out.push((start, size));
        }
        let _ = nz;
        out
    }

    #[test]
    fn components_match_a_flood_fill_on_random_masks() {
        let mut state = 7u64;
        for dims in [[9, 7, 5], [1, 6, 6], [12, 1, 3], [5, 5, 1], [17, 9, 8]] {
            let n: usize = dims.iter().product();
            for density in [20u64, 45, 60] {
                let mask: Vec<u8> = (0..n)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        u8::from((state >> 33) % 100 < density)
                    })
                    .collect();
                for conn in [Connectivity::Six, Connectivity::Eighteen, Connectivity::TwentySix] {
                    let c = components(&mask, dims, conn, |x| x > 0);
                    let mut size = std::collections::BTreeMap::new();
                    for (&(s, e), &r) in c.runs.iter().zip(&c.root) {
                        *size.entry(r).or_insert(0) += (e - s) as usize;
                    }
                    let mut first = std::collections::BTreeMap::new();
                    for_runs(&c, dims[0], |off, (s, _), root| {
                        first.entry(root).or_insert(off + s as usize);
                    });
                    let ours: Vec<(usize, usize)> = size.iter().map(|(r, &s)| (first[r], s)).collect();
                    let bools: Vec<bool> = mask.iter().map(|&x| x > 0).collect();
                    assert_eq!(
                        ours,
                        brute_sizes(&bools, dims, conn),
                        "{dims:?} {density} {conn:?}"
                    );
                }
            }
        }
    }
}
