//! `aiaa pull` and `aiaa push`: the seed's `tlt-pull` against our registry (same flags:
//! `-lm`, `-lv -m NAME`, `-m NAME -v VERSION -d DIR`, `-o ORG`, `-t TEAM`, `-k KEY`), plus
//! pulling from an upstream catalogue into the registry and pushing new versions. Transfers
//! show progress bars; downloads are verified against the manifest and written whole.

use std::io::Write;
use std::path::{Path, PathBuf};

use aiaa_proto::framed::Framed;
use aiaa_proto::registry::v1::registry_service_client::RegistryServiceClient;
use aiaa_proto::registry::v1::{
    DownloadRequest, GetManifestRequest, ListModelsRequest, ListVersionsRequest, Manifest, ModelFile,
    ModelName, PullRequest, PushHeader, PushRequest,
};
use aiaa_runtime::client::{AiaaChannel, connect};
use aiaa_runtime::config::Secret;
use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

/// The largest gRPC message the CLI sends or accepts (files travel as 1 MiB chunks; a
/// listing of many models or items is one message).
pub(crate) const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Where the registry is and who we are.
#[derive(Debug, clap::Args)]
pub struct RegistryClientArgs {
    /// The registry's gRPC address.
    #[arg(
        long = "registry",
        env = "AIAA_REGISTRY_URL",
        default_value = "http://127.0.0.1:5101"
    )]
    pub registry: String,
    /// API key (needed for every call when the registry has one).
    #[arg(short = 'k', long = "key", env = "AIAA_API_KEY", hide_env_values = true)]
    pub key: Option<Secret>,
    /// Organisation.
    #[arg(short = 'o', long = "org", default_value = "aiaa")]
    pub org: String,
    /// Team.
    #[arg(short = 't', long = "team", default_value = "default")]
    pub team: String,
}

impl RegistryClientArgs {
    async fn client(&self) -> anyhow::Result<RegistryServiceClient<AiaaChannel>> {
        let channel = connect(&self.registry, self.key.clone()).await.with_context(|| {
            format!(
                "cannot reach the registry at {} (is `aiaa up` running?)",
                self.registry
            )
        })?;
        Ok(aiaa_runtime::client::registry(channel, MAX_MESSAGE_BYTES))
    }

    fn model(&self, name: &str) -> ModelName {
        ModelName {
            org: self.org.clone(),
            team: self.team.clone(),
            name: name.to_string(),
        }
    }
}

/// `aiaa pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    #[command(flatten)]
    registry: RegistryClientArgs,
    /// List models (the seed's `-lm`).
    #[arg(long = "list-models")]
    list_models: bool,
    /// List the versions of `-m NAME` (the seed's `-lv`).
    #[arg(long = "list-versions")]
    list_versions: bool,
    /// Model name.
    #[arg(short = 'm', long = "model")]
    model: Option<String>,
    /// Version to download.
    #[arg(short = 'v', long = "version")]
    version: Option<String>,
    /// Folder to download into (created if missing).
    #[arg(short = 'd', long = "dir")]
    dir: Option<PathBuf>,
    /// First copy the version from this upstream catalogue URL into the registry
    /// (file:///path, s3://bucket/prefix), verifying checksums.
    #[arg(long = "upstream")]
    upstream: Option<String>,
    /// With -lm: only models with this label.
    #[arg(long = "label")]
    label: Option<String>,
    /// With -lm: only models of this type.
    #[arg(long = "type")]
    model_type: Option<String>,
}

fn bytes_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}

/// `aiaa pull`.
pub async fn pull(args: PullArgs) -> anyhow::Result<()> {
    let mut client = args.registry.client().await?;
    if args.list_models {
        let mut req = ListModelsRequest {
            org: args.registry.org.clone(),
            ..Default::default()
        };
        if args.registry.team != "default" {
            req.team = args.registry.team.clone();
        }
        req.name = args.model.clone().unwrap_or_default();
        req.label = args.label.clone().unwrap_or_default();
        req.model_type = args.model_type.clone().unwrap_or_default();
        let models = client.list_models(req).await?.into_inner().models;
        println!(
            "{:<32} {:<20} {:<14} {:<10} {:<8} LABELS",
            "NAME", "ORG/TEAM", "TYPE", "LATEST", "VERSIONS"
        );
        for m in models {
            let name = m.model.unwrap_or_default();
            println!(
                "{:<32} {:<20} {:<14} {:<10} {:<8} {}",
                name.name,
                format!("{}/{}", name.org, name.team),
                m.model_type,
                m.latest_version,
                m.version_count,
                m.labels.join(",")
            );
        }
        return Ok(());
    }
    let Some(name) = args.model.as_deref() else {
        bail!("-m NAME is required (or -lm to list models)")
    };
    let model = args.registry.model(name);
    if args.list_versions {
        let versions = client
            .list_versions(ListVersionsRequest { model: Some(model) })
            .await?
            .into_inner()
            .versions;
        println!("{:<12} {:<22} {:>14} FILES", "VERSION", "CREATED", "SIZE");
        for v in versions {
            println!(
                "{:<12} {:<22} {:>14} {}",
                v.version, v.created_at, v.total_size, v.file_count
            );
        }
        return Ok(());
    }
    let Some(version) = args.version.as_deref() else {
        bail!("-v VERSION is required to download")
    };
    if let Some(upstream) = &args.upstream {
        pull_from_upstream(&mut client, upstream, &model, version).await?;
    }
    let Some(dir) = args.dir.as_deref() else {
        if args.upstream.is_some() {
            return Ok(());
        }
        bail!("-d DIR is required to download");
    };
    download(&mut client, &model, version, dir).await
}

async fn pull_from_upstream(
    client: &mut RegistryServiceClient<AiaaChannel>,
    upstream: &str,
    model: &ModelName,
    version: &str,
) -> anyhow::Result<()> {
    let mut stream = client
        .pull(PullRequest {
            upstream_url: upstream.to_string(),
            model: Some(model.clone()),
            version: version.into(),
        })
        .await?
        .into_inner();
    let bar = bytes_bar(0, &format!("pulling {} {version}", model.name));
    while let Some(p) = stream.next().await {
        let p =
            p.with_context(|| format!("pull of {} version {version} from {upstream} failed", model.name))?;
        bar.set_length(p.bytes_total);
        bar.set_position(p.bytes_done);
        if p.done {
            bar.finish_and_clear();
            println!(
                "Pulled version {version} of {} from {upstream} into the registry.",
                model.name
            );
            return Ok(());
        }
    }
    bail!("the registry ended the pull without finishing it")
}

async fn download(
    client: &mut RegistryServiceClient<AiaaChannel>,
    model: &ModelName,
    version: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let manifest = client
        .get_manifest(GetManifestRequest {
            model: Some(model.clone()),
            version: version.into(),
        })
        .await?
        .into_inner();
    let total: u64 = manifest.files.iter().map(|f| f.size).sum();
    println!(
        "{} files to download, total size - {}",
        manifest.files.len(),
        indicatif::HumanBytes(total)
    );
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let bar = bytes_bar(total, "downloading");
    for file in &manifest.files {
        download_file(client, model, version, file, dir, &bar).await?;
    }
    bar.finish_and_clear();
    println!("Finished downloading version {version} of {}.", model.name);
    println!("Downloaded files are in {}/.", dir.display());
    Ok(())
}

/// Downloads one file to a temporary name, verifies it, then renames it into place.
async fn download_file(
    client: &mut RegistryServiceClient<AiaaChannel>,
    model: &ModelName,
    version: &str,
    file: &ModelFile,
    dir: &Path,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    let target = dir.join(&file.path);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let partial = tempfile_in(target.parent().unwrap_or(dir))?;
    let mut out = std::io::BufWriter::new(partial.as_file());
    let mut hasher = Sha256::new();
    let mut stream = client
        .download(DownloadRequest {
            model: Some(model.clone()),
            version: version.into(),
            path: file.path.clone(),
        })
        .await?
        .into_inner();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("downloading {}", file.path))?;
        hasher.update(&chunk.data);
        out.write_all(&chunk.data)?;
        size += chunk.data.len() as u64;
        bar.inc(chunk.data.len() as u64);
    }
    out.flush()?;
    drop(out);
    let sha = hex::encode(hasher.finalize());
    if size != file.size || sha != file.sha256 {
        bail!(
            "{}: downloaded {size} bytes with sha256 {sha}, the manifest says {} bytes with {}",
            file.path,
            file.size,
            file.sha256
        );
    }
    partial
        .persist(&target)
        .with_context(|| format!("write {}", target.display()))?;
    Ok(())
}

fn tempfile_in(dir: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".aiaa-download-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("create a temporary file in {}", dir.display()))
}

/// `aiaa push`.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[command(flatten)]
    registry: RegistryClientArgs,
    /// Model name.
    #[arg(short = 'm', long = "model")]
    model: String,
    /// The new version.
    #[arg(short = 'v', long = "version")]
    version: String,
    /// Model type: annotation, segmentation, deepgrow, classification.
    #[arg(long = "type", default_value = "segmentation")]
    model_type: String,
    /// Label names, comma-separated.
    #[arg(long = "labels", value_delimiter = ',')]
    labels: Vec<String>,
    /// Description.
    #[arg(long = "description", default_value = "")]
    description: String,
    /// The engine config JSON file (the seed's model config) to ship in the manifest.
    #[arg(long = "engine-config")]
    engine_config: Option<PathBuf>,
    /// Files or folders to push; a folder's files keep their paths relative to it.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// Every file to push with its path inside the version.
fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            for entry in walkdir::WalkDir::new(p).sort_by_file_name() {
                let entry = entry?;
                if entry.file_type().is_file() {
                    let rel = entry.path().strip_prefix(p)?.to_string_lossy().replace('\\', "/");
                    files.push((entry.path().to_path_buf(), rel));
                }
            }
        } else if p.is_file() {
            let name = p
                .file_name()
                .context("file without a name")?
                .to_string_lossy()
                .to_string();
            files.push((p.clone(), name));
        } else {
            bail!("{}: no such file or folder", p.display());
        }
    }
    Ok(files)
}

async fn describe(path: &Path, rel: &str) -> anyhow::Result<ModelFile> {
    let mut f = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(ModelFile {
        path: rel.to_string(),
        size,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// `aiaa push`.
pub async fn push(args: PushArgs) -> anyhow::Result<()> {
    let files = collect_files(&args.paths)?;
    let mut described = Vec::with_capacity(files.len());
    for (path, rel) in &files {
        described.push(describe(path, rel).await?);
    }
    let engine_config_json = match &args.engine_config {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?,
        None => String::new(),
    };
    let total: u64 = described.iter().map(|f| f.size).sum();
    let manifest = Manifest {
        model: Some(args.registry.model(&args.model)),
        version: args.version.clone(),
        model_type: args.model_type.clone(),
        labels: args.labels.clone(),
        description: args.description.clone(),
        engine_config_json,
        files: described,
        created_at: String::new(),
    };
    let mut client = args.registry.client().await?;
    let bar = bytes_bar(total, &format!("pushing {} {}", args.model, args.version));
    let (tx, rx) = tokio::sync::mpsc::channel::<PushRequest>(4);
    let header = PushRequest::header(PushHeader {
        manifest: Some(manifest),
    });
    let sender = {
        let bar = bar.clone();
        tokio::spawn(async move {
            if tx.send(header).await.is_err() {
                return Ok(());
            }
            for (path, _) in files {
                let mut f = tokio::fs::File::open(&path).await?;
                loop {
                    let mut buf = vec![0u8; aiaa_proto::CHUNK_SIZE];
                    let n = read_full(&mut f, &mut buf).await?;
                    if n == 0 {
                        break;
                    }
                    buf.truncate(n);
                    bar.inc(n as u64);
                    let msg = PushRequest::chunk(buf.into());
                    if tx.send(msg).await.is_err() {
                        return Ok(()); // the server ended the call; its answer says why
                    }
                }
            }
            anyhow::Ok(())
        })
    };
    let answer = client.push(tokio_stream::wrappers::ReceiverStream::new(rx)).await;
    sender.await??;
    bar.finish_and_clear();
    let stored = answer.with_context(|| format!("push of {} version {} failed", args.model, args.version))?;
    let stored = stored.into_inner();
    println!(
        "Pushed version {} of {} ({} files, {}).",
        stored.version,
        args.model,
        stored.files.len(),
        indicatif::HumanBytes(total)
    );
    Ok(())
}

async fn read_full(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = f.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}
