//! `GET /v1/models`: the loaded models from the inference service's ListModels, as the AIAA
//! clients read them (`version` a string, `description` always present, `padding` and `roi`
//! for annotation models, `deepgrow` "2D"/"3D" for deepgrow models). `label=` and `type=`
//! filter; `model=NAME` answers that one model as an object, or 404.

use aiaa_proto::inference::v1::{ListModelsRequest, ModelInfo};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::{Value, json};

use crate::app::App;
use crate::backend::timed;
use crate::error::{GatewayError, Result, Subject};
use crate::{params, response};

/// A model object as the clients expect it.
pub fn model_json(m: &ModelInfo) -> Value {
    let kind = if m.model_type.is_empty() {
        "others"
    } else {
        m.model_type.as_str()
    };
    let mut o = json!({
        "name": m.name,
        "labels": m.labels,
        "type": kind,
        "description": m.description,
        "version": m.version,
        "internal name": m.engine,
    });
    if kind == "annotation" {
        o["padding"] = json!(m.padding);
        o["roi"] = json!(m.roi);
    }
    if kind == "deepgrow" {
        o["deepgrow"] = json!(if m.roi.len() == 2 { "2D" } else { "3D" });
        if !m.roi.is_empty() {
            o["roi"] = json!(m.roi);
        }
    }
    if m.sigma > 0.0 {
        o["sigma"] = json!(m.sigma);
    }
    // Ours, not the seed's: which form of the TorchScript serves ("frozen" is the fast path).
    if !m.torchscript.is_empty() {
        o["torchscript"] = json!(m.torchscript);
    }
    o
}

/// Lists the loaded models, filtered by type and label.
pub async fn fetch(app: &App, model_type: &str, label: &str) -> Result<Vec<ModelInfo>> {
    let mut client = app.backends.inference()?;
    let request = ListModelsRequest {
        model_type: model_type.to_string(),
        label: label.to_string(),
    };
    let answer = timed("inference", app.backends.timeout, async move {
        client
            .list_models(request)
            .await
            .map_err(|s| GatewayError::from_status("inference", Subject::Model, &s))
    })
    .await?;
    Ok(answer.into_inner().models)
}

/// `GET /v1/models`.
pub async fn list(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Response> {
    let query = params::query(raw.as_deref());
    let get = |k: &str| query.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    let models = fetch(&app, &get("type"), &get("label")).await?;
    let name = get("model");
    if !name.is_empty() {
        let model = models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| GatewayError::NotFound(format!("model {name:?} is not loaded")))?;
        return Ok(response::json(&model_json(model)));
    }
    Ok(response::json(&Value::Array(
        models.iter().map(model_json).collect(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_model_object() {
        let m = ModelInfo {
            name: "annotation_mri_brain".into(),
            model_type: "annotation".into(),
            labels: vec!["brain".into()],
            version: "2".into(),
            roi: vec![128, 128, 128],
            padding: 20.0,
            engine: "Dextr3dCroppedEngine".into(),
            torchscript: "frozen".into(),
            ..Default::default()
        };
        let o = model_json(&m);
        assert_eq!(o["version"], json!("2"));
        assert_eq!(o["description"], json!(""));
        assert_eq!(o["roi"], json!([128, 128, 128]));
        assert_eq!(o["padding"], json!(20.0));
        assert_eq!(o["internal name"], json!("Dextr3dCroppedEngine"));
        assert_eq!(o["torchscript"], json!("frozen"));
        // Absent when the inference service does not say (an older one).
        let o = model_json(&ModelInfo::default());
        assert!(o.get("torchscript").is_none(), "{o}");
    }
}
