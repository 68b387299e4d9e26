#![no_main]
//! Fuzz target: see `switchboard::fuzzing::redis`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::redis(data));
