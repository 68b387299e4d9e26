#![no_main]
//! Fuzz target: see `switchboard::fuzzing::amqp`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::amqp(data));
