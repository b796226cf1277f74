//! The child run and followed: its lines become the job's progress (training's JSON
//! events) and its log tail, outputs are uploaded after every checkpoint and validation,
//! cancel and shutdown stop it (SIGINT, then SIGKILL after the grace), and its exit becomes
//! the job's end and result.

use std::path::Path;
use std::time::Duration;

use aiaa_proto::common::v1::JobState;
use aiaa_train::trainer::{BEST_CHECKPOINT, LAST_CHECKPOINT};
use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use super::driver::{Ctx, End};
use super::inputs::Prepared;
use super::record::Spec;
use super::{KIND_EXPORT, KIND_TRAINING};
use crate::runner::{Child, ChildSpec, LogTail, Outputs, Pipe, describe_exit};

/// The summary file `aiaa evaluate` writes into its output folder.
const EVALUATE_SUMMARY: &str = "aiaa_evaluate_summary.json";
/// The summary file of `aiaa evaluate --interactive`.
const INTERACTIVE_SUMMARY: &str = "interactive.json";

/// A JSON file of the child's outputs; `null` when it is missing or not JSON (the result
/// then says so by its nulls).
async fn read_json(path: &Path) -> Value {
    tokio::fs::read(path)
        .await
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .unwrap_or(Value::Null)
}

/// How a running child was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancel,
    Shutdown,
}

/// What following the child gathered: its report, its log tail, how it was stopped.
#[derive(Default)]
struct Followed {
    report: Report,
    tail: LogTail,
    stop: Option<Stop>,
    /// SIGKILL was sent after the grace period.
    killed: bool,
}

/// What the child reported.
#[derive(Default)]
struct Report {
    summary: Option<Value>,
    metrics: Map<String, Value>,
    last_step: u64,
    last_checkpoint_step: Option<u64>,
}

impl Ctx {
    /// Runs the child to its end, following its output, and ends the job (or, when the
    /// service stops, records it to run again).
    pub(super) async fn run(
        mut self,
        prepared: Prepared,
        cancel: &CancellationToken,
        shutdown: &CancellationToken,
    ) {
        let (_, _, out) = self.dirs();
        let mut child = match self.start_child(prepared).await {
            Ok(c) => c,
            Err(e) => {
                self.end(End::Failed(e, String::new())).await;
                return;
            }
        };
        let mut outputs = Outputs::new(out.clone(), self.meta.output_prefix.clone());
        let mut followed = Followed::default();
        self.follow(&mut child, &mut outputs, &mut followed, cancel, shutdown)
            .await;
        let status = child.wait(Duration::from_secs(10)).await;
        self.meta.pid = None;
        let uploaded = outputs.sync(&self.inner.store).await;
        let objects = match &uploaded {
            Ok(o) => o.clone(),
            Err(e) => {
                tracing::warn!(job = %self.id(), error = %e, "uploading the outputs failed");
                Vec::new()
            }
        };
        let status = match status {
            Ok(s) => s,
            Err(e) => {
                self.end(End::Failed(e.to_string(), followed.tail.text())).await;
                return;
            }
        };
        let prefix = self.meta.output_prefix.clone();
        let report = &followed.report;
        let checkpoint_note = if objects.iter().any(|o| o.ends_with(LAST_CHECKPOINT)) {
            format!(
                "; last checkpoint {prefix}{LAST_CHECKPOINT} (step {}): SubmitTraining with resume=true and \
                 output_prefix={prefix:?} continues it",
                report.last_checkpoint_step.unwrap_or(report.last_step)
            )
        } else {
            String::new()
        };
        let end = match followed.stop {
            Some(Stop::Shutdown) => {
                self.meta.recovered = true;
                let msg = format!(
                    "interrupted by the service's shutdown at step {}; runs again when it starts{checkpoint_note}",
                    report.last_step
                );
                self.persist_as(Some(JobState::Queued), Some(msg)).await;
                tracing::info!(job = %self.id(), "job interrupted by the shutdown; recorded to run again");
                return;
            }
            Some(Stop::Cancel) => {
                let how = if followed.killed {
                    "killed after the grace period".to_string()
                } else {
                    describe_exit(&status)
                };
                self.progress(
                    "cancelled",
                    report.last_step,
                    0,
                    "",
                    format!("cancelled at step {} ({how}){checkpoint_note}", report.last_step),
                );
                End::Cancelled
            }
            None if status.success() => match uploaded {
                Ok(objects) => End::Succeeded(self.result(&objects, report, &out).await.to_string()),
                Err(e) => End::Failed(format!("uploading the outputs: {e}"), followed.tail.text()),
            },
            None => {
                let program = match self.meta.spec.kind() {
                    KIND_TRAINING => "aiaa train",
                    KIND_EXPORT => "aiaa export",
                    _ => "aiaa evaluate",
                };
                let why = followed
                    .tail
                    .last_starting_with("Error: ")
                    .map(|l| format!(": {}", l.trim_start_matches("Error: ")))
                    .unwrap_or_default();
                let error = format!(
                    "{program} ended with {}{why}{checkpoint_note}",
                    describe_exit(&status)
                );
                End::Failed(error, followed.tail.text())
            }
        };
        self.end(end).await;
    }

    /// Starts the child (with the API key for a registry push) and records its pid; the error
    /// of a child that cannot start.
    async fn start_child(&mut self, prepared: Prepared) -> Result<Child, String> {
        let settings = self.inner.settings.clone();
        let mut env = Vec::new();
        if let Some(k) = &settings.api_key {
            env.push(("AIAA_API_KEY".to_string(), k.expose().to_string()));
        }
        let spec = ChildSpec {
            program: settings.program.clone(),
            args: prepared.args,
            cwd: self.meta.work_dir.clone(),
            env,
        };
        let kind = self.meta.spec.kind();
        let child = Child::spawn(&spec).map_err(|e| e.to_string())?;
        self.meta.pid = Some(child.pid());
        let stage = match kind {
            KIND_TRAINING => "train",
            KIND_EXPORT => "export",
            _ => "evaluate",
        };
        let started = if prepared.resumed {
            "continuing from the last checkpoint"
        } else {
            "started"
        };
        self.progress(
            stage,
            0,
            0,
            "",
            format!("{} {started} (pid {})", kind, child.pid()),
        );
        self.persist().await;
        tracing::info!(job = %self.id(), pid = child.pid(), kind, "job process started");
        Ok(child)
    }

    /// Follows the child until its output ends: every line into the tail and the report,
    /// cancel and shutdown sent as SIGINT, SIGKILL after the grace period.
    async fn follow(
        &mut self,
        child: &mut Child,
        outputs: &mut Outputs,
        followed: &mut Followed,
        cancel: &CancellationToken,
        shutdown: &CancellationToken,
    ) {
        let grace = self.inner.settings.grace;
        let kind = self.meta.spec.kind();
        let mut kill_at: Option<tokio::time::Instant> = None;
        loop {
            let killed = followed.killed;
            let kill_timer = async {
                match kill_at {
                    Some(t) if !killed => tokio::time::sleep_until(t).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                line = child.next_line() => {
                    let Some((pipe, line)) = line else { break };
                    followed.tail.push(&line);
                    self.on_line(kind, pipe, &line, &mut followed.report, outputs).await;
                }
                _ = cancel.cancelled(), if followed.stop.is_none() => {
                    tracing::info!(job = %self.id(), "cancelling: SIGINT to the job's process");
                    followed.stop = Some(Stop::Cancel);
                    child.interrupt();
                    kill_at = Some(tokio::time::Instant::now() + grace);
                    self.progress("stopping", followed.report.last_step, 0, "", "cancel requested: stopping at the next step and saving a checkpoint".into());
                }
                _ = shutdown.cancelled(), if followed.stop.is_none() => {
                    tracing::info!(job = %self.id(), "service stopping: SIGINT to the job's process");
                    followed.stop = Some(Stop::Shutdown);
                    child.interrupt();
                    kill_at = Some(tokio::time::Instant::now() + grace);
                }
                _ = kill_timer => {
                    tracing::warn!(job = %self.id(), "the job's process did not stop in time; SIGKILL");
                    child.kill();
                    followed.killed = true;
                }
            }
        }
    }

    /// One line of the child's output.
    async fn on_line(
        &mut self,
        kind: &str,
        pipe: Pipe,
        line: &str,
        report: &mut Report,
        outputs: &mut Outputs,
    ) {
        if kind != KIND_TRAINING || pipe != Pipe::Stdout {
            if pipe == Pipe::Stdout || line.starts_with("FAILED ") {
                let stage = if kind == KIND_EXPORT { "export" } else { "evaluate" };
                self.progress(stage, 0, 0, "", line.to_string());
                self.persist_soon().await;
            }
            return;
        }
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            return;
        };
        let u = |k: &str| event.get(k).and_then(Value::as_u64).unwrap_or(0);
        let f = |k: &str| event.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
        match event.get("event").and_then(Value::as_str).unwrap_or_default() {
            "start" => {
                let total = u("steps_per_epoch") * u("epochs");
                report.last_step = u("start_step");
                self.progress(
                    "train",
                    u("start_step"),
                    total,
                    "steps",
                    format!(
                        "training on {}: {} training and {} validation items, {} steps per epoch, from step {}",
                        event.get("device").and_then(Value::as_str).unwrap_or("?"),
                        u("training_items"),
                        u("validation_items"),
                        u("steps_per_epoch"),
                        u("start_step")
                    ),
                );
                self.persist().await;
            }
            "step" => {
                report.last_step = u("step");
                self.progress(
                    "train",
                    u("step"),
                    u("total_steps"),
                    "steps",
                    format!(
                        "epoch {}/{} step {}/{} loss {:.4} lr {:.3e} {:.2} it/s eta {}",
                        u("epoch"),
                        u("epochs"),
                        u("step"),
                        u("total_steps"),
                        f("loss"),
                        f("lr"),
                        f("it_per_s"),
                        aiaa_train::progress::hms(f("eta_s"))
                    ),
                );
                self.persist_soon().await;
            }
            "validation" => {
                if let Some(Value::Object(m)) = event.get("metrics") {
                    report.metrics = m.clone();
                }
                let metrics: Vec<String> = report
                    .metrics
                    .iter()
                    .map(|(k, v)| format!("{k} {:.4}", v.as_f64().unwrap_or(f64::NAN)))
                    .collect();
                let best = event.get("best").and_then(Value::as_bool).unwrap_or(false);
                let mut job = self.handle.snapshot().progress.unwrap_or_default();
                job.message = format!(
                    "validation at epoch {}: {}{}",
                    u("epoch"),
                    metrics.join(" "),
                    if best { " (best)" } else { "" }
                );
                self.handle.progress(job);
                self.sync(outputs).await;
            }
            "checkpoint" => {
                report.last_checkpoint_step = Some(u("step"));
                self.sync(outputs).await;
                self.persist().await;
            }
            "summary" => report.summary = Some(event),
            _ => {}
        }
    }

    async fn sync(&self, outputs: &mut Outputs) {
        if let Err(e) = outputs.sync(&self.inner.store).await {
            tracing::warn!(job = %self.id(), error = %e, "uploading outputs failed; retried at the next checkpoint");
        }
    }

    /// The result JSON of a successful job.
    async fn result(&self, objects: &[String], report: &Report, out: &Path) -> Value {
        let prefix = &self.meta.output_prefix;
        let mut result = json!({
            "output_prefix": prefix,
            "outputs": objects,
        });
        let has = |name: &str| {
            let path = format!("{prefix}{name}");
            objects.contains(&path).then_some(path)
        };
        match &self.meta.spec {
            Spec::Training { .. } => {
                result["best_checkpoint"] = json!(has(BEST_CHECKPOINT));
                result["last_checkpoint"] = json!(has(LAST_CHECKPOINT));
                result["metrics"] = Value::Object(report.metrics.clone());
                if let Some(s) = &report.summary {
                    for key in [
                        "outcome",
                        "epochs_done",
                        "steps_done",
                        "stopping_metric",
                        "best_metric",
                        "best_epoch",
                        "last_metric",
                        "last_loss",
                        "seconds_total",
                    ] {
                        result[key] = s.get(key).cloned().unwrap_or(Value::Null);
                    }
                }
            }
            Spec::Export { push_to, .. } => {
                result["model"] = json!(objects.iter().find(|o| o.ends_with(".pt")));
                result["config"] = json!(has("config.json"));
                result["pushed_to"] = json!(push_to);
            }
            Spec::Evaluation {
                interactive: Some(_), ..
            } => {
                let s = read_json(&out.join(INTERACTIVE_SUMMARY)).await;
                let cases = s.get("cases").and_then(Value::as_array).map(Vec::len);
                let failed = s.get("failed").and_then(Value::as_array).map(Vec::len);
                result["summary"] = json!(has(INTERACTIVE_SUMMARY));
                result["metrics"] = json!({
                    "mean_dice_per_click": s.get("mean_dice").cloned().unwrap_or(Value::Null),
                    "mean_nsd_per_click": s.get("mean_nsd").cloned().unwrap_or(Value::Null),
                    "mean_dsc_auc": s.get("mean_dsc_auc").cloned().unwrap_or(Value::Null),
                    "mean_nsd_auc": s.get("mean_nsd_auc").cloned().unwrap_or(Value::Null),
                    "median_seconds_per_click":
                        s.get("median_seconds_per_click").cloned().unwrap_or(Value::Null),
                    "clicks": s.get("clicks").cloned().unwrap_or(Value::Null),
                    "cases": cases.zip(failed).map(|(c, f)| c + f),
                    "succeeded": cases,
                    "failed": failed,
                });
            }
            Spec::Evaluation { .. } => {
                let summary = read_json(&out.join(EVALUATE_SUMMARY)).await;
                result["summary"] = json!(has(EVALUATE_SUMMARY));
                result["metrics"] = json!({
                    "mean_dice": summary.get("mean_dice").cloned().unwrap_or(Value::Null),
                    "cases": summary.get("cases").cloned().unwrap_or(Value::Null),
                    "succeeded": summary.get("succeeded").cloned().unwrap_or(Value::Null),
                    "failed": summary.get("failed").and_then(Value::as_array).map(Vec::len),
                });
            }
        }
        result
    }
}
