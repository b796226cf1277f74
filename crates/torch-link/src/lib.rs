//! How every package whose binaries run models links libtorch, called from their `build.rs`
//! (one way, instead of a copy per package):
//!
//! - **CUDA is kept.** torch-sys links `libtorch_cuda.so` under the linker's `--as-needed`,
//!   and since no symbol of it is referenced directly the linker drops it: nothing loads it
//!   later and on a GPU machine `auto` silently serves on the CPU. Where the torch in use
//!   ships `libtorch_cuda.so` it is linked `--no-as-needed` (its static initialisers register
//!   the CUDA backend). `AIAA_TORCH_CUDA=0` at build time opts out; a CPU-only container
//!   image instead removes the entry from the built binary (`patchelf --remove-needed`).
//! - **The rpath is relative** (`$ORIGIN`-based), so binaries and images can move: the
//!   build machine's libtorch as seen from `<target>/<profile>/` (binaries) and from
//!   `<target>/<profile>/deps/` (tests, examples), and `$ORIGIN/../lib` for an installed
//!   layout (`/usr/local/bin` next to `/usr/local/lib`).

use std::path::{Path, PathBuf};

/// Emits the link arguments for the libtorch that torch-sys linked (`DEP_TCH_LIBTORCH_LIB`,
/// available to packages depending on torch-sys directly). Does nothing without it.
pub fn emit() {
    println!("cargo:rerun-if-env-changed=AIAA_TORCH_CUDA");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = canonical(Path::new(&lib));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let profile_dir = canonical(out_dir.ancestors().nth(3).expect("OUT_DIR under the target dir"));
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", rpath(&lib, &profile_dir));
    let cuda_wanted = std::env::var("AIAA_TORCH_CUDA").map_or(true, |v| v != "0");
    if cuda_wanted && lib.join("libtorch_cuda.so").is_file() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

/// The rpath for binaries in `profile_dir` and in its sub-folders (`deps/`, `examples/`) to
/// find `lib`, plus the installed layout's `$ORIGIN/../lib`.
pub fn rpath(lib: &Path, profile_dir: &Path) -> String {
    let rel = pathdiff::diff_paths(lib, profile_dir).unwrap_or_else(|| lib.to_path_buf());
    let rel = rel.display();
    format!("$ORIGIN/{rel}:$ORIGIN/../{rel}:$ORIGIN/../lib")
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rpath_is_relative_to_the_binary() {
        let r = rpath(
            Path::new("/c/aiaa/venv/lib/python3.11/site-packages/torch/lib"),
            Path::new("/c/aiaa/target/debug"),
        );
        assert_eq!(
            r,
            "$ORIGIN/../../venv/lib/python3.11/site-packages/torch/lib:\
             $ORIGIN/../../../venv/lib/python3.11/site-packages/torch/lib:$ORIGIN/../lib"
        );
    }
}
