//! Export: a trained checkpoint becomes TorchScript that libtorch (tch::CModule) and PyTorch
//! (torch.jit.load) run to the same probabilities as the network itself, plus the model
//! config the annotation engine needs.

mod common;

use aiaa_nets::Network;
use aiaa_nets::export::Precision;
use aiaa_train::export::{EngineKind, ExportJob, export};
use aiaa_train::{DeviceChoice, TrainConfig, TrainError};
use common::{run_python, tiny_config, train_tiny};
use serde_json::json;
use tch::nn::VarStore;
use tch::{CModule, Device, Kind, Tensor};

fn job(dir: &std::path::Path) -> ExportJob {
    ExportJob {
        checkpoint: dir.join("out/model.ckpt"),
        output_dir: dir.join("exported"),
        model_name: "model".into(),
        precision: Precision::Fp32,
        device: DeviceChoice::Cpu,
        engine: None,
        padding: None,
        labels: vec!["brain".into()],
        description: None,
        version: Some("3".into()),
        thresh: 0.5,
        input_node_names: Some("cond/Merge".into()),
        output_node_names: Some("NV_OUTPUT_LABEL".into()),
    }
}

#[test]
fn exported_torchscript_matches_the_network_in_libtorch_and_pytorch() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train_tiny(d, &tiny_config(3, 3), 2);
    let out = export(&job(d)).unwrap();
    assert_eq!(out.engine, EngineKind::Dextr3dCropped);
    // Checked as the inference service will run it: frozen and optimised for inference.
    assert_eq!(out.torchscript, aiaa_engines::Form::Frozen);
    assert_eq!(out.model_path, d.join("exported/model.pt"));
    let c = &out.config;
    assert_eq!(c["model_format"], "torchscript");
    assert_eq!(c["model_path"], "model.pt");
    assert_eq!(c["type"], "annotation");
    assert_eq!(c["roi"], json!([16, 16, 16]));
    assert_eq!(c["padding"], json!(20.0));
    assert_eq!(c["sigma"], json!(2.0));
    assert_eq!(c["labels"], json!(["brain"]));
    assert_eq!(c["input_nodes"], json!({"image": "cond/Merge"}));
    assert_eq!(c["output_nodes"], json!({"model": "NV_OUTPUT_LABEL"}));
    assert_eq!(
        c["pre_transforms"],
        json!([
            {"name": "transforms.NormalizeIntensity", "fields": "image"},
            {"name": "transforms.AddExtremePointsChannel", "image_field": "image",
             "label_field": "label", "sigma": 2, "pert": 0}
        ])
    );
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out.config_path).unwrap()).unwrap();
    assert_eq!(&on_disk, c);

    // The network as trained, from the checkpoint.
    let meta = aiaa_nets::checkpoint::read_meta(d.join("out/model.ckpt")).unwrap();
    let cfg = TrainConfig::from_json(meta.train_config, &d.join("out/model.ckpt")).unwrap();
    let mut vs = VarStore::new(Device::Cpu);
    let net = Network::new(&vs.root(), &cfg.net, 2, 2).unwrap();
    aiaa_nets::checkpoint::load_weights(d.join("out/model.ckpt"), &mut vs, true).unwrap();
    tch::manual_seed(11);
    // A size other than the traced one: the module is not tied to it.
    let x = Tensor::randn([1, 2, 16, 32, 16], (Kind::Float, Device::Cpu));
    let want = net.predict(&x).unwrap();

    let module = CModule::load(&out.model_path).unwrap();
    let got = tch::no_grad(|| module.forward_ts(&[&x])).unwrap();
    assert_eq!(got.size(), vec![1, 2, 16, 32, 16]);
    let d_tch = (&got - &want).abs().max().double_value(&[]);
    assert!(d_tch < 1e-5, "libtorch: {d_tch}");

    let input = d.join("x.npy");
    let output = d.join("y.npy");
    x.write_npy(&input).unwrap();
    run_python(
        "run_torchscript.py",
        &[
            out.model_path.to_str().unwrap(),
            input.to_str().unwrap(),
            output.to_str().unwrap(),
        ],
    );
    let py = Tensor::read_npy(&output).unwrap();
    assert_eq!(py.size(), want.size());
    let d_py = (&py - &want).abs().max().double_value(&[]);
    assert!(d_py < 1e-5, "PyTorch: {d_py}");
    let sum = py.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    assert!(
        (sum - 1.0).abs().max().double_value(&[]) < 1e-5,
        "softmax probabilities"
    );
    eprintln!("export parity: libtorch {d_tch:.1e}, PyTorch {d_py:.1e}");
}

#[test]
fn fp16_without_cuda_is_a_clear_error_and_writes_nothing() {
    if tch::Cuda::is_available() {
        eprintln!("SKIPPED: CUDA present; the CPU refusal is not exercised");
        return;
    }
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    train_tiny(d, &tiny_config(1, 1), 2);
    let err = export(&ExportJob {
        precision: Precision::Fp16,
        device: DeviceChoice::Auto,
        ..job(d)
    })
    .unwrap_err();
    assert!(
        matches!(&err, TrainError::Unsupported(m) if m.contains("CUDA") && m.contains("FP32")),
        "{err}"
    );
    assert!(!d.join("exported").exists());
}
