//! SPEC S37 and S38 against the real binary: `murmur serve` with its SQLite store drives
//! several conversations with two analyzers (one per lane) and is killed with SIGKILL at
//! random moments, 100 times, then restarted on the same store. From the event logs, the
//! recorded model inputs and the store it left behind it checks that no acknowledged user
//! message was lost, no enqueued injection was lost, nothing was delivered twice, and every
//! session answers after the last restart.
//!
//! `MURMUR_CRASH_SEED=N` replays one run; the seed is printed with the result.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use murmur_e2e::*;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

const KILLS: usize = 100;
const SESSIONS: usize = 3;
/// The longest a host lives before it is killed.
const MAX_LIFE_MS: u64 = 700;

const CONFIG_TOML: &str = r#"[model]
provider = "scripted"
script = "replies.jsonl"
chunk_chars = 3

[[analyzer]]
name = "ctx"
plugin = "configurable"
hooks = ["turn_start"]
[analyzer.config]
role = "user"
text = "ctx {turn}"
delay_ms = 20

[[analyzer]]
name = "coach"
plugin = "configurable"
hooks = ["turn_complete"]
[analyzer.config]
role = "system"
text = "coach {turn}"
delay_ms = 10
"#;

/// xorshift64*: enough randomness for kill times, and replayable from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// What the clients did, over all hosts.
#[derive(Default)]
struct Log {
    /// Messages sent, per session.
    sent: BTreeMap<String, BTreeSet<String>>,
    /// Messages the server acknowledged (200: taken and stored), per session.
    acked: BTreeMap<String, BTreeSet<String>>,
    /// Answers that should not happen (a missing session, an unexpected status).
    errors: Vec<String>,
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client")
}

/// One client: sends numbered messages to its session until told to stop or the server
/// is gone; sometimes sends the next one before the answer to the last has ended.
fn drive(
    base: &str,
    id: &str,
    counter: &AtomicU64,
    log: &Mutex<Log>,
    stop: &AtomicBool,
    seed: u64,
) {
    let http = client();
    let mut rng = Rng(seed | 1);
    std::thread::scope(|scope| {
        while !stop.load(Ordering::SeqCst) {
            let k = counter.fetch_add(1, Ordering::SeqCst);
            let text = format!("{id} says message {k}");
            lock(log)
                .sent
                .entry(id.to_string())
                .or_default()
                .insert(text.clone());
            let sent = http
                .post(format!("{base}/v1/sessions/{id}/messages"))
                .json(&json!({ "content": text }))
                .send();
            let Ok(response) = sent else {
                return; // the server is gone
            };
            match response.status() {
                StatusCode::OK => {
                    lock(log)
                        .acked
                        .entry(id.to_string())
                        .or_default()
                        .insert(text);
                    if rng.below(10) < 3 {
                        scope.spawn(move || read_sse_until_broken(response));
                    } else {
                        read_sse_until_broken(response);
                    }
                }
                status => {
                    let body = response.text().unwrap_or_default();
                    lock(log)
                        .errors
                        .push(format!("{text}: answered {status}: {body}"));
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(rng.below(60)));
        }
    });
}

/// The session store a host left behind, read with SQLite itself.
struct Store(rusqlite::Connection);

impl Store {
    fn read(path: &std::path::Path) -> Store {
        let conn =
            rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Store(conn)
    }

    /// A session's model context: (origin, content) in order.
    fn history(&self, id: &str) -> Vec<(String, String)> {
        let mut st = self
            .0
            .prepare("SELECT origin, content FROM messages WHERE session = ?1 ORDER BY pos")
            .expect("a query on messages");
        st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("messages")
            .collect::<Result<_, _>>()
            .expect("rows of messages")
    }

    /// A session's injections by id, as JSON objects.
    fn injections(&self, id: &str) -> BTreeMap<u64, Value> {
        let mut st = self
            .0
            .prepare(
                "SELECT id, lane, content, status, about_turn FROM injections WHERE session = ?1",
            )
            .expect("a query on injections");
        st.query_map([id], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                json!({
                    "lane": r.get::<_, String>(1)?,
                    "content": r.get::<_, String>(2)?,
                    "status": r.get::<_, String>(3)?,
                    "about_turn": r.get::<_, i64>(4)?,
                }),
            ))
        })
        .expect("injections")
        .collect::<Result<_, _>>()
        .expect("rows of injections")
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the host was doing when it was killed, from its event log: a model call in
/// flight, analyzer runs in flight, or neither.
fn moment(events: &[Value]) -> &'static str {
    let (mut calls, mut runs) = (0i64, 0i64);
    for e in events {
        match e["type"].as_str().unwrap_or_default() {
            "model_called" => calls += 1,
            "model_replied" => calls -= 1,
            "turn_ended" if e["outcome"] != "completed" => calls = 0.max(calls - 1),
            "hook_fired" => runs += e["analyzers"].as_array().map_or(0, |a| a.len() as i64),
            "run_coalesced" => runs -= 1,
            "analyzer_run" => runs -= 1,
            _ => {}
        }
    }
    if calls > 0 {
        "a model call"
    } else if runs > 0 {
        "analyzer runs"
    } else {
        "idle"
    }
}

#[test]
fn s37_s38_a_host_killed_100_times_loses_and_repeats_nothing() {
    let seed = std::env::var("MURMUR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(7)
        });
    let mut rng = Rng(seed | 1);
    let t = setup("crash");
    t.plugins(&["configurable"]);
    t.config(CONFIG_TOML);
    let replies: Vec<Value> = (1..=3000)
        .map(|i| json!({"text": format!("answer {i} from the model"), "delay": "25ms"}))
        .collect();
    t.model_script(&replies);

    let log = Mutex::new(Log::default());
    let counters: Vec<AtomicU64> = (0..SESSIONS).map(|_| AtomicU64::new(1)).collect();
    let mut ids: Vec<String> = Vec::new();
    let mut moments: BTreeMap<&str, usize> = BTreeMap::new();
    let http = client();
    let start = |n: usize| {
        let events = format!("events-{n}.jsonl");
        let inputs = format!("inputs-{n}.jsonl");
        t.serve_with(&["--events", &events, "--record-model-input", &inputs], &[])
    };

    for cycle in 0..KILLS {
        let server = start(cycle);
        if cycle == 0 {
            for _ in 0..SESSIONS {
                let r = http
                    .post(server.url("/v1/sessions"))
                    .send()
                    .expect("create a session");
                assert_eq!(r.status(), StatusCode::CREATED);
                let v: Value = r.json().expect("json");
                ids.push(v["id"].as_str().expect("an id").to_string());
            }
        }
        let stop = AtomicBool::new(false);
        let life = Duration::from_millis(rng.below(MAX_LIFE_MS));
        let base = server.url("");
        let seeds: Vec<u64> = (0..SESSIONS).map(|_| rng.below(u64::MAX)).collect();
        std::thread::scope(|scope| {
            for (i, id) in ids.iter().enumerate() {
                let (base, log, stop, counter, seed) = (&base, &log, &stop, &counters[i], seeds[i]);
                scope.spawn(move || drive(base, id, counter, log, stop, seed));
            }
            std::thread::sleep(life);
            server.kill();
            stop.store(true, Ordering::SeqCst);
        });
        *moments
            .entry(moment(&jsonl(&t.join(format!("events-{cycle}.jsonl")))))
            .or_default() += 1;
    }

    // The last host: every session answers three more messages, one after the other.
    let server = start(KILLS);
    let mut last_turn = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        for _ in 0..3 {
            let k = counters[i].fetch_add(1, Ordering::SeqCst);
            let text = format!("{id} says message {k}");
            let r = http
                .post(server.url(&format!("/v1/sessions/{id}/messages")))
                .json(&json!({ "content": text }))
                .send()
                .expect("the restarted host answers");
            assert_eq!(
                r.status(),
                StatusCode::OK,
                "session {id} after the last restart:\n{}",
                server.stderr()
            );
            lock(&log)
                .sent
                .entry(id.clone())
                .or_default()
                .insert(text.clone());
            lock(&log).acked.entry(id.clone()).or_default().insert(text);
            let events = read_sse(r);
            let end = events.last().expect("events");
            assert!(
                end.name == "turn_complete" && end.data["outcome"] == "completed",
                "session {id}: {events:?}"
            );
            last_turn.insert(id.clone(), end.data["turn"].as_u64().unwrap_or(0));
        }
    }
    drop(server);
    let store = Store::read(&t.join(".murmur/sessions.db"));

    let log = log
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(
        log.errors.is_empty(),
        "unexpected answers: {:#?}",
        log.errors
    );

    // Everything every host logged and fed the model.
    let mut enqueued: BTreeMap<(String, u64), Value> = BTreeMap::new();
    let mut inputs: Vec<Value> = Vec::new();
    for n in 0..=KILLS {
        for e in jsonl(&t.join(format!("events-{n}.jsonl"))) {
            if e["type"] == "injection_enqueued" {
                let key = (
                    e["session"].as_str().unwrap_or_default().to_string(),
                    e["id"].as_u64().unwrap_or(0),
                );
                enqueued.insert(key, e);
            }
        }
        inputs.extend(jsonl(&t.join(format!("inputs-{n}.jsonl"))));
    }

    let mut problems: Vec<String> = Vec::new();
    let (mut lost_messages, mut repeated_messages) = (0, 0);
    let (mut lost_injections, mut repeated_injections, mut delivered) = (0, 0, 0);
    for id in &ids {
        let history = store.history(id);
        // User messages: every acknowledged one exactly once, nothing twice.
        let mut users: BTreeMap<&str, usize> = BTreeMap::new();
        for (origin, content) in &history {
            if origin == "user" {
                *users.entry(content.as_str()).or_default() += 1;
            }
        }
        for text in log.acked.get(id).into_iter().flatten() {
            match users.get(text.as_str()) {
                None => {
                    lost_messages += 1;
                    problems.push(format!("lost: acknowledged message `{text}`"));
                }
                Some(n) if *n > 1 => {
                    repeated_messages += 1;
                    problems.push(format!("`{text}` is in the stored history {n} times"));
                }
                Some(_) => {}
            }
        }
        for text in users.keys() {
            if !log.sent.get(id).is_some_and(|s| s.contains(*text)) {
                problems.push(format!("`{text}` was never sent"));
            }
        }

        // Injections: every one a host logged is in the store; all but the last turns'
        // are delivered.
        let stored = store.injections(id);
        let last = last_turn[id];
        for ((_, qid), e) in enqueued.range((id.clone(), 0)..=(id.clone(), u64::MAX)) {
            let Some(s) = stored.get(qid) else {
                lost_injections += 1;
                problems.push(format!("lost: injection {qid} of {id} ({})", e["content"]));
                continue;
            };
            assert_eq!(s["content"], e["content"], "injection {qid} of {id}");
            let status = s["status"].as_str().unwrap_or_default();
            let about = s["about_turn"].as_u64().unwrap_or(0);
            if status == "delivered" {
                delivered += 1;
            } else if !(status == "queued" && about + 2 > last) {
                lost_injections += 1;
                problems.push(format!(
                    "injection {qid} of {id} about turn {about} is {status} after turn {last}"
                ));
            }
        }

        // Context injections: the stored model context holds each delivered one once.
        let mut in_context: BTreeMap<&str, usize> = BTreeMap::new();
        for (origin, content) in &history {
            if origin == "injection" {
                *in_context.entry(content.as_str()).or_default() += 1;
            }
        }
        for s in stored.values() {
            if s["lane"] != "context" || s["status"] != "delivered" {
                continue;
            }
            let text = s["content"].as_str().unwrap_or_default();
            let n = in_context.get(text).copied().unwrap_or(0);
            if n != 1 {
                if n > 1 {
                    repeated_injections += 1;
                } else {
                    lost_injections += 1;
                }
                problems.push(format!(
                    "`{text}` of {id} is in the model context {n} times"
                ));
            }
        }
        // Instructions: each reached the system text of one turn at most.
        let mut turns_of: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for i in inputs.iter().filter(|i| i["session"] == id.as_str()) {
            let instructions = i["instructions"].as_str().unwrap_or_default();
            for s in stored.values().filter(|s| s["lane"] == "instructions") {
                let text = s["content"].as_str().unwrap_or_default();
                if instructions.lines().any(|l| l == text) {
                    turns_of
                        .entry(text.to_string())
                        .or_default()
                        .insert(i["turn"].as_u64().unwrap_or(0));
                }
            }
        }
        for (text, turns) in turns_of.iter().filter(|(_, t)| t.len() > 1) {
            repeated_injections += 1;
            problems.push(format!("`{text}` of {id} was delivered in turns {turns:?}"));
        }
    }

    let acked: usize = log.acked.values().map(BTreeSet::len).sum();
    let sent: usize = log.sent.values().map(BTreeSet::len).sum();
    let moments: Vec<String> = moments.iter().map(|(k, v)| format!("{v} {k}")).collect();
    println!(
        "crash test (seed {seed}): {KILLS} kills ({}); {SESSIONS} sessions; user messages: {acked} acknowledged of {sent} sent, {lost_messages} lost, {repeated_messages} repeated; injections: {} enqueued, {delivered} delivered, {lost_injections} lost, {repeated_injections} delivered twice",
        moments.join(", "),
        enqueued.len(),
    );
    assert!(problems.is_empty(), "seed {seed}:\n{}", problems.join("\n"));
    assert!(
        acked > KILLS,
        "the clients got few messages through: {acked}"
    );
}
