//! Binaries, tests and examples of this package find torch's shared libraries through an
//! rpath to the libtorch that torch-sys linked (PyPI torch, see scripts/env.sh).
fn main() {
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
