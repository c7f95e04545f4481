#![no_main]
//! `cargo fuzz run runner_protocol` (see docs/fuzzing.md): murmur::fuzzing::runner_protocol on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur::fuzzing::runner_protocol(data));
