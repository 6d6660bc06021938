//! Compiles `proto/peer.proto` without a system protoc: protox parses it into a descriptor
//! set and tonic-prost-build generates the messages, client and server from that.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/peer.proto");
    let descriptors = protox::compile(["proto/peer.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
