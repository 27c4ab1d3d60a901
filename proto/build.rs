//! Generates the Rust types of the bridge protocol and the control-plane service from the
//! .proto files next to this crate. protoc comes from `protoc-bin-vendored`, so a fresh
//! machine needs no system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment now.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let protos = [
        "malcolm/bridge/v1/bridge.proto",
        "malcolm/bridge/v1/trace.proto",
        "malcolm/control/v1/control.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // For gRPC server reflection, so grpcurl and friends work without the .proto files.
        .file_descriptor_set_path(out_dir.join("malcolm_descriptor.bin"))
        .build_client(true)
        .build_server(true)
        .compile_protos(&protos, &["."])?;
    Ok(())
}
