//! Parity with Python: exported TorchScript models load and agree in `torch.jit.load`, and our
//! sliding window agrees with MONAI's `sliding_window_inference`.
//!
//! Python is the torch virtualenv of `scripts/env.sh` (`$AIAA_TORCH_VENV/bin/python`, torch
//! and monai installed). Without it these tests print why and pass without checking.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use aiaa_nets::export::{ExportOptions, export_torchscript};
use aiaa_nets::sliding_window::{BlendMode, SlidingWindow};
use aiaa_nets::{NetConfig, Network};
use serde_json::json;
use tch::nn::{self, VarStore};
use tch::{CModule, Device, Kind, Tensor};

static TORCH: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    let guard = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    guard
}

fn run_python(py: &Path, script: &str, args: &[&Path]) -> String {
    let out = Command::new(py)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "python failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Raw little-endian float32, the shape kept by the caller.
fn write_f32(path: &Path, t: &Tensor) {
    let v = Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().flatten(0, -1)).unwrap();
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

fn read_f32(path: &Path, shape: &[i64]) -> Tensor {
    let bytes = std::fs::read(path).unwrap();
    let v: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Tensor::from_slice(&v).reshape(shape)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

const JIT_SCRIPT: &str = r#"
import json, sys
import numpy as np, torch
torch.set_num_threads(2)
for c in json.load(open(sys.argv[1])):
    m = torch.jit.load(c["model"], map_location="cpu")
    m.eval()
    x = torch.from_numpy(np.fromfile(c["input"], dtype="<f4").reshape(c["shape"]))
    with torch.no_grad():
        y = m(x)
    y.numpy().astype("<f4").tofile(c["output"])
"#;

/// Exported fp32 models: the reloaded TorchScript module and Python's `torch.jit.load` both
/// give the Rust forward's output (within 1e-5), also at a size other than the traced one.
#[test]
fn exported_torchscript_matches_rust_and_python() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();
    let mut expected = Vec::new();
    for (n, net_json) in [
        json!({"name": "UNet3D", "num_filters": 3, "levels": 2, "norm": "batch"}),
        json!({"name": "SegmAhnet3D", "num_filters": 4, "levels": 1, "if_use_psp": true}),
    ]
    .into_iter()
    .enumerate()
    {
        tch::manual_seed(5);
        let cfg = NetConfig::from_json(&net_json).unwrap();
        let vs = VarStore::new(Device::Cpu);
        let net = Network::new(&vs.root(), &cfg, 2, 3).unwrap();
        // A few training-mode passes so that batch-norm running statistics are not trivial.
        for _ in 0..3 {
            let xs = Tensor::randn([2, 2, 8, 8, 8], (Kind::Float, Device::Cpu));
            let _ = tch::no_grad(|| net.forward_t(&xs, true)).unwrap();
        }
        let path = dir.path().join(format!("model{n}.pt"));
        export_torchscript(&cfg, 2, 3, &vs, &ExportOptions::default(), &path).unwrap();
        let module = CModule::load(&path).unwrap();
        let [a, b, c] = cfg.spatial_divisor();
        // The traced size (2x the divisor) and another one.
        for (k, size) in [[2 * a, 2 * b, 2 * c], [3 * a, b, 4 * c]].into_iter().enumerate() {
            let xs = Tensor::randn([1, 2, size[0], size[1], size[2]], (Kind::Float, Device::Cpu));
            let want = net.predict(&xs).unwrap();
            let got = tch::no_grad(|| module.forward_ts(&[&xs])).unwrap();
            let d = max_diff(&got, &want);
            let name = cfg.name.as_str();
            assert!(
                d < 1e-5,
                "{name}: reloaded TorchScript differs by {d} at {size:?}"
            );
            let input = dir.path().join(format!("in{n}_{k}.f32"));
            let output = dir.path().join(format!("out{n}_{k}.f32"));
            write_f32(&input, &xs);
            cases.push(json!({"model": path, "input": input, "output": output, "shape": xs.size()}));
            expected.push((name, output, want));
        }
    }
    let py = aiaa_testdata::python();
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec(&cases).unwrap()).unwrap();
    run_python(&py, JIT_SCRIPT, &[&cases_path]);
    for (name, output, want) in expected {
        let d = max_diff(&read_f32(&output, &want.size()), &want);
        eprintln!("{name}: max |Rust − torch.jit.load| = {d:e}");
        assert!(d < 1e-5, "{name}: Python torch.jit.load output differs by {d}");
    }
}

const MONAI_SCRIPT: &str = r#"
import json, sys
import numpy as np, torch
from monai.inferers import sliding_window_inference
torch.set_num_threads(2)
model, cases = sys.argv[1], json.load(open(sys.argv[2]))
m = torch.jit.load(model, map_location="cpu")
for c in cases:
    x = torch.from_numpy(np.fromfile(c["input"], dtype="<f4").reshape(c["shape"]))
    with torch.no_grad():
        y = sliding_window_inference(x, roi_size=c["roi"], sw_batch_size=c["sw_batch_size"], predictor=m,
                                     overlap=c["overlap"], mode=c["mode"], sigma_scale=0.125,
                                     padding_mode="constant", cval=c["cval"])
    y.numpy().astype("<f4").tofile(c["output"])
"#;

/// Our sliding window and MONAI's, with the same TorchScript model (a fixed two-layer conv
/// net), agree within 1e-5 over overlaps, blend modes, batch sizes, padding and whole-axis
/// windows.
#[test]
fn sliding_window_matches_monai() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(11);
    let mut vs = VarStore::new(Device::Cpu);
    let c1 = nn::conv3d(
        vs.root() / "c1",
        2,
        4,
        3,
        nn::ConvConfig {
            padding: 1,
            ..Default::default()
        },
    );
    let c2 = nn::conv3d(vs.root() / "c2", 4, 3, 1, Default::default());
    vs.freeze();
    let mut closure = |x: &[Tensor]| vec![x[0].apply(&c1).tanh().apply(&c2)];
    let example = Tensor::zeros([1, 2, 4, 4, 4], (Kind::Float, Device::Cpu));
    let model = CModule::create_by_tracing("Fixed", "forward", &[example], &mut closure).unwrap();
    let model_path = dir.path().join("fixed.pt");
    model.save(&model_path).unwrap();

    let xs = Tensor::randn([1, 2, 21, 18, 7], (Kind::Float, Device::Cpu));
    let input = dir.path().join("x.f32");
    write_f32(&input, &xs);
    // (name, roi, overlap, mode, sw_batch_size, cval)
    type Case = (&'static str, [i64; 3], f64, BlendMode, usize, f64);
    let settings: Vec<Case> = vec![
        ("const_025", [8, 10, 12], 0.25, BlendMode::Constant, 1, 0.0),
        ("gauss_05", [8, 10, 12], 0.5, BlendMode::Gaussian, 4, 0.0),
        ("gauss_07_cval", [9, 7, 5], 0.7, BlendMode::Gaussian, 3, -1.5),
        ("const_whole_axis", [8, -1, 4], 0.4, BlendMode::Constant, 2, 0.0),
        (
            "gauss_larger_than_image",
            [24, 20, 8],
            0.25,
            BlendMode::Gaussian,
            1,
            0.5,
        ),
    ];
    let mut cases = Vec::new();
    let mut ours = Vec::new();
    for (name, roi, overlap, mode, batch, cval) in settings {
        let sw = SlidingWindow {
            cval,
            ..SlidingWindow::new(roi)
                .with_overlap(overlap)
                .with_mode(mode)
                .with_batch_size(batch)
        };
        let y = sw.run(&xs, |w| Ok(model.forward_ts(&[w])?)).unwrap();
        assert_eq!(y.size(), vec![1, 3, 21, 18, 7]);
        let output = dir.path().join(format!("{name}.f32"));
        let mode = if mode == BlendMode::Gaussian {
            "gaussian"
        } else {
            "constant"
        };
        cases.push(
            json!({"input": input, "output": output, "shape": xs.size(), "roi": roi,
                          "overlap": overlap, "mode": mode, "sw_batch_size": batch, "cval": cval}),
        );
        ours.push((name, output, y));
    }
    let py = aiaa_testdata::python();
    let cases_path = dir.path().join("cases.json");
    std::fs::write(&cases_path, serde_json::to_vec(&cases).unwrap()).unwrap();
    run_python(&py, MONAI_SCRIPT, &[&model_path, &cases_path]);
    for (name, output, y) in ours {
        let d = max_diff(&read_f32(&output, &y.size()), &y);
        eprintln!("{name}: max |ours − MONAI| = {d:e}");
        assert!(d < 1e-5, "{name}: differs from MONAI by {d}");
    }
}
