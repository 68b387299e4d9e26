#![no_main]
//! Fuzz target: see `switchboard::fuzzing::settings`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::settings(data));
