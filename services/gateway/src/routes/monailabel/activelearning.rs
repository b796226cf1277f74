//! `POST /activelearning/{strategy}`: the next image to label, among those without a
//! `final` label. `first`: the first such id in order; `random`: a random one, weighted by
//! how long ago each was last proposed by this strategy (never: the most weight), as
//! MONAI Label does; `epistemic`: the one the model is least sure of
//! ([`super::epistemic`]: the highest current score; images not scored yet for the served
//! model version come after the scored ones, and their scoring starts in the background;
//! ties go to the one proposed longest ago). No image left: `{}` with 200. The answer is the image's info with
//! `id`, `name` (`<id><ext>`) and `checksum` (`SHA256:<hex>`), never a server path; the
//! proposal is recorded in the image's info (`strategy.<name>.ts`, `client_id`).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{USER, epistemic, object, scoring, small_body};
use crate::app::App;
use crate::error::{GatewayError, Result};
use crate::labelstore::{self, FINAL};
use crate::response;
use crate::routes::monailabel::datastore::image_info;
use crate::routes::monailabel::info::STRATEGIES;

/// When `strategy` last proposed an image (0: never).
fn last_proposed(info: &Map<String, Value>, strategy: &str) -> u64 {
    info.get("strategy")
        .and_then(|s| s.get(strategy))
        .and_then(|s| s.get("ts"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// `POST /activelearning/{strategy}`.
pub async fn next_sample(
    State(app): State<App>,
    Path(strategy): Path<String>,
    body: Body,
) -> Result<Response> {
    if !STRATEGIES.iter().any(|(name, _)| *name == strategy) {
        let known: Vec<&str> = STRATEGIES.iter().map(|(n, _)| *n).collect();
        return Err(GatewayError::NotFound(format!(
            "no active learning strategy {strategy:?}; this server has {}",
            known.join(", ")
        )));
    }
    let body = small_body(body).await?;
    let params = object("the request body", std::str::from_utf8(&body).ok())?;
    let objects = labelstore::objects(&app).await?;
    let candidates: Vec<_> = objects
        .iter()
        .filter(|(_, o)| !o.labels.contains_key(FINAL))
        .collect();
    let now = labelstore::now_ts();
    let chosen = match strategy.as_str() {
        "first" => candidates.first().copied(),
        "epistemic" => {
            let model = epistemic::model(&app, &params).await?;
            let key = epistemic::model_key(&model);
            if candidates
                .iter()
                .any(|(_, o)| epistemic::cached(o, &key).is_none())
                && app.scoring.status(false, true).is_none()
            {
                // The unscored images get their score in the background; a scoring
                // started meanwhile by someone else (429) does it as well.
                let mut scoring = Map::new();
                scoring.insert("model".into(), json!(model.name));
                if let Err(e) = scoring::start(&app, "epistemic", scoring).await {
                    tracing::info!(error = %e, "epistemic scoring not started");
                }
            }
            let rank = |(_, o): &&(&String, &labelstore::Object)| {
                (
                    epistemic::cached(o, &key).unwrap_or(f64::NEG_INFINITY),
                    std::cmp::Reverse(last_proposed(&o.image.info, &strategy)),
                )
            };
            candidates
                .iter()
                .max_by(|a, b| {
                    let (ra, rb) = (rank(a), rank(b));
                    ra.0.total_cmp(&rb.0).then(ra.1.cmp(&rb.1))
                })
                .copied()
        }
        _ => {
            // Weighted by the time since the last proposal, so that a proposed image comes
            // back last; an image never proposed weighs as much as the oldest possible.
            let weights: Vec<f64> = candidates
                .iter()
                .map(|(_, o)| (now.saturating_sub(last_proposed(&o.image.info, &strategy)) as f64).max(1.0))
                .collect();
            let total: f64 = weights.iter().sum();
            let mut pick = rand::random::<f64>() * total;
            let mut chosen = candidates.last().copied();
            for (c, w) in candidates.iter().zip(&weights) {
                if pick < *w {
                    chosen = Some(*c);
                    break;
                }
                pick -= w;
            }
            chosen
        }
    };
    let Some((id, object)) = chosen else {
        return Ok(response::json(&json!({})));
    };
    let client_id = params
        .get("client_id")
        .and_then(Value::as_str)
        .unwrap_or(USER)
        .to_string();
    let mut info = object.image.info.clone();
    let mut strategies = info
        .get("strategy")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    strategies.insert(strategy.clone(), json!({"ts": now, "client_id": client_id}));
    info.insert("strategy".into(), Value::Object(strategies));
    labelstore::set_info(&app, false, &object.image.item_id, &info).await?;
    let mut answer = image_info(&object.image);
    answer.insert("strategy".into(), info["strategy"].clone());
    answer.insert("id".into(), json!(id));
    answer.insert("name".into(), json!(object.image.name()));
    Ok(response::json(&Value::Object(answer)))
}
