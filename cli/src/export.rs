//! `aiaa export`: the seed's `tlt-export` (chapter 7) with its flags, producing TorchScript
//! instead of a TensorRT graph: `--model_file_path DIR --model_name NAME` names the
//! checkpoint `DIR/NAME.ckpt` (`--checkpoint_ext`), written by `aiaa train` (`model` is the
//! best, `final_model` the last); out come `NAME.pt` and `config.json` (the inference
//! service's model config) in `--output_dir` (default: the checkpoint's folder).
//!
//! Seed flags: `--model_file_format CKPT`, `--input_node_names` / `--output_node_names`
//! (recorded in the config's `input_nodes` / `output_nodes`), `--trt_precision_mode FP32 |
//! FP16` (FP16 needs CUDA). TensorRT-only flags (`--trt_dynamic_mode`, `--max_batch_size`,
//! `--trt_min_seg_size`) and the TensorFlow file extensions (`--meta_file_ext`,
//! `--regular_frozen_file_ext`, `--trt_file_ext`) are accepted and have no effect.
//!
//! Ours: `--engine`, `--padding`, `--labels`, `--description`, `--version`, `--thresh`,
//! `--device`, and `--push NAME` to upload the two files as version `--version` of model
//! `NAME` in the registry, through `aiaa push`'s own code.

use std::path::{Path, PathBuf};

use aiaa_nets::export::Precision;
use aiaa_train::DeviceChoice;
use aiaa_train::export::{EngineKind, ExportJob, export};
use anyhow::{Context, bail};
use clap::Parser;

use aiaa_runtime::registry::{TRAIN_CHECKPOINT, TRAIN_CONFIG};

use crate::models::{PushArgs, RegistryClientArgs};

/// `aiaa export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Source format: only CKPT (a checkpoint of `aiaa train`).
    #[arg(long = "model_file_format", default_value = "CKPT")]
    model_file_format: String,
    /// The folder holding the checkpoint (or the checkpoint file itself).
    #[arg(long = "model_file_path")]
    model_file_path: PathBuf,
    /// The checkpoint's base name: `model` (best) or `final_model` (last).
    #[arg(long = "model_name", default_value = "model")]
    model_name: String,
    /// The checkpoint's extension.
    #[arg(long = "checkpoint_ext", default_value = ".ckpt")]
    checkpoint_ext: String,
    /// Input node name(s), recorded as the config's `input_nodes.image`.
    #[arg(long = "input_node_names")]
    input_node_names: Option<String>,
    /// Output node name(s), recorded as the config's `output_nodes.model`.
    #[arg(long = "output_node_names")]
    output_node_names: Option<String>,
    /// FP32 or FP16 (FP16 needs a CUDA device).
    #[arg(long = "trt_precision_mode", default_value = "FP32")]
    precision: String,
    /// TensorFlow-only: accepted, no effect.
    #[arg(long = "meta_file_ext")]
    meta_file_ext: Option<String>,
    /// TensorFlow-only: accepted, no effect.
    #[arg(long = "regular_frozen_file_ext")]
    regular_frozen_file_ext: Option<String>,
    /// TensorRT-only: accepted, no effect.
    #[arg(long = "trt_file_ext")]
    trt_file_ext: Option<String>,
    /// TensorRT-only: accepted, no effect.
    #[arg(long = "trt_dynamic_mode")]
    trt_dynamic_mode: bool,
    /// TensorRT-only: accepted, no effect.
    #[arg(long = "max_batch_size")]
    max_batch_size: Option<u32>,
    /// TensorRT-only: accepted, no effect.
    #[arg(long = "trt_min_seg_size")]
    trt_min_seg_size: Option<u32>,
    /// Where NAME.pt and config.json go (default: the checkpoint's folder).
    #[arg(long = "output_dir", visible_alias = "output-dir")]
    output_dir: Option<PathBuf>,
    /// Dextr3dCroppedEngine or SegmentationEngine (default: annotation when the pipelines
    /// add an extreme-points channel).
    #[arg(long)]
    engine: Option<String>,
    /// Annotation models: mm added around the extreme points (default: the training crop's
    /// pad, else 20).
    #[arg(long)]
    padding: Option<f64>,
    /// Label names, comma-separated.
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// Description in the model config and the registry.
    #[arg(long)]
    description: Option<String>,
    /// Version recorded in the config (and pushed with --push).
    #[arg(long)]
    version: Option<String>,
    /// Foreground threshold of the probabilities.
    #[arg(long, default_value_t = 0.5)]
    thresh: f64,
    /// auto, cpu, cuda or cuda:N: where to trace (FP16 needs CUDA).
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// Push the exported files as a new version (--version) of this registry model.
    #[arg(long)]
    push: Option<String>,
    /// With --push: the version also holds the checkpoint (as model.ckpt) and its train
    /// config (as config_train.json), so it can be fine-tuned from the registry (MONAI
    /// Label's /train/ loop).
    #[arg(long, requires = "push")]
    push_checkpoint: bool,
    #[command(flatten)]
    registry: RegistryClientArgs,
}

/// `aiaa push`'s arguments, parsed the way its command line is.
#[derive(Debug, Parser)]
struct PushCommand {
    #[command(flatten)]
    args: PushArgs,
}

/// `aiaa export`.
pub async fn run(a: ExportArgs) -> anyhow::Result<()> {
    if !a.model_file_format.eq_ignore_ascii_case("CKPT") {
        bail!(
            "--model_file_format {:?}: only CKPT (a checkpoint of aiaa train) can be exported",
            a.model_file_format
        );
    }
    let precision = match a.precision.to_ascii_uppercase().as_str() {
        "FP32" => Precision::Fp32,
        "FP16" => Precision::Fp16,
        other => bail!("--trt_precision_mode {other:?}: expected FP32 or FP16"),
    };
    let engine = match a.engine.as_deref() {
        None => None,
        Some(e) => Some(EngineKind::parse(e).with_context(|| {
            format!("--engine {e:?}: expected Dextr3dCroppedEngine or SegmentationEngine")
        })?),
    };
    if a.push.is_some() && a.version.is_none() {
        bail!("--push needs --version: the registry stores immutable versions");
    }
    let checkpoint = if a.model_file_path.is_dir() {
        a.model_file_path
            .join(format!("{}{}", a.model_name, a.checkpoint_ext))
    } else {
        a.model_file_path.clone()
    };
    if !checkpoint.is_file() {
        bail!(
            "{}: no such checkpoint (--model_file_path names the folder, --model_name the base name: \
             model or final_model)",
            checkpoint.display()
        );
    }
    let ignored: Vec<&str> = [
        ("--meta_file_ext", a.meta_file_ext.is_some()),
        ("--regular_frozen_file_ext", a.regular_frozen_file_ext.is_some()),
        ("--trt_file_ext", a.trt_file_ext.is_some()),
        ("--trt_dynamic_mode", a.trt_dynamic_mode),
        ("--max_batch_size", a.max_batch_size.is_some()),
        ("--trt_min_seg_size", a.trt_min_seg_size.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, given)| given.then_some(f))
    .collect();
    if !ignored.is_empty() {
        eprintln!(
            "aiaa export: {} concern TensorFlow/TensorRT files and have no effect on a TorchScript export",
            ignored.join(", ")
        );
    }
    let output_dir = a.output_dir.clone().unwrap_or_else(|| {
        checkpoint
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
    });
    let model_name = checkpoint
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| a.model_name.clone());
    let job = ExportJob {
        checkpoint: checkpoint.clone(),
        output_dir,
        model_name,
        precision,
        device: a.device,
        engine,
        padding: a.padding,
        labels: a.labels.clone(),
        description: a.description.clone(),
        version: a.version.clone(),
        thresh: a.thresh,
        input_node_names: a.input_node_names.clone(),
        output_node_names: a.output_node_names.clone(),
    };
    let out = tokio::task::spawn_blocking(move || export(&job)).await??;
    println!(
        "Exported {} ({:.2} MB, TorchScript, {}, serves {}) and {} for {}.",
        out.model_path.display(),
        out.model_bytes as f64 / 1e6,
        if precision == Precision::Fp16 {
            "fp16"
        } else {
            "fp32"
        },
        out.torchscript,
        out.config_path.display(),
        out.engine.class()
    );
    if let Some(name) = &a.push {
        let version = a.version.clone().unwrap_or_default();
        let mut argv: Vec<String> = vec![
            "push".into(),
            "--registry".into(),
            a.registry.registry.clone(),
            "--org".into(),
            a.registry.org.clone(),
            "--team".into(),
            a.registry.team.clone(),
            "--model".into(),
            name.clone(),
            "--version".into(),
            version,
            "--type".into(),
            out.engine.model_type().into(),
            "--engine-config".into(),
            out.config_path.to_string_lossy().into_owned(),
        ];
        if let Some(k) = &a.registry.key {
            argv.extend(["--key".into(), k.expose().to_string()]);
        }
        if !a.labels.is_empty() {
            argv.extend(["--labels".into(), a.labels.join(",")]);
        }
        let description = out.config["description"].as_str().unwrap_or_default().to_string();
        argv.extend(["--description".into(), description]);
        argv.push(out.model_path.to_string_lossy().into_owned());
        argv.push(out.config_path.to_string_lossy().into_owned());
        if a.push_checkpoint {
            for f in training_files(&checkpoint, out.config_path.parent().unwrap_or(Path::new(".")))? {
                argv.push(f.to_string_lossy().into_owned());
            }
        }
        let push = PushCommand::try_parse_from(argv).context("building the push request")?;
        crate::models::push(push.args).await?;
    }
    Ok(())
}

/// The checkpoint as `model.ckpt` and its train config as `config_train.json` in `dir`
/// (beside the exported model), for `--push-checkpoint`: the registry's trainer roles pick
/// these names.
fn training_files(checkpoint: &Path, dir: &Path) -> anyhow::Result<[PathBuf; 2]> {
    let ckpt = dir.join(TRAIN_CHECKPOINT);
    let same = match (checkpoint.canonicalize(), ckpt.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        aiaa_files::write_with(&ckpt, |tmp| std::fs::copy(checkpoint, tmp).map(|_| ()))
            .with_context(|| format!("copying {} to {}", checkpoint.display(), ckpt.display()))?;
    }
    let meta = aiaa_nets::checkpoint::read_meta(checkpoint)
        .with_context(|| format!("reading the train config of {}", checkpoint.display()))?;
    let config = dir.join(TRAIN_CONFIG);
    let text = serde_json::to_string_pretty(&meta.train_config)? + "\n";
    aiaa_files::write(&config, text.as_bytes()).with_context(|| format!("writing {}", config.display()))?;
    Ok([ckpt, config])
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        a: super::ExportArgs,
    }

    /// The seed's chapter 7 examples parse.
    #[test]
    fn the_seed_flags_parse() {
        let cli = Cli::try_parse_from([
            "export",
            "--model_file_format",
            "CKPT",
            "--model_file_path",
            "dir",
            "--model_name",
            "model",
            "--input_node_names",
            "NV_INPUT_IMAGE",
            "--output_node_names",
            "NV_OUTPUT_LABEL",
            "--trt_min_seg_size",
            "5",
            "--trt_dynamic_mode",
        ])
        .unwrap();
        assert_eq!(cli.a.input_node_names.as_deref(), Some("NV_INPUT_IMAGE"));
        assert!(cli.a.trt_dynamic_mode);
        let cli = Cli::try_parse_from([
            "export",
            "--model_file_path",
            "dir",
            "--push",
            "annotation_mri_brain",
            "--version",
            "2",
            "--labels",
            "brain,skull",
            "-k",
            "key",
        ])
        .unwrap();
        assert_eq!(cli.a.labels, vec!["brain", "skull"]);
        assert_eq!(cli.a.precision, "FP32");
    }
}
