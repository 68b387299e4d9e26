#![no_main]
//! Fuzz target: see `switchboard::fuzzing::trace_context`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::trace_context(data));
