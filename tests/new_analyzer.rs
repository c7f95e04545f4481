//! `murmur new-analyzer` end to end: the crate it makes builds and passes its own tests
//! (which use the plugin API's testing kit); its `.so`, dropped into a plugins folder, is
//! loaded by `murmur run`, and its note reaches the next turn's model input.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use murmur_e2e::*;
use serde_json::json;

/// Runs cargo in the new crate, offline, with a target folder of the test's own.
fn cargo(dir: &TestDir, krate: &std::path::Path, args: &[&str]) -> String {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(args)
        .arg("--offline")
        .current_dir(krate)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "cargo {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn a_new_analyzer_builds_passes_its_tests_and_injects_in_a_real_run() {
    let dir = setup("new-analyzer");
    let out = dir.murmur(["new-analyzer", "shouting", "--path", "shouting"]);
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert!(out.stdout.contains("created shouting"), "{}", out.dump());
    let krate = dir.join("shouting");

    // The workspace's lock file as a start: the crate resolves to the versions the
    // workspace has already downloaded, so the test needs no network. (A user's first
    // `cargo build` resolves afresh.)
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        krate.join("Cargo.lock"),
    )
    .expect("copy the lock file");
    let tests = cargo(&dir, &krate, &["test"]);
    assert!(
        tests.contains("meets_the_host_conformance_checks ... ok")
            && tests.contains(
                "a_turn_whose_reply_skips_the_question_gets_a_note_through_analyze ... ok"
            ),
        "{tests}"
    );
    cargo(&dir, &krate, &["build"]);

    // Install it as a user would: copy the library into the plugins folder.
    let so = dir.join("target/debug/libshouting.so");
    let installed = dir.join("plugins/libshouting.so");
    std::fs::copy(&so, &installed).expect("copy the plugin");
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755))
        .expect("set permissions");

    dir.config(&format!("{MODEL}[[analyzer]]\nname = \"shouting\"\n"));
    dir.model_script(&[
        json!({"text": "Mountains are great."}),
        json!({"text": "Everest is 8,849 m tall."}),
    ]);
    dir.conversation("How tall is Everest?\n@wait 1s\nAnd how cold is it at the top?\n");
    let run = dir.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let first = text(run.input(1, 1), "instructions");
    let second = text(run.input(2, 1), "instructions");
    assert!(!first.contains("may not have been answered"), "{first}");
    assert!(
        second.contains(
            "The user's last question (about: tall, everest) may not have been answered."
        ),
        "turn 2's instructions lack the note:\n{second}\n{}",
        run.dump()
    );
    // Turn 2's reply leaves its question open too, so there is a second note, for a turn
    // that never comes.
    let enqueued = run.events_of("injection_enqueued");
    assert_eq!(enqueued.len(), 2, "{}", run.dump());
    assert!(
        enqueued.iter().all(|e| text(e, "analyzer") == "shouting"),
        "{}",
        run.dump()
    );
}
