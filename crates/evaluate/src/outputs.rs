//! The config's `writers`: what `aiaa infer` / `aiaa evaluate` write for each case, as the
//! seed's `writers.WriteNiftyResults` does: `<output>/<input name>/<input name>_<applied_key>.nii.gz`
//! (`<input name>`: the image's file name without image extensions), in the writer's
//! `dtype`, with the image's geometry. Every file is written atomically.
//!
//! The keys a writer can name, all on the image's grid (so every file overlays the image):
//!
//! | key | what |
//! |---|---|
//! | `prediction`, `model` | the engine's label mask, exactly what the server returns |
//! | `image` | the image as read |
//! | `label` | the reference label as read (cases that have one) |
//! | `extreme_points` | annotation models: the clicks' heat-map as `AddExtremePointsChannel` computes it (max of Gaussians of the config's `sigma` voxels, rescaled to [-1, 1]) |
//! | channel names | `transforms.SplitAcrossChannels` of the config's `post_transforms`: on `model`, name `c` of `channel_names` is the mask of label `c` (0/1; the seed's `["background", "prediction"]` gives `prediction`); on `image`, the first name is the image and the second the heat-map |
//!
//! Where the seed wrote the network's cropped, normalised input and its probabilities, we
//! write the full-grid image and the thresholded mask: the files line up with the image and
//! with what the annotation server returns. A writer whose key a case lacks (`label` on an
//! unlabelled case, `extreme_points` for a segmentation model) is skipped for that case.
//! Without a `writers` key, the default writes the prediction as `uint8`:
//! `[{"applied_key": "prediction", "name": "writers.WriteNiftyResults", "dtype": "uint8"}]`;
//! `"writers": []` writes nothing.

use std::path::{Path, PathBuf};

use aiaa_imaging::{Volume, Voxels};
use aiaa_transforms::data::{Data, Image, Item, Kind};
use aiaa_transforms::{SampleRng, Transform};
use serde_json::{Map, Value, json};

use crate::error::{EvaluateError, Result};

/// One writer of the config.
#[derive(Debug)]
struct Writer {
    key: String,
    transform: Box<dyn Transform>,
}

/// The config's writers, built.
#[derive(Debug)]
pub struct Writers {
    writers: Vec<Writer>,
    /// `SplitAcrossChannels` names on `model`.
    model_names: Vec<String>,
    /// `SplitAcrossChannels` names on `image`.
    image_names: Vec<String>,
}

/// Everything a case can write.
#[derive(Debug)]
pub struct CaseOutputs<'a> {
    /// The image as read.
    pub image: &'a Volume,
    /// The label as read.
    pub label: Option<&'a Volume>,
    /// The engine's mask.
    pub mask: &'a Volume,
    /// The clicks (annotation models).
    pub points: Option<&'a [[usize; 3]]>,
    /// The heat-map's sigma (voxels).
    pub sigma: f64,
}

fn split_names(post: Option<&Value>, key: &str) -> Vec<String> {
    post.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|t| {
            t.get("name").and_then(Value::as_str) == Some("transforms.SplitAcrossChannels")
                && t.get("applied_key").and_then(Value::as_str) == Some(key)
        })
        .filter_map(|t| t.get("channel_names").and_then(Value::as_array))
        .flat_map(|names| names.iter().filter_map(Value::as_str).map(str::to_string))
        .collect()
}

impl Writers {
    /// Builds the `writers` of a config (`origin` names it in errors).
    pub fn from_config(json: &Map<String, Value>, origin: &str) -> Result<Writers> {
        let default =
            json!([{"applied_key": "prediction", "name": "writers.WriteNiftyResults", "dtype": "uint8"}]);
        let list = match json.get("writers") {
            None | Some(Value::Null) => &default,
            Some(v) => v,
        };
        let bad = |i: usize, msg: String| {
            EvaluateError::Model(format!("model config {origin}: writers[{i}]: {msg}"))
        };
        let items = list.as_array().ok_or_else(|| {
            EvaluateError::Model(format!("model config {origin}: \"writers\" must be a list"))
        })?;
        let mut writers = Vec::new();
        for (i, entry) in items.iter().enumerate() {
            let name = entry.get("name").and_then(Value::as_str).unwrap_or_default();
            if !matches!(name, "writers.WriteNiftyResults" | "transforms.WriteNiftyResults") {
                return Err(bad(
                    i,
                    format!("{name:?}: only writers.WriteNiftyResults is supported"),
                ));
            }
            let key = entry
                .get("applied_key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(i, "\"applied_key\" is missing".into()))?
                .to_string();
            let (_, transform) =
                aiaa_transforms::registry::build(i, entry).map_err(|e| bad(i, e.to_string()))?;
            writers.push(Writer { key, transform });
        }
        let post = json.get("post_transforms");
        Ok(Writers {
            writers,
            model_names: split_names(post, "model"),
            image_names: split_names(post, "image"),
        })
    }

    /// The keys written, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.writers.iter().map(|w| w.key.as_str()).collect()
    }

    /// Whether there is anything to write.
    pub fn is_empty(&self) -> bool {
        self.writers.is_empty()
    }

    /// The volume a key names for this case, `None` when the case has none.
    fn volume(&self, key: &str, o: &CaseOutputs) -> Result<Option<Volume>, String> {
        if let Some(c) = self.model_names.iter().position(|n| n == key) {
            return label_mask(o.mask, c).map(Some);
        }
        if let Some(c) = self.image_names.iter().position(|n| n == key) {
            return match c {
                0 => Ok(Some(o.image.clone())),
                _ => heatmap(o),
            };
        }
        Ok(match key {
            "prediction" | "model" => Some(o.mask.clone()),
            "image" => Some(o.image.clone()),
            "label" => o.label.cloned(),
            "extreme_points" => heatmap(o)?,
            _ => None,
        })
    }

    /// Writes every writer's key this case has under `output`; returns the files written.
    /// A key no case could have (a typo) is an error naming it.
    pub fn write(&self, output: &Path, file_name: &str, o: &CaseOutputs) -> Result<Vec<PathBuf>, String> {
        let mut d = Data::named(file_name);
        d.output_dir = Some(output.to_path_buf());
        let mut written = Vec::new();
        let mut rng: SampleRng = aiaa_transforms::rng::sample_rng(0, 0, 0);
        for w in &self.writers {
            let known = matches!(
                w.key.as_str(),
                "prediction" | "model" | "image" | "label" | "extreme_points"
            ) || self.model_names.contains(&w.key)
                || self.image_names.contains(&w.key);
            if !known {
                return Err(format!(
                    "writer applied_key {:?} names nothing this tool produces (prediction, model, image, label, extreme_points, or a SplitAcrossChannels name)",
                    w.key
                ));
            }
            let Some(vol) = self.volume(&w.key, o)? else {
                continue;
            };
            d.insert_image(w.key.clone(), Image::new(vol, Kind::from_key(&w.key)));
            w.transform
                .apply(&mut d, &mut rng)
                .map_err(|e| format!("writing {:?}: {e}", w.key))?;
            if let Some(Item::Text(p)) = d.get(&format!("{}_path", w.key)) {
                written.push(PathBuf::from(p));
            }
        }
        Ok(written)
    }
}

/// `mask == c` as a 0/1 `uint8` volume on the mask's grid.
fn label_mask(mask: &Volume, c: usize) -> Result<Volume, String> {
    let n = mask.voxel_count();
    let v: Vec<u8> = (0..n)
        .map(|o| u8::from(mask.voxels.get_f64(o) == c as f64))
        .collect();
    Volume::scalar(mask.dims, mask.geometry, Voxels::U8(v)).map_err(|e| e.to_string())
}

/// The clicks' heat-map on the image's grid, `None` without clicks.
fn heatmap(o: &CaseOutputs) -> Result<Option<Volume>, String> {
    let Some(points) = o.points else {
        return Ok(None);
    };
    let pts: Vec<[f64; 3]> = points.iter().map(|p| p.map(|x| x as f64)).collect();
    let mut h = aiaa_transforms::extreme::heatmap(o.image.dims, &pts, o.sigma);
    aiaa_transforms::extreme::rescale(&mut h, -1.0, 1.0);
    Volume::scalar(o.image.dims, o.image.geometry, Voxels::F32(h))
        .map(Some)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aiaa_imaging::{Geometry, ReadOptions, VoxelType};

    fn vol(v: Vec<u8>) -> Volume {
        Volume::scalar([4, 2, 1], Geometry::with_spacing([1.5, 2.0, 3.0]), Voxels::U8(v)).unwrap()
    }

    #[test]
    fn writers_follow_the_seed_naming_and_dtypes() {
        let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/configs/config_infer_aiaa_Task09_Spleen.json");
        let json: Map<String, Value> = serde_json::from_str(&std::fs::read_to_string(seed).unwrap()).unwrap();
        let w = Writers::from_config(&json, "seed").unwrap();
        assert_eq!(w.keys(), ["prediction", "label", "image", "extreme_points"]);
        let dir = tempfile::tempdir().unwrap();
        let image = Volume::scalar(
            [4, 2, 1],
            Geometry::with_spacing([1.5, 2.0, 3.0]),
            Voxels::F32(vec![0.5; 8]),
        )
        .unwrap();
        let mask = vol(vec![0, 1, 1, 0, 0, 0, 1, 0]);
        let label = vol(vec![0, 1, 0, 0, 0, 0, 1, 1]);
        let pts = [[1, 0, 0]; 6];
        let o = CaseOutputs {
            image: &image,
            label: Some(&label),
            mask: &mask,
            points: Some(&pts),
            sigma: 1.0,
        };
        let files = w.write(dir.path(), "case1.nii.gz", &o).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "case1/case1_prediction.nii.gz",
                "case1/case1_label.nii.gz",
                "case1/case1_image.nii.gz",
                "case1/case1_extreme_points.nii.gz"
            ]
        );
        let read = |p: &Path| aiaa_imaging::io::read_volume(p, &ReadOptions::default()).unwrap();
        let pred = read(&files[0]);
        assert_eq!(pred.voxel_type(), VoxelType::F32, "the seed's float32");
        assert_eq!(pred.voxels.to_f32_vec(), mask.voxels.to_f32_vec());
        assert!(pred.geometry.approx_eq(&image.geometry, 1e-6));
        assert_eq!(read(&files[1]).voxel_type(), VoxelType::U8);
        let heat = read(&files[3]).voxels.to_f32_vec();
        assert_eq!(heat[1], 1.0, "the click is the maximum");
        assert_eq!(heat.iter().cloned().fold(f32::INFINITY, f32::min), -1.0);

        // Unlabelled segmentation case: label and extreme_points are skipped.
        let o = CaseOutputs {
            label: None,
            points: None,
            ..o
        };
        let files = w.write(dir.path(), "case2.mha", &o).unwrap();
        assert_eq!(files.len(), 2);

        // Default writer: uint8 prediction; a typo'd key is an error naming it.
        let w = Writers::from_config(&Map::new(), "x").unwrap();
        let files = w.write(dir.path(), "case3.nii", &o).unwrap();
        assert_eq!(read(&files[0]).voxel_type(), VoxelType::U8);
        let typo = json!({"writers": [{"name": "writers.WriteNiftyResults", "applied_key": "predction"}]});
        let w = Writers::from_config(typo.as_object().unwrap(), "x").unwrap();
        let e = w.write(dir.path(), "c.nii", &o).unwrap_err();
        assert!(e.contains("\"predction\""), "{e}");
        let bad =
            json!({"writers": [{"name": "writers.WriteNiftyResults", "applied_key": "p", "dtype": "int8"}]});
        let e = Writers::from_config(bad.as_object().unwrap(), "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cfg.json") && e.contains("writers[0]") && e.contains("dtype"),
            "{e}"
        );
    }
}
