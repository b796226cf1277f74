//! `aiaa status`: one look at what the running services hold (models in the registry, images,
//! labels and datalists in the datastore). All calls share one trace.

use aiaa_proto::datastore::v1::{ItemKind, ListDatalistsRequest, ListRequest};
use aiaa_proto::registry::v1::ListModelsRequest;
use aiaa_runtime::client::connect;
use aiaa_runtime::config::Secret;
use anyhow::Context;
use tracing::Instrument;

/// `aiaa status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The registry's gRPC address.
    #[arg(
        long = "registry",
        env = "AIAA_REGISTRY_URL",
        default_value = "http://127.0.0.1:5101"
    )]
    registry: String,
    /// The datastore's gRPC address.
    #[arg(
        long = "datastore",
        env = "AIAA_DATASTORE_URL",
        default_value = "http://127.0.0.1:5102"
    )]
    datastore: String,
    /// API key.
    #[arg(short = 'k', long = "key", env = "AIAA_API_KEY", hide_env_values = true)]
    key: Option<Secret>,
}

/// `aiaa status`.
pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let span = tracing::info_span!("aiaa status", otel.kind = "client");
    async move {
        let registry = connect(&args.registry, args.key.clone())
            .await
            .with_context(|| format!("cannot reach the registry at {}", args.registry))?;
        let models = aiaa_runtime::client::registry(registry, crate::models::MAX_MESSAGE_BYTES)
            .list_models(ListModelsRequest::default())
            .await
            .context("registry ListModels")?
            .into_inner()
            .models;
        println!("registry {}: {} models", args.registry, models.len());
        for m in &models {
            let name = m.model.clone().unwrap_or_default();
            println!(
                "  {}/{}/{} {} ({})",
                name.org, name.team, name.name, m.latest_version, m.model_type
            );
        }
        let datastore = connect(&args.datastore, args.key.clone())
            .await
            .with_context(|| format!("cannot reach the datastore at {}", args.datastore))?;
        let mut ds = aiaa_runtime::client::datastore(datastore, crate::models::MAX_MESSAGE_BYTES);
        let images = ds
            .list(ListRequest {
                kind: ItemKind::Image as i32,
                prefix: String::new(),
            })
            .await
            .context("datastore List images")?
            .into_inner()
            .items;
        let labels = ds
            .list(ListRequest {
                kind: ItemKind::Label as i32,
                prefix: String::new(),
            })
            .await
            .context("datastore List labels")?
            .into_inner()
            .items;
        let datalists = ds
            .list_datalists(ListDatalistsRequest {})
            .await
            .context("datastore ListDatalists")?
            .into_inner()
            .names;
        println!(
            "datastore {}: {} images, {} labels, {} datalists",
            args.datastore,
            images.len(),
            labels.len(),
            datalists.len()
        );
        anyhow::Ok(())
    }
    .instrument(span)
    .await
}
