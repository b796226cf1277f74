//! The child processes that do a job's work, and the job's outputs.
//!
//! - [`Child`]: `aiaa train segmentation … --progress json` (or `export …`, `evaluate …`)
//!   in its own process group (a Ctrl-C at the service's terminal reaches the service, which
//!   stops its jobs itself), its stdout and stderr read line by line; [`Child::interrupt`]
//!   sends SIGINT (training stops at a step boundary and saves its last checkpoint),
//!   [`Child::kill`] SIGKILL. A crash or an out-of-memory kill ends only the child.
//! - [`LogTail`]: the last lines of both streams, kept for a failed job's `log_tail`.
//! - [`Outputs`]: uploads the files of the job's output folder to the object store, whole
//!   (streamed through a multipart upload that is published only when complete), again
//!   whenever a file changed.
//! - [`stop_orphan`]: after a service restart, a job's child from before (still running,
//!   reparented) is found by its pid and its work folder on its command line, stopped with
//!   SIGINT (so it saves its checkpoint), and killed after the grace period.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use aiaa_runtime::store::Store;
use aiaa_runtime::upload::HashingUpload;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc;

use crate::error::{Result, TrainerError};

/// Lines kept for `log_tail`.
pub const LOG_TAIL_LINES: usize = 50;
/// Longest line kept (characters); longer ones are cut.
const MAX_LINE: usize = 2000;
/// Bytes read from a file per upload part.
const UPLOAD_PIECE: usize = 1 << 20;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pipe {
    /// Standard output (progress events).
    Stdout,
    /// Standard error (logs, errors).
    Stderr,
}

/// The last lines a child printed.
#[derive(Debug, Default)]
pub struct LogTail {
    lines: VecDeque<String>,
}

impl LogTail {
    /// Keeps `line`, dropping the oldest beyond [`LOG_TAIL_LINES`].
    pub fn push(&mut self, line: &str) {
        if self.lines.len() == LOG_TAIL_LINES {
            self.lines.pop_front();
        }
        let line = if line.chars().count() > MAX_LINE {
            format!("{}…", line.chars().take(MAX_LINE).collect::<String>())
        } else {
            line.to_string()
        };
        self.lines.push_back(line);
    }

    /// The kept lines, one per line.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last line that starts with `prefix`.
    pub fn last_starting_with(&self, prefix: &str) -> Option<&str> {
        self.lines
            .iter()
            .rev()
            .find(|l| l.starts_with(prefix))
            .map(String::as_str)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Its working folder.
    pub cwd: PathBuf,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

/// A running child process.
#[derive(Debug)]
pub struct Child {
    child: tokio::process::Child,
    pid: u32,
    lines: mpsc::Receiver<(Pipe, String)>,
}

async fn read_lines<R: tokio::io::AsyncRead + Unpin>(pipe: Pipe, r: R, tx: mpsc::Sender<(Pipe, String)>) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Lines, whatever their encoding; a read error ends the stream like EOF.
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                if tx.send((pipe, line)).await.is_err() {
                    // Nobody listens any more: keep draining so the child never blocks.
                    let mut sink = Vec::new();
                    let _ = r.read_to_end(&mut sink).await;
                    break;
                }
            }
        }
    }
}

impl Child {
    /// Starts the child in its own process group with piped stdout and stderr.
    pub fn spawn(spec: &ChildSpec) -> Result<Child> {
        let mut cmd = tokio::process::Command::new(&spec.program);
        cmd.args(&spec.args)
            .current_dir(&spec.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false);
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| TrainerError::Internal(format!("cannot start {}: {e}", spec.program.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| TrainerError::Internal("the child exited before it had a pid".into()))?;
        let (tx, lines) = mpsc::channel(1024);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_lines(Pipe::Stdout, out, tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(read_lines(Pipe::Stderr, err, tx));
        }
        Ok(Child { child, pid, lines })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The next line of either stream; `None` once both are closed.
    pub async fn next_line(&mut self) -> Option<(Pipe, String)> {
        self.lines.recv().await
    }

    /// Sends SIGINT: training stops at the next step boundary and saves its last checkpoint.
    pub fn interrupt(&self) {
        signal(self.pid, Signal::SIGINT);
    }

    /// Sends SIGKILL.
    pub fn kill(&self) {
        signal(self.pid, Signal::SIGKILL);
    }

    /// Waits for the child to exit (killing it if it has not exited `grace` after its
    /// streams closed).
    pub async fn wait(mut self, grace: Duration) -> Result<ExitStatus> {
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(r) => r.map_err(|e| TrainerError::Internal(format!("waiting for the child: {e}"))),
            Err(_) => {
                self.kill();
                self.child
                    .wait()
                    .await
                    .map_err(|e| TrainerError::Internal(format!("waiting for the child: {e}")))
            }
        }
    }
}

fn signal(pid: u32, s: Signal) {
    let Ok(raw) = i32::try_from(pid) else { return };
    if let Err(e) = kill(Pid::from_raw(raw), s) {
        tracing::debug!(pid, signal = %s, error = %e, "signal not delivered (the process has ended)");
    }
}

/// How a child ended, in words: `exit status 1`, `killed by signal 9 (SIGKILL: out of
/// memory, or killed from outside)`.
pub fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(9) => "killed by signal 9 (SIGKILL: out of memory, or killed from outside)".into(),
        Some(s) => {
            let name = Signal::try_from(s).map(|s| s.as_str()).unwrap_or("unknown");
            format!("killed by signal {s} ({name})")
        }
        None => format!("{status}"),
    }
}

/// Whether process `pid` is alive (not a zombie) and its command line names `marker`.
pub fn runs_with(pid: u32, marker: &Path) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    if matches!(state, None | Some('Z' | 'X')) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let marker = marker.to_string_lossy();
    cmdline
        .split(|b| *b == 0)
        .any(|arg| String::from_utf8_lossy(arg).contains(marker.as_ref()))
}

/// Stops a child left running by an earlier run of the service (see the module docs).
/// Returns whether there was one.
pub async fn stop_orphan(pid: u32, marker: &Path, grace: Duration) -> bool {
    if !runs_with(pid, marker) {
        return false;
    }
    tracing::warn!(pid, work = %marker.display(), "a job's process from before the restart still runs; stopping it");
    signal(pid, Signal::SIGINT);
    let deadline = Instant::now() + grace;
    while runs_with(pid, marker) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if runs_with(pid, marker) {
        signal(pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs_with(pid, marker) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    true
}

/// The files of an output folder, uploaded under a prefix of the store.
#[derive(Debug)]
pub struct Outputs {
    dir: PathBuf,
    prefix: String,
    uploaded: HashMap<String, (u64, Option<SystemTime>)>,
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Temporary files of atomic writes (`.x.tmp-…`) and hidden files stay local.
        if name.starts_with('.') {
            continue;
        }
        let rel_name = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), &rel_name, out)?;
        } else if kind.is_file() {
            out.push((rel_name, entry.path()));
        }
    }
    Ok(())
}

impl Outputs {
    /// The files of `dir`, to go under `prefix` (ending with '/').
    pub fn new(dir: PathBuf, prefix: String) -> Outputs {
        Outputs {
            dir,
            prefix,
            uploaded: HashMap::new(),
        }
    }

    /// The output folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The object path of a file of the folder (relative path).
    pub fn object(&self, rel: &str) -> String {
        format!("{}{rel}", self.prefix)
    }

    /// Uploads every file that is new or changed since its last upload; returns the object
    /// paths of every file of the folder, sorted.
    pub async fn sync(&mut self, store: &Store) -> Result<Vec<String>> {
        let dir = self.dir.clone();
        let files = tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            walk(&dir, "", &mut files).map(|()| files)
        })
        .await
        .map_err(|e| TrainerError::Internal(format!("listing the outputs: {e}")))?
        .map_err(|e| TrainerError::io(&self.dir, e))?;
        let mut objects = Vec::new();
        for (rel, path) in files {
            let Ok(meta) = tokio::fs::metadata(&path).await else {
                continue; // replaced or removed meanwhile; the next sync sees it
            };
            let stamp = (meta.len(), meta.modified().ok());
            if self.uploaded.get(&rel) != Some(&stamp) {
                self.upload(store, &rel, &path).await?;
                self.uploaded.insert(rel.clone(), stamp);
            }
            objects.push(self.object(&rel));
        }
        objects.sort();
        Ok(objects)
    }

    async fn upload(&self, store: &Store, rel: &str, path: &Path) -> Result<()> {
        let object = self.object(rel);
        let location = object_store::path::Path::parse(&object)
            .map_err(|e| TrainerError::Internal(format!("object path {object:?}: {e}")))?;
        let store_err = |context: String| move |e| TrainerError::Store { context, source: e };
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| TrainerError::io(path, e))?;
        let mut upload = HashingUpload::start(store, &location)
            .await
            .map_err(store_err(format!("start the upload of {object}")))?;
        let result = async {
            loop {
                let mut buf = vec![0u8; UPLOAD_PIECE];
                let n = file.read(&mut buf).await.map_err(|e| TrainerError::io(path, e))?;
                if n == 0 {
                    return Ok(());
                }
                buf.truncate(n);
                upload
                    .write(buf.into())
                    .await
                    .map_err(store_err(format!("upload {object}")))?;
            }
        }
        .await;
        match result {
            Ok(()) => {
                let size = upload.size();
                upload
                    .complete()
                    .await
                    .map_err(store_err(format!("complete the upload of {object}")))?;
                tracing::debug!(%object, size, "output uploaded");
                Ok(())
            }
            Err(e) => {
                upload.abort().await;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[test]
    fn the_tail_keeps_the_last_lines() {
        let mut t = LogTail::default();
        for i in 0..(LOG_TAIL_LINES + 7) {
            t.push(&format!("line {i}"));
        }
        let text = t.text();
        assert_eq!(text.lines().count(), LOG_TAIL_LINES);
        assert!(text.starts_with("line 7\n") && text.ends_with(&format!("line {}", LOG_TAIL_LINES + 6)));
        t.push(&"x".repeat(5000));
        assert!(t.text().lines().last().unwrap().chars().count() <= MAX_LINE + 1);
        assert!(t.last_starting_with("line 5").is_some());
    }

    #[tokio::test]
    async fn children_are_read_interrupted_and_described() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ChildSpec {
            program: "python3".into(),
            args: vec![
                "-c".into(),
                concat!(
                    "import signal, sys, time\n",
                    "def stop(*_):\n    print('stopping', flush=True); sys.exit(130)\n",
                    "signal.signal(signal.SIGINT, stop)\n",
                    "print('out', flush=True); print('err', file=sys.stderr, flush=True)\n",
                    "while True: time.sleep(0.05)\n",
                )
                .into(),
            ],
            cwd: dir.path().to_path_buf(),
            env: vec![],
        };
        let mut child = Child::spawn(&spec).unwrap();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            seen.push(child.next_line().await.unwrap());
        }
        // Exec'd by now (it printed): its command line is the script's.
        assert!(runs_with(child.pid(), Path::new("SIGINT")));
        seen.sort_by_key(|(p, _)| *p == Pipe::Stderr);
        assert_eq!(seen[0], (Pipe::Stdout, "out".to_string()));
        assert_eq!(seen[1], (Pipe::Stderr, "err".to_string()));
        child.interrupt();
        assert_eq!(
            child.next_line().await,
            Some((Pipe::Stdout, "stopping".to_string()))
        );
        assert_eq!(child.next_line().await, None);
        let status = child.wait(Duration::from_secs(5)).await.unwrap();
        assert_eq!(describe_exit(&status), "exit status 130");

        let spec = ChildSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "kill -9 $$".into()],
            ..spec
        };
        let mut child = Child::spawn(&spec).unwrap();
        while child.next_line().await.is_some() {}
        let status = child.wait(Duration::from_secs(5)).await.unwrap();
        assert!(describe_exit(&status).contains("SIGKILL"), "{status}");
    }

    #[tokio::test]
    async fn orphans_are_stopped_by_pid_and_work_folder() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("job-folder");
        let script = "import signal, sys, time\nsignal.signal(signal.SIGINT, lambda *_: sys.exit(130))\nprint(flush=True)\nwhile True: time.sleep(0.05)";
        let mut orphan = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(&marker)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait until the handler is installed (it prints once).
        let mut ready = [0u8; 1];
        std::io::Read::read_exact(orphan.stdout.as_mut().unwrap(), &mut ready).unwrap();
        let pid = orphan.id();
        assert!(!runs_with(pid, Path::new("/some/other/job")));
        assert!(!stop_orphan(pid, Path::new("/some/other/job"), Duration::from_secs(1)).await);
        let reaper = std::thread::spawn(move || orphan.wait().unwrap());
        assert!(stop_orphan(pid, &marker, Duration::from_secs(5)).await);
        assert_eq!(reaper.join().unwrap().code(), Some(130));
        assert!(!runs_with(pid, &marker));
    }

    #[tokio::test]
    async fn outputs_upload_new_and_changed_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir_all(out.join("sub")).unwrap();
        std::fs::write(out.join("a.ckpt"), b"one").unwrap();
        std::fs::write(out.join("sub/b.json"), b"{}").unwrap();
        std::fs::write(out.join(".a.ckpt.tmp-1"), b"partial").unwrap();
        let store = aiaa_runtime::store::open(dir.path().join("store").to_str().unwrap()).unwrap();
        let mut outputs = Outputs::new(out.clone(), "jobs/x/".into());
        let objects = outputs.sync(&store).await.unwrap();
        assert_eq!(objects, vec!["jobs/x/a.ckpt", "jobs/x/sub/b.json"]);
        let get = |p: &str| {
            let store = store.clone();
            let p = object_store::path::Path::from(p);
            async move { store.get(&p).await.unwrap().bytes().await.unwrap() }
        };
        assert_eq!(get("jobs/x/a.ckpt").await.as_ref(), b"one");
        assert!(
            store
                .head(&object_store::path::Path::from("jobs/x/.a.ckpt.tmp-1"))
                .await
                .is_err()
        );
        std::fs::write(out.join("a.ckpt"), b"two, longer").unwrap();
        outputs.sync(&store).await.unwrap();
        assert_eq!(get("jobs/x/a.ckpt").await.as_ref(), b"two, longer");
    }
}
