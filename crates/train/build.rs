//! Binaries, tests and examples of this package link libtorch the platform's one way (CUDA
//! kept, relative rpath): see the `aiaa-torch-link` crate.
fn main() {
    aiaa_torch_link::emit();
}
