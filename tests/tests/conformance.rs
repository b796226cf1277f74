//! Conformance of the AIAA REST API (`../shared/spec/aiaa-rest-v1.md`) on the real platform:
//! every endpoint gets the exact request shapes of the spec — the Python client's unquoted
//! `$` boundary with the trailing CRLF over HTTP/1.1, and the C++ client's quoted boundary
//! over HTTP/1.0 with `Connection: Close` — and every answer is read the way those clients
//! read it (exact Content-Length, no chunking, boundary from the body's first line, the file
//! part found by its quoted filename; see `aiaa_e2e::aiaa_client`).
//!
//! The models are real TorchScript networks run by the real inference service: two small
//! fixture networks without learnt weights (scripts/models/*_fixture.py), loaded through the
//! admin API, so that each endpoint can be exercised many times in seconds. The pretrained
//! models' accuracy is checked in `annotation.rs`.

use aiaa_e2e::aiaa_client::*;
use aiaa_e2e::volumes::{decode, fixture_configs, fixture_network};
use aiaa_e2e::{Platform, testdata};
use serde_json::{Value, json};

const KEY: &str = "conformance-key";

fn with_key(mut request: Vec<u8>) -> Vec<u8> {
    let at = request.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
    let header = format!("Authorization: Bearer {KEY}\r\n");
    request.splice(at..at, header.into_bytes());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_the_clients_request_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let platform = Platform::start(
        // The AIAA clients send no credentials: annotation from this machine is trusted, the
        // admin API still needs the key.
        &["up", "--api-key", KEY, "--gateway-anonymous-from", "127.0.0.1/32"],
        &[
            ("AIAA_STORE_URL", store.to_str().unwrap()),
            // The fixture networks are written here and loaded by path.
            ("AIAA_INFERENCE_MODEL_ROOTS", dir.path().to_str().unwrap()),
        ],
    )
    .await;
    let gw = platform.addrs["gateway"];
    let image = std::fs::read(testdata().join("mni152/MNI152_T1.nii.gz")).unwrap();

    // No model of a kind loaded: 404 naming what is missing.
    let body = python_body(&[("params", "{}")], &[("image", "MNI152_T1.nii.gz", &image)]);
    let msg = send(gw, &python_request("POST", "/v1/segmentation?model=seg", &body))
        .await
        .error(404);
    assert!(msg.contains("\"seg\""), "{msg}");

    // Admin API: the key is required; PUT loads from an engine config.
    let (seg_pt, dextr_pt) = (dir.path().join("threshold.pt"), dir.path().join("dextr3d.pt"));
    fixture_network("threshold_fixture.py", &seg_pt);
    fixture_network("dextr3d_fixture.py", &dextr_pt);
    let (seg_config, dextr_config) = fixture_configs(&seg_pt, &dextr_pt);
    let (seg_config, dextr_config) = (seg_config.to_string(), dextr_config.to_string());
    let put = cpp_request("PUT", "/admin/model/seg", &[("config", &seg_config)], &[]);
    let msg = send(gw, &put).await.error(401);
    assert!(msg.contains("API key"), "{msg}");
    let loaded = send(gw, &with_key(put)).await;
    assert_eq!(loaded.status, 200, "{}", String::from_utf8_lossy(&loaded.body));
    assert_eq!(loaded.json()["name"], "seg");
    let put = python_request(
        "PUT",
        "/admin/model/dextr",
        &python_body(&[("config", &dextr_config)], &[]),
    );
    assert_eq!(send(gw, &with_key(put)).await.status, 200);
    let got = send(gw, &with_key(simple("GET", "/admin/model/dextr")))
        .await
        .json();
    assert_eq!(got["roi"], json!([64, 64, 64]));

    // Models: with and without the trailing slash, filters, one model by name.
    for path in ["/v1/models", "/v1/models/"] {
        let all = send(gw, &simple("GET", path)).await;
        assert_eq!(all.status, 200);
        let names: Vec<String> = all
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["dextr", "seg"], "{path}");
    }
    let seg_only = send(gw, &simple("GET", "/v1/models?type=segmentation&label=brain"))
        .await
        .json();
    assert_eq!(seg_only.as_array().unwrap().len(), 1);
    let one = send(gw, &simple("GET", "/v1/models?model=seg")).await.json();
    assert_eq!(
        (one["version"].clone(), one["description"].is_string()),
        (json!("2"), true)
    );
    let dextr = send(gw, &simple("GET", "/v1/models?model=dextr")).await.json();
    assert_eq!(
        (dextr["type"].clone(), dextr["padding"].clone()),
        (json!("annotation"), json!(20.0))
    );

    // Segmentation, both client shapes, the image inline.
    let py = send(gw, &python_request("POST", "/v1/segmentation?model=seg", &body)).await;
    let py = parse_multipart_answer(&py);
    let cpp = send(
        gw,
        &cpp_request(
            "POST",
            "/v1/segmentation?model=seg",
            &[("params", "{}")],
            &[("datapoint", "/home/u/MNI152_T1.nii.gz", &image)],
        ),
    )
    .await;
    let cpp = parse_multipart_answer(&cpp);
    assert_eq!(py.filename.as_deref(), Some("result.nii.gz"));
    assert_eq!(py.file, cpp.file, "both shapes give the same mask");
    assert_eq!(py.params["points"].as_array().unwrap().len(), 6);
    let mask = decode("result.nii.gz", py.file.as_ref().unwrap());
    assert_eq!(mask.dims, [182, 218, 182]);
    let fg = mask.voxels.to_f32_vec().iter().filter(|v| **v > 0.0).count();
    assert!(fg > 100_000, "the fixture keeps the bright head: {fg} voxels");

    // output=image: the raw mask; output=json: the params alone; result_extension and dtype.
    let raw = send(
        gw,
        &python_request("POST", "/v1/segmentation?model=seg&output=image", &body),
    )
    .await;
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, *py.file.as_ref().unwrap());
    let only = send(
        gw,
        &python_request("POST", "/v1/segmentation?model=seg&output=json", &body),
    )
    .await
    .json();
    assert_eq!(only["points"], py.params["points"]);
    let mha = python_body(
        &[(
            "params",
            r#"{"result_extension": ".mha", "result_dtype": "uint16"}"#,
        )],
        &[("image", "MNI152_T1.nii.gz", &image)],
    );
    let m =
        parse_multipart_answer(&send(gw, &python_request("POST", "/v1/segmentation?model=seg", &mha)).await);
    assert_eq!(m.filename.as_deref(), Some("result.mha"));
    let as_mha = decode("result.mha", m.file.as_ref().unwrap());
    assert_eq!(as_mha.voxel_type(), aiaa_imaging::VoxelType::U16);
    assert_eq!(as_mha.voxels.to_f32_vec(), mask.voxels.to_f32_vec());
    let nrrd = python_body(
        &[("params", r#"{"result_extension": ".nrrd"}"#)],
        &[("image", "MNI152_T1.nii.gz", &image)],
    );
    let n =
        parse_multipart_answer(&send(gw, &python_request("POST", "/v1/segmentation?model=seg", &nrrd)).await);
    assert_eq!(n.filename.as_deref(), Some("result.nrrd"));
    let as_nrrd = decode("result.nrrd", n.file.as_ref().unwrap());
    assert!(as_nrrd.geometry.approx_eq(&mask.geometry, 1e-6));
    assert_eq!(as_nrrd.voxels.to_f32_vec(), mask.voxels.to_f32_vec());

    // /v1/inference always answers multipart.
    let inf = send(
        gw,
        &cpp_request(
            "POST",
            "/v1/inference?model=seg",
            &[("params", "{}")],
            &[("image", "MNI152_T1.nii.gz", &image)],
        ),
    )
    .await;
    assert!(parse_multipart_answer(&inf).file.is_some());

    // Sessions: PUT in both shapes, GET (and update_ts), the model on it, DELETE, then 440.
    let s1 = send(
        gw,
        &python_request(
            "PUT",
            "/session/",
            &python_body(&[("params", "{}")], &[("image", "MNI152_T1.nii.gz", &image)]),
        ),
    )
    .await
    .json();
    let s2 = send(
        gw,
        &cpp_request(
            "PUT",
            "/session/?expiry=120",
            &[],
            &[("image", "MNI152_T1.nii.gz", &image)],
        ),
    )
    .await
    .json();
    let (id1, id2) = (
        s1["session_id"].as_str().unwrap(),
        s2["session_id"].as_str().unwrap(),
    );
    assert_ne!(id1, id2);
    assert_eq!(
        send(gw, &simple("GET", &format!("/session/{id1}"))).await.status,
        200
    );
    assert_eq!(
        send(gw, &simple("GET", &format!("/session/{id2}?update_ts=true")))
            .await
            .status,
        200
    );
    let on_session = send(
        gw,
        &python_request(
            "POST",
            &format!("/v1/segmentation?model=seg&session_id={id1}"),
            &python_body(&[("params", "{}")], &[]),
        ),
    )
    .await;
    assert_eq!(parse_multipart_answer(&on_session).file, py.file);
    let points = [
        [40, 109, 90],
        [140, 109, 90],
        [91, 30, 90],
        [91, 190, 90],
        [91, 109, 30],
        [91, 109, 150],
    ];
    let params = json!({ "points": points.map(|p| p.to_vec()).to_vec() }).to_string();
    let d_session = send(
        gw,
        &cpp_request(
            "POST",
            &format!("/v1/dextr3d?model=dextr&session_id={id2}"),
            &[("params", &params)],
            &[],
        ),
    )
    .await;
    let d_session = parse_multipart_answer(&d_session);
    assert_eq!(
        send(gw, &simple("DELETE", &format!("/session/{id1}")))
            .await
            .status,
        200
    );
    send(gw, &simple("GET", &format!("/session/{id1}")))
        .await
        .error(440);
    send(
        gw,
        &python_request(
            "POST",
            &format!("/v1/segmentation?model=seg&session_id={id1}"),
            &python_body(&[("params", "{}")], &[]),
        ),
    )
    .await
    .error(440);

    // dextr3d: the points as a JSON string (one client's habit) and as an array; inline and
    // on the session: the same mask.
    let as_string = json!({ "points": serde_json::to_string(&points).unwrap() }).to_string();
    let d_py = send(
        gw,
        &python_request(
            "POST",
            "/v1/dextr3d?model=dextr",
            &python_body(
                &[("params", &as_string)],
                &[("image", "MNI152_T1.nii.gz", &image)],
            ),
        ),
    )
    .await;
    let d_py = parse_multipart_answer(&d_py);
    assert_eq!(d_py.file, d_session.file);
    assert_eq!(d_py.params["points"].as_array().unwrap().len(), 6);

    // deepgrow: no model of that kind.
    let dg = python_body(
        &[("params", r#"{"foreground": [[91, 109, 90]], "background": []}"#)],
        &[("image", "MNI152_T1.nii.gz", &image)],
    );
    let msg = send(gw, &python_request("POST", "/v1/deepgrow?model=dextr", &dg))
        .await
        .error(404);
    assert!(msg.contains("deepgrow"), "{msg}");

    // mask2polygon and fixpolygon on the mask the server produced.
    let mask_bytes = py.file.unwrap();
    let polys = send(
        gw,
        &python_request(
            "POST",
            "/v1/mask2polygon",
            &python_body(
                &[("params", r#"{"more_points": 10}"#)],
                &[("image", "result.nii.gz", &mask_bytes)],
            ),
        ),
    )
    .await
    .json();
    let slices = polys.as_array().unwrap();
    assert_eq!(slices.len(), 182);
    let (z, poly) = slices
        .iter()
        .enumerate()
        .find(|(_, s)| !s.as_array().unwrap().is_empty())
        .unwrap();
    let fix =
        json!({"poly": poly, "vertex_offset": [2, 0], "dimension": 3, "polygon_index": 0, "vertex_index": 0,
                     "propagate_neighbor": 2, "slice_index": z, "propagate_neighbor_3d": 0})
        .to_string();
    let fixed = send(
        gw,
        &cpp_request(
            "POST",
            "/v1/fixpolygon",
            &[("params", &fix)],
            &[("image", "result.nii.gz", &mask_bytes)],
        ),
    )
    .await;
    let fixed = parse_multipart_answer(&fixed);
    assert!(fixed.params["poly"].is_array());
    assert_eq!(
        decode("result.nii.gz", fixed.file.as_ref().unwrap()).dims,
        [182, 218, 182]
    );

    // Admin DELETE, then the model is gone.
    assert_eq!(
        send(gw, &with_key(simple("DELETE", "/admin/model/dextr")))
            .await
            .status,
        200
    );
    send(gw, &simple("GET", "/v1/models?model=dextr"))
        .await
        .error(404);
    let value: Value = send(gw, &simple("GET", "/v1/models")).await.json();
    assert_eq!(value.as_array().unwrap().len(), 1);
}
