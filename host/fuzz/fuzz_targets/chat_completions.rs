#![no_main]
//! `cargo fuzz run chat_completions` (see docs/fuzzing.md): murmur::fuzzing::chat_completions on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| murmur::fuzzing::chat_completions(data));
