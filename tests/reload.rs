//! Hot reload through the real binary: `murmur serve` watches its plugin folder and config
//! file. A replaced `.so` is loaded as a new generation and its new code runs from the next
//! turn; an added plugin with a new `[[analyzer]]` table starts running; a config with errors
//! is refused and the running one stays; a removed plugin's analyzer stops; SIGHUP reloads.

use murmur_e2e::*;
use reqwest::blocking::Client;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn versioned_table() -> String {
    "[[analyzer]]\nname = \"ver\"\nplugin = \"versioned\"\n\n".to_string()
}

fn late_table() -> String {
    "[[analyzer]]\nname = \"late\"\nplugin = \"configurable\"\nhooks = [\"turn_start\"]\n\
     [analyzer.config]\nrole = \"user\"\ntext = \"late note {turn}\"\n\n"
        .to_string()
}

struct Chat<'a> {
    http: Client,
    server: &'a Server,
    id: String,
    turn: u64,
}

impl Chat<'_> {
    /// One turn; then waits until each named analyzer's note about it is queued, so the
    /// next turn carries it.
    fn turn(&mut self, analyzers: &[&str]) {
        self.turn += 1;
        let r = self
            .http
            .post(
                self.server
                    .url(&format!("/v1/sessions/{}/messages", self.id)),
            )
            .json(&json!({ "content": format!("message {}", self.turn) }))
            .send()
            .expect("send");
        assert_eq!(r.status(), StatusCode::OK);
        let events = read_sse(r);
        let end = events.last().expect("events");
        assert_eq!(end.name, "turn_complete", "{events:?}");
        assert_eq!(end.data["turn"], self.turn);
        let started = std::time::Instant::now();
        for analyzer in analyzers {
            loop {
                let v: Value = self
                    .http
                    .get(
                        self.server
                            .url(&format!("/v1/sessions/{}?include=injections", self.id)),
                    )
                    .send()
                    .expect("transcript")
                    .json()
                    .expect("json");
                let made = v["injections"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|i| i["analyzer"] == *analyzer && i["about_turn"] == self.turn);
                if made {
                    break;
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(30),
                    "no note of `{analyzer}` about turn {}: {v}\n{}",
                    self.turn,
                    self.server.stderr()
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// The context messages of the first model call of `turn`.
fn context_of(t: &TestDir, turn: u64) -> Vec<String> {
    let text = std::fs::read_to_string(t.join("inputs.jsonl")).expect("inputs");
    let input: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|i| i["turn"] == turn && i["step"] == 1)
        .unwrap_or_else(|| panic!("no model input of turn {turn}"));
    messages(&input)
        .iter()
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_running_host_reloads_replaced_added_and_removed_plugins_and_refuses_a_broken_config() {
    let t = setup("reload");
    t.install_as("versioned-a", "libversioned.so");
    t.config(&format!("{MODEL}{}", versioned_table()));
    let replies: Vec<Value> = (1..=20)
        .map(|i| json!({ "text": format!("reply {i}") }))
        .collect();
    t.model_script(&replies);
    let server = t.serve_with(&["--record-model-input", "inputs.jsonl"], &[]);
    server.wait_for_stderr("watching");
    let http = Client::new();
    let created: Value = http
        .post(server.url("/v1/sessions"))
        .send()
        .expect("create")
        .json()
        .expect("json");
    let mut chat = Chat {
        http,
        server: &server,
        id: created["id"].as_str().expect("id").to_string(),
        turn: 0,
    };

    chat.turn(&["ver"]);
    chat.turn(&["ver"]);
    assert!(context_of(&t, 2).contains(&"murmur-testing-versioned-a about turn 1".to_string()));

    // Replaced: the same file name, the other library's code.
    t.install_as("versioned-b", "libversioned.so");
    server.wait_for_stderr("analyzer `ver` reloaded");
    chat.turn(&["ver"]);
    chat.turn(&["ver"]);
    let c4 = context_of(&t, 4);
    assert!(
        c4.contains(&"murmur-testing-versioned-b about turn 3".to_string()),
        "the new code ran from the next turn on: {c4:?}\n{}",
        server.stderr()
    );
    assert!(c4.contains(&"murmur-testing-versioned-a about turn 2".to_string()));

    // Added: a new library and a new table.
    t.install_as("configurable", "libconfigurable.so");
    t.config(&format!("{MODEL}{}{}", versioned_table(), late_table()));
    server.wait_for_stderr("analyzer `late` added");
    chat.turn(&["ver", "late"]);
    chat.turn(&["ver", "late"]);
    assert!(context_of(&t, 6).contains(&"late note 5".to_string()));

    // A broken config is refused; everything goes on as it was.
    t.config("this is = not [ valid toml\n");
    server.wait_for_stderr("has errors; the running config stays");
    chat.turn(&["ver", "late"]);
    chat.turn(&[]);
    assert!(context_of(&t, 8).contains(&"late note 7".to_string()));

    // Removed: the analyzer whose plugin is gone gets no more runs.
    std::fs::remove_file(t.join("plugins/libconfigurable.so")).expect("remove");
    server.wait_for_stderr("analyzer `late` stops");
    chat.turn(&["ver"]);
    chat.turn(&["ver"]);
    let c10 = context_of(&t, 10);
    assert!(!c10.iter().any(|m| m == "late note 9"), "{c10:?}");
    assert!(c10.contains(&"murmur-testing-versioned-b about turn 9".to_string()));

    // SIGHUP reloads too (the config is still broken, so it says so again).
    let before = server.stderr().matches("reload (SIGHUP)").count();
    server.signal("HUP");
    let started = std::time::Instant::now();
    while server.stderr().matches("reload (SIGHUP)").count() == before {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{}",
            server.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}
