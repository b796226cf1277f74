//! A job's inputs fetched into its work folder (`inputs/`, `data/`, and `out/` for a run
//! that continues) and the child's command line built from them: `aiaa train segmentation`,
//! `aiaa export` or `aiaa evaluate`.

use std::ffi::OsString;

use aiaa_proto::common::v1::Progress;
use aiaa_train::trainer::LAST_CHECKPOINT;
use serde_json::{Map, Value};

use super::driver::Ctx;
use super::invalid;
use super::record::{ClickProtocol, Spec};
use super::submit::{self, apply_overrides, check_train_config, export_flags};
use crate::error::{Result, TrainerError};
use crate::sources::{RegistryRef, Role, SourceSpec};

/// What a job's inputs became: the child's arguments.
pub(super) struct Prepared {
    pub(super) args: Vec<OsString>,
    /// Training continues (`--resume`) from this step.
    pub(super) resumed: bool,
}

impl Ctx {
    /// Fetches the job's inputs into its work folder and builds the child's command line.
    pub(super) async fn prepare(&mut self) -> Result<Prepared> {
        let (inputs, data, out) = self.dirs();
        for d in [&inputs, &data, &out] {
            tokio::fs::create_dir_all(d)
                .await
                .map_err(|e| TrainerError::io(d, e))?;
        }
        match self.meta.spec.clone() {
            Spec::Training {
                config,
                datalist,
                checkpoint,
                resume,
                overrides,
            } => {
                self.prepare_training(
                    &config,
                    &datalist,
                    checkpoint.as_ref(),
                    resume,
                    overrides.as_ref(),
                )
                .await
            }
            Spec::Export {
                checkpoint,
                options,
                precision,
                push_to,
                with_checkpoint,
            } => {
                self.prepare_export(
                    &checkpoint,
                    options.as_ref(),
                    precision,
                    push_to.as_deref(),
                    with_checkpoint,
                )
                .await
            }
            Spec::Evaluation {
                model,
                config,
                datalist,
                nsd_tolerance_mm,
                interactive,
            } => {
                self.prepare_evaluation(
                    &model,
                    config.as_ref(),
                    &datalist,
                    nsd_tolerance_mm,
                    interactive.as_ref(),
                )
                .await
            }
        }
    }

    /// Reports the datalist's files as they are downloaded.
    fn files_progress(&self) -> impl Fn(u64, u64) + Send + Sync + use<> {
        let h = self.handle.clone();
        move |done: u64, total: u64| {
            h.progress(Progress {
                stage: "download".into(),
                done,
                total,
                unit: "files".into(),
                message: format!("datalist files {done}/{total}"),
            });
        }
    }

    /// `aiaa train segmentation`: the config (overrides applied, checked again), the
    /// datalist and its files, and either the last checkpoint to continue from (from the
    /// work folder or the store) or the weights to fine-tune from.
    async fn prepare_training(
        &mut self,
        config: &SourceSpec,
        datalist: &SourceSpec,
        checkpoint: Option<&SourceSpec>,
        resume: bool,
        overrides: Option<&Map<String, Value>>,
    ) -> Result<Prepared> {
        let fetcher = self.inner.fetcher.clone();
        let settings = self.inner.settings.clone();
        let (inputs, data, out) = self.dirs();
        let what = format!("config ({})", config.describe());
        let text = fetcher
            .json_text(config, Role::TrainConfig, &inputs.join("source"))
            .await?;
        let merged = apply_overrides(&text, overrides, &what)?;
        check_train_config(&merged, &what)?;
        let config_file = inputs.join("config_train.json");
        tokio::fs::write(&config_file, merged.to_string())
            .await
            .map_err(|e| TrainerError::io(&config_file, e))?;
        let datalist_file = fetcher.datalist(datalist, &data, &self.files_progress()).await?;
        let resumed = self.restore_outputs(resume).await?;
        let mut args: Vec<OsString> = vec![
            "train".into(),
            "segmentation".into(),
            "-e".into(),
            config_file.into(),
            "-d".into(),
            datalist_file.into(),
            "-r".into(),
            out.clone().into(),
            "--progress".into(),
            "json".into(),
            "--log_every".into(),
            settings.log_every.to_string().into(),
            "--device".into(),
            settings.device.clone().into(),
        ];
        if resumed {
            args.push("--resume".into());
        } else if let Some(c) = checkpoint {
            let file = fetcher
                .file(c, Role::Checkpoint, &inputs.join("checkpoint"))
                .await?;
            args.extend(["-c".into(), file.into()]);
        }
        Ok(Prepared { args, resumed })
    }

    /// The output folder of a training: for a run that continues (`resume`, or recovered),
    /// the last checkpoint, restored from the store when the work folder lacks it; for a
    /// new one, empty. Returns whether the run continues.
    async fn restore_outputs(&mut self, resume: bool) -> Result<bool> {
        let (_, _, out) = self.dirs();
        let last = out.join(LAST_CHECKPOINT);
        let continuing = resume || self.meta.recovered;
        if continuing && !last.is_file() {
            self.progress("download", 0, 0, "", "fetching the last checkpoint".into());
            let _ = tokio::fs::remove_dir_all(&out).await;
            let found = self
                .inner
                .fetcher
                .store_prefix(&self.meta.output_prefix, &out)
                .await?;
            tracing::info!(job = %self.id(), files = found.len(), "outputs restored from the store");
        }
        let resumed = continuing && last.is_file();
        if resume && !resumed {
            return Err(TrainerError::FailedPrecondition(format!(
                "nothing to resume: {} holds no {LAST_CHECKPOINT}",
                self.meta.output_prefix
            )));
        }
        if !resumed {
            let _ = tokio::fs::remove_dir_all(&out).await;
            tokio::fs::create_dir_all(&out)
                .await
                .map_err(|e| TrainerError::io(&out, e))?;
        }
        Ok(resumed)
    }

    /// `aiaa export`: the checkpoint, the export options as flags, and the registry push
    /// (its version from the options or `push_to`, which must agree).
    async fn prepare_export(
        &mut self,
        checkpoint: &SourceSpec,
        options: Option<&SourceSpec>,
        precision: String,
        push_to: Option<&str>,
        with_checkpoint: bool,
    ) -> Result<Prepared> {
        let fetcher = self.inner.fetcher.clone();
        let settings = self.inner.settings.clone();
        let (inputs, _, out) = self.dirs();
        let ckpt = fetcher
            .file(checkpoint, Role::Checkpoint, &inputs.join("checkpoint"))
            .await?;
        let mut args: Vec<OsString> = vec![
            "export".into(),
            "--model_file_path".into(),
            ckpt.into(),
            "--output_dir".into(),
            out.clone().into(),
            "--trt_precision_mode".into(),
            precision.into(),
            "--device".into(),
            settings.device.clone().into(),
        ];
        let mut option_version = None;
        if let Some(o) = options {
            let what = format!("config ({}, the export options)", o.describe());
            let text = fetcher
                .json_text(o, Role::ExportOptions, &inputs.join("options"))
                .await?;
            let value: Value = serde_json::from_str(&text).map_err(|e| invalid(format!("{what}: {e}")))?;
            args.extend(export_flags(&value, &what)?);
            option_version = submit::option_version(&value).map(str::to_string);
        }
        if let Some(push) = push_to {
            let r = RegistryRef::parse(push)?;
            if let Some(v) = &option_version
                && v != &r.version
            {
                return Err(invalid(format!(
                    "the export options name version {v:?} but push_to is {push}"
                )));
            }
            if option_version.is_none() {
                args.extend(["--version".into(), r.version.clone().into()]);
            }
            args.extend([
                "--push".into(),
                r.model.name.clone().into(),
                "--org".into(),
                r.model.org.clone().into(),
                "--team".into(),
                r.model.team.clone().into(),
                "--registry".into(),
                settings.registry_url.clone().into(),
            ]);
            if with_checkpoint {
                args.push("--push-checkpoint".into());
            }
        }
        Ok(Prepared { args, resumed: false })
    }

    /// `aiaa evaluate`: the model, its config (a registry model's own by default), the
    /// datalist and its files.
    async fn prepare_evaluation(
        &mut self,
        model: &SourceSpec,
        config: Option<&SourceSpec>,
        datalist: &SourceSpec,
        nsd_tolerance_mm: f64,
        interactive: Option<&ClickProtocol>,
    ) -> Result<Prepared> {
        let fetcher = self.inner.fetcher.clone();
        let settings = self.inner.settings.clone();
        let (inputs, data, out) = self.dirs();
        let model_file = fetcher.model(model, &inputs.join("model")).await?;
        let config_source = match (config, model) {
            (Some(c), _) => c.clone(),
            (None, SourceSpec::RegistryRef(r)) => {
                SourceSpec::RegistryRef(RegistryRef::parse(r)?.version_ref())
            }
            (None, _) => return Err(invalid("config is missing")),
        };
        let config_file = fetcher
            .file(&config_source, Role::EvalConfig, &inputs.join("config"))
            .await?;
        let datalist_file = fetcher.datalist(datalist, &data, &self.files_progress()).await?;
        let _ = tokio::fs::remove_dir_all(&out).await;
        let mut args: Vec<OsString> = vec![
            "evaluate".into(),
            "--model_save_path".into(),
            model_file.into(),
            "--config".into(),
            config_file.into(),
            "--output_path".into(),
            out.clone().into(),
            "--data_file".into(),
            datalist_file.into(),
            "--nsd_tolerance_mm".into(),
            nsd_tolerance_mm.to_string().into(),
            "--device".into(),
            settings.device.clone().into(),
        ];
        if let Some(p) = interactive {
            for (flag, value) in [
                ("--interactive", p.clicks.to_string()),
                ("--click_rule", p.rule.clone()),
                ("--click_jitter", p.jitter.to_string()),
                ("--seed", p.seed.to_string()),
            ] {
                args.push(flag.into());
                args.push(value.into());
            }
        }
        Ok(Prepared { args, resumed: false })
    }
}
