#![no_main]
//! `cargo fuzz run conversation` (see docs/fuzzing.md): murmur::fuzzing::conversation on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur::fuzzing::conversation(data));
