#![no_main]
//! Fuzz target: see `switchboard::fuzzing::subject`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::subject(data));
