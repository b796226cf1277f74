//! The datastore end to end through `aiaa up`: a real MNI152 volume in and out (byte-identical,
//! format detected), a datalist in the seed's format, a session that expires on time, and a
//! conversion job, against a local folder store and against a local S3-compatible server.

use std::time::Duration;

use aiaa_e2e::{Platform, S3Server, testdata};
use aiaa_proto::common::v1::{JobRef, JobState};
use aiaa_proto::datastore::v1::datastore_service_client::DatastoreServiceClient;
use aiaa_proto::datastore::v1::{
    ConvertRequest, CreateSessionRequest, DatalistRef, GetRequest, GetResponse, ItemKind, PutDatalistRequest,
    PutHeader, PutRequest, SessionHeader, SessionRef,
};
use aiaa_proto::framed;
use aiaa_runtime::client::{AiaaChannel, connect};
use futures::StreamExt;
use sha2::Digest;
use tonic::Code;

type Client = DatastoreServiceClient<AiaaChannel>;

async fn get_bytes(client: &mut Client, kind: ItemKind, id: &str) -> (String, Vec<u8>) {
    let stream = client
        .get(GetRequest {
            kind: kind as i32,
            id: id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (item, body) = framed::receive::<GetResponse, _>(stream).await.unwrap();
    let pieces: Vec<_> = body.map(Result::unwrap).collect().await;
    let (format, out) = (item.format, pieces.concat());
    (format, out)
}

async fn round_trip(store_url: &str, env: &[(&str, &str)]) {
    let mut env = env.to_vec();
    env.push(("AIAA_DATASTORE_SESSION_REAP_INTERVAL", "1s"));
    let platform = Platform::start(&["up", "--store-url", store_url], &env).await;
    let mut client: Client =
        DatastoreServiceClient::new(connect(&platform.url("datastore"), None).await.unwrap());
    let mni = std::fs::read(testdata().join("mni152/MNI152_T1.nii.gz")).unwrap();
    let sha = hex::encode(sha2::Sha256::digest(&mni));

    // An image in and out, byte-identical, with its declared size and hash checked.
    let header = PutHeader {
        kind: ItemKind::Image as i32,
        id: "brain/mni152.nii.gz".into(),
        size: mni.len() as u64,
        sha256: sha.clone(),
        ..Default::default()
    };
    let msgs: Vec<_> = framed::messages::<PutRequest>(header, mni.clone().into()).collect();
    let item = client
        .put(futures::stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (item.sha256.as_str(), item.size, item.format.as_str()),
        (sha.as_str(), mni.len() as u64, "nifti-gz")
    );
    let (format, back) = get_bytes(&mut client, ItemKind::Image, "brain/mni152.nii.gz").await;
    assert_eq!(format, "nifti-gz");
    assert!(back == mni, "image changed in the round trip");

    // A datalist in the seed's format round-trips.
    let seed = r#"{"training": [{"image": "brain/mni152.nii.gz", "label": "brain/mni152_mask.nii.gz"}], "validation": [{"image": "brain/robex.nii.gz"}]}"#;
    client
        .put_datalist(PutDatalistRequest {
            name: "brain".into(),
            datalist: None,
            json: seed.into(),
        })
        .await
        .unwrap();
    let list = client
        .get_datalist(DatalistRef { name: "brain".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.training[0].label, "brain/mni152_mask.nii.gz");
    assert_eq!(list.validation[0].image, "brain/robex.nii.gz");
    let a: serde_json::Value = serde_json::from_str(&list.json).unwrap();
    let b: serde_json::Value = serde_json::from_str(seed).unwrap();
    assert_eq!(a, b, "the seed-format text must round-trip");

    // A session expires on time.
    let header = SessionHeader {
        expiry_seconds: 5,
        filename: "mni152.nii.gz".into(),
        ..Default::default()
    };
    let msgs: Vec<_> = framed::messages::<CreateSessionRequest>(header, mni.clone().into()).collect();
    let session = client
        .create_session(futures::stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert!(
        client
            .get_session(SessionRef {
                id: session.id.clone()
            })
            .await
            .is_ok()
    );
    tokio::time::sleep(Duration::from_millis(5600)).await;
    let gone = client
        .get_session(SessionRef {
            id: session.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");

    // A conversion job on the store: NIfTI to MHA at 2 mm.
    let job = client
        .submit_convert(ConvertRequest {
            kind: ItemKind::Image as i32,
            source_prefix: "brain/".into(),
            output_prefix: "converted".into(),
            output_extension: ".mha".into(),
            resolution: 2.0,
            overwrite: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut watch = client
        .watch_job(JobRef { id: job.id.clone() })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    while let Some(j) = watch.next().await {
        last = Some(j.unwrap());
    }
    let last = last.expect("watch yields the job");
    assert_eq!(last.state, JobState::Succeeded as i32, "{last:?}");
    let (format, mha) = get_bytes(&mut client, ItemKind::Image, "converted/mni152.mha").await;
    assert_eq!(format, "mha");
    let header = String::from_utf8_lossy(&mha[..600]).to_string();
    assert!(
        header.contains("DimSize = 91 109 91") && header.contains("ElementSpacing = 2 2 2"),
        "{header}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datastore_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(dir.path().to_str().unwrap(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datastore_on_s3() {
    let s3 = S3Server::start("aiaa-ds").await;
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    round_trip("s3://aiaa-ds/platform", &env).await;
}
