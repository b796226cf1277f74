//! The registry end to end: the real `aiaa` binary, a real model file (deepbet's TorchScript
//! `model.pt`), the CLI as users run it, and gRPC calls for the edge cases. Runs against a
//! local folder store and against a local S3-compatible server.

use aiaa_e2e::{Platform, S3Server, run_cli, sha256_file, testdata};
use aiaa_proto::common::v1::Chunk;
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_proto::registry::v1::{
    DeleteRequest, GetManifestRequest, ListModelsRequest, ListVersionsRequest, Manifest, ModelFile,
    ModelName, PushHeader, PushRequest, push_request,
};
use aiaa_runtime::client::{AiaaChannel, connect};
use aiaa_runtime::config::Secret;
use tonic::Code;

fn model(name: &str) -> ModelName {
    ModelName {
        org: "aiaa".into(),
        team: "default".into(),
        name: name.into(),
    }
}

async fn client(url: &str, key: Option<&str>) -> RegistryServiceClient<AiaaChannel> {
    RegistryServiceClient::new(connect(url, key.map(Secret::new)).await.expect("connect"))
        .max_encoding_message_size(64 << 20)
}

fn push_stream(manifest: Manifest, data: Vec<u8>, chunk: usize) -> impl futures::Stream<Item = PushRequest> {
    let mut msgs = vec![PushRequest {
        kind: Some(push_request::Kind::Header(PushHeader {
            manifest: Some(manifest),
        })),
    }];
    for piece in data.chunks(chunk) {
        msgs.push(PushRequest {
            kind: Some(push_request::Kind::Chunk(Chunk {
                data: piece.to_vec().into(),
            })),
        });
    }
    futures::stream::iter(msgs)
}

fn manifest_for(name: &str, version: &str, path: &str, data: &[u8]) -> Manifest {
    use sha2::Digest;
    Manifest {
        model: Some(model(name)),
        version: version.into(),
        model_type: "segmentation".into(),
        labels: vec!["brain".into()],
        files: vec![ModelFile {
            path: path.into(),
            size: data.len() as u64,
            sha256: hex::encode(sha2::Sha256::digest(data)),
        }],
        ..Default::default()
    }
}

/// Push with the CLI, list, filter, list versions, download byte-identical; then pull from an
/// upstream catalogue with progress; a corrupted upstream file fails the pull naming the file
/// and leaves no version.
async fn catalogue_round_trip(
    store_url: &str,
    upstream_url: &str,
    upstream_catalogue: aiaa_runtime::store::Store,
    env: &[(&str, &str)],
) {
    let model_pt = testdata().join("deepbet/model.pt");
    let work = tempfile::tempdir().unwrap();
    let up_args = ["up", "--store-url", store_url];
    let platform = Platform::start(&up_args, env).await;
    let reg = platform.url("registry");
    // An upstream catalogue: a second registry on its own store.
    let upstream = Platform::start(&["serve", "registry", "--store-url", upstream_url], env).await;
    let up_reg = upstream.url("registry");
    // `aiaa serve registry` keeps its catalogue under <store>/registry.
    let catalogue_url = format!("{upstream_url}/registry");

    let (st, out, err) = run_cli(
        &[
            "push",
            "--registry",
            &reg,
            "-m",
            "segmentation_mri_brain",
            "-v",
            "1",
            "--type",
            "segmentation",
            "--labels",
            "brain",
            "--description",
            "deepbet brain extraction",
            model_pt.to_str().unwrap(),
        ],
        env,
    );
    assert!(st.success(), "push failed: {out}\n{err}");
    assert!(out.contains("Pushed version 1"), "{out}");

    let (st, out, _) = run_cli(&["pull", "--registry", &reg, "-lm"], env);
    assert!(st.success());
    assert!(
        out.contains("segmentation_mri_brain") && out.contains("brain"),
        "{out}"
    );
    let (_, out, _) = run_cli(&["pull", "--registry", &reg, "-lm", "--label", "liver"], env);
    assert!(
        !out.contains("segmentation_mri_brain"),
        "label filter ignored: {out}"
    );
    let (_, out, _) = run_cli(
        &["pull", "--registry", &reg, "-lm", "--type", "segmentation"],
        env,
    );
    assert!(out.contains("segmentation_mri_brain"), "{out}");
    let (st, out, _) = run_cli(
        &["pull", "--registry", &reg, "-lv", "-m", "segmentation_mri_brain"],
        env,
    );
    assert!(st.success() && out.lines().any(|l| l.starts_with("1 ")), "{out}");

    let dest = work.path().join("models/segmentation_mri_brain");
    let (st, out, err) = run_cli(
        &[
            "pull",
            "--registry",
            &reg,
            "-m",
            "segmentation_mri_brain",
            "-v",
            "1",
            "-d",
            dest.to_str().unwrap(),
        ],
        env,
    );
    assert!(st.success(), "{out}\n{err}");
    assert!(
        out.contains("Finished downloading version 1 of segmentation_mri_brain"),
        "{out}"
    );
    assert_eq!(
        sha256_file(&dest.join("model.pt")),
        sha256_file(&model_pt),
        "download is not byte-identical"
    );

    // Upstream: push two versions there, pull one into the local registry with progress.
    let bbox = testdata().join("deepbet/bbox_model.pt");
    for (version, file) in [("2", &model_pt), ("3", &bbox)] {
        let (st, out, err) = run_cli(
            &[
                "push",
                "--registry",
                &up_reg,
                "-m",
                "segmentation_mri_brain",
                "-v",
                version,
                file.to_str().unwrap(),
            ],
            env,
        );
        assert!(st.success(), "{out}\n{err}");
    }
    let (st, out, err) = run_cli(
        &[
            "pull",
            "--registry",
            &reg,
            "--upstream",
            &catalogue_url,
            "-m",
            "segmentation_mri_brain",
            "-v",
            "2",
            "-d",
            work.path().join("v2").to_str().unwrap(),
        ],
        env,
    );
    assert!(st.success(), "{out}\n{err}");
    assert!(out.contains("Pulled version 2"), "{out}");
    assert_eq!(
        sha256_file(&work.path().join("v2/model.pt")),
        sha256_file(&model_pt)
    );

    // Progress arrives as a stream that ends with the manifest.
    let mut c = client(&reg, None).await;
    let mut c_up = client(&up_reg, None).await;
    let m3 = c_up
        .get_manifest(GetManifestRequest {
            model: Some(model("segmentation_mri_brain")),
            version: "3".into(),
        })
        .await
        .unwrap()
        .into_inner();
    corrupt_blob(&upstream_catalogue, &m3.files[0].sha256).await;
    let result = run_cli(
        &[
            "pull",
            "--registry",
            &reg,
            "--upstream",
            &catalogue_url,
            "-m",
            "segmentation_mri_brain",
            "-v",
            "3",
        ],
        env,
    );
    assert!(
        !result.0.success(),
        "a corrupted upstream file must fail the pull"
    );
    assert!(
        result.2.contains("checksum mismatch") && result.2.contains("bbox_model.pt"),
        "{}",
        result.2
    );
    let missing = c
        .get_manifest(GetManifestRequest {
            model: Some(model("segmentation_mri_brain")),
            version: "3".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        Code::NotFound,
        "a failed pull left a version behind"
    );
    let versions = c
        .list_versions(ListVersionsRequest {
            model: Some(model("segmentation_mri_brain")),
        })
        .await
        .unwrap()
        .into_inner()
        .versions;
    assert_eq!(
        versions.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(),
        ["1", "2"]
    );

    // Two concurrent pushes of one new version: exactly one wins.
    let data = std::fs::read(&model_pt).unwrap();
    let m = manifest_for("race", "1", "model.pt", &data);
    let (mut c1, mut c2) = (c.clone(), c_up.clone());
    let (a, b) = tokio::join!(
        c1.push(push_stream(m.clone(), data.clone(), 1 << 20)),
        c2.push(push_stream(m.clone(), data.clone(), 1 << 20)),
    );
    assert!(a.is_ok() && b.is_ok(), "separate registries both accept");
    let (mut c1, mut c2) = (c.clone(), c.clone());
    let (a, b) = tokio::join!(
        c1.push(push_stream(
            manifest_for("race2", "1", "model.pt", &data),
            data.clone(),
            1 << 20
        )),
        c2.push(push_stream(
            manifest_for("race2", "1", "model.pt", &data),
            data.clone(),
            1 << 20
        )),
    );
    let oks = [a.is_ok(), b.is_ok()].iter().filter(|x| **x).count();
    assert_eq!(oks, 1, "exactly one concurrent push must win: {a:?} / {b:?}");
    let loser = a.err().or(b.err()).unwrap();
    assert_eq!(loser.code(), Code::AlreadyExists, "{loser:?}");
    let listed = c
        .list_models(ListModelsRequest {
            name: "race2".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed.into_inner().models[0].version_count, 1);

    // Delete one version: it disappears; a version sharing its file still downloads.
    let deleted = c
        .delete(DeleteRequest {
            model: Some(model("segmentation_mri_brain")),
            version: "1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deleted.versions, ["1"]);
    let e = c
        .get_manifest(GetManifestRequest {
            model: Some(model("segmentation_mri_brain")),
            version: "1".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let again = work.path().join("after-delete");
    let (st, out, err) = run_cli(
        &[
            "pull",
            "--registry",
            &reg,
            "-m",
            "segmentation_mri_brain",
            "-v",
            "2",
            "-d",
            again.to_str().unwrap(),
        ],
        env,
    );
    assert!(st.success(), "{out}\n{err}");
    assert_eq!(sha256_file(&again.join("model.pt")), sha256_file(&model_pt));
    drop(upstream);
    drop(platform);
}

/// Overwrites a blob of a catalogue with different bytes of the same size.
async fn corrupt_blob(catalogue: &aiaa_runtime::store::Store, sha: &str) {
    use object_store::ObjectStoreExt;
    let path = object_store::path::Path::from(format!("blobs/sha256/{sha}"));
    let mut bytes = catalogue
        .get(&path)
        .await
        .expect("upstream blob")
        .bytes()
        .await
        .unwrap()
        .to_vec();
    bytes[1000] ^= 0xff;
    catalogue.put(&path, bytes.into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let upstream = dir.path().join("upstream");
    let upstream_catalogue = aiaa_runtime::store::open(upstream.join("registry").to_str().unwrap()).unwrap();
    let upstream_url = format!("file://{}", upstream.display());
    catalogue_round_trip(local.to_str().unwrap(), &upstream_url, upstream_catalogue, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_on_s3() {
    let s3 = S3Server::start("aiaa").await;
    let env = s3.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let upstream_catalogue: aiaa_runtime::store::Store =
        std::sync::Arc::new(object_store::prefix::PrefixStore::new(
            object_store::aws::AmazonS3Builder::new()
                .with_endpoint(&s3.endpoint)
                .with_bucket_name("aiaa")
                .with_region("us-east-1")
                .with_access_key_id("test")
                .with_secret_access_key("test")
                .with_allow_http(true)
                .build()
                .unwrap(),
            "upstream/registry",
        ));
    catalogue_round_trip("s3://aiaa/local", "s3://aiaa/upstream", upstream_catalogue, &env).await;
}
