//! What a training run reports while it runs, as [`Event`]s: one line each, either text for
//! people (`key value` pairs after a fixed word) or one JSON object per line for programs
//! (`{"event": "step", …}`; `aiaa train --progress json`). A trainer service runs
//! `aiaa train` as a child process and reads these lines for its job's progress.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

/// One point of the validation curve.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CurvePoint {
    /// Epochs completed.
    pub epoch: u64,
    /// Steps completed.
    pub step: u64,
    /// Training wall time so far (seconds, over every run of a resumed job, validations
    /// included).
    pub elapsed_s: f64,
    /// Metric values by tag.
    pub metrics: BTreeMap<String, f64>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every epoch was trained.
    Completed,
    /// Stopped on request (Ctrl-C) at a step boundary; the last checkpoint resumes it.
    Stopped,
    /// `--dry-run`: checked everything and ran two steps; nothing was written.
    DryRun,
}

impl Outcome {
    /// `completed`, `stopped` or `dry-run`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Stopped => "stopped",
            Outcome::DryRun => "dry-run",
        }
    }
}

/// The final summary of a run (also written to `train_summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// How it ended.
    pub outcome: Outcome,
    /// Epochs completed (in total, also before a resume).
    pub epochs_done: u64,
    /// Epochs asked for.
    pub epochs: u64,
    /// Optimizer steps completed (in total).
    pub steps_done: u64,
    /// Steps this run took.
    pub steps_this_run: u64,
    /// The stopping metric's tag.
    pub stopping_metric: Option<String>,
    /// Its best value and the epoch it was reached at.
    pub best_metric: Option<f64>,
    /// The epoch of `best_metric`.
    pub best_epoch: Option<u64>,
    /// Its last value.
    pub last_metric: Option<f64>,
    /// The last training loss (mean over the last progress window).
    pub last_loss: Option<f64>,
    /// Wall time of this run's training loop (seconds, validations included).
    pub seconds_this_run: f64,
    /// Wall time of the whole job so far (seconds).
    pub seconds_total: f64,
    /// Training steps per second in this run (validation time excluded).
    pub it_per_s: f64,
    /// Share of the training steps' time spent waiting for data.
    pub data_wait_share: f64,
    /// Seconds spent validating in this run.
    pub validation_seconds: f64,
    /// The validation curve (every validation of the job).
    pub curve: Vec<CurvePoint>,
    /// The best checkpoint (`model.ckpt`), when written.
    pub best_checkpoint: Option<PathBuf>,
    /// The last checkpoint (`final_model.ckpt`), when written.
    pub last_checkpoint: Option<PathBuf>,
}

/// One progress report.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Training starts (after every check passed).
    Start {
        /// The devices trained on, comma-separated, the master's first (several with
        /// `multi_gpu`).
        device: String,
        /// Trainable parameters.
        parameters: i64,
        /// Training and validation items.
        training_items: usize,
        /// Validation items.
        validation_items: usize,
        /// Distinct files decoded and checked, and their decoded size.
        files: usize,
        /// Decoded bytes.
        decoded_bytes: u64,
        /// Whether they stay in memory.
        cached: bool,
        /// Steps per epoch.
        steps_per_epoch: u64,
        /// Epochs asked for.
        epochs: u64,
        /// The epoch and step it starts from (non-zero when resuming).
        start_epoch: u64,
        /// The step it starts from.
        start_step: u64,
        /// Data-loading threads.
        num_workers: usize,
    },
    /// Every few steps.
    Step {
        /// Current epoch (1-based, the one being trained).
        epoch: u64,
        /// Epochs asked for.
        epochs: u64,
        /// Steps completed.
        step: u64,
        /// Steps in total.
        total_steps: u64,
        /// Mean loss since the previous report.
        loss: f64,
        /// The learning rate of the last step.
        lr: f64,
        /// Steps per second since the previous report.
        it_per_s: f64,
        /// Share of that time spent waiting for data.
        data_wait: f64,
        /// Estimated seconds left (validations included).
        eta_s: f64,
    },
    /// A validation finished.
    Validation {
        /// Epochs completed.
        epoch: u64,
        /// Steps completed.
        step: u64,
        /// Metric values by tag.
        metrics: BTreeMap<String, f64>,
        /// Whether the stopping metric improved (`model.ckpt` written).
        best: bool,
        /// Seconds it took.
        seconds: f64,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// `best` or `last`.
        kind: String,
        /// The file.
        path: PathBuf,
        /// Epochs completed.
        epoch: u64,
        /// Steps completed.
        step: u64,
    },
    /// Anything worth telling (a fallback, a warning).
    Message {
        /// The text.
        text: String,
    },
    /// The run ended.
    Summary(Summary),
}

/// `h:mm:ss`.
pub fn hms(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn metrics_text(m: &BTreeMap<String, f64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

impl Event {
    /// The line for people.
    pub fn to_text(&self) -> String {
        match self {
            Event::Start {
                device,
                parameters,
                training_items,
                validation_items,
                files,
                decoded_bytes,
                cached,
                steps_per_epoch,
                epochs,
                start_epoch,
                start_step,
                num_workers,
            } => format!(
                "start device {device} parameters {parameters} training {training_items} validation \
                 {validation_items} files {files} ({:.1} MiB decoded, {}) steps/epoch {steps_per_epoch} \
                 epochs {epochs} from epoch {start_epoch} step {start_step} workers {num_workers}",
                *decoded_bytes as f64 / (1 << 20) as f64,
                if *cached { "cached" } else { "not cached" },
            ),
            Event::Step {
                epoch,
                epochs,
                step,
                total_steps,
                loss,
                lr,
                it_per_s,
                data_wait,
                eta_s,
            } => format!(
                "epoch {epoch}/{epochs} step {step}/{total_steps} loss {loss:.4} lr {lr:.3e} \
                 {it_per_s:.2} it/s data-wait {:.0}% eta {}",
                data_wait * 100.0,
                hms(*eta_s)
            ),
            Event::Validation {
                epoch,
                step,
                metrics,
                best,
                seconds,
            } => format!(
                "validation epoch {epoch} step {step} {}{} ({seconds:.1} s)",
                metrics_text(metrics),
                if *best { " best" } else { "" }
            ),
            Event::Checkpoint {
                kind,
                path,
                epoch,
                step,
            } => format!("checkpoint {kind} {} epoch {epoch} step {step}", path.display()),
            Event::Message { text } => format!("note {text}"),
            Event::Summary(s) => {
                let best = match (&s.stopping_metric, s.best_metric, s.best_epoch) {
                    (Some(tag), Some(b), Some(e)) => format!(" best {tag} {b:.4} at epoch {e}"),
                    _ => String::new(),
                };
                format!(
                    "summary {} epochs {}/{} steps {} ({} this run){best} time {} ({} in total) \
                     {:.2} it/s data-wait {:.0}% validation {:.1} s",
                    s.outcome.as_str(),
                    s.epochs_done,
                    s.epochs,
                    s.steps_done,
                    s.steps_this_run,
                    hms(s.seconds_this_run),
                    hms(s.seconds_total),
                    s.it_per_s,
                    s.data_wait_share * 100.0,
                    s.validation_seconds,
                )
            }
        }
    }

    /// The line for programs: one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"event\":\"error\",\"text\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let e = Event::Step {
            epoch: 2,
            epochs: 10,
            step: 15,
            total_steps: 100,
            loss: 0.25,
            lr: 1e-3,
            it_per_s: 1.5,
            data_wait: 0.04,
            eta_s: 3725.0,
        };
        assert_eq!(
            e.to_text(),
            "epoch 2/10 step 15/100 loss 0.2500 lr 1.000e-3 1.50 it/s data-wait 4% eta 1:02:05"
        );
        let j: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(j["event"], "step");
        assert_eq!(j["step"], 15);
        assert_eq!(hms(f64::NAN), "?");
    }
}
