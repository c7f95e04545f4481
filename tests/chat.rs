//! `murmur chat` driven through its standard input, a line at a time, the way a person
//! types: streamed replies, the note of a delivered injection, the event view, the analyzer
//! table, Ctrl-C (SIGINT) stopping a slow reply while the chat goes on, `/quit`, and the
//! line history kept next to the config.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use murmur_e2e::*;
use serde_json::json;

/// The longest wait for one expected line; it catches hangs, not slowness.
const WAIT: Duration = Duration::from_secs(60);

/// A running `murmur chat`, its input and the lines it printed.
struct Chat {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Chat {
    fn start(t: &TestDir) -> Chat {
        let mut child = Command::new(murmur_binary())
            .args(["chat", "--config", CONFIG])
            .current_dir(t.path())
            .env("NO_COLOR", "1")
            .env("MURMUR_LOG", "warn")
            .env("TMPDIR", t.join("tmp"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start murmur chat");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Chat {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").expect("write to murmur chat");
        stdin.flush().expect("flush");
    }

    /// Reads lines until one matches; returns it.
    fn expect(&mut self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let left = WAIT.saturating_sub(started.elapsed());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no line {what} within {WAIT:?}; saw:\n{}",
                        self.seen.join("\n")
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "murmur chat ended before {what}; saw:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }
}

impl Drop for Chat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_terminal_chat_streams_notes_injections_stops_on_ctrl_c_and_quits() {
    let t = setup("chat");
    t.plugins(&["configurable"]);
    t.config(&format!(
        "{MODEL}[[analyzer]]\nname = \"notes\"\nplugin = \"configurable\"\nhooks = [\"turn_start\"]\n\
         [analyzer.config]\nrole = \"user\"\ntext = \"note about turn {{turn}}\"\n"
    ));
    t.model_script(&[
        json!({"text": "Hello there, traveller."}),
        json!({"text": "Second answer."}),
        json!({"text": "This reply is never finished.", "delay": "60s"}),
        json!({"text": "Fourth answer."}),
    ]);
    let mut chat = Chat::start(&t);
    let header = chat.expect("with the header", |l| l.starts_with("murmur chat ·"));
    assert!(header.contains("analyzers: notes"), "{header}");

    // With the event view on, the test knows when the analyzer's run of turn 1 ended.
    chat.say("/events");
    chat.expect("confirming the event view", |l| l.starts_with("events on"));
    chat.say("Hi!");
    chat.expect("echoing the message", |l| l == "you › Hi!");
    // Event lines may cut into the streamed reply; the turn's end and the run's, in either
    // order, are what matter here.
    let ended = |l: &str| l.starts_with("· turn_ended") && l.contains("Hello there, traveller.");
    // The run's last event: its injection, enqueued.
    let ran = |l: &str| l.starts_with("· injection_enqueued") && l.contains("note about turn 1");
    let first = chat.expect("with the turn's end or the analyzer's run", |l| {
        ended(l) || ran(l)
    });
    if ended(&first) {
        chat.expect("with the analyzer's run", ran);
    } else {
        chat.expect("with the turn's end", ended);
    }
    chat.say("/events");
    chat.expect("turning the event view off", |l| l == "events off");
    let off = chat.seen.len();

    chat.say("And now?");
    let note = chat.expect("noting the delivery", |l| l.starts_with("↳ "));
    assert_eq!(note, "↳ notes: \"note about turn 1\" → context");
    chat.expect("with the second reply", |l| l == "murmur › Second answer.");
    assert!(
        !chat.seen[off..].iter().any(|l| l.starts_with("· ")),
        "no event lines after /events off: {:#?}",
        chat.seen
    );

    chat.say("/analyzers");
    chat.expect("with the table's header", |l| {
        l.split_whitespace().collect::<Vec<_>>()
            == ["analyzer", "plugin", "hooks", "runs", "failed", "delivered"]
    });
    let row = chat.expect("with the analyzer's row", |l| l.starts_with("notes "));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..3], ["notes", "configurable", "turn_start"], "{row}");
    assert!(cells[3].parse::<u32>().is_ok_and(|runs| runs >= 1), "{row}");
    assert_eq!((cells[4], cells[5]), ("0", "1"), "{row}");

    // Ctrl-C while the model is still on the slow reply: the turn stops, the chat goes on.
    chat.say("Tell me a long story.");
    chat.expect("echoing the slow message", |l| {
        l == "you › Tell me a long story."
    });
    let pid = chat.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("run kill");
    assert!(killed.success());
    chat.expect("saying the turn stopped", |l| l == "(stopped)");
    chat.say("One more?");
    chat.expect("with the next reply", |l| l == "murmur › Fourth answer.");

    chat.say("/quit");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = chat.child.try_wait().expect("poll") {
            break status;
        }
        assert!(
            started.elapsed() < WAIT,
            "murmur chat did not exit after /quit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let history = std::fs::read_to_string(t.join(".murmur/chat-history")).expect("the history");
    assert!(history.contains("And now?"), "{history}");
}
