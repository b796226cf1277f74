//! Training end to end on a synthetic phantom: the tiny networks learn a sphere in noise, and a
//! checkpointed run resumes exactly.

use std::sync::Mutex;
use std::time::Instant;

use aiaa_nets::checkpoint::{self, CheckpointMeta};
use aiaa_nets::losses::Loss;
use aiaa_nets::lr_policy::LrPolicy;
use aiaa_nets::metric::MetricAverageFromArrayDice;
use aiaa_nets::optim::OptimizerConfig;
use aiaa_nets::{NetConfig, Network};
use serde_json::{Value, json};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// The tests share libtorch's global random generator and the machine's two cores: one at a
/// time.
static TORCH: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    let guard = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    guard
}

/// `n` volumes `[n, 1, s, s, s]` holding spheres (random centre and radius) of intensity 1 in
/// Gaussian noise of σ 0.5, and their labels `[n, 1, s, s, s]`.
fn phantoms(n: i64, s: i64, seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let opts = (Kind::Float, Device::Cpu);
    let ax = Tensor::arange(s, opts);
    let (i, j, k) = (ax.view([s, 1, 1]), ax.view([1, s, 1]), ax.view([1, 1, s]));
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for _ in 0..n {
        let c = Tensor::rand([3], opts) * (s as f64 / 3.0) + (s as f64 / 3.0);
        let r = Tensor::rand([1], opts).double_value(&[0]) * (s as f64 / 8.0) + s as f64 / 5.0;
        let d2 = (&i - c.double_value(&[0])).square()
            + (&j - c.double_value(&[1])).square()
            + (&k - c.double_value(&[2])).square();
        let label = d2.le(r * r).to_kind(Kind::Float);
        let image = &label + Tensor::randn([s, s, s], opts) * 0.5;
        images.push(image.view([1, 1, s, s, s]));
        labels.push(label.view([1, 1, s, s, s]));
    }
    (Tensor::cat(&images, 0), Tensor::cat(&labels, 0))
}

fn train_config(net: Value) -> Value {
    json!({
        "num_channels": 1,
        "num_classes": 2,
        "net_config": net,
        "train": {
            "loss": {"name": "losses.dice_ce_loss"},
            "optimizer": {"name": "Adam", "lr": 1e-2, "epsilon": 1e-4},
            "lr_policy": {"name": "lr_policy.DecayLRonStep", "decay_ratio": 0.5, "decay_freq": 40}
        }
    })
}

/// Trains on two phantoms until their mean Dice (evaluation mode) exceeds 0.9; returns the
/// steps it took and the Dice reached.
fn overfit(net_json: Value, max_steps: u64) -> (u64, f64) {
    let cfg = train_config(net_json);
    let net_cfg = NetConfig::from_json(&cfg["net_config"]).unwrap();
    let loss = Loss::from_json(&cfg["train"]["loss"]).unwrap();
    let opt_cfg = OptimizerConfig::from_json(&cfg["train"]["optimizer"]).unwrap();
    let policy = LrPolicy::from_json(&cfg["train"]["lr_policy"]).unwrap();
    let (images, labels) = phantoms(2, 16, 1);
    tch::manual_seed(2);
    let vs = VarStore::new(Device::Cpu);
    let net = Network::new(&vs.root(), &net_cfg, 1, 2).unwrap();
    let mut opt = opt_cfg.build(&vs).unwrap();
    let start = Instant::now();
    let mut dice = 0.0;
    for step in 0..max_steps {
        opt.set_lr(policy.lr_at(opt_cfg.lr(), step));
        let logits = net.forward_t(&images, true).unwrap();
        let l = loss.compute(&logits, &labels, net_cfg.final_activation).unwrap();
        opt.backward_step(&l).unwrap();
        if step % 5 == 4 {
            let mut metric = MetricAverageFromArrayDice::new(0.5);
            metric.update(&net.predict(&images).unwrap(), &labels).unwrap();
            dice = metric.aggregate().unwrap();
            if dice > 0.9 {
                eprintln!(
                    "{}: Dice {dice:.3} after {} steps, {:.1} s",
                    net_cfg.name.as_str(),
                    step + 1,
                    start.elapsed().as_secs_f64()
                );
                return (step + 1, dice);
            }
        }
    }
    (max_steps, dice)
}

#[test]
fn tiny_unet_overfits_a_phantom() {
    let _g = lock();
    let (steps, dice) = overfit(json!({"name": "UNet3D", "num_filters": 4, "levels": 2}), 60);
    assert!(dice > 0.9, "UNet3D reached Dice {dice} in {steps} steps");
}

#[test]
fn tiny_ahnet_with_psp_overfits_a_phantom() {
    let _g = lock();
    let (steps, dice) = overfit(
        json!({"name": "SegmAhnet3D", "num_filters": 4, "levels": 2, "if_use_psp": true}),
        60,
    );
    assert!(dice > 0.9, "SegmAhnet3D reached Dice {dice} in {steps} steps");
}

/// Shapes, and errors for inputs the network cannot take.
#[test]
fn networks_shapes_and_input_checks() {
    let _g = lock();
    for net in [
        json!({"name": "UNet3D", "num_filters": 2, "levels": 3, "norm": "batch", "downsample": "strided"}),
        json!({"name": "SegmAhnet3D", "num_filters": 2, "levels": 3}),
        json!({"name": "SegmAhnet3D", "num_filters": 2, "levels": 1, "if_use_psp": true, "final_activation": "sigmoid"}),
    ] {
        let cfg = NetConfig::from_json(&net).unwrap();
        let vs = VarStore::new(Device::Cpu);
        let network = Network::new(&vs.root(), &cfg, 2, 3).unwrap();
        let [a, b, c] = cfg.spatial_divisor();
        let xs = Tensor::randn([2, 2, 2 * a, b, 3 * c], (Kind::Float, Device::Cpu));
        let y = network.forward_t(&xs, true).unwrap();
        assert_eq!(y.size(), vec![2, 3, 2 * a, b, 3 * c], "{net}");
        let p = network.predict(&xs).unwrap();
        let (lo, hi) = (p.min().double_value(&[]), p.max().double_value(&[]));
        assert!(
            (0.0..=1.0).contains(&lo) && hi <= 1.0,
            "{net}: activation range {lo}..{hi}"
        );
        let bad_size = Tensor::zeros([1, 2, a + 1, b, c], (Kind::Float, Device::Cpu));
        assert!(matches!(
            network.forward_t(&bad_size, false),
            Err(aiaa_nets::NetsError::Shape(_))
        ));
        let bad_channels = Tensor::zeros([1, 1, a, b, c], (Kind::Float, Device::Cpu));
        assert!(matches!(
            network.forward_t(&bad_channels, false),
            Err(aiaa_nets::NetsError::Shape(_))
        ));
        assert!(vs.variables().keys().all(|k| !k.is_empty()));
    }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Save after 3 steps, take a 4th; a fresh network and optimizer loaded from the checkpoint
/// give identical outputs and an identical 4th step, for Adam and SGD with Nesterov momentum.
#[test]
fn checkpoint_resume_is_exact() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    for (net_json, opt_json) in [
        (
            json!({"name": "UNet3D", "num_filters": 3, "levels": 2, "norm": "batch"}),
            json!({"name": "Adam", "lr": 1e-2, "epsilon": 1e-4, "weight_decay": 1e-4}),
        ),
        (
            json!({"name": "SegmAhnet3D", "num_filters": 3, "levels": 2, "if_use_psp": true}),
            json!({"name": "SGD", "lr": 1e-2, "momentum": 0.9, "nesterov": true}),
        ),
    ] {
        let cfg = json!({"num_channels": 1, "num_classes": 2, "net_config": net_json,
                         "train": {"loss": {"name": "losses.dice_loss"}, "optimizer": opt_json}});
        let net_cfg = NetConfig::from_json(&cfg["net_config"]).unwrap();
        let opt_cfg = OptimizerConfig::from_json(&cfg["train"]["optimizer"]).unwrap();
        let loss = Loss::from_json(&cfg["train"]["loss"]).unwrap();
        let (images, labels) = phantoms(2, 16, 3);
        let step = |net: &Network, opt: &mut aiaa_nets::optim::Optimizer| {
            let l = loss
                .compute(
                    &net.forward_t(&images, true).unwrap(),
                    &labels,
                    net_cfg.final_activation,
                )
                .unwrap();
            opt.backward_step(&l).unwrap();
        };

        tch::manual_seed(10);
        let vs = VarStore::new(Device::Cpu);
        let net = Network::new(&vs.root(), &net_cfg, 1, 2).unwrap();
        let mut opt = opt_cfg.build(&vs).unwrap();
        for _ in 0..3 {
            step(&net, &mut opt);
        }
        opt.set_lr(0.005);
        let path = dir.path().join("last.ckpt");
        let meta = CheckpointMeta {
            epoch: 1,
            step: opt.steps(),
            best_metric: Some(0.25),
            train_config: cfg.clone(),
            extra: json!({"seed": 10}),
        };
        checkpoint::save(&path, &vs, Some(&opt), &meta).unwrap();
        let before = net.predict(&images).unwrap();
        step(&net, &mut opt);
        let after = net.predict(&images).unwrap();

        tch::manual_seed(99);
        let mut vs2 = VarStore::new(Device::Cpu);
        let read = checkpoint::read_meta(&path).unwrap();
        let net2_cfg = NetConfig::from_json(&read.train_config["net_config"]).unwrap();
        let net2 = Network::new(&vs2.root(), &net2_cfg, 1, 2).unwrap();
        let mut opt2 = OptimizerConfig::from_json(&read.train_config["train"]["optimizer"])
            .unwrap()
            .build(&vs2)
            .unwrap();
        let got = checkpoint::load(&path, &mut vs2, Some(&mut opt2)).unwrap();
        assert_eq!(got, meta);
        assert_eq!((opt2.steps(), opt2.lr()), (3, 0.005));
        assert_eq!(
            max_diff(&net2.predict(&images).unwrap(), &before),
            0.0,
            "{}",
            net_cfg.name.as_str()
        );
        step(&net2, &mut opt2);
        assert_eq!(
            max_diff(&net2.predict(&images).unwrap(), &after),
            0.0,
            "{}",
            net_cfg.name.as_str()
        );
        let v1 = vs.variables();
        for (name, t) in vs2.variables() {
            assert_eq!(
                max_diff(&t, &v1[&name]),
                0.0,
                "{name} differs after the resumed step"
            );
        }

        // Fine-tuning: weights only, into a network without an optimizer state.
        let mut vs3 = VarStore::new(Device::Cpu);
        let net3 = Network::new(&vs3.root(), &net_cfg, 1, 2).unwrap();
        let report = checkpoint::load_weights(&path, &mut vs3, true).unwrap();
        assert!(report.missing.is_empty() && report.unused.is_empty());
        assert_eq!(max_diff(&net3.predict(&images).unwrap(), &before), 0.0);
        // A network of another width does not resume.
        let mut vs4 = VarStore::new(Device::Cpu);
        let wider = NetConfig {
            num_filters: 4,
            ..net_cfg.clone()
        };
        let _net4 = Network::new(&vs4.root(), &wider, 1, 2).unwrap();
        assert!(matches!(
            checkpoint::load(&path, &mut vs4, None),
            Err(aiaa_nets::NetsError::Checkpoint { .. })
        ));
    }
}
