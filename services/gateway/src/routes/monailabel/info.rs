//! `GET /info/`: the server as MONAI Label 0.8.5 describes itself, which its clients read
//! strictly: exactly `name, description, version, labels, models, trainers, strategies,
//! scoring, train_stats, datastore`; no `config` key (3D Slicer then refuses the server as
//! too old); `labels` a list (OHIF appends to it); every model with `type`, `labels`,
//! `dimension`, `description` and `config`. Models whose engine has no MONAI Label type are
//! left out (none today: DEXTR3D is listed as `deepgrow`, see
//! [`aiaa_proto::inference::v1::ModelInfo::monailabel_type`]).

use axum::extract::State;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::app::App;
use crate::error::Result;
use crate::labelstore;
use crate::response;
use crate::routes::models;
use crate::training::TrainOptions;

/// The active learning strategies served, with their descriptions.
pub const STRATEGIES: &[(&str, &str)] = &[
    ("first", "Get First Sample"),
    ("random", "Random Strategy"),
    (
        "epistemic",
        "The image the segmentation model is least sure of (test-time augmentation)",
    ),
];

/// `GET /info/`.
pub async fn info(State(app): State<App>) -> Result<Response> {
    let loaded = models::fetch(&app, "", "").await?;
    let objects = labelstore::objects(&app).await?;
    let mut labels: Vec<String> = Vec::new();
    let mut models = Map::new();
    for m in loaded.iter().filter(|m| !m.monailabel_type.is_empty()) {
        for l in &m.labels {
            if !labels.contains(l) {
                labels.push(l.clone());
            }
        }
        let mut description = m.description.clone();
        if m.model_type == "annotation" {
            description
                .push_str(" (DEXTR3D: click the six extreme points of the structure as foreground points)");
        }
        models.insert(
            m.name.clone(),
            json!({
                "type": m.monailabel_type,
                "labels": m.labels,
                "dimension": 3,
                "description": description,
                "version": m.version,
                "config": {},
            }),
        );
    }
    let trainers: Map<String, Value> = loaded
        .iter()
        .filter(|m| m.trainable && !m.monailabel_type.is_empty())
        .map(|m| {
            (
                m.name.clone(),
                json!({
                    "description": format!("fine-tunes {} on the final labels and serves the result", m.registry_ref),
                    "config": TrainOptions::defaults_json(),
                }),
            )
        })
        .collect();
    let scoring: Map<String, Value> = super::scoring::METHODS
        .iter()
        .map(|(name, description)| (name.to_string(), json!({ "description": description })))
        .collect();
    let strategies: Map<String, Value> = STRATEGIES
        .iter()
        .map(|(name, description)| (name.to_string(), json!({ "description": description })))
        .collect();
    Ok(response::json(&json!({
        "name": "AIAA",
        "description": "AI-assisted annotation (Clara AIAA's API and MONAI Label's API on one port)",
        "version": env!("CARGO_PKG_VERSION"),
        "labels": labels,
        "models": models,
        "trainers": trainers,
        "strategies": strategies,
        "scoring": scoring,
        "train_stats": app.training.stats(),
        "datastore": labelstore::stats(&objects),
    })))
}
