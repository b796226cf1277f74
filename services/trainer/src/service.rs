//! The trainer's gRPC service (`aiaa.trainer.v1.TrainerService`): a thin adapter over
//! [`Jobs`], the one mapping of [`TrainerError`] onto `tonic::Status`, and [`start`], which
//! recovers the persisted jobs and serves through `aiaa_runtime::server`.
//!
//! Error codes: a malformed request (names, JSON, an inline train config that `aiaa train`
//! would refuse, export options) is INVALID_ARGUMENT at submission; an unknown job
//! NOT_FOUND; an output prefix in use or holding another run (or nothing to resume)
//! FAILED_PRECONDITION. Whatever is found only while the job runs (a datalist or item that
//! does not exist, a config fetched from elsewhere that is invalid, data the child refuses)
//! fails the job instead: FAILED with `error` and the child's `log_tail`.

use std::net::SocketAddr;
use std::pin::Pin;

use aiaa_proto::common::v1::{Job, JobRef, ListJobsRequest, ListJobsResponse};
use aiaa_proto::trainer::v1::trainer_service_server::{TrainerService, TrainerServiceServer};
use aiaa_proto::trainer::v1::{EvaluationRequest, ExportRequest, TrainingRequest};
use aiaa_runtime::client;
use aiaa_runtime::config::{AuthArgs, GrpcArgs};
use aiaa_runtime::server::{self, RunningServer, ServerSpec};
use aiaa_runtime::store::Store;
use futures::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use aiaa_train::TrainError;

use crate::args::TrainerArgs;
use crate::error::TrainerError;
use crate::jobs::{Jobs, Settings};
use crate::sources::Fetcher;

/// The gRPC service name, as health reports it (the generated one).
pub use aiaa_proto::trainer::v1::trainer_service_server::SERVICE_NAME;

impl From<TrainerError> for Status {
    fn from(err: TrainerError) -> Self {
        let msg = err.to_string();
        match err {
            TrainerError::Train(e) => match e {
                TrainError::Config { .. }
                | TrainError::Datalist { .. }
                | TrainError::Data { .. }
                | TrainError::Transform { .. } => Status::invalid_argument(msg),
                TrainError::Unsupported(_) | TrainError::Checkpoint { .. } => {
                    Status::failed_precondition(msg)
                }
                TrainError::Nets { .. }
                | TrainError::Io { .. }
                | TrainError::Torch(_)
                | TrainError::Internal(_) => Status::internal(msg),
            },
            TrainerError::InvalidRequest(_) => Status::invalid_argument(msg),
            TrainerError::NotFound(_) => Status::not_found(msg),
            TrainerError::FailedPrecondition(_) => Status::failed_precondition(msg),
            TrainerError::Unavailable(_) => Status::unavailable(msg),
            TrainerError::Store { source, .. } => Status::new(aiaa_runtime::store::status_code(&source), msg),
            TrainerError::Runtime(e) => Status::from(e),
            TrainerError::Internal(_) => Status::internal(msg),
        }
    }
}

/// A server-streamed answer.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The gRPC service over the jobs.
#[derive(Clone, Debug)]
pub struct TrainerApi {
    jobs: Jobs,
}

impl TrainerApi {
    /// The service over `jobs`.
    pub fn new(jobs: Jobs) -> Self {
        Self { jobs }
    }
}

fn job_id(r: &JobRef) -> Result<&str, Status> {
    if r.id.is_empty() {
        return Err(Status::invalid_argument("id is missing"));
    }
    Ok(&r.id)
}

#[tonic::async_trait]
impl TrainerService for TrainerApi {
    #[tracing::instrument(skip_all)]
    async fn submit_training(&self, request: Request<TrainingRequest>) -> Result<Response<Job>, Status> {
        let by = aiaa_runtime::auth::caller(&request);
        Ok(Response::new(
            self.jobs.submit_training(request.get_ref(), &by).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn submit_export(&self, request: Request<ExportRequest>) -> Result<Response<Job>, Status> {
        let by = aiaa_runtime::auth::caller(&request);
        Ok(Response::new(
            self.jobs.submit_export(request.get_ref(), &by).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn submit_evaluation(&self, request: Request<EvaluationRequest>) -> Result<Response<Job>, Status> {
        let by = aiaa_runtime::auth::caller(&request);
        Ok(Response::new(
            self.jobs.submit_evaluation(request.get_ref(), &by).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(job = %request.get_ref().id))]
    async fn get_job(&self, request: Request<JobRef>) -> Result<Response<Job>, Status> {
        Ok(Response::new(self.jobs.get(job_id(request.get_ref())?)?))
    }

    type WatchJobStream = ResponseStream<Job>;

    #[tracing::instrument(skip_all, fields(job = %request.get_ref().id))]
    async fn watch_job(&self, request: Request<JobRef>) -> Result<Response<Self::WatchJobStream>, Status> {
        let updates = self.jobs.watch(job_id(request.get_ref())?)?;
        Ok(Response::new(Box::pin(updates.map(Ok))))
    }

    #[tracing::instrument(skip_all, fields(job = %request.get_ref().id))]
    async fn cancel_job(&self, request: Request<JobRef>) -> Result<Response<Job>, Status> {
        Ok(Response::new(self.jobs.cancel(job_id(request.get_ref())?).await?))
    }

    #[tracing::instrument(skip_all, fields(kind = %request.get_ref().kind))]
    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        Ok(Response::new(ListJobsResponse {
            jobs: self.jobs.list(request.get_ref()),
        }))
    }
}

/// A started trainer: its server, and its jobs, which stop with it.
pub struct RunningTrainer {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    server: RunningServer,
    jobs: Jobs,
}

impl std::fmt::Debug for RunningTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningTrainer")
            .field("addr", &self.addr)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

impl RunningTrainer {
    /// Waits until the server has drained and every job has stopped (after the shutdown
    /// token was cancelled: running jobs are interrupted, their outputs uploaded and their
    /// records set to run again at the next start).
    pub async fn wait(self) -> Result<(), TrainerError> {
        let served = self.server.wait().await;
        self.jobs.wait().await;
        served.map_err(TrainerError::from)
    }
}

/// Validates `args`, recovers the jobs recorded in `store` (see [`crate::jobs`]) and serves
/// the trainer on `args.listen` until `shutdown` is cancelled.
pub async fn start(
    args: &TrainerArgs,
    store: Store,
    grpc: &GrpcArgs,
    auth: &AuthArgs,
    shutdown: CancellationToken,
) -> Result<RunningTrainer, TrainerError> {
    args.validate()?;
    let work_root = args.work_dir();
    std::fs::create_dir_all(&work_root).map_err(|e| TrainerError::io(&work_root, e))?;
    let (datastore, registry) =
        client::datastore_and_registry(&args.datastore_url, &args.registry_url, auth, &grpc.message)?;
    let fetcher = Fetcher::new(
        datastore,
        registry,
        store.clone(),
        args.max_source_bytes,
        args.file_root.clone(),
    );
    let settings = Settings {
        program: args.command()?,
        device: args.device.clone(),
        log_every: args.log_every,
        grace: args.cancel_grace,
        work_root,
        api_key: auth.api_key.clone(),
        registry_url: args.registry_url.clone(),
        max_jobs: args.max_jobs,
    };
    let jobs = Jobs::new(store, fetcher, settings, shutdown.clone());
    let queued = jobs.recover().await?;
    let server = TrainerServiceServer::new(TrainerApi::new(jobs.clone()))
        .max_decoding_message_size(grpc.message.max_message_bytes)
        .max_encoding_message_size(grpc.message.max_message_bytes);
    let spec = ServerSpec {
        component: "trainer",
        routes: tonic::service::Routes::new(server),
        service_names: vec![SERVICE_NAME],
        serving_at_start: true,
    };
    let server = server::start(args.listen, spec, grpc, auth, shutdown).await?;
    tracing::info!(addr = %server.addr, recovered = queued, "trainer serving");
    Ok(RunningTrainer {
        addr: server.addr,
        server,
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes() {
        let cases = [
            (TrainerError::InvalidRequest("x".into()), Code::InvalidArgument),
            (
                TrainerError::Train(TrainError::Config {
                    file: "c".into(),
                    key: "epochs".into(),
                    message: "m".into(),
                }),
                Code::InvalidArgument,
            ),
            (TrainerError::NotFound("x".into()), Code::NotFound),
            (
                TrainerError::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (
                TrainerError::Train(TrainError::Unsupported("x".into())),
                Code::FailedPrecondition,
            ),
            (TrainerError::Unavailable("x".into()), Code::Unavailable),
            (TrainerError::Internal("x".into()), Code::Internal),
            (
                TrainerError::Runtime(aiaa_runtime::RuntimeError::InvalidName {
                    what: "id",
                    value: "..".into(),
                    reason: "bad",
                }),
                Code::InvalidArgument,
            ),
            (
                TrainerError::Store {
                    context: "c".into(),
                    source: object_store::Error::Generic {
                        store: "s",
                        source: "boom".into(),
                    },
                },
                Code::Unavailable,
            ),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
    }
}
