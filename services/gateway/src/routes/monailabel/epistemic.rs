//! The `epistemic` scoring method and active learning strategy: a segmentation model's
//! uncertainty on every unlabelled image ([`crate::epistemic`]: test-time augmentation, vote
//! entropy), computed as a background `/scoring/` task and cached in each image's info
//! (`epistemic_entropy`, MONAI Label's key, with `epistemic_model` = `<model>@<version>` and
//! `epistemic_image` = the image's sha256): an image is scored again only when the model's
//! version or the image changes. `POST /activelearning/epistemic` proposes the unlabelled
//! image with the highest current score, and starts the scoring in the background when some
//! image has none yet (MONAI Label scores after startup and training; here a stale cache is
//! noticed where it is read, so a retrained model's next suggestion is its own).

use std::time::Instant;

use aiaa_proto::inference::v1::ModelInfo;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::epistemic::{self as tta, MEMBERS};
use crate::error::{GatewayError, Result};
use crate::labelstore::{self, FINAL, Object};
use crate::response::Output;
use crate::routes::infer::{self, Endpoint, Request, Upload};
use crate::routes::models;

/// MONAI Label's info key for the score.
pub const SCORE_KEY: &str = "epistemic_entropy";
const MODEL_KEY: &str = "epistemic_model";
const IMAGE_KEY: &str = "epistemic_image";
/// MONAI Label's default number of simulations.
const DEFAULT_SIMULATIONS: usize = 5;

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

/// The model that scores: `params.model`, else the first served `segmentation` model (by
/// name). Only automatic segmentation models can segment an image without clicks.
pub async fn model(app: &App, params: &Map<String, Value>) -> Result<ModelInfo> {
    let mut served = models::fetch(app, "", "").await?;
    served.sort_by(|a, b| a.name.cmp(&b.name));
    match params.get("model") {
        None | Some(Value::Null) => served
            .into_iter()
            .find(|m| m.model_type == "segmentation")
            .ok_or_else(|| bad("epistemic scoring needs a served segmentation model, and none is loaded")),
        Some(Value::String(name)) => {
            let m = served.into_iter().find(|m| &m.name == name).ok_or_else(|| {
                GatewayError::NotFound(format!("model {name:?} is not loaded (see GET /info/)"))
            })?;
            if m.model_type != "segmentation" {
                return Err(bad(format!(
                    "epistemic scoring needs an automatic segmentation model; {name:?} is of type {:?} and needs clicks",
                    m.model_type
                )));
            }
            Ok(m)
        }
        Some(other) => Err(bad(format!("model must be a model name, not {other}"))),
    }
}

/// `<model>@<version>`: what a cached score was computed with.
pub fn model_key(model: &ModelInfo) -> String {
    format!("{}@{}", model.name, model.version)
}

/// The image's score when it is current for `key`.
pub fn cached(object: &Object, key: &str) -> Option<f64> {
    let info = &object.image.info;
    let current = info.get(MODEL_KEY).and_then(Value::as_str) == Some(key)
        && info.get(IMAGE_KEY).and_then(Value::as_str) == Some(object.image.sha256.as_str());
    current
        .then(|| info.get(SCORE_KEY).and_then(Value::as_f64))
        .flatten()
}

/// The scoring's options from its params.
pub struct Options {
    pub simulation_size: usize,
    /// At most this many images per run (0: all), as MONAI Label's `max_samples`.
    pub max_samples: usize,
}

impl Options {
    pub fn parse(params: &Map<String, Value>) -> Result<Options> {
        let count = |key: &str, default: usize| -> Result<usize> {
            match params.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v
                    .as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| bad(format!("{key} must be a whole number, not {v}"))),
            }
        };
        let simulation_size = count("simulation_size", DEFAULT_SIMULATIONS)?;
        if !(2..=MEMBERS.len()).contains(&simulation_size) {
            return Err(bad(format!(
                "simulation_size must be 2 to {} (the augmentations: {}), not {simulation_size}",
                MEMBERS.len(),
                MEMBERS.join(", ")
            )));
        }
        Ok(Options {
            simulation_size,
            max_samples: count("max_samples", 0)?,
        })
    }
}

/// The model's answer for member `index` of the image, on the image's grid.
async fn member(
    app: &App,
    model: &str,
    name: &str,
    original: &bytes::Bytes,
    image: &aiaa_imaging::Volume,
    index: usize,
) -> Result<Vec<bool>> {
    // The image itself goes as stored; the others as uncompressed NIfTI (fast both ways).
    let (filename, data) = if index == 0 {
        (name.to_string(), original.clone())
    } else {
        let image = image.clone();
        let bytes = crate::work::cpu(move || {
            let v = tta::variant(&image, index, 0x5eed + index as u64)?;
            aiaa_imaging::io::encode_bytes(&v, ".nii", false)
                .map_err(|e| GatewayError::Internal(format!("encoding an augmented image: {e}")))
        })
        .await?;
        (format!("{}.nii", MEMBERS[index]), bytes::Bytes::from(bytes))
    };
    let params: Map<String, Value> = [("result_extension".to_string(), json!(".nii"))]
        .into_iter()
        .collect();
    let request = Request {
        model: model.to_string(),
        session_id: None,
        output: Output::Image,
        params_json: Value::Object(params.clone()).to_string(),
        params,
        image: Some((filename, Upload::Bytes(data))),
        label: None,
    };
    let answer = infer::call(app, Endpoint::Segmentation, request).await?;
    let file = answer
        .file
        .ok_or_else(|| GatewayError::Internal("the inference service answered no mask".into()))?;
    let (image, limit) = (image.clone(), app.max_image_bytes);
    crate::work::cpu(move || {
        let mask = crate::image::decode(Some(&file.filename), &file.data, limit)?;
        tta::foreground(&image, index, &mask)
    })
    .await
}

/// The score of one image.
async fn score_image(app: &App, model: &str, object: &Object, simulations: usize) -> Result<f64> {
    let original = labelstore::get(app, false, &object.image.item_id).await?;
    let (name, limit) = (object.image.name(), app.max_image_bytes);
    let bytes = original.clone();
    let image = crate::work::cpu(move || crate::image::decode(Some(&name), &bytes, limit)).await?;
    let mut masks = Vec::with_capacity(simulations);
    for index in 0..simulations {
        masks.push(member(app, model, &object.image.name(), &original, &image, index).await?);
    }
    crate::work::cpu(move || Ok(tta::vote_entropy(&masks))).await
}

/// The scoring task `id`: every unlabelled image whose score is not current.
pub async fn run(app: &App, id: &str, model: &ModelInfo, options: &Options) -> Result<Value> {
    let started = Instant::now();
    let key = model_key(model);
    let unlabelled: Vec<(String, Object)> = labelstore::objects(app)
        .await?
        .into_iter()
        .filter(|(_, o)| !o.labels.contains_key(FINAL))
        .collect();
    let total = unlabelled.len();
    let mut todo: Vec<_> = unlabelled
        .into_iter()
        .filter(|(_, o)| cached(o, &key).is_none())
        .collect();
    let skipped = total - todo.len();
    if options.max_samples > 0 {
        todo.truncate(options.max_samples);
    }
    let mut scores = Map::new();
    for (image, object) in &todo {
        if app.scoring.stopped(id) {
            break;
        }
        let t = Instant::now();
        let score = score_image(app, &model.name, object, options.simulation_size).await?;
        // The info as it is now (an annotator may have changed it meanwhile).
        let mut info = labelstore::object(app, image).await?.image.info;
        info.insert(SCORE_KEY.into(), json!(score));
        info.insert("epistemic_ts".into(), json!(labelstore::now_ts()));
        info.insert(MODEL_KEY.into(), json!(key));
        info.insert(IMAGE_KEY.into(), json!(object.image.sha256));
        labelstore::set_info(app, false, &object.image.item_id, &info).await?;
        app.scoring.update(id, |t_| {
            t_.note(format!(
                "EPISTEMIC:: {image} => entropy: {score:.4}; {} simulations in {:.1} s",
                options.simulation_size,
                t.elapsed().as_secs_f64()
            ))
        });
        scores.insert(image.clone(), json!(score));
    }
    Ok(json!({
        "model": key,
        "total": total,
        "skipped": skipped,
        "executed": scores.len(),
        "latency": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        "scores": scores,
    }))
}
