//! `docs/tutorial.md`, run as written, so that it cannot rot.
//!
//! How the doc is read:
//!
//! - every fenced block whose info string is exactly `sh` is run, in the doc's order, as ONE
//!   bash script (`set -euo pipefail`, so variables, `cd` and exports carry from block to
//!   block as in the reader's terminal), in a temporary working directory;
//! - blocks marked `sh skip` are shown to the reader but not run (TensorBoard, which needs
//!   its own install and runs until stopped);
//! - `text` blocks are outputs, not compared literally (timings and ids vary); the outputs
//!   that matter are checked below, from the files the commands write and the lines they print;
//! - any other info string is an error here, so a typo cannot quietly take a block out of the
//!   test.
//!
//! Before running, a small table of substitutions ([`substitutions`]) changes what must differ
//! in a test: the checkout and the work folder, the binary the harness built, a shorter
//! training (`--epochs 40` for the doc's 100), and `aiaa up` started in the background on free
//! ports (port 0, addresses read from its output) with a wait until it is ready, standing for
//! the doc's second terminal. Each substitution asserts that the text it replaces is in the
//! doc's `sh` blocks as often as expected, so editing those lines without this table fails
//! here loudly. The whole script runs in its own process group, killed on drop (also when an
//! assertion fails), so the background platform never outlives the test.
//!
//! Checked: the converted files; the short training's summary (completed, best Dice on the
//! MNI152 variant at least 0.70; ROBEX is read by the final evaluation only); the exported model and config; the push and the admin load; every
//! `HTTP` status line the doc's `curl` calls print is 200; the dextr3d mask and deepbet's
//! mask cover the ROBEX brain (Dice at least 0.70 and 0.90 on the image's grid); `aiaa
//! evaluate`'s report holds the Dice of the server's own mask; the platform stops cleanly on
//! SIGTERM.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aiaa_e2e::volumes::{dice, foreground, read};
use aiaa_e2e::{aiaa_bin, repo_root, testdata};
use serde_json::Value;

/// Epochs of the test's training (the doc trains 100: 1 min 40 s on 2 cores; 40 validate at
/// epochs 20 and 40 in about 50 s). `AIAA_TUTORIAL_EPOCHS=100` runs the doc's own.
const TEST_EPOCHS: u64 = 40;

fn epochs() -> u64 {
    std::env::var("AIAA_TUTORIAL_EPOCHS")
        .ok()
        .map(|v| v.parse().expect("AIAA_TUTORIAL_EPOCHS: a number"))
        .unwrap_or(TEST_EPOCHS)
}

/// The whole script's time limit.
const SCRIPT_LIMIT: Duration = Duration::from_secs(600);

/// The fenced blocks of a Markdown text: (info string, body).
fn fenced_blocks(doc: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in doc.lines() {
        match open.as_mut() {
            None => {
                if let Some(info) = line.strip_prefix("```") {
                    open = Some((info.trim().to_string(), String::new()));
                }
            }
            Some((_, body)) => {
                if line.trim_end() == "```" {
                    blocks.push(open.take().unwrap());
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "docs/tutorial.md: a fenced block is never closed");
    blocks
}

/// The `sh` blocks, in order, after checking every block's info string.
fn runnable_blocks(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (info, body) in fenced_blocks(doc) {
        match info.as_str() {
            "sh" => out.push(body),
            "sh skip" | "text" => {}
            other => panic!(
                "docs/tutorial.md: fenced block with info string {other:?}; use `sh` (run by \
                 tests/tests/tutorial.rs), `sh skip` (not run) or `text` (output)\n{body}"
            ),
        }
    }
    out
}

/// How often a substituted text must occur in the doc's `sh` blocks.
enum Times {
    Exactly(usize),
    AtLeastOnce,
}

struct Substitution {
    what: &'static str,
    with: String,
    times: Times,
}

/// Single-quoted for bash.
fn quoted(path: &Path) -> String {
    let s = path.to_str().expect("a UTF-8 path");
    assert!(!s.contains('\''), "path with a quote: {s}");
    format!("'{s}'")
}

/// The only differences between the doc's commands and what the test runs.
fn substitutions(work: &Path, bin_dir: &Path) -> Vec<Substitution> {
    use Times::*;
    vec![
        // The reader's checkout and work folder.
        Substitution {
            what: "export AIAA_SRC=$HOME/aiaa",
            with: format!("export AIAA_SRC={}", quoted(&repo_root())),
            times: Exactly(2),
        },
        Substitution {
            what: "~/aiaa-tutorial",
            with: quoted(work),
            times: Exactly(3),
        },
        // The binary `aiaa_bin()` built (same cargo, same profile as this test).
        Substitution {
            what: "(cd \"$AIAA_SRC\" && cargo build -p aiaa-cli)",
            with: ": the test harness built aiaa".into(),
            times: Exactly(1),
        },
        Substitution {
            what: "export PATH=\"$CARGO_TARGET_DIR/debug:$PATH\"",
            with: format!("export PATH={}:\"$PATH\"", quoted(bin_dir)),
            times: Exactly(2),
        },
        // A shorter training.
        Substitution {
            what: "--epochs 100",
            with: format!("--epochs {}", epochs()),
            times: Exactly(1),
        },
        // The second terminal: in the background, on free ports, waited for.
        Substitution {
            what: "aiaa up --engine-pool \"$AIAA_SRC/models/engine_pool.json\"\n",
            with: r#"aiaa up --engine-pool "$AIAA_SRC/models/engine_pool.json" > up.log 2>&1 &
echo $! > up.pid
for _ in $(seq 1200); do grep -q '^aiaa: ready' up.log && break; kill -0 "$(cat up.pid)"; sleep 0.1; done
grep -q '^aiaa: ready' up.log
tutorial_addr() { sed -n "s/^aiaa: $1 listening on \([^ ]*\) .*/\1/p" up.log; }
TUTORIAL_GATEWAY=$(tutorial_addr gateway)
export AIAA_REGISTRY_URL=http://$(tutorial_addr registry)
export AIAA_DATASTORE_URL=http://$(tutorial_addr datastore)
for _ in $(seq 300); do curl -sf "$TUTORIAL_GATEWAY/readyz" > /dev/null && break; sleep 0.1; done
curl -sf "$TUTORIAL_GATEWAY/readyz" > /dev/null
"#
            .into(),
            times: Exactly(1),
        },
        Substitution {
            what: "localhost:5000",
            with: "$TUTORIAL_GATEWAY".into(),
            times: AtLeastOnce,
        },
    ]
}

/// The script: the substituted blocks, each after a marker line with the time it started.
fn script(blocks: &[String], subs: &[Substitution]) -> String {
    let mut joined = String::new();
    for (i, block) in blocks.iter().enumerate() {
        joined.push_str(&format!("echo \"@@ block {i} $EPOCHREALTIME\"\n"));
        joined.push_str(block);
    }
    for sub in subs {
        let n = joined.matches(sub.what).count();
        match sub.times {
            Times::Exactly(want) => assert_eq!(
                n, want,
                "docs/tutorial.md's sh blocks hold {:?} {n} times, the test expects {want}: \
                 update tests/tests/tutorial.rs's substitutions with the doc",
                sub.what
            ),
            Times::AtLeastOnce => assert!(
                n > 0,
                "docs/tutorial.md's sh blocks no longer hold {:?}: update \
                 tests/tests/tutorial.rs's substitutions with the doc",
                sub.what
            ),
        }
        joined = joined.replace(sub.what, &sub.with);
    }
    format!("set -euo pipefail\nPS4='+ tutorial: '\nset -x\n{joined}echo \"@@ end $EPOCHREALTIME\"\n")
}

/// The script's process group: SIGTERM, then SIGKILL, on drop or [`Group::stop`].
struct Group {
    pgid: u32,
}

impl Group {
    fn alive(&self) -> bool {
        Command::new("kill")
            .args(["-0", "--", &format!("-{}", self.pgid)])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, "--", &format!("-{}", self.pgid)])
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM to every process left in the group; true when all exit within 30 s (else they
    /// are killed).
    fn stop(&self) -> bool {
        if !self.alive() {
            return true;
        }
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if !self.alive() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal("-KILL");
        false
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Per block: its first command line and how long it ran, from the markers.
fn block_times(log: &str, blocks: &[String]) -> Vec<(String, f64)> {
    let marks: Vec<f64> = log
        .lines()
        .filter(|l| l.starts_with("@@ "))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    blocks
        .iter()
        .zip(marks.windows(2))
        .map(|(b, w)| {
            let first = b
                .lines()
                .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .unwrap_or_default();
            (first.chars().take(70).collect(), w[1] - w[0])
        })
        .collect()
}

/// The Dice column of `file`'s class-1 row of a `mean_dice_raw_results.txt`.
fn reported_dice(report: &Path, file: &str) -> f64 {
    let raw = std::fs::read_to_string(report).unwrap_or_else(|e| panic!("{}: {e}", report.display()));
    let row = raw
        .lines()
        .find(|l| l.starts_with(&format!("{file}\t1\t")))
        .unwrap_or_else(|| panic!("no row for {file} in {}:\n{raw}", report.display()));
    row.split('\t').nth(3).unwrap().parse().unwrap()
}

#[test]
fn the_tutorial_runs_as_written() {
    let started = Instant::now();
    testdata(); // fetched once for every suite; the doc's own fetch then finds it
    let bin = aiaa_bin();
    let bin_dir = bin.parent().unwrap().to_path_buf();
    let doc = std::fs::read_to_string(repo_root().join("docs/tutorial.md")).unwrap();
    let blocks = runnable_blocks(&doc);
    assert!(
        blocks.len() >= 7,
        "only {} sh blocks in docs/tutorial.md",
        blocks.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let work: PathBuf = dir.path().join("aiaa-tutorial");
    std::fs::create_dir(&work).unwrap();
    let script_path = dir.path().join("tutorial.sh");
    std::fs::write(&script_path, script(&blocks, &substitutions(&work, &bin_dir))).unwrap();
    let log_path = dir.path().join("tutorial.log");
    let log_file = File::create(&log_path).unwrap();

    let mut cmd = Command::new("bash");
    cmd.arg(&script_path)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .process_group(0);
    for service in ["REGISTRY", "DATASTORE", "INFERENCE", "TRAINER", "GATEWAY"] {
        cmd.env(format!("AIAA_{service}_LISTEN"), "127.0.0.1:0");
    }
    // The platform's folders outside its store default to the system's temporary folder,
    // shared by every run on the machine: keep this run's own, so that nothing another run
    // left there (or another test running at the same time) is involved.
    cmd.env("AIAA_INFERENCE_MODEL_DIR", dir.path().join("inference-models"))
        .env("AIAA_TRAINER_WORK_DIR", dir.path().join("trainer"));
    for var in [
        "AIAA_STORE_URL",
        "AIAA_API_KEY",
        "AIAA_ENGINE_POOL",
        "AIAA_REGISTRY_URL",
        "AIAA_DATASTORE_URL",
        "AIAA_INFERENCE_URL",
        "AIAA_LOG",
    ] {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().expect("start bash");
    let group = Group { pgid: child.id() };
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let up_log = || std::fs::read_to_string(work.join("up.log")).unwrap_or_default();
    let deadline = Instant::now() + SCRIPT_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // Unwinding drops `group`, which stops what the script started.
            panic!(
                "the tutorial's commands ran longer than {SCRIPT_LIMIT:?}:\n{}\n--- up.log:\n{}",
                tail(&read_log(), 60),
                tail(&up_log(), 30)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let log = read_log();
    assert!(
        status.success(),
        "the tutorial's commands failed ({status}):\n{}\n--- up.log:\n{}",
        tail(&log, 80),
        tail(&up_log(), 30)
    );
    for (first, seconds) in block_times(&log, &blocks) {
        eprintln!("{seconds:7.1} s  {first}");
    }
    // Everything the commands printed, without the trace of the commands themselves (shown
    // with `--nocapture`, to refresh the doc's `text` blocks).
    let printed: Vec<&str> = log
        .lines()
        .filter(|l| !l.trim_start_matches('+').starts_with(" tutorial: "))
        .collect();
    eprintln!("{}", printed.join("\n"));
    let has = |s: &str| printed.iter().any(|l| l.contains(s));

    // 2. Convert.
    assert!(has("converted 3 input(s) into data/images (0 skipped)"), "{log}");
    assert!(has("converted 3 input(s) into data/labels (0 skipped)"), "{log}");
    let truth = read(&work.join("data/labels/robex.nii.gz"));
    assert_eq!(truth.dims, [174, 225, 233], "ROBEX at 1 mm");

    // 3. Train (short).
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("runs/brain/train_summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["outcome"], "completed", "{summary}");
    assert_eq!(summary["epochs_done"], epochs(), "{summary}");
    let best = summary["best_metric"].as_f64().unwrap();
    eprintln!(
        "training: best mean Dice {best:.4} at epoch {} in {:.0} s",
        summary["best_epoch"],
        summary["seconds_total"].as_f64().unwrap()
    );
    assert!(best >= 0.70, "best validation Dice {best}");
    assert!(work.join("runs/brain/model.ckpt").is_file());
    let events = std::fs::read_dir(work.join("runs/brain"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("events.out.tfevents.")
        });
    assert!(events, "no TensorBoard event file");

    // 4. Export.
    assert!(has("Exported models/my_brain/model.pt"), "{log}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("models/my_brain/config.json")).unwrap())
            .unwrap();
    assert_eq!(config["type"], "annotation", "{config}");
    assert_eq!(config["roi"], serde_json::json!([48, 48, 48]), "{config}");

    // 5. Started, pushed, loaded.
    assert!(
        has("Pushed version 1 of my_annotation_mri_brain (2 files"),
        "{log}"
    );
    let loaded = printed
        .iter()
        .filter(|l| l.starts_with('{') && l.contains("\"name\":\"my_annotation_mri_brain\""))
        .count();
    assert!(loaded >= 1, "the admin API's answer is missing:\n{log}");
    let models = printed
        .iter()
        .find(|l| l.starts_with('['))
        .unwrap_or_else(|| panic!("no /v1/models answer:\n{log}"));
    for name in [
        "my_annotation_mri_brain",
        "annotation_mri_brain",
        "segmentation_mri_brain",
    ] {
        assert!(models.contains(&format!("\"name\":\"{name}\"")), "{models}");
    }

    // 6. Annotate: every status 200, masks of the brain on the image's grid.
    let statuses: Vec<&&str> = printed.iter().filter(|l| l.starts_with("HTTP ")).collect();
    assert!(statuses.len() >= 2, "{statuses:?}");
    assert!(
        statuses.iter().all(|l| l.starts_with("HTTP 200,")),
        "{statuses:?}"
    );
    let mask_dice = |name: &str| {
        let mask = read(&work.join(name));
        assert_eq!(mask.dims, truth.dims, "{name}");
        let fg = foreground(&mask);
        assert!(fg.iter().any(|&v| v), "{name} is empty");
        dice(&fg, &foreground(&truth))
    };
    let dextr3d = mask_dice("robex_dextr3d.nii.gz");
    let deepbet = mask_dice("robex_deepbet.nii.gz");
    eprintln!("served masks of the ROBEX brain: dextr3d Dice {dextr3d:.4}, deepbet {deepbet:.4}");
    assert!(dextr3d >= 0.70, "dextr3d Dice {dextr3d}");
    assert!(deepbet >= 0.90, "deepbet Dice {deepbet}");

    // 7. Evaluate: the report holds the Dice of the server's mask (and `zcmp` in the doc
    // already found the files equal).
    let reported = reported_dice(
        &work.join("eval/mean_dice_raw_results.txt"),
        "images/robex.nii.gz",
    );
    eprintln!("aiaa evaluate: Dice {reported:.6} (the served mask: {dextr3d:.6})");
    assert!(reported >= 0.70, "reported Dice {reported}");
    assert!((reported - dextr3d).abs() < 1e-6, "{reported} vs {dextr3d}");
    let reported = reported_dice(
        &work.join("eval_deepbet/mean_dice_raw_results.txt"),
        "images/robex.nii.gz",
    );
    assert!((reported - deepbet).abs() < 1e-6, "{reported} vs {deepbet}");

    // Stop: the platform exits cleanly on SIGTERM (Ctrl-C's twin).
    assert!(group.stop(), "the platform did not stop within 30 s");
    assert!(
        up_log().lines().any(|l| l == "aiaa: stopped"),
        "{}",
        tail(&up_log(), 20)
    );
    eprintln!("the tutorial ran in {:.0} s", started.elapsed().as_secs_f64());
}
