//! Replays the fuzz corpora and crash reproducers of `host/fuzz` (see docs/fuzzing.md)
//! through the same entry points the fuzz targets call: every input that once found a
//! crash, and every input the fuzzers kept for reaching new code, stays a test.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("config", murmur::fuzzing::config),
    ("conversation", murmur::fuzzing::conversation),
    ("scripted_model", murmur::fuzzing::scripted_model),
    ("runner_protocol", murmur::fuzzing::runner_protocol),
    ("session_message", murmur::fuzzing::session_message),
    ("chat_completions", murmur::fuzzing::chat_completions),
];

/// Every file under `host/fuzz/<kind>/<target>/`, sorted.
fn inputs(kind: &str, target: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file());
    files.sort();
    files
}

#[test]
fn every_corpus_input_and_crash_reproducer_passes_its_target() {
    for (target, run) in TARGETS {
        let corpus = inputs("corpus", target);
        assert!(
            !corpus.is_empty(),
            "host/fuzz/corpus/{target} has no inputs; seed it (docs/fuzzing.md)"
        );
        for file in corpus.iter().chain(&inputs("regressions", target)) {
            let data = std::fs::read(file).expect("read a fuzz input");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} fails on {}", file.display());
        }
    }
}
