//! Generates the tonic/prost code of `proto/chaos/v1/*.proto` with a protoc shipped in a crate
//! (protoc-bin-vendored), so a fresh machine needs no protoc install.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure().compile_protos(&["proto/chaos/v1/daemon.proto"], &["proto"])?;
    Ok(())
}
