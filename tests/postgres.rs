//! Several hosts on one PostgreSQL database (SPEC S37, S38 across hosts): two `murmur serve`
//! processes share a real PostgreSQL server started for the test; one client alternates
//! between them within one session, and one host is killed with SIGKILL in the middle of a
//! turn. From the database, the event logs and the recorded model inputs of every host it
//! checks that every message is stored once and in order, that every injection — including
//! those whose analyzer run ended after the session had moved to the other host — is
//! delivered exactly once and in order, and that the other host took the session over.
//! Further tests: a database that goes down and comes back, a stateless OpenAI client that
//! switches hosts, and a full host that unloads idle sessions and loads them again.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use murmur_e2e::postgres::Postgres;
use murmur_e2e::*;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Turns in the conversation; the host serving turn `KILLED_TURN` is killed during it.
const TURNS: u64 = 14;
const KILLED_TURN: u64 = 7;

const CONFIG_TOML: &str = r#"[model]
provider = "scripted"
script = "replies.jsonl"
chunk_chars = 4

[store]
kind = "postgres"
url_env = "MURMUR_TEST_DATABASE_URL"
lease_ttl = "2s"
lease_wait = "30s"

# Context lane, while the model answers: delivered at the next boundary, on whichever host.
[[analyzer]]
name = "ctx"
plugin = "configurable"
hooks = ["turn_start"]
[analyzer.config]
role = "user"
text = "ctx {turn}"
delay_ms = 5

# Instructions lane, slow: its run usually ends after the client has sent the next message
# to the other host, so its note travels through the database's inbox.
[[analyzer]]
name = "coach"
plugin = "configurable"
hooks = ["turn_complete"]
[analyzer.config]
role = "system"
text = "coach {turn}"
delay_ms = 400
"#;

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client")
}

/// Stops a host with SIGTERM (its sessions are suspended and their leases released) and
/// waits for it to exit.
fn stop(mut server: Server) {
    server.signal("TERM");
    let started = Instant::now();
    while server.alive() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "murmur serve did not stop:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn s37_two_hosts_share_a_session_through_postgres_and_survive_a_kill_mid_turn() {
    let pg = Postgres::start();
    let url = pg.database("murmur");
    let t = setup("postgres-two-hosts");
    t.plugins(&["configurable"]);
    t.config(CONFIG_TOML);
    // Each host reads the script from its start; every call takes 150 ms before its first
    // token, so a kill right after the message is taken lands in the model call.
    let replies: Vec<Value> = (1..=60)
        .map(|i| json!({"text": format!("reply {i} of this host"), "delay": "150ms"}))
        .collect();
    t.model_script(&replies);
    let env = [("MURMUR_TEST_DATABASE_URL", url.as_str())];
    let start = |name: &str| {
        let events = format!("events-{name}.jsonl");
        let inputs = format!("inputs-{name}.jsonl");
        t.serve_with(
            &["--events", &events, "--record-model-input", &inputs],
            &env,
        )
    };
    let mut hosts: BTreeMap<char, Server> = BTreeMap::new();
    hosts.insert('a', start("a1"));
    hosts.insert('b', start("b1"));
    let mut logs = vec!["a1", "b1"];
    let http = client();

    let created = http
        .post(hosts[&'a'].url("/v1/sessions"))
        .send()
        .expect("create a session");
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().expect("json")["id"]
        .as_str()
        .expect("an id")
        .to_string();

    let mut sent: Vec<String> = Vec::new();
    let mut served: BTreeMap<char, u64> = BTreeMap::new();
    let mut failover = Duration::ZERO;
    for turn in 1..=TURNS {
        let host = if turn % 2 == 1 { 'a' } else { 'b' };
        let text = format!("message {turn}");
        let r = http
            .post(hosts[&host].url(&format!("/v1/sessions/{id}/messages")))
            .json(&json!({ "content": text }))
            .send()
            .expect("send a message");
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "turn {turn} on host {host}: {}\n{}",
            r.text().unwrap_or_default(),
            hosts[&host].stderr()
        );
        sent.push(text);
        *served.entry(host).or_default() += 1;
        if turn == KILLED_TURN {
            // The message is stored and the model call is under way: kill the host.
            let mut killed_at = Instant::now();
            let (events, _) = std::thread::scope(|s| {
                let reader = s.spawn(|| read_sse_until_broken(r));
                std::thread::sleep(Duration::from_millis(30));
                if let Some(server) = hosts.remove(&host) {
                    killed_at = Instant::now();
                    server.kill();
                }
                reader.join().expect("the reader")
            });
            assert!(
                !events.iter().any(|e| e.name == "turn_complete"),
                "the turn ended before the kill: {events:?}"
            );
            let restarted = format!("{host}2");
            hosts.insert(host, start(&restarted));
            logs.push(if host == 'a' { "a2" } else { "b2" });
            // Without any message, a live host takes the session over once the dead host's
            // lease runs out, and ends the interrupted turn.
            loop {
                let taken = logs.iter().any(|name| {
                    jsonl(&t.join(format!("events-{name}.jsonl")))
                        .iter()
                        .any(|e| e["type"] == "session_taken_over")
                });
                if taken {
                    failover = killed_at.elapsed();
                    break;
                }
                assert!(
                    killed_at.elapsed() < Duration::from_secs(30),
                    "nobody took the session over"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            let checkpoint = pg.psql(
                "murmur",
                &format!("SELECT checkpoint FROM sessions WHERE id = '{id}'"),
            );
            assert!(
                !checkpoint.contains("running"),
                "the interrupted turn ended: {checkpoint}"
            );
            continue;
        }
        let events = read_sse(r);
        let end = events.last().expect("events");
        assert_eq!(end.name, "turn_complete", "turn {turn}: {events:?}");
        assert_eq!(end.data["outcome"], "completed", "turn {turn}: {end:?}");
        assert_eq!(end.data["turn"], turn, "turn {turn}: {end:?}");
        // The user reads the reply; meanwhile the slow analyzer's run on this host ends,
        // after the host released the session, so its note waits in the inbox for the
        // other host's next turn.
        std::thread::sleep(Duration::from_millis(700));
    }
    // The host that took the session over counted it.
    let taken_over: u64 = hosts
        .values()
        .map(|h| {
            let text = http
                .get(h.url("/metrics"))
                .send()
                .and_then(|r| r.text())
                .expect("metrics");
            text.lines()
                .find_map(|l| l.strip_prefix("murmur_sessions_taken_over_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(
        taken_over, 1,
        "murmur_sessions_taken_over_total over both hosts"
    );
    // The last turn's slow analyzer has finished (see the pause above); stop both hosts.
    for (_, server) in std::mem::take(&mut hosts) {
        stop(server);
    }

    // Everything every host logged and fed the model.
    let mut events: Vec<(String, Value)> = Vec::new();
    let mut inputs: Vec<Value> = Vec::new();
    for name in &logs {
        for e in jsonl(&t.join(format!("events-{name}.jsonl"))) {
            events.push((name.to_string(), e));
        }
        inputs.extend(jsonl(&t.join(format!("inputs-{name}.jsonl"))));
    }
    inputs.sort_by_key(|i| (num(i, "turn"), num(i, "step")));

    // Messages: every one sent is stored once, in the order sent.
    let stored: Vec<String> = pg
        .psql(
            "murmur",
            &format!(
                "SELECT content FROM messages WHERE session = '{id}' AND origin = 'user' ORDER BY pos"
            ),
        )
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(stored, sent, "the stored user messages");

    // Failover: exactly one, by the host that served the turn after the kill.
    let takeovers: Vec<&(String, Value)> = events
        .iter()
        .filter(|(_, e)| e["type"] == "session_taken_over")
        .collect();
    assert_eq!(takeovers.len(), 1, "{takeovers:?}");
    let resumed: Vec<&Value> = events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e["type"] == "session_resumed" && e["interrupted"] == KILLED_TURN)
        .collect();
    assert_eq!(resumed.len(), 1, "the killed turn ends once, as stopped");

    // Injections: the database's rows, and where each was enqueued and delivered.
    let rows: Vec<(u64, String, String, String, u64)> = pg
        .psql(
            "murmur",
            &format!(
                "SELECT id, analyzer, content, status, COALESCE(delivered_turn, 0) FROM injections
                 WHERE session = '{id}' ORDER BY id"
            ),
        )
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f.len(), 5, "{l}");
            (
                f[0].parse().expect("an id"),
                f[1].to_string(),
                f[2].to_string(),
                f[3].to_string(),
                f[4].parse().expect("a turn"),
            )
        })
        .collect();
    let enqueued: Vec<(&String, &Value)> = events
        .iter()
        .filter(|(_, e)| e["type"] == "injection_enqueued")
        .map(|(h, e)| (h, e))
        .collect();
    assert_eq!(
        enqueued.len(),
        rows.len(),
        "every injection a host enqueued is one row, and no row is enqueued twice"
    );
    // Only the note about the last turn may still wait in the inbox: no turn followed it.
    let left_in_inbox: Vec<String> = pg
        .psql(
            "murmur",
            &format!("SELECT content FROM inbox WHERE session = '{id}' ORDER BY seq"),
        )
        .lines()
        .map(str::to_string)
        .collect();
    let mut problems: Vec<String> = Vec::new();
    let (mut delivered, mut queued) = (0, 0);
    for (qid, analyzer, content, status, turn) in &rows {
        match status.as_str() {
            "delivered" => delivered += 1,
            // Only the notes about the last turns may still wait for a next turn.
            "queued" if content.ends_with(&TURNS.to_string()) => queued += 1,
            other => problems.push(format!(
                "injection {qid} ({analyzer}: {content}) is {other}"
            )),
        }
        // Delivered exactly once: an instructions-lane note is in the instructions of
        // exactly one model input, the turn it was delivered to (each turn has one step).
        if analyzer == "coach" && status == "delivered" {
            let carrying: Vec<u64> = inputs
                .iter()
                .filter(|i| {
                    i["instructions"]
                        .as_str()
                        .is_some_and(|s| s.lines().any(|l| l == content))
                })
                .map(|i| num(i, "turn"))
                .collect();
            if carrying != vec![*turn] {
                problems.push(format!(
                    "`{content}` delivered at turn {turn} is in the instructions of turns {carrying:?}"
                ));
            }
        }
    }
    // In order: the notes of each analyzer are delivered in the order of the turns they
    // are about.
    for analyzer in ["ctx", "coach"] {
        let turns: Vec<u64> = rows
            .iter()
            .filter(|r| r.1 == analyzer && r.3 == "delivered")
            .map(|r| r.4)
            .collect();
        let mut sorted = turns.clone();
        sorted.sort();
        if turns != sorted {
            problems.push(format!("{analyzer} notes delivered at turns {turns:?}"));
        }
    }
    // The context-lane notes stay in the context: the last model input holds each
    // delivered one once, in order.
    let last = inputs.last().expect("model inputs");
    let in_context: Vec<&str> = messages(last)
        .iter()
        .filter(|m| m["origin"] == "injection")
        .filter_map(|m| m["content"].as_str())
        .collect();
    let ctx_delivered: Vec<&str> = rows
        .iter()
        .filter(|r| r.1 == "ctx" && r.3 == "delivered" && r.4 <= num(last, "turn"))
        .map(|r| r.2.as_str())
        .collect();
    if in_context != ctx_delivered {
        problems.push(format!(
            "the last input's context notes {in_context:?} are not the delivered ones {ctx_delivered:?}"
        ));
    }
    // Runs that ended on one host and were enqueued on the other went through the inbox.
    let moved = enqueued
        .iter()
        .filter(|(host, e)| {
            let ran_on: Vec<&String> = events
                .iter()
                .filter(|(_, r)| {
                    r["type"] == "analyzer_run"
                        && r["analyzer"] == e["analyzer"]
                        && r["turn"] == e["about_turn"]
                        && r["injections"].as_u64().unwrap_or(0) > 0
                })
                .map(|(h, _)| h)
                .collect();
            !ran_on.is_empty() && !ran_on.contains(host)
        })
        .count();

    println!(
        "two hosts on one PostgreSQL database: {TURNS} turns ({} on host a, {} on host b), \
         {} failover (host {} killed during turn {KILLED_TURN}, its session taken over {} ms later with lease_ttl 2 s), \
         injections enqueued {} = delivered {delivered} + queued {queued}, \
         {moved} moved between hosts through the inbox, {} left in it {left_in_inbox:?}",
        served.get(&'a').copied().unwrap_or(0),
        served.get(&'b').copied().unwrap_or(0),
        takeovers.len(),
        if KILLED_TURN % 2 == 1 { 'a' } else { 'b' },
        failover.as_millis(),
        enqueued.len(),
        left_in_inbox.len(),
    );
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(delivered + queued, rows.len());
    assert!(
        moved > 0,
        "no analyzer result travelled through the inbox; the test does not cover it"
    );
    assert!(
        left_in_inbox.iter().all(|c| *c == format!("coach {TURNS}")),
        "{left_in_inbox:?}"
    );
}

#[test]
fn a_host_whose_database_is_down_answers_503_with_the_reason_and_recovers() {
    let pg = Postgres::start();
    let url = pg.database("murmur");
    let t = setup("postgres-down");
    t.plugins(&["configurable"]);
    t.config(CONFIG_TOML);
    t.model_script(&[json!({"text": "first"}), json!({"text": "second"})]);
    let server = t.serve(&[("MURMUR_TEST_DATABASE_URL", url.as_str())]);
    let http = client();
    let health = |status: StatusCode| {
        let r = http.get(server.url("/healthz")).send().expect("healthz");
        assert_eq!(r.status(), status);
        r.json::<Value>().expect("json")
    };
    assert_eq!(health(StatusCode::OK)["status"], "ok");
    let created = http
        .post(server.url("/v1/sessions"))
        .send()
        .expect("create a session");
    let id = created.json::<Value>().expect("json")["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let say = |text: &str| {
        http.post(server.url(&format!("/v1/sessions/{id}/messages")))
            .json(&json!({ "content": text }))
            .send()
            .expect("send a message")
    };
    let first = read_sse(say("one"));
    assert_eq!(first.last().expect("events").data["reply"], "first");

    pg.stop();
    let down = health(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down["status"], "unavailable");
    assert!(
        down["reason"]
            .as_str()
            .is_some_and(|r| r.contains("PostgreSQL") && r.contains("unreachable")
                || r.contains("cannot reach")),
        "{down}"
    );
    let not_created = http
        .post(server.url("/v1/sessions"))
        .send()
        .expect("create a session");
    assert_eq!(not_created.status(), StatusCode::SERVICE_UNAVAILABLE);
    let refused = say("two");
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = refused.json().expect("json");
    assert_eq!(body["error"]["type"], "session_unavailable", "{body}");

    pg.restart();
    // Calls fail fast for at most 5 s after a failure; then the host reconnects.
    let started = Instant::now();
    loop {
        let r = http.get(server.url("/healthz")).send().expect("healthz");
        if r.status() == StatusCode::OK {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "still down");
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = read_sse(say("two"));
    let end = second.last().expect("events");
    assert_eq!(end.data["reply"], "second", "{second:?}");
    assert_eq!(end.data["turn"], 2);
    let stored = pg.psql(
        "murmur",
        &format!(
            "SELECT content FROM messages WHERE session = '{id}' AND origin = 'user' ORDER BY pos"
        ),
    );
    assert_eq!(stored.lines().collect::<Vec<_>>(), ["one", "two"]);
}

#[test]
fn a_stateless_openai_client_continues_its_conversation_on_the_other_host() {
    let pg = Postgres::start();
    let url = pg.database("murmur");
    let t = setup("postgres-completions");
    t.plugins(&["configurable"]);
    t.config(CONFIG_TOML);
    t.model_script(&[
        json!({"text": "Paris."}),
        json!({"text": "About two million."}),
    ]);
    let env = [("MURMUR_TEST_DATABASE_URL", url.as_str())];
    let a = t.serve_with(&["--record-model-input", "inputs-a.jsonl"], &env);
    let b = t.serve_with(&["--record-model-input", "inputs-b.jsonl"], &env);
    let http = client();
    let complete = |server: &Server, messages: Value| -> String {
        let r = http
            .post(server.url("/v1/chat/completions"))
            .json(&json!({"model": "murmur", "messages": messages}))
            .send()
            .expect("a completion");
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().expect("json");
        v["choices"][0]["message"]["content"]
            .as_str()
            .expect("content")
            .to_string()
    };
    let first = complete(
        &a,
        json!([{"role": "user", "content": "What is the capital of France?"}]),
    );
    assert_eq!(first, "Paris.");
    // The client resends the whole conversation, this time to the other host.
    let second = complete(
        &b,
        json!([
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": first},
            {"role": "user", "content": "How many people live there?"}
        ]),
    );
    // Host b's script starts at its own first reply.
    assert_eq!(second, "Paris.");
    assert_eq!(
        pg.psql("murmur", "SELECT count(*) FROM sessions").trim(),
        "1",
        "one session, not a new one per host"
    );
    // Host b's model input continues host a's session: the note its analyzer made during
    // turn 1 is there, and this is turn 2.
    let inputs = jsonl(&t.join("inputs-b.jsonl"));
    let input = inputs.last().expect("host b called the model");
    assert_eq!(num(input, "turn"), 2, "{input}");
    let notes: Vec<&str> = messages(input)
        .iter()
        .filter(|m| m["origin"] == "injection")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(notes, ["ctx 1"], "{input}");
}

/// With a shared store a host keeps in memory only the sessions in use: at
/// `server.max_sessions` it unloads the least recently used idle one (the database keeps
/// it), never one whose analyzer run is still in flight, and an unloaded session's next
/// message loads it again with nothing lost.
#[test]
fn a_full_host_unloads_idle_sessions_and_loads_them_again_with_nothing_lost() {
    let pg = Postgres::start();
    let url = pg.database("murmur");
    let t = setup("postgres-unload");
    t.plugins(&["configurable"]);
    t.config(
        r#"[model]
provider = "scripted"
script = "replies.jsonl"

[store]
kind = "postgres"
url_env = "MURMUR_TEST_DATABASE_URL"

[server]
max_sessions = 2

# Runs for 3 s after each turn: its session is busy meanwhile.
[[analyzer]]
name = "coach"
plugin = "configurable"
hooks = ["turn_complete"]
[analyzer.config]
role = "system"
text = "coach {turn}"
delay_ms = 3000
"#,
    );
    t.model_script(&[
        json!({"text": "r1"}),
        json!({"text": "r2"}),
        json!({"text": "r3"}),
    ]);
    let env = [("MURMUR_TEST_DATABASE_URL", url.as_str())];
    let server = t.serve_with(&["--record-model-input", "inputs.jsonl"], &env);
    let http = client();
    let create = || {
        http.post(server.url("/v1/sessions"))
            .send()
            .expect("create a session")
    };
    let id_of = |r: reqwest::blocking::Response| -> String {
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json::<Value>().expect("json")["id"]
            .as_str()
            .expect("an id")
            .to_string()
    };
    let say = |id: &str, text: &str| -> Value {
        let events = read_sse(
            http.post(server.url(&format!("/v1/sessions/{id}/messages")))
                .json(&json!({ "content": text }))
                .send()
                .expect("send a message"),
        );
        events.last().expect("events").data.clone()
    };
    let open_now = || -> f64 {
        let text = http
            .get(server.url("/metrics"))
            .send()
            .expect("metrics")
            .text()
            .expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix("murmur_sessions_open "))
            .and_then(|v| v.trim().parse().ok())
            .expect("murmur_sessions_open")
    };

    let s1 = id_of(create());
    assert_eq!(say(&s1, "one")["turn"], 1);
    let s2 = id_of(create());
    assert_eq!(say(&s2, "two")["turn"], 1);
    // Both sessions' analyzer runs are in flight: neither may go.
    let refused = create();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = refused.json().expect("json");
    assert_eq!(body["error"]["type"], "too_many_sessions", "{body}");

    // Once the runs end, the least recently used session (s1) is unloaded for a new one.
    let started = Instant::now();
    let s3 = loop {
        let r = create();
        if r.status() == StatusCode::CREATED {
            break id_of(r);
        }
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(started.elapsed() < Duration::from_secs(60), "never room");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(open_now(), 2.0);
    assert_eq!(
        pg.psql("murmur", "SELECT count(*) FROM sessions").trim(),
        "3",
        "an unloaded session stays in the database"
    );

    // s1's next message loads it again (unloading s2, now the least recently used idle
    // one): its history and the note its analyzer made after turn 1 are all there.
    let end = say(&s1, "three");
    assert_eq!(end["turn"], 2, "{end}");
    assert_eq!(open_now(), 2.0);
    let inputs = jsonl(&t.join("inputs.jsonl"));
    let input = inputs.last().expect("the model was called");
    assert_eq!(input["session"], s1.as_str(), "{input}");
    let contents: Vec<&str> = messages(input)
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents, ["one", "r1", "three"], "{input}");
    assert!(
        input["instructions"]
            .as_str()
            .is_some_and(|i| i.contains("coach 1")),
        "the note from s1's turn 1 is in turn 2's instructions: {input}"
    );
    // s2 comes back the same way.
    assert_eq!(say(&s2, "four")["turn"], 2);
    // Reading an unloaded session needs no room, even while every session in memory is
    // busy; a message for it does.
    let transcript = http
        .get(server.url(&format!("/v1/sessions/{s1}")))
        .send()
        .expect("transcript");
    assert_eq!(transcript.status(), StatusCode::OK);
    let transcript: Value = transcript.json().expect("json");
    assert_eq!(transcript["messages"].as_array().map(Vec::len), Some(4));
    let stored: Value = http
        .get(server.url(&format!("/v1/sessions/{s3}")))
        .send()
        .expect("transcript")
        .json()
        .expect("json");
    assert_eq!(stored["id"], s3.as_str(), "{stored}");
    stop(server);
}
