//! Out-of-process analyzers (`isolation = "process"`) through the real binary: a plugin
//! that segfaults, aborts, exits, allocates without bound or loops forever takes down its
//! `murmur plugin-runner` child, never the host; the other analyzers keep working, the
//! event log says what happened, and an analyzer that keeps failing is quarantined. Host
//! services (`state`, `log`, `complete`) reach an isolated analyzer over the pipe.

use murmur_e2e::{messages, num, setup, text, Run, MODEL};
use serde_json::{json, Value};

/// Every context message of the last model input.
fn last_context(run: &Run) -> Vec<String> {
    run.inputs
        .last()
        .map(|i| {
            messages(i)
                .iter()
                .map(|m| text(m, "content").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn runs_of<'a>(run: &'a Run, analyzer: &str) -> Vec<&'a Value> {
    run.events_of("analyzer_run")
        .into_iter()
        .filter(|e| text(e, "analyzer") == analyzer)
        .collect()
}

fn replies(n: usize) -> Vec<Value> {
    (1..=n)
        .map(|i| json!({ "text": format!("reply {i}") }))
        .collect()
}

#[test]
fn a_plugin_that_kills_its_process_costs_one_run_and_the_host_and_other_analyzers_go_on() {
    for (mode, says) in [
        ("segfault", "was killed by signal 11 (SIGSEGV)"),
        ("abort", "was killed by signal 6 (SIGABRT)"),
        ("exit", "exited with code 3"),
        ("allocate", "memory allocation of"),
    ] {
        let t = setup(&format!("isolation-{mode}"));
        t.plugins(&["crashes", "configurable"]);
        t.config(&format!(
            "{MODEL}[[analyzer]]\nname = \"crash\"\nplugin = \"crashes\"\nisolation = \"process\"\n\
             memory_limit_mb = 256\n[analyzer.config]\nmode = \"{mode}\"\nturns = [2]\n\n\
             [[analyzer]]\nname = \"notes\"\nplugin = \"configurable\"\nhooks = [\"turn_start\"]\n\
             [analyzer.config]\nrole = \"user\"\ntext = \"note {{turn}}\"\n"
        ));
        t.model_script(&replies(4));
        t.conversation("one\n@wait 500ms\ntwo\n@wait 500ms\nthree\n@wait 500ms\nfour\n");
        let run = t.run();
        assert_eq!(run.code(), Some(0), "{mode}\n{}", run.dump());
        assert_eq!(run.events_of("turn_ended").len(), 4, "{}", run.dump());

        let crash = runs_of(&run, "crash");
        let outcomes: Vec<(u64, &str)> = crash
            .iter()
            .map(|e| (num(e, "turn"), text(e, "outcome")))
            .collect();
        assert_eq!(
            outcomes,
            [(1, "ok"), (2, "crashed"), (3, "ok"), (4, "ok")],
            "{mode}: the next run gets a new process\n{}",
            run.dump()
        );
        let error = text(crash[1], "error");
        assert!(error.contains(says), "{mode}: {error}");
        assert!(error.contains("during the run"), "{mode}: {error}");

        // The in-process analyzer never noticed; nor did the conversation.
        assert!(runs_of(&run, "notes")
            .iter()
            .all(|e| text(e, "outcome") == "ok"));
        // turn_start notes land at the next turn's boundary: 1 to 3 by turn 4.
        let context = last_context(&run);
        for n in 1..=3 {
            assert!(
                context.contains(&format!("note {n}")),
                "{mode}: {context:?}"
            );
        }
        assert!(
            context.contains(&"crashes: turn 3 went fine".to_string()),
            "{mode}: {context:?}"
        );
        assert_eq!(run.stat("crashed"), 1, "{}", run.dump());
        assert!(run.events_of("analyzer_quarantined").is_empty());
    }
}

#[test]
fn an_analyzer_that_loops_forever_is_killed_at_its_timeout_and_quarantined() {
    let t = setup("isolation-loop");
    t.plugins(&["crashes", "configurable"]);
    t.config(&format!(
        "quarantine_after = 2\n{MODEL}[[analyzer]]\nname = \"spin\"\nplugin = \"crashes\"\n\
         isolation = \"process\"\ntimeout = \"300ms\"\n[analyzer.config]\nmode = \"loop\"\n\n\
         [[analyzer]]\nname = \"notes\"\nplugin = \"configurable\"\nhooks = [\"turn_start\"]\n\
         [analyzer.config]\nrole = \"user\"\ntext = \"note {{turn}}\"\n"
    ));
    t.model_script(&replies(4));
    t.conversation("one\n@wait 600ms\ntwo\n@wait 600ms\nthree\n@wait 600ms\nfour\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let spin: Vec<(u64, &str)> = runs_of(&run, "spin")
        .iter()
        .map(|e| (num(e, "turn"), text(e, "outcome")))
        .collect();
    assert_eq!(spin, [(1, "timed_out"), (2, "timed_out")], "{}", run.dump());
    let quarantined = run.events_of("analyzer_quarantined");
    assert_eq!(quarantined.len(), 1, "{}", run.dump());
    assert_eq!(text(quarantined[0], "analyzer"), "spin");
    assert_eq!(num(quarantined[0], "failures"), 2);
    assert!(
        run.stderr()
            .contains("analyzer `spin` quarantined after 2 crashes or timeouts in a row"),
        "{}",
        run.dump()
    );
    let fired_after: Vec<&Value> = run
        .events_of("hook_fired")
        .into_iter()
        .filter(|e| num(e, "turn") >= 3)
        .filter(|e| {
            e["analyzers"]
                .as_array()
                .is_some_and(|a| a.contains(&json!("spin")))
        })
        .collect();
    assert!(fired_after.is_empty(), "quarantined: {fired_after:?}");
    assert_eq!(runs_of(&run, "notes").len(), 4);
    assert!(
        run.output.elapsed < std::time::Duration::from_secs(20),
        "the host did not wait for the spinning child: {:?}",
        run.output.elapsed
    );
}

#[test]
fn an_in_process_analyzer_that_keeps_timing_out_is_quarantined_the_same_way() {
    let t = setup("quarantine-in-process");
    t.plugins(&["hangs"]);
    t.config(&format!(
        "{MODEL}[[analyzer]]\nname = \"stuck\"\nplugin = \"hangs\"\nhooks = [\"turn_start\"]\n\
         timeout = \"200ms\"\nquarantine_after = 2\n"
    ));
    t.model_script(&replies(4));
    t.conversation("one\n@wait 400ms\ntwo\n@wait 400ms\nthree\n@wait 400ms\nfour\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    assert_eq!(runs_of(&run, "stuck").len(), 2, "{}", run.dump());
    assert_eq!(
        run.events_of("analyzer_quarantined").len(),
        1,
        "{}",
        run.dump()
    );
    assert_eq!(run.stat("quarantined"), 1);
}

#[test]
fn an_isolated_analyzer_uses_state_log_and_complete_through_the_pipe() {
    let t = setup("isolation-services");
    t.plugins(&["configurable"]);
    t.write(
        "judge.jsonl",
        &[json!({"text": "judged one"}), json!({"text": "judged two"})]
            .iter()
            .map(|v| format!("{v}\n"))
            .collect::<String>(),
    );
    t.config(&format!(
        "{MODEL}[models.judge]\nprovider = \"scripted\"\nscript = \"judge.jsonl\"\n\n\
         [[analyzer]]\nname = \"remote\"\nplugin = \"configurable\"\nisolation = \"process\"\n\
         hooks = [\"turn_start\"]\nmodel = \"judge\"\n[analyzer.config]\nrole = \"user\"\n\
         text = \"run {{runs}} says {{completion}}\"\n\
         [analyzer.config.complete]\nmessages = [{{ role = \"user\", content = \"judge this\" }}]\n"
    ));
    t.model_script(&replies(3));
    t.conversation("one\n@wait 400ms\ntwo\n@wait 400ms\nthree\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let context = last_context(&run);
    assert!(
        context.contains(&"run 1 says judged one".to_string()),
        "{context:?}\n{}",
        run.dump()
    );
    assert!(
        context.contains(&"run 2 says judged two".to_string()),
        "state kept in the host across runs: {context:?}"
    );
    assert!(runs_of(&run, "remote")
        .iter()
        .all(|e| text(e, "outcome") == "ok"));
}

#[test]
fn an_isolated_analyzer_with_a_bad_config_is_reported_at_startup() {
    let t = setup("isolation-bad-config");
    t.plugins(&["crashes"]);
    t.config(&format!(
        "{MODEL}[[analyzer]]\nname = \"crash\"\nplugin = \"crashes\"\nisolation = \"process\"\n\
         [analyzer.config]\nmode = \"explode\"\n"
    ));
    t.model_script(&replies(1));
    t.conversation("one\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let warning = run
        .stderr()
        .lines()
        .find(|l| l.contains("analyzer `crash`"))
        .unwrap_or_else(|| panic!("no warning\n{}", run.dump()));
    assert!(warning.contains("refused its config"), "{warning}");
    assert!(warning.contains("explode"), "{warning}");
    assert!(runs_of(&run, "crash").is_empty());
}
