//! The shim on small fixture modules (`tests/fixtures`, written by `make_fixtures.py`):
//! freezing and optimising change the graph and not the answers, the serving path falls
//! back when freezing fails, and errors read as libtorch's message without its backtrace.

use std::path::PathBuf;

use aiaa_jit::{Form, JitError, Module, Policy, prepare};
use tch::{Device, Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn input(channels: i64) -> Tensor {
    tch::manual_seed(7);
    Tensor::randn([1, channels, 8, 9, 10], (Kind::Float, Device::Cpu))
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn freezing_and_optimising_change_the_graph_not_the_answer() {
    let plain = Module::load(&fixture("conv_bn.pt"), Device::Cpu).unwrap();
    let frozen = plain.freeze().unwrap();
    let optimized = frozen.optimize_for_inference().unwrap();

    // Frozen: the parameters are constants, no attribute is read any more, and the batch
    // norm is folded into the convolution.
    let (g_plain, g_frozen, g_opt) = (
        plain.graph().unwrap(),
        frozen.graph().unwrap(),
        optimized.graph().unwrap(),
    );
    assert!(g_plain.contains("prim::GetAttr"), "{g_plain}");
    assert!(
        g_plain.contains("batch_norm") || g_plain.contains("CallMethod"),
        "{g_plain}"
    );
    assert!(!g_frozen.contains("prim::GetAttr"), "{g_frozen}");
    assert!(!g_frozen.contains("batch_norm"), "{g_frozen}");
    // Optimised on the CPU: convolutions run in oneDNN (PyPI's torch is built with it).
    assert!(g_opt.contains("mkldnn"), "{g_opt}");
    // The frozen module was not changed by optimising a copy of it.
    assert_eq!(frozen.graph().unwrap(), g_frozen);

    // Same answers; the first tensor of the (softmax, logits) tuple is what comes back.
    let x = input(2);
    let y = plain.forward(&x).unwrap();
    assert_eq!(y.size(), [1, 2, 8, 9, 10]);
    let sums = y.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    assert!(max_diff(&sums, &Tensor::ones_like(&sums)) < 1e-5);
    for m in [&frozen, &optimized] {
        let d = max_diff(&y, &m.forward(&x).unwrap());
        assert!(d < 1e-5, "{d}");
    }
    // The plain module still runs after being frozen from.
    assert!(max_diff(&y, &plain.forward(&x).unwrap()) == 0.0);
}

#[test]
fn forward_runs_under_inference_mode() {
    let m = Module::load(&fixture("conv_bn.pt"), Device::Cpu).unwrap();
    let x = input(2).set_requires_grad(true);
    let y = m.forward(&x).unwrap();
    // No graph is recorded even for an input that asks for gradients.
    assert!(!y.requires_grad());
}

#[test]
fn the_serving_path_freezes_optimises_and_warms_up() {
    let warm = [
        input(2),
        Tensor::zeros([2, 2, 4, 4, 4], (Kind::Float, Device::Cpu)),
    ];
    let p = prepare(
        "conv_bn",
        &fixture("conv_bn.pt"),
        Device::Cpu,
        Policy::Freeze,
        &warm,
    )
    .unwrap();
    assert_eq!(p.form, Form::Frozen);
    assert!(p.warmed);
    assert!(p.module.graph().unwrap().contains("mkldnn"));

    let p = prepare(
        "conv_bn",
        &fixture("conv_bn.pt"),
        Device::Cpu,
        Policy::Plain,
        &warm,
    )
    .unwrap();
    assert_eq!(p.form, Form::Plain);
    assert!(p.warmed);
    assert!(p.module.graph().unwrap().contains("prim::GetAttr"));
}

#[test]
fn a_module_freezing_refuses_serves_as_loaded() {
    // Reassigning an interface-typed submodule in forward: torch::jit::freeze refuses.
    let m = Module::load(&fixture("unfreezable.pt"), Device::Cpu).unwrap();
    let e = m.freeze().unwrap_err();
    assert!(matches!(e, JitError::Freeze(_)), "{e}");
    assert!(e.to_string().contains("interface"), "{e}");
    assert!(!e.to_string().contains("Exception raised from"), "{e}");

    let x = Tensor::ones([3], (Kind::Float, Device::Cpu));
    let p = prepare(
        "unfreezable",
        &fixture("unfreezable.pt"),
        Device::Cpu,
        Policy::Freeze,
        &[x.shallow_clone()],
    )
    .unwrap();
    assert_eq!(p.form, Form::Plain);
    assert!(p.warmed);
    assert_eq!(max_diff(&p.module.forward(&x).unwrap(), &(&x * 3.0)), 0.0);
}

#[test]
fn inputs_no_form_can_run_leave_the_fastest_form_unwarmed() {
    // Three channels for a two-channel network: the engine's guess is wrong, not freezing.
    let p = prepare(
        "conv_bn",
        &fixture("conv_bn.pt"),
        Device::Cpu,
        Policy::Freeze,
        &[input(3)],
    )
    .unwrap();
    assert_eq!(p.form, Form::Frozen);
    assert!(!p.warmed);
    assert_eq!(p.module.forward(&input(2)).unwrap().size(), [1, 2, 8, 9, 10]);
}

#[test]
fn errors_name_the_file_and_libtorchs_reason_without_the_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not_a_model.pt");
    std::fs::write(&bad, b"this is not a zip archive").unwrap();
    let e = Module::load(&bad, Device::Cpu).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, JitError::Load { .. }), "{msg}");
    assert!(msg.contains("not_a_model.pt"), "{msg}");
    assert!(
        msg.contains("zip archive") || msg.contains("PytorchStreamReader"),
        "{msg}"
    );
    assert!(!msg.contains("Exception raised from"), "{msg}");
    let e = prepare(
        "missing",
        &dir.path().join("missing.pt"),
        Device::Cpu,
        Policy::Freeze,
        &[],
    )
    .unwrap_err();
    assert!(matches!(e, JitError::Load { .. }), "{e}");

    let m = Module::load(&fixture("conv_bn.pt"), Device::Cpu).unwrap();
    let e = m.forward(&input(5)).unwrap_err();
    assert!(matches!(e, JitError::Forward(_)), "{e}");
    assert!(!e.to_string().contains("Exception raised from"), "{e}");

    let e = Module::load(&fixture("conv_bn.pt"), Device::Mps).unwrap_err();
    assert!(matches!(e, JitError::Device(_)), "{e}");
}

/// On a machine with a GPU: the same serving path on CUDA, same answers as on the CPU.
/// Elsewhere it says it did not run.
#[test]
fn cuda_serves_frozen_too() {
    if !tch::Cuda::is_available() {
        eprintln!("NOT RUN: no CUDA device; the CUDA path is checked only on a GPU machine");
        return;
    }
    let x = input(2);
    let cpu = prepare(
        "conv_bn",
        &fixture("conv_bn.pt"),
        Device::Cpu,
        Policy::Freeze,
        &[x.shallow_clone()],
    )
    .unwrap();
    let gpu = prepare(
        "conv_bn",
        &fixture("conv_bn.pt"),
        Device::Cuda(0),
        Policy::Freeze,
        &[x.shallow_clone()],
    )
    .unwrap();
    assert_eq!(gpu.form, Form::Frozen);
    assert!(gpu.warmed);
    let y_gpu = gpu
        .module
        .forward(&x.to_device(Device::Cuda(0)))
        .unwrap()
        .to_device(Device::Cpu);
    let d = max_diff(&cpu.module.forward(&x).unwrap(), &y_gpu);
    assert!(d < 1e-4, "{d}");
}
