//! Compiles every `.proto` under `proto/` with protox (no protoc binary needed) and generates
//! tonic clients and servers, plus one descriptor set for gRPC reflection.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "aiaa/common/v1/common.proto",
    "aiaa/registry/v1/registry.proto",
    "aiaa/datastore/v1/datastore.proto",
    "aiaa/inference/v1/inference.proto",
    "aiaa/trainer/v1/trainer.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with `env!`: the compiled build script is shared by every checkout
    // that uses the same target directory, and must find the protos of the one being built.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    for file in FILES {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(FILES, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("aiaa_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".")
        .compile_fds(fds)?;
    Ok(())
}
