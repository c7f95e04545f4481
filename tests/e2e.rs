//! End-to-end tests: the real `murmur` binary, real fixture plugin libraries (built from
//! `plugins/testing/*`), real config files. Tests that check a SPEC rule start with its id
//! (`s12_…`) in the runtime contract, SPEC.md.

use std::collections::BTreeSet;
use std::ffi::OsStr;

use murmur_e2e::{fixture_file_name, messages, num, setup, text, Run, MODEL};
use serde_json::{json, Value};

const PROMPT: &str = "You are the e2e assistant.";

/// One `[[analyzer]]` table of the `configurable` fixture. `extra` holds table keys
/// (`hooks = [...]`, `ttl_turns = 0`), `config` the lines of `[analyzer.config]`.
fn configurable(name: &str, extra: &str, config: &str) -> String {
    format!(
        "[[analyzer]]\nname = \"{name}\"\nplugin = \"configurable\"\n{extra}\n[analyzer.config]\nlabel = \"{name}\"\n{config}\n\n"
    )
}

fn text_replies(texts: &[&str]) -> Vec<Value> {
    texts.iter().map(|t| json!({ "text": t })).collect()
}

/// Every string a model input carries: instructions and message contents.
fn all_model_text(run: &Run) -> String {
    run.inputs
        .iter()
        .flat_map(|i| {
            std::iter::once(text(i, "instructions").to_string())
                .chain(messages(i).iter().map(|m| text(m, "content").to_string()))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The issue's acceptance scenario: four analyzers leave a system note after every turn.
#[test]
fn s1_s13_four_turn_complete_notes_reach_the_next_turn_only_once_and_in_completion_order() {
    let t = setup("four-notes");
    t.plugins(&["configurable"]);
    let mut config = format!("system_prompt = \"{PROMPT}\"\n{MODEL}");
    for name in ["A", "B", "C", "D"] {
        config.push_str(&configurable(
            name,
            "hooks = [\"turn_complete\"]",
            &format!(
                "delay_ms = 50\nrole = \"system\"\ntext = \"note from {name} about turn {{turn}}\""
            ),
        ));
    }
    t.config(&config);
    t.model_script(&text_replies(&[
        "reply 1", "reply 2", "reply 3", "reply 4", "reply 5",
    ]));
    t.conversation(
        "message 1\n@wait 200ms\nmessage 2\n@wait 200ms\nmessage 3\n@wait 200ms\nmessage 4\n@wait 200ms\nmessage 5\n",
    );
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    for n in 1..=5 {
        assert!(
            run.stdout()
                .contains(&format!("user: message {n}\nassistant: reply {n}\n")),
            "turn {n} missing from the transcript\n{}",
            run.dump()
        );
    }
    assert_eq!(
        run.inputs.len(),
        5,
        "one model call per turn\n{}",
        run.dump()
    );

    assert_eq!(text(run.input(1, 1), "instructions"), PROMPT);
    let enqueued = run.events_of("injection_enqueued");
    let delivered = run.events_of("injection_delivered");
    for turn in 2..=5u64 {
        // Completion order: the order of the enqueue events about the previous turn.
        let notes: Vec<&Value> = enqueued
            .iter()
            .copied()
            .filter(|e| num(e, "about_turn") == turn - 1)
            .collect();
        let contents: Vec<&str> = notes.iter().map(|e| text(e, "content")).collect();
        let expected_set: BTreeSet<String> = ["A", "B", "C", "D"]
            .iter()
            .map(|n| format!("note from {n} about turn {}", turn - 1))
            .collect();
        assert_eq!(
            contents
                .iter()
                .map(|c| c.to_string())
                .collect::<BTreeSet<_>>(),
            expected_set,
            "four notes about turn {}\n{}",
            turn - 1,
            run.dump()
        );
        assert_eq!(contents.len(), 4, "each analyzer once\n{}", run.dump());
        let expected = std::iter::once(PROMPT)
            .chain(contents.iter().copied())
            .collect::<Vec<_>>()
            .join("\n\n");
        assert_eq!(
            text(run.input(turn, 1), "instructions"),
            expected,
            "turn {turn}: prompt, then exactly the previous turn's notes in enqueue order\n{}",
            run.dump()
        );
        for note in &notes {
            let id = num(note, "id");
            let deliveries: Vec<&&Value> =
                delivered.iter().filter(|d| num(d, "id") == id).collect();
            assert_eq!(deliveries.len(), 1, "note {id} delivered once");
            assert_eq!(text(deliveries[0], "lane"), "instructions");
            assert_eq!(text(deliveries[0], "boundary"), "turn");
            assert_eq!(num(deliveries[0], "turn"), turn);
        }
    }
    // The instructions lane never enters the messages (S1, S3).
    for input in &run.inputs {
        for m in messages(input) {
            assert!(
                !text(m, "content").contains("note from"),
                "a note leaked into the messages: {m}"
            );
            assert_ne!(text(m, "origin"), "injection", "{m}");
        }
    }
}

#[test]
fn s13_queue_order_is_the_order_analyzers_finished_not_the_config_order() {
    let t = setup("completion-order");
    t.plugins(&["configurable"]);
    t.config(&format!(
        "system_prompt = \"{PROMPT}\"\n{MODEL}{}{}",
        configurable(
            "slow",
            "hooks = [\"turn_complete\"]",
            "delay_ms = 150\ntext = \"slow note\"",
        ),
        configurable(
            "fast",
            "hooks = [\"turn_complete\"]",
            "delay_ms = 5\ntext = \"fast note\"",
        ),
    ));
    t.model_script(&text_replies(&["one", "two"]));
    t.conversation("first\n@wait 400ms\nsecond\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    assert_eq!(
        text(run.input(2, 1), "instructions"),
        format!("{PROMPT}\n\nfast note\n\nslow note"),
        "{}",
        run.dump()
    );
}

#[test]
fn s13_several_injections_from_one_run_keep_the_analyzers_own_order() {
    let t = setup("ties");
    t.plugins(&["configurable"]);
    t.config(&format!(
        "system_prompt = \"{PROMPT}\"\n{MODEL}{}",
        configurable(
            "lister",
            "hooks = [\"turn_complete\"]",
            "count = 3\ntext = \"item {i} of turn {turn}\"",
        ),
    ));
    t.model_script(&text_replies(&["one", "two"]));
    t.conversation("first\n@wait 200ms\nsecond\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let ids: Vec<u64> = run
        .events_of("injection_enqueued")
        .iter()
        .map(|e| num(e, "id"))
        .collect();
    assert_eq!(ids.len(), 6, "two runs of three\n{}", run.dump());
    assert_eq!(
        text(run.input(2, 1), "instructions"),
        format!("{PROMPT}\n\nitem 1 of turn 1\n\nitem 2 of turn 1\n\nitem 3 of turn 1"),
        "{}",
        run.dump()
    );
}

#[test]
fn s6_before_last_user_puts_the_notes_in_one_system_message_before_the_user_message() {
    let t = setup("before-last-user");
    t.plugins(&["configurable"]);
    t.config(&format!(
        "system_prompt = \"{PROMPT}\"\ninstructions_placement = \"before_last_user\"\n{MODEL}{}{}",
        configurable(
            "first",
            "hooks = [\"turn_complete\"]",
            "delay_ms = 5\ntext = \"first note about turn {turn}\"",
        ),
        configurable(
            "second",
            "hooks = [\"turn_complete\"]",
            "delay_ms = 60\ntext = \"second note about turn {turn}\"",
        ),
    ));
    t.model_script(&text_replies(&["one", "two", "three"]));
    t.conversation("a\n@wait 250ms\nb\n@wait 250ms\nc\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    for turn in 1..=3u64 {
        assert_eq!(
            text(run.input(turn, 1), "instructions"),
            PROMPT,
            "the system text never changes\n{}",
            run.dump()
        );
    }
    for (turn, user) in [(2u64, "b"), (3, "c")] {
        let msgs = messages(run.input(turn, 1));
        let n = msgs.len();
        assert!(n >= 2, "{}", run.dump());
        assert_eq!(text(&msgs[n - 1], "content"), user);
        let note = &msgs[n - 2];
        assert_eq!(text(note, "role"), "system", "{note}");
        assert_eq!(text(note, "origin"), "injection", "{note}");
        assert_eq!(text(note, "analyzer"), "first, second", "{note}");
        assert_eq!(
            text(note, "content"),
            format!(
                "first note about turn {t}\n\nsecond note about turn {t}",
                t = turn - 1
            )
        );
    }
    // The conversation prefix is unchanged from one turn to the next (cache stays valid).
    let turn2 = messages(run.input(2, 1));
    let turn3 = messages(run.input(3, 1));
    assert_eq!(&turn3[..turn2.len()], turn2, "{}", run.dump());
    assert!(!run.stdout().contains("note about turn"), "{}", run.dump());
}

/// A `turn_start` analyzer finishes while step 1 (a tool call) is in flight; its context
/// injection joins at the step boundary right after the tool result.
#[test]
fn s12_s3_a_context_injection_made_during_a_tool_step_lands_after_the_tool_result_and_stays() {
    let t = setup("step-boundary");
    t.plugins(&["configurable", "tools"]);
    t.config(&format!(
        "system_prompt = \"{PROMPT}\"\n{MODEL}[[tool]]\nname = \"add\"\n\n{}",
        configurable(
            "steer",
            "hooks = [\"turn_start\"]",
            "delay_ms = 20\nrole = \"user\"\nturns = [2]\ntext = \"context from {name} during turn {turn}\"",
        )
    ));
    t.model_script(&[
        json!({"text": "hello there"}),
        json!({"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}], "delay": "300ms"}),
        json!({"text": "The sum is 5."}),
        json!({"text": "You are welcome."}),
    ]);
    t.conversation("hi\nplease add 2 and 3\nthanks\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let injected = "context from steer during turn 2";

    let step1 = messages(run.input(2, 1));
    assert!(
        step1.iter().all(|m| text(m, "origin") != "injection"),
        "step 1 started before the injection existed\n{}",
        run.dump()
    );
    let step2 = messages(run.input(2, 2));
    let tool_at = step2
        .iter()
        .position(|m| text(m, "role") == "tool")
        .unwrap_or_else(|| panic!("no tool result in turn 2 step 2\n{}", run.dump()));
    assert_eq!(text(&step2[tool_at], "content"), "5");
    assert_eq!(text(&step2[tool_at], "origin"), "tool");
    let after = step2
        .get(tool_at + 1)
        .unwrap_or_else(|| panic!("nothing after the tool result\n{}", run.dump()));
    assert_eq!(text(after, "origin"), "injection", "{after}");
    assert_eq!(text(after, "analyzer"), "steer", "{after}");
    assert_eq!(text(after, "role"), "user", "{after}");
    assert_eq!(text(after, "content"), injected, "{after}");
    assert_eq!(
        step2.len(),
        tool_at + 2,
        "the injection is the last message"
    );
    // Step 2's input is step 1's plus the tool call, the result and the injection (S12).
    assert_eq!(&step2[..step1.len()], step1);
    assert_eq!(
        text(&step2[step1.len()], "role"),
        "assistant",
        "{}",
        run.dump()
    );

    // Made during step 1, delivered at the step boundary.
    let enqueued_at = run
        .position(|e| text(e, "type") == "injection_enqueued" && text(e, "analyzer") == "steer")
        .unwrap_or_else(|| panic!("no enqueue event\n{}", run.dump()));
    let tool_result_at = run
        .position(|e| text(e, "type") == "tool_result")
        .unwrap_or_else(|| panic!("no tool_result event\n{}", run.dump()));
    assert!(enqueued_at < tool_result_at, "{}", run.dump());
    let delivered = run.events_of("injection_delivered");
    assert_eq!(delivered.len(), 1, "{}", run.dump());
    assert_eq!(text(delivered[0], "analyzer"), "steer");
    assert_eq!(text(delivered[0], "boundary"), "step");
    assert_eq!(text(delivered[0], "lane"), "context");
    assert_eq!(
        (num(delivered[0], "turn"), num(delivered[0], "step")),
        (2, 2)
    );

    // It stays at its position for the rest of the session (S3) ...
    let turn3 = messages(run.input(3, 1));
    assert_eq!(&turn3[..step2.len()], step2, "{}", run.dump());
    assert_eq!(
        turn3
            .iter()
            .filter(|m| text(m, "content") == injected)
            .count(),
        1
    );
    // ... and never enters the visible transcript (S4).
    assert!(!run.stdout().contains(injected), "{}", run.dump());
    assert!(run.stdout().contains("assistant: The sum is 5."));
}

#[test]
fn s2_an_instructions_injection_made_mid_turn_waits_for_the_next_turn_boundary() {
    let t = setup("instructions-mid-turn");
    t.plugins(&["configurable", "tools"]);
    t.config(&format!(
        "system_prompt = \"{PROMPT}\"\n{MODEL}[[tool]]\nname = \"add\"\n\n{}",
        configurable(
            "advisor",
            "hooks = [\"turn_start\"]",
            "delay_ms = 20\nrole = \"system\"\nturns = [1]\ntext = \"advice about turn {turn}\"",
        )
    ));
    t.model_script(&[
        json!({"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 1}}], "delay": "300ms"}),
        json!({"text": "two"}),
        json!({"text": "bye"}),
    ]);
    t.conversation("add 1 and 1\nbye\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    assert!(
        run.position(|e| text(e, "type") == "injection_enqueued")
            < run.position(|e| text(e, "type") == "tool_result"),
        "the advice was ready during step 1\n{}",
        run.dump()
    );
    assert_eq!(text(run.input(1, 1), "instructions"), PROMPT);
    assert_eq!(
        text(run.input(1, 2), "instructions"),
        PROMPT,
        "the system text does not change inside a turn\n{}",
        run.dump()
    );
    assert_eq!(
        text(run.input(2, 1), "instructions"),
        format!("{PROMPT}\n\nadvice about turn 1")
    );
}

#[test]
fn s25_a_panicking_analyzer_is_reported_and_the_conversation_and_other_analyzers_go_on() {
    let t = setup("panics");
    t.plugins(&["configurable", "panics"]);
    t.config(&format!(
        "system_prompt = \"{PROMPT}\"\n{MODEL}[[analyzer]]\nname = \"boom\"\nplugin = \"panics\"\n\n{}",
        configurable(
            "healthy",
            "hooks = [\"turn_complete\"]",
            "text = \"healthy note about turn {turn}\""
        )
    ));
    t.model_script(&text_replies(&["reply one", "reply two"]));
    t.conversation("one\n@wait 200ms\ntwo\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    assert!(run.stdout().contains("assistant: reply one"));
    assert!(run.stdout().contains("assistant: reply two"));

    let panicked: Vec<&Value> = run
        .events_of("analyzer_run")
        .into_iter()
        .filter(|e| text(e, "outcome") == "panicked")
        .collect();
    assert!(!panicked.is_empty(), "{}", run.dump());
    for e in &panicked {
        assert_eq!(text(e, "analyzer"), "boom", "{e}");
        assert!(text(e, "error").contains("fixture panic"), "{e}");
    }
    // Both of its default hooks ran and panicked on turn 1.
    let hooks: BTreeSet<&str> = panicked
        .iter()
        .filter(|e| num(e, "turn") == 1)
        .map(|e| text(e, "hook"))
        .collect();
    assert_eq!(
        hooks,
        BTreeSet::from(["turn_start", "turn_complete"]),
        "{}",
        run.dump()
    );
    assert!(
        run.stderr().contains("analyzer=\"boom\"") && run.stderr().contains("fixture panic"),
        "{}",
        run.dump()
    );
    assert_eq!(run.stat("failed"), panicked.len() as u64, "{}", run.dump());
    // The other analyzer was unaffected.
    assert_eq!(
        text(run.input(2, 1), "instructions"),
        format!("{PROMPT}\n\nhealthy note about turn 1")
    );
}

#[test]
fn s23_a_hanging_analyzer_is_timed_out_and_does_not_keep_the_host_alive() {
    let t = setup("hangs");
    t.plugins(&["hangs"]);
    t.config(&format!(
        "{MODEL}[[analyzer]]\nname = \"stuck\"\nplugin = \"hangs\"\ntimeout = \"1s\"\n"
    ));
    t.model_script(&text_replies(&["still here"]));
    t.conversation("hello\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    assert!(run.stdout().contains("assistant: still here"));
    // A hang guard, not a performance claim.
    assert!(
        run.output.elapsed.as_secs() < 30,
        "took {:?}",
        run.output.elapsed
    );
    let runs = run.events_of("analyzer_run");
    assert_eq!(runs.len(), 1, "{}", run.dump());
    let timed_out = runs[0];
    assert_eq!(text(timed_out, "analyzer"), "stuck");
    assert_eq!(text(timed_out, "outcome"), "timed_out");
    assert!(num(timed_out, "duration_ms") >= 1000, "{timed_out}");
    assert!(
        text(timed_out, "error").contains("hard timeout of 1s"),
        "{timed_out}"
    );
    // The reply did not wait for it (S21).
    let ended = run.events_of("turn_ended");
    assert_eq!(ended.len(), 1);
    assert!(
        num(ended[0], "at_ms") < num(timed_out, "at_ms"),
        "{}",
        run.dump()
    );
    assert_eq!(run.stat("timed_out"), 1, "{}", run.dump());
    assert!(
        run.stderr().contains("analyzer=\"stuck\""),
        "{}",
        run.dump()
    );
}

/// The three broken files of the plugin folder, with the key phrase of their refusal.
const BROKEN: [(&str, &str); 3] = [
    ("junk.so", "not a loadable shared library"),
    ("libmurmur_testing_not_a_plugin.so", "not a Murmur plugin"),
    ("libmurmur_testing_wrong_abi.so", "incompatible plugin ABI"),
];

#[test]
fn plugins_list_shows_the_good_plugins_and_one_short_rejected_line_per_broken_file() {
    let t = setup("plugins-list");
    t.plugins(&["configurable", "tools", "wrong-abi", "not-a-plugin"]);
    t.write("plugins/junk.so", "this is a text file, not a library\n");
    let config = t.config(&format!(
        "{MODEL}[[tool]]\nname = \"add\"\n\n{}",
        configurable("notes", "", "")
    ));
    let out = t.murmur([
        OsStr::new("plugins"),
        OsStr::new("list"),
        OsStr::new("--config"),
        config.as_os_str(),
    ]);
    assert_eq!(out.code, Some(0), "{}", out.dump());

    let row = |kind: &str, name: &str| {
        out.stdout.lines().find(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.first() == Some(&kind) && cells.get(1) == Some(&name)
        })
    };
    let configurable_row = row("analyzer", "configurable")
        .unwrap_or_else(|| panic!("no configurable row\n{}", out.dump()));
    assert!(configurable_row.contains(&fixture_file_name("configurable")));
    assert!(
        configurable_row.trim_end().ends_with("notes"),
        "{configurable_row}"
    );
    let add_row = row("tool", "add").unwrap_or_else(|| panic!("no add row\n{}", out.dump()));
    assert!(add_row.trim_end().ends_with("add"), "{add_row}");
    assert!(row("tool", "echo").is_some(), "{}", out.dump());

    let rejected: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("rejected"))
        .collect();
    assert_eq!(rejected.len(), BROKEN.len(), "{}", out.dump());
    for (file, phrase) in BROKEN {
        let line = rejected
            .iter()
            .find(|l| l.contains(&format!(" {file}: ")))
            .unwrap_or_else(|| panic!("no rejected line for {file}\n{}", out.dump()));
        assert!(line.contains(phrase), "{line}");
        assert!(line.len() < 300, "the reason stays short: {line}");
    }
    assert!(
        !out.stdout.contains("configurable.so: "),
        "the good plugin is not refused"
    );
}

#[test]
fn a_table_pinned_to_another_sha256_is_refused_and_the_right_pin_runs() {
    let t = setup("pinning");
    t.plugins(&["configurable"]);
    let config = t.config(MODEL);
    let list = t.murmur([
        OsStr::new("plugins"),
        OsStr::new("list"),
        OsStr::new("--config"),
        config.as_os_str(),
    ]);
    let file = fixture_file_name("configurable");
    let sha = list
        .stdout
        .lines()
        .find_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells.first() == Some(&"sha256") && cells.get(2) == Some(&file.as_str()))
                .then(|| cells[1].to_string())
        })
        .unwrap_or_else(|| panic!("no sha256 line for {file}\n{}", list.dump()));
    assert_eq!(sha.len(), 64, "{sha}");
    let wrong = "0".repeat(64);
    t.config(&format!(
        "{MODEL}{}{}",
        configurable(
            "trusted",
            &format!(
                "hooks = [\"turn_start\"]\nsha256 = \"{}\"",
                sha.to_uppercase()
            ),
            "role = \"user\"\ntext = \"from trusted\""
        ),
        configurable(
            "tampered",
            &format!("hooks = [\"turn_start\"]\nsha256 = \"{wrong}\""),
            "role = \"user\"\ntext = \"from tampered\""
        ),
    ));
    t.model_script(&text_replies(&["one", "two"]));
    t.conversation("first\n@wait 200ms\nsecond\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let warning = run
        .stderr()
        .lines()
        .find(|l| l.contains("`tampered`"))
        .unwrap_or_else(|| panic!("no warning about `tampered`\n{}", run.dump()));
    assert!(warning.contains(&file), "{warning}");
    assert!(
        warning.contains(&format!("has SHA-256 {sha}, but the table pins {wrong}")),
        "{warning}"
    );
    let model_text = all_model_text(&run);
    assert!(model_text.contains("from trusted"), "{}", run.dump());
    assert!(!model_text.contains("from tampered"), "{}", run.dump());
}

#[test]
fn a_plugins_dir_other_users_can_write_is_refused_unless_the_config_allows_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let t = setup("insecure-dir");
    t.plugins(&["configurable"]);
    let dir = t.join("plugins");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    t.model_script(&text_replies(&["one"]));
    t.conversation("hello\n");
    t.config(&format!("{MODEL}{}", configurable("notes", "", "")));
    let run = t.run();
    assert_eq!(run.code(), Some(2), "{}", run.dump());
    let stderr = run.stderr();
    assert!(
        stderr.contains("can be written by its group and every user (mode 0777)"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("`chmod go-w {}`", dir.display())),
        "{stderr}"
    );
    assert!(stderr.contains("allow_insecure_plugins = true"), "{stderr}");

    t.config(&format!(
        "allow_insecure_plugins = true\n{MODEL}{}",
        configurable("notes", "", "")
    ));
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod back");
}

#[test]
fn plugins_check_exits_1_with_the_reason_for_broken_files_and_0_with_a_summary_for_a_plugin() {
    let t = setup("plugins-check");
    t.plugins(&["configurable", "wrong-abi", "not-a-plugin"]);
    t.write("plugins/junk.so", "this is a text file, not a library\n");
    for (file, phrase) in BROKEN {
        let path = t.join("plugins").join(file);
        let out = t.murmur([OsStr::new("plugins"), OsStr::new("check"), path.as_os_str()]);
        assert_eq!(out.code, Some(1), "{}", out.dump());
        assert!(out.stdout.contains(phrase), "{}", out.dump());
        assert_eq!(out.stdout.trim_end().lines().count(), 1, "{}", out.dump());
    }
    let good = t.join("plugins").join(fixture_file_name("configurable"));
    let out = t.murmur([OsStr::new("plugins"), OsStr::new("check"), good.as_os_str()]);
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert!(out.stdout.contains(": ok"), "{}", out.dump());
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("sha256 ")),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.lines().any(|l| l
            .trim_start()
            .starts_with("analyzer configurable [turn_complete]")),
        "{}",
        out.dump()
    );
}

#[test]
fn a_typo_key_in_an_analyzer_table_exits_2_naming_file_line_and_key() {
    let t = setup("config-typo");
    t.plugins(&["configurable"]);
    let toml = format!(
        "{MODEL}[[analyzer]]\nname = \"notes\"\nplugin = \"configurable\"\ntimout = \"1s\"\n"
    );
    let line = toml
        .lines()
        .position(|l| l.starts_with("timout"))
        .expect("the typo is in the text")
        + 1;
    let config = t.config(&toml);
    t.model_script(&text_replies(&["never"]));
    t.conversation("hello\n");
    let run = t.run();
    assert_eq!(run.code(), Some(2), "{}", run.dump());
    let expected = format!("{}:{line}: `timout`", config.display());
    assert!(
        run.stderr().contains(&expected),
        "want {expected}\n{}",
        run.dump()
    );
    assert!(
        run.stderr().contains("`timeout`"),
        "suggests the valid keys\n{}",
        run.dump()
    );
    assert!(run.stdout().is_empty(), "no turn ran\n{}", run.dump());
}

#[test]
fn a_missing_model_script_is_reported_with_its_file_name() {
    let t = setup("missing-script");
    t.config(&MODEL.replace("replies.jsonl", "no-such-replies.jsonl"));
    t.conversation("hello\n");
    let run = t.run();
    assert_eq!(run.code(), Some(2), "{}", run.dump());
    let missing = t.join("no-such-replies.jsonl");
    assert!(
        run.stderr().contains(&format!(
            "{}: cannot read the model script",
            missing.display()
        )),
        "{}",
        run.dump()
    );
    assert!(run.stdout().is_empty(), "{}", run.dump());
    assert!(run.inputs.is_empty());
}

#[test]
fn s5_an_analyzer_injecting_role_tool_is_rejected_and_the_model_never_sees_it() {
    let t = setup("role-tool");
    t.plugins(&["configurable"]);
    t.config(&format!(
        "system_prompt = \"{PROMPT}\"\n{MODEL}{}",
        configurable(
            "toolish",
            "hooks = [\"turn_start\", \"turn_complete\"]",
            "role = \"tool\"\ntext = \"forged tool output {hook} {turn}\"",
        )
    ));
    t.model_script(&text_replies(&["one", "two", "three"]));
    t.conversation("a\n@wait 100ms\nb\n@wait 100ms\nc\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let rejected = run.events_of("injection_rejected");
    assert!(!rejected.is_empty(), "{}", run.dump());
    for e in &rejected {
        assert_eq!(text(e, "analyzer"), "toolish");
        assert_eq!(text(e, "role"), "tool");
        assert!(text(e, "reason").contains("cannot be injected"), "{e}");
    }
    assert_eq!(
        rejected.len() as u64,
        run.events_of("analyzer_run")
            .iter()
            .map(|e| num(e, "injections"))
            .sum::<u64>(),
        "every returned injection was refused"
    );
    assert!(
        run.events_of("injection_enqueued").is_empty(),
        "{}",
        run.dump()
    );
    assert!(run.events_of("injection_delivered").is_empty());
    assert!(
        !all_model_text(&run).contains("forged tool output"),
        "{}",
        run.dump()
    );
    for input in &run.inputs {
        assert_eq!(text(input, "instructions"), PROMPT);
        assert!(messages(input)
            .iter()
            .all(|m| text(m, "role") != "tool" && text(m, "origin") != "injection"));
    }
    assert!(
        run.stderr().contains("injection rejected"),
        "{}",
        run.dump()
    );
    assert_eq!(run.stat("rejected"), rejected.len() as u64);
}

/// `turn_start` and `turn_complete` runs of the same keyed analyzer both enqueue before the
/// next boundary; the newer replaces the older.
#[test]
fn s15_a_keyed_injection_replaces_its_queued_predecessor_so_only_the_newest_is_delivered() {
    let t = setup("supersede");
    t.plugins(&["configurable"]);
    t.config(&format!(
        "system_prompt = \"{PROMPT}\"\n{MODEL}{}",
        configurable(
            "review",
            "hooks = [\"turn_start\", \"turn_complete\"]",
            "delay_ms = 20\nkey = \"k\"\ntext = \"review from {hook} of turn {turn}\"",
        )
    ));
    t.model_script(&text_replies(&["one", "two", "three"]));
    t.conversation("a\n@wait 300ms\nb\n@wait 300ms\nc\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());

    let enqueued = run.events_of("injection_enqueued");
    let superseded = run.events_of("injection_superseded");
    let id_of = |hook: &str, turn: u64| {
        let content = format!("review from {hook} of turn {turn}");
        enqueued
            .iter()
            .find(|e| text(e, "content") == content)
            .map(|e| num(e, "id"))
            .unwrap_or_else(|| panic!("`{content}` was never enqueued\n{}", run.dump()))
    };
    for turn in 1..=3u64 {
        let (old, new) = (id_of("turn_start", turn), id_of("turn_complete", turn));
        let matching: Vec<&&Value> = superseded.iter().filter(|s| num(s, "id") == old).collect();
        assert_eq!(matching.len(), 1, "turn {turn}\n{}", run.dump());
        assert_eq!(num(matching[0], "by"), new);
        assert_eq!(text(matching[0], "key"), "k");
        assert_eq!(text(matching[0], "analyzer"), "review");
    }
    assert_eq!(superseded.len(), 3, "{}", run.dump());
    for turn in 2..=3u64 {
        assert_eq!(
            text(run.input(turn, 1), "instructions"),
            format!("{PROMPT}\n\nreview from turn_complete of turn {}", turn - 1),
            "{}",
            run.dump()
        );
    }
    assert!(!all_model_text(&run).contains("review from turn_start"));
    let superseded_ids: BTreeSet<u64> = superseded.iter().map(|s| num(s, "id")).collect();
    assert!(run
        .events_of("injection_delivered")
        .iter()
        .all(|d| !superseded_ids.contains(&num(d, "id"))));
    assert_eq!(run.stat("superseded"), 3);
}

#[test]
fn s16_an_injection_queued_longer_than_its_ttl_turns_is_dropped_as_stale() {
    let t = setup("ttl");
    t.plugins(&["configurable"]);
    t.config(&format!(
        "system_prompt = \"{PROMPT}\"\n{MODEL}{}{}",
        configurable(
            "fleeting",
            "hooks = [\"turn_complete\"]\nttl_turns = 0",
            "text = \"fleeting note about turn {turn}\"",
        ),
        configurable(
            "lasting",
            "hooks = [\"turn_complete\"]\nttl_turns = 1",
            "text = \"lasting note about turn {turn}\"",
        ),
    ));
    t.model_script(&text_replies(&["one", "two"]));
    t.conversation("a\n@wait 200ms\nb\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    assert_eq!(
        text(run.input(2, 1), "instructions"),
        format!("{PROMPT}\n\nlasting note about turn 1"),
        "{}",
        run.dump()
    );
    let stale = run.events_of("injection_stale");
    assert_eq!(stale.len(), 1, "{}", run.dump());
    assert_eq!(text(stale[0], "analyzer"), "fleeting");
    assert_eq!((num(stale[0], "about_turn"), num(stale[0], "turn")), (1, 2));
    let fleeting_id = run
        .events_of("injection_enqueued")
        .iter()
        .find(|e| text(e, "content") == "fleeting note about turn 1")
        .map(|e| num(e, "id"))
        .unwrap_or_else(|| panic!("the fleeting note was never enqueued\n{}", run.dump()));
    assert_eq!(num(stale[0], "id"), fleeting_id);
    assert!(!all_model_text(&run).contains("fleeting note"));
    assert_eq!(run.stat("stale"), 1);
}

#[test]
fn s35_a_model_error_ends_the_turn_with_an_error_event_and_the_next_turn_works() {
    let t = setup("model-error");
    t.config(&format!("system_prompt = \"{PROMPT}\"\n{MODEL}"));
    t.model_script(&[
        json!({"error": "upstream down"}),
        json!({"text": "back online"}),
    ]);
    t.conversation("first question\nsecond question\n");
    let run = t.run();
    assert_eq!(run.code(), Some(1), "a turn errored\n{}", run.dump());
    assert!(
        run.stdout().contains("[turn 1 ended: ") && run.stdout().contains("upstream down"),
        "{}",
        run.dump()
    );
    assert!(
        run.stdout()
            .contains("user: second question\nassistant: back online"),
        "{}",
        run.dump()
    );
    let ended = run.events_of("turn_ended");
    assert_eq!(ended.len(), 2, "{}", run.dump());
    assert_eq!(num(ended[0], "turn"), 1);
    assert_eq!(text(ended[0], "outcome"), "error");
    assert!(
        text(ended[0], "error").contains("upstream down"),
        "{}",
        ended[0]
    );
    assert_eq!(num(ended[1], "turn"), 2);
    assert_eq!(text(ended[1], "outcome"), "completed");
    assert_eq!(text(ended[1], "reply"), "back online");
    assert!(ended[1].get("error").is_none());
    // The session stayed usable: turn 2 called the model with both user messages.
    let turn2 = messages(run.input(2, 1));
    let users: Vec<&str> = turn2
        .iter()
        .filter(|m| text(m, "origin") == "user")
        .map(|m| text(m, "content"))
        .collect();
    assert_eq!(users, vec!["first question", "second question"]);
}

/// TOML string literal of a path (backslashes and quotes escaped).
fn toml_path(path: &std::path::Path) -> String {
    Value::String(path.display().to_string()).to_string()
}

/// The issue's acceptance check on the embedded default: `murmur run` with
/// `[model] provider = "local"` answers the capital question with "Paris", streaming.
#[test]
fn the_local_model_answers_the_capital_of_france_with_paris() {
    let t = setup("local-paris");
    t.config(&format!(
        "system_prompt = \"You are a helpful assistant. Answer in one short sentence.\"\n\n[model]\nprovider = \"local\"\npath = {}\ntemperature = 0.0\nmax_tokens = 48\nthreads = 1\n",
        toml_path(&murmur_e2e::model_path())
    ));
    t.conversation("What is the capital of France?\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let ended = run.events_of("turn_ended");
    assert_eq!(ended.len(), 1, "{}", run.dump());
    assert_eq!(text(ended[0], "outcome"), "completed");
    assert!(text(ended[0], "reply").contains("Paris"), "{}", run.dump());
    assert!(run.stdout().contains("Paris"), "{}", run.dump());
}

/// `murmur run` on a real OpenAI-compatible server (llama.cpp's, tests/openai-server/).
#[test]
fn the_openai_provider_holds_a_conversation_with_a_real_server() {
    let server = murmur_e2e::openai_server::OpenAiServer::start(2048);
    let t = setup("openai-paris");
    t.config(&format!(
        "system_prompt = \"You are a helpful assistant. Answer in one short sentence.\"\n\n[model]\nprovider = \"openai\"\nbase_url = \"{}\"\nmodel = \"smollm2\"\ntemperature = 0.0\nmax_tokens = 48\n",
        server.base_url()
    ));
    t.conversation("What is the capital of France?\nAnd of Germany?\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let ended = run.events_of("turn_ended");
    assert_eq!(ended.len(), 2, "{}", run.dump());
    assert!(text(ended[0], "reply").contains("Paris"), "{}", run.dump());
    assert_eq!(text(ended[1], "outcome"), "completed", "{}", run.dump());
    // Turn 2 sent the whole conversation so far.
    let turn2 = messages(run.input(2, 1));
    assert_eq!(turn2.len(), 3, "{}", run.dump());
}

/// S35 with a real server that has gone away: each turn ends with an error event naming the
/// server and the cause, and the run goes on to the next turn and exits 1, without a panic.
#[test]
fn s35_a_server_that_stopped_ends_each_turn_with_an_error_naming_it() {
    let mut server = murmur_e2e::openai_server::OpenAiServer::start(512);
    let base_url = server.base_url();
    server.kill();
    let t = setup("openai-gone");
    t.config(&format!(
        "[model]\nprovider = \"openai\"\nbase_url = \"{base_url}\"\nmodel = \"smollm2\"\nmax_retries = 0\n"
    ));
    t.conversation("What is the capital of France?\nAnd of Germany?\n");
    let run = t.run();
    assert_eq!(run.code(), Some(1), "turns errored\n{}", run.dump());
    let ended = run.events_of("turn_ended");
    assert_eq!(ended.len(), 2, "{}", run.dump());
    for e in ended {
        assert_eq!(text(e, "outcome"), "error", "{e}");
        assert!(
            text(e, "error").contains(&format!("cannot reach {base_url}/chat/completions")),
            "{e}"
        );
    }
    assert!(!run.stderr().contains("panicked"), "{}", run.dump());
}

/// Context compaction on the real local model: a conversation that outgrows a 256-token
/// window keeps going; older turns are summarised (or dropped) and a `context_compacted`
/// event says what happened.
#[test]
fn a_conversation_longer_than_the_context_window_is_compacted_and_goes_on() {
    for strategy in ["summarize", "drop_oldest"] {
        let t = setup(&format!("compaction-{strategy}"));
        t.config(&format!(
            "system_prompt = \"You are a helpful assistant. Answer in one short sentence.\"\n\n[model]\nprovider = \"local\"\npath = {}\ncontext_length = 256\nmax_tokens = 32\nthreads = 1\n\n[context]\ncompaction = \"{strategy}\"\nsummary_max_tokens = 40\n",
            toml_path(&murmur_e2e::model_path())
        ));
        t.conversation(
            "My name is Ada and I live in a small town by the sea with my two cats.\n\
             I work as a baker and every morning I bake bread, croissants and apple pies.\n\
             On weekends I like to walk along the beach and collect shells and stones.\n\
             Last year I travelled to Italy and visited Rome, Florence and Venice.\n\
             What is the capital of France?\n",
        );
        let run = t.run();
        assert_eq!(run.code(), Some(0), "{strategy}\n{}", run.dump());
        let ended = run.events_of("turn_ended");
        assert_eq!(ended.len(), 5, "{}", run.dump());
        assert!(
            ended.iter().all(|e| text(e, "outcome") == "completed"),
            "{}",
            run.dump()
        );
        let compacted = run.events_of("context_compacted");
        assert!(!compacted.is_empty(), "{strategy}: {}", run.dump());
        let first = compacted[0];
        assert_eq!(num(first, "context_length"), 256);
        assert!(num(first, "tokens_before") > 256 - 32, "{first}");
        assert!(
            num(first, "tokens_after") < num(first, "tokens_before"),
            "{first}"
        );
        assert!(num(first, "turns") >= 1, "{first}");
        // The step that was compacted was sent without the removed turns.
        let input = run.input(num(first, "turn"), num(first, "step"));
        let origins: Vec<&str> = messages(input).iter().map(|m| text(m, "origin")).collect();
        let first_user = messages(input)
            .iter()
            .find(|m| text(m, "origin") == "user")
            .map(|m| text(m, "content"));
        assert_ne!(
            first_user,
            Some("My name is Ada and I live in a small town by the sea with my two cats."),
            "{strategy}: the first turn was removed: {input}"
        );
        match text(first, "strategy") {
            "summarize" => {
                assert_eq!(strategy, "summarize");
                assert_eq!(origins[0], "summary", "{input}");
                assert!(!text(first, "summary").is_empty(), "{first}");
            }
            "drop_oldest" => {
                // Asked for or fallen back to: no summary message either way.
                assert!(!origins.contains(&"summary"), "{input}");
                if strategy == "summarize" {
                    assert!(first.get("fallback").is_some(), "{first}");
                }
            }
            other => panic!("unexpected strategy {other}: {first}"),
        }
        assert!(run.stat("compactions") >= 1);
        // What a 135M model says after losing its older turns is not this test's business;
        // that it still answers is.
        assert!(!text(ended[4], "reply").trim().is_empty(), "{}", run.dump());
    }
}

/// The issue's acceptance check for `complete`: an analyzer plugin (a real `.so`) calls the
/// host's `complete` service with a JSON schema 20 times on the local model and gets 20
/// answers that follow the schema; the run's token usage is counted (S41).
#[test]
fn an_analyzer_gets_valid_json_from_the_local_model_twenty_times_out_of_twenty() {
    let t = setup("complete-json");
    t.plugins(&["configurable"]);
    let replies = [
        "The capital of France is Paris.",
        "2 + 2 = 5.",
        "I don't know.",
        "The moon is made of cheese.",
        "Water boils at 100 degrees Celsius at sea level.",
    ];
    let listed = replies
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{}. {r}", i + 1))
        .collect::<Vec<_>>()
        .join(" ");
    t.config(&format!(
        r#"[model]
provider = "local"
path = {path}
max_tokens = 24
threads = 1

[[analyzer]]
name = "judge"
plugin = "configurable"
hooks = ["turn_complete"]
timeout = "250s"

[analyzer.config]
role = "user"
text = "{{completion}}"
complete_tries = 20

[analyzer.config.complete]
system = "You review short statements. Answer in JSON."
max_tokens = 60
temperature = 0.7
messages = [{{ role = "user", content = "Statements: {listed} Review statement number {{try}} (counting past the end wraps around)." }}]

[analyzer.config.complete.json_schema]
type = "object"
required = ["verdict", "reason"]
additionalProperties = false

[analyzer.config.complete.json_schema.properties.verdict]
type = "string"
enum = ["correct", "wrong", "unsure"]

[analyzer.config.complete.json_schema.properties.reason]
type = "string"
maxLength = 30
"#,
        path = toml_path(&murmur_e2e::model_path())
    ));
    t.conversation("Hello!\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let runs = run.events_of("analyzer_run");
    assert_eq!(runs.len(), 1, "{}", run.dump());
    assert_eq!(text(runs[0], "outcome"), "ok", "{}", run.dump());
    assert!(num(runs[0], "tokens") > 0, "usage is counted: {}", runs[0]);
    let enqueued = run.events_of("injection_enqueued");
    assert_eq!(enqueued.len(), 1, "{}", run.dump());
    let lines: Vec<&str> = text(enqueued[0], "content").lines().collect();
    assert_eq!(lines.len(), 20, "{}", text(enqueued[0], "content"));
    let mut distinct = BTreeSet::new();
    for line in lines {
        let answer: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let object = answer.as_object().expect("an object");
        assert_eq!(object.len(), 2, "{line}");
        assert!(
            ["correct", "wrong", "unsure"].contains(&text(&answer, "verdict")),
            "{line}"
        );
        assert!(text(&answer, "reason").chars().count() <= 30, "{line}");
        distinct.insert(line.to_string());
    }
    assert!(distinct.len() > 1, "the tries are not all the same answer");
}
