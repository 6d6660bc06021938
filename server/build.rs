//! Compiles the etcd v3 API (`proto/etcd/*.proto`: etcdserverpb, mvccpb, v3lockpb,
//! v3electionpb) without a system protoc: protox parses the files into one descriptor set
//! and tonic-prost-build generates the messages, servers and (for tests) clients from it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let directory = "proto/etcd";
    println!("cargo:rerun-if-changed={directory}");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(directory)? {
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
    let descriptors = protox::compile(&files, [directory])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
