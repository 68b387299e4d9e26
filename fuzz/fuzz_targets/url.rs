#![no_main]
//! Fuzz target: see `switchboard::fuzzing::url`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::url(data));
