//! Test harness: a real datastore (temp folder) and a real gateway, both on 127.0.0.1:0;
//! the raw-socket AIAA client is `aiaa_e2e::aiaa_client`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use aiaa_gateway::GatewayArgs;
use aiaa_runtime::config::{AuthArgs, GrpcArgs};
use tokio_util::sync::CancellationToken;

pub use aiaa_e2e::aiaa_client::*;

pub struct Stack {
    pub gateway: SocketAddr,
    pub datastore: SocketAddr,
    pub shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[allow(unused_imports)] // not every test binary uses it
pub use aiaa_testdata::data as testdata;

pub async fn stack_with(configure: impl FnOnce(&mut GatewayArgs)) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let store = aiaa_runtime::store::open(&format!("file://{}", dir.path().display())).unwrap();
    let shutdown = CancellationToken::new();
    let ds_args = aiaa_datastore::DatastoreArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let grpc = GrpcArgs {
        drain_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let ds = aiaa_datastore::start(&ds_args, store, &grpc, &AuthArgs::default(), shutdown.clone())
        .await
        .unwrap();
    let mut args = GatewayArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        datastore_url: ds.addr.to_string(),
        ..Default::default()
    };
    configure(&mut args);
    let (gateway, _task) =
        aiaa_gateway::start(&args, &Default::default(), &AuthArgs::default(), shutdown.clone())
            .await
            .unwrap();
    Stack {
        gateway,
        datastore: ds.addr,
        shutdown,
        _dir: dir,
    }
}

pub async fn stack() -> Stack {
    stack_with(|_| {}).await
}
