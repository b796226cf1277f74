//! [`Trainer::run`]: the steps, progress events, validations, checkpoints, TensorBoard
//! scalars and the summary of one run (see the module docs of [`super`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{BEST_CHECKPOINT, DRY_RUN_STEPS, SUMMARY_FILE, Trainer, write_atomically};
use crate::error::{Result, TrainError};
use crate::loader::Loader;
use crate::progress::{CurvePoint, Event, Outcome, Summary};
use crate::tensorboard::EventWriter;

impl Trainer {
    /// Trains until every epoch is done, `stop` is set (checked at each step boundary), or
    /// an error; see the module docs.
    pub fn run(mut self, stop: &AtomicBool, report: &mut dyn FnMut(&Event)) -> Result<Summary> {
        let mut run = self.start_run()?;
        let bs = self.schedule.batch_size as u64;
        let base_lr = self.config.optimizer.lr();
        let act = self.config.net.final_activation;
        let loader = (run.start_step < run.end_step)
            .then(|| self.train_loader(run.start_step * bs, run.end_step * bs));
        while let Some(loader) = loader.as_ref() {
            if self.position(&run) >= run.end_step {
                break;
            }
            if stop.load(Ordering::SeqCst) {
                run.stopped = true;
                break;
            }
            let lr = self.step(loader, &mut run, base_lr, act)?;
            let epoch_done = self.state.epoch_step == run.spe;
            if epoch_done {
                self.state.epoch += 1;
                self.state.epoch_step = 0;
            }
            self.report_step(&mut run, lr, report);
            if epoch_done && run.write {
                self.end_of_epoch(&mut run, report)?;
            }
        }
        drop(loader);
        self.dry_run_validation(&mut run, report)?;
        let seconds_this_run = run.run_start.elapsed().as_secs_f64();
        if run.write {
            self.final_checkpoints(&mut run, seconds_this_run, report)?;
        }
        let summary = self.summary(run, seconds_this_run);
        if !self.job.dry_run {
            let path = self.job.output_dir.join(SUMMARY_FILE);
            let text = serde_json::to_string_pretty(&summary).unwrap_or_default();
            write_atomically(&path, text.as_bytes())?;
        }
        report(&Event::Summary(summary.clone()));
        Ok(summary)
    }

    /// The run's bounds (a dry run takes [`DRY_RUN_STEPS`]), its output folder and
    /// TensorBoard file (none for a dry run), its clocks started.
    fn start_run(&self) -> Result<RunLoop> {
        let spe = self.schedule.steps_per_epoch();
        let total_steps = self.config.epochs * spe;
        let start_step = self.state.epoch * spe + self.state.epoch_step;
        let end_step = if self.job.dry_run {
            (start_step + DRY_RUN_STEPS).min(total_steps.max(start_step + 1))
        } else {
            total_steps
        };
        let write = !self.job.dry_run;
        if write {
            std::fs::create_dir_all(&self.job.output_dir)
                .map_err(|e| TrainError::io(&self.job.output_dir, e))?;
        }
        let tb = if write {
            Some(EventWriter::create(
                &self.job.output_dir,
                self.job.resume.then_some(self.state.step + 1),
            )?)
        } else {
            None
        };
        Ok(RunLoop {
            spe,
            total_steps,
            start_step,
            end_step,
            write,
            tb,
            run_start: Instant::now(),
            last_save: Instant::now(),
            last_saved_step: None,
            train_time: Duration::ZERO,
            wait_time: Duration::ZERO,
            validation_time: Duration::ZERO,
            last_validation_s: None,
            window: Window::new(),
            last_loss: None,
            stopped: false,
            best_path: None,
            last_path: None,
            steps_this_run: 0,
        })
    }

    /// The global step the schedule stands at.
    fn position(&self, run: &RunLoop) -> u64 {
        self.state.epoch * run.spe + self.state.epoch_step
    }

    /// One optimizer step on the loader's next batch at the learning rate of the policy: its
    /// loss checked, the counters, the progress window and TensorBoard updated. Returns the
    /// learning rate.
    fn step(
        &mut self,
        loader: &Loader,
        run: &mut RunLoop,
        base_lr: f64,
        act: aiaa_nets::FinalActivation,
    ) -> Result<f64> {
        let t0 = Instant::now();
        let batch = loader
            .next_batch(self.schedule.batch_size)?
            .ok_or_else(|| TrainError::Data {
                sample: "(loader)".into(),
                message: "the data loader ended before the schedule".into(),
            })?;
        let lr = self.config.lr_policy.lr_at(base_lr, self.state.step);
        self.optimizer.set_lr(lr);
        let (image, label) = self.with_clicks(&batch.image, &batch.label)?;
        let loss = self
            .train_step(&image, &label, act)
            .map_err(|e| TrainError::Data {
                sample: batch.names.join(", "),
                message: format!("training step {}: {e}", self.state.step + 1),
            })?;
        if !loss.is_finite() {
            return Err(TrainError::Data {
                sample: batch.names.join(", "),
                message: format!(
                    "the loss became {loss} at step {} (epoch {}); lower train.optimizer.lr",
                    self.state.step + 1,
                    self.state.epoch + 1
                ),
            });
        }
        let dt = t0.elapsed();
        run.train_time += dt;
        run.wait_time += batch.wait;
        run.steps_this_run += 1;
        self.state.step += 1;
        self.state.epoch_step += 1;
        run.window.loss += loss;
        run.window.steps += 1;
        run.window.time += dt;
        run.window.wait += batch.wait;
        if let Some(tb) = run.tb.as_mut() {
            tb.scalars(
                self.state.step,
                &[("train/loss", loss), ("train/learning_rate", lr)],
            )?;
        }
        Ok(lr)
    }

    /// A [`Event::Step`] when one is due (every `log_every` steps, or about every 10 s) or
    /// the run's last step is done; the progress window starts again.
    fn report_step(&self, run: &mut RunLoop, lr: f64, report: &mut dyn FnMut(&Event)) {
        let w = &run.window;
        let due = if self.job.log_every == 0 {
            w.last.elapsed() >= Duration::from_secs(10)
        } else {
            w.steps >= self.job.log_every
        };
        let finishing = self.position(run) >= run.end_step;
        if !(due || finishing) {
            return;
        }
        let it_per_s = w.steps as f64 / w.time.as_secs_f64().max(1e-9);
        let left_steps = run.total_steps.saturating_sub(self.state.step);
        let left_validations = if self.validating() {
            let per = self.config.num_training_epoch_per_valid;
            (self.config.epochs / per).saturating_sub(self.state.epoch / per)
        } else {
            0
        };
        let eta_s =
            left_steps as f64 / it_per_s + left_validations as f64 * run.last_validation_s.unwrap_or(0.0);
        run.last_loss = Some(w.loss / w.steps as f64);
        report(&Event::Step {
            epoch: self.state.epoch + u64::from(self.state.epoch_step > 0),
            epochs: self.config.epochs,
            step: self.state.step,
            total_steps: run.total_steps,
            loss: w.loss / w.steps as f64,
            lr,
            it_per_s,
            data_wait: w.wait.as_secs_f64() / w.time.as_secs_f64().max(1e-9),
            eta_s,
        });
        run.window = Window::new();
    }

    /// After an epoch of a run that writes: a validation with its checkpoints when one is
    /// due, else the last checkpoint when `checkpoint_interval_s` has passed.
    fn end_of_epoch(&mut self, run: &mut RunLoop, report: &mut dyn FnMut(&Event)) -> Result<()> {
        let per = self.config.num_training_epoch_per_valid;
        let validate_now = self.validating()
            && (self.state.epoch.is_multiple_of(per) || self.state.epoch == self.config.epochs);
        if validate_now {
            return self.validate_and_save(run, report);
        }
        if run.last_save.elapsed().as_secs_f64() >= self.config.checkpoint_interval_s {
            if let Some(tb) = run.tb.as_mut() {
                tb.flush()?;
            }
            run.last_path = Some(self.save(false, run.run_start.elapsed().as_secs_f64(), report)?);
            run.last_save = Instant::now();
            run.last_saved_step = Some(self.state.step);
        }
        Ok(())
    }

    /// A whole validation: the curve, TensorBoard, the best metric, [`Event::Validation`],
    /// then the best checkpoint (when it is) and the last one.
    fn validate_and_save(&mut self, run: &mut RunLoop, report: &mut dyn FnMut(&Event)) -> Result<()> {
        let tv = Instant::now();
        let metrics = self.validate(None)?;
        let seconds = tv.elapsed().as_secs_f64();
        run.validation_time += tv.elapsed();
        run.last_validation_s = Some(seconds);
        let tag = &self.config.metrics[self.config.stopping_metric()].tag;
        let value = metrics.get(tag).copied().unwrap_or(0.0);
        let best = self.state.best_metric.is_none_or(|b| value > b);
        let elapsed = self.state.elapsed_before + run.run_start.elapsed().as_secs_f64();
        self.state.curve.push(CurvePoint {
            epoch: self.state.epoch,
            step: self.state.step,
            elapsed_s: elapsed,
            metrics: metrics.clone(),
        });
        if let Some(tb) = run.tb.as_mut() {
            let scalars: Vec<(String, f64)> = metrics
                .iter()
                .map(|(k, v)| (format!("validation/{k}"), *v))
                .collect();
            let refs: Vec<(&str, f64)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            tb.scalars(self.state.step, &refs)?;
            tb.flush()?;
        }
        if best {
            self.state.best_metric = Some(value);
            self.state.best_epoch = Some(self.state.epoch);
        }
        report(&Event::Validation {
            epoch: self.state.epoch,
            step: self.state.step,
            metrics,
            best,
            seconds,
        });
        if best {
            run.best_path = Some(self.save(true, run.run_start.elapsed().as_secs_f64(), report)?);
        }
        run.last_path = Some(self.save(false, run.run_start.elapsed().as_secs_f64(), report)?);
        run.last_save = Instant::now();
        run.last_saved_step = Some(self.state.step);
        Ok(())
    }

    /// A dry run's validation: one sample.
    fn dry_run_validation(&mut self, run: &mut RunLoop, report: &mut dyn FnMut(&Event)) -> Result<()> {
        if !(self.job.dry_run && self.validating()) {
            return Ok(());
        }
        let tv = Instant::now();
        let metrics = self.validate(Some(1))?;
        run.validation_time += tv.elapsed();
        report(&Event::Validation {
            epoch: self.state.epoch,
            step: self.state.step,
            metrics,
            best: false,
            seconds: tv.elapsed().as_secs_f64(),
        });
        Ok(())
    }

    /// The end of a run that writes: TensorBoard flushed, the final weights as the best
    /// checkpoint when nothing validates, the last checkpoint unless written at this step.
    fn final_checkpoints(
        &mut self,
        run: &mut RunLoop,
        seconds_this_run: f64,
        report: &mut dyn FnMut(&Event),
    ) -> Result<()> {
        if let Some(tb) = run.tb.as_mut() {
            tb.flush()?;
        }
        if !self.validating() && (!run.stopped || run.steps_this_run > 0) {
            run.best_path = Some(self.save(true, seconds_this_run, report)?);
        }
        // The last checkpoint of the final step is usually written already (by the last
        // validation): write it again only when the state moved on since.
        if run.last_saved_step != Some(self.state.step) {
            run.last_path = Some(self.save(false, seconds_this_run, report)?);
        }
        Ok(())
    }

    /// The run's [`Summary`].
    fn summary(&self, run: RunLoop, seconds_this_run: f64) -> Summary {
        let train_s = run.train_time.as_secs_f64().max(1e-9);
        Summary {
            outcome: if self.job.dry_run {
                Outcome::DryRun
            } else if run.stopped {
                Outcome::Stopped
            } else {
                Outcome::Completed
            },
            epochs_done: self.state.epoch,
            epochs: self.config.epochs,
            steps_done: self.state.step,
            steps_this_run: run.steps_this_run,
            stopping_metric: self
                .validating()
                .then(|| self.config.metrics[self.config.stopping_metric()].tag.clone()),
            best_metric: self.state.best_metric,
            best_epoch: self.state.best_epoch,
            last_metric: self.state.curve.last().and_then(|p| {
                let tag = &self.config.metrics.get(self.config.stopping_metric())?.tag;
                p.metrics.get(tag).copied()
            }),
            last_loss: run.last_loss,
            seconds_this_run,
            seconds_total: self.state.elapsed_before + seconds_this_run,
            it_per_s: run.steps_this_run as f64 / train_s,
            data_wait_share: run.wait_time.as_secs_f64() / train_s,
            validation_seconds: run.validation_time.as_secs_f64(),
            curve: self.state.curve.clone(),
            best_checkpoint: run.best_path.or_else(|| {
                let p = self.job.output_dir.join(BEST_CHECKPOINT);
                (run.write && p.is_file()).then_some(p)
            }),
            last_checkpoint: run.last_path,
        }
    }
}

/// What one call of [`Trainer::run`] keeps: its bounds, clocks, progress window and the
/// checkpoints it wrote.
struct RunLoop {
    /// Steps per epoch.
    spe: u64,
    total_steps: u64,
    start_step: u64,
    /// Where this run stops (a dry run stops early).
    end_step: u64,
    /// Not a dry run: checkpoints, TensorBoard and the summary are written.
    write: bool,
    tb: Option<EventWriter>,
    run_start: Instant,
    last_save: Instant,
    last_saved_step: Option<u64>,
    train_time: Duration,
    wait_time: Duration,
    validation_time: Duration,
    last_validation_s: Option<f64>,
    window: Window,
    last_loss: Option<f64>,
    stopped: bool,
    best_path: Option<PathBuf>,
    last_path: Option<PathBuf>,
    steps_this_run: u64,
}

/// The steps since the last progress event.
struct Window {
    loss: f64,
    steps: u64,
    time: Duration,
    wait: Duration,
    last: Instant,
}

impl Window {
    fn new() -> Window {
        Window {
            loss: 0.0,
            steps: 0,
            time: Duration::ZERO,
            wait: Duration::ZERO,
            last: Instant::now(),
        }
    }
}
