//! `murmur serve` through a real HTTP client (reqwest): the session API and its
//! server-sent events, the transcript with injection provenance, metrics, bearer-token auth,
//! limits, and that bad requests never take the server down.

use murmur_e2e::*;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A scripted model and a `configurable` analyzer that notes every turn in the context
/// lane while the model answers.
fn config(server: &str) -> String {
    format!(
        "{MODEL}[[analyzer]]\nname = \"notes\"\nplugin = \"configurable\"\nhooks = [\"turn_start\"]\n\
         [analyzer.config]\nrole = \"user\"\ntext = \"note about turn {{turn}}\"\n\n{server}"
    )
}

fn client() -> Client {
    Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .expect("an HTTP client")
}

/// Sends a session-creating request; the new session's id.
fn created_id(request: reqwest::blocking::RequestBuilder) -> String {
    let created = request.send().expect("create a session");
    assert_eq!(created.status(), StatusCode::CREATED);
    created.json::<Value>().expect("json")["id"]
        .as_str()
        .expect("an id")
        .to_string()
}

fn error_type(body: &Value) -> &str {
    body["error"]["type"].as_str().unwrap_or_default()
}

#[test]
fn a_session_streams_its_turns_as_server_sent_events_and_shows_its_transcript() {
    let t = setup("serve-session");
    t.plugins(&["configurable"]);
    t.config(&config(""));
    t.model_script(&[
        json!({"text": "Hello there, traveller."}),
        json!({"text": "Second answer."}),
    ]);
    let server = t.serve(&[]);
    let http = client();

    let health: Value = http
        .get(server.url("/healthz"))
        .send()
        .expect("healthz")
        .json()
        .expect("json");
    assert_eq!(health["status"], "ok");

    let id = created_id(http.post(server.url("/v1/sessions")));
    // A live feed of the whole session, read until the session is deleted.
    let feed = {
        let r = http
            .get(server.url(&format!("/v1/sessions/{id}/events")))
            .send()
            .expect("events");
        assert_eq!(r.status(), StatusCode::OK);
        std::thread::spawn(move || read_sse(r))
    };

    let say = |content: &str| {
        let r = http
            .post(server.url(&format!("/v1/sessions/{id}/messages")))
            .json(&json!({ "content": content }))
            .send()
            .expect("send a message");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream")));
        read_sse(r)
    };

    let first = say("Hi!");
    let names: Vec<&str> = first.iter().map(|e| e.name.as_str()).collect();
    let tokens: String = first
        .iter()
        .filter(|e| e.name == "token")
        .map(|e| e.data["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(tokens, "Hello there, traveller.", "{names:?}");
    assert!(
        names.iter().filter(|n| **n == "token").count() > 1,
        "{names:?}"
    );
    let last = first.last().expect("events");
    assert_eq!(last.name, "turn_complete", "{names:?}");
    assert_eq!(last.data["reply"], "Hello there, traveller.");
    assert_eq!(last.data["outcome"], "completed");
    assert_eq!(last.data["turn"], 1);

    // Turn 2 starts with the note the analyzer made during turn 1, once it is made.
    let started = std::time::Instant::now();
    loop {
        let v: Value = http
            .get(server.url(&format!("/v1/sessions/{id}?include=injections")))
            .send()
            .expect("transcript")
            .json()
            .expect("json");
        if v["injections"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["about_turn"] == 1))
        {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let second = say("And now?");
    let delivered = second
        .iter()
        .find(|e| e.name == "injection" && e.data["type"] == "injection_delivered")
        .unwrap_or_else(|| panic!("no delivery in {second:?} (turn 1 had {first:?})"));
    assert_eq!(delivered.data["analyzer"], "notes");
    assert_eq!(delivered.data["boundary"], "turn");
    assert_eq!(delivered.data["turn"], 2);
    // Analyzer runs that end while a message's stream is open arrive as `analyzer` events;
    // this one may end after turn 1 did, so its count is checked in /metrics below.
    for e in second.iter().chain(&first).filter(|e| e.name == "analyzer") {
        assert_eq!(e.data["analyzer"], "notes", "{e:?}");
    }
    assert_eq!(
        second.last().expect("events").data["reply"],
        "Second answer."
    );

    let transcript: Value = http
        .get(server.url(&format!("/v1/sessions/{id}")))
        .send()
        .expect("transcript")
        .json()
        .expect("json");
    assert_eq!(
        transcript,
        json!({"id": id, "messages": [
            {"role": "user", "content": "Hi!"},
            {"role": "assistant", "content": "Hello there, traveller."},
            {"role": "user", "content": "And now?"},
            {"role": "assistant", "content": "Second answer."},
        ]})
    );
    let with: Value = http
        .get(server.url(&format!("/v1/sessions/{id}?include=injections")))
        .send()
        .expect("transcript")
        .json()
        .expect("json");
    let injections = with["injections"].as_array().expect("injections");
    let note = injections
        .iter()
        .find(|i| i["content"] == "note about turn 1")
        .unwrap_or_else(|| panic!("{with:#}"));
    assert_eq!(note["analyzer"], "notes");
    assert_eq!(note["lane"], "context");
    assert_eq!(note["status"], "delivered");
    assert_eq!(note["delivered"]["turn"], 2);
    assert_eq!(note["delivered"]["boundary"], "turn");
    // Injections are provenance, never conversation.
    assert_eq!(with["messages"], transcript["messages"]);

    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    for line in [
        "murmur_turns_total{outcome=\"completed\"} 2",
        "murmur_injections_total{fate=\"delivered\"}",
        "murmur_analyzer_runs_total{analyzer=\"notes\",outcome=\"ok\"}",
        "murmur_turn_duration_seconds_count 2",
        "murmur_sessions_open 1",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }

    let stopped = http
        .post(server.url(&format!("/v1/sessions/{id}/stop")))
        .send()
        .expect("stop");
    assert_eq!(stopped.status(), StatusCode::OK);
    let deleted = http
        .delete(server.url(&format!("/v1/sessions/{id}")))
        .send()
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::OK);
    let feed = feed
        .join()
        .expect("the feed ends when the session is deleted");
    let names: Vec<&str> = feed.iter().map(|e| e.name.as_str()).collect();
    for name in [
        "turn_started",
        "token",
        "injection",
        "turn_ended",
        "session_closed",
    ] {
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    // Every run of the analyzer is in the feed, also those that end between turns.
    assert_eq!(
        feed.iter()
            .filter(|e| e.name == "analyzer" && e.data["analyzer"] == "notes")
            .count(),
        2,
        "{names:?}"
    );
    let gone = http
        .get(server.url(&format!("/v1/sessions/{id}")))
        .send()
        .expect("get");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_type(&gone.json().expect("json")), "not_found");
}

#[test]
fn a_token_is_required_limits_answer_json_errors_and_bad_requests_do_not_kill_the_server() {
    let t = setup("serve-guard");
    t.plugins(&["configurable"]);
    t.config(&config(
        "[server]\nauth_token_env = \"MURMUR_E2E_TOKEN\"\nmax_body_bytes = 2048\n\
         max_message_chars = 100\nmax_sessions = 1\nmax_request_messages = 3\n",
    ));
    t.model_script(&[json!({"text": "ok"})]);
    let mut server = t.serve(&[("MURMUR_E2E_TOKEN", "s3cret")]);
    let http = client();
    let auth = |r: reqwest::blocking::RequestBuilder| r.bearer_auth("s3cret");

    // /healthz and the web page (which holds no data) are open; everything else needs
    // the token.
    let h = http.get(server.url("/healthz")).send().expect("healthz");
    assert_eq!(h.status(), StatusCode::OK);
    let page = http.get(server.url("/")).send().expect("page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html")));
    assert!(page.text().expect("html").contains("<title>Murmur</title>"));
    for r in [
        http.post(server.url("/v1/sessions")),
        http.post(server.url("/v1/sessions")).bearer_auth("wrong"),
        http.get(server.url("/metrics")),
        http.post(server.url("/v1/chat/completions"))
            .json(&json!({"messages": [{"role": "user", "content": "hi"}]})),
    ] {
        let r = r.send().expect("request");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(error_type(&r.json().expect("json body")), "unauthorized");
    }

    let id = created_id(auth(http.post(server.url("/v1/sessions"))));
    let more = auth(http.post(server.url("/v1/sessions")))
        .send()
        .expect("create");
    assert_eq!(more.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(error_type(&more.json().expect("json")), "too_many_sessions");

    let messages = server.url(&format!("/v1/sessions/{id}/messages"));
    let completions = server.url("/v1/chat/completions");
    let user = |content: &str| json!({"role": "user", "content": content});
    let cases: Vec<(reqwest::blocking::RequestBuilder, StatusCode, &str)> = vec![
        (
            auth(http.post(&messages)).json(&json!({"content": "x".repeat(101)})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_long",
        ),
        (
            auth(http.post(&messages))
                .header("content-type", "application/json")
                .body(format!("{{\"content\": \"{}\"}}", "y".repeat(4000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
        ),
        (
            auth(http.post(&messages))
                .header("content-type", "application/json")
                .body("{\"content\": "),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            auth(http.post(&messages)).json(&json!({"text": "wrong field"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            auth(http.post(&messages)).body("content=plain"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
        ),
        (
            auth(http.post(&messages)).json(&json!({"content": "  "})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            auth(http.post(server.url("/v1/sessions/nope/messages")))
                .json(&json!({"content": "hi"})),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            auth(http.get(server.url(&format!("/v1/sessions/{id}?include=everything")))),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            auth(http.get(server.url("/v2/whatever"))),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            auth(http.post(&completions)).json(&json!({"messages": [user("a"), user("b"), user("c"), user("d")]})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_messages",
        ),
        (
            auth(http.post(&completions)).json(&json!({"messages": [user(&"x".repeat(101))]})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_long",
        ),
        (
            auth(http.post(&completions)).json(&json!({"messages": [{"role": "robot", "content": "x"}]})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            auth(http.post(&completions)).json(&json!({"messages": []})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            auth(http.post(&completions)).json(&json!({"messages": "hi"})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            auth(http.post(&completions))
                .header("x-murmur-session", "not a valid id!")
                .json(&json!({"messages": [user("hi")]})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            // The only session is one of the session API: a new conversation finds no room.
            auth(http.post(&completions)).json(&json!({"messages": [user("hi")]})),
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sessions",
        ),
        (
            // Tool results for a session with no call waiting for one.
            auth(http.post(&completions))
                .header("x-murmur-session", id.as_str())
                .json(&json!({"messages": [user("hi"), {"role": "tool", "tool_call_id": "c9", "content": "5"}]})),
            StatusCode::CONFLICT,
            "session_conflict",
        ),
    ];
    for (request, status, kind) in cases {
        let r = request.send().expect("request");
        assert_eq!(r.status(), status);
        let body: Value = r.json().expect("a JSON error body");
        assert_eq!(error_type(&body), kind, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    assert!(server.alive(), "{}", server.stderr());

    // After all that, a proper message still gets its turn.
    let ok = auth(http.post(&messages))
        .json(&json!({"content": "hello"}))
        .send()
        .expect("message");
    let events = read_sse(ok);
    assert_eq!(events.last().expect("events").data["reply"], "ok");
    let metrics = auth(http.get(server.url("/metrics")))
        .send()
        .expect("metrics")
        .text()
        .expect("text");
    assert!(
        metrics.contains("murmur_http_requests_total{outcome=\"4xx\"}"),
        "{metrics}"
    );
}

#[test]
fn an_unset_token_variable_is_refused_at_start_with_its_name() {
    let t = setup("serve-token-unset");
    t.config(&config(
        "[server]\nauth_token_env = \"MURMUR_E2E_UNSET_TOKEN\"\n",
    ));
    t.model_script(&[json!({"text": "ok"})]);
    let out = t.murmur(["serve", "--config", CONFIG, "--listen", "127.0.0.1:0"]);
    assert_eq!(out.code, Some(2), "{}", out.dump());
    assert!(
        out.stderr.contains("MURMUR_E2E_UNSET_TOKEN") && out.stderr.contains("not set"),
        "{}",
        out.dump()
    );
}
