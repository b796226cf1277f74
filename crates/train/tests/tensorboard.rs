//! Our event files read back by PyPI tensorboard's EventAccumulator (what `tensorboard
//! --logdir` uses): the scalars of a real run, and a resumed run's files without duplicate
//! steps.

mod common;

use aiaa_train::Event;
use aiaa_train::tensorboard::EventWriter;
use common::{run_python, tiny_config, train_tiny};
use serde_json::Value;

fn read(dir: &std::path::Path) -> Value {
    serde_json::from_str(&run_python("read_events.py", &[dir.to_str().unwrap()])).unwrap()
}

#[test]
fn event_accumulator_reads_the_training_scalars() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let (summary, events) = train_tiny(dir.path(), &tiny_config(4, 2), 2);
    let scalars = read(&dir.path().join("out"));
    // Every step's loss and learning rate, as the progress events reported them.
    let loss = scalars["train/loss"].as_array().unwrap();
    let lr = scalars["train/learning_rate"].as_array().unwrap();
    assert_eq!(loss.len() as u64, summary.steps_done, "{scalars}");
    assert_eq!(lr.len(), loss.len());
    let steps: Vec<u64> = loss.iter().map(|p| p[0].as_u64().unwrap()).collect();
    assert_eq!(steps, (1..=summary.steps_done).collect::<Vec<_>>());
    let reported: Vec<(u64, f64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step { step, loss, .. } => Some((*step, *loss)),
            _ => None,
        })
        .collect();
    assert_eq!(
        reported.len() as u64,
        summary.steps_done,
        "log_every 1: one event per step"
    );
    for ((step, want), got) in reported.iter().zip(loss) {
        let got = got[1].as_f64().unwrap();
        assert!(
            (got - want).abs() <= 1e-6 * want.abs().max(1.0),
            "step {step}: {got} vs {want}"
        );
    }
    assert!((lr[0][1].as_f64().unwrap() - 1e-2).abs() < 1e-9);
    // Validation every 2 epochs: the curve of the summary.
    let dice = scalars["validation/mean_dice"].as_array().unwrap();
    assert_eq!(dice.len(), summary.curve.len());
    assert_eq!(dice.len(), 2);
    for (p, c) in dice.iter().zip(&summary.curve) {
        assert_eq!(p[0].as_u64(), Some(c.step));
        assert!((p[1].as_f64().unwrap() - c.metrics["mean_dice"]).abs() < 1e-6);
    }
}

#[test]
fn a_resumed_run_has_no_duplicate_steps() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The interrupted run got to step 6; its last checkpoint was at step 4.
        let mut w = EventWriter::create(dir.path(), None).unwrap();
        for s in 1..=6 {
            w.scalars(s, &[("train/loss", 1.0)]).unwrap();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(1100)); // a later file name
    {
        let mut w = EventWriter::create(dir.path(), Some(5)).unwrap();
        for s in 5..=8 {
            w.scalars(s, &[("train/loss", 2.0)]).unwrap();
        }
    }
    let scalars = read(dir.path());
    let points: Vec<(u64, f64)> = scalars["train/loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
        .collect();
    assert_eq!(
        points,
        vec![
            (1, 1.0),
            (2, 1.0),
            (3, 1.0),
            (4, 1.0),
            (5, 2.0),
            (6, 2.0),
            (7, 2.0),
            (8, 2.0)
        ]
    );
}
