//! [`Trainer::prepare`]: every input checked before any step (config, datalist and its
//! files, output folder, devices, starting weights), the network, optimizer and data built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aiaa_nets::Network;
use aiaa_nets::checkpoint::{self, CheckpointMeta};
use aiaa_nets::optim::Optimizer;
use aiaa_nets::parallel::DataParallel;
use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::{
    BEST_CHECKPOINT, LAST_CHECKPOINT, RunState, TrainJob, Trainer, channels_last, checkpoint_error,
    checkpoint_file, pick_devices,
};
use crate::config::{AUTO_CACHE_LIMIT_BYTES, TrainConfig};
use crate::data::FileCache;
use crate::datalist::{Datalist, Split};
use crate::error::{Result, TrainError};
use crate::loader::Schedule;
use crate::progress::Event;

/// The train config (with `--epochs`) and the datalist, checked against each other: a
/// validation list needs the config's validation, and a config that validates without a
/// validation list is told so.
fn read_config_and_datalist(
    job: &TrainJob,
    report: &mut dyn FnMut(&Event),
) -> Result<(TrainConfig, Datalist)> {
    let mut config = TrainConfig::read(&job.config)?;
    if let Some(e) = job.epochs {
        if e == 0 {
            return Err(TrainError::Config {
                file: job.config.clone(),
                key: "epochs".into(),
                message: "--epochs must be at least 1".into(),
            });
        }
        config.epochs = e;
    }
    let mut label_required = vec![Split::Training];
    if config.has_validation() {
        label_required.push(Split::Validation);
    }
    let datalist = Datalist::read(&job.datalist, job.file_root.as_deref(), &label_required)?;
    if !datalist.validation.is_empty() && !config.has_validation() {
        return Err(TrainError::Config {
            file: config.file.clone(),
            key: "validate".into(),
            message: format!(
                "the datalist {} has a validation list; validating needs validate.metrics and \
                 validate.pre_transforms",
                datalist.file.display()
            ),
        });
    }
    if datalist.validation.is_empty() && config.has_validation() {
        report(&Event::Message {
            text: format!(
                "the datalist {} has no validation list: no validation; {BEST_CHECKPOINT} will hold the final weights",
                datalist.file.display()
            ),
        });
    }
    Ok((config, datalist))
}

/// The output folder: a new run must not overwrite another; a resumed one needs its
/// checkpoint (a dry run writes nothing and is not checked).
fn check_output_dir(job: &TrainJob) -> Result<()> {
    let last = job.output_dir.join(LAST_CHECKPOINT);
    if job.resume && job.checkpoint.is_some() {
        return Err(TrainError::Checkpoint {
            path: last,
            message: "--resume continues the run in the output folder; -c starts a new one from \
                      other weights: give one of them"
                .into(),
        });
    }
    if !job.dry_run {
        if job.resume && !last.is_file() {
            return Err(TrainError::Checkpoint {
                path: last,
                message: "nothing to resume: the output folder holds no last checkpoint".into(),
            });
        }
        if !job.resume && last.exists() {
            return Err(TrainError::Checkpoint {
                path: last,
                message: "the output folder already holds a training run; use --resume to continue \
                          it, or another output folder"
                    .into(),
            });
        }
    }
    Ok(())
}

/// The replicas of `multi_gpu` on `extra_devices` (none without them).
fn data_parallel(
    vs: &VarStore,
    config: &TrainConfig,
    extra_devices: &[Device],
) -> Result<Option<DataParallel>> {
    if extra_devices.is_empty() {
        return Ok(None);
    }
    let dp = DataParallel::new(
        vs,
        &config.net,
        config.num_channels,
        config.num_classes,
        extra_devices,
    )
    .map_err(|e| TrainError::nets("multi_gpu", e))?;
    for rvs in dp.replica_var_stores() {
        if rvs.device() == Device::Cpu {
            channels_last(rvs)?;
        }
    }
    Ok(Some(dp))
}

/// Where the run starts: `--resume` loads the last checkpoint (weights, optimizer, run
/// state); otherwise `-c` or the config's pretrained weights are loaded for fine-tuning,
/// when given.
fn starting_weights(
    job: &TrainJob,
    config: &TrainConfig,
    vs: &mut VarStore,
    optimizer: &mut Optimizer,
    schedule: Schedule,
    report: &mut dyn FnMut(&Event),
) -> Result<RunState> {
    let last = job.output_dir.join(LAST_CHECKPOINT);
    if job.resume && last.is_file() {
        let meta = checkpoint::load(&last, vs, Some(optimizer)).map_err(|e| checkpoint_error(&last, e))?;
        return Ok(state_from_meta(&meta, schedule, report));
    }
    let weights = match &job.checkpoint {
        Some(c) => Some(checkpoint_file(c)?),
        None => config.net.pretrained_weights().map(PathBuf::from),
    };
    if let Some(w) = weights {
        fine_tune_from(&w, vs, report)?;
    }
    Ok(RunState::default())
}

/// Loads the weights of `w` that fit the network (the others stay as initialised) and says
/// what was loaded.
fn fine_tune_from(w: &Path, vs: &mut VarStore, report: &mut dyn FnMut(&Event)) -> Result<()> {
    let r = checkpoint::load_weights(w, vs, false).map_err(|e| checkpoint_error(w, e))?;
    if r.loaded.is_empty() {
        return Err(TrainError::Checkpoint {
            path: w.to_path_buf(),
            message: "none of its tensors fits the network of net_config".into(),
        });
    }
    let mut text = format!(
        "fine-tuning from {}: {} variables loaded",
        w.display(),
        r.loaded.len()
    );
    if !r.missing.is_empty() || !r.mismatched.is_empty() {
        text += &format!(
            "; kept as initialised: {} missing, {} of another shape ({})",
            r.missing.len(),
            r.mismatched.len(),
            r.missing
                .iter()
                .chain(&r.mismatched)
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    report(&Event::Message { text });
    Ok(())
}

/// Every datalist file decoded and checked (foreground where a transform needs it), cached
/// as the config says.
fn load_files(config: &TrainConfig, datalist: &Datalist) -> Result<FileCache> {
    let mut foreground = vec![(
        Split::Training,
        TrainConfig::foreground_fields(&config.train_transforms),
    )];
    foreground.push((
        Split::Validation,
        TrainConfig::foreground_fields(&config.validate_transforms),
    ));
    FileCache::load(
        datalist,
        &foreground,
        config.cache_data,
        AUTO_CACHE_LIMIT_BYTES,
        config.num_workers,
    )
}

impl Trainer {
    /// Checks everything and builds the network, optimizer and data; see the module docs.
    pub fn prepare(job: TrainJob, report: &mut dyn FnMut(&Event)) -> Result<Trainer> {
        let (config, datalist) = read_config_and_datalist(&job, report)?;
        let train_pipeline = Arc::new(config.train_pipeline()?);
        let validate_pipeline = Arc::new(config.validate_pipeline()?);
        check_output_dir(&job)?;

        if let Some(n) = job.torch_threads {
            tch::set_num_threads(n.max(1) as i32);
        }
        let (device, extra_devices) = pick_devices(job.device, config.multi_gpu, job.cpu_replicas, report)?;
        tch::manual_seed(config.seed as i64);
        let mut vs = VarStore::new(device);
        let net = Network::new(&vs.root(), &config.net, config.num_channels, config.num_classes)
            .map_err(|e| TrainError::nets("net_config", e))?;
        if device == Device::Cpu {
            channels_last(&vs)?;
        }
        let mut optimizer = config
            .optimizer
            .build(&vs)
            .map_err(|e| TrainError::nets("train.optimizer", e))?;
        let parallel = data_parallel(&vs, &config, &extra_devices)?;
        // As with the seed's Horovod runs, `batch_size` is per device: a step takes one batch
        // per device, and an epoch has that many times fewer steps.
        let schedule = Schedule {
            items: datalist.training.len(),
            batch_size: config.batch_size * (1 + extra_devices.len()),
            seed: config.seed,
        };
        let state = starting_weights(&job, &config, &mut vs, &mut optimizer, schedule, report)?;
        let cache = load_files(&config, &datalist)?;
        let trainer = Trainer {
            job,
            config,
            datalist,
            cache: Arc::new(cache),
            train_pipeline,
            validate_pipeline,
            device,
            vs,
            net,
            parallel,
            optimizer,
            schedule,
            state,
            validation_cache: None,
        };
        report(&trainer.start_event());
        Ok(trainer)
    }

    /// [`Event::Start`]: what the prepared run will do.
    fn start_event(&self) -> Event {
        Event::Start {
            device: self.devices().join(","),
            parameters: self
                .vs
                .trainable_variables()
                .iter()
                .map(Tensor::numel)
                .sum::<usize>() as i64,
            training_items: self.datalist.training.len(),
            validation_items: self.datalist.validation.len(),
            files: self.cache.files,
            decoded_bytes: self.cache.total_bytes,
            cached: self.cache.enabled,
            steps_per_epoch: self.schedule.steps_per_epoch(),
            epochs: self.config.epochs,
            start_epoch: self.state.epoch,
            start_step: self.state.step,
            num_workers: self.config.num_workers,
        }
    }
}

/// The run state a last checkpoint records.
fn state_from_meta(meta: &CheckpointMeta, schedule: Schedule, report: &mut dyn FnMut(&Event)) -> RunState {
    let extra = &meta.extra;
    let mut epoch_step = extra["epoch_step"].as_u64().unwrap_or(0);
    let spe = schedule.steps_per_epoch();
    if extra["steps_per_epoch"].as_u64() != Some(spe) || meta.epoch * spe + epoch_step != meta.step {
        report(&Event::Message {
            text: format!(
                "the checkpoint's schedule ({} steps per epoch) differs from this datalist and batch size \
                 ({spe}): resuming at the start of epoch {}",
                extra["steps_per_epoch"],
                meta.epoch + 1
            ),
        });
        epoch_step = 0;
    }
    RunState {
        epoch: meta.epoch,
        epoch_step,
        step: meta.step,
        best_metric: meta.best_metric,
        best_epoch: extra["best_epoch"].as_u64(),
        curve: serde_json::from_value(extra["curve"].clone()).unwrap_or_default(),
        elapsed_before: extra["elapsed_s"].as_f64().unwrap_or(0.0),
    }
}
