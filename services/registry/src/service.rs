//! The gRPC adapter: converts and validates requests, calls the [`Catalogue`], converts
//! answers. No catalogue logic lives here.

use std::pin::Pin;

use aiaa_proto::common::v1::Chunk;
use aiaa_proto::framed::{self, FrameError};
use aiaa_proto::registry::v1::registry_service_server::RegistryService;
use aiaa_proto::registry::v1::{
    DeleteRequest, DeleteResponse, DownloadRequest, GetManifestRequest, ListModelsRequest,
    ListModelsResponse, ListVersionsRequest, ListVersionsResponse, Manifest, PullProgress, PullRequest,
    PushRequest,
};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::catalogue::Catalogue;
use crate::error::RegistryError;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The registry's gRPC service.
#[derive(Clone)]
pub struct Registry {
    catalogue: Catalogue,
    max_model_bytes: u64,
}

impl Registry {
    /// A service over `catalogue`, refusing versions larger than `max_model_bytes`.
    pub fn new(catalogue: Catalogue, max_model_bytes: u64) -> Self {
        Self {
            catalogue,
            max_model_bytes,
        }
    }
}

/// Why a push stream failed: a message over the size limit says which limit, a broken framing is
/// the client's mistake, a stream that broke off is a cancelled push.
fn push_error(e: &FrameError) -> RegistryError {
    match e.status() {
        Some(status) => match aiaa_runtime::error::oversized_message(status) {
            Some(limit) => limit.into(),
            None => RegistryError::Cancelled(format!("push stream broke: {}", status.message())),
        },
        None => RegistryError::Invalid(format!("push stream: {e}")),
    }
}

#[tonic::async_trait]
impl RegistryService for Registry {
    #[tracing::instrument(skip_all)]
    async fn list_models(
        &self,
        req: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        let models = self.catalogue.list_models(req.get_ref()).await?;
        Ok(Response::new(ListModelsResponse { models }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_versions(
        &self,
        req: Request<ListVersionsRequest>,
    ) -> Result<Response<ListVersionsResponse>, Status> {
        let versions = self.catalogue.list_versions(req.get_ref().model.as_ref()).await?;
        Ok(Response::new(ListVersionsResponse { versions }))
    }

    #[tracing::instrument(skip_all, fields(version = %req.get_ref().version))]
    async fn get_manifest(&self, req: Request<GetManifestRequest>) -> Result<Response<Manifest>, Status> {
        let r = req.get_ref();
        let m = self.catalogue.manifest(r.model.as_ref(), &r.version).await?;
        Ok(Response::new(m.to_proto()))
    }

    #[tracing::instrument(skip_all)]
    async fn push(&self, req: Request<Streaming<PushRequest>>) -> Result<Response<Manifest>, Status> {
        let (header, mut body) = framed::receive::<PushRequest, _>(req.into_inner())
            .await
            .map_err(|e| push_error(&e))?;
        let manifest = header
            .manifest
            .ok_or_else(|| Status::invalid_argument("push header has no manifest"))?;
        let mut session = self.catalogue.begin_push(&manifest, self.max_model_bytes).await?;
        while let Some(piece) = body.next().await {
            let step = match piece {
                Ok(data) => session.write(data).await,
                Err(e) => Err(push_error(&e)),
            };
            if let Err(e) = step {
                session.abort().await;
                return Err(e.into());
            }
        }
        let stored = session.finish().await?;
        tracing::info!(model = %crate::layout::display(&stored.model()), version = %stored.version, "pushed");
        Ok(Response::new(stored.to_proto()))
    }

    type DownloadStream = BoxStream<Chunk>;

    #[tracing::instrument(skip_all, fields(path = %req.get_ref().path))]
    async fn download(
        &self,
        req: Request<DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        let r = req.get_ref();
        let (_, bytes) = self.catalogue.file(r.model.as_ref(), &r.version, &r.path).await?;
        let chunks = aiaa_runtime::chunks::rechunk(bytes, aiaa_proto::CHUNK_SIZE)
            .map(|piece| piece.map(|data| Chunk { data }).map_err(Status::from));
        Ok(Response::new(Box::pin(chunks)))
    }

    type PullStream = BoxStream<PullProgress>;

    #[tracing::instrument(skip_all, fields(upstream = %req.get_ref().upstream_url, version = %req.get_ref().version))]
    async fn pull(&self, req: Request<PullRequest>) -> Result<Response<Self::PullStream>, Status> {
        let r = req.into_inner();
        let upstream_store = aiaa_runtime::store::open(&r.upstream_url).map_err(|e| {
            Status::from(RegistryError::Upstream {
                url: r.upstream_url.clone(),
                reason: e.to_string(),
            })
        })?;
        let upstream = Catalogue::new(upstream_store, r.upstream_url.clone());
        // Progress flows while the pull runs; its outcome is the stream's last message. A
        // client that goes away closes the receiver, which makes the pull abort.
        let (progress_tx, progress_rx) = tokio::sync::mpsc::channel::<PullProgress>(16);
        let catalogue = self.catalogue.clone();
        let pull = tokio::spawn(tracing::Instrument::instrument(
            async move {
                catalogue
                    .pull(&upstream, r.model.as_ref(), &r.version, &progress_tx)
                    .await
            },
            tracing::Span::current(),
        ));
        let last = futures::stream::once(async move {
            match pull.await {
                Ok(Ok(stored)) => {
                    tracing::info!(version = %stored.version, "pulled");
                    Ok(PullProgress {
                        path: String::new(),
                        bytes_done: stored.total_size(),
                        bytes_total: stored.total_size(),
                        files_done: stored.files.len() as u32,
                        files_total: stored.files.len() as u32,
                        done: true,
                        manifest: Some(stored.to_proto()),
                    })
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "pull failed");
                    Err(Status::from(e))
                }
                Err(e) => Err(Status::internal(format!("the pull task failed: {e}"))),
            }
        });
        Ok(Response::new(Box::pin(
            ReceiverStream::new(progress_rx).map(Ok).chain(last),
        )))
    }

    #[tracing::instrument(skip_all, fields(version = %req.get_ref().version))]
    async fn delete(&self, req: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        let r = req.get_ref();
        let versions = self.catalogue.delete(r.model.as_ref(), &r.version).await?;
        Ok(Response::new(DeleteResponse { versions }))
    }
}
