#![no_main]
//! Fuzz target: see `switchboard::fuzzing::error_reply`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::error_reply(data));
