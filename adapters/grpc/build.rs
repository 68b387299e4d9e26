//! Compiles the gRPC contract in the repository's `proto/` with
//! protox (pure Rust), so no `protoc` binary is needed.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    grpc::compile();
}

mod grpc {
    const PROTOS: &[&str] = &[
        "../../proto/switchboard/v1/switchboard.proto",
        "../../proto/switchboard/v1/mesh.proto",
    ];

    pub fn compile() {
        for proto in PROTOS {
            println!("cargo:rerun-if-changed={proto}");
        }
        let descriptors = protox::compile(PROTOS, ["../../proto"])
            .unwrap_or_else(|e| panic!("proto/ does not compile: {e}"));
        tonic_prost_build::configure()
            // Payloads stay `Bytes` end to end, as in `Message`.
            .bytes(".")
            // Headers are a handful of entries: a BTreeMap beats hashing them.
            .btree_map(".")
            .compile_fds(descriptors)
            .unwrap_or_else(|e| panic!("generating the gRPC code failed: {e}"));
    }
}
