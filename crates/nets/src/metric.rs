//! `MetricAverageFromArrayDice`, the seed's validation metric (`validate.metrics`): mean Dice
//! over the foreground classes, per sample, averaged over every sample seen.
//!
//! ```json
//! {"name": "MetricAverageFromArrayDice", "tag": "mean_dice", "stopping_metric": true, "applied_key": "model"}
//! ```
//!
//! Predictions are the model output `[N, K, X, Y, Z]` after its final activation (the seed's
//! `applied_key: "model"`): with `K > 1` the class is the argmax over channels (the same for
//! logits and probabilities); with `K == 1` it is foreground where the output is ≥ `threshold`
//! (default 0.5: pass probabilities, or set 0 for logits). Labels are class indices
//! (`[N, 1, X, Y, Z]` or `[N, X, Y, Z]`; with `K == 1`, foreground is `label > 0`).
//!
//! Per sample and foreground class `c` (`1..K`, or the single class when `K == 1`):
//! `dice_c = 2 |P_c ∩ G_c| / (|P_c| + |G_c|)`, and 1 when the class is absent from both
//! prediction and label (nothing to find, nothing found). A sample's score is the mean over
//! its classes; the metric is the mean over samples.

use serde_json::Value;
use tch::{Kind, Tensor};

use crate::error::{NetsError, Result};
use crate::fields::Fields;

/// One parsed entry of `validate.metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricConfig {
    /// `tag`: the name the value is reported under (default `"mean_dice"`).
    pub tag: String,
    /// `stopping_metric`: whether this metric selects the best model (default `false`).
    pub stopping_metric: bool,
    /// `applied_key`: the output it reads (default `"model"`).
    pub applied_key: String,
    /// `threshold` (ours): the foreground threshold for single-channel outputs (default 0.5).
    pub threshold: f64,
}

impl MetricConfig {
    /// Reads one `validate.metrics` entry; only `MetricAverageFromArrayDice` exists.
    pub fn from_json(value: &Value) -> Result<Self> {
        let mut f = Fields::new(value, "validate.metrics")?;
        let name = f.req_str("name")?;
        if name != "MetricAverageFromArrayDice" {
            return Err(f.error(
                "name",
                format!("unknown metric {name:?} (known: MetricAverageFromArrayDice)"),
            ));
        }
        let cfg = MetricConfig {
            tag: f.str("tag")?.unwrap_or("mean_dice").to_string(),
            stopping_metric: f.bool("stopping_metric")?.unwrap_or(false),
            applied_key: f.str("applied_key")?.unwrap_or("model").to_string(),
            threshold: f.f64("threshold")?.unwrap_or(0.5),
        };
        f.finish()?;
        Ok(cfg)
    }

    /// A fresh accumulator for this metric.
    pub fn build(&self) -> MetricAverageFromArrayDice {
        MetricAverageFromArrayDice::new(self.threshold)
    }
}

/// Accumulates per-sample mean Dice; see the module docs.
#[derive(Debug, Clone)]
pub struct MetricAverageFromArrayDice {
    threshold: f64,
    sum: f64,
    count: usize,
}

impl MetricAverageFromArrayDice {
    /// An empty accumulator with the single-channel `threshold`.
    pub fn new(threshold: f64) -> Self {
        MetricAverageFromArrayDice {
            threshold,
            sum: 0.0,
            count: 0,
        }
    }

    /// Adds a batch; returns its per-sample scores.
    pub fn update(&mut self, output: &Tensor, labels: &Tensor) -> Result<Vec<f64>> {
        let scores = mean_dice_per_sample(output, labels, self.threshold)?;
        self.sum += scores.iter().sum::<f64>();
        self.count += scores.len();
        Ok(scores)
    }

    /// The mean over all samples added, `None` before the first.
    pub fn aggregate(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// Samples added so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Forgets every sample.
    pub fn reset(&mut self) {
        self.sum = 0.0;
        self.count = 0;
    }
}

/// Class indices `[N, X, Y, Z]` (Int64) from a model output `[N, K, X, Y, Z]`: argmax over
/// channels when `K > 1`, `output >= threshold` when `K == 1`.
pub fn predicted_labels(output: &Tensor, threshold: f64) -> Result<Tensor> {
    let size = output.size();
    if size.len() != 5 {
        return Err(NetsError::Shape(format!(
            "model output must be [N, K, X, Y, Z], got {size:?}"
        )));
    }
    Ok(if size[1] == 1 {
        output.f_squeeze_dim(1)?.f_ge(threshold)?.f_to_kind(Kind::Int64)?
    } else {
        output.f_argmax(1, false)?
    })
}

/// Per-sample Dice scores, one `Vec` per sample with one value per foreground class (see
/// the module docs).
pub fn dice_per_class(output: &Tensor, labels: &Tensor, threshold: f64) -> Result<Vec<Vec<f64>>> {
    let pred = predicted_labels(output, threshold)?;
    let k = output.size()[1];
    let lsize = labels.size();
    let labels = match lsize.len() {
        5 if lsize[1] == 1 => labels.f_squeeze_dim(1)?,
        4 => labels.shallow_clone(),
        _ => {
            return Err(NetsError::Shape(format!(
                "labels must be [N, 1, X, Y, Z] or [N, X, Y, Z], got {lsize:?}"
            )));
        }
    };
    if labels.size() != pred.size() {
        return Err(NetsError::Shape(format!(
            "labels {:?} do not match predictions {:?}",
            labels.size(),
            pred.size()
        )));
    }
    let labels = if k == 1 {
        labels.f_gt(0.0)?.f_to_kind(Kind::Int64)?
    } else {
        labels.f_round()?.f_to_kind(Kind::Int64)?
    };
    let classes = k.max(2);
    let (min, max) = (labels.f_min()?.int64_value(&[]), labels.f_max()?.int64_value(&[]));
    if min < 0 || max >= classes {
        return Err(NetsError::Shape(format!(
            "labels hold classes {min}..={max}, outside 0..{classes}"
        )));
    }
    let p = pred
        .f_one_hot(classes)?
        .f_narrow(-1, 1, classes - 1)?
        .f_to_kind(Kind::Double)?;
    let g = labels
        .f_one_hot(classes)?
        .f_narrow(-1, 1, classes - 1)?
        .f_to_kind(Kind::Double)?;
    let axes = [1i64, 2, 3];
    let inter = p
        .f_mul(&g)?
        .f_sum_dim_intlist(axes.as_slice(), false, None::<Kind>)?;
    let total = p
        .f_add(&g)?
        .f_sum_dim_intlist(axes.as_slice(), false, None::<Kind>)?;
    let inter = Vec::<f64>::try_from(inter.f_flatten(0, -1)?.f_to_device(tch::Device::Cpu)?)?;
    let total = Vec::<f64>::try_from(total.f_flatten(0, -1)?.f_to_device(tch::Device::Cpu)?)?;
    let per = (classes - 1) as usize;
    Ok(inter
        .chunks(per)
        .zip(total.chunks(per))
        .map(|(i, t)| {
            i.iter()
                .zip(t)
                .map(|(&i, &t)| if t == 0.0 { 1.0 } else { 2.0 * i / t })
                .collect()
        })
        .collect())
}

/// Each sample's mean Dice over its foreground classes.
pub fn mean_dice_per_sample(output: &Tensor, labels: &Tensor, threshold: f64) -> Result<Vec<f64>> {
    Ok(dice_per_class(output, labels, threshold)?
        .into_iter()
        .map(|d| d.iter().sum::<f64>() / d.len() as f64)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hand_computed_scores() {
        // Two samples, three classes, 4 voxels each (shape [2, 3, 4, 1, 1]).
        // Sample 0: predicted classes 1, 1, 2, 0; labels 1, 0, 2, 2.
        //   class 1: P = {0, 1}, G = {0} → 2·1/3; class 2: P = {2}, G = {2, 3} → 2·1/3.
        // Sample 1: predicted 0, 0, 0, 0; labels 0, 0, 0, 1.
        //   class 1: 0 / 1 → 0; class 2: absent from both → 1.
        let pred = [[1i64, 1, 2, 0], [0, 0, 0, 0]];
        let mut out = vec![0f32; 2 * 3 * 4];
        for (n, p) in pred.iter().enumerate() {
            for (v, &c) in p.iter().enumerate() {
                out[n * 12 + c as usize * 4 + v] = 1.0;
            }
        }
        let output = Tensor::from_slice(&out).reshape([2, 3, 4, 1, 1]);
        let labels =
            Tensor::from_slice(&[1.0f32, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 1.0]).reshape([2, 1, 4, 1, 1]);
        let per = dice_per_class(&output, &labels, 0.5).unwrap();
        assert_eq!(per, vec![vec![2.0 / 3.0, 2.0 / 3.0], vec![0.0, 1.0]]);
        let mut m =
            MetricConfig::from_json(&json!({"name": "MetricAverageFromArrayDice", "tag": "mean_dice",
            "stopping_metric": true, "applied_key": "model"}))
            .unwrap()
            .build();
        assert_eq!(m.aggregate(), None);
        assert_eq!(m.update(&output, &labels).unwrap(), vec![2.0 / 3.0, 0.5]);
        assert!((m.aggregate().unwrap() - (2.0 / 3.0 + 0.5) / 2.0).abs() < 1e-12);
        m.reset();
        assert_eq!(m.count(), 0);
    }

    #[test]
    fn single_channel_threshold() {
        let output = Tensor::from_slice(&[0.9f32, 0.6, 0.2, 0.4]).reshape([1, 1, 4, 1, 1]);
        let labels = Tensor::from_slice(&[1i64, 0, 3, 0]).reshape([1, 4, 1, 1]);
        // P = {0, 1}, G = {0, 2}: 2·1/4.
        assert_eq!(mean_dice_per_sample(&output, &labels, 0.5).unwrap(), vec![0.5]);
        assert!(matches!(
            mean_dice_per_sample(&output, &labels.reshape([1, 2, 2, 1]), 0.5),
            Err(NetsError::Shape(_))
        ));
        let bad = MetricConfig::from_json(&json!({"name": "MetricAverageFromArrayDice", "tags": "x"}));
        assert!(matches!(bad, Err(NetsError::Config { key, .. }) if key == "tags"));
    }
}
