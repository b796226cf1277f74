//! The datalist's files, checked and (optionally) kept decoded in memory, and samples turned
//! into network tensors.
//!
//! [`FileCache::load`] decodes every file the datalist names, on several threads, before
//! training starts: a file that does not decode, or a label without foreground where a
//! transform needs one, is an error naming the item and key. With caching on, the decoded
//! volumes are kept (each file once, however many items name it) and put into each sample
//! before its pipeline runs, so the pipeline's `Load*` transforms find the image in place
//! and keep it (as they keep a volume decoded by the server); lists of files (one per
//! channel) are checked but left to the transforms to load. Labels whose values are all
//! integers in 0..=255 are kept as `u8`, which changes no result and quarters the copy
//! each sample makes of a float mask.
//!
//! Tensors: a volume's voxels are a C-order `[C, k, j, i]` array (`aiaa_imaging`'s layout);
//! the network takes `[N, C, i, j, k]`, so samples are permuted on the way in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aiaa_imaging::voxels::Element;
use aiaa_imaging::{ReadOptions, Volume, VoxelType, with_voxels};
use aiaa_transforms::{Data, Image, Item, Kind};
use serde_json::Value;
use tch::Tensor;

use crate::datalist::{DataItem, Datalist, Split};
use crate::error::{Result, TrainError};

/// Decoded datalist files, by path.
#[derive(Debug, Default)]
pub struct FileCache {
    volumes: HashMap<PathBuf, Arc<Volume>>,
    /// Whether volumes are kept (otherwise the transforms load every file every time).
    pub enabled: bool,
    /// Decoded bytes of every distinct file (whether kept or not).
    pub total_bytes: u64,
    /// Distinct files checked.
    pub files: usize,
}

/// What a file must satisfy, and who to blame when it does not.
struct Check {
    /// (item, key) of the first use, named in errors.
    blame: (String, String),
    /// Some item uses it as a label whose foreground a transform needs.
    needs_foreground: bool,
    /// Every use is under a label key (so a lossless cast to `u8` is allowed).
    label_only: bool,
}

fn decoded_bytes(v: &Volume) -> u64 {
    (v.voxels.len() * v.voxel_type().size()) as u64
}

/// Whether channel 0 has a voxel `> 0`.
fn has_foreground(v: &Volume) -> bool {
    let n = v.voxel_count();
    with_voxels!(&v.voxels, x => x[..n].iter().any(|e| e.to_f64() > 0.0))
}

/// The volume as `u8` when every value is an integer in 0..=255 (else unchanged).
fn compact_label(v: Volume) -> Volume {
    if v.voxel_type() == VoxelType::U8 {
        return v;
    }
    let lossless = with_voxels!(&v.voxels, x => x.iter().all(|e| {
        let f = e.to_f64();
        f.fract() == 0.0 && (0.0..=255.0).contains(&f)
    }));
    if lossless { v.cast(VoxelType::U8) } else { v }
}

impl FileCache {
    /// Decodes every file of `datalist` on `threads` threads and checks it; see the module
    /// docs. `foreground` lists, per split, the label keys whose foreground a transform
    /// needs. `cache`: `Some(b)` forces caching on or off; `None` caches when the decoded
    /// files need at most `auto_limit` bytes.
    pub fn load(
        datalist: &Datalist,
        foreground: &[(Split, Vec<String>)],
        cache: Option<bool>,
        auto_limit: u64,
        threads: usize,
    ) -> Result<FileCache> {
        // Every distinct file with what it must satisfy.
        let mut checks: Vec<(PathBuf, Check)> = Vec::new();
        let mut index: HashMap<PathBuf, usize> = HashMap::new();
        for item in datalist.items() {
            let fg: &[String] = foreground
                .iter()
                .find(|(s, _)| *s == item.split)
                .map_or(&[], |(_, f)| f.as_slice());
            for (key, path) in &item.files {
                let single = item.file(key).is_some();
                let needs = single && fg.iter().any(|f| f == key);
                let label = Kind::from_key(key) == Kind::Label;
                let i = *index.entry(path.clone()).or_insert_with(|| {
                    checks.push((
                        path.clone(),
                        Check {
                            blame: (item.id(), key.clone()),
                            needs_foreground: false,
                            label_only: true,
                        },
                    ));
                    checks.len() - 1
                });
                let c = &mut checks[i].1;
                if needs && !c.needs_foreground {
                    c.needs_foreground = true;
                    c.blame = (item.id(), key.clone());
                }
                c.label_only &= label;
            }
        }
        let next = AtomicUsize::new(0);
        let total = AtomicU64::new(0);
        let keep = AtomicBool::new(cache != Some(false));
        let kept: Mutex<HashMap<PathBuf, Arc<Volume>>> = Mutex::new(HashMap::new());
        let failure: Mutex<Option<TrainError>> = Mutex::new(None);
        let file_error = |c: &Check, message: String| TrainError::Datalist {
            file: datalist.file.clone(),
            item: c.blame.0.clone(),
            key: c.blame.1.clone(),
            message,
        };
        std::thread::scope(|s| {
            for _ in 0..threads.clamp(1, checks.len().max(1)) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= checks.len() || failure.lock().is_ok_and(|f| f.is_some()) {
                            return;
                        }
                        let (path, check) = &checks[i];
                        let outcome = aiaa_imaging::io::read_volume(path, &ReadOptions::default())
                            .map_err(|e| {
                                file_error(check, format!("{}: cannot be read: {e}", path.display()))
                            })
                            .and_then(|v| {
                                if check.needs_foreground && !has_foreground(&v) {
                                    Err(file_error(
                                        check,
                                        format!(
                                            "{}: the label has no foreground (no voxel > 0), which a \
                                             transform of the pipeline needs",
                                            path.display()
                                        ),
                                    ))
                                } else {
                                    Ok(v)
                                }
                            });
                        match outcome {
                            Err(e) => {
                                if let Ok(mut f) = failure.lock() {
                                    f.get_or_insert(e);
                                }
                                return;
                            }
                            Ok(v) => {
                                let bytes = decoded_bytes(&v);
                                let sum = total.fetch_add(bytes, Ordering::Relaxed) + bytes;
                                if cache.is_none() && sum > auto_limit {
                                    keep.store(false, Ordering::Relaxed);
                                }
                                if keep.load(Ordering::Relaxed) {
                                    let v = if check.label_only { compact_label(v) } else { v };
                                    if let Ok(mut k) = kept.lock() {
                                        k.insert(path.clone(), Arc::new(v));
                                    }
                                }
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().ok().flatten() {
            return Err(e);
        }
        let enabled = keep.load(Ordering::Relaxed);
        Ok(FileCache {
            volumes: if enabled {
                kept.into_inner().unwrap_or_default()
            } else {
                HashMap::new()
            },
            enabled,
            total_bytes: total.load(Ordering::Relaxed),
            files: checks.len(),
        })
    }

    /// A fresh sample of `item`: its JSON entry, with the cached volumes in place.
    pub fn sample(&self, item: &DataItem) -> Result<Data> {
        let mut d = Data::from_json(item.name(), &Value::Object(item.entry.clone()))
            .map_err(|e| TrainError::transform(item.id(), e))?;
        if self.enabled {
            for (key, path) in &item.files {
                if item.file(key).is_none() {
                    continue;
                }
                if let Some(v) = self.volumes.get(path) {
                    let mut im = Image::new((**v).clone(), Kind::from_key(key));
                    im.source = Some(path.clone());
                    d.insert(key.clone(), Item::Image(Box::new(im)));
                }
            }
        }
        Ok(d)
    }

    /// The decoded volume of `path`, when cached.
    pub fn get(&self, path: &Path) -> Option<&Volume> {
        self.volumes.get(path).map(|v| &**v)
    }
}

/// A `[C, X, Y, Z]` `f32` array (`Z` fastest), in Rust memory.
///
/// The loader threads hand samples over as arrays, and the training thread makes tensors of
/// them: the first parallel torch operation on a thread (even the zero-fill of a new tensor)
/// gives that thread an OpenMP thread pool of its own. With more OpenMP threads than cores,
/// libgomp cuts the spin-wait of every thread, the training threads' included, and a
/// training step took 0.5 s instead of 0.35 s (`scripts/training/bench_vs_monai.sh`).
#[derive(Debug, Clone)]
pub struct Array {
    /// The values.
    pub data: Vec<f32>,
    /// `[C, X, Y, Z]`.
    pub shape: [i64; 4],
}

impl Array {
    /// The array as a tensor (on the calling thread: see the type's docs).
    pub fn to_tensor(&self) -> Tensor {
        Tensor::from_slice(&self.data).view(self.shape)
    }

    /// Arrays of one shape stacked into one `[N, C, X, Y, Z]` tensor.
    pub fn stack(arrays: &[Array]) -> Result<Tensor> {
        let Some(first) = arrays.first() else {
            return Err(TrainError::Internal("stacking no arrays".into()));
        };
        if arrays.iter().any(|a| a.shape != first.shape) {
            return Err(TrainError::Internal(format!(
                "a batch of arrays of different shapes: {:?}",
                arrays.iter().map(|a| a.shape).collect::<Vec<_>>()
            )));
        }
        let mut data = Vec::with_capacity(first.data.len() * arrays.len());
        for a in arrays {
            data.extend_from_slice(&a.data);
        }
        let [c, x, y, z] = first.shape;
        Ok(Tensor::from_slice(&data).view([arrays.len() as i64, c, x, y, z]))
    }
}

/// A sample ready for the network: `image` `[C, X, Y, Z]` and `label` `[1, X, Y, Z]`.
#[derive(Debug)]
pub struct SampleTensors {
    /// The sample's name.
    pub name: String,
    /// The network input.
    pub image: Array,
    /// The target (class indices as floats), when the sample has one.
    pub label: Option<Array>,
}

/// A `[C, X, Y, Z]` `f32` tensor of a volume.
pub fn volume_tensor(vol: &Volume) -> Tensor {
    volume_array(vol).to_tensor()
}

/// A volume's values in `[C, X, Y, Z]` order (the volume's own order is `i` fastest), the
/// reorder done in plain Rust (see [`Array`] why not in torch).
pub fn volume_array(vol: &Volume) -> Array {
    let [nx, ny, nz] = vol.dims;
    let data = vol.voxels.as_f32();
    let mut out = vec![0f32; data.len()];
    let per_channel = nx * ny * nz;
    for (src, dst) in data
        .chunks_exact(per_channel)
        .zip(out.chunks_exact_mut(per_channel))
    {
        for k in 0..nz {
            for j in 0..ny {
                let row = &src[(k * ny + j) * nx..][..nx];
                for (i, &v) in row.iter().enumerate() {
                    dst[(i * ny + j) * nz + k] = v;
                }
            }
        }
    }
    Array {
        data: out,
        shape: [vol.channels as i64, nx as i64, ny as i64, nz as i64],
    }
}

/// Takes `image` (and `label`, when `with_label`) out of a transformed sample as tensors,
/// checking the channel count and, when given, the spatial size.
pub fn sample_tensors(
    d: &mut Data,
    num_channels: i64,
    size: Option<[i64; 3]>,
    with_label: bool,
) -> Result<SampleTensors> {
    let bad = |message: String| TrainError::Data {
        sample: d.name.clone(),
        message,
    };
    let image = match d.get("image") {
        Some(Item::Image(im)) => im,
        Some(other) => {
            return Err(bad(format!(
                "after the transforms, \"image\" holds {}, not an image",
                other.kind_name()
            )));
        }
        None => return Err(bad("after the transforms there is no \"image\"".into())),
    };
    if image.vol.channels as i64 != num_channels {
        return Err(bad(format!(
            "the image has {} channel(s) after the transforms; num_channels is {num_channels}",
            image.vol.channels
        )));
    }
    let dims = image.vol.dims.map(|x| x as i64);
    if let Some(s) = size
        && dims != s
    {
        return Err(bad(format!(
            "the image is {dims:?} after the transforms; the network takes network_input_size {s:?} \
             (crop or resize to it in train.pre_transforms)"
        )));
    }
    let image_t = volume_array(&image.vol);
    let label = if with_label {
        let lab = match d.get("label") {
            Some(Item::Image(im)) => im,
            _ => return Err(bad("after the transforms there is no \"label\" image".into())),
        };
        if lab.vol.dims.map(|x| x as i64) != dims {
            return Err(bad(format!(
                "the label grid {:?} differs from the image grid {dims:?} after the transforms",
                lab.vol.dims
            )));
        }
        if lab.vol.channels != 1 {
            return Err(bad(format!(
                "the label has {} channels; labels are one channel of class indices (seed 5.2)",
                lab.vol.channels
            )));
        }
        Some(volume_array(&lab.vol))
    } else {
        None
    };
    Ok(SampleTensors {
        name: d.name.clone(),
        image: image_t,
        label,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_imaging::{Geometry, Voxels};

    #[test]
    fn tensors_are_n_c_i_j_k() {
        // Voxel (i, j, k) of channel c holds 1000 c + 100 i + 10 j + k.
        let dims = [3, 4, 5];
        let mut v = Vec::new();
        for c in 0..2 {
            for k in 0..5 {
                for j in 0..4 {
                    for i in 0..3 {
                        v.push((1000 * c + 100 * i + 10 * j + k) as f32);
                    }
                }
            }
        }
        let vol = Volume::new(dims, 2, Geometry::default(), Voxels::F32(v)).unwrap();
        let t = volume_tensor(&vol);
        assert_eq!(t.size(), vec![2, 3, 4, 5]);
        assert_eq!(t.double_value(&[1, 2, 3, 4]), 1234.0);
        assert_eq!(t.double_value(&[0, 1, 0, 2]), 102.0);
    }

    #[test]
    fn labels_are_compacted_only_when_lossless() {
        let g = Geometry::default();
        let a = Volume::scalar([2, 1, 1], g, Voxels::F32(vec![0.0, 1.0])).unwrap();
        assert_eq!(compact_label(a).voxel_type(), VoxelType::U8);
        let b = Volume::scalar([2, 1, 1], g, Voxels::F32(vec![0.0, 0.5])).unwrap();
        assert_eq!(compact_label(b).voxel_type(), VoxelType::F32);
        let c = Volume::scalar([2, 1, 1], g, Voxels::I16(vec![0, 300])).unwrap();
        assert_eq!(compact_label(c).voxel_type(), VoxelType::I16);
        assert!(!has_foreground(
            &Volume::scalar([2, 1, 1], g, Voxels::U8(vec![0, 0])).unwrap()
        ));
    }
}
