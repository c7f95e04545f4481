//! The four analyzers Murmur ships (rag, moderation, fact-check, self-review), loaded from
//! their `.so` files by the real `murmur` binary, on the knowledge base in `examples/kb` and
//! a scripted chat model, so every reply is known in advance.

use murmur_e2e::*;
use serde_json::{json, Value};

const LIBRARIES: [&str; 4] = [
    "murmur_rag",
    "murmur_moderation",
    "murmur_fact_check",
    "murmur_self_review",
];

fn config() -> String {
    let kb = workspace_root().join("examples/kb");
    format!(
        "system_prompt = \"You answer questions about Northwind Rail.\"\n{MODEL}\
         [knowledge]\npath = \"{}\"\nindex = \"index\"\n\n\
         [[analyzer]]\nname = \"rag\"\n\n\
         [[analyzer]]\nname = \"moderation\"\n\n\
         [[analyzer]]\nname = \"fact-check\"\n\n\
         [[analyzer]]\nname = \"self-review\"\nttl_turns = 1\n",
        kb.display()
    )
}

/// The `injection_enqueued` events of one analyzer.
fn enqueued<'a>(run: &'a Run, analyzer: &str) -> Vec<&'a Value> {
    run.events_of("injection_enqueued")
        .into_iter()
        .filter(|e| text(e, "analyzer") == analyzer)
        .collect()
}

fn labels(event: &Value) -> Vec<String> {
    event["details"]["labels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn each_analyzer_injects_what_it_found_at_the_next_boundary() {
    let t = setup("analyzers");
    t.libraries(&LIBRARIES);
    t.config(&config());
    t.model_script(&[
        // Turn 1: a wrong year (the handbook says 1897) next to a right length.
        json!({"text": "The Halden line opened in 1923 and it is 38.6 km long."}),
        // Turn 2: cut off mid-sentence.
        json!({"text": "I booked your ticket to Halden and"}),
        json!({"text": "A single journey within zone A costs VDC 2.80."}),
    ]);
    t.conversation(
        "When did the Halden line open?\n@wait 400ms\n\
         Please book me a ticket to Halden, my card is 4539 1488 0343 6467.\n@wait 400ms\n\
         Thanks. What does a single ticket cost?\n",
    );
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());

    // rag: passages about the Halden line, with citations, in the context of turn 2.
    let rag = enqueued(&run, "rag");
    assert!(!rag.is_empty(), "{}", run.dump());
    assert!(
        labels(rag[0])
            .iter()
            .any(|l| l.starts_with("northwind/lines.md > Northwind Rail Lines > Halden line")),
        "{:?}",
        labels(rag[0])
    );
    let turn2: Vec<&str> = messages(run.input(2, 1))
        .iter()
        .map(|m| text(m, "content"))
        .collect();
    assert!(
        turn2
            .iter()
            .any(|c| c.contains("[1] northwind/") && c.contains("1897")),
        "{turn2:#?}"
    );

    // fact-check: the wrong year is corrected with its source; the right length is not.
    let fc = enqueued(&run, "fact-check");
    assert_eq!(fc.len(), 1, "{}", run.dump());
    assert_eq!(labels(fc[0]), vec!["contradicted"]);
    let correction = text(fc[0], "content");
    assert!(
        correction.contains("It said 1923") && correction.contains("1897"),
        "{correction}"
    );
    // One line: the length in the same sentence is right.
    assert_eq!(correction.matches("- It said").count(), 1, "{correction}");
    assert!(turn2.contains(&correction), "{turn2:#?}");

    // moderation: the card number, noted for turn 3's instructions, never repeated.
    let m = enqueued(&run, "moderation");
    assert_eq!(m.len(), 1, "{}", run.dump());
    assert_eq!(labels(m[0]), vec!["card"]);
    let turn3 = text(run.input(3, 1), "instructions");
    assert!(turn3.contains(text(m[0], "content")), "{turn3}");
    for e in run.events_of("injection_enqueued") {
        let all = e.to_string();
        assert!(
            !all.contains("4539 1488 0343 6467") && !all.contains("4539148803436467"),
            "{all}"
        );
    }

    // self-review: the cut-off reply of turn 2 is coached in turn 3 with key self-review.
    let sr: Vec<&Value> = enqueued(&run, "self-review")
        .into_iter()
        .filter(|e| num(e, "about_turn") == 2)
        .collect();
    assert_eq!(sr.len(), 1, "{}", run.dump());
    assert!(labels(sr[0]).contains(&"truncated".to_string()));
    assert_eq!(text(sr[0], "key"), "self-review");
    assert!(turn3.contains(text(sr[0], "content")), "{turn3}");
}

#[test]
fn murmur_index_builds_once_and_murmur_eval_scores_a_labeled_set_through_the_plugins() {
    let t = setup("index-eval");
    t.libraries(&LIBRARIES);
    t.config(&config());
    t.model_script(&[json!({"text": "unused"})]);
    let first = t.murmur(["index", "--config", "murmur.toml"]);
    assert_eq!(first.code, Some(0), "{}", first.dump());
    assert!(first.stdout.contains("11 files, "), "{}", first.dump());
    assert!(first.stdout.contains("(built)"), "{}", first.dump());
    let again = t.murmur(["index", "--config", "murmur.toml"]);
    assert!(again.stdout.contains("(up to date)"), "{}", again.dump());

    t.write(
        "moderation.jsonl",
        "{\"user\": \"card 4539 1488 0343 6467 please\", \"expect\": [\"card\"]}\n\
         {\"user\": \"order 4539 1488 0343 6468 shipped\", \"expect\": [], \"family\": \"luhn-fail\"}\n\
         {\"user\": \"mail me at ana@example.org\", \"expect\": [\"email\"]}\n",
    );
    t.write(
        "fact-check.jsonl",
        "{\"reply\": \"The Halden line opened in 1923.\", \"expect\": [\"contradicted\"]}\n\
         {\"reply\": \"The Halden line opened in 1897.\", \"expect\": []}\n",
    );
    let out = t.murmur([
        "eval",
        "--config",
        "murmur.toml",
        "moderation.jsonl",
        "fact-check.jsonl",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.dump());
    let card = out
        .stdout
        .lines()
        .find(|l| l.starts_with("card "))
        .unwrap_or_else(|| panic!("{}", out.dump()));
    assert!(card.ends_with("1.000   1.000  1.000"), "{card}");
    assert!(out.stdout.contains("3 cases, 0 wrong"), "{}", out.dump());
    assert!(out.stdout.contains("2 cases, 0 wrong"), "{}", out.dump());

    let e = t.murmur([
        "eval",
        "--config",
        "murmur.toml",
        "--analyzer",
        "nope",
        "moderation.jsonl",
    ]);
    assert_eq!(e.code, Some(2), "{}", e.dump());
    assert!(
        e.stderr.contains("no [[analyzer]] named `nope`"),
        "{}",
        e.dump()
    );
}

#[test]
fn the_chat_model_can_search_the_knowledge_base_with_the_search_knowledge_tool() {
    let t = setup("search-tool");
    let kb = workspace_root().join("examples/kb");
    t.config(&format!(
        "{MODEL}[knowledge]\npath = \"{}\"\nindex = \"index\"\ntool_results = 2\n",
        kb.display()
    ));
    t.model_script(&[
        json!({"tool_calls": [{"name": "search_knowledge", "arguments": {"query": "Halden line"}}]}),
        json!({"text": "It opened in 1897."}),
    ]);
    t.conversation("When did the Halden line open?\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    let results = run.events_of("tool_result");
    assert_eq!(results.len(), 1, "{}", run.dump());
    let output = text(results[0], "output");
    assert!(output.starts_with("[1] northwind/"), "{output}");
    assert!(
        output.contains("[2] ") && !output.contains("[3] "),
        "{output}"
    );
    assert!(output.contains("Halden line"), "{output}");
    // Step 2 sees the passages as the tool result.
    let step2 = messages(run.input(1, 2));
    assert!(
        step2.iter().any(|m| text(m, "content") == output),
        "{}",
        run.dump()
    );
}

#[test]
fn rag_without_a_knowledge_base_is_warned_about_and_its_failure_stays_its_own() {
    let t = setup("no-knowledge");
    t.libraries(&["murmur_rag"]);
    t.config(&format!("{MODEL}[[analyzer]]\nname = \"rag\"\n"));
    t.model_script(&[json!({"text": "Hello."})]);
    t.conversation("Hi there, when does the first train leave?\n");
    let run = t.run();
    assert_eq!(run.code(), Some(0), "{}", run.dump());
    assert!(
        run.stderr()
            .contains("warning: analyzer `rag` searches the knowledge base, but")
            && run.stderr().contains("has no [knowledge] table"),
        "{}",
        run.dump()
    );
    let runs = run.events_of("analyzer_run");
    assert_eq!(runs.len(), 1, "{}", run.dump());
    assert!(
        runs[0].to_string().contains("add a `[knowledge]` table"),
        "{}",
        run.dump()
    );
    assert_eq!(run.stat("failed"), 1);
    assert!(run.stdout().contains("assistant: Hello."), "{}", run.dump());
}

#[test]
fn with_the_embedding_model_rag_finds_passages_worded_unlike_the_question() {
    let t = setup("hybrid");
    t.libraries(&["murmur_rag"]);
    let model = workspace_root().join("models/all-MiniLM-L6-v2.gguf");
    assert!(
        model.is_file(),
        "{} is missing; run scripts/fetch-model",
        model.display()
    );
    t.config(&format!(
        "{MODEL}[knowledge]\npath = \"{}\"\nindex = \"index\"\nembedding_model = \"{}\"\n\n\
         [[analyzer]]\nname = \"rag\"\n",
        workspace_root().join("examples/kb").display(),
        model.display()
    ));
    t.model_script(&[json!({"text": "unused"})]);
    // BM25 alone misses both: the handbook says "freight" and "headquarters".
    t.write(
        "rag.jsonl",
        "{\"user\": \"When did the last goods train run on the network?\", \"expect\": [\"northwind/history.md > History of Northwind Rail > The state railway era > End of freight traffic\"]}\n\
         {\"user\": \"Where are the head offices of the railway company?\", \"expect\": [\"northwind/history.md > History of Northwind Rail > Northwind Rail today > Headquarters at Harbour House\"]}\n\
         {\"user\": \"How do I bake sourdough bread?\", \"expect\": []}\n",
    );
    let out = t.murmur(["eval", "--config", "murmur.toml", "rag.jsonl"]);
    assert_eq!(out.code, Some(0), "{}", out.dump());
    assert!(
        out.stderr.contains("embedded 206 passages"),
        "{}",
        out.dump()
    );
    assert!(
        out.stdout.contains("0 cases missed an expected label"),
        "{}",
        out.dump()
    );
    assert!(
        !out.stdout.contains("line 3:"),
        "nothing for an off-topic question: {}",
        out.dump()
    );
}
