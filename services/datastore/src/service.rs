//! The thin tonic adapter: turns gRPC messages into calls on the transport-agnostic core
//! ([`Items`], [`Datalists`], [`Sessions`], [`Converter`]) and core results back into
//! messages. Client-streamed uploads are consumed by a spawned task, so an upload is either
//! completed or aborted even when the call itself is dropped.

use std::pin::Pin;

use aiaa_proto::common::v1::{Job, JobRef, ListJobsRequest, ListJobsResponse};
use aiaa_proto::datastore::v1::datastore_service_server::DatastoreService;
use aiaa_proto::datastore::v1::{
    ConvertRequest, CreateSessionRequest, Datalist, DatalistRef, DeleteResponse, GetRequest, GetResponse,
    Item, ListDatalistsRequest, ListDatalistsResponse, ListRequest, ListResponse, PutDatalistRequest,
    PutRequest, RefreshSessionRequest, Session, SessionRef, UpdateMetadataRequest,
};
use aiaa_proto::framed::{self, FrameError};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;
use tracing::field::Empty;

use crate::convert::Converter;
use crate::datalists::Datalists;
use crate::error::{DatastoreError, Result};
use crate::items::{Items, Kind, StoredItem};
use crate::sessions::Sessions;

/// A server-streamed answer.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = std::result::Result<T, Status>> + Send + 'static>>;

/// The gRPC service over the datastore's core.
#[derive(Clone)]
pub struct DatastoreApi {
    items: Items,
    datalists: Datalists,
    sessions: Sessions,
    converter: Converter,
}

impl DatastoreApi {
    /// The service over these parts.
    pub fn new(items: Items, datalists: Datalists, sessions: Sessions, converter: Converter) -> Self {
        Self {
            items,
            datalists,
            sessions,
            converter,
        }
    }

    /// The session store (the reaper runs on a clone of it).
    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }
}

/// Why an upload stream failed, for the caller: a message over the size limit says which limit,
/// a broken framing is the client's mistake, a stream that broke off is an interruption.
fn upload_error(what: &str, e: FrameError) -> DatastoreError {
    match e.status() {
        Some(status) => match aiaa_runtime::error::oversized_message(status) {
            Some(limit) => DatastoreError::Runtime(limit),
            None => DatastoreError::Interrupted(format!(
                "{what}: the upload stream broke off ({}); nothing was stored",
                status.message()
            )),
        },
        None => DatastoreError::InvalidArgument(format!("{what}: {e}; nothing was stored")),
    }
}

/// The Item first, then the bytes as chunks.
fn item_stream(item: Item, bytes: BoxStream<'static, Result<Bytes>>) -> ResponseStream<GetResponse> {
    Box::pin(framed::try_send(
        item,
        bytes.map(|piece| piece.map_err(Status::from)),
    ))
}

fn joined(e: tokio::task::JoinError) -> Status {
    Status::from(DatastoreError::Internal(format!("upload task: {e}")))
}

fn deleted(deleted: bool) -> Response<DeleteResponse> {
    Response::new(DeleteResponse { deleted })
}

#[tonic::async_trait]
impl DatastoreService for DatastoreApi {
    #[tracing::instrument(skip_all, fields(kind = Empty, id = Empty))]
    async fn put(
        &self,
        request: Request<Streaming<PutRequest>>,
    ) -> std::result::Result<Response<Item>, Status> {
        let stream = request.into_inner();
        let items = self.items.clone();
        let span = tracing::Span::current();
        let task = async move {
            let (header, bytes) = framed::receive::<PutRequest, _>(stream)
                .await
                .map_err(|e| upload_error("Put", e))?;
            let kind = Kind::from_proto(header.kind, "header.kind")?;
            let span = tracing::Span::current();
            span.record("kind", kind.noun());
            span.record("id", header.id.as_str());
            let what = format!("{} {:?}", kind.noun(), header.id);
            let bytes = bytes.map(move |piece| piece.map_err(|e| upload_error(&what, e)));
            let expect = crate::blob::Expect {
                size: header.size,
                sha256: header.sha256.clone(),
            };
            items
                .put(kind, &header.id, &header.metadata, &expect, bytes)
                .await
        };
        let stored = tokio::spawn(task.instrument(span)).await.map_err(joined)??;
        Ok(Response::new(stored.to_proto()))
    }

    type GetStream = ResponseStream<GetResponse>;

    #[tracing::instrument(skip_all, fields(kind = request.get_ref().kind, id = %request.get_ref().id))]
    async fn get(
        &self,
        request: Request<GetRequest>,
    ) -> std::result::Result<Response<Self::GetStream>, Status> {
        let req = request.into_inner();
        let kind = Kind::from_proto(req.kind, "kind")?;
        let (stored, bytes) = self.items.open(kind, &req.id).await?;
        Ok(Response::new(item_stream(stored.to_proto(), bytes)))
    }

    #[tracing::instrument(skip_all, fields(kind = request.get_ref().kind, id = %request.get_ref().id))]
    async fn stat(&self, request: Request<GetRequest>) -> std::result::Result<Response<Item>, Status> {
        let req = request.into_inner();
        let kind = Kind::from_proto(req.kind, "kind")?;
        Ok(Response::new(self.items.stat(kind, &req.id).await?.to_proto()))
    }

    #[tracing::instrument(skip_all, fields(kind = request.get_ref().kind, prefix = %request.get_ref().prefix))]
    async fn list(
        &self,
        request: Request<ListRequest>,
    ) -> std::result::Result<Response<ListResponse>, Status> {
        let req = request.into_inner();
        let kind = Kind::from_proto(req.kind, "kind")?;
        let items = self.items.list(kind, &req.prefix).await?;
        Ok(Response::new(ListResponse {
            items: items.iter().map(StoredItem::to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(kind = request.get_ref().kind, id = %request.get_ref().id))]
    async fn delete(
        &self,
        request: Request<GetRequest>,
    ) -> std::result::Result<Response<DeleteResponse>, Status> {
        let req = request.into_inner();
        let kind = Kind::from_proto(req.kind, "kind")?;
        Ok(deleted(self.items.delete(kind, &req.id).await?))
    }

    #[tracing::instrument(skip_all, fields(kind = request.get_ref().kind, id = %request.get_ref().id))]
    async fn update_metadata(
        &self,
        request: Request<UpdateMetadataRequest>,
    ) -> std::result::Result<Response<Item>, Status> {
        let req = request.into_inner();
        let kind = Kind::from_proto(req.kind, "kind")?;
        let stored = self
            .items
            .update_metadata(kind, &req.id, &req.set, &req.remove)
            .await?;
        Ok(Response::new(stored.to_proto()))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn put_datalist(
        &self,
        request: Request<PutDatalistRequest>,
    ) -> std::result::Result<Response<Datalist>, Status> {
        let req = request.into_inner();
        Ok(Response::new(
            self.datalists
                .put(&req.name, req.datalist.as_ref(), &req.json)
                .await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn get_datalist(
        &self,
        request: Request<DatalistRef>,
    ) -> std::result::Result<Response<Datalist>, Status> {
        Ok(Response::new(self.datalists.get(&request.get_ref().name).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn list_datalists(
        &self,
        _request: Request<ListDatalistsRequest>,
    ) -> std::result::Result<Response<ListDatalistsResponse>, Status> {
        Ok(Response::new(ListDatalistsResponse {
            names: self.datalists.list().await?,
        }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn delete_datalist(
        &self,
        request: Request<DatalistRef>,
    ) -> std::result::Result<Response<DeleteResponse>, Status> {
        Ok(deleted(self.datalists.delete(&request.get_ref().name).await?))
    }

    #[tracing::instrument(skip_all, fields(session = Empty))]
    async fn create_session(
        &self,
        request: Request<Streaming<CreateSessionRequest>>,
    ) -> std::result::Result<Response<Session>, Status> {
        let client = aiaa_runtime::auth::caller(&request);
        let stream = request.into_inner();
        let sessions = self.sessions.clone();
        let span = tracing::Span::current();
        let task = async move {
            let (header, bytes) = framed::receive::<CreateSessionRequest, _>(stream)
                .await
                .map_err(|e| upload_error("CreateSession", e))?;
            let bytes = bytes.map(|piece| piece.map_err(|e| upload_error("the session image", e)));
            let session = sessions
                .create(
                    &client,
                    header.expiry_seconds,
                    &header.filename,
                    &header.metadata,
                    &crate::blob::Expect {
                        size: header.size,
                        sha256: header.sha256.clone(),
                    },
                    bytes,
                )
                .await?;
            tracing::Span::current().record("session", session.id.as_str());
            Ok::<_, DatastoreError>(session)
        };
        let session = tokio::spawn(task.instrument(span)).await.map_err(joined)??;
        Ok(Response::new(session.to_proto()))
    }

    #[tracing::instrument(skip_all, fields(session = %request.get_ref().id))]
    async fn get_session(
        &self,
        request: Request<SessionRef>,
    ) -> std::result::Result<Response<Session>, Status> {
        Ok(Response::new(
            self.sessions.get(&request.get_ref().id).await?.to_proto(),
        ))
    }

    #[tracing::instrument(skip_all, fields(session = %request.get_ref().id))]
    async fn refresh_session(
        &self,
        request: Request<RefreshSessionRequest>,
    ) -> std::result::Result<Response<Session>, Status> {
        let req = request.into_inner();
        Ok(Response::new(
            self.sessions
                .refresh(&req.id, req.expiry_seconds)
                .await?
                .to_proto(),
        ))
    }

    type GetSessionImageStream = ResponseStream<GetResponse>;

    #[tracing::instrument(skip_all, fields(session = %request.get_ref().id))]
    async fn get_session_image(
        &self,
        request: Request<SessionRef>,
    ) -> std::result::Result<Response<Self::GetSessionImageStream>, Status> {
        let (session, bytes) = self.sessions.open_image(&request.get_ref().id).await?;
        Ok(Response::new(item_stream(session.image.to_proto(), bytes)))
    }

    #[tracing::instrument(skip_all, fields(session = %request.get_ref().id))]
    async fn delete_session(
        &self,
        request: Request<SessionRef>,
    ) -> std::result::Result<Response<DeleteResponse>, Status> {
        Ok(deleted(self.sessions.delete(&request.get_ref().id).await?))
    }

    #[tracing::instrument(skip_all, fields(prefix = %request.get_ref().source_prefix, job = Empty))]
    async fn submit_convert(
        &self,
        request: Request<ConvertRequest>,
    ) -> std::result::Result<Response<Job>, Status> {
        let job = self.converter.submit(request.get_ref()).await?;
        tracing::Span::current().record("job", job.id.as_str());
        Ok(Response::new(job))
    }

    #[tracing::instrument(skip_all, fields(job = %request.get_ref().id))]
    async fn get_job(&self, request: Request<JobRef>) -> std::result::Result<Response<Job>, Status> {
        Ok(Response::new(self.converter.get(&request.get_ref().id)?))
    }

    type WatchJobStream = ResponseStream<Job>;

    #[tracing::instrument(skip_all, fields(job = %request.get_ref().id))]
    async fn watch_job(
        &self,
        request: Request<JobRef>,
    ) -> std::result::Result<Response<Self::WatchJobStream>, Status> {
        let updates = self.converter.watch(&request.get_ref().id)?;
        Ok(Response::new(Box::pin(updates.map(Ok))))
    }

    #[tracing::instrument(skip_all, fields(job = %request.get_ref().id))]
    async fn cancel_job(&self, request: Request<JobRef>) -> std::result::Result<Response<Job>, Status> {
        Ok(Response::new(self.converter.cancel(&request.get_ref().id)?))
    }

    #[tracing::instrument(skip_all, fields(kind = %request.get_ref().kind))]
    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> std::result::Result<Response<ListJobsResponse>, Status> {
        Ok(Response::new(ListJobsResponse {
            jobs: self.converter.list(request.get_ref()),
        }))
    }
}
