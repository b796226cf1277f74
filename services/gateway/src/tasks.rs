//! MONAI Label's background tasks (`/train/`, `/scoring/`): one of a kind runs at a time,
//! and their records answer `GET` in MONAI Label's shape: `id`, `status` (`SUBMITTED`,
//! `RUNNING`, `DONE`, `ERROR`, `STOPPED`), `request`, `start_ts`, `end_ts`, `details` (the
//! last lines of progress), `result`. They live in the gateway's memory: the last
//! [`KEPT_TASKS`] of each kind.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::error::{GatewayError, Result};

/// Tasks kept for `GET ...?all=true`.
pub const KEPT_TASKS: usize = 20;
/// Progress lines kept per task (MONAI Label keeps 20).
const KEPT_DETAILS: usize = 20;

/// One task, as `GET /train/` (or `/scoring/`) shows it.
#[derive(Clone, Debug)]
pub struct Task {
    /// A UUID.
    pub id: String,
    /// What it works on (a model, a scoring method).
    pub model: String,
    /// `SUBMITTED`, `RUNNING`, `DONE`, `ERROR` or `STOPPED`.
    pub status: &'static str,
    /// The request with its params.
    pub request: Value,
    /// When it started.
    pub start_ts: String,
    /// When it ended.
    pub end_ts: Option<String>,
    /// The last lines of progress.
    pub details: VecDeque<String>,
    /// What it gave.
    pub result: Option<Value>,
    /// The backend job being waited on, cancelled by a stop.
    pub job: Option<String>,
}

impl Task {
    pub fn json(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "status": self.status,
            "request": self.request,
            "start_ts": self.start_ts,
            "details": self.details,
        });
        if let Some(t) = &self.end_ts {
            v["end_ts"] = json!(t);
        }
        if let Some(r) = &self.result {
            v["result"] = r.clone();
        }
        v
    }

    pub fn running(&self) -> bool {
        matches!(self.status, "SUBMITTED" | "RUNNING")
    }

    pub fn note(&mut self, line: String) {
        if self.details.back() != Some(&line) {
            if self.details.len() == KEPT_DETAILS {
                self.details.pop_front();
            }
            self.details.push_back(line);
        }
    }
}

#[derive(Default)]
struct State {
    tasks: VecDeque<Task>,
    stats: BTreeMap<String, Value>,
}

/// The tasks of one kind (`Train`, `Scoring`): at most one runs.
#[derive(Clone)]
pub struct TaskBoard {
    kind: &'static str,
    route: &'static str,
    state: Arc<Mutex<State>>,
}

/// `YYYY-mm-dd HH:MM:SS` (UTC), MONAI Label's time stamps.
fn timestamp() -> String {
    let t = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    t.trim_end_matches('Z').replacen('T', " ", 1)
}

impl TaskBoard {
    /// The board of `/train/`.
    pub fn training() -> Self {
        Self::new("Train", "/train/")
    }

    /// The board of `/scoring/`.
    pub fn scoring() -> Self {
        Self::new("Scoring", "/scoring/")
    }

    /// Records `model`'s last finished run (`/info/`'s `train_stats`).
    pub fn set_stats(&self, model: &str, stats: Value) {
        self.with(|s| s.stats.insert(model.to_string(), stats));
    }

    /// An empty board for tasks of `kind` served at `route` (for messages).
    pub fn new(kind: &'static str, route: &'static str) -> Self {
        Self {
            kind,
            route,
            state: Arc::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub fn update(&self, id: &str, f: impl FnOnce(&mut Task)) {
        self.with(|s| {
            if let Some(t) = s.tasks.iter_mut().find(|t| t.id == id) {
                f(t);
            }
        });
    }

    /// The last task, every task (oldest first) with `all`, or the running one with
    /// `running_only`; `None` when there is none.
    pub fn status(&self, all: bool, running_only: bool) -> Option<Value> {
        self.with(|s| {
            if running_only {
                return s.tasks.iter().find(|t| t.running()).map(Task::json);
            }
            if all {
                return (!s.tasks.is_empty()).then(|| Value::Array(s.tasks.iter().map(Task::json).collect()));
            }
            s.tasks.back().map(Task::json)
        })
    }

    /// Each model's last finished run, for `/info/`'s `train_stats`.
    pub fn stats(&self) -> Map<String, Value> {
        self.with(|s| s.stats.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Marks the running task stopped and returns it with the job to cancel; `None` when
    /// nothing runs.
    pub fn stop_running(&self) -> Option<(Value, Option<String>)> {
        self.with(|s| {
            let t = s.tasks.iter_mut().find(|t| t.running())?;
            t.status = "STOPPED";
            t.end_ts = Some(timestamp());
            t.note(format!("stopped by DELETE {}", self.route));
            Some((t.json(), t.job.clone()))
        })
    }

    /// Starts a task for `model` (checked by the caller) unless one runs: 429 then.
    pub fn begin(&self, model: &str, request: Value) -> Result<Task> {
        self.with(|s| {
            if let Some(t) = s.tasks.iter().find(|t| t.running()) {
                return Err(GatewayError::TaskRunning(format!(
                    "{} Task is Already Running (task {} for {:?}); DELETE {} stops it",
                    self.kind, t.id, t.model, self.route
                )));
            }
            let task = Task {
                id: uuid::Uuid::new_v4().to_string(),
                model: model.to_string(),
                status: "SUBMITTED",
                request,
                start_ts: timestamp(),
                end_ts: None,
                details: VecDeque::new(),
                result: None,
                job: None,
            };
            if s.tasks.len() == KEPT_TASKS {
                s.tasks.pop_front();
            }
            s.tasks.push_back(task.clone());
            Ok(task)
        })
    }

    /// Ends the task (unless it was stopped meanwhile).
    pub fn finish(&self, id: &str, outcome: std::result::Result<Value, String>) {
        self.update(id, |t| {
            if t.status == "STOPPED" {
                return;
            }
            t.end_ts = Some(timestamp());
            t.job = None;
            match outcome {
                Ok(result) => {
                    t.status = "DONE";
                    t.result = Some(result);
                }
                Err(e) => {
                    t.status = "ERROR";
                    t.note(format!("error: {e}"));
                    t.result = Some(json!({"error": e}));
                }
            }
        });
    }

    pub fn stopped(&self, id: &str) -> bool {
        self.with(|s| s.tasks.iter().any(|t| t.id == id && t.status == "STOPPED"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_task_at_a_time_and_a_stop_ends_it() {
        let t = TaskBoard::new("Train", "/train/");
        assert!(t.status(false, false).is_none());
        let a = t.begin("m", json!({"model": "m"})).unwrap();
        let e = t.begin("m", json!({})).unwrap_err();
        assert_eq!(e.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(t.status(false, true).unwrap()["id"], a.id);
        let (stopped, _) = t.stop_running().unwrap();
        assert_eq!(stopped["status"], "STOPPED");
        // A late outcome does not overwrite the stop.
        t.finish(&a.id, Ok(json!({})));
        assert_eq!(t.status(false, false).unwrap()["status"], "STOPPED");
        assert!(t.status(false, true).is_none());
        let b = t.begin("m", json!({})).unwrap();
        t.finish(&b.id, Err("boom".into()));
        let all = t.status(true, false).unwrap();
        assert_eq!(all.as_array().unwrap().len(), 2);
        assert_eq!(all[1]["status"], "ERROR");
    }
}
