//! The annotation server end to end: the real `aiaa` binary (registry, datastore, inference,
//! gateway), real models, real volumes, and the AIAA clients' exact request shapes.
//!
//! - deepbet (`segmentation_mri_brain`, the pretrained TorchScript from its PyPI package)
//!   segments the held-out ROBEX head through `/v1/segmentation`: Dice >= 0.95 against its
//!   brain mask, the mask on exactly the uploaded image's grid; the session path gives the
//!   same mask;
//! - dextr3d on a fixture network (scripts/models/dextr3d_fixture.py: foreground = balls
//!   around the clicked points) checks the engine's crop / resize / paste-back geometry for
//!   whole-volume and client-cropped requests;
//! - bad input answers 4xx JSON naming the problem and the service stays healthy.

use std::path::Path;

use aiaa_e2e::aiaa_client::*;
use aiaa_e2e::volumes::{decode, dice, fixture_network, foreground, read};
use aiaa_e2e::{Platform, repo_root, testdata};
use aiaa_imaging::Volume;

async fn up(extra: &[&str]) -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let pool = repo_root().join("models/engine_pool.json");
    testdata(); // fetches the models the pool names when missing
    let mut args = vec!["up", "--engine-pool", pool.to_str().unwrap()];
    args.extend_from_slice(extra);
    let store = dir.path().join("data");
    // Fixture networks are written to the temp folder and loaded by path from there.
    let env = [
        ("AIAA_STORE_URL", store.to_str().unwrap()),
        ("AIAA_INFERENCE_MODEL_ROOTS", dir.path().to_str().unwrap()),
    ];
    let platform = Platform::start(&args, &env).await;
    (platform, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deepbet_segments_the_held_out_robex_head_through_the_gateway() {
    let (platform, _dir) = up(&[]).await;
    let gw = platform.addrs["gateway"];
    let image_path = testdata().join("robex/atlas.nii.gz");
    let image_bytes = std::fs::read(&image_path).unwrap();
    let image = read(&image_path);
    let truth = read(&testdata().join("robex/atlas_mask.nii.gz"));

    // The model list as the clients read it.
    let models = send(gw, &simple("GET", "/v1/models")).await.json();
    let m = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "segmentation_mri_brain")
        .unwrap_or_else(|| panic!("{models}"));
    assert_eq!(m["type"], "segmentation");
    assert_eq!(m["labels"], serde_json::json!(["brain"]));
    assert!(m["version"].is_string() && m["description"].is_string(), "{m}");
    // Every shipped model serves its TorchScript frozen and optimised for inference (the
    // inference service's ModelInfo.torchscript, through the gateway).
    for m in models.as_array().unwrap() {
        assert_eq!(m["torchscript"], "frozen", "{m}");
    }

    // The Python client's shape, the image inline.
    let body = python_body(&[("params", "{}")], &[("image", "atlas.nii.gz", &image_bytes)]);
    let answer = send(
        gw,
        &python_request("POST", "/v1/segmentation?model=segmentation_mri_brain", &body),
    )
    .await;
    let result = parse_multipart_answer(&answer);
    assert_eq!(result.filename.as_deref(), Some("result.nii.gz"));
    let mask = decode("result.nii.gz", result.file.as_ref().unwrap());
    assert_eq!(mask.dims, image.dims);
    assert!(
        mask.geometry.approx_eq(&image.geometry, 1e-6),
        "{:?} vs {:?}",
        mask.geometry,
        image.geometry
    );
    let d = dice(&foreground(&mask), &foreground(&truth));
    eprintln!(
        "deepbet on ROBEX through the gateway: Dice {d:.4}; params {}",
        result.params
    );
    assert!(d >= 0.95, "Dice {d}");
    let points = result.params["points"].as_array().unwrap();
    assert_eq!(points.len(), 6, "{}", result.params);
    for stage in ["decode", "pre", "infer", "post", "encode", "total"] {
        assert!(
            result.params["latencies"][stage].is_number(),
            "{stage}: {}",
            result.params
        );
    }

    // The C++ client's shape: a session, then the model on it with output=image.
    let put = send(
        gw,
        &cpp_request(
            "PUT",
            "/session/?expiry=60",
            &[],
            &[("image", "atlas.nii.gz", &image_bytes)],
        ),
    )
    .await;
    assert_eq!(put.status, 200);
    let session = put.json()["session_id"].as_str().unwrap().to_string();
    let path = format!("/v1/segmentation?model=segmentation_mri_brain&session_id={session}&output=image");
    let raw = send(gw, &cpp_request("POST", &path, &[("params", "{}")], &[])).await;
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
    let again = decode("result.nii.gz", &raw.body);
    assert_eq!(
        foreground(&again),
        foreground(&mask),
        "the session path gives the same mask"
    );
}

/// Dice of a dextr3d answer's mask against `truth`, after pasting it back onto the full grid
/// when it came back on a client's crop (`crop`: start and size of the crop in the full grid).
fn dice_on_full_grid(mask: &Volume, truth: &Volume, crop: Option<([usize; 3], [usize; 3])>) -> f64 {
    let full = match crop {
        None => mask.clone(),
        Some((start, size)) => {
            // As the clients do: the mask back onto the crop's grid (nearest), then pasted.
            let region = aiaa_imaging::crop::crop(truth, start, size).unwrap();
            let back = aiaa_imaging::resample::resample_like(
                mask,
                &region,
                aiaa_imaging::resample::Interpolation::Nearest,
            )
            .unwrap();
            let mut pasted =
                aiaa_imaging::crop::region(&back, start.map(|s| -(s as i64)), truth.dims, 0.0).unwrap();
            pasted.geometry = truth.geometry;
            pasted
        }
    };
    dice(&foreground(&full), &foreground(truth))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trained_dextr3d_brain_model_annotates_the_held_out_robex_head() {
    let (platform, _dir) = up(&[]).await;
    let gw = platform.addrs["gateway"];
    let info = send(gw, &simple("GET", "/v1/models?model=annotation_mri_brain"))
        .await
        .json();
    assert_eq!(info["type"], "annotation", "{info}");
    let roi: Vec<usize> = info["roi"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let padding = info["padding"].as_f64().unwrap();
    let image_path = testdata().join("robex/atlas.nii.gz");
    let bytes = std::fs::read(&image_path).unwrap();
    let image = read(&image_path);
    let truth = read(&testdata().join("robex/atlas_mask.nii.gz"));
    let points = aiaa_transforms::extreme::extreme_points(&truth).unwrap();
    let params = serde_json::json!({ "points": points }).to_string();

    // Server-cropped: the whole volume inline, then the same on a session.
    let whole = python_body(&[("params", &params)], &[("image", "atlas.nii.gz", &bytes)]);
    let answer = parse_multipart_answer(
        &send(
            gw,
            &python_request("POST", "/v1/dextr3d?model=annotation_mri_brain", &whole),
        )
        .await,
    );
    let mask = decode("result.nii.gz", answer.file.as_ref().unwrap());
    assert_eq!(mask.dims, image.dims);
    assert!(mask.geometry.approx_eq(&image.geometry, 1e-6));
    let server = dice_on_full_grid(&mask, &truth, None);
    let put = send(
        gw,
        &cpp_request("PUT", "/session/", &[], &[("image", "atlas.nii.gz", &bytes)]),
    )
    .await;
    let id = put.json()["session_id"].as_str().unwrap().to_string();
    let on_session = send(
        gw,
        &cpp_request(
            "POST",
            &format!("/v1/dextr3d?model=annotation_mri_brain&session_id={id}"),
            &[("params", &params)],
            &[],
        ),
    )
    .await;
    let session_mask = decode(
        "result.nii.gz",
        parse_multipart_answer(&on_session).file.as_ref().unwrap(),
    );
    assert_eq!(foreground(&session_mask), foreground(&mask));

    // Client-cropped, as the viewers' plugins do: the points' box plus `padding` mm, resized
    // (linear) to the model's roi, the points moved into it.
    let spacing = image.geometry.spacing;
    let start: [usize; 3] = std::array::from_fn(|a| {
        let lo = points.iter().map(|p| p[a]).min().unwrap() as f64 - padding / spacing[a];
        lo.round().max(0.0) as usize
    });
    let end: [usize; 3] = std::array::from_fn(|a| {
        let hi = points.iter().map(|p| p[a]).max().unwrap() as f64 + padding / spacing[a];
        (hi.round() as usize + 1).min(image.dims[a])
    });
    let size: [usize; 3] = std::array::from_fn(|a| end[a] - start[a]);
    let roi = [roi[0], roi[1], roi[2]];
    let crop = aiaa_imaging::crop::crop(&image, start, size).unwrap();
    let grid = aiaa_transforms::spatial::resize_geometry(&crop, roi);
    let small = aiaa_imaging::resample::resample_onto(
        &crop,
        roi,
        &grid,
        aiaa_imaging::resample::Interpolation::Linear,
    )
    .unwrap();
    let moved: Vec<[f64; 3]> = points
        .iter()
        .map(|p| {
            std::array::from_fn(|a| ((p[a] - start[a]) as f64 + 0.5) * roi[a] as f64 / size[a] as f64 - 0.5)
        })
        .collect();
    let small_bytes = aiaa_imaging::nifti::to_bytes(&small, true).unwrap();
    let params = serde_json::json!({ "points": moved }).to_string();
    let body = python_body(&[("params", &params)], &[("image", "crop.nii.gz", &small_bytes)]);
    let answer = parse_multipart_answer(
        &send(
            gw,
            &python_request("POST", "/v1/dextr3d?model=annotation_mri_brain", &body),
        )
        .await,
    );
    let small_mask = decode("result.nii.gz", answer.file.as_ref().unwrap());
    assert_eq!(
        small_mask.dims, roi,
        "the mask comes back on the grid the client sent"
    );
    let client = dice_on_full_grid(&small_mask, &truth, Some((start, size)));
    eprintln!(
        "annotation_mri_brain on ROBEX: Dice {server:.4} server-cropped, {client:.4} client-cropped; latencies {}",
        answer.params["latencies"]
    );
    assert!(server >= 0.85, "server-cropped Dice {server}");
    assert!(client >= 0.85, "client-cropped Dice {client}");
}

/// Writes the fixture network and its engine config; returns the config's JSON text.
fn dextr3d_fixture(dir: &Path) -> String {
    let model = dir.join("fixture.pt");
    fixture_network("dextr3d_fixture.py", &model);
    serde_json::json!({
        "model_format": "torchscript",
        "model_path": model,
        "type": "annotation",
        "roi": [64, 64, 64],
        "padding": 20.0,
        "labels": ["brain"],
        "pre_transforms": [
            {"name": "transforms.ScaleIntensityRange", "field": "image",
             "a_min": 0, "a_max": 100, "b_min": 0, "b_max": 1, "clip": true},
            {"name": "transforms.AddExtremePointsChannel", "image_field": "image",
             "label_field": "label", "sigma": 3, "pert": 0}
        ]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dextr3d_maps_its_crop_back_onto_the_request_grid_and_bad_input_is_refused() {
    let (platform, dir) = up(&[]).await;
    let gw = platform.addrs["gateway"];
    let config = dextr3d_fixture(dir.path());
    let load = cpp_request("PUT", "/admin/model/fixture_dextr3d", &[("config", &config)], &[]);
    let loaded = send(gw, &load).await;
    assert_eq!(loaded.status, 200, "{}", String::from_utf8_lossy(&loaded.body));
    let models = send(gw, &simple("GET", "/v1/models?model=fixture_dextr3d"))
        .await
        .json();
    assert_eq!(models["type"], "annotation", "{models}");
    assert_eq!(models["roi"], serde_json::json!([64, 64, 64]));

    let image_path = testdata().join("mni152/MNI152_T1.nii.gz");
    let bytes = std::fs::read(&image_path).unwrap();
    let image = read(&image_path);
    let points = [
        [40, 109, 90],
        [140, 109, 90],
        [91, 30, 90],
        [91, 190, 90],
        [91, 109, 30],
        [91, 109, 150],
    ];
    let params = serde_json::json!({ "points": points }).to_string();
    let body = python_body(&[("params", &params)], &[("image", "MNI152_T1.nii.gz", &bytes)]);
    let answer = send(
        gw,
        &python_request("POST", "/v1/dextr3d?model=fixture_dextr3d", &body),
    )
    .await;
    let result = parse_multipart_answer(&answer);
    let mask = decode("result.nii.gz", result.file.as_ref().unwrap());
    assert_eq!(mask.dims, image.dims);
    assert!(mask.geometry.approx_eq(&image.geometry, 1e-6));
    let fg = foreground(&mask);
    let at = |p: [usize; 3]| fg[p[0] + image.dims[0] * (p[1] + image.dims[1] * p[2])];
    for p in points {
        assert!(at(p), "no foreground at the clicked point {p:?}");
    }
    assert!(
        !at([91, 109, 90]),
        "the centre, far from every point, is background"
    );
    assert!(!at([5, 5, 5]));
    let ours = fg.iter().filter(|x| **x).count();

    // Bad input: 4xx JSON naming the problem; then the service still answers.
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            python_request(
                "POST",
                "/v1/dextr3d?model=fixture_dextr3d",
                &python_body(
                    &[("params", r#"{"points": [[1,2,3]]}"#)],
                    &[("image", "a.nii.gz", &bytes)],
                ),
            ),
            400,
            "at least 6",
        ),
        (
            python_request(
                "POST",
                "/v1/dextr3d?model=fixture_dextr3d",
                &python_body(
                    &[(
                        "params",
                        r#"{"points": [[1,2,3],[1,2,3],[1,2,3],[1,2,3],[1,2,3],[1,2,9999]]}"#,
                    )],
                    &[("image", "a.nii.gz", &bytes)],
                ),
            ),
            400,
            "outside the image",
        ),
        (
            python_request(
                "POST",
                "/v1/dextr3d?model=fixture_dextr3d",
                &python_body(
                    &[("params", r#"{"points": [["a",2,3]]}"#)],
                    &[("image", "a.nii.gz", &bytes)],
                ),
            ),
            400,
            "points",
        ),
        (
            python_request(
                "POST",
                "/v1/dextr3d?model=nope",
                &python_body(&[("params", &params)], &[("image", "a.nii.gz", &bytes)]),
            ),
            404,
            "nope",
        ),
        (
            python_request(
                "POST",
                "/v1/segmentation?model=fixture_dextr3d",
                &python_body(&[("params", "{}")], &[("image", "a.nii.gz", &bytes)]),
            ),
            404,
            "segmentation",
        ),
        (
            python_request(
                "POST",
                "/v1/dextr3d?model=fixture_dextr3d",
                &python_body(
                    &[("params", &params)],
                    &[("image", "a.nii.gz", b"not an image at all")],
                ),
            ),
            400,
            "could not be read",
        ),
        (
            python_request(
                "POST",
                "/v1/dextr3d?model=fixture_dextr3d",
                &python_body(&[("params", &params)], &[]),
            ),
            400,
            "no image part",
        ),
        (
            python_request(
                "POST",
                "/v1/dextr3d?model=fixture_dextr3d&session_id=does-not-exist",
                &python_body(&[("params", &params)], &[]),
            ),
            440,
            "session",
        ),
    ];
    for (request, status, needle) in &cases {
        let answer = send(gw, request).await;
        let msg = answer.error(*status);
        assert!(msg.contains(needle), "{status} {needle:?}: {msg}");
    }

    // A client-cropped request: the crop of the points' box plus 20 mm, resized to the roi,
    // with the points moved into it, as the viewers' plugins send it.
    // The MNI152 volume has 1 mm voxels: 20 mm is 20 voxels.
    let start: [usize; 3] = std::array::from_fn(|a| points.iter().map(|p| p[a]).min().unwrap() - 20);
    let end: [usize; 3] = std::array::from_fn(|a| points.iter().map(|p| p[a]).max().unwrap() + 21);
    let size = [0, 1, 2].map(|a| end[a] - start[a]);
    let crop = aiaa_imaging::crop::crop(&image, start, size).unwrap();
    let geometry = aiaa_transforms::spatial::resize_geometry(&crop, [64, 64, 64]);
    let small = aiaa_imaging::resample::resample_onto(
        &crop,
        [64, 64, 64],
        &geometry,
        aiaa_imaging::resample::Interpolation::Linear,
    )
    .unwrap();
    let moved: Vec<[f64; 3]> = points
        .iter()
        .map(|p| std::array::from_fn(|a| ((p[a] - start[a]) as f64 + 0.5) * 64.0 / size[a] as f64 - 0.5))
        .collect();
    let small_bytes = aiaa_imaging::nifti::to_bytes(&small, true).unwrap();
    let params = serde_json::json!({ "points": moved }).to_string();
    let body = python_body(&[("params", &params)], &[("image", "crop.nii.gz", &small_bytes)]);
    let answer = send(
        gw,
        &python_request("POST", "/v1/dextr3d?model=fixture_dextr3d", &body),
    )
    .await;
    let result = parse_multipart_answer(&answer);
    let small_mask = decode("result.nii.gz", result.file.as_ref().unwrap());
    assert_eq!(
        small_mask.dims,
        [64, 64, 64],
        "the mask comes back on the grid the client sent"
    );
    assert!(small_mask.geometry.approx_eq(&small.geometry, 1e-6));
    let small_fg = foreground(&small_mask);
    for p in &moved {
        let q = p.map(|x| x.round() as usize);
        assert!(small_fg[q[0] + 64 * (q[1] + 64 * q[2])], "no foreground at {q:?}");
    }
    eprintln!(
        "dextr3d fixture: {ours} voxels whole-volume; {} in the 64^3 crop",
        small_fg.iter().filter(|x| **x).count()
    );

    // 1,000 bad requests on a session (each kind once to warm up, then measured): every one
    // a 4xx JSON error, memory flat, the service healthy after.
    let put = send(
        gw,
        &cpp_request("PUT", "/session/", &[], &[("image", "MNI152_T1.nii.gz", &bytes)]),
    )
    .await;
    let id = put.json()["session_id"].as_str().unwrap().to_string();
    let on = |params: &str, model: &str, session: &str| {
        python_request(
            "POST",
            &format!("/v1/dextr3d?model={model}&session_id={session}"),
            &python_body(&[("params", params)], &[]),
        )
    };
    let outside = r#"{"points": [[1,2,3],[1,2,3],[1,2,3],[1,2,3],[1,2,3],[1,2,9999]]}"#;
    let bad: Vec<(Vec<u8>, u16)> = vec![
        (on(r#"{"points": [[1,2,3]]}"#, "fixture_dextr3d", &id), 400),
        (on(r#"{"points": "not json"}"#, "fixture_dextr3d", &id), 400),
        (on(outside, "fixture_dextr3d", &id), 400),
        (on(&params, "nope", &id), 404),
        (on(&params, "fixture_dextr3d", "expired-or-unknown"), 440),
        (
            python_request("POST", "/v1/dextr3d?model=fixture_dextr3d", b"--broken multipart"),
            400,
        ),
    ];
    for (request, status) in &bad {
        send(gw, request).await.error(*status);
    }
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let before = rss(platform.pid());
    for n in 0..1000 {
        let (request, status) = &bad[n % bad.len()];
        send(gw, request).await.error(*status);
    }
    let after = rss(platform.pid());
    eprintln!(
        "1,000 bad requests: RSS {} -> {} MiB",
        before / 1024,
        after / 1024
    );
    assert!(
        after < before + 64 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );

    // After all that, still healthy.
    assert_eq!(send(gw, &simple("GET", "/readyz")).await.status, 200);
}
