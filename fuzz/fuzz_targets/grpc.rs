#![no_main]
//! Fuzz target: see `switchboard::fuzzing::grpc`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::grpc(data));
