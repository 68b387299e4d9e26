#![no_main]
//! Fuzz target: see `switchboard::fuzzing::http`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::http(data));
