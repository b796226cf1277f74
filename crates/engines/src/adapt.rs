//! Offline transform lists as an engine's `pre_transforms`: the one adaptation used by the
//! engines at load, by `aiaa evaluate` / `aiaa infer` and by the trainer's export.
//!
//! The seed's users write their inference and evaluation configs (seed chapters 8 and 9) by
//! copying a training config's `validate.pre_transforms`, and its own annotation model
//! config (4.1.1) runs `VolumeTo4dArray` on `["image", "label"]`. Those lists load the
//! files, crop around the label and name the label field; an engine gets the image alone
//! (the annotation engine also the clicks, as points under the extreme-points transform's
//! `label_field`). So, each change noted:
//!
//! - loaders (`transforms.Load*`) and writers are dropped: the engine is given the image;
//! - label-driven and random crops are dropped: there is no label (the annotation engine
//!   crops around the clicks itself, by `padding` mm), and the annotation and deepgrow
//!   engines' own resize to `roi` replaces the resizing transforms;
//! - the label keys (`label` and the extreme-points `label_field`) are taken out of every
//!   other transform's `fields` / `field` / `applied_keys`, and a transform left with no key
//!   is dropped: the engine holds no label image there (points, or nothing);
//! - `AddExtremePointsChannel` gets `pert` 0: the clicks are used as given;
//! - the annotation engine's `roi`, when its config sets none, is the dropped
//!   `CropForegroundObject`'s `size` ([`crop_roi`]): the network's input in training.
//!
//! A list that needs none of this comes back unchanged, so adapting twice changes nothing.

use serde_json::{Map, Value, json};

use crate::kind::EngineKind;

/// An adapted list and what was changed, one line per change.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Adapted {
    /// The transforms the engine runs.
    pub transforms: Vec<Value>,
    /// One line per change (for logs and reports).
    pub notes: Vec<String>,
}

/// The seed's extreme-points transform: where the annotation engine puts the clicks.
pub const EXTREME_POINTS: &str = "transforms.AddExtremePointsChannel";

fn name_of(t: &Value) -> &str {
    t.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// Why the engine does a transform's work itself, or `None` when it runs the transform.
fn done_by_engine(name: &str, kind: EngineKind) -> Option<&'static str> {
    if name.starts_with("transforms.Load") {
        return Some("the engine is given the image");
    }
    if name.starts_with("writers.") {
        return Some("the engine returns its result");
    }
    let cropping = matches!(
        name,
        "transforms.CropForegroundObject"
            | "transforms.CropSubVolumeRandomWithinBounds"
            | "transforms.CropSubVolumeCenter"
            | "transforms_ctrl.CropSubVolumePosNegRatioCtrlEpoch"
            | "transforms_fastaug.TransformVolumeCropROIFastPosNegRatio"
            | "transforms.CropRandomSubImageInRange"
    );
    let resizing = matches!(
        name,
        "transforms.NPResizeImage" | "transforms.ResampleVolume" | "transforms.Resize"
    );
    match kind {
        EngineKind::Dextr3dCropped if cropping || resizing => {
            Some("the engine crops around the clicks by `padding` mm and resizes to `roi` itself")
        }
        EngineKind::Deepgrow if cropping || resizing => {
            Some("the engine resizes the image (or the clicks' region) to `roi` itself")
        }
        _ if cropping => Some("there is no label to crop around at inference"),
        _ => None,
    }
}

/// The first transform of `list` (a JSON array) named `name`.
pub fn find<'a>(list: &'a Value, name: &str) -> Option<&'a Map<String, Value>> {
    list.as_array()?
        .iter()
        .filter_map(Value::as_object)
        .find(|t| t.get("name").and_then(Value::as_str) == Some(name))
}

/// The key the extreme-points transform reads its points from (its `label_field`, else
/// `label`): where an annotation engine puts the clicks.
pub fn points_key(list: &Value) -> &str {
    find(list, EXTREME_POINTS)
        .and_then(|t| t.get("label_field"))
        .and_then(Value::as_str)
        .unwrap_or("label")
}

/// The `size` of a list's `CropForegroundObject`: the crop the network was trained on, so
/// the annotation engine's `roi` when its config sets none.
pub fn crop_roi(list: &Value) -> Option<[usize; 3]> {
    find(list, "transforms.CropForegroundObject")
        .and_then(|t| serde_json::from_value::<[usize; 3]>(t.get("size")?.clone()).ok())
        .filter(|s| !s.contains(&0))
}

/// `list` (a JSON array of transforms) adapted for an engine of `kind`; see the module docs.
pub fn pre_transforms(list: &Value, kind: EngineKind) -> Adapted {
    // Keys that hold labels (or the clicks) in a training list, and nothing image-like here.
    let label_keys = ["label", points_key(list)];
    let is_label = |v: &Value| v.as_str().is_some_and(|s| label_keys.contains(&s));
    let list = list.as_array().cloned().unwrap_or_default();
    let mut out = Adapted::default();
    for (n, mut t) in list.into_iter().enumerate() {
        let name = name_of(&t).to_string();
        let at = format!("pre_transforms[{n}] {name}");
        if let Some(why) = done_by_engine(&name, kind) {
            out.notes.push(format!("{at} dropped: {why}"));
            continue;
        }
        if name == EXTREME_POINTS {
            if t.get("pert").and_then(Value::as_f64).is_some_and(|p| p != 0.0) {
                out.notes
                    .push(format!("{at}: pert set to 0 (the clicks are used as given)"));
                t["pert"] = json!(0);
            }
            out.transforms.push(t);
            continue;
        }
        let mut left_with_none = false;
        if let Some(obj) = t.as_object_mut() {
            for arg in ["fields", "field", "applied_keys"] {
                let Some(value) = obj.get(arg) else { continue };
                let taken: Vec<&str> = match value {
                    Value::Array(a) => a
                        .iter()
                        .filter(|v| is_label(v))
                        .filter_map(Value::as_str)
                        .collect(),
                    v if is_label(v) => v.as_str().into_iter().collect(),
                    _ => continue,
                };
                if taken.is_empty() {
                    continue;
                }
                let taken = taken.join(", ");
                let rest: Vec<Value> = match value {
                    Value::Array(a) => a.iter().filter(|v| !is_label(v)).cloned().collect(),
                    _ => Vec::new(),
                };
                if rest.is_empty() {
                    left_with_none = true;
                    out.notes.push(format!(
                        "{at} dropped: it acts only on {taken}, which holds no image at inference"
                    ));
                    break;
                }
                out.notes.push(format!(
                    "{at}: {taken} taken out of {arg} (it holds no image at inference)"
                ));
                obj.insert(arg.into(), Value::Array(rest));
            }
        }
        if !left_with_none {
            out.transforms.push(t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_validation_list_becomes_what_the_engine_runs() {
        let validate = json!([
            {"name": "transforms.LoadNifty", "fields": ["image", "label"]},
            {"name": "transforms.VolumeTo4dArray", "fields": ["image", "label"]},
            {"name": "transforms.CropForegroundObject", "size": [64, 64, 64], "image_field": "image",
             "label_field": "label", "pad": 20},
            {"name": "transforms.NormalizeIntensity", "fields": "image"},
            {"name": "transforms.ScaleIntensityRange", "field": "label", "magnitude": 0.1},
            {"name": "transforms.AddExtremePointsChannel", "image_field": "image", "label_field": "label",
             "sigma": 3, "pert": 2}
        ]);
        let a = pre_transforms(&validate, EngineKind::Dextr3dCropped);
        assert_eq!(
            a.transforms,
            vec![
                json!({"name": "transforms.VolumeTo4dArray", "fields": ["image"]}),
                json!({"name": "transforms.NormalizeIntensity", "fields": "image"}),
                json!({"name": "transforms.AddExtremePointsChannel", "image_field": "image",
                       "label_field": "label", "sigma": 3, "pert": 0}),
            ]
        );
        assert_eq!(a.notes.len(), 5, "{:?}", a.notes);
        assert!(
            a.notes[1].contains("pre_transforms[1] transforms.VolumeTo4dArray: label taken out of fields")
        );
        assert!(
            a.notes[3]
                .contains("pre_transforms[4] transforms.ScaleIntensityRange dropped: it acts only on label")
        );
        // Adapting again changes nothing.
        let again = pre_transforms(&Value::Array(a.transforms.clone()), EngineKind::Dextr3dCropped);
        assert_eq!((again.transforms, again.notes.len()), (a.transforms, 0));
        // Segmentation keeps the resizing transforms, drops the same others.
        let seg = pre_transforms(&validate, EngineKind::Segmentation);
        assert_eq!(seg.transforms.len(), 3);
    }

    #[test]
    fn a_custom_points_key_is_a_label_key_too() {
        let list = json!([
            {"name": "transforms.VolumeTo4dArray", "fields": ["image", "seg", "label"]},
            {"name": "transforms.NPRandomFlip3D", "applied_keys": ["seg"]},
            {"name": "transforms.AddExtremePointsChannel", "image_field": "image", "label_field": "seg",
             "sigma": 3, "pert": 0}
        ]);
        let a = pre_transforms(&list, EngineKind::Dextr3dCropped);
        assert_eq!(
            a.transforms[0],
            json!({"name": "transforms.VolumeTo4dArray", "fields": ["image"]})
        );
        assert_eq!(a.transforms.len(), 2);
        assert!(
            a.notes[0].contains("seg, label taken out of fields"),
            "{:?}",
            a.notes
        );
    }
}
