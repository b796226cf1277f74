//! The AIAA datastore: images and labels, datalists (the seed's `datalist.json`), annotation
//! sessions and conversion jobs, all on one object store.
//!
//! - [`items`]: streamed put/get of images and labels with SHA-256, format detection
//!   ([`format`]) and a size limit; written whole or not at all ([`blob`]);
//! - [`datalists`]: the seed's `datalist.json`, validated, stored as JSON text;
//! - [`sessions`]: uploaded images kept until they expire, with a reaper, counted against
//!   per-client quotas ([`quota`]);
//! - [`disk`]: uploads stop while the store's disk is at its free-space floor;
//! - [`convert`]: conversion jobs on top of `aiaa_imaging::convert`;
//! - [`service`]: the thin tonic adapter; [`start`] serves it through `aiaa_runtime::server`.
//!
//! Object-store layout:
//!
//! ```text
//! images/<id>                  labels/<id>                 the bytes
//! meta/images/<id>.json        meta/labels/<id>.json       the item records
//! datalists/<name>.json                                    the seed's JSON text
//! sessions/<uuid>/image        sessions/<uuid>/session.json
//! ```

pub mod blob;
pub mod config;
pub mod convert;
pub mod datalists;
pub mod disk;
pub mod error;
pub mod format;
pub mod items;
pub mod quota;
pub mod service;
pub mod sessions;

use aiaa_proto::datastore::v1::datastore_service_server::DatastoreServiceServer;
use aiaa_runtime::config::{AuthArgs, GrpcArgs};
use aiaa_runtime::server::{self, RunningServer, ServerSpec};
use aiaa_runtime::store::Store;
use tokio_util::sync::CancellationToken;

pub use config::DatastoreArgs;
pub use error::DatastoreError;

/// The gRPC service name, as health reports it (the generated one).
pub use aiaa_proto::datastore::v1::datastore_service_server::SERVICE_NAME;

/// Builds the datastore's core over `store` and its gRPC service, as [`start`] does (without
/// the reaper). Useful to embed the service elsewhere.
pub fn build(args: &DatastoreArgs, store: Store, shutdown: CancellationToken) -> service::DatastoreApi {
    let disk = disk::Disk::new(aiaa_runtime::store::local_root(&store), args.min_free_bytes);
    let items = items::Items::new(store.clone(), args.max_item_bytes, disk.clone());
    let sessions = sessions::Sessions::new(
        store.clone(),
        sessions::Expiry {
            default: args.session_expiry,
            max: args.session_max_expiry,
        },
        items.limit(),
        disk,
        quota::Quotas::new(args.max_sessions_per_client, args.max_session_bytes_per_client),
    );
    let converter = convert::Converter::new(
        items.clone(),
        args.max_convert_jobs,
        args.work_dir.clone(),
        args.convert_max_image_bytes,
        shutdown,
    );
    service::DatastoreApi::new(items, datalists::Datalists::new(store), sessions, converter)
}

/// Validates `args`, starts the session reaper and serves the datastore on `args.listen`
/// until `shutdown` is cancelled (which also stops the reaper and cancels running jobs).
pub async fn start(
    args: &DatastoreArgs,
    store: Store,
    grpc: &GrpcArgs,
    auth: &AuthArgs,
    shutdown: CancellationToken,
) -> Result<RunningServer, DatastoreError> {
    args.validate()?;
    let api = build(args, store, shutdown.clone());
    let reaper = api.sessions().clone();
    let counted = reaper.load_quotas().await?;
    tracing::debug!(sessions = counted, "per-client session quotas loaded");
    let server = DatastoreServiceServer::new(api)
        .max_decoding_message_size(grpc.message.max_message_bytes)
        .max_encoding_message_size(grpc.message.max_message_bytes);
    let spec = ServerSpec {
        component: "datastore",
        routes: tonic::service::Routes::new(server),
        service_names: vec![SERVICE_NAME],
        serving_at_start: true,
    };
    let running = server::start(args.listen, spec, grpc, auth, shutdown.clone()).await?;
    reaper.spawn_reaper(args.session_reap_interval, shutdown);
    tracing::info!(addr = %running.addr, "datastore serving");
    Ok(running)
}
