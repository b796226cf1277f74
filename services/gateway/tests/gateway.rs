//! The gateway against a real datastore, spoken to over raw TCP in the exact shapes of the
//! AIAA clients (see `shared/spec/aiaa-rest-v1.md`).

mod common;

use std::path::Path;
use std::time::Duration;

use aiaa_imaging::{Geometry, ReadOptions, Volume, Voxels};
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn mni() -> Vec<u8> {
    std::fs::read(testdata("mni152/MNI152_T1.nii.gz")).unwrap()
}

#[tokio::test]
async fn session_round_trip_python_shape_keep_alive() {
    let s = stack().await;
    let image = mni();
    let body = python_body(
        &[("params", "{}")],
        &[("image", "/tmp/tmpab12/MNI152_T1.nii.gz", &image)],
    );
    let mut conn = TcpStream::connect(s.gateway).await.unwrap();
    conn.write_all(&python_request("PUT", "/session/?expiry=600", &body))
        .await
        .unwrap();
    let created = read_answer(&mut conn).await;
    assert_eq!(created.status, 200, "{}", String::from_utf8_lossy(&created.body));
    let id = created.json()["session_id"].as_str().unwrap().to_string();

    // Same connection (HTTP/1.1 keep-alive): the session's description.
    conn.write_all(&simple("GET", &format!("/session/{id}")))
        .await
        .unwrap();
    let info = read_answer(&mut conn).await;
    assert_eq!(info.status, 200);
    let v = info.json();
    assert_eq!(v["session_id"], json!(id));
    assert_eq!(v["image"]["size"], json!(image.len()));
    assert_eq!(v["name"], json!("MNI152_T1.nii.gz"));
    assert_eq!(v["expiry"], json!(600));

    conn.write_all(&simple("GET", &format!("/session/{id}?update_ts=true")))
        .await
        .unwrap();
    let refreshed = read_answer(&mut conn).await.json();
    assert!(refreshed["expires_at"].as_str().unwrap() >= v["expires_at"].as_str().unwrap());

    conn.write_all(&simple("DELETE", &format!("/session/{id}")))
        .await
        .unwrap();
    assert_eq!(read_answer(&mut conn).await.status, 200);
    conn.write_all(&simple("GET", &format!("/session/{id}")))
        .await
        .unwrap();
    read_answer(&mut conn).await.error(440);
    conn.write_all(&simple("DELETE", &format!("/session/{id}")))
        .await
        .unwrap();
    read_answer(&mut conn).await.error(440);
}

#[tokio::test]
async fn session_over_http10_with_quoted_boundary() {
    let s = stack().await;
    let image = mni();
    let request = cpp_request(
        "PUT",
        "/session",
        &[],
        &[("image", "C:\\data\\MNI152_T1.nii.gz", &image)],
    );
    let mut conn = TcpStream::connect(s.gateway).await.unwrap();
    conn.write_all(&request).await.unwrap();
    let answer = read_answer(&mut conn).await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert!(answer.json()["session_id"].is_string());
    // Connection: Close: the server closes after the answer.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest))
        .await
        .expect("the server must close an HTTP/1.0 Connection: Close exchange")
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn expired_and_unknown_sessions_answer_440() {
    let s = stack().await;
    let image = mni();
    let body = python_body(&[], &[("datapoint", "MNI152_T1.nii.gz", &image)]);
    let created = send(s.gateway, &python_request("PUT", "/session/?expiry=1", &body)).await;
    let id = created.json()["session_id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let msg = send(s.gateway, &simple("GET", &format!("/session/{id}")))
        .await
        .error(440);
    assert!(msg.contains(&id), "{msg}");
    send(
        s.gateway,
        &simple("GET", "/session/00000000-0000-0000-0000-000000000000"),
    )
    .await
    .error(440);
    // An unreadable image is refused at upload, naming the problem.
    let junk = python_body(&[], &[("image", "x.nii.gz", b"not an image at all")]);
    let msg = send(s.gateway, &python_request("PUT", "/session/", &junk))
        .await
        .error(400);
    assert!(msg.contains("could not be read"), "{msg}");
}

fn shoelace(poly: &[Value]) -> f64 {
    let pts: Vec<(f64, f64)> = poly
        .iter()
        .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    let n = pts.len();
    ((0..n)
        .map(|i| pts[i].0 * pts[(i + 1) % n].1 - pts[(i + 1) % n].0 * pts[i].1)
        .sum::<f64>()
        / 2.0)
        .abs()
}

#[tokio::test]
async fn mask2polygon_encloses_the_mask_area() {
    let s = stack().await;
    let path = testdata("robex/atlas_mask.nii.gz");
    let bytes = std::fs::read(&path).unwrap();
    let mask = aiaa_imaging::nifti::read(&path, &ReadOptions::default()).unwrap();
    let [w, h, nz] = mask.dims;
    // Independent count: the set voxels of each slice.
    let counts: Vec<usize> = (0..nz)
        .map(|z| {
            (0..w * h)
                .filter(|&o| mask.voxels.get_f64(z * w * h + o) != 0.0)
                .count()
        })
        .collect();
    let z = (0..nz).max_by_key(|&z| counts[z]).unwrap();

    let body = python_body(
        &[("params", "{\"more_points\": 1}")],
        &[("datapoint", "/tmp/m.nii.gz", &bytes)],
    );
    let answer = send(s.gateway, &python_request("POST", "/v1/mask2polygon", &body)).await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let slices = answer.json();
    let slices = slices.as_array().unwrap();
    assert_eq!(slices.len(), nz);
    for (k, polys) in slices.iter().enumerate() {
        assert_eq!(polys.as_array().unwrap().is_empty(), counts[k] == 0, "slice {k}");
    }
    let polys = slices[z].as_array().unwrap();
    let largest = polys
        .iter()
        .map(|p| p.as_array().unwrap())
        .max_by_key(|p| p.len())
        .unwrap();
    // Every vertex is a mask pixel of that slice.
    for p in largest {
        let (x, y) = (p[0].as_u64().unwrap() as usize, p[1].as_u64().unwrap() as usize);
        assert!(mask.voxels.get_f64(z * w * h + y * w + x) != 0.0);
    }
    // A contour through the boundary pixels' centres encloses the mask minus about half a
    // pixel along its boundary: within 5% of the pixel count on a brain slice.
    let area: f64 = polys.iter().map(|p| shoelace(p.as_array().unwrap())).sum();
    let count = counts[z] as f64;
    assert!(
        area > 0.9 * count && area <= count,
        "polygon area {area} vs {count} mask pixels"
    );
    assert!((area - count).abs() / count < 0.05, "{area} vs {count}");

    // Thinned: about one vertex every 5 boundary pixels.
    let body = python_body(
        &[("params", "{\"more_points\": 5}")],
        &[("datapoint", "m.nii.gz", &bytes)],
    );
    let thinned = send(s.gateway, &python_request("POST", "/v1/mask2polygon", &body))
        .await
        .json();
    let n5 = thinned[z]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_array().unwrap().len())
        .max()
        .unwrap();
    let n1 = largest.len();
    assert!(
        n5 * 5 >= n1 && n5 * 5 <= n1 + 5,
        "{n5} vertices at step 5, {n1} at step 1"
    );
}

fn png_image(w: usize, h: usize) -> Vec<u8> {
    let vol = Volume::scalar([w, h, 1], Geometry::default(), Voxels::U8(vec![100; w * h])).unwrap();
    aiaa_imaging::png::to_bytes(&vol).unwrap()
}

fn square(x0: i64, y0: i64, x1: i64, y1: i64) -> Value {
    json!([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
}

#[tokio::test]
async fn fixpolygon_2d_png_python_shape() {
    let s = stack().await;
    let png = png_image(64, 48);
    let params = json!({
        "prev_poly": [square(10, 10, 30, 30)],
        "vertex_offset": [5, 0],
        "dimension": 2,
        "polygonIndex": 0,
        "vertexIndex": 1,
        "propagate_neighbor": 0,
    });
    let body = python_body(
        &[("params", &params.to_string())],
        &[("datapoint", "/tmp/slice.png", &png)],
    );
    let answer = send(s.gateway, &python_request("POST", "/v1/fixpolygon", &body)).await;
    let m = parse_multipart_answer(&answer);
    assert_eq!(
        m.params["poly"],
        json!([[[10, 10], [35, 10], [30, 30], [10, 30]]])
    );
    assert_eq!(m.filename.as_deref(), Some("result.png"));
    let mask =
        aiaa_imaging::png::read_bytes(Path::new("result.png"), &m.file.unwrap(), &ReadOptions::default())
            .unwrap();
    assert_eq!(mask.dims, [64, 48, 1]);
    let at = |x: usize, y: usize| mask.voxels.get_f64(y * 64 + x);
    assert_eq!(at(35, 10), 1.0, "the moved vertex is inside");
    assert_eq!(at(20, 20), 1.0);
    assert_eq!(at(36, 10), 0.0);
    assert_eq!(at(5, 5), 0.0);
    let count = (0..64 * 48).filter(|&o| mask.voxels.get_f64(o) != 0.0).count();
    // The 21 x 21 square plus the triangle the move added.
    assert!(count > 441 && count < 441 + 60, "{count}");

    // output=json: the params alone.
    let json_only = send(
        s.gateway,
        &python_request("POST", "/v1/fixpolygon?output=json", &body),
    )
    .await;
    assert_eq!(json_only.json()["poly"], m.params["poly"]);
    // output=image: the raw PNG.
    let raw = send(
        s.gateway,
        &python_request("POST", "/v1/fixpolygon?output=image", &body),
    )
    .await;
    assert_eq!(raw.status, 200);
    assert!(raw.body.starts_with(b"\x89PNG"));
}

#[tokio::test]
async fn fixpolygon_3d_nifti_propagates_to_neighbouring_slices() {
    let s = stack().await;
    let (w, h, nz) = (40usize, 32usize, 5usize);
    let geometry = Geometry {
        spacing: [0.8, 0.8, 2.5],
        ..Default::default()
    };
    let vol = Volume::scalar([w, h, nz], geometry, Voxels::I16(vec![7; w * h * nz])).unwrap();
    let nii = aiaa_imaging::nifti::to_bytes(&vol, true).unwrap();
    let poly: Vec<Value> = (0..nz).map(|_| json!([square(5, 5, 15, 15)])).collect();
    let params = json!({
        "poly": poly,
        "vertex_offset": [4, 4],
        "dimension": 3,
        "slice_index": 2,
        "polygon_index": 0,
        "vertex_index": 2,
        "propagate_neighbor": 1,
        "propagate_neighbor_3d": 1,
    });
    let request = cpp_request(
        "POST",
        "/v1/fixpolygon",
        &[("params", &params.to_string())],
        &[("image", "vol.nii.gz", &nii)],
    );
    let answer = send(s.gateway, &request).await;
    let m = parse_multipart_answer(&answer);
    let out = m.params["poly"].as_array().unwrap();
    assert_eq!(out[2][0][2], json!([19, 19]));
    assert_eq!(out[1][0][2], json!([17, 17]), "half the offset one slice away");
    assert_eq!(out[3][0][2], json!([17, 17]));
    assert_eq!(out[0][0], square(5, 5, 15, 15));
    assert_eq!(out[4][0], square(5, 5, 15, 15));
    assert_eq!(m.filename.as_deref(), Some("result.nii.gz"));
    let mask = aiaa_imaging::nifti::read_bytes(
        Path::new("result.nii.gz"),
        &m.file.unwrap(),
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(mask.dims, [w, h, nz]);
    assert!((mask.geometry.spacing[2] - 2.5).abs() < 1e-6);
    let count = |z: usize| {
        (0..w * h)
            .filter(|&o| mask.voxels.get_f64(z * w * h + o) != 0.0)
            .count()
    };
    assert_eq!(count(0), 121);
    assert_eq!(count(4), 121);
    assert!(count(2) > count(1) && count(1) > 121, "{} {}", count(2), count(1));
}

#[tokio::test]
async fn bad_requests_name_the_problem_and_leave_the_service_healthy() {
    let s = stack_with(|a| a.max_body_bytes = 64 * 1024).await;
    let png = png_image(8, 8);
    let dextr = |params: &str| {
        python_request(
            "POST",
            "/v1/dextr3d?model=annotation_mri_brain",
            &python_body(&[("params", params)], &[("datapoint", "x.nii.gz", b"img")]),
        )
    };
    let mut cases: Vec<(Vec<u8>, u16, &str)> = vec![
        // Malformed multipart: the closing delimiter is missing.
        (
            python_request("POST", "/v1/mask2polygon", format!("--{PY_LIMIT}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{{}}").as_bytes()),
            400,
            "closing",
        ),
        // Missing file part.
        (python_request("POST", "/v1/mask2polygon", &python_body(&[("params", "{}")], &[])), 400, "no image part"),
        (python_request("PUT", "/session/", &python_body(&[("params", "{}")], &[])), 400, "no image part"),
        // Bad params.
        (
            python_request("POST", "/v1/fixpolygon", &python_body(&[("params", "{not json")], &[("image", "a.png", &png)])),
            400,
            "not valid JSON",
        ),
        (dextr("{\"points\": [[1,2,3],[4,5,6]]}"), 400, "at least 6"),
        (dextr("{\"points\": [[1,2,3],[4,5,6],[1,2,3],[4,5,6],[1,2,3],[4,\"five\",6]]}"), 400, "number"),
        (
            python_request("POST", "/v1/mask2polygon", &python_body(&[("params", "{\"more_points\": 0}")], &[("image", "a.png", &png)])),
            400,
            "more_points",
        ),
        (
            python_request("POST", "/v1/fixpolygon", &python_body(&[("params", "{\"poly\": [[[1,1],[3,1],[3,3]]], \"vertex_offset\": [1,1], \"polygon_index\": 4, \"vertex_index\": 0}")], &[("image", "a.png", &png)])),
            400,
            "polygon_index 4",
        ),
        // Not multipart at all.
        (
            b"POST /v1/mask2polygon HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
            400,
            "multipart/form-data",
        ),
        (simple("GET", "/v1/nothing"), 404, "no such endpoint"),
        (simple("POST", "/v1/models"), 404, "no such endpoint"),
        (
            python_request("PUT", "/session/", &python_body(&[], &[("image", "big.nii.gz", &vec![0u8; 100 * 1024])])),
            413,
            "--gateway-max-body-bytes",
        ),
    ];
    for (request, status, needle) in &cases {
        let msg = send(s.gateway, request).await.error(*status);
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
    }
    // 1,000 bad requests on keep-alive connections, then the service is still healthy.
    cases.truncate(11);
    let mut conn = TcpStream::connect(s.gateway).await.unwrap();
    for i in 0..1000 {
        let (request, status, _) = &cases[i % cases.len()];
        conn.write_all(request).await.unwrap();
        let answer = read_answer(&mut conn).await;
        assert_eq!(answer.status, *status);
    }
    let live = send(s.gateway, &simple("GET", "/livez")).await;
    assert_eq!(live.status, 200);
    let ready = send(s.gateway, &simple("GET", "/readyz")).await;
    assert_eq!(ready.status, 200, "{}", String::from_utf8_lossy(&ready.body));
    let metrics = send(s.gateway, &simple("GET", "/metrics")).await;
    assert_eq!(metrics.status, 200);
    assert!(String::from_utf8_lossy(&metrics.body).contains("aiaa_http_requests_total"));
}

#[tokio::test]
async fn model_endpoints_without_inference_answer_503() {
    let s = stack().await;
    for path in ["/v1/models", "/v1/models/", "/v1/models?label=brain+mask"] {
        let msg = send(s.gateway, &simple("GET", path)).await.error(503);
        assert!(msg.contains("inference service not configured"), "{msg}");
    }
    let points = "[[10,20,30],[40,20,30],[25,5,30],[25,35,30],[25,20,10],[25,20,50]]";
    let body = python_body(
        &[("params", &json!({"points": points}).to_string())],
        &[("datapoint", "/tmp/crop.nii.gz", &mni())],
    );
    let msg = send(
        s.gateway,
        &python_request("POST", "/v1/dextr3d?model=annotation_mri_brain", &body),
    )
    .await
    .error(503);
    assert!(msg.contains("inference service not configured"), "{msg}");
    let seg = python_body(&[("params", "{}")], &[("image", "x.nii.gz", b"bytes")]);
    send(
        s.gateway,
        &python_request("POST", "/v1/segmentation?model=seg", &seg),
    )
    .await
    .error(503);
    send(s.gateway, &python_request("POST", "/v1/segmentation", &seg))
        .await
        .error(400);
}

#[tokio::test]
async fn readyz_follows_the_datastore() {
    // A port with nothing behind it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s = stack_with(|a| a.datastore_url = closed.to_string()).await;
    let msg = send(s.gateway, &simple("GET", "/readyz")).await.error(503);
    assert!(msg.contains("datastore"), "{msg}");
    assert_eq!(send(s.gateway, &simple("GET", "/livez")).await.status, 200);
    let body = python_body(&[], &[("image", "MNI152_T1.nii.gz", &mni())]);
    send(s.gateway, &python_request("PUT", "/session/", &body))
        .await
        .error(503);
}

/// The gateway takes the gRPC message limit (`--max-message-bytes`, shared with the gRPC
/// services) for its calls to the backends, and checks it at start like theirs.
#[tokio::test]
async fn the_message_limit_is_the_gateways_own_and_checked_at_start() {
    let args = aiaa_gateway::GatewayArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let message = aiaa_runtime::config::MessageArgs {
        max_message_bytes: 1000,
    };
    let err = aiaa_gateway::start(
        &args,
        &message,
        &aiaa_runtime::config::AuthArgs::default(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert!(err.to_string().contains("--max-message-bytes"), "{err}");
}
