//! Hostile inputs against the whole platform (`aiaa up`, the real models) in a 6 GiB memory
//! cgroup (see `aiaa_e2e::hostile`), with `/livez` polled every 100 ms throughout (every
//! answer within 1 s), then the positive controls under the default limits, then the
//! memory back near its baseline. One platform for the whole suite (start-up is the slow
//! part); each phase asserts its own bound.
//!
//! Hostile (each refused quickly with the right status, the platform alive after it):
//! - a 352-byte NIfTI header claiming 1600³ voxels, inline and as a session upload;
//! - decompression bombs that decode to 1 GiB for every compressed format the platform
//!   reads: gzip NIfTI, zlib MetaImage, gzip NRRD, PNG (inline to `/v1/segmentation`:
//!   priced from the header, refused by the per-request limit), the 1 GiB `.nii.gz` as a
//!   session then segmented (the case), DICOM RLE and JPEG whose Rows/Columns were
//!   raised (conversion jobs: refused by the decode limit, the error without the server's
//!   work folder);
//! - `scl_slope` on u8 data: counted as the f32 it becomes;
//! - admin model loads outside the model folders (absolute, `..`, a locator's path), and a
//!   file that is not TorchScript: 400 with a short message, no libtorch backtrace.
//!
//! Bound: while the hostile inputs run, the platform's peak RSS stays within 512 MiB of its
//! baseline (nothing is allocated for an input that cannot be afforded).
//!
//! Positive controls (default limits: the inference budget is half the cgroup's 6 GiB):
//! a 512x512x600 int16 CT (the MNI152 head resampled) segmented by deepbet inline (Dice
//! against the template's mask), then as a session: DEXTR3D from six extreme points, four
//! clicks at once, deleted (its cached volume freed within seconds); a 1 GB upload. Bound:
//! peak RSS within the inference budget + cache + 1 GiB of the baseline; afterwards the RSS
//! comes back within 300 MB of the baseline.

use std::path::Path;
use std::time::{Duration, Instant};

use aiaa_e2e::aiaa_client::*;
use aiaa_e2e::hostile::{Confined, DEFAULT_LIMIT, mib};
use aiaa_e2e::volumes::{dice, foreground};
use aiaa_e2e::{put_item, repo_root, testdata};
use aiaa_imaging::resample::{Interpolation, resample_onto};
use aiaa_imaging::{Geometry, Volume, VoxelType, io, nifti};
use aiaa_proto::common::v1::{JobRef, JobState};
use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::datastore::v1::{ConvertRequest, ItemKind};
use futures::StreamExt;

const MIB: u64 = 1 << 20;

/// A NIfTI-1 header (352 bytes) of `dims` u8 voxels with `slope`.
fn nifti_header(dims: [usize; 3], slope: f64) -> Vec<u8> {
    let one = Volume::scalar([1; 3], Geometry::default(), aiaa_imaging::Voxels::U8(vec![0])).unwrap();
    let mut h = nifti::header_for(&one);
    for (a, &d) in dims.iter().enumerate() {
        h.dim[a + 1] = d as i64;
    }
    h.scl_slope = slope;
    nifti::header::write_nifti1(&h)
}

/// `prefix` then `n` zero bytes through `w`, never held.
fn write_zeros(w: &mut impl std::io::Write, prefix: &[u8], n: usize) {
    let block = vec![0u8; 1 << 20];
    w.write_all(prefix).unwrap();
    let mut left = n;
    while left > 0 {
        let k = left.min(block.len());
        w.write_all(&block[..k]).unwrap();
        left -= k;
    }
}

fn gzip_zeros(prefix: &[u8], n: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    write_zeros(&mut e, prefix, n);
    e.finish().unwrap()
}

fn zlib_zeros(n: usize) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    write_zeros(&mut e, &[], n);
    e.finish().unwrap()
}

/// The decompression bombs: (file name, bytes), each decoding to 1 GiB of zeros.
fn bombs() -> Vec<(&'static str, Vec<u8>)> {
    let n = 1usize << 30;
    let mut mha = "ObjectType = Image\nNDims = 3\nBinaryData = True\nCompressedData = True\nDimSize = 1024 1024 1024\nElementType = MET_UCHAR\nElementDataFile = LOCAL\n".as_bytes().to_vec();
    mha.extend_from_slice(&zlib_zeros(n));
    let mut nrrd = b"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 1024 1024 1024\nencoding: gzip\n\n".to_vec();
    nrrd.extend_from_slice(&gzip_zeros(&[], n));
    let png = {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, 32768, 32768);
            enc.set_color(png::ColorType::Grayscale);
            enc.set_compression(png::Compression::High);
            let mut header = enc.write_header().unwrap();
            let mut w = header.stream_writer().unwrap();
            write_zeros(&mut w, &[], n);
            w.finish().unwrap();
        }
        out
    };
    vec![
        ("bomb.nii.gz", gzip_zeros(&nifti_header([1024; 3], 1.0), n)),
        ("bomb.mha", mha),
        ("bomb.nrrd", nrrd),
        ("bomb.png", png),
    ]
}

/// Sends an inline `/v1/segmentation` and returns the answer and how long it took.
async fn segment_inline(
    gw: std::net::SocketAddr,
    name: &str,
    bytes: &[u8],
    output: &str,
) -> (Answer, Duration) {
    let body = python_body(&[("params", "{}")], &[("image", name, bytes)]);
    let path = format!("/v1/segmentation?model=segmentation_mri_brain&output={output}");
    let t0 = Instant::now();
    let answer = send(gw, &python_request("POST", &path, &body)).await;
    (answer, t0.elapsed())
}

async fn put_session(gw: std::net::SocketAddr, name: &str, bytes: &[u8]) -> Answer {
    send(
        gw,
        &cpp_request("PUT", "/session/?expiry=600", &[], &[("image", name, bytes)]),
    )
    .await
}

/// A DICOM test file with Rows and Columns raised to 65535 (explicit VR little endian).
fn dicom_bomb(name: &str) -> Vec<u8> {
    let mut b = std::fs::read(testdata().join("pydicom").join(name)).unwrap();
    for tag in [[0x28u8, 0, 0x10, 0], [0x28, 0, 0x11, 0]] {
        let at = b
            .windows(8)
            .position(|w| w[..4] == tag && w[4..8] == *b"US\x02\x00")
            .unwrap_or_else(|| panic!("{name}: no {tag:?}"));
        b[at + 8..at + 10].copy_from_slice(&u16::MAX.to_le_bytes());
    }
    b
}

/// The hostile inputs, one after another; returns their count.
async fn hostile_phase(c: &Confined, store: &Path) -> usize {
    let gw = c.gateway();
    let bombs = bombs();
    let mut cases = 0;
    let quick = |what: &str, took: Duration| {
        assert!(took < Duration::from_secs(3), "{what} took {took:?}");
    };

    // A header claiming 1600³ over no data: inline and as a session.
    let claim = nifti_header([1600; 3], 1.0);
    let (a, took) = segment_inline(gw, "claim.nii", &claim, "json").await;
    let msg = a.error(400);
    assert!(
        msg.contains("truncated") && msg.contains("holds at most 352"),
        "{msg}"
    );
    quick("claim inline", took);
    let msg = put_session(gw, "claim.nii", &claim).await.error(400);
    assert!(msg.contains("truncated") || msg.contains("limit"), "{msg}");
    c.assert_alive("a header claiming 1600³");
    cases += 2;

    // Bombs of every compressed format, inline: priced from the header, refused before a
    // byte is inflated.
    for (name, bytes) in &bombs {
        assert!(bytes.len() < 4 << 20, "{name} is a bomb: {} bytes", bytes.len());
        let (a, took) = segment_inline(gw, name, bytes, "json").await;
        let msg = a.error(400);
        assert!(
            msg.contains("--inference-max-request-bytes") && msg.contains("1024 MiB decoded"),
            "{name}: {msg}"
        );
        quick(name, took);
        c.assert_alive(name);
        cases += 1;
    }

    // The case: the 1 GiB .nii.gz accepted as a session (it is a valid image),
    // then segmented: refused from its header, the process alive.
    let (_, bomb) = &bombs[0];
    let put = put_session(gw, "bomb.nii.gz", bomb).await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let session = put.json()["session_id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    let path = format!("/v1/segmentation?model=segmentation_mri_brain&session_id={session}&output=json");
    let msg = send(gw, &cpp_request("POST", &path, &[("params", "{}")], &[]))
        .await
        .error(400);
    assert!(msg.contains("--inference-max-request-bytes"), "{msg}");
    quick("the bomb session", t0.elapsed());
    c.assert_alive("segmenting the bomb session");
    send(gw, &simple("DELETE", &format!("/session/{session}"))).await;
    cases += 1;

    // scl_slope: 768 MiB of u8 that becomes 3 GiB of f32 is priced as the f32.
    let slope = gzip_zeros(&nifti_header([1024, 1024, 768], 4.0), 768 << 20);
    let (a, took) = segment_inline(gw, "slope.nii.gz", &slope, "json").await;
    let msg = a.error(400);
    assert!(msg.contains("3072 MiB decoded"), "{msg}");
    quick("scl_slope", took);
    cases += 1;

    // DICOM RLE and JPEG bombs through conversion jobs: refused by the decode limit; the
    // error names the file by its item id, never the server's work folder.
    let mut ds = DatastoreServiceClient::new(
        aiaa_runtime::client::connect(&c.platform.url("datastore"), None)
            .await
            .unwrap(),
    );
    for (dir, file) in [("rle", "MR_small_RLE.dcm"), ("jpeg", "SC_rgb_jpeg_dcmtk.dcm")] {
        put_item(
            &mut ds,
            ItemKind::Image,
            &format!("bombs/{dir}/{file}"),
            dicom_bomb(file),
        )
        .await;
        let t0 = Instant::now();
        let job = ds
            .submit_convert(ConvertRequest {
                kind: ItemKind::Image as i32,
                source_prefix: format!("bombs/{dir}/"),
                output_prefix: format!("converted/{dir}"),
                output_extension: ".nii.gz".into(),
                resolution: 0.0,
                overwrite: true,
            })
            .await
            .unwrap()
            .into_inner();
        let mut watch = ds.watch_job(JobRef { id: job.id }).await.unwrap().into_inner();
        let mut last = None;
        while let Some(j) = watch.next().await {
            last = Some(j.unwrap());
        }
        let last = last.unwrap();
        assert_eq!(last.state, JobState::Failed as i32, "{last:?}");
        assert!(last.error.contains("limit"), "{}", last.error);
        for leak in ["/tmp", "aiaa-convert-", store.to_str().unwrap()] {
            assert!(
                !last.error.contains(leak) && !last.log_tail.contains(leak),
                "{leak} in {last:?}"
            );
        }
        quick(file, t0.elapsed());
        cases += 1;
    }
    c.assert_alive("the DICOM bombs");

    // Admin model loads: outside the model folders, or not TorchScript.
    let roots = repo_root().join("models");
    for config in [
        serde_json::json!({"model_path": "/etc/passwd"}),
        serde_json::json!({"model_path": "../../../../../../../etc/passwd"}),
        serde_json::json!({"model_path": "segmentation_mri_brain/../../Cargo.toml"}),
        serde_json::json!({
            "model_path": "segmentation_mri_brain/model.pt",
            "locator": {"model_path": "/etc/hostname", "size": [8, 8, 8]}
        }),
        serde_json::json!({"model_path": "engine_pool.json"}),
    ] {
        let body = python_body(&[("config", &config.to_string())], &[]);
        let a = send(gw, &python_request("PUT", "/admin/model/escape", &body)).await;
        let msg = a.error(400);
        assert!(
            msg.len() < 400 && !msg.contains("frame #") && !msg.contains("Exception raised"),
            "{config}: {msg}"
        );
        assert!(
            msg.contains("--inference-model-roots") || msg.contains("not a TorchScript module"),
            "{config}: {msg}"
        );
        assert!(!msg.contains(roots.to_str().unwrap()), "{config}: {msg}");
        cases += 1;
    }
    c.assert_alive("the admin model loads");
    cases
}

/// The CT positive control: the MNI152 head resampled onto a 512x512x600 grid, int16, and
/// the template's brain mask on the same grid.
fn ct_and_truth() -> (Volume, Vec<bool>) {
    let opts = aiaa_imaging::ReadOptions::default();
    let t1 = io::read_volume(&testdata().join("mni152/MNI152_T1.nii.gz"), &opts).unwrap();
    let mask = io::read_volume(&testdata().join("mni152/MNI152_mask.nii.gz"), &opts).unwrap();
    let dims = [512, 512, 600];
    let mut g = t1.geometry;
    for (a, &d) in dims.iter().enumerate() {
        g.spacing[a] = t1.geometry.spacing[a] * t1.dims[a] as f64 / d as f64;
    }
    // Same physical extent: the first voxel's centre moves by half the spacing change.
    let shift: [f64; 3] = std::array::from_fn(|a| (g.spacing[a] - t1.geometry.spacing[a]) / 2.0);
    g.origin = std::array::from_fn(|r| {
        t1.geometry.origin[r] + (0..3).map(|a| g.direction[r][a] * shift[a]).sum::<f64>()
    });
    let ct = resample_onto(&t1, dims, &g, Interpolation::Linear)
        .unwrap()
        .cast(VoxelType::I16);
    let truth = resample_onto(&mask, dims, &g, Interpolation::Nearest).unwrap();
    (ct, foreground(&truth))
}

/// Six extreme points of a mask: min and max along each axis (voxel indices).
fn extreme_points(mask: &[bool], dims: [usize; 3]) -> Vec<[usize; 3]> {
    let mut lo = [[usize::MAX; 3]; 3];
    let mut hi = [[0usize; 3]; 3];
    for (o, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
        let p = [o % dims[0], (o / dims[0]) % dims[1], o / (dims[0] * dims[1])];
        for a in 0..3 {
            if p[a] < lo[a][a] {
                lo[a] = p;
            }
            if p[a] >= hi[a][a] {
                hi[a] = p;
            }
        }
    }
    lo.into_iter().chain(hi).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_inputs_are_refused_cheaply_and_real_work_still_fits() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let pool = repo_root().join("models/engine_pool.json");
    testdata();
    let c = Confined::start(
        DEFAULT_LIMIT,
        &["up", "--engine-pool", pool.to_str().unwrap()],
        &[
            ("AIAA_STORE_URL", store.to_str().unwrap()),
            ("AIAA_INFERENCE_CACHE_CHECK_INTERVAL", "1s"),
        ],
    )
    .await;
    eprintln!("started in {:?}: {}", started.elapsed(), c.memory_report());
    let gw = c.gateway();
    let livez = c.watch_livez();

    // ---- hostile
    c.reset_peaks();
    let t0 = Instant::now();
    let cases = hostile_phase(&c, &store).await;
    let hostile_peak = c.peak_rss();
    eprintln!(
        "{cases} hostile cases in {:?}: peak rss {} over a baseline of {}; {}",
        t0.elapsed(),
        mib(hostile_peak.saturating_sub(c.baseline_rss)),
        mib(c.baseline_rss),
        c.memory_report()
    );
    assert!(
        hostile_peak <= c.baseline_rss + 512 * MIB,
        "hostile inputs raised the peak RSS to {} (baseline {})",
        mib(hostile_peak),
        mib(c.baseline_rss)
    );
    livez.assert_healthy("the hostile inputs");

    // ---- positive controls under the default limits
    c.reset_peaks();
    let t0 = Instant::now();
    let (ct, truth) = ct_and_truth();
    let ct_bytes = nifti::to_bytes(&ct, true).unwrap();
    let (a, took) = segment_inline(gw, "ct.nii.gz", &ct_bytes, "image").await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let mask = aiaa_e2e::volumes::decode("result.nii.gz", &a.body);
    assert_eq!(mask.dims, ct.dims);
    let d = dice(&foreground(&mask), &truth);
    eprintln!(
        "CT 512x512x600 segmented inline in {took:?}: Dice {d:.3}; {}",
        c.memory_report()
    );
    assert!(d > 0.9, "Dice {d}");

    let put = put_session(gw, "ct.nii.gz", &ct_bytes).await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let session = put.json()["session_id"].as_str().unwrap().to_string();
    let points = extreme_points(&truth, ct.dims);
    let params = serde_json::json!({ "points": points }).to_string();
    let click = |session: String, params: String| async move {
        let path = format!("/v1/dextr3d?model=annotation_mri_brain&session_id={session}");
        send(gw, &cpp_request("POST", &path, &[("params", &params)], &[])).await
    };
    let a = click(session.clone(), params.clone()).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let clicks = futures::future::join_all((0..4).map(|_| click(session.clone(), params.clone()))).await;
    for a in &clicks {
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    }
    eprintln!(
        "DEXTR3D on the CT session, then 4 clicks at once: 200; {}",
        c.memory_report()
    );
    let inference_metrics = || async {
        let page = send(c.platform.addrs["inference"], &simple("GET", "/metrics")).await;
        String::from_utf8_lossy(&page.body).to_string()
    };
    let cached = metric(&inference_metrics().await, "aiaa_inference_session_cache_bytes").unwrap_or(0.0);
    assert!(
        cached >= (512 * 512 * 600 * 2) as f64,
        "the CT session is cached: {cached}"
    );
    send(gw, &simple("DELETE", &format!("/session/{session}"))).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cached = metric(&inference_metrics().await, "aiaa_inference_session_cache_bytes").unwrap_or(-1.0);
        if cached == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted session is still cached: {cached} bytes"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A 1 GB upload: a raw NIfTI of 1024x1024x477 int16 (about 1.0e9 bytes).
    let mut big = nifti_header([1024, 1024, 477], 1.0);
    big[70..72].copy_from_slice(&4i16.to_le_bytes()); // int16
    big[72..74].copy_from_slice(&16i16.to_le_bytes());
    big.resize(352 + 1024 * 1024 * 477 * 2, 0);
    let t1 = Instant::now();
    let put = put_session(gw, "big.nii", &big).await;
    assert_eq!(put.status, 200, "{}", String::from_utf8_lossy(&put.body));
    let big_session = put.json()["session_id"].as_str().unwrap().to_string();
    assert_eq!(put.json()["image"]["size"], big.len() as u64);
    eprintln!("1 GB upload in {:?}; {}", t1.elapsed(), c.memory_report());
    drop(big);
    send(gw, &simple("DELETE", &format!("/session/{big_session}"))).await;

    c.assert_alive("the positive controls");
    livez.assert_healthy("the positive controls");
    let positive_peak = c.peak_rss();
    // The inference budget (half the cgroup) and cache (an eighth) bound what the requests
    // hold; 1 GiB covers the gateway and the datastore streaming the upload.
    let bound = c.baseline_rss + DEFAULT_LIMIT / 2 + DEFAULT_LIMIT / 8 + (1 << 30);
    eprintln!(
        "positive controls in {:?}: peak rss {} (bound {}); {}",
        t0.elapsed(),
        mib(positive_peak),
        mib(bound),
        c.memory_report()
    );
    assert!(
        positive_peak <= bound,
        "peak rss {} over {}",
        mib(positive_peak),
        mib(bound)
    );

    // ---- back near the baseline
    let rss = c.settle(300 * MIB, Duration::from_secs(30)).await;
    assert!(
        rss <= c.baseline_rss + 300 * MIB,
        "rss {} did not come back within 300 MB of the baseline {}",
        mib(rss),
        mib(c.baseline_rss)
    );
    let stats = livez.finish().await;
    assert!(stats.failures.is_empty(), "{stats:?}");
    eprintln!(
        "done in {:?}: /livez {} polls, slowest {:?}; {}",
        started.elapsed(),
        stats.polls,
        stats.slowest,
        c.memory_report()
    );
}
