//! The training losses of `train.loss`: `losses.dice_loss` and `losses.dice_ce_loss`.
//!
//! ```json
//! "loss": {"name": "losses.dice_loss"}
//! "loss": {"name": "losses.dice_ce_loss", "lambda_dice": 1.0, "lambda_ce": 1.0, "smooth": 1e-5}
//! ```
//!
//! Both take the network's logits `[N, K, X, Y, Z]` and labels as class indices
//! (`[N, 1, X, Y, Z]` or `[N, X, Y, Z]`, any numeric kind), one-hot encoded to `K` channels
//! (with `K == 1`, the single channel's target is `label > 0`). Probabilities come from the
//! network's `final_activation`: softmax or sigmoid; with `"none"` the loss still needs
//! probabilities and uses softmax when `K > 1`, sigmoid when `K == 1`.
//!
//! Dice arguments (the names of Clara's `dice_loss`):
//! - `skip_background` (default `true`): Dice over the foreground channels `1..K` only. With
//!   `K == 1` the one channel is foreground and is always used.
//! - `squared_pred` (default `false`): sum `p²` instead of `p` in the denominator.
//! - `jaccard` (default `false`): denominator `Σp + Σg − Σpg` (soft IoU) instead of `Σp + Σg`.
//! - `smooth` (default `1e-5`): added to the denominator; `top_smooth` (default `0`): added to
//!   the numerator. Per sample `n` and channel `c`, over all voxels:
//!   `dice = (2 Σ p·g + top_smooth) / (Σ p + Σ g + smooth)`, and the loss is
//!   `1 − mean_{n,c} dice`. `smooth` only guards the division: a class absent from both the
//!   target and the prediction scores 0 unless `top_smooth` is raised to match it.
//! - `is_onehot_targets` (default `false`): the labels are already `[N, K, X, Y, Z]` one-hot.
//!
//! `losses.dice_ce_loss` adds `lambda_ce` × cross-entropy (softmax: multi-class cross-entropy
//! on the logits; sigmoid: binary cross-entropy with logits against the one-hot targets, mean
//! over every element) to `lambda_dice` × the Dice loss (both default 1).

use serde_json::Value;
use tch::{Kind, Reduction, Tensor};

use crate::config::FinalActivation;
use crate::error::{NetsError, Result};
use crate::fields::Fields;

/// The soft Dice loss; see the module docs for its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct DiceLoss {
    /// `skip_background`.
    pub skip_background: bool,
    /// `squared_pred`.
    pub squared_pred: bool,
    /// `jaccard`.
    pub jaccard: bool,
    /// `smooth` (denominator).
    pub smooth: f64,
    /// `top_smooth` (numerator).
    pub top_smooth: f64,
    /// `is_onehot_targets`.
    pub is_onehot_targets: bool,
}

impl Default for DiceLoss {
    fn default() -> Self {
        DiceLoss {
            skip_background: true,
            squared_pred: false,
            jaccard: false,
            smooth: 1e-5,
            top_smooth: 0.0,
            is_onehot_targets: false,
        }
    }
}

impl DiceLoss {
    fn read(f: &mut Fields<'_>) -> Result<Self> {
        let d = DiceLoss::default();
        Ok(DiceLoss {
            skip_background: f.bool("skip_background")?.unwrap_or(d.skip_background),
            squared_pred: f.bool("squared_pred")?.unwrap_or(d.squared_pred),
            jaccard: f.bool("jaccard")?.unwrap_or(d.jaccard),
            smooth: f.f64_in("smooth", 0.0, f64::MAX, false)?.unwrap_or(d.smooth),
            top_smooth: f
                .f64_in("top_smooth", 0.0, f64::MAX, false)?
                .unwrap_or(d.top_smooth),
            is_onehot_targets: f.bool("is_onehot_targets")?.unwrap_or(d.is_onehot_targets),
        })
    }

    /// The loss for probabilities `[N, K, …]` and one-hot targets of the same shape.
    pub fn from_probabilities(&self, probs: &Tensor, onehot: &Tensor) -> Result<Tensor> {
        if probs.size() != onehot.size() || probs.dim() < 3 {
            return Err(NetsError::Shape(format!(
                "dice: probabilities {:?} and one-hot targets {:?} must be [N, K, …] alike",
                probs.size(),
                onehot.size()
            )));
        }
        let k = probs.size()[1];
        let (probs, onehot) = if self.skip_background && k > 1 {
            (probs.f_narrow(1, 1, k - 1)?, onehot.f_narrow(1, 1, k - 1)?)
        } else {
            (probs.shallow_clone(), onehot.shallow_clone())
        };
        let onehot = onehot.f_to_kind(probs.kind())?;
        let axes: Vec<i64> = (2..probs.dim() as i64).collect();
        let sum = |t: &Tensor| t.f_sum_dim_intlist(axes.as_slice(), false, None::<Kind>);
        let intersection = sum(&probs.f_mul(&onehot)?)?;
        let pred_o = if self.squared_pred {
            sum(&probs.f_square()?)?
        } else {
            sum(&probs)?
        };
        let ground_o = sum(&onehot)?;
        let mut denominator = pred_o.f_add(&ground_o)?;
        if self.jaccard {
            denominator = denominator.f_sub(&intersection)?;
        }
        let dice = intersection
            .f_mul_scalar(2.0)?
            .f_add_scalar(self.top_smooth)?
            .f_div(&denominator.f_add_scalar(self.smooth)?)?;
        Ok(dice.f_mean(None::<Kind>)?.f_neg()?.f_add_scalar(1.0)?)
    }

    fn targets(&self, labels: &Tensor, k: i64) -> Result<Tensor> {
        if self.is_onehot_targets {
            Ok(labels.shallow_clone())
        } else {
            one_hot_labels(labels, k)
        }
    }
}

/// A parsed `train.loss`.
#[derive(Debug, Clone, PartialEq)]
pub enum Loss {
    /// `losses.dice_loss`.
    Dice(DiceLoss),
    /// `losses.dice_ce_loss`.
    DiceCe {
        /// The Dice part.
        dice: DiceLoss,
        /// `lambda_dice`.
        lambda_dice: f64,
        /// `lambda_ce`.
        lambda_ce: f64,
    },
}

impl Loss {
    /// Reads a `{"name": …, args…}` loss object; unknown names and keys are errors.
    pub fn from_json(value: &Value) -> Result<Self> {
        let mut f = Fields::new(value, "train.loss")?;
        let loss = match f.req_str("name")? {
            "losses.dice_loss" => Loss::Dice(DiceLoss::read(&mut f)?),
            "losses.dice_ce_loss" => {
                let dice = DiceLoss::read(&mut f)?;
                let lambda_dice = f.f64_in("lambda_dice", 0.0, f64::MAX, false)?.unwrap_or(1.0);
                let lambda_ce = f.f64_in("lambda_ce", 0.0, f64::MAX, false)?.unwrap_or(1.0);
                Loss::DiceCe {
                    dice,
                    lambda_dice,
                    lambda_ce,
                }
            }
            other => {
                return Err(f.error(
                    "name",
                    format!("unknown loss {other:?} (known: losses.dice_loss, losses.dice_ce_loss)"),
                ));
            }
        };
        f.finish()?;
        Ok(loss)
    }

    /// The config name.
    pub fn name(&self) -> &'static str {
        match self {
            Loss::Dice(_) => "losses.dice_loss",
            Loss::DiceCe { .. } => "losses.dice_ce_loss",
        }
    }

    /// The scalar loss for `logits` `[N, K, X, Y, Z]` and `labels` (see the module docs), with
    /// the network's `activation`.
    pub fn compute(&self, logits: &Tensor, labels: &Tensor, activation: FinalActivation) -> Result<Tensor> {
        let size = logits.size();
        if size.len() < 3 {
            return Err(NetsError::Shape(format!(
                "loss: logits must be [N, K, …], got {size:?}"
            )));
        }
        let k = size[1];
        let softmax = match activation {
            FinalActivation::Softmax => true,
            FinalActivation::Sigmoid => false,
            FinalActivation::None => k > 1,
        };
        let probs = if softmax {
            logits.f_softmax(1, None::<Kind>)?
        } else {
            logits.f_sigmoid()?
        };
        match self {
            Loss::Dice(dice) => dice.from_probabilities(&probs, &dice.targets(labels, k)?),
            Loss::DiceCe {
                dice,
                lambda_dice,
                lambda_ce,
            } => {
                let onehot = dice.targets(labels, k)?;
                let d = dice.from_probabilities(&probs, &onehot)?;
                let ce = if softmax {
                    let target = onehot.f_argmax(1, false)?;
                    logits.f_cross_entropy_loss(&target, None::<Tensor>, Reduction::Mean, -100, 0.0)?
                } else {
                    logits.f_binary_cross_entropy_with_logits(
                        &onehot.f_to_kind(logits.kind())?,
                        None::<Tensor>,
                        None::<Tensor>,
                        Reduction::Mean,
                    )?
                };
                Ok(d.f_mul_scalar(*lambda_dice)?
                    .f_add(&ce.f_mul_scalar(*lambda_ce)?)?)
            }
        }
    }
}

/// One-hot float targets `[N, K, X, Y, Z]` from class indices `[N, 1, X, Y, Z]` or
/// `[N, X, Y, Z]` (any numeric kind). With `K == 1` the channel is `label > 0`. Indices
/// outside `0..K` are an error.
pub fn one_hot_labels(labels: &Tensor, num_classes: i64) -> Result<Tensor> {
    let size = labels.size();
    let labels = match size.len() {
        5 if size[1] == 1 => labels.f_squeeze_dim(1)?,
        4 => labels.shallow_clone(),
        _ => {
            return Err(NetsError::Shape(format!(
                "labels must be [N, 1, X, Y, Z] or [N, X, Y, Z] class indices, got {size:?}"
            )));
        }
    };
    if num_classes == 1 {
        return Ok(labels.f_gt(0.0)?.f_to_kind(Kind::Float)?.f_unsqueeze(1)?);
    }
    let idx = labels.f_round()?.f_to_kind(Kind::Int64)?;
    let (min, max) = (idx.f_min()?.int64_value(&[]), idx.f_max()?.int64_value(&[]));
    if min < 0 || max >= num_classes {
        return Err(NetsError::Shape(format!(
            "labels hold class indices {min}..={max}, outside 0..{num_classes}"
        )));
    }
    Ok(idx
        .f_one_hot(num_classes)?
        .f_permute([0, 4, 1, 2, 3])?
        .f_to_kind(Kind::Float)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key_of(v: Value) -> String {
        match Loss::from_json(&v) {
            Err(NetsError::Config { key, .. }) => key,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn parses_names_and_args() {
        assert_eq!(
            Loss::from_json(&json!({"name": "losses.dice_loss"})).unwrap(),
            Loss::Dice(DiceLoss::default())
        );
        let l = Loss::from_json(&json!({"name": "losses.dice_ce_loss", "lambda_ce": 0.5, "jaccard": true}))
            .unwrap();
        let Loss::DiceCe {
            dice,
            lambda_dice,
            lambda_ce,
        } = l
        else {
            panic!()
        };
        assert!(dice.jaccard && lambda_dice == 1.0 && lambda_ce == 0.5);
        assert_eq!(key_of(json!({"name": "losses.focal_loss"})), "name");
        assert_eq!(key_of(json!({"name": "losses.dice loss"})), "name");
        assert_eq!(
            key_of(json!({"name": "losses.dice_loss", "lambda_ce": 1.0})),
            "lambda_ce"
        );
        assert_eq!(
            key_of(json!({"name": "losses.dice_loss", "smooth": -1})),
            "smooth"
        );
        assert_eq!(key_of(json!({})), "name");
    }

    /// Two classes, 4 voxels, softmax probabilities of the foreground 0.75, 0.25, 0.75, 0.5 and
    /// labels 1, 1, 0, 0: Σpg = 1, Σp = 2.25, Σg = 2, dice = 2 / (4.25 + 1e-5).
    #[test]
    fn dice_matches_hand_computation() {
        let p1 = [0.75f32, 0.25, 0.75, 0.5];
        // logits whose softmax gives p1 for channel 1: channel 0 = 0, channel 1 = ln(p / (1 - p)).
        let l1: Vec<f32> = p1.iter().map(|p| (p / (1.0 - p)).ln()).collect();
        let mut logits = vec![0f32; 4];
        logits.extend(&l1);
        let logits = Tensor::from_slice(&logits).reshape([1, 2, 4, 1, 1]);
        let labels = Tensor::from_slice(&[1i64, 1, 0, 0]).reshape([1, 1, 4, 1, 1]);
        let loss = Loss::Dice(DiceLoss::default());
        let got = loss
            .compute(&logits, &labels, FinalActivation::Softmax)
            .unwrap()
            .double_value(&[]);
        let want = 1.0 - 2.0 / (4.25 + 1e-5);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");

        // With the background: channel 0 has p = 0.25, 0.75, 0.25, 0.5 and g = 0, 0, 1, 1:
        // Σpg = 0.75, Σp = 1.75, Σg = 2, dice0 = 1.5 / 3.75.
        let all = Loss::Dice(DiceLoss {
            skip_background: false,
            ..DiceLoss::default()
        });
        let got = all
            .compute(&logits, &labels, FinalActivation::Softmax)
            .unwrap()
            .double_value(&[]);
        let want = 1.0 - 0.5 * (2.0 / (4.25 + 1e-5) + 1.5 / (3.75 + 1e-5));
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");

        // Jaccard: 1 / (4.25 - 1).
        let jac = Loss::Dice(DiceLoss {
            jaccard: true,
            ..DiceLoss::default()
        });
        let got = jac
            .compute(&logits, &labels, FinalActivation::Softmax)
            .unwrap()
            .double_value(&[]);
        let want = 1.0 - 2.0 / (3.25 + 1e-5);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");

        // Dice + CE: CE = mean(-ln p_true) = mean(-ln .75, -ln .25, -ln .25, -ln .5).
        let dce = Loss::from_json(&json!({"name": "losses.dice_ce_loss", "lambda_ce": 2.0})).unwrap();
        let got = dce
            .compute(&logits, &labels, FinalActivation::Softmax)
            .unwrap()
            .double_value(&[]);
        let ce = -(0.75f64.ln() + 0.25f64.ln() + 0.25f64.ln() + 0.5f64.ln()) / 4.0;
        let want = 1.0 - 2.0 / (4.25 + 1e-5) + 2.0 * ce;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn sigmoid_single_channel_and_bad_labels() {
        // K = 1 sigmoid: logit 0 → p = 0.5 everywhere; labels 2, 0 → targets 1, 0.
        let logits = Tensor::zeros([1, 1, 2, 1, 1], (Kind::Float, tch::Device::Cpu));
        let labels = Tensor::from_slice(&[2.0f32, 0.0]).reshape([1, 2, 1, 1]);
        let got = Loss::Dice(DiceLoss::default())
            .compute(&logits, &labels, FinalActivation::Sigmoid)
            .unwrap()
            .double_value(&[]);
        assert!((got - (1.0 - 1.0 / (2.0 + 1e-5))).abs() < 1e-6);
        let two = Tensor::zeros([1, 2, 2, 1, 1], (Kind::Float, tch::Device::Cpu));
        assert!(matches!(
            Loss::Dice(DiceLoss::default()).compute(&two, &labels, FinalActivation::Softmax),
            Err(NetsError::Shape(_))
        ));
    }
}
