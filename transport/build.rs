//! Compiles every `.proto` file in `proto/` (the peer protocol and the native client API)
//! without a system protoc: protox parses them into one descriptor set and
//! tonic-prost-build generates the messages, clients and servers from that.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut files = Vec::new();
    for entry in std::fs::read_dir("proto")? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "proto")
        {
            println!("cargo:rerun-if-changed={}", path.display());
            files.push(path);
        }
    }
    // A stable order keeps the generated code identical from build to build.
    files.sort();
    let descriptors = protox::compile(&files, ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
