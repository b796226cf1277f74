//! Conformance of MONAI Label's REST API as its real clients send it, request shape for
//! request shape, read from their 0.8.5 sources (`docs/monai-label.md` lists them):
//!
//! - 3D Slicer's MONAILabel module (S1–S18): Python's `http.client` with lower-case
//!   `content-type`/`content-length`, the hand-made `----------lImIt_of_THE_fIle_eW_$`
//!   multipart whose file parts carry the full local path as their file name, `client_id` in
//!   every `params`, the `/auth/` → `/auth/token/valid` → `/auth/token` preamble and
//!   `Authorization: <token_type> <access_token>`; its session upload through `requests`
//!   (a `files` part with a bare name and no part type, `client_id` as a form field); every
//!   inference with `result_extension=.nrrd`, `result_dtype=uint8` and no `output`;
//! - its reviewer module (R1–R7): `requests`, no credentials, `updatelabelinfo` as an
//!   urlencoded `params` form;
//! - OHIF's MONAI Label extension, v2 and v3 (O2-1…7, O3-1…6): axios in a browser, no
//!   credentials, `Accept: application/json,multipart/form-data`, WebKit `FormData`
//!   multiparts, SeriesInstanceUIDs as image ids, `output=image` NRRD answers (uint16 for v2,
//!   uint8 for v3, uncompressed), labels as raw `label.bin` voxels, training with
//!   `POST /train/`. Real OHIF loads images only over DICOMweb, which this server does not
//!   serve yet: its requests are replayed here with an image uploaded under a
//!   SeriesInstanceUID-like id.
//!
//! Each answer is checked for what that client reads. The models are the two fixture
//! networks of the AIAA conformance test, loaded through the admin API.

use aiaa_e2e::aiaa_client::*;
use aiaa_e2e::volumes::{decode, fixture_configs, fixture_network};
use aiaa_e2e::{Platform, testdata};
use aiaa_imaging::{Volume, Voxels};
use serde_json::{Value, json};

const KEY: &str = "ml-conformance-key";
/// OHIF's image ids are DICOM SeriesInstanceUIDs.
const SERIES_UID: &str = "1.2.826.0.1.3680043.8.498.10";
const WEBKIT: &str = "----WebKitFormBoundaryq3uV7nRWhy9bX2Lk";
const REQUESTS: &str = "5d0b2e4a8f1c43a9b7e6d2c1f0a9b8c7";

/// Python's `http.client` as the Slicer client drives it: `Host`, `Accept-Encoding`, then
/// its own headers (`Authorization` first, then lower-case `content-type` and
/// `content-length`).
fn slicer(method: &str, path: &str, auth: Option<&str>, body: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: identity\r\n");
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    if let Some((ct, b)) = body {
        head.push_str(&format!("content-type: {ct}\r\ncontent-length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut r = head.into_bytes();
    if let Some((_, b)) = body {
        r.extend_from_slice(b);
    }
    r
}

/// The Slicer client's multipart (the same as MONAI Label's PyPI client).
fn slicer_multipart(
    method: &str,
    path: &str,
    auth: Option<&str>,
    fields: &[(&str, &str)],
    files: &[(&str, &str, &[u8])],
) -> Vec<u8> {
    let body = python_body(fields, files);
    let ct = format!("multipart/form-data; boundary={PY_LIMIT}");
    slicer(method, path, auth, Some((&ct, &body)))
}

/// `requests`' multipart (Slicer's session upload, the reviewer's label upload): text fields,
/// then files with no part Content-Type.
fn requests_multipart(
    method: &str,
    path: &str,
    auth: Option<&str>,
    fields: &[(&str, &str)],
    files: &[(&str, &str, &[u8])],
) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{REQUESTS}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    for (k, name, data) in files {
        body.extend_from_slice(
            format!(
                "--{REQUESTS}\r\nContent-Disposition: form-data; name=\"{k}\"; filename=\"{name}\"\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{REQUESTS}--\r\n").as_bytes());
    requests(
        method,
        path,
        auth,
        Some((&format!("multipart/form-data; boundary={REQUESTS}"), &body)),
    )
}

/// A `requests` call: its default headers, then ours.
fn requests(method: &str, path: &str, auth: Option<&str>, body: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: python-requests/2.32.3\r\nAccept-Encoding: gzip, deflate\r\nAccept: */*\r\nConnection: keep-alive\r\n"
    );
    if let Some(a) = auth {
        head.push_str(&format!("Authorization: {a}\r\n"));
    }
    let (ct, b) = body.unwrap_or(("", b""));
    head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    if !ct.is_empty() {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    let mut r = head.into_bytes();
    r.extend_from_slice(b);
    r
}

/// axios 0.21 in a browser (OHIF): no credentials; POST and PUT ask for JSON or multipart.
fn browser(method: &str, path: &str, body: Option<(&str, &[u8])>) -> Vec<u8> {
    let accept = if matches!(method, "POST" | "PUT") {
        "application/json,multipart/form-data"
    } else {
        "application/json, text/plain, */*"
    };
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nConnection: keep-alive\r\nAccept: {accept}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\nOrigin: http://127.0.0.1:8000\r\nReferer: http://127.0.0.1:8000/ohif/\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n"
    );
    if let Some((ct, b)) = body {
        head.push_str(&format!("Content-Type: {ct}\r\nContent-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut r = head.into_bytes();
    if let Some((_, b)) = body {
        r.extend_from_slice(b);
    }
    r
}

/// A browser `FormData`: `params` as text, then a Blob part (`application/octet-stream`).
fn browser_form(method: &str, path: &str, params: &Value, label: Option<&[u8]>) -> Vec<u8> {
    let mut body =
        format!("--{WEBKIT}\r\nContent-Disposition: form-data; name=\"params\"\r\n\r\n{params}\r\n")
            .into_bytes();
    if let Some(data) = label {
        body.extend_from_slice(
            format!("--{WEBKIT}\r\nContent-Disposition: form-data; name=\"label\"; filename=\"label.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{WEBKIT}--\r\n").as_bytes());
    browser(
        method,
        path,
        Some((&format!("multipart/form-data; boundary={WEBKIT}"), &body)),
    )
}

fn browser_json(method: &str, path: &str, value: &Value) -> Vec<u8> {
    browser(
        method,
        path,
        Some(("application/json;charset=utf-8", value.to_string().as_bytes())),
    )
}

/// An extreme point of the mask per axis end: six `[i, j, k]`.
fn extreme_points(mask: &Volume) -> Vec<[usize; 3]> {
    let [nx, ny, nz] = mask.dims;
    let mut best: Vec<Option<[usize; 3]>> = vec![None; 6];
    for k in 0..nz {
        for j in 0..ny {
            for i in 0..nx {
                if mask.get(i, j, k, 0) == 0.0 {
                    continue;
                }
                let p = [i, j, k];
                for axis in 0..3 {
                    let lo = &mut best[2 * axis];
                    if lo.is_none_or(|q| p[axis] < q[axis]) {
                        *lo = Some(p);
                    }
                    let hi = &mut best[2 * axis + 1];
                    if hi.is_none_or(|q| p[axis] > q[axis]) {
                        *hi = Some(p);
                    }
                }
            }
        }
    }
    best.into_iter().map(Option::unwrap).collect()
}

/// The header fields of an NRRD file and where its data starts.
fn nrrd_header(bytes: &[u8]) -> (String, usize) {
    let end = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("an NRRD header")
        + 2;
    (String::from_utf8_lossy(&bytes[..end]).into_owned(), end)
}

fn mask_bytes(v: &Volume) -> Vec<u8> {
    match &v.voxels {
        Voxels::U8(b) => b.clone(),
        other => other.to_f32_vec().iter().map(|x| u8::from(*x > 0.0)).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slicer_module_and_ohif_requests_get_what_they_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let platform = Platform::start(
        // A key is configured (Slicer logs in); OHIF and the reviewer send no credentials and
        // annotate from a trusted network, as a MONAI Label server without auth lets them.
        &["up", "--api-key", KEY, "--gateway-anonymous-from", "127.0.0.1/32"],
        &[
            ("AIAA_STORE_URL", store.to_str().unwrap()),
            ("AIAA_INFERENCE_MODEL_ROOTS", dir.path().to_str().unwrap()),
            // Refused requests are logged at debug: /logs/ shows them.
            ("AIAA_LOG", "warn,aiaa_gateway::error=debug"),
        ],
    )
    .await;
    let gw = platform.addrs["gateway"];
    let admin = format!("Bearer {KEY}");
    let (seg_pt, dextr_pt) = (dir.path().join("threshold.pt"), dir.path().join("dextr3d.pt"));
    fixture_network("threshold_fixture.py", &seg_pt);
    fixture_network("dextr3d_fixture.py", &dextr_pt);
    let (seg_config, dextr_config) = fixture_configs(&seg_pt, &dextr_pt);
    for (name, config) in [("seg", &seg_config), ("dextr", &dextr_config)] {
        let body = python_body(&[("config", &config.to_string())], &[]);
        let put = slicer(
            "PUT",
            &format!("/admin/model/{name}"),
            Some(&admin),
            Some((&format!("multipart/form-data; boundary={PY_LIMIT}"), &body)),
        );
        let loaded = send(gw, &put).await;
        assert_eq!(loaded.status, 200, "{}", loaded.text());
    }
    let data = testdata();
    let image = std::fs::read(data.join("mni152/MNI152_T1.nii.gz")).unwrap();
    let mask_file = std::fs::read(data.join("mni152/MNI152_mask.nii.gz")).unwrap();
    let mask = decode("mask.nii.gz", &mask_file);
    let fg = mask_bytes(&mask);

    // ---- 3D Slicer's module, auth on: S1, S2, S3 before every operation.
    let status = send(gw, &slicer("GET", "/auth/", None, None)).await.json();
    assert_eq!(status["enabled"], json!(true), "{status}");
    let form = format!("username=alice&password={KEY}&grant_type=password");
    let token = send(
        gw,
        &slicer(
            "POST",
            "/auth/token",
            None,
            Some(("application/x-www-form-urlencoded", form.as_bytes())),
        ),
    )
    .await
    .json();
    let auth = format!(
        "{} {}",
        token["token_type"].as_str().unwrap(),
        token["access_token"].as_str().unwrap()
    );
    let auth = Some(auth.as_str());
    assert_eq!(
        send(gw, &slicer("GET", "/auth/token/valid", auth, None))
            .await
            .status,
        200
    );
    let wrong = send(gw, &slicer("GET", "/auth/token/valid", Some("bearer nope"), None)).await;
    assert_eq!(
        wrong.status, 401,
        "S3 with a stale token: Slicer asks for a new one"
    );
    let bad_login = send(
        gw,
        &slicer(
            "POST",
            "/auth/token",
            None,
            Some((
                "application/x-www-form-urlencoded",
                b"username=alice&password=guess&grant_type=password",
            )),
        ),
    )
    .await;
    // RFC 6749 5.2: a wrong password is `invalid_grant`, 400.
    assert!(bad_login.error(400).contains("invalid_grant"));

    // S4: what the module reads of /info/, and no top-level `config` ("upgrade the server").
    let info = send(gw, &slicer("GET", "/info/", auth, None)).await.json();
    assert!(info.get("config").is_none(), "{info}");
    assert!(info["name"].is_string());
    assert_eq!(info["models"]["seg"]["type"], "segmentation", "{info}");
    assert_eq!(info["models"]["dextr"]["type"], "deepgrow", "{info}");
    assert_eq!(info["models"]["seg"]["dimension"], 3);
    assert!(
        info["labels"].as_array().unwrap().contains(&json!("brain")),
        "{info}"
    );
    for key in ["trainers", "strategies", "scoring"] {
        assert!(info[key].is_object(), "{key}: {info}");
    }
    assert!(info["strategies"]["first"].is_object(), "{info}");
    assert_eq!(info["datastore"]["total"], 0);
    assert_eq!(info["datastore"]["completed"], 0);

    // The dataset archive is refused while there is nothing in it.
    let empty = send(gw, &slicer("GET", "/datastore/dataset", auth, None)).await;
    assert!(empty.error(404).contains("no image has a final label"));

    // S9: upload the loaded volume (the deprecated `PUT /datastore/?image=`), full-path name.
    let client_id = json!({"client_id": "user-xyz"}).to_string();
    let up = send(
        gw,
        &slicer_multipart(
            "PUT",
            "/datastore/?image=MNI152_T1",
            auth,
            &[("params", &client_id)],
            &[(
                "file",
                "/tmp/Slicer-u/slicer-monai-label/tmpab12cd.nii.gz",
                &image,
            )],
        ),
    )
    .await
    .json();
    assert_eq!(up, json!({"image": "MNI152_T1"}));

    // S5: next sample, JSON body with client_id.
    let sample = send(
        gw,
        &slicer(
            "POST",
            "/activelearning/first",
            auth,
            Some(("application/json", client_id.as_bytes())),
        ),
    )
    .await
    .json();
    assert_eq!(sample["id"], "MNI152_T1", "{sample}");
    assert!(
        sample["checksum"].as_str().unwrap().starts_with("SHA256:"),
        "{sample}"
    );
    assert!(
        sample
            .get("path")
            .is_none_or(|p| !std::path::Path::new(p.as_str().unwrap()).exists())
    );
    // S8: Slicer's SampleData downloads it, without credentials.
    let download = send(gw, &simple("GET", "/datastore/image?image=MNI152_T1")).await;
    assert_eq!(download.status, 200);
    assert_eq!(download.body, image, "the image comes back byte for byte");

    // S14, auto-segmentation: `.nrrd`, uint8, no `output`: a multipart answer whose params
    // name the labels; saved as the `original` tag for S6 and S7.
    let params = json!({"result_extension": ".nrrd", "result_dtype": "uint8", "client_id": "user-xyz", "save_label": true});
    let answer = send(
        gw,
        &slicer_multipart(
            "POST",
            "/infer/seg?image=MNI152_T1",
            auth,
            &[("params", &params.to_string())],
            &[],
        ),
    )
    .await;
    let result = parse_multipart_answer(&answer);
    assert!(
        result.filename.as_deref().unwrap().ends_with(".nrrd"),
        "{:?}",
        result.filename
    );
    assert_eq!(
        result.params["label_names"],
        json!({"brain": 1}),
        "{}",
        result.params
    );
    let nrrd = result.file.unwrap();
    let (header, _) = nrrd_header(&nrrd);
    assert!(
        header.contains("type: uint8") || header.contains("type: unsigned char"),
        "{header}"
    );
    assert_eq!(decode("result.nrrd", &nrrd).dims, mask.dims);
    // S6 then S7: the original label's info, then its file with a file name.
    let all = send(gw, &slicer("GET", "/datastore/?output=all", auth, None))
        .await
        .json();
    let original = &all["objects"]["MNI152_T1"]["labels"]["original"];
    assert_eq!(
        original["info"]["params"]["label_names"],
        json!({"brain": 1}),
        "{all}"
    );
    let label = send(
        gw,
        &slicer("GET", "/datastore/label?label=MNI152_T1&tag=original", auth, None),
    )
    .await;
    assert_eq!(label.status, 200);
    let disposition = label.header("content-disposition").unwrap();
    assert!(disposition.contains("filename="), "{disposition}");
    assert_eq!(decode("original.nrrd", &label.body).dims, mask.dims);

    // S10, S11: a session as `requests` uploads it; S14 deepgrow-style clicks on it (our
    // DEXTR3D model, listed as `deepgrow`, takes the six extreme points as `foreground`).
    let session = send(
        gw,
        &requests_multipart(
            "PUT",
            "/session/",
            auth,
            &[("client_id", "user-xyz")],
            &[("files", "tmpab12cd.nii.gz", &image)],
        ),
    )
    .await
    .json();
    let session_id = session["session_id"].as_str().unwrap().to_string();
    assert!(session["session_info"].is_object(), "{session}");
    let got = send(gw, &slicer("GET", &format!("/session/{session_id}"), auth, None)).await;
    assert_eq!(got.status, 200, "{}", got.text());
    let points = extreme_points(&mask);
    let clicks = json!({"label": "brain", "foreground": points, "background": [],
                        "result_extension": ".nrrd", "result_dtype": "uint8", "client_id": "user-xyz"});
    let answer = send(
        gw,
        &slicer_multipart(
            "POST",
            &format!("/infer/dextr?image=MNI152_T1&session_id={session_id}"),
            auth,
            &[("params", &clicks.to_string())],
            &[],
        ),
    )
    .await;
    let clicked = parse_multipart_answer(&answer);
    assert_eq!(decode("dextr.nrrd", &clicked.file.unwrap()).dims, mask.dims);

    // The same path, MONAI Label's other shape: a DICOM series as several `files` parts
    // (the PyPI client's `create_session` with a folder's files).
    let series_dir = data.join("pydicom/dicomdirtests/98892001/CT5N");
    let mut slices: Vec<(String, Vec<u8>)> = std::fs::read_dir(&series_dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    slices.sort();
    let files: Vec<(&str, &str, &[u8])> = slices
        .iter()
        .map(|(n, b)| ("files", n.as_str(), b.as_slice()))
        .collect();
    let series = send(
        gw,
        &requests_multipart("PUT", "/session/?expiry=600", auth, &[], &files),
    )
    .await;
    assert_eq!(series.status, 200, "{}", series.text());
    let series_id = series.json()["session_id"].as_str().unwrap().to_string();
    let answer = send(
        gw,
        &slicer_multipart(
            "POST",
            &format!("/infer/seg?image=ct&session_id={series_id}"),
            auth,
            &[(
                "params",
                &json!({"result_extension": ".nrrd", "result_dtype": "uint8"}).to_string(),
            )],
            &[],
        ),
    )
    .await;
    let ct = parse_multipart_answer(&answer);
    assert_eq!(
        decode("ct.nrrd", &ct.file.unwrap()).dims,
        [16, 16, 5],
        "the series as one volume"
    );
    // Files of two series, or files that are not DICOM: 400 naming the problem.
    let mixed = send(
        gw,
        &requests_multipart(
            "PUT",
            "/session/",
            auth,
            &[],
            &[
                ("files", "a.dcm", &slices[0].1),
                ("files", "b.dcm", b"not dicom at all"),
            ],
        ),
    )
    .await;
    assert!(mixed.error(400).contains("not one readable DICOM series"));

    // The same series into the datastore (the annotation page's DICOM folder upload): one
    // `.nii.gz` image named by image=; without a name, 400 saying so.
    let as_file: Vec<(&str, &str, &[u8])> = files.iter().map(|(_, n, b)| ("file", *n, *b)).collect();
    let stored = send(
        gw,
        &requests_multipart(
            "PUT",
            "/datastore/image?image=ct5n",
            auth,
            &[("params", "{}")],
            &as_file,
        ),
    )
    .await;
    assert_eq!(stored.status, 200, "{}", stored.text());
    let back = send(gw, &requests("GET", "/datastore/image?image=ct5n", auth, None)).await;
    assert_eq!(back.status, 200);
    assert_eq!(decode("ct5n.nii.gz", &back.body).dims, [16, 16, 5]);
    let unnamed = send(
        gw,
        &requests_multipart("PUT", "/datastore/image", auth, &[("params", "{}")], &as_file),
    )
    .await;
    assert!(unnamed.error(400).contains("image=<id>"));
    // Gone again: the listings below count the heads only.
    let removed = send(gw, &requests("DELETE", "/datastore/image?id=ct5n", auth, None)).await;
    assert_eq!(removed.status, 200, "{}", removed.text());

    let archive = send(
        gw,
        &requests_multipart("PUT", "/session/?uncompress=true", auth, &[], &files),
    )
    .await;
    assert!(archive.error(400).contains("uncompress=true"));

    // S13: save the label (no tag: final), full-path file name, label_info with idx.
    let save = json!({"label_info": [{"name": "brain", "idx": 1}], "client_id": "user-xyz"});
    let saved = send(
        gw,
        &slicer_multipart(
            "PUT",
            "/datastore/label?image=MNI152_T1",
            auth,
            &[("params", &save.to_string())],
            &[(
                "label",
                "/tmp/Slicer-u/slicer-monai-label/tmpef34gh.nii.gz",
                &mask_file,
            )],
        ),
    )
    .await;
    assert_eq!(saved.status, 200, "{}", saved.text());
    // A label on another grid: 400, and the saved one is kept.
    // The ROBEX atlas mask: 1.5 mm, another grid.
    let other_grid = std::fs::read(data.join("robex/atlas_mask.nii.gz")).unwrap();
    let refused = send(
        gw,
        &slicer_multipart(
            "PUT",
            "/datastore/label?image=MNI152_T1",
            auth,
            &[("params", &save.to_string())],
            &[("label", "/tmp/Slicer-u/other.nii.gz", &other_grid)],
        ),
    )
    .await;
    assert!(refused.error(400).contains("not on its image's grid"));
    let kept = send(
        gw,
        &slicer("GET", "/datastore/label?label=MNI152_T1&tag=final", auth, None),
    )
    .await;
    assert_eq!(
        kept.body, mask_file,
        "the final label is byte-identical after a refused save"
    );

    // S15–S18: the fixture networks are not trainable (no checkpoint in a registry version).
    let train = send(
        gw,
        &slicer(
            "POST",
            "/train/seg",
            auth,
            Some((
                "application/json",
                br#"{"max_epochs": 1, "client_id": "user-xyz"}"#,
            )),
        ),
    )
    .await;
    assert!(
        train.status == 400 || train.status == 404,
        "{} {}",
        train.status,
        train.text()
    );
    assert!(train.text().contains("seg"), "{}", train.text());
    let running = send(gw, &slicer("GET", "/train/?check_if_running=true", auth, None)).await;
    assert_eq!(running.status, 404, "idle: not 200");
    assert_eq!(send(gw, &slicer("GET", "/train/", auth, None)).await.status, 404);
    let stop = send(gw, &slicer("DELETE", "/train/", auth, None)).await;
    assert_eq!((stop.status, stop.json()), (200, Value::Null));

    // ---- The reviewer module (requests, no credentials).
    assert_eq!(
        send(gw, &requests("GET", "/", None, None)).await.status,
        200,
        "R1"
    );
    let listing = send(gw, &requests("GET", "/datastore/?output=all", None, None))
        .await
        .json();
    assert!(
        listing["objects"]["MNI152_T1"]["labels"]["final"].is_object(),
        "R2: {listing}"
    );
    let r4 = send(
        gw,
        &requests("GET", "/datastore/label?label=MNI152_T1&tag=final", None, None),
    )
    .await;
    assert_eq!(r4.body, mask_file, "R4");
    let meta = json!({"segmentationMeta": {"status": "approved", "approvedBy": "rev", "level": "easy",
                                           "comment": "ok", "editTime": 1733400000}});
    let form = format!("params={}", url_encode(&meta.to_string()));
    let r5 = send(
        gw,
        &requests(
            "PUT",
            "/datastore/updatelabelinfo?label=MNI152_T1&tag=final",
            None,
            Some(("application/x-www-form-urlencoded", form.as_bytes())),
        ),
    )
    .await;
    assert_eq!(r5.status, 200, "R5: {}", r5.text());
    let listing = send(gw, &requests("GET", "/datastore/?output=all", None, None))
        .await
        .json();
    assert_eq!(
        listing["objects"]["MNI152_T1"]["labels"]["final"]["info"]["segmentationMeta"]["status"], "approved",
        "R5 is kept: {listing}"
    );
    let nrrd_mask = aiaa_imaging::io::encode_bytes(&mask, ".nrrd", true).unwrap();
    let r6 = send(
        gw,
        &requests_multipart(
            "PUT",
            "/datastore/label?image=MNI152_T1&tag=reviewed",
            None,
            &[("params", &meta.to_string())],
            &[("label", "MNI152_T1.nrrd", &nrrd_mask)],
        ),
    )
    .await;
    assert_eq!(r6.status, 200, "R6: {}", r6.text());
    let r7 = requests("DELETE", "/datastore/label?id=MNI152_T1&tag=reviewed", None, None);
    assert_eq!(
        send(gw, &r7).await.status,
        401,
        "R7 deletes: an admin's, even from a trusted network"
    );
    let r7 = requests(
        "DELETE",
        "/datastore/label?id=MNI152_T1&tag=reviewed",
        Some(&admin),
        None,
    );
    assert_eq!(send(gw, &r7).await.status, 200, "R7 with the key");

    // ---- OHIF v2 and v3 (axios, no credentials), the image under a SeriesInstanceUID.
    let up = send(
        gw,
        &requests_multipart(
            "PUT",
            &format!("/datastore/image?image={SERIES_UID}"),
            None,
            &[("params", "{}")],
            &[("file", "series.nii.gz", &image)],
        ),
    )
    .await;
    assert_eq!(up.status, 200, "{}", up.text());
    let info = send(gw, &browser("GET", "/info/", None)).await.json();
    assert_eq!(info["datastore"]["total"], 2, "O2-1/O3-1: {info}");
    // O2-2: uint16, uncompressed, output=image: the raw NRRD is the whole answer.
    let v2 = json!({"result_extension": ".nrrd", "result_dtype": "uint16", "result_compress": false});
    let answer = send(
        gw,
        &browser_form(
            "POST",
            &format!("/infer/seg?image={SERIES_UID}&output=image"),
            &v2,
            None,
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let (header, start) = nrrd_header(&answer.body);
    assert!(header.starts_with("NRRD"), "{header}");
    assert!(
        header.contains("type: uint16") || header.contains("type: unsigned short"),
        "{header}"
    );
    assert!(header.contains("encoding: raw"), "O2-2 reads raw data: {header}");
    let voxels = mask.voxel_count();
    assert_eq!(answer.body.len() - start, 2 * voxels, "{header}");
    // O3-2: uint8 and restore_label_idx=false.
    let v3 = json!({"result_extension": ".nrrd", "result_dtype": "uint8", "result_compress": false,
                    "restore_label_idx": false});
    let answer = send(
        gw,
        &browser_form(
            "POST",
            &format!("/infer/seg?image={SERIES_UID}&output=image"),
            &v3,
            None,
        ),
    )
    .await;
    let (header, start) = nrrd_header(&answer.body);
    assert!(header.contains("encoding: raw"), "{header}");
    assert_eq!(answer.body.len() - start, voxels, "O3-2 reads one byte a voxel");
    // OHIF's deepgrow clicks: cornerstone image coordinates, not rounded.
    let fractional: Vec<[f64; 3]> = points
        .iter()
        .map(|p| [p[0] as f64 + 0.4, p[1] as f64 + 0.3, p[2] as f64])
        .collect();
    let clicks = json!({"foreground": fractional, "background": [], "result_extension": ".nrrd",
                        "result_dtype": "uint16", "result_compress": false});
    let answer = send(
        gw,
        &browser_form(
            "POST",
            &format!("/infer/dextr?image={SERIES_UID}&output=image"),
            &clicks,
            None,
        ),
    )
    .await;
    assert_eq!(answer.status, 200, "O2-2 deepgrow: {}", answer.text());
    // O2-2 scribbles: a `label.bin` part on /infer; no served model reads one: 400.
    let scribbles = send(
        gw,
        &browser_form(
            "POST",
            &format!("/infer/seg?image={SERIES_UID}&output=image"),
            &v2,
            Some(fg.as_slice()),
        ),
    )
    .await;
    assert!(scribbles.error(400).contains("does not take a label part"));
    // O2-3/O3-3: next sample, JSON with axios' content type.
    let next = send(gw, &browser_json("POST", "/activelearning/first", &json!({})))
        .await
        .json();
    assert_eq!(next["id"], SERIES_UID, "the unlabelled one: {next}");
    // O2-4: the labelmap as raw uint16 voxels (`label.bin`), one PUT per labelmap, no tag.
    let segments = json!({"label_info": [{"id": "0+1", "labelmapIndex": 0, "segmentIndex": 1,
        "color": [221, 84, 84, 255], "name": "brain", "description": "",
        "meta": {"SegmentNumber": 1, "SegmentLabel": "brain", "SegmentAlgorithmType": "SEMIAUTOMATIC",
                 "SegmentAlgorithmName": "MONAI"}}]});
    let as_u16: Vec<u8> = fg.iter().flat_map(|&v| u16::from(v).to_le_bytes()).collect();
    let path = format!("/datastore/label?image={SERIES_UID}");
    let saved = send(gw, &browser_form("PUT", &path, &segments, Some(&as_u16))).await;
    assert_eq!(saved.status, 200, "O2-4: {}", saved.text());
    let stored = send(
        gw,
        &browser(
            "GET",
            &format!("/datastore/label?label={SERIES_UID}&tag=final"),
            None,
        ),
    )
    .await;
    let name = stored.header("content-disposition").unwrap().to_string();
    assert!(name.contains(".nii.gz"), "stored as NIfTI: {name}");
    let stored = decode("label.nii.gz", &stored.body);
    assert_eq!(
        (stored.dims, stored.geometry),
        (mask.dims, mask.geometry),
        "on the image's grid"
    );
    assert_eq!(mask_bytes(&stored), fg, "voxel for voxel, i fastest");
    // The 0.7-era v3 submit: uint8 voxels, label_info null.
    let as_u8: Vec<u8> = fg.clone();
    let saved = send(
        gw,
        &browser_form("PUT", &path, &json!({"label_info": null}), Some(&as_u8)),
    )
    .await;
    assert_eq!(saved.status, 200, "{}", saved.text());
    // A buffer of another size: 400 naming both sizes; the label is kept.
    let short = send(
        gw,
        &browser_form("PUT", &path, &segments, Some(&as_u8[..voxels - 7])),
    )
    .await;
    let msg = short.error(400);
    assert!(
        msg.contains(&format!("{}", voxels - 7)) && msg.contains(&voxels.to_string()),
        "{msg}"
    );
    // O2-5..7 / O3-4..6: training, no trainable model here.
    let running = send(gw, &browser("GET", "/train/?check_if_running=true", None)).await;
    assert_eq!(running.status, 404);
    // Starting and stopping training is an admin's act (as in MONAI Label with auth): OHIF,
    // which sends no credentials, gets 401 saying so; with the key the same requests work.
    let all_trainers = send(gw, &browser_json("POST", "/train/", &json!({}))).await;
    assert!(all_trainers.error(401).contains("API key"), "O2-6");
    let with_key = |r: Vec<u8>| {
        let at = r.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
        let mut r = r;
        r.splice(at..at, format!("Authorization: Bearer {KEY}\r\n").into_bytes());
        r
    };
    let all_trainers = send(gw, &with_key(browser_json("POST", "/train/", &json!({})))).await;
    assert_eq!(
        (all_trainers.status, all_trainers.json()),
        (200, json!({})),
        "O2-6, no trainer"
    );
    assert_eq!(
        send(gw, &browser("DELETE", "/train/", None)).await.status,
        401,
        "O2-7"
    );
    let stop = send(gw, &with_key(browser("DELETE", "/train/", None))).await;
    assert_eq!(stop.status, 200, "O2-7 with the key");

    // The dataset archive: both labelled images, their final labels, metadata.json.
    let zip = send(gw, &requests("GET", "/datastore/dataset", None, None)).await;
    assert_eq!(zip.status, 200, "{}", zip.text());
    assert_eq!(zip.header("content-type"), Some("application/zip"));
    assert!(zip.header("content-disposition").unwrap().contains("dataset.zip"));
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.body.clone())).unwrap();
    let mut names: Vec<String> = archive.file_names().map(str::to_string).collect();
    names.sort();
    assert_eq!(
        names,
        [
            format!("image/{SERIES_UID}.nii.gz"),
            "image/MNI152_T1.nii.gz".into(),
            format!("label/{SERIES_UID}.nii.gz"),
            "label/MNI152_T1.nii.gz".into(),
            "metadata.json".into(),
        ]
    );
    let mut label = Vec::new();
    std::io::Read::read_to_end(
        &mut archive.by_name("label/MNI152_T1.nii.gz").unwrap(),
        &mut label,
    )
    .unwrap();
    assert_eq!(label, mask_file, "the archive holds the saved file byte for byte");
    let mut metadata = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("metadata.json").unwrap(), &mut metadata).unwrap();
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    assert!(
        metadata["objects"]["MNI152_T1"]["labels"]["final"].is_object(),
        "{metadata}"
    );
    let one = send(
        gw,
        &requests("GET", "/datastore/dataset?limit_cases=1", None, None),
    )
    .await;
    let archive = zip::ZipArchive::new(std::io::Cursor::new(one.body)).unwrap();
    assert_eq!(
        archive.len(),
        3,
        "limit_cases=1: one image, its label, metadata.json"
    );

    // /logs/: the admin's, the gateway's recent lines.
    assert_eq!(send(gw, &requests("GET", "/logs/", None, None)).await.status, 401);
    let logs = send(gw, &requests("GET", "/logs/?lines=5", Some(&admin), None)).await;
    assert_eq!(logs.status, 200);
    assert!(logs.header("content-type").unwrap().starts_with("text/plain"));
    let lines = logs.text();
    assert!((1..=5).contains(&lines.lines().count()), "{lines}");
    assert!(
        lines.contains("request refused") && lines.contains("/logs needs an API key"),
        "the refusal just before is logged: {lines}"
    );

    // Bad input: unknown model, strategy and image: clear 4xx.
    let body = python_body(&[("params", "{}")], &[]);
    let unknown = send(
        gw,
        &slicer(
            "POST",
            "/infer/nope?image=MNI152_T1",
            auth,
            Some((&format!("multipart/form-data; boundary={PY_LIMIT}"), &body)),
        ),
    )
    .await;
    assert!(unknown.error(404).contains("nope"));
    let missing = send(
        gw,
        &slicer(
            "POST",
            "/infer/seg?image=missing",
            auth,
            Some((&format!("multipart/form-data; boundary={PY_LIMIT}"), &body)),
        ),
    )
    .await;
    assert!(missing.error(404).contains("missing"));
    let strategy = send(gw, &browser_json("POST", "/activelearning/nope", &json!({}))).await;
    assert!(
        strategy.status == 400 || strategy.status == 404,
        "{}",
        strategy.text()
    );
    assert!(strategy.text().contains("nope"));
}

/// `application/x-www-form-urlencoded` value encoding, as `requests` does it.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
