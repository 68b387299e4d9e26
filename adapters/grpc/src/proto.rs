// Generated from `proto/switchboard/v1/` by tonic and prost at build time
// (see build.rs); documented where `grpc/mod.rs` declares it.

tonic::include_proto!("switchboard.v1");
