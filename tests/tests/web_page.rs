//! The annotation page (`web/`) served by `aiaa up` with the real models, driven in Debian's
//! Chromium (headless, WebGL2 through SwiftShader) by `web/test/browser/annotate.mjs`
//! (playwright-core): upload the ROBEX head, deepbet, the six extreme points for DEXTR3D,
//! brush and eraser, save, the saved label read back; the canvas-to-voxel mapping on an
//! oblique, anisotropic volume against the voxels the server echoes; a file that is not an
//! image refused in words; a DICOM folder uploaded as one series. The script asserts and
//! prints its measurements as one JSON line; the screenshots of each step are kept under
//! the target folder (the path is printed).
//!
//! Before the browser: what the gateway answers at `/` and `/assets/...` (types, caching,
//! the content security policy) through the real binary.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use aiaa_e2e::aiaa_client::{Answer, send};
use aiaa_e2e::{Platform, build_page, debian, repo_root, testdata};

/// One browser at a time: each renders in software on the machine's few cores.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn up(extra: &[&str]) -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pool = repo_root().join("models/engine_pool.json");
    testdata();
    let store = dir.path().join("data");
    let mut args = vec!["up", "--engine-pool", pool.to_str().unwrap()];
    args.extend(extra);
    let env = [("AIAA_STORE_URL", store.to_str().unwrap())];
    (Platform::start(&args, &env).await, dir)
}

fn get(path: &str, accept: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nContent-Length: 0\r\n\r\n")
        .into_bytes()
}

/// Where this run's screenshots go: `<target>/web-page-shots/<name>`, emptied first.
fn shots_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).expect("<target>/<profile>/deps/<exe>");
    let dir = target.join("web-page-shots").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the browser script against the gateway; returns its JSON summary.
fn run_browser(gateway: std::net::SocketAddr, flow: &str, api_key: Option<&str>) -> serde_json::Value {
    debian::install_missing(&[("chromium", "chromium")]);
    let shots = shots_dir(flow);
    let data = testdata();
    let mut cmd = Command::new("node");
    cmd.arg(repo_root().join("web/test/browser/annotate.mjs"))
        .current_dir(repo_root().join("web"))
        .env("AIAA_URL", format!("http://{gateway}"))
        .env("AIAA_FLOW", flow)
        .env("AIAA_ROBEX", data.join("robex/atlas.nii.gz"))
        .env("AIAA_ROBEX_MASK", data.join("robex/atlas_mask.nii.gz"))
        .env("AIAA_DICOM_DIR", data.join("pydicom/dicomdirtests/98892001/CT5N"))
        .env("AIAA_SHOTS", &shots)
        .env("CHROMIUM", "/usr/bin/chromium");
    if let Some(key) = api_key {
        cmd.env("AIAA_API_KEY", key);
    }
    let started = Instant::now();
    let out = cmd.output().expect("run node web/test/browser/annotate.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!(
        "browser test ({flow}) took {:.0} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
    assert!(
        out.status.success(),
        "the browser test ({flow}) failed: {}",
        out.status
    );
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "the browser test must stay within 5 minutes"
    );
    let summary = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .expect("the script prints its summary as a JSON line");
    serde_json::from_str(summary).expect("summary JSON")
}

fn header<'a>(answer: &'a Answer, name: &str) -> &'a str {
    answer.header(name).unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_annotator_segments_corrects_and_saves_in_the_browser() {
    let _turn = TURN.lock().await;
    let dist = build_page();
    let (platform, _dir) = up(&[]).await;
    let gw = platform.addrs["gateway"];

    // The page for browsers, the JSON description for scripts (3D Slicer's reviewer).
    let page = send(gw, &get("/", "text/html,application/xhtml+xml,*/*;q=0.8")).await;
    assert_eq!(page.status, 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let csp = header(&page, "content-security-policy");
    assert!(
        csp.contains("default-src 'self'") && !csp.contains("http"),
        "{csp}"
    );
    let html = page.text();
    assert!(!html.contains("http://") && !html.contains("https://"), "{html}");
    let json = send(gw, &get("/", "*/*")).await;
    assert_eq!(header(&json, "content-type"), "application/json");
    // Every built asset, with its type and a year's caching (names carry their hash).
    let mut assets = 0;
    for entry in std::fs::read_dir(dist.join("assets")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let answer = send(gw, &get(&format!("/assets/{name}"), "*/*")).await;
        assert_eq!(answer.status, 200, "{name}");
        assert_eq!(
            header(&answer, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        if name.ends_with(".js") {
            assert_eq!(header(&answer, "content-type"), "text/javascript", "{name}");
            assert!(html.contains(&name), "index.html loads {name}");
        }
        assets += 1;
    }
    assert!(assets >= 2, "{assets} assets");
    let missing = send(gw, &get("/assets/app-00000000.js", "*/*")).await;
    assert_eq!(missing.status, 404);

    let summary = tokio::task::block_in_place(|| run_browser(gw, "full", None));
    eprintln!("measured: {summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_api_key_the_page_asks_for_it_and_sends_it() {
    let _turn = TURN.lock().await;
    build_page();
    let (platform, _dir) = up(&["--api-key", "page-test-key"]).await;
    let gw = platform.addrs["gateway"];
    let summary = tokio::task::block_in_place(|| run_browser(gw, "login", Some("page-test-key")));
    eprintln!("measured: {summary}");
}
