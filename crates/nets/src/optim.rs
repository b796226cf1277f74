//! The optimizers of `train.optimizer`, written on tensors so that their whole state (step
//! count, moment buffers) can be checkpointed and restored exactly (tch's built-in optimizers
//! cannot export theirs).
//!
//! ```json
//! "optimizer": {"name": "Adam", "lr": 1e-3, "epsilon": 1e-4}
//! "optimizer": {"name": "Adam", "lr": 1e-3, "epsilon": 1e-8, "betas": [0.9, 0.999], "weight_decay": 1e-5}
//! "optimizer": {"name": "SGD", "lr": 1e-2, "momentum": 0.9, "nesterov": true, "weight_decay": 1e-4}
//! ```
//!
//! - `Adam` (the seed's): `lr` (default 1e-3), `epsilon` (default 1e-8; the seed's config sets
//!   1e-4), `betas` (default `[0.9, 0.999]`), `weight_decay` (default 0, an L2 term added to the
//!   gradient). The update is `torch.optim.Adam`'s (not AMSGrad):
//!   `m ← β1 m + (1−β1) g`, `v ← β2 v + (1−β2) g²`,
//!   `p ← p − lr/(1−β1ᵗ) · m / (√v / √(1−β2ᵗ) + ε)`.
//! - `SGD` (ours): `lr` (required), `momentum` (default 0), `dampening` (default 0),
//!   `nesterov` (default false; needs momentum > 0 and no dampening), `weight_decay` (default
//!   0): `torch.optim.SGD`'s update, the momentum buffer starting as the first gradient.
//!
//! The optimizer owns shallow copies of the [`VarStore`]'s trainable variables (those that
//! require gradients when it is built), addressed by their var-store names: build it after
//! the var store has its final device and kind. `lr` is the base rate; the trainer sets the
//! current one each step from [`crate::lr_policy::LrPolicy`] with [`Optimizer::set_lr`]. A variable without a gradient in a step is left unchanged and its
//! buffers untouched (the step count is global, as in the seed's TensorFlow optimizers).

use serde_json::{Value, json};
use tch::{Tensor, nn::VarStore};

use crate::error::{NetsError, Result};
use crate::fields::Fields;

/// A parsed `train.optimizer`.
#[derive(Debug, Clone, PartialEq)]
pub enum OptimizerConfig {
    /// `"Adam"`.
    Adam {
        /// Base learning rate.
        lr: f64,
        /// `epsilon`.
        epsilon: f64,
        /// `betas`: (β1, β2).
        betas: (f64, f64),
        /// L2 weight decay.
        weight_decay: f64,
    },
    /// `"SGD"`.
    Sgd {
        /// Base learning rate.
        lr: f64,
        /// Momentum factor.
        momentum: f64,
        /// Dampening of the momentum.
        dampening: f64,
        /// Nesterov momentum.
        nesterov: bool,
        /// L2 weight decay.
        weight_decay: f64,
    },
}

const CONTEXT: &str = "train.optimizer";

impl OptimizerConfig {
    /// Reads a `{"name": "Adam" | "SGD", …}` object; unknown names and keys are errors.
    pub fn from_json(value: &Value) -> Result<Self> {
        let mut f = Fields::new(value, CONTEXT)?;
        let cfg = match f.req_str("name")? {
            "Adam" => {
                let lr = f.f64_in("lr", 0.0, f64::MAX, false)?.unwrap_or(1e-3);
                let epsilon = f.f64_in("epsilon", 0.0, f64::MAX, false)?.unwrap_or(1e-8);
                let betas = match f.f64_list("betas")? {
                    None => (0.9, 0.999),
                    Some(b) if b.len() == 2 && b.iter().all(|x| (0.0..1.0).contains(x)) => (b[0], b[1]),
                    Some(b) => {
                        return Err(f.error("betas", format!("expected two numbers in [0, 1), got {b:?}")));
                    }
                };
                let weight_decay = f.f64_in("weight_decay", 0.0, f64::MAX, false)?.unwrap_or(0.0);
                OptimizerConfig::Adam {
                    lr,
                    epsilon,
                    betas,
                    weight_decay,
                }
            }
            "SGD" => {
                let lr = f
                    .f64_in("lr", 0.0, f64::MAX, false)?
                    .ok_or_else(|| f.error("lr", "missing"))?;
                let momentum = f.f64_in("momentum", 0.0, 1.0, true)?.unwrap_or(0.0);
                let dampening = f.f64_in("dampening", 0.0, 1.0, false)?.unwrap_or(0.0);
                let nesterov = f.bool("nesterov")?.unwrap_or(false);
                if nesterov && (momentum <= 0.0 || dampening != 0.0) {
                    return Err(f.error("nesterov", "needs momentum > 0 and dampening 0"));
                }
                let weight_decay = f.f64_in("weight_decay", 0.0, f64::MAX, false)?.unwrap_or(0.0);
                OptimizerConfig::Sgd {
                    lr,
                    momentum,
                    dampening,
                    nesterov,
                    weight_decay,
                }
            }
            other => return Err(f.error("name", format!("unknown optimizer {other:?} (known: Adam, SGD)"))),
        };
        f.finish()?;
        Ok(cfg)
    }

    /// The config as JSON (what checkpoints record).
    pub fn to_json(&self) -> Value {
        match *self {
            OptimizerConfig::Adam {
                lr,
                epsilon,
                betas,
                weight_decay,
            } => json!({
                "name": "Adam", "lr": lr, "epsilon": epsilon, "betas": [betas.0, betas.1],
                "weight_decay": weight_decay,
            }),
            OptimizerConfig::Sgd {
                lr,
                momentum,
                dampening,
                nesterov,
                weight_decay,
            } => json!({
                "name": "SGD", "lr": lr, "momentum": momentum, "dampening": dampening,
                "nesterov": nesterov, "weight_decay": weight_decay,
            }),
        }
    }

    /// The config name.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerConfig::Adam { .. } => "Adam",
            OptimizerConfig::Sgd { .. } => "SGD",
        }
    }

    /// The base learning rate.
    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerConfig::Adam { lr, .. } | OptimizerConfig::Sgd { lr, .. } => lr,
        }
    }

    /// The names of the per-variable state buffers this optimizer keeps.
    fn buffer_names(&self) -> &'static [&'static str] {
        match self {
            OptimizerConfig::Adam { .. } => &["exp_avg", "exp_avg_sq"],
            OptimizerConfig::Sgd { momentum, .. } if *momentum > 0.0 => &["momentum_buffer"],
            OptimizerConfig::Sgd { .. } => &[],
        }
    }

    /// An optimizer over `vs`'s trainable variables.
    pub fn build(&self, vs: &VarStore) -> Result<Optimizer> {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .map(|(name, var)| {
                let buffers = self
                    .buffer_names()
                    .iter()
                    .map(|_| tch::no_grad(|| var.f_zeros_like()))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Param { name, var, buffers })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Optimizer {
            config: self.clone(),
            lr: self.lr(),
            step: 0,
            params,
        })
    }
}

#[derive(Debug)]
struct Param {
    name: String,
    var: Tensor,
    buffers: Vec<Tensor>,
}

/// An optimizer with exportable state; built by [`OptimizerConfig::build`].
#[derive(Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    lr: f64,
    step: u64,
    params: Vec<Param>,
}

impl Optimizer {
    /// The config it was built from.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// The learning rate the next step uses.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the learning rate of the following steps.
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The names of the variables it updates, sorted.
    pub fn variable_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// Clears the gradients of its variables.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.var.zero_grad();
        }
    }

    /// Zeroes the gradients, back-propagates `loss` and takes a step.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        self.zero_grad();
        loss.f_backward()?;
        self.step()
    }

    /// One update of every variable with a gradient, at the current learning rate.
    pub fn step(&mut self) -> Result<()> {
        let lr = self.lr;
        let first = self.step == 0;
        let t = (self.step + 1) as f64;
        let config = self.config.clone();
        tch::no_grad(|| -> Result<()> {
            for p in &mut self.params {
                let grad = p.var.grad();
                if !grad.defined() {
                    continue;
                }
                match config {
                    OptimizerConfig::Adam {
                        epsilon,
                        betas: (b1, b2),
                        weight_decay,
                        ..
                    } => {
                        let grad = if weight_decay != 0.0 {
                            grad.f_add(&p.var.f_mul_scalar(weight_decay)?)?
                        } else {
                            grad
                        };
                        let (m, v) = p.buffers.split_at_mut(1);
                        let (m, v) = (&mut m[0], &mut v[0]);
                        let _ = m.f_lerp_(&grad, 1.0 - b1)?;
                        let _ = v.f_mul_scalar_(b2)?;
                        let _ = v.f_add_(&grad.f_square()?.f_mul_scalar(1.0 - b2)?)?;
                        let bias1 = 1.0 - b1.powf(t);
                        let bias2_sqrt = (1.0 - b2.powf(t)).sqrt();
                        let denom = v.f_sqrt()?.f_div_scalar(bias2_sqrt)?.f_add_scalar(epsilon)?;
                        let _ = p.var.f_sub_(&m.f_div(&denom)?.f_mul_scalar(lr / bias1)?)?;
                    }
                    OptimizerConfig::Sgd {
                        momentum,
                        dampening,
                        nesterov,
                        weight_decay,
                        ..
                    } => {
                        let mut grad = if weight_decay != 0.0 {
                            grad.f_add(&p.var.f_mul_scalar(weight_decay)?)?
                        } else {
                            grad
                        };
                        if momentum > 0.0 {
                            let buf = &mut p.buffers[0];
                            if first {
                                buf.f_copy_(&grad)?;
                            } else {
                                let _ = buf.f_mul_scalar_(momentum)?;
                                let _ = buf.f_add_(&grad.f_mul_scalar(1.0 - dampening)?)?;
                            }
                            grad = if nesterov {
                                grad.f_add(&buf.f_mul_scalar(momentum)?)?
                            } else {
                                buf.shallow_clone()
                            };
                        }
                        let _ = p.var.f_sub_(&grad.f_mul_scalar(lr)?)?;
                    }
                }
            }
            Ok(())
        })?;
        self.step += 1;
        Ok(())
    }

    /// The state to checkpoint: a JSON description (config, step, current lr) and the buffers,
    /// named `<buffer>/<variable>` (e.g. `exp_avg/enc0/a/conv/weight`), on the CPU.
    pub fn state(&self) -> Result<(Value, Vec<(String, Tensor)>)> {
        let meta = json!({"config": self.config.to_json(), "step": self.step, "lr": self.lr});
        let mut tensors = Vec::new();
        for p in &self.params {
            for (b, t) in self.config.buffer_names().iter().zip(&p.buffers) {
                tensors.push((
                    format!("{b}/{}", p.name),
                    t.f_to_device(tch::Device::Cpu)?.f_contiguous()?,
                ));
            }
        }
        Ok((meta, tensors))
    }

    /// Restores what [`Optimizer::state`] returned. The optimizer kind and every buffer must
    /// match; the hyper-parameters are those of `self` (so a resumed run may change them),
    /// the step count and learning rate those saved.
    pub fn load_state(&mut self, meta: &Value, tensors: &[(String, Tensor)]) -> Result<()> {
        let bad = |m: String| NetsError::config("checkpoint", "optimizer", m);
        let name = meta["config"]["name"].as_str().unwrap_or("?");
        if name != self.config.name() {
            return Err(bad(format!(
                "saved by {name}, loading into {}",
                self.config.name()
            )));
        }
        let step = meta["step"].as_u64().ok_or_else(|| bad("no step count".into()))?;
        let lr = meta["lr"]
            .as_f64()
            .ok_or_else(|| bad("no learning rate".into()))?;
        let map: std::collections::HashMap<&str, &Tensor> =
            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let names = self.config.buffer_names();
        tch::no_grad(|| -> Result<()> {
            for p in &mut self.params {
                for (b, buf) in names.iter().zip(&mut p.buffers) {
                    let key = format!("{b}/{}", p.name);
                    let src = map
                        .get(key.as_str())
                        .ok_or_else(|| bad(format!("missing buffer {key}")))?;
                    if src.size() != buf.size() {
                        return Err(bad(format!(
                            "buffer {key} is {:?}, expected {:?}",
                            src.size(),
                            buf.size()
                        )));
                    }
                    buf.f_copy_(src)?;
                }
            }
            Ok(())
        })?;
        self.step = step;
        self.lr = lr;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module};
    use tch::{Device, Kind};

    fn key_of(v: Value) -> String {
        match OptimizerConfig::from_json(&v) {
            Err(NetsError::Config { key, context, .. }) => {
                assert_eq!(context, CONTEXT);
                key
            }
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn parses_seed_and_ours() {
        let seed = OptimizerConfig::from_json(&json!({"name": "Adam", "lr": 1e-3, "epsilon": 1e-4})).unwrap();
        assert_eq!(
            seed,
            OptimizerConfig::Adam {
                lr: 1e-3,
                epsilon: 1e-4,
                betas: (0.9, 0.999),
                weight_decay: 0.0
            }
        );
        assert_eq!(OptimizerConfig::from_json(&seed.to_json()).unwrap(), seed);
        let sgd =
            OptimizerConfig::from_json(&json!({"name": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": true}))
                .unwrap();
        assert_eq!(OptimizerConfig::from_json(&sgd.to_json()).unwrap(), sgd);
        assert_eq!(key_of(json!({"name": "Adagrad"})), "name");
        assert_eq!(key_of(json!({"name": "Adam", "eps": 1e-4})), "eps");
        assert_eq!(key_of(json!({"name": "Adam", "betas": [0.9]})), "betas");
        assert_eq!(key_of(json!({"name": "SGD"})), "lr");
        assert_eq!(
            key_of(json!({"name": "SGD", "lr": 0.1, "nesterov": true})),
            "nesterov"
        );
        assert_eq!(
            key_of(json!({"name": "SGD", "lr": 0.1, "momentum": 1.5})),
            "momentum"
        );
    }

    /// Runs `steps` steps of ours and of libtorch's own optimizer on the same linear model and
    /// data; returns the largest weight difference.
    fn compare_with_libtorch(ours: OptimizerConfig, theirs: impl nn::OptimizerConfig, steps: usize) -> f64 {
        tch::manual_seed(7);
        let xs = Tensor::randn([16, 5], (Kind::Float, Device::Cpu));
        let ys = Tensor::randn([16, 3], (Kind::Float, Device::Cpu));
        let vs_a = VarStore::new(Device::Cpu);
        let lin_a = nn::linear(vs_a.root() / "lin", 5, 3, Default::default());
        let mut vs_b = VarStore::new(Device::Cpu);
        let lin_b = nn::linear(vs_b.root() / "lin", 5, 3, Default::default());
        vs_b.copy(&vs_a).unwrap();
        let mut opt_a = ours.build(&vs_a).unwrap();
        let mut opt_b = theirs.build(&vs_b, ours.lr()).unwrap();
        for _ in 0..steps {
            opt_a
                .backward_step(&lin_a.forward(&xs).mse_loss(&ys, tch::Reduction::Mean))
                .unwrap();
            opt_b.backward_step(&lin_b.forward(&xs).mse_loss(&ys, tch::Reduction::Mean));
        }
        assert_eq!(opt_a.steps(), steps as u64);
        let b = vs_b.variables();
        vs_a.variables()
            .iter()
            .map(|(n, t)| (t - &b[n]).abs().max().double_value(&[]))
            .fold(0.0, f64::max)
    }

    #[test]
    fn adam_matches_libtorch() {
        let ours = OptimizerConfig::Adam {
            lr: 0.01,
            epsilon: 1e-4,
            betas: (0.9, 0.99),
            weight_decay: 0.01,
        };
        let theirs = nn::Adam {
            beta1: 0.9,
            beta2: 0.99,
            wd: 0.01,
            eps: 1e-4,
            amsgrad: false,
        };
        let diff = compare_with_libtorch(ours, theirs, 20);
        assert!(diff < 1e-6, "max weight difference {diff}");
    }

    #[test]
    fn sgd_matches_libtorch() {
        for nesterov in [false, true] {
            let ours = OptimizerConfig::Sgd {
                lr: 0.05,
                momentum: 0.9,
                dampening: 0.0,
                nesterov,
                weight_decay: 1e-3,
            };
            let theirs = nn::Sgd {
                momentum: 0.9,
                dampening: 0.0,
                wd: 1e-3,
                nesterov,
            };
            let diff = compare_with_libtorch(ours, theirs, 20);
            assert!(diff < 1e-6, "nesterov {nesterov}: max weight difference {diff}");
        }
    }
}
