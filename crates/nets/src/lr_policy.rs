//! Learning-rate policies of `train.lr_policy`: the learning rate of each optimizer step as a
//! pure function of the base rate (`optimizer.lr`) and the step, so nothing but the step count
//! needs checkpointing.
//!
//! `step` counts the optimizer steps already taken: 0 for the first step of a run.
//!
//! - `lr_policy.DecayLRonStep` (the seed's) `{"decay_ratio": 0.1, "decay_freq": 50000}`:
//!   `lr = base · decay_ratio^⌊step / decay_freq⌋` (a staircase; both keys required).
//! - `lr_policy.Poly` (ours) `{"power": 0.9, "total_steps": 100000}`:
//!   `lr = base · (1 − min(step, total_steps) / total_steps)^power` (`power` defaults to 0.9).
//! - `lr_policy.CosineAnnealing` (ours) `{"total_steps": 100000, "min_lr": 0}`:
//!   `lr = min_lr + (base − min_lr) · (1 + cos(π · min(step, total_steps) / total_steps)) / 2`.
//!
//! A train config without `lr_policy` keeps the base rate: [`LrPolicy::Constant`].

use serde_json::{Value, json};

use crate::error::Result;
use crate::fields::Fields;

/// A parsed `train.lr_policy`.
#[derive(Debug, Clone, PartialEq)]
pub enum LrPolicy {
    /// No policy: the base rate throughout.
    Constant,
    /// `lr_policy.DecayLRonStep`.
    DecayLRonStep {
        /// Factor applied every `decay_freq` steps.
        decay_ratio: f64,
        /// Steps between decays.
        decay_freq: u64,
    },
    /// `lr_policy.Poly`.
    Poly {
        /// Exponent.
        power: f64,
        /// Step at which the rate reaches 0.
        total_steps: u64,
    },
    /// `lr_policy.CosineAnnealing`.
    CosineAnnealing {
        /// Step at which the rate reaches `min_lr`.
        total_steps: u64,
        /// Final rate.
        min_lr: f64,
    },
}

impl LrPolicy {
    /// Reads a `{"name": …, args…}` object; unknown names and keys are errors.
    pub fn from_json(value: &Value) -> Result<Self> {
        let mut f = Fields::new(value, "train.lr_policy")?;
        let positive = |f: &mut Fields<'_>, key: &'static str| -> Result<u64> {
            match f.u64(key)? {
                Some(n) if n > 0 => Ok(n),
                Some(_) => Err(f.error(key, "must be > 0")),
                None => Err(f.error(key, "missing")),
            }
        };
        let policy = match f.req_str("name")? {
            "lr_policy.DecayLRonStep" => {
                let decay_ratio = f.f64_in("decay_ratio", 0.0, f64::MAX, false)?;
                let decay_ratio = decay_ratio.ok_or_else(|| f.error("decay_ratio", "missing"))?;
                let decay_freq = positive(&mut f, "decay_freq")?;
                LrPolicy::DecayLRonStep {
                    decay_ratio,
                    decay_freq,
                }
            }
            "lr_policy.Poly" => {
                let power = f.f64_in("power", 0.0, f64::MAX, false)?.unwrap_or(0.9);
                LrPolicy::Poly {
                    power,
                    total_steps: positive(&mut f, "total_steps")?,
                }
            }
            "lr_policy.CosineAnnealing" => {
                let total_steps = positive(&mut f, "total_steps")?;
                let min_lr = f.f64_in("min_lr", 0.0, f64::MAX, false)?.unwrap_or(0.0);
                LrPolicy::CosineAnnealing { total_steps, min_lr }
            }
            other => {
                return Err(f.error(
                    "name",
                    format!(
                        "unknown policy {other:?} (known: lr_policy.DecayLRonStep, lr_policy.Poly, \
                         lr_policy.CosineAnnealing)"
                    ),
                ));
            }
        };
        f.finish()?;
        Ok(policy)
    }

    /// The config as JSON (`null` for [`LrPolicy::Constant`]).
    pub fn to_json(&self) -> Value {
        match *self {
            LrPolicy::Constant => Value::Null,
            LrPolicy::DecayLRonStep {
                decay_ratio,
                decay_freq,
            } => {
                json!({"name": "lr_policy.DecayLRonStep", "decay_ratio": decay_ratio, "decay_freq": decay_freq})
            }
            LrPolicy::Poly { power, total_steps } => {
                json!({"name": "lr_policy.Poly", "power": power, "total_steps": total_steps})
            }
            LrPolicy::CosineAnnealing { total_steps, min_lr } => {
                json!({"name": "lr_policy.CosineAnnealing", "total_steps": total_steps, "min_lr": min_lr})
            }
        }
    }

    /// The learning rate of step `step` (0-based) for base rate `base_lr`.
    pub fn lr_at(&self, base_lr: f64, step: u64) -> f64 {
        match *self {
            LrPolicy::Constant => base_lr,
            LrPolicy::DecayLRonStep {
                decay_ratio,
                decay_freq,
            } => {
                let n = step / decay_freq;
                base_lr * decay_ratio.powf(n as f64)
            }
            LrPolicy::Poly { power, total_steps } => {
                let frac = step.min(total_steps) as f64 / total_steps as f64;
                base_lr * (1.0 - frac).powf(power)
            }
            LrPolicy::CosineAnnealing { total_steps, min_lr } => {
                let frac = step.min(total_steps) as f64 / total_steps as f64;
                min_lr + (base_lr - min_lr) * (1.0 + (std::f64::consts::PI * frac).cos()) / 2.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NetsError;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-300)
    }

    #[test]
    fn seed_decay_on_step() {
        let p = LrPolicy::from_json(
            &json!({"name": "lr_policy.DecayLRonStep", "decay_ratio": 0.1, "decay_freq": 50000}),
        )
        .unwrap();
        assert_eq!(p.lr_at(1e-3, 0), 1e-3);
        assert_eq!(p.lr_at(1e-3, 49_999), 1e-3);
        assert!(close(p.lr_at(1e-3, 50_000), 1e-4));
        assert!(close(p.lr_at(1e-3, 149_999), 1e-5));
        assert!(close(p.lr_at(1e-3, 150_000), 1e-6));
        assert_eq!(LrPolicy::from_json(&p.to_json()).unwrap(), p);
    }

    #[test]
    fn poly_and_cosine() {
        let p = LrPolicy::from_json(&json!({"name": "lr_policy.Poly", "power": 2.0, "total_steps": 100}))
            .unwrap();
        assert_eq!(p.lr_at(1.0, 0), 1.0);
        assert!(close(p.lr_at(1.0, 50), 0.25));
        assert!(close(p.lr_at(1.0, 90), 0.01));
        assert_eq!(p.lr_at(1.0, 100), 0.0);
        assert_eq!(p.lr_at(1.0, 1000), 0.0);
        let default_power =
            LrPolicy::from_json(&json!({"name": "lr_policy.Poly", "total_steps": 10})).unwrap();
        assert!(close(default_power.lr_at(2.0, 5), 2.0 * 0.5f64.powf(0.9)));

        let c = LrPolicy::from_json(
            &json!({"name": "lr_policy.CosineAnnealing", "total_steps": 100, "min_lr": 0.1}),
        )
        .unwrap();
        assert_eq!(c.lr_at(1.0, 0), 1.0);
        assert!(close(c.lr_at(1.0, 50), 0.55));
        assert!(close(
            c.lr_at(1.0, 25),
            0.1 + 0.9 * (1.0 + std::f64::consts::FRAC_1_SQRT_2) / 2.0
        ));
        assert!(close(c.lr_at(1.0, 100), 0.1));
        assert!(close(c.lr_at(1.0, 200), 0.1));
        assert_eq!(LrPolicy::from_json(&c.to_json()).unwrap(), c);
        assert_eq!(LrPolicy::Constant.lr_at(0.5, 10_000), 0.5);
    }

    #[test]
    fn errors_name_the_key() {
        let key = |v: Value| match LrPolicy::from_json(&v) {
            Err(NetsError::Config { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key(json!({"name": "lr_policy.Step"})), "name");
        assert_eq!(
            key(json!({"name": "lr_policy.DecayLRonStep", "decay_freq": 10})),
            "decay_ratio"
        );
        assert_eq!(
            key(json!({"name": "lr_policy.DecayLRonStep", "decay_ratio": 0.1})),
            "decay_freq"
        );
        assert_eq!(
            key(json!({"name": "lr_policy.DecayLRonStep", "decay_ratio": 0.1, "decay_freq": 0})),
            "decay_freq"
        );
        assert_eq!(
            key(
                json!({"name": "lr_policy.DecayLRonStep", "decay_ratio": 0.1, "decay_freq": 5, "decay rate": 1})
            ),
            "decay rate"
        );
        assert_eq!(key(json!({"name": "lr_policy.Poly"})), "total_steps");
    }
}
