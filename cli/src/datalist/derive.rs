//! Derived files: `--label-map` (labels rewritten as `u8`) and `--channels` (images with only
//! some channels), rewritten in parallel under the derived folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use aiaa_imaging::voxels::Element;
use aiaa_imaging::{ReadOptions, Volume, Voxels, with_voxels};
use anyhow::{Context, anyhow, bail};

use super::msd::MsdTask;

/// Parses `--label-map`: `OLD=NEW` pairs, comma-separated, `NEW` in 0..=255, at least one
/// `NEW` above 0, no `OLD` twice.
pub fn parse_label_map(s: &str) -> anyhow::Result<BTreeMap<i64, u8>> {
    let mut map = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (old, new) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--label-map: {pair:?} is not OLD=NEW"))?;
        let old: i64 = old
            .trim()
            .parse()
            .map_err(|_| anyhow!("--label-map: {pair:?}: {:?} is not an integer label", old.trim()))?;
        let new: u8 = new.trim().parse().map_err(|_| {
            anyhow!(
                "--label-map: {pair:?}: {:?} is not a label in 0..=255",
                new.trim()
            )
        })?;
        if map.insert(old, new).is_some() {
            bail!("--label-map: label {old} is mapped twice");
        }
    }
    if map.is_empty() {
        bail!("--label-map: give at least one OLD=NEW pair, e.g. 2=1");
    }
    if map.values().all(|&v| v == 0) {
        bail!("--label-map: every label maps to 0, so no case would have foreground");
    }
    Ok(map)
}
/// The label rewritten by `map` (values not listed become 0), as `u8`; `None` when nothing is
/// foreground.
pub fn map_label(vol: &Volume, map: &BTreeMap<i64, u8>) -> Option<Volume> {
    let n = vol.voxel_count();
    let mut any = false;
    let out: Vec<u8> = with_voxels!(&vol.voxels, v => v[..n].iter().map(|x| {
        let f = x.to_f64();
        let m = if f.fract() == 0.0 { map.get(&(f as i64)).copied().unwrap_or(0) } else { 0 };
        any |= m > 0;
        m
    }).collect());
    any.then(|| Volume {
        channels: 1,
        voxels: Voxels::U8(out),
        ..vol.clone()
    })
}

/// The channels `keep` of `vol`, in that order, same element type.
pub fn select_channels(vol: &Volume, keep: &[usize]) -> anyhow::Result<Volume> {
    if let Some(&c) = keep.iter().find(|&&c| c >= vol.channels) {
        bail!("has {} channel(s); channel {c} was asked for", vol.channels);
    }
    let n = vol.voxel_count();
    let voxels = with_voxels!(&vol.voxels, v => {
        let mut out = Vec::with_capacity(n * keep.len());
        for &c in keep {
            out.extend_from_slice(&v[c * n..(c + 1) * n]);
        }
        Element::wrap(out)
    });
    Ok(Volume::new(vol.dims, keep.len(), vol.geometry, voxels)?)
}
/// A file to rewrite, and the result.
pub(super) enum Job {
    Label { src: PathBuf, dst: PathBuf },
    Image { src: PathBuf, dst: PathBuf },
}

/// Runs `jobs` on `threads` threads; each result is `Ok(true)` written, `Ok(false)` left out
/// (a label without foreground). The first error stops the rest.
pub(super) fn run_jobs(
    jobs: &[Job],
    threads: usize,
    map: Option<&BTreeMap<i64, u8>>,
    channels: Option<&[usize]>,
) -> anyhow::Result<Vec<bool>> {
    // Never over an original (a derived folder that is the tasks' parent would do that).
    for job in jobs {
        let (Job::Label { src, dst } | Job::Image { src, dst }) = job;
        if src == dst || dst.canonicalize().is_ok_and(|d| &d == src) {
            bail!(
                "--derived-dir would overwrite the original {}: choose a folder other than the one \
                 holding the task folders",
                src.display()
            );
        }
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<bool>>> = Mutex::new(vec![None; jobs.len()]);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let one = |job: &Job| -> anyhow::Result<bool> {
        let (src, dst) = match job {
            Job::Label { src, dst } | Job::Image { src, dst } => (src, dst),
        };
        let vol = aiaa_imaging::io::read_volume(src, &ReadOptions::default())
            .with_context(|| format!("{}: cannot be read", src.display()))?;
        let out = match job {
            Job::Label { .. } => match map.and_then(|m| map_label(&vol, m)) {
                Some(v) => v,
                None => return Ok(false),
            },
            Job::Image { .. } => match channels {
                Some(c) => select_channels(&vol, c).map_err(|e| anyhow!("{}: {e}", src.display()))?,
                None => vol,
            },
        };
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
        }
        aiaa_imaging::io::write_volume(&out, dst).with_context(|| format!("write {}", dst.display()))?;
        Ok(true)
    };
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs.len() || failure.lock().is_ok_and(|f| f.is_some()) {
                        return;
                    }
                    match one(&jobs[i]) {
                        Ok(r) => {
                            if let Ok(mut all) = results.lock() {
                                all[i] = Some(r);
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failure.lock() {
                                f.get_or_insert(e);
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().ok().flatten() {
        return Err(e);
    }
    let all = results
        .into_inner()
        .map_err(|_| anyhow!("a worker thread panicked"))?;
    all.into_iter()
        .enumerate()
        .map(|(i, r)| r.ok_or_else(|| anyhow!("file {i} was not processed")))
        .collect()
}

/// `dst` for `src` of `task` under `derived`: `<derived>/<task folder>/<parent folder>/<file>`.
pub(super) fn derived_path(derived: &Path, task: &MsdTask, src: &Path) -> PathBuf {
    let rel = src
        .strip_prefix(&task.dir)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| PathBuf::from(src.file_name().unwrap_or_default()));
    derived.join(task.folder_name()).join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_imaging::Geometry;

    #[test]
    fn label_maps_parse_strictly() {
        assert_eq!(parse_label_map("2=1").unwrap(), BTreeMap::from([(2, 1)]));
        assert_eq!(
            parse_label_map(" 2 = 1 , 3=1").unwrap(),
            BTreeMap::from([(2, 1), (3, 1)])
        );
        for (bad, needle) in [
            ("2", "not OLD=NEW"),
            ("x=1", "not an integer"),
            ("2=300", "0..=255"),
            ("2=1,2=0", "twice"),
            ("1=0", "every label maps to 0"),
            ("", "at least one"),
        ] {
            let e = parse_label_map(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad:?}: {e}");
        }
    }

    #[test]
    fn labels_map_and_channels_select() {
        let g = Geometry::default();
        let lab = Volume::scalar([4, 1, 1], g, Voxels::I16(vec![0, 1, 2, 3])).unwrap();
        let m = BTreeMap::from([(2, 1), (3, 1)]);
        let out = map_label(&lab, &m).unwrap();
        assert_eq!(out.voxels, Voxels::U8(vec![0, 0, 1, 1]));
        assert!(map_label(&lab, &BTreeMap::from([(7, 1)])).is_none());
        let img = Volume::new([2, 1, 1], 3, g, Voxels::F32(vec![1., 2., 3., 4., 5., 6.])).unwrap();
        let one = select_channels(&img, &[2]).unwrap();
        assert_eq!((one.channels, one.voxels.clone()), (1, Voxels::F32(vec![5., 6.])));
        let two = select_channels(&img, &[1, 0]).unwrap();
        assert_eq!(two.voxels, Voxels::F32(vec![3., 4., 1., 2.]));
        assert!(
            select_channels(&img, &[3])
                .unwrap_err()
                .to_string()
                .contains("3 channel(s)")
        );
    }
}
