//! The gateway's translation to the inference contract, against a scripted in-test
//! InferenceService (the real engines live in `services/inference`): model objects as the
//! clients read them, the Infer stream relayed as a multipart answer, sessions checked
//! first (440), unknown or mismatched models 404, a full queue 503 with Retry-After.

mod common;

use std::pin::Pin;

use aiaa_proto::inference::v1::inference_service_server::{InferenceService, InferenceServiceServer};
use aiaa_proto::inference::v1::{
    InferRequest, InferResponse, InferResult, ListModelsRequest, ListModelsResponse, LoadModelRequest,
    ModelInfo, UnloadModelRequest, UnloadModelResponse, infer_header, infer_request, infer_response,
};
use common::*;
use futures::{Stream, StreamExt};
use serde_json::json;
use tonic::{Request, Response, Status, Streaming};

struct Scripted;

fn models() -> Vec<ModelInfo> {
    vec![
        ModelInfo {
            name: "annotation_mri_brain".into(),
            model_type: "annotation".into(),
            labels: vec!["brain".into()],
            version: "3".into(),
            roi: vec![128, 128, 128],
            padding: 20.0,
            engine: "Dextr3dCroppedEngine".into(),
            ..Default::default()
        },
        ModelInfo {
            name: "segmentation_mri_brain".into(),
            model_type: "segmentation".into(),
            labels: vec!["brain".into()],
            description: "deepbet".into(),
            version: "1".into(),
            ..Default::default()
        },
    ]
}

#[tonic::async_trait]
impl InferenceService for Scripted {
    async fn list_models(
        &self,
        req: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let r = req.into_inner();
        let models = models()
            .into_iter()
            .filter(|m| r.model_type.is_empty() || m.model_type == r.model_type)
            .filter(|m| r.label.is_empty() || m.labels.contains(&r.label))
            .collect();
        Ok(Response::new(ListModelsResponse { models }))
    }

    type InferStream = Pin<Box<dyn Stream<Item = Result<InferResponse, Status>> + Send>>;

    async fn infer(
        &self,
        req: Request<Streaming<InferRequest>>,
    ) -> Result<Response<Self::InferStream>, Status> {
        let mut stream = req.into_inner();
        let Some(Ok(InferRequest {
            kind: Some(infer_request::Kind::Header(header)),
        })) = stream.next().await
        else {
            return Err(Status::invalid_argument("header first"));
        };
        if header.params_json.contains("\"busy\"") {
            return Err(Status::resource_exhausted("queue full (4)"));
        }
        let mut received = 0usize;
        while let Some(Ok(m)) = stream.next().await {
            if let Some(infer_request::Kind::Chunk(c)) = m.kind {
                received += c.len();
            }
        }
        let source = match header.image {
            Some(infer_header::Image::SessionId(id)) => format!("session:{id}"),
            Some(infer_header::Image::Filename(f)) => format!("inline:{f}"),
            _ => "none".into(),
        };
        // A result "file" of recognisable bytes, including CRLF and dashes.
        let file = bytes::Bytes::from(format!("MASK\r\n--{received}--\r\n"));
        let result = InferResult {
            params_json: json!({"points": [[1, 2, 3]], "source": source, "model": header.model}).to_string(),
            filename: "result.nii.gz".into(),
            size: file.len() as u64,
        };
        let out = vec![
            Ok(InferResponse {
                kind: Some(infer_response::Kind::Result(result)),
            }),
            Ok(InferResponse {
                kind: Some(infer_response::Kind::Chunk(file)),
            }),
        ];
        Ok(Response::new(Box::pin(futures::stream::iter(out))))
    }

    async fn load_model(&self, _: Request<LoadModelRequest>) -> Result<Response<ModelInfo>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn unload_model(
        &self,
        _: Request<UnloadModelRequest>,
    ) -> Result<Response<UnloadModelResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }
}

async fn scripted_inference() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(InferenceServiceServer::new(Scripted))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

#[tokio::test]
async fn models_and_inference_through_the_contract() {
    let inference = scripted_inference().await;
    let s = stack_with(|a| a.inference_url = Some(format!("http://{inference}"))).await;

    let all = send(s.gateway, &simple("GET", "/v1/models/")).await.json();
    assert_eq!(all.as_array().unwrap().len(), 2);
    let annotation = &all[0];
    assert_eq!(annotation["version"], json!("3"));
    assert_eq!(annotation["description"], json!(""));
    assert_eq!(annotation["roi"], json!([128, 128, 128]));
    assert_eq!(annotation["padding"], json!(20.0));
    assert_eq!(annotation["type"], json!("annotation"));
    assert!(all[1].get("roi").is_none());
    let seg = send(s.gateway, &simple("GET", "/v1/models?type=segmentation"))
        .await
        .json();
    assert_eq!(seg.as_array().unwrap().len(), 1);
    let one = send(
        s.gateway,
        &simple("GET", "/v1/models?model=segmentation_mri_brain"),
    )
    .await
    .json();
    assert_eq!(one["name"], json!("segmentation_mri_brain"));
    send(s.gateway, &simple("GET", "/v1/models?model=nope"))
        .await
        .error(404);

    // dextr3d inline, Python shape: the mask relayed byte for byte in a multipart answer.
    let points = "[[1,2,3],[4,5,6],[7,8,9],[1,2,3],[4,5,6],[7,8,9]]";
    let image = vec![7u8; 3 * 1024 * 1024 + 5];
    let body = python_body(
        &[("params", &json!({"points": points}).to_string())],
        &[("datapoint", "/tmp/crop.nii.gz", &image)],
    );
    let answer = send(
        s.gateway,
        &python_request("POST", "/v1/dextr3d?model=annotation_mri_brain", &body),
    )
    .await;
    let m = parse_multipart_answer(&answer);
    assert_eq!(m.params["source"], json!("inline:crop.nii.gz"));
    assert_eq!(m.params["points"], json!([[1, 2, 3]]));
    assert_eq!(m.filename.as_deref(), Some("result.nii.gz"));
    assert_eq!(
        m.file.unwrap(),
        format!("MASK\r\n--{}--\r\n", image.len()).into_bytes()
    );

    // A session: checked first (unknown → 440), then named in the Infer header.
    let seg_body = python_body(&[("params", "{}")], &[]);
    send(
        s.gateway,
        &python_request(
            "POST",
            "/v1/segmentation?model=segmentation_mri_brain&session_id=nope",
            &seg_body,
        ),
    )
    .await
    .error(440);
    let nii = std::fs::read(testdata("mni152/MNI152_T1.nii.gz")).unwrap();
    let created = send(
        s.gateway,
        &python_request(
            "PUT",
            "/session/",
            &python_body(&[], &[("image", "MNI152_T1.nii.gz", &nii)]),
        ),
    )
    .await
    .json();
    let id = created["session_id"].as_str().unwrap();
    let answer = send(
        s.gateway,
        &python_request(
            "POST",
            &format!("/v1/segmentation?model=segmentation_mri_brain&session_id={id}"),
            &seg_body,
        ),
    )
    .await;
    let m = parse_multipart_answer(&answer);
    assert_eq!(m.params["source"], json!(format!("session:{id}")));
    let json_only = send(
        s.gateway,
        &python_request(
            "POST",
            &format!("/v1/segmentation?model=segmentation_mri_brain&session_id={id}&output=json"),
            &seg_body,
        ),
    )
    .await
    .json();
    assert_eq!(json_only["points"], json!([[1, 2, 3]]));

    // The wrong kind of model, an unknown model, a full queue.
    let msg = send(
        s.gateway,
        &python_request("POST", "/v1/dextr3d?model=segmentation_mri_brain", &body),
    )
    .await
    .error(404);
    assert!(msg.contains("annotation"), "{msg}");
    send(
        s.gateway,
        &python_request("POST", "/v1/inference?model=nope", &body),
    )
    .await
    .error(404);
    let busy = python_body(&[("params", "{\"busy\": 1}")], &[("image", "x.nii.gz", b"img")]);
    let answer = send(
        s.gateway,
        &python_request("POST", "/v1/inference?model=annotation_mri_brain", &busy),
    )
    .await;
    answer.error(503);
    assert_eq!(answer.header("retry-after"), Some("1"));
}
