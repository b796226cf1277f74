//! A seeded chain of transforms built from a JSON list (`pre_transforms`,
//! `post_transforms`, `writers`).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::data::Data;
use crate::rng::sample_rng;
use crate::{Result, Transform, TransformError, registry};

/// One built transform with its seed name.
#[derive(Debug)]
pub struct Step {
    /// The seed name, e.g. `transforms.NPRandomFlip3D`.
    pub name: String,
    /// The transform.
    pub transform: Box<dyn Transform>,
}

/// A list of transforms run in order on a sample, reproducibly: the randomness of sample
/// `index` depends only on (seed, index), see [`crate::rng`].
#[derive(Debug)]
pub struct Pipeline {
    seed: u64,
    steps: Vec<Step>,
}

impl Pipeline {
    /// Builds every transform of a JSON list; the first bad entry fails the whole build.
    pub fn from_json(list: &Value, seed: u64) -> Result<Pipeline> {
        let items = list
            .as_array()
            .ok_or_else(|| TransformError::Config("a transform list must be a JSON array".into()))?;
        let steps = items
            .iter()
            .enumerate()
            .map(|(i, e)| registry::build(i, e).map(|(name, transform)| Step { name, transform }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Pipeline { seed, steps })
    }

    /// Builds from JSON text.
    pub fn from_json_str(text: &str, seed: u64) -> Result<Pipeline> {
        let v: Value = serde_json::from_str(text).map_err(|e| TransformError::Config(e.to_string()))?;
        Pipeline::from_json(&v, seed)
    }

    /// Builds the list found at `path` inside a config (e.g. `["train", "pre_transforms"]`);
    /// a missing list gives an empty pipeline.
    pub fn from_config(config: &Value, path: &[&str], seed: u64) -> Result<Pipeline> {
        let mut v = config;
        for p in path {
            match v.get(p) {
                Some(x) => v = x,
                None => {
                    return Ok(Pipeline {
                        seed,
                        steps: Vec::new(),
                    });
                }
            }
        }
        Pipeline::from_json(v, seed)
    }

    /// The pipeline's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Number of transforms.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether there are no transforms.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs every transform on `d`, sample number `index`. A failure names the sample, the
    /// transform's position and its name.
    pub fn run(&self, d: &mut Data, index: u64) -> Result<()> {
        self.run_timed(d, index, |_, _| {})
    }

    /// [`Pipeline::run`], calling `each(position, elapsed)` after every transform (e.g. a
    /// per-transform timing report; the benchmark's `--per-transform`).
    pub fn run_timed(&self, d: &mut Data, index: u64, mut each: impl FnMut(usize, Duration)) -> Result<()> {
        for (position, step) in self.steps.iter().enumerate() {
            let t0 = Instant::now();
            let mut rng = sample_rng(self.seed, position, index);
            step.transform
                .apply(d, &mut rng)
                .map_err(|e| TransformError::Sample {
                    sample: d.name.clone(),
                    position,
                    name: step.name.clone(),
                    source: Box::new(e),
                })?;
            each(position, t0.elapsed());
        }
        Ok(())
    }
}
