//! The thin tonic adapter: `InferenceService` over the engine pool ([`Models`]), the image
//! sources ([`Images`]) and the admission queue.
//!
//! Admission: at most `queue_depth` Infer calls are admitted at once (decoding, waiting for
//! the device, running, encoding); one more is refused at once with RESOURCE_EXHAUSTED,
//! which the gateway answers as 503 with `Retry-After`, so an overloaded server sheds load
//! instead of letting requests time out. The gauge `aiaa_inference_queue_depth` reports the
//! admitted calls. Of the admitted calls, two per core do CPU work at a time (pre- and
//! post-processing, encoding); the device threads run the forward passes.
//!
//! Memory: each admitted call also reserves what it will hold from the service's memory
//! budget ([`crate::budget`]), priced from the image's header before anything is decoded:
//! more than one request may hold is refused with OUT_OF_RANGE (the gateway's 400) naming
//! the limit and the cost; more than the budget has left, with RESOURCE_EXHAUSTED (503 and
//! `Retry-After`), like a full queue.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use aiaa_imaging::ReadOptions;
use aiaa_imaging::io::MaskFormat;
use aiaa_proto::framed::{self, FrameError};
use aiaa_proto::inference::v1::inference_service_server::InferenceService;
use aiaa_proto::inference::v1::{
    InferHeader, InferRequest, InferResponse, InferResult, ListModelsRequest, ListModelsResponse,
    LoadModelRequest, ModelInfo, UnloadModelRequest, UnloadModelResponse, UploadModelRequest, infer_header,
    load_model_request,
};
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_runtime::client::AiaaChannel;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status, Streaming};

use crate::budget::{Budget, Limits, Reservation};
use crate::error::{InferenceError, Result};
use crate::images::{Images, Source};
use crate::models::Models;
use aiaa_engines::{Context, Timings};
use aiaa_imaging::Volume;

/// The gRPC service.
#[derive(Clone)]
pub struct InferenceApi {
    models: Models,
    images: Images,
    registry: RegistryServiceClient<AiaaChannel>,
    admission: Arc<Semaphore>,
    depth: usize,
    workers: Arc<Semaphore>,
    budget: Budget,
}

impl InferenceApi {
    /// The service over its parts: at most `depth` requests admitted, holding at most
    /// `limits.budget` bytes together and `limits.per_request` each.
    pub fn new(
        models: Models,
        images: Images,
        registry: RegistryServiceClient<AiaaChannel>,
        depth: usize,
        limits: Limits,
    ) -> Self {
        InferenceApi {
            models,
            images,
            registry,
            admission: Arc::new(Semaphore::new(depth)),
            depth,
            workers: Arc::new(Semaphore::new(
                2 * std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            budget: Budget::new(limits.budget, limits.per_request, limits.wait),
        }
    }

    /// The memory budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The engine pool.
    pub fn models(&self) -> &Models {
        &self.models
    }

    async fn infer_inner(&self, input: Streaming<InferRequest>) -> Result<(InferResult, Bytes)> {
        let (header, mut body) = framed::receive::<InferRequest, _>(input)
            .await
            .map_err(|e| stream_error("the Infer call", &e))?;
        let engine = self.models.get(&header.model)?;
        let kind = &engine.info().model_type;
        if !header.model_type.is_empty() && *kind != header.model_type {
            return Err(InferenceError::NotFound(format!(
                "model {:?} is a {kind} model; this endpoint needs a loaded {} model (see GET /v1/models)",
                header.model, header.model_type
            )));
        }
        let Ok(_permit) = self.admission.clone().try_acquire_owned() else {
            metrics::counter!("aiaa_inference_rejected_total", "reason" => "queue").increment(1);
            return Err(InferenceError::Busy { depth: self.depth });
        };
        let gauge = metrics::gauge!("aiaa_inference_queue_depth");
        gauge.set((self.depth - self.admission.available_permits()) as f64);
        let params: Map<String, Value> = match header.params_json.trim() {
            "" => Map::new(),
            text => serde_json::from_str(text)
                .map_err(|e| InferenceError::Invalid(format!("params is not a JSON object: {e}")))?,
        };
        let format = mask_format(&header, &params)?;
        let result_name = format.filename();
        let json_only = header.output == "json";
        let mut timings = Timings::default();
        let t0 = Instant::now();
        // The request's memory: the image's bytes as they arrive, then (priced from its header,
        // before anything is decoded) the decoded volume, the engine's working copies and the
        // result; refused before the work when it does not fit (see crate::budget).
        let mut reservation = self.budget.reserve();
        let label_size = header.label_size;
        let (source, label, session) = match header.image.clone() {
            Some(infer_header::Image::SessionId(id)) => (
                self.images.fetch_session(&id, &mut reservation).await?,
                self.read_label(&mut body, label_size, &mut reservation).await?,
                Some(id),
            ),
            Some(infer_header::Image::ImageId(id)) => (
                self.images.fetch_image(&id, &mut reservation).await?,
                self.read_label(&mut body, label_size, &mut reservation).await?,
                None,
            ),
            Some(infer_header::Image::Filename(name)) => {
                let mut bytes = self.read_inline(&mut body, &mut reservation).await?;
                let label = split_label(&mut bytes, label_size)?;
                let source = Source::Encoded {
                    bytes,
                    name,
                    key: None,
                };
                (source, label, None)
            }
            None => return Err(InferenceError::Invalid("the header names no image".into())),
        };
        let info = source.info()?;
        let decoded = if source.needs_decoding() { info.bytes() } else { 0 };
        let working = engine.working_bytes(&info, &params)?;
        let voxels = info.voxel_count();
        // The mask (one byte a voxel), its encoding and the compressed copy.
        let result = if json_only {
            voxels
        } else {
            voxels.saturating_mul(1 + 2 * format.dtype.size() as u64)
        };
        let [nx, ny, nz] = info.dims;
        reservation.grow_by(decoded.saturating_add(working).saturating_add(result), &|| {
            format!(
                "a {nx}x{ny}x{nz} image{} ({} decoded), the {} engine's working copies ({}) and the result ({})",
                if info.channels > 1 { format!(" of {} channels", info.channels) } else { String::new() },
                crate::budget::mib(info.bytes()),
                engine.info().engine,
                crate::budget::mib(working),
                crate::budget::mib(result)
            )
        })
        .await?;
        let limit = ReadOptions {
            max_bytes: self.budget.per_request(),
        };
        let image = self
            .images
            .decode(source, limit)
            .instrument(tracing::info_span!(
                "stage",
                otel.name = "decode",
                stage = "decode"
            ))
            .await?;
        let previous = match label {
            Some(bytes) => Some(
                self.decode_label(&header.label_filename, bytes, &mut reservation, limit)
                    .await?,
            ),
            None => None,
        };
        timings.add("decode", t0.elapsed());
        // Admitted requests wait here for one of the workers (two per core: one may wait
        // for the device while another computes) to prepare, post-process and encode, so CPU
        // work and its memory scale with the cores, not with the queue. Inline images are
        // decoded before (bounded by the queue); sessions come decoded from the cache.
        let _worker = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| InferenceError::Internal("worker pool closed".into()))?;
        let model = header.model.clone();
        // The request's span follows the work onto the blocking thread (and from there, with
        // each forward pass, onto the device thread).
        let span = tracing::Span::current();
        let (mut result_params, file, timings) = tokio::task::spawn_blocking(move || -> Result<_> {
            let _in_request = span.enter();
            let context = Context {
                session: session.as_deref(),
                previous: previous.as_ref(),
            };
            let outcome = engine.infer_in(image, &params, &context, &mut timings)?;
            let file = if json_only {
                None
            } else {
                Some(timings.time("encode", || format.encode(&outcome.mask))?)
            };
            Ok((outcome.params, file, timings))
        })
        .await
        .map_err(|e| InferenceError::Internal(format!("inference task: {e}")))??;
        result_params.insert("latencies".into(), timings.report(&model));
        gauge.set((self.depth - self.admission.available_permits()).saturating_sub(1) as f64);
        drop(reservation);
        let (filename, bytes) = match file {
            Some(b) => (result_name, Bytes::from(b)),
            None => (String::new(), Bytes::new()),
        };
        Ok((
            InferResult {
                params_json: Value::Object(result_params).to_string(),
                filename,
                size: bytes.len() as u64,
            },
            bytes,
        ))
    }

    /// The previous mask's bytes that follow a stored image (`size` of them; none when 0).
    async fn read_label(
        &self,
        body: &mut (impl Stream<Item = std::result::Result<Bytes, FrameError>> + Unpin),
        size: u64,
        reservation: &mut Reservation,
    ) -> Result<Option<Vec<u8>>> {
        if size == 0 {
            return Ok(None);
        }
        let bytes = self
            .images
            .read_body(
                body,
                0,
                reservation,
                "the label",
                &|| "the label as sent".to_string(),
                |e| stream_error("the label", e),
            )
            .await?;
        // A stored image sends nothing else: the body is the label, all of it.
        if bytes.len() as u64 != size {
            return Err(InferenceError::Invalid(format!(
                "the header announces a label of {size} bytes and {} arrived",
                bytes.len()
            )));
        }
        Ok(Some(bytes))
    }

    /// The previous mask decoded (its decoded size reserved first).
    async fn decode_label(
        &self,
        name: &str,
        bytes: Vec<u8>,
        reservation: &mut Reservation,
        limit: ReadOptions,
    ) -> Result<Volume> {
        let name = if name.is_empty() { "label.nii.gz" } else { name }.to_string();
        fn unreadable(name: &str, e: &dyn std::fmt::Display) -> InferenceError {
            InferenceError::Invalid(format!(
                "the label (previous mask) {name:?} could not be read: {e}"
            ))
        }
        let info = aiaa_imaging::io::probe_bytes(&name, &bytes).map_err(|e| unreadable(&name, &e))?;
        reservation
            .grow_by(info.bytes(), &|| {
                format!(
                    "the label (previous mask), {} decoded",
                    crate::budget::mib(info.bytes())
                )
            })
            .await?;
        tokio::task::spawn_blocking(move || {
            aiaa_imaging::io::decode_bytes(&name, &bytes, &limit).map_err(|e| unreadable(&name, &e))
        })
        .await
        .map_err(|e| InferenceError::Internal(format!("decoding task: {e}")))?
    }

    /// The inline image's bytes, counted into the request's reservation as they arrive.
    async fn read_inline(
        &self,
        body: &mut (impl Stream<Item = std::result::Result<Bytes, FrameError>> + Unpin),
        reservation: &mut Reservation,
    ) -> Result<Vec<u8>> {
        let bytes = self
            .images
            .read_body(
                body,
                0,
                reservation,
                "the image",
                &|| "the inline image as sent".to_string(),
                |e| stream_error("the inline image", e),
            )
            .await?;
        if bytes.is_empty() {
            return Err(InferenceError::Invalid("the inline image is empty".into()));
        }
        Ok(bytes)
    }
}

impl InferenceApi {
    /// Receives an uploaded model file into the model's upload folder (a temporary file,
    /// renamed into place whole) and loads it.
    async fn upload(&self, input: Streaming<UploadModelRequest>) -> Result<ModelInfo> {
        let (header, mut body) = framed::receive::<UploadModelRequest, _>(input)
            .await
            .map_err(|e| stream_error("the UploadModel call", &e))?;
        aiaa_runtime::names::segment("model name", &header.name)
            .map_err(|e| InferenceError::Invalid(e.to_string()))?;
        let limit = self.images.max_bytes();
        if header.size > limit {
            return Err(InferenceError::TooLarge(format!(
                "the model file has {} bytes, more than --inference-max-image-bytes {limit}",
                header.size
            )));
        }
        let dir = self.models.upload_dir(&header.name);
        let io =
            |e: std::io::Error| InferenceError::Internal(format!("upload folder {}: {e}", dir.display()));
        tokio::fs::create_dir_all(&dir).await.map_err(io)?;
        let tmp = tempfile::Builder::new()
            .prefix(".upload-")
            .tempfile_in(&dir)
            .map_err(io)?;
        let mut out = tokio::fs::File::from_std(tmp.reopen().map_err(io)?);
        let mut size = 0u64;
        while let Some(c) = body.next().await {
            let c = c.map_err(|e| stream_error("the model file", &e))?;
            size += c.len() as u64;
            if size > limit {
                return Err(InferenceError::TooLarge(format!(
                    "the model file exceeds --inference-max-image-bytes {limit}"
                )));
            }
            tokio::io::AsyncWriteExt::write_all(&mut out, &c)
                .await
                .map_err(io)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut out).await.map_err(io)?;
        if size == 0 || (header.size > 0 && size != header.size) {
            return Err(InferenceError::Invalid(format!(
                "the model file arrived with {size} bytes; the header says {}",
                header.size
            )));
        }
        // A new name per upload: a model being replaced keeps its own file until it is gone.
        let file = dir.join(format!("{}.pt", uuid::Uuid::new_v4()));
        tmp.persist(&file).map_err(|e| io(e.error))?;
        let models = self.models.clone();
        tokio::task::spawn_blocking(move || {
            models.load_uploaded(
                &header.name,
                &header.config_json,
                &file,
                &header.engine,
                header.labels,
            )
        })
        .await
        .map_err(|e| InferenceError::Internal(format!("loading task: {e}")))?
    }
}

/// The last `size` bytes of `bytes` taken off as the label (none when `size` is 0).
fn split_label(bytes: &mut Vec<u8>, size: u64) -> Result<Option<Vec<u8>>> {
    if size == 0 {
        return Ok(None);
    }
    if size > bytes.len() as u64 {
        return Err(InferenceError::Invalid(format!(
            "the header announces a label of {size} bytes and only {} arrived",
            bytes.len()
        )));
    }
    Ok(Some(bytes.split_off(bytes.len() - size as usize)))
}

/// A request stream that broke off or was framed wrongly (the caller's fault either way: the
/// inference service reads only its callers' streams).
fn stream_error(what: &str, e: &FrameError) -> InferenceError {
    InferenceError::Invalid(format!("{what}: {e}"))
}

/// The result format: the header's `result_extension`, else the params', else the inline
/// image's own format when it is one we write, else `.nii.gz`.
fn mask_format(header: &InferHeader, params: &Map<String, Value>) -> Result<MaskFormat> {
    let text = |k: &str| params.get(k).and_then(Value::as_str);
    let ext = Some(header.result_extension.as_str())
        .filter(|e| !e.is_empty())
        .or(text("result_extension"));
    let compress = params
        .get("result_compress")
        .map(|v| v.as_bool().unwrap_or_else(|| v.as_str() == Some("true")));
    MaskFormat::parse(ext, text("result_dtype"), compress, input_extension(header))
        .map_err(InferenceError::Invalid)
}

fn input_extension(header: &InferHeader) -> &'static str {
    let name = match &header.image {
        Some(infer_header::Image::Filename(n)) => n.to_ascii_lowercase(),
        _ => String::new(),
    };
    [".nii.gz", ".nii", ".mha", ".nrrd"]
        .into_iter()
        .find(|e| name.ends_with(e))
        .unwrap_or(".nii.gz")
}

type InferStream = Pin<Box<dyn Stream<Item = Result<InferResponse, Status>> + Send>>;

#[tonic::async_trait]
impl InferenceService for InferenceApi {
    async fn list_models(
        &self,
        req: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(ListModelsResponse {
            models: self.models.list(&r.model_type, &r.label),
        }))
    }

    type InferStream = InferStream;

    async fn infer(&self, req: Request<Streaming<InferRequest>>) -> Result<Response<InferStream>, Status> {
        let (result, bytes) = self.infer_inner(req.into_inner()).await.inspect_err(|e| {
            metrics::counter!("aiaa_inference_errors_total").increment(1);
            tracing::debug!(error = %e, "infer failed");
        })?;
        let stream = futures::stream::iter(framed::messages::<InferResponse>(result, bytes).map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn load_model(&self, req: Request<LoadModelRequest>) -> Result<Response<ModelInfo>, Status> {
        let r = req.into_inner();
        aiaa_runtime::names::segment("model name", &r.name)
            .map_err(|e| InferenceError::Invalid(e.to_string()))?;
        let info = match r.source {
            Some(load_model_request::Source::ConfigJson(json)) => {
                let models = self.models.clone();
                tokio::task::spawn_blocking(move || models.load_config(&r.name, &json, &r.engine, r.labels))
                    .await
                    .map_err(|e| InferenceError::Internal(format!("loading task: {e}")))??
            }
            Some(load_model_request::Source::RegistryRef(reference)) => {
                self.models
                    .load_registry(self.registry.clone(), &r.name, &reference, &r.engine, r.labels)
                    .await?
            }
            None => {
                return Err(
                    InferenceError::Invalid("LoadModel needs config_json or registry_ref".into()).into(),
                );
            }
        };
        Ok(Response::new(info))
    }

    async fn upload_model(
        &self,
        req: Request<Streaming<UploadModelRequest>>,
    ) -> Result<Response<ModelInfo>, Status> {
        Ok(Response::new(self.upload(req.into_inner()).await?))
    }

    async fn unload_model(
        &self,
        req: Request<UnloadModelRequest>,
    ) -> Result<Response<UnloadModelResponse>, Status> {
        let name = req.into_inner().name;
        Ok(Response::new(UnloadModelResponse {
            unloaded: self.models.unload(&name),
        }))
    }
}
