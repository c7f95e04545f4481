//! `POST /v1/chat/completions` through the official `openai` Python package
//! (tests/openai-client/chat.py, installed by `scripts/setup`): plain and streamed answers
//! for a stateless client that resends its history, the client's own tools with and without
//! streaming, usage, errors; then what the model really received, from the server's
//! model-input record: the analyzers' injections, which the client never saw.

use murmur_e2e::*;
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-for-the-client";

#[test]
fn the_openai_python_client_works_unchanged_and_the_model_sees_the_injections() {
    let t = setup("completions");
    t.plugins(&["configurable"]);
    t.config(&format!(
        "record_model_input = \"inputs.jsonl\"\n{MODEL}[[analyzer]]\nname = \"notes\"\n\
         plugin = \"configurable\"\nhooks = [\"turn_start\"]\n[analyzer.config]\nrole = \"user\"\n\
         text = \"note about turn {{turn}}\"\n\n[server]\nauth_token_env = \"MURMUR_TOKEN\"\n"
    ));
    t.model_script(&[
        json!({"text": "Hello there, traveller."}),
        json!({"text": "Second answer."}),
        json!({"text": "Third answer, streamed."}),
        json!({"tool_calls": [{"id": "call_oslo", "name": "get_weather", "arguments": {"city": "Oslo"}}]}),
        json!({"text": "It is sunny in Oslo."}),
        json!({"text": "Let me look.", "tool_calls": [{"id": "call_bergen", "name": "get_weather", "arguments": {"city": "Bergen"}}]}),
        json!({"text": "Rain in Bergen, as always."}),
    ]);
    let server = t.serve(&[("MURMUR_TOKEN", TOKEN)]);

    let seen = python_client(
        "openai-client/chat.py",
        ("openai-client", "openai"),
        &[server.url("").as_ref(), TOKEN.as_ref()],
        || server.stderr(),
    );
    let out = seen.to_string();

    // Conversation A: one session for the stateless client's three requests.
    let a = text(&seen["a1"], "session").to_string();
    assert_eq!(seen["a1"]["content"], "Hello there, traveller.", "{seen:#}");
    assert_eq!(seen["a1"]["finish_reason"], "stop");
    assert_eq!(seen["a1"]["object"], "chat.completion");
    assert!(seen["a1"]["usage"]["total_tokens"].is_u64(), "{seen:#}");
    assert_eq!(seen["a2"]["content"], "Second answer.");
    assert_eq!(seen["a2"]["session"], a.as_str(), "{seen:#}");
    let a3 = &seen["a3"];
    assert_eq!(a3["session"], a.as_str(), "{seen:#}");
    assert_eq!(a3["text"], "Third answer, streamed.");
    assert_eq!(a3["finish_reason"], "stop");
    assert!(a3["chunks"].as_u64() > Some(3), "streamed in pieces: {a3}");
    assert!(a3["usage"]["completion_tokens"].is_u64(), "{a3}");

    // Conversation B: the client's tool, answered, resumes the same session.
    let b1 = &seen["b1"];
    assert_eq!(b1["finish_reason"], "tool_calls", "{seen:#}");
    assert_eq!(
        b1["calls"],
        json!([{"id": "call_oslo", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}])
    );
    let b = text(b1, "session").to_string();
    assert_ne!(b, a);
    assert_eq!(seen["b2"]["session"], b.as_str(), "{seen:#}");
    assert_eq!(seen["b2"]["content"], "It is sunny in Oslo.");
    assert_eq!(seen["b2"]["finish_reason"], "stop");

    // Conversation C: the same, streamed, with text before the call.
    let c1 = &seen["c1"];
    assert_eq!(c1["finish_reason"], "tool_calls", "{seen:#}");
    assert_eq!(c1["text"], "Let me look.");
    assert_eq!(c1["calls"][0]["name"], "get_weather");
    assert_eq!(c1["calls"][0]["arguments"], "{\"city\":\"Bergen\"}");
    let c = text(c1, "session").to_string();
    assert!(c != a && c != b);
    assert_eq!(seen["c2"]["session"], c.as_str(), "{seen:#}");
    assert_eq!(seen["c2"]["text"], "Rain in Bergen, as always.");

    let bad = &seen["bad"];
    assert_eq!(bad["raised"], "BadRequestError", "{seen:#}");
    assert_eq!(bad["status"], 400);
    assert!(
        text(bad, "message").contains("messages[0].role `robot`"),
        "{bad}"
    );

    // No injection ever reached the client.
    assert!(!out.contains("note about"), "{seen:#}");

    // What the model received: the notes of earlier turns, in the context lane.
    let inputs: Vec<Value> = std::fs::read_to_string(t.join("inputs.jsonl"))
        .expect("the model-input record")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let input = |session: &str, turn: u64| -> &Value {
        inputs
            .iter()
            .find(|i| i["session"] == session && i["turn"] == turn)
            .unwrap_or_else(|| panic!("no model input of {session} turn {turn}: {inputs:#?}"))
    };
    let a2 = messages(input(&a, 2));
    let roles: Vec<(&str, &str)> = a2
        .iter()
        .map(|m| (text(m, "origin"), text(m, "content")))
        .collect();
    assert_eq!(
        roles,
        [
            ("user", "Hi!"),
            ("assistant", "Hello there, traveller."),
            ("user", "And now?"),
            ("injection", "note about turn 1"),
        ],
        "{a2:#?}"
    );
    assert_eq!(a2[3]["analyzer"], "notes");
    // The client's system message replaced the configured system prompt.
    assert_eq!(
        text(input(&a, 2), "instructions"),
        "You are a terse travel guide."
    );
    let a3 = messages(input(&a, 3));
    assert!(
        a3.iter().any(|m| m["content"] == "note about turn 2"),
        "{a3:#?}"
    );
    // The resumed turn of B: the call, the client's result, then the model again (S11).
    let b2 = messages(input(&b, 2));
    let last = b2.last().expect("messages");
    assert_eq!(text(last, "origin"), "tool", "{b2:#?}");
    assert_eq!(text(last, "content"), "18 degrees and sunny in Oslo");
    assert_eq!(b2[b2.len() - 2]["tool_calls"][0]["id"], "call_oslo");
}

/// With `max_sessions` open, a new conversation closes the least recently used idle one;
/// that conversation, when its client comes back, continues in a new session seeded with
/// the history the client sent.
#[test]
fn a_full_host_evicts_the_least_recently_used_conversation_which_comes_back_seeded() {
    let t = setup("completions-evict");
    t.config(&format!(
        "record_model_input = \"inputs.jsonl\"\n{MODEL}[server]\nmax_sessions = 2\n"
    ));
    t.model_script(&[
        json!({"text": "X one."}),
        json!({"text": "Y one."}),
        json!({"text": "Z one."}),
        json!({"text": "X two."}),
    ]);
    let server = t.serve(&[]);
    let http = reqwest::blocking::Client::new();
    let ask = |messages: Value| {
        let r = http
            .post(server.url("/v1/chat/completions"))
            .json(&json!({ "model": "any", "messages": messages }))
            .send()
            .expect("request");
        assert_eq!(r.status(), reqwest::StatusCode::OK, "{}", server.stderr());
        let session = r
            .headers()
            .get("x-murmur-session")
            .and_then(|v| v.to_str().ok())
            .expect("the session header")
            .to_string();
        let body: Value = r.json().expect("json");
        (session, body["choices"][0]["message"]["content"].clone())
    };
    let (x, said) = ask(json!([{"role": "user", "content": "x?"}]));
    assert_eq!(said, "X one.");
    let (y, _) = ask(json!([{"role": "user", "content": "y?"}]));
    let (z, _) = ask(json!([{"role": "user", "content": "z?"}]));
    assert!(x != y && y != z && x != z);

    let gone = http
        .get(server.url(&format!("/v1/sessions/{x}")))
        .send()
        .expect("transcript");
    assert_eq!(
        gone.status(),
        reqwest::StatusCode::NOT_FOUND,
        "x was evicted"
    );
    let kept = http
        .get(server.url(&format!("/v1/sessions/{y}")))
        .send()
        .expect("transcript");
    assert_eq!(kept.status(), reqwest::StatusCode::OK);

    let (x2, said) = ask(json!([
        {"role": "user", "content": "x?"},
        {"role": "assistant", "content": "X one."},
        {"role": "user", "content": "and x again?"}
    ]));
    assert_eq!(said, "X two.");
    assert!(
        x2 != x && x2 != z,
        "a new session for the returning conversation"
    );
    let inputs = std::fs::read_to_string(t.join("inputs.jsonl")).expect("the record");
    let last: Value = serde_json::from_str(inputs.lines().last().expect("a line")).expect("json");
    assert_eq!(last["session"], x2.as_str());
    let seen: Vec<(&str, &str)> = messages(&last)
        .iter()
        .map(|m| (text(m, "origin"), text(m, "content")))
        .collect();
    assert_eq!(
        seen,
        [
            ("user", "x?"),
            ("assistant", "X one."),
            ("user", "and x again?")
        ]
    );
}
