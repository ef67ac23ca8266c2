//! Compiles `proto/yonder/v1/yonder.proto` with `protox` (a pure-Rust protobuf
//! compiler), so building yonder never needs a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["yonder/v1/yonder.proto"], ["proto"])?;
    tonic_prost_build::configure().bytes(".").compile_fds(fds)?;
    Ok(())
}
