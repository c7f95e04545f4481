#![no_main]
//! `cargo fuzz run session_message` (see docs/fuzzing.md): murmur::fuzzing::session_message on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur::fuzzing::session_message(data));
