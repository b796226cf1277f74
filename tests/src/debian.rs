//! Debian packages the suites need (the container engine and tools, Chromium for the
//! page's browser test), installed with `apt-get` when the command they provide is missing.

use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Whether `program` is on the `PATH`.
pub fn on_path(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the packages (`(command, package)` pairs) whose command is missing; a no-op when
/// all are there. One install at a time in this process (apt holds a lock).
pub fn install_missing(packages: &[(&str, &str)]) {
    static APT: Mutex<()> = Mutex::new(());
    let _one = APT.lock().unwrap_or_else(|e| e.into_inner());
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(cmd, _)| !on_path(cmd))
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return;
    }
    eprintln!("installing Debian packages {missing:?}");
    apt(&["update"]);
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install);
}

fn apt(args: &[&str]) {
    let out = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("cannot run apt-get {args:?}: {e}"));
    assert!(
        out.status.success(),
        "apt-get {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
