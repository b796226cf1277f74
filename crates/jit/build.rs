//! Builds `src/shim.cpp` against the libtorch torch-sys links, and links this package's own
//! tests and examples the platform's one way (`aiaa-torch-link`).
//!
//! The shim must see exactly the headers, and use exactly the C++ ABI, of the libtorch whose
//! `libtorch_cpu.so` the binary loads: a `torch::jit::Module` laid out differently on the two
//! sides would be memory corruption, not a link error. So the headers are found the way
//! torch-sys' own build script finds them, and the library folder it reports
//! (`DEP_TCH_LIBTORCH_LIB`, from its `links = "tch"`) must be the one those headers belong
//! to:
//!
//! - `LIBTORCH_USE_PYTORCH` set (the project's scripts, `scripts/env.sh`): ask the active
//!   Python's torch (`python` inside a virtualenv, else `python3`, as torch-sys does) for
//!   `cpp_extension.include_paths()`, `library_paths()` and `_GLIBCXX_USE_CXX11_ABI`;
//! - otherwise (a `LIBTORCH` folder, as the container build uses, or `/usr`):
//!   `LIBTORCH_INCLUDE`, else `LIBTORCH`, else the folder above the library folder, with
//!   `include` and `include/torch/csrc/api/include`; the ABI from `LIBTORCH_CXX11_ABI`,
//!   default 1 (torch-sys' defaults).
//!
//! Nothing is downloaded: a missing libtorch is torch-sys' error, which comes first.

use std::path::{Path, PathBuf};
use std::process::Command;

const PYTORCH_DETAILS: &str = "
import torch
from torch.utils import cpp_extension
print('ABI', int(torch._C._GLIBCXX_USE_CXX11_ABI))
for p in cpp_extension.include_paths():
    print('INCLUDE', p)
for p in cpp_extension.library_paths():
    print('LIB', p)
";

struct Libtorch {
    includes: Vec<PathBuf>,
    cxx11_abi: String,
}

fn main() {
    println!("cargo:rerun-if-changed=src/shim.cpp");
    for var in [
        "LIBTORCH_USE_PYTORCH",
        "LIBTORCH",
        "LIBTORCH_INCLUDE",
        "LIBTORCH_CXX11_ABI",
        "VIRTUAL_ENV",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB")
            .expect("torch-sys reports its libtorch folder (DEP_TCH_LIBTORCH_LIB) to direct dependents"),
    );
    let torch = if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        from_python(&lib)
    } else {
        from_folder(&lib)
    };
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .pic(true)
        .std("c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", torch.cxx11_abi.as_str())
        // As torch-sys: libtorch's glog headers want it.
        .define("GLOG_USE_GLOG_EXPORT", None)
        .file("src/shim.cpp");
    // libtorch's headers as system headers: their own warnings are not ours to fix, and
    // would bury the shim's.
    for dir in &torch.includes {
        build.flag("-isystem").flag(dir.display().to_string());
    }
    build.compile("aiaa_jit_shim");
    aiaa_torch_link::emit();
}

fn from_python(lib: &Path) -> Libtorch {
    let python = if std::env::var_os("VIRTUAL_ENV").is_some() {
        "python"
    } else {
        "python3"
    };
    let out = Command::new(python)
        .args(["-c", PYTORCH_DETAILS])
        .output()
        .unwrap_or_else(|e| panic!("running {python} to find torch's headers: {e}"));
    assert!(
        out.status.success(),
        "{python} could not describe torch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut includes = Vec::new();
    let mut libs = Vec::new();
    let mut cxx11_abi = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("ABI", v)) => cxx11_abi = Some(v.trim().to_string()),
            Some(("INCLUDE", p)) => includes.push(PathBuf::from(p.trim())),
            Some(("LIB", p)) => libs.push(PathBuf::from(p.trim())),
            _ => {}
        }
    }
    // The headers must belong to the library torch-sys linked.
    assert!(
        libs.iter().any(|l| same(l, lib)),
        "{python}'s torch lives in {libs:?} but torch-sys linked {}: one libtorch for both, please",
        lib.display()
    );
    Libtorch {
        includes,
        cxx11_abi: cxx11_abi.unwrap_or_else(|| panic!("{python} did not report torch's C++ ABI")),
    }
}

fn from_folder(lib: &Path) -> Libtorch {
    // torch-sys: LIBTORCH_INCLUDE, else the LIBTORCH folder, else (a system install, /usr)
    // the folder above the libraries.
    let root = std::env::var_os("LIBTORCH_INCLUDE")
        .or_else(|| std::env::var_os("LIBTORCH"))
        .map(PathBuf::from)
        .or_else(|| lib.parent().map(Path::to_path_buf))
        .expect("the libtorch library folder has a parent");
    Libtorch {
        includes: vec![root.join("include"), root.join("include/torch/csrc/api/include")],
        cxx11_abi: std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into()),
    }
}

fn same(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}
