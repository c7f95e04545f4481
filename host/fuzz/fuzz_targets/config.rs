#![no_main]
//! `cargo fuzz run config` (see docs/fuzzing.md): murmur::fuzzing::config on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur::fuzzing::config(data));
