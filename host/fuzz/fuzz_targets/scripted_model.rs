#![no_main]
//! `cargo fuzz run scripted_model` (see docs/fuzzing.md): murmur::fuzzing::scripted_model on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur::fuzzing::scripted_model(data));
