//! End-to-end tests of the datastore over gRPC: a real server on 127.0.0.1:0 with a
//! `file://` temp-dir store or a `memory://` store, and the generated client.

mod common;

use std::time::Duration;

use aiaa_proto::common::v1::{JobRef, JobState, ListJobsRequest};
use aiaa_proto::datastore::v1::{
    ConvertRequest, Datalist, DatalistItem, DatalistRef, GetRequest, ItemKind, ListDatalistsRequest,
    ListRequest, PutDatalistRequest, PutRequest, RefreshSessionRequest, SessionRef, put_request,
};
use common::*;
use futures::StreamExt;
use tonic::Code;

async fn round_trip(h: &mut Harness) {
    let data = mni152();
    let item = put(&mut h.client, ItemKind::Image, "mni/MNI152_T1.nii.gz", &data)
        .await
        .unwrap();
    assert_eq!(item.format, "nifti-gz");
    assert_eq!(item.size, data.len() as u64);
    assert_eq!(item.sha256, sha256_hex(&data));
    assert_eq!(item.metadata.get("source").map(String::as_str), Some("test"));
    let (got_item, got) = get(&mut h.client, ItemKind::Image, "mni/MNI152_T1.nii.gz")
        .await
        .unwrap();
    assert_eq!(got_item, item);
    assert!(got == data, "bytes differ after a round trip");
    assert_eq!(sha256_hex(&got), item.sha256);
    assert_eq!(
        stat(&mut h.client, ItemKind::Image, "mni/MNI152_T1.nii.gz")
            .await
            .unwrap(),
        item
    );

    // The same bytes without a telling name: the format comes from the bytes.
    let by_bytes = put(&mut h.client, ItemKind::Image, "mni/noext", &data)
        .await
        .unwrap();
    assert_eq!(by_bytes.format, "nifti-gz");
    // Labels are a separate namespace.
    put(
        &mut h.client,
        ItemKind::Label,
        "mni/MNI152_T1.nii.gz",
        b"label bytes",
    )
    .await
    .unwrap();

    let list = |prefix: &str| ListRequest {
        kind: ItemKind::Image as i32,
        prefix: prefix.into(),
    };
    let ids = |r: tonic::Response<aiaa_proto::datastore::v1::ListResponse>| {
        r.into_inner().items.into_iter().map(|i| i.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(h.client.list(list("")).await.unwrap()),
        ["mni/MNI152_T1.nii.gz", "mni/noext"]
    );
    assert_eq!(
        ids(h.client.list(list("mni/MNI")).await.unwrap()),
        ["mni/MNI152_T1.nii.gz"]
    );
    assert!(ids(h.client.list(list("other")).await.unwrap()).is_empty());

    let req = GetRequest {
        kind: ItemKind::Image as i32,
        id: "mni/noext".into(),
    };
    assert!(h.client.delete(req.clone()).await.unwrap().into_inner().deleted);
    assert!(!h.client.delete(req.clone()).await.unwrap().into_inner().deleted);
    let err = h.client.stat(req.clone()).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("image \"mni/noext\" not found"),
        "{}",
        err.message()
    );
    assert_eq!(
        get(&mut h.client, ItemKind::Image, "mni/noext")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // The label is still there.
    assert!(
        stat(&mut h.client, ItemKind::Label, "mni/MNI152_T1.nii.gz")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn put_get_round_trip_on_a_file_store() {
    let mut h = file_server(args()).await;
    round_trip(&mut h).await;
    let files = files_under(h.root.as_ref().unwrap());
    assert!(
        files.contains(&"images/mni/MNI152_T1.nii.gz".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"meta/images/mni/MNI152_T1.nii.gz.json".to_string()),
        "{files:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn put_get_round_trip_on_a_memory_store() {
    let mut h = memory_server(args()).await;
    round_trip(&mut h).await;
    h.stop().await;
}

#[tokio::test]
async fn formats_by_name_and_by_bytes() {
    let mut h = memory_server(args()).await;
    let mut nifti = vec![0u8; 400];
    nifti[..4].copy_from_slice(&348i32.to_le_bytes());
    let mut nifti_be = nifti.clone();
    nifti_be[..4].copy_from_slice(&348i32.to_be_bytes());
    let mut nifti2 = vec![0u8; 600];
    nifti2[..4].copy_from_slice(&540i32.to_le_bytes());
    let mut dicom = vec![0u8; 300];
    dicom[128..132].copy_from_slice(b"DICM");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("n/a.nii", b"not really".to_vec(), "nifti"),
        ("n/a.nii.gz", b"x".to_vec(), "nifti-gz"),
        ("n/a.mha", b"x".to_vec(), "mha"),
        ("n/a.MHD", b"x".to_vec(), "mhd"),
        ("n/a.png", b"x".to_vec(), "png"),
        ("n/a.dcm", b"x".to_vec(), "dicom"),
        ("n/a.zip", b"x".to_vec(), "dicom-zip"),
        ("b/nifti", nifti, "nifti"),
        ("b/nifti-be", nifti_be, "nifti"),
        ("b/nifti2", nifti2, "nifti"),
        ("b/png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), "png"),
        ("b/dicom", dicom, "dicom"),
        ("b/zip", b"PK\x03\x04\x14\0\0\0".to_vec(), "dicom-zip"),
        (
            "b/mha",
            b"ObjectType = Image\nNDims = 3\nElementDataFile = LOCAL\n".to_vec(),
            "mha",
        ),
        ("b/mhd", b"NDims = 3\nElementDataFile = a.raw\n".to_vec(), "mhd"),
        ("b/unknown", b"hello world".to_vec(), "unknown"),
    ];
    for (id, data, format) in cases {
        let item = put(&mut h.client, ItemKind::Image, id, &data).await.unwrap();
        assert_eq!(item.format, format, "{id}");
    }
    h.stop().await;
}

#[tokio::test]
async fn bad_requests_are_invalid_argument_and_name_the_problem() {
    let mut h = memory_server(args()).await;
    let long = "x".repeat(300);
    let cases = [
        ("../x", "'.' or '..'"),
        ("a/../../b", "'.' or '..'"),
        (long.as_str(), "longer than 255"),
        ("", "must not be empty"),
        ("/abs", "empty path segment"),
        ("a b", "may only contain"),
    ];
    for (id, reason) in cases {
        let err = put(&mut h.client, ItemKind::Image, id, b"data")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{id}");
        assert!(
            err.message().contains("image id") && err.message().contains(reason),
            "{id}: {}",
            err.message()
        );
        let err = stat(&mut h.client, ItemKind::Label, id).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{id}");
        assert!(err.message().contains("label id"), "{}", err.message());
        assert_eq!(
            get(&mut h.client, ItemKind::Image, id).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }
    let err = put(&mut h.client, ItemKind::Unspecified, "a.nii", b"data")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("header.kind"), "{}", err.message());
    let err = put(&mut h.client, ItemKind::Image, "empty.nii", b"")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("empty"), "{}", err.message());
    // Chunks before a header.
    let mut msgs = put_messages(ItemKind::Image, "a.nii", b"data");
    msgs.reverse();
    let err = h.client.put(futures::stream::iter(msgs)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("first message"), "{}", err.message());
    // An id that is both an item and a folder.
    put(&mut h.client, ItemKind::Image, "f/a", b"data").await.unwrap();
    let err = put(&mut h.client, ItemKind::Image, "f/a/b", b"data")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("\"f/a\" exists"), "{}", err.message());
    let err = put(&mut h.client, ItemKind::Image, "f", b"data")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // Unknown ids.
    assert_eq!(
        stat(&mut h.client, ItemKind::Image, "nope")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    h.stop().await;
}

#[tokio::test]
async fn the_size_limit_is_enforced_while_streaming() {
    let mut h = file_server(aiaa_datastore::DatastoreArgs {
        max_item_bytes: 3 << 20,
        ..args()
    })
    .await;
    let data = vec![7u8; 5 << 20];
    let err = put(&mut h.client, ItemKind::Image, "big.nii", &data)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("image \"big.nii\"")
            && err.message().contains("3145728 bytes")
            && err.message().contains("--max-item-bytes"),
        "{}",
        err.message()
    );
    assert_eq!(
        stat(&mut h.client, ItemKind::Image, "big.nii")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let root = h.root.clone().unwrap();
    eventually(Duration::from_secs(5), "no file left", || {
        files_under(&root).is_empty()
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn an_interrupted_upload_leaves_nothing_visible() {
    let mut h = file_server(args()).await;
    let root = h.root.clone().unwrap();
    // An existing item that an interrupted replacement must leave intact.
    put(&mut h.client, ItemKind::Image, "keep.nii", b"old bytes")
        .await
        .unwrap();
    let before = files_under(&root);

    let server_addr = h.server.as_ref().unwrap().addr;
    for id in ["new/partial.nii", "keep.nii"] {
        // The client talks through a proxy; cutting the proxy midway is a client that dies.
        let (via, cut) = proxy(server_addr).await;
        let channel = aiaa_runtime::client::connect(&via.to_string(), None)
            .await
            .unwrap();
        let mut client = Client::new(channel);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let call =
            tokio::spawn(async move { client.put(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
        let msgs = put_messages(ItemKind::Image, id, &vec![1u8; 12 << 20]);
        for msg in msgs.into_iter().take(8) {
            tx.send(msg).await.unwrap();
        }
        // Let the server take in what was sent, then cut the connection midway.
        tokio::time::sleep(Duration::from_millis(300)).await;
        cut.abort();
        let _ = cut.await;
        let err = call.await.unwrap().unwrap_err();
        assert_ne!(err.code(), Code::Ok);
        drop(tx);
        eventually(Duration::from_secs(5), "the partial upload is cleaned up", || {
            files_under(&root) == before
        })
        .await;
    }
    assert_eq!(
        stat(&mut h.client, ItemKind::Image, "new/partial.nii")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    let (_, kept) = get(&mut h.client, ItemKind::Image, "keep.nii").await.unwrap();
    assert_eq!(kept, b"old bytes");
    let listed = h
        .client
        .list(ListRequest {
            kind: ItemKind::Image as i32,
            prefix: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(listed.into_inner().items.len(), 1);
    h.stop().await;
}

const SEED_DATALIST: &str = r#"{
  "training": [
    {"image": "train/im1.nii.gz", "label": "train/lb1.nii.gz"},
    {"image": "train/im2.nii.gz", "label": "train/lb2.nii.gz"}
  ],
  "validation": [
    {"image": "val/im1.nii.gz", "label": "val/lb1.nii.gz"},
    {"image": "val/im2.nii.gz"}
  ]
}
"#;

#[tokio::test]
async fn datalists_round_trip_in_the_seed_format() {
    let mut h = file_server(args()).await;
    let put_json = |name: &str, json: &str| PutDatalistRequest {
        name: name.into(),
        datalist: None,
        json: json.into(),
    };
    let stored = h
        .client
        .put_datalist(put_json("spleen/datalist", SEED_DATALIST))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.training.len(), 2);
    assert_eq!(
        stored.validation[1],
        DatalistItem {
            image: "val/im2.nii.gz".into(),
            label: String::new()
        }
    );
    let got = h
        .client
        .get_datalist(DatalistRef {
            name: "spleen/datalist".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.json, SEED_DATALIST);
    assert_eq!(got, stored);
    let on_disk =
        std::fs::read_to_string(h.root.as_ref().unwrap().join("datalists/spleen/datalist.json")).unwrap();
    assert_eq!(on_disk, SEED_DATALIST);

    // Structured in, seed JSON out.
    let structured = Datalist {
        name: String::new(),
        training: vec![DatalistItem {
            image: "a/im.nii".into(),
            label: "a/lb.nii".into(),
        }],
        validation: vec![],
        json: String::new(),
    };
    let req = PutDatalistRequest {
        name: "b".into(),
        datalist: Some(structured.clone()),
        json: String::new(),
    };
    let b = h.client.put_datalist(req).await.unwrap().into_inner();
    let value: serde_json::Value = serde_json::from_str(&b.json).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"training": [{"image": "a/im.nii", "label": "a/lb.nii"}]})
    );
    let again = h
        .client
        .get_datalist(DatalistRef { name: "b".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.training, structured.training);
    assert_eq!(again.json, b.json);

    let names = h
        .client
        .list_datalists(ListDatalistsRequest {})
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, ["b", "spleen/datalist"]);

    let bad = r#"{"training": [{"image": "a", "label": "b"}, {"image": "c", "label": "d"},
        {"image": "e", "label": "f"}, {"label": "g"}]}"#;
    let err = h.client.put_datalist(put_json("bad", bad)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("training[3].image is missing"),
        "{}",
        err.message()
    );
    let err = h
        .client
        .put_datalist(put_json(
            "bad",
            r#"{"training": [{"image": "../x", "label": "y"}]}"#,
        ))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("training[0].image") && err.message().contains(".."),
        "{}",
        err.message()
    );
    let err = h
        .client
        .put_datalist(put_json("../bad", SEED_DATALIST))
        .await
        .unwrap_err();
    assert!(err.message().contains("datalist name"), "{}", err.message());

    assert!(
        h.client
            .delete_datalist(DatalistRef { name: "b".into() })
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    let err = h
        .client
        .get_datalist(DatalistRef { name: "b".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("datalist \"b\" not found"),
        "{}",
        err.message()
    );
    h.stop().await;
}

#[tokio::test]
async fn sessions_expire_refresh_and_are_reaped() {
    let mut h = file_server(aiaa_datastore::DatastoreArgs {
        session_expiry: Duration::from_secs(30),
        session_max_expiry: Duration::from_secs(60),
        session_reap_interval: Duration::from_millis(200),
        ..args()
    })
    .await;
    let root = h.root.clone().unwrap();
    let data = mni152();
    let a = create_session(&mut h.client, 1, "scan.nii.gz", &data)
        .await
        .unwrap();
    let b = create_session(&mut h.client, 1, "", b"tiny").await.unwrap();
    let c = create_session(&mut h.client, 0, "c.mha", b"ObjectType = Image\n")
        .await
        .unwrap();
    assert_eq!(a.image.as_ref().unwrap().format, "nifti-gz");
    assert_eq!(a.image.as_ref().unwrap().sha256, sha256_hex(&data));
    assert_eq!(b.image.as_ref().unwrap().format, "unknown");
    assert_eq!(c.image.as_ref().unwrap().format, "mha");
    let c_expires = humantime::parse_rfc3339(&c.expires_at).unwrap();
    let left = c_expires.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(25) && left <= Duration::from_secs(30),
        "{left:?}"
    );

    let stream = h
        .client
        .get_session_image(SessionRef { id: a.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let (item, bytes) = collect(stream).await.unwrap();
    assert_eq!(item, a.image.clone().unwrap());
    assert!(bytes == data);

    let refreshed = h
        .client
        .refresh_session(RefreshSessionRequest {
            id: b.id.clone(),
            expiry_seconds: 5,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(refreshed.expires_at > b.expires_at);

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let err = get_session(&mut h.client, &a.id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        h.client
            .get_session_image(SessionRef { id: a.id.clone() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert!(
        get_session(&mut h.client, &b.id).await.is_ok(),
        "refresh extends the session"
    );
    let a_dir = format!("sessions/{}/", a.id);
    eventually(
        Duration::from_secs(5),
        "the reaper removes the expired session's data",
        || !files_under(&root).iter().any(|f| f.starts_with(&a_dir)),
    )
    .await;
    assert!(
        files_under(&root)
            .iter()
            .any(|f| f.starts_with(&format!("sessions/{}/", b.id)))
    );

    // Limits and unknown ids.
    let err = create_session(&mut h.client, 61, "x.nii", b"x")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("maximum of 60 seconds"),
        "{}",
        err.message()
    );
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(
        get_session(&mut h.client, &unknown).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        get_session(&mut h.client, "../x").await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let refresh = RefreshSessionRequest {
        id: unknown.clone(),
        expiry_seconds: 0,
    };
    assert_eq!(
        h.client.refresh_session(refresh).await.unwrap_err().code(),
        Code::NotFound
    );

    assert!(
        h.client
            .delete_session(SessionRef { id: b.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .deleted
    );
    assert_eq!(
        get_session(&mut h.client, &b.id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(
        !h.client
            .delete_session(SessionRef { id: b.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .deleted
    );

    // A restarted datastore still knows its sessions.
    h.stop().await;
    let (mut client, shutdown, server) = serve(&h.url, &args(), None).await;
    let again = get_session(&mut client, &c.id).await.unwrap();
    assert_eq!(again, c);
    shutdown.cancel();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn an_expired_session_is_not_found_before_the_reaper_runs() {
    let mut h = file_server(aiaa_datastore::DatastoreArgs {
        session_reap_interval: Duration::from_secs(3600),
        ..args()
    })
    .await;
    let root = h.root.clone().unwrap();
    let s = create_session(&mut h.client, 1, "x.nii", b"bytes").await.unwrap();
    assert!(get_session(&mut h.client, &s.id).await.is_ok());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let err = get_session(&mut h.client, &s.id).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains(&s.id), "{}", err.message());
    let refresh = RefreshSessionRequest {
        id: s.id.clone(),
        expiry_seconds: 0,
    };
    assert_eq!(
        h.client.refresh_session(refresh).await.unwrap_err().code(),
        Code::NotFound
    );
    // Its data is still there: the reaper has not run.
    assert!(
        files_under(&root)
            .iter()
            .any(|f| f.starts_with(&format!("sessions/{}/", s.id)))
    );
    h.stop().await;
}

async fn finished(client: &mut Client, id: &str) -> aiaa_proto::common::v1::Job {
    let mut updates = client
        .watch_job(JobRef { id: id.into() })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(job) = updates.next().await {
        last = Some(job.unwrap());
    }
    let job = last.expect("at least one update");
    assert!(job.state >= JobState::Succeeded as i32, "{job:?}");
    job
}

#[tokio::test]
async fn convert_jobs_run_the_imaging_conversion() {
    let mut h = file_server(args()).await;
    put(&mut h.client, ItemKind::Image, "conv/src/mni.nii.gz", &mni152())
        .await
        .unwrap();
    let req = ConvertRequest {
        kind: ItemKind::Image as i32,
        source_prefix: "conv/src/".into(),
        output_prefix: "conv/out".into(),
        output_extension: ".mha".into(),
        resolution: 0.0,
        overwrite: false,
    };
    let job = h.client.submit_convert(req.clone()).await.unwrap().into_inner();
    assert_eq!(job.kind, "convert");
    let done = finished(&mut h.client, &job.id).await;
    assert_eq!(done.state, JobState::Succeeded as i32, "{done:?}");
    let result: serde_json::Value = serde_json::from_str(&done.result_json).unwrap();
    assert_eq!(result["outputs"][0]["output"], "conv/out/mni.mha");
    assert_eq!(result["outputs"][0]["source"], "conv/src/mni.nii.gz");
    let (item, bytes) = get(&mut h.client, ItemKind::Image, "conv/out/mni.mha")
        .await
        .unwrap();
    assert_eq!(item.format, "mha");
    assert_eq!(
        item.metadata.get("converted_from").map(String::as_str),
        Some("conv/src/mni.nii.gz")
    );
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).to_string();
    assert!(header.contains("DimSize = 182 218 182"), "{header}");

    // Without overwrite an existing output fails the job; with it, a resampled one replaces it.
    let again = h.client.submit_convert(req.clone()).await.unwrap().into_inner();
    let failed = finished(&mut h.client, &again.id).await;
    assert_eq!(failed.state, JobState::Failed as i32);
    assert!(
        failed.error.contains("conv/out/mni.mha") && failed.error.contains("overwrite"),
        "{}",
        failed.error
    );
    let resampled = ConvertRequest {
        resolution: 2.0,
        overwrite: true,
        ..req.clone()
    };
    let third = h.client.submit_convert(resampled).await.unwrap().into_inner();
    assert_eq!(
        finished(&mut h.client, &third.id).await.state,
        JobState::Succeeded as i32
    );
    let (_, bytes) = get(&mut h.client, ItemKind::Image, "conv/out/mni.mha")
        .await
        .unwrap();
    let header = String::from_utf8_lossy(&bytes[..1024]).to_string();
    assert!(header.contains("ElementSpacing = 2 2 2"), "{header}");

    let jobs = h
        .client
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(jobs.len(), 3);
    assert_eq!(
        h.client
            .get_job(JobRef { id: job.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .state,
        JobState::Succeeded as i32
    );
    // An ended job is left as it is.
    assert_eq!(
        h.client
            .cancel_job(JobRef { id: job.id.clone() })
            .await
            .unwrap()
            .into_inner()
            .state,
        JobState::Succeeded as i32
    );

    // Invalid requests are refused before a job exists.
    let bad = [
        (
            ConvertRequest {
                output_extension: ".png".into(),
                ..req.clone()
            },
            Code::InvalidArgument,
            "output_extension",
        ),
        (
            ConvertRequest {
                source_prefix: "nothing/".into(),
                ..req.clone()
            },
            Code::NotFound,
            "nothing/",
        ),
        (
            ConvertRequest {
                source_prefix: "../x".into(),
                ..req.clone()
            },
            Code::InvalidArgument,
            "source_prefix",
        ),
        (
            ConvertRequest {
                output_prefix: String::new(),
                ..req.clone()
            },
            Code::InvalidArgument,
            "output_prefix",
        ),
        (
            ConvertRequest {
                resolution: -1.0,
                ..req.clone()
            },
            Code::InvalidArgument,
            "resolution",
        ),
        (
            ConvertRequest {
                kind: 0,
                ..req.clone()
            },
            Code::InvalidArgument,
            "kind",
        ),
    ];
    for (request, code, needle) in bad {
        let err = h.client.submit_convert(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{needle}: {}", err.message());
        assert!(err.message().contains(needle), "{needle}: {}", err.message());
    }
    assert_eq!(
        h.client
            .get_job(JobRef { id: "nope".into() })
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    h.stop().await;
}

#[tokio::test]
async fn every_call_needs_the_api_key_when_one_is_set() {
    let url = format!("memory://auth-{}", uuid::Uuid::new_v4());
    let (mut with_key, shutdown, server) = serve(&url, &args(), Some("s3cret")).await;
    put(&mut with_key, ItemKind::Image, "a.nii", b"x").await.unwrap();
    let channel = aiaa_runtime::client::connect(&server.addr.to_string(), None)
        .await
        .unwrap();
    let mut without = Client::new(channel);
    let err = put(&mut without, ItemKind::Image, "b.nii", b"x")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Reads too: an image is a patient's.
    let err = stat(&mut without, ItemKind::Image, "a.nii").await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(stat(&mut with_key, ItemKind::Image, "a.nii").await.is_ok());
    shutdown.cancel();
    server.wait().await.unwrap();
}

#[tokio::test]
async fn a_stream_that_differs_from_its_declared_size_or_hash_stores_nothing() {
    let mut h = file_server(args()).await;
    let data = vec![3u8; 3 << 20];
    let declared = |size: u64, sha256: String| {
        let mut msgs = put_messages(ItemKind::Image, "declared.nii", &data);
        if let Some(put_request::Kind::Header(header)) = msgs[0].kind.as_mut() {
            header.size = size;
            header.sha256 = sha256;
        }
        msgs
    };
    // A client that stops early (its sender dropped after two chunks) but declared the size.
    let truncated: Vec<PutRequest> = declared(data.len() as u64, String::new())
        .into_iter()
        .take(3)
        .collect();
    let err = h.client.put(futures::stream::iter(truncated)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("declares 3145728"), "{err:?}");
    let err = h
        .client
        .put(futures::stream::iter(declared(0, "ab".repeat(32))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("sha256"), "{err:?}");
    assert_eq!(
        stat(&mut h.client, ItemKind::Image, "declared.nii")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // Declared correctly, it is stored.
    let ok = h
        .client
        .put(futures::stream::iter(declared(
            data.len() as u64,
            sha256_hex(&data),
        )))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.size, data.len() as u64);
    h.stop().await;
}
