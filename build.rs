//! Compiles `proto/` with protox (pure Rust), so a fresh machine needs no system `protoc`.
use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "zitadel/auth.proto",
    "zitadel/object.proto",
    "zitadel/user.proto",
    "zitadel/message.proto",
    "google/rpc/status.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut compiler = protox::Compiler::new(["proto"])?;
    // Imports included so server reflection can describe every type it names.
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS.iter().copied())?;
    let fds = compiler.file_descriptor_set();
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
