//! SPEC rules that involve time and concurrency, checked on the real session actor with
//! test-double analyzers and paused tokio time (exact, no sleeping).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use murmur_plugin_api::{Hook, Injection};
use tokio::time::Instant;

use crate::analyzer::{AnalyzerBackend, AnalyzerEntry, RunError, RunRequest};
use crate::config::InstructionsPlacement;
use crate::events::{EventKind, EventLog, RunOutcome, Stats, TurnOutcome};
use crate::model::scripted::ScriptedModel;
use crate::model::{BoxFuture, ModelInput};
use crate::runtime::Runtime;
use crate::session::machine::SessionSettings;
use crate::session::runs::SlotSpec;

type Behaviour = dyn Fn(&RunRequest) -> (Duration, Result<Vec<Injection>, RunError>) + Send + Sync;

/// An analyzer that waits (on the tokio clock) and returns what its closure says.
struct MockAnalyzer {
    behaviour: Box<Behaviour>,
    seen: Arc<Mutex<Vec<RunRequest>>>,
}

impl AnalyzerBackend for MockAnalyzer {
    fn run(&self, request: RunRequest) -> BoxFuture<'static, Result<Vec<Injection>, RunError>> {
        let (delay, result) = (self.behaviour)(&request);
        self.seen.lock().expect("not poisoned").push(request);
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            result
        })
    }
}

struct Mock {
    entry: AnalyzerEntry,
    seen: Arc<Mutex<Vec<RunRequest>>>,
}

impl Mock {
    fn new(
        name: &str,
        hooks: &[Hook],
        behaviour: impl Fn(&RunRequest) -> (Duration, Result<Vec<Injection>, RunError>)
            + Send
            + Sync
            + 'static,
    ) -> Mock {
        let seen = Arc::new(Mutex::new(Vec::new()));
        Mock {
            entry: AnalyzerEntry {
                name: name.into(),
                plugin: "mock".into(),
                version: "1".into(),
                slot: SlotSpec {
                    hooks: hooks.to_vec(),
                    enabled: true,
                    every_n_turns: 1,
                    defer_timeout: Duration::from_secs(5),
                    health: Default::default(),
                },
                timeout: Duration::from_secs(30),
                ttl_turns: None,
                config_json: r#"{"level": 3}"#.into(),
                model: None,
                quarantine_after: 0,
                backend: Arc::new(MockAnalyzer {
                    behaviour: Box::new(behaviour),
                    seen: seen.clone(),
                }),
            },
            seen,
        }
    }

    /// Injects `text` (with `{turn}` filled in) after `delay`.
    fn note(name: &str, hooks: &[Hook], delay_ms: u64, instructions: bool, text: &str) -> Mock {
        let text = text.to_string();
        Mock::new(name, hooks, move |req| {
            let content = text.replace("{turn}", &req.turn.to_string());
            let injection = if instructions {
                Injection::instructions(content)
            } else {
                Injection::context(content)
            };
            (Duration::from_millis(delay_ms), Ok(vec![injection]))
        })
    }

    fn requests(&self) -> Vec<RunRequest> {
        self.seen.lock().expect("not poisoned").clone()
    }
}

struct Harness {
    runtime: Runtime,
    log: Arc<EventLog>,
    stats: Arc<Stats>,
}

fn harness(replies: &str, analyzers: Vec<AnalyzerEntry>) -> Harness {
    let model =
        ScriptedModel::parse(replies, Path::new("replies.jsonl"), 100).expect("valid script");
    harness_with(Arc::new(model), analyzers, None)
}

fn harness_with(
    model: Arc<dyn crate::model::ModelProvider>,
    analyzers: Vec<AnalyzerEntry>,
    store: Option<Arc<crate::store::Store>>,
) -> Harness {
    let log = Arc::new(EventLog::default());
    let stats = Arc::new(Stats::default());
    let settings = SessionSettings {
        system_prompt: "BASE".into(),
        max_steps: 5,
        steering: true,
        placement: InstructionsPlacement::System,
        compaction: Default::default(),
    };
    let mut builder = Runtime::builder(settings, model)
        .analyzers(analyzers)
        .observer(log.clone())
        .observer(stats.clone());
    if let Some(store) = store {
        builder = builder.store(store);
    }
    let runtime = builder.build();
    Harness {
        runtime,
        log,
        stats,
    }
}

fn texts(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"text\": \"reply {i}\"}}\n"))
        .collect()
}

fn input(log: &EventLog, turn: u64, step: u32) -> ModelInput {
    log.model_inputs()
        .into_iter()
        .find(|i| i.turn == turn && i.step == step)
        .expect("that model input was recorded")
}

fn fired_at(log: &EventLog, hook: Hook, turn: u64) -> Option<u64> {
    log.events().into_iter().find_map(|e| match e.kind {
        EventKind::HookFired {
            hook: h, turn: t, ..
        } if h == hook && t == turn => Some(e.at_ms),
        _ => None,
    })
}

fn runs(log: &EventLog, analyzer: &str) -> Vec<(RunOutcome, u64, Option<String>)> {
    log.events()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::AnalyzerRun {
                analyzer: a,
                outcome,
                error,
                ..
            } if a == analyzer => Some((outcome, e.at_ms, error)),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn s21_the_reply_never_waits_for_analyzer_work() {
    let slow_start = Mock::note("slow-start", &[Hook::TurnStart], 10_000, false, "s");
    let slow_end = Mock::note("slow-end", &[Hook::TurnComplete], 10_000, true, "e");
    let h = harness(&texts(2), vec![slow_start.entry, slow_end.entry]);
    let session = h.runtime.open_session("s");
    let t0 = Instant::now();
    let end = session.send("hi").wait().await.expect("answered");
    assert_eq!(end.outcome, TurnOutcome::Completed);
    assert_eq!(
        t0.elapsed(),
        Duration::ZERO,
        "the reply came before any analyzer finished"
    );
    let end2 = session.send("again").wait().await.expect("answered");
    assert_eq!(
        t0.elapsed(),
        Duration::ZERO,
        "the next turn does not wait either"
    );
    assert_eq!(end2.turn, 2);
}

#[tokio::test(start_paused = true)]
async fn s22_turn_complete_waits_for_turn_start_work_that_finishes_in_time() {
    let start = Mock::note("start", &[Hook::TurnStart], 2_000, false, "ctx {turn}");
    let end = Mock::note("end", &[Hook::TurnComplete], 0, true, "note {turn}");
    let h = harness(&texts(2), vec![start.entry, end.entry]);
    let session = h.runtime.open_session("s");
    session.send("hi").wait().await.expect("answered");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(fired_at(&h.log, Hook::TurnComplete, 1), Some(2_000));
}

#[tokio::test(start_paused = true)]
async fn s22_s23_turn_complete_stops_waiting_at_defer_timeout_and_late_work_still_lands() {
    let start = Mock::note("start", &[Hook::TurnStart], 8_000, false, "late ctx {turn}");
    let end = Mock::note("end", &[Hook::TurnComplete], 0, true, "note {turn}");
    let h = harness(&texts(2), vec![start.entry, end.entry]);
    let session = h.runtime.open_session("s");
    session.send("hi").wait().await.expect("answered");
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        fired_at(&h.log, Hook::TurnComplete, 1),
        Some(5_000),
        "defer_timeout is 5 s"
    );
    assert_eq!(
        runs(&h.log, "start"),
        vec![(RunOutcome::Ok, 8_000, None)],
        "not cancelled"
    );
    session.send("next").wait().await.expect("answered");
    let t2 = input(&h.log, 2, 1);
    assert_eq!(
        t2.messages.last().map(|m| m.content.as_str()),
        Some("late ctx 1")
    );
    assert_eq!(t2.instructions, "BASE\n\nnote 1");
}

#[tokio::test(start_paused = true)]
async fn s23_a_run_past_its_hard_timeout_is_discarded_logged_and_cancelled() {
    let mut hung = Mock::note("hung", &[Hook::TurnComplete], 60_000, true, "never");
    hung.entry.timeout = Duration::from_secs(2);
    let seen = hung.seen.clone();
    let h = harness(&texts(2), vec![hung.entry]);
    let session = h.runtime.open_session("s");
    session.send("hi").wait().await.expect("answered");
    tokio::time::sleep(Duration::from_secs(70)).await;
    let r = runs(&h.log, "hung");
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].0, r[0].1), (RunOutcome::TimedOut, 2_000));
    assert!(r[0]
        .2
        .as_deref()
        .unwrap_or("")
        .contains("hard timeout of 2s"));
    assert!(seen.lock().expect("not poisoned")[0].cancel.is_cancelled());
    session.send("next").wait().await.expect("answered");
    assert_eq!(
        input(&h.log, 2, 1).instructions,
        "BASE",
        "its result never lands"
    );
}

#[tokio::test(start_paused = true)]
async fn s24_turn_complete_work_runs_in_the_idle_wait_and_is_never_awaited() {
    let review = Mock::note("review", &[Hook::TurnComplete], 3_000, true, "coach {turn}");
    let h = harness(&texts(3), vec![review.entry]);
    let session = h.runtime.open_session("s");
    let t0 = Instant::now();
    session.send("q1").wait().await.expect("answered");
    session.send("q2").wait().await.expect("answered");
    assert_eq!(
        t0.elapsed(),
        Duration::ZERO,
        "turn 2 did not wait for the review of turn 1"
    );
    assert_eq!(input(&h.log, 2, 1).instructions, "BASE");
    tokio::time::sleep(Duration::from_secs(7)).await;
    session.send("q3").wait().await.expect("answered");
    // The review of turn 2 coalesced behind the one of turn 1 (S26) and finished at 6 s.
    assert_eq!(
        input(&h.log, 3, 1).instructions,
        "BASE\n\ncoach 1\n\ncoach 2"
    );
}

#[tokio::test(start_paused = true)]
async fn s25_a_failing_or_panicking_analyzer_affects_only_its_own_result() {
    let failing = Mock::new("failing", &[Hook::TurnComplete], |_| {
        (Duration::ZERO, Err(RunError::Failed("no luck".into())))
    });
    let panicking = Mock::new("panicking", &[Hook::TurnComplete], |_| {
        (
            Duration::ZERO,
            Err(RunError::Panicked("panicked at x.rs:1: boom".into())),
        )
    });
    let good = Mock::note("good", &[Hook::TurnComplete], 10, true, "fine {turn}");
    let h = harness(&texts(2), vec![failing.entry, panicking.entry, good.entry]);
    let session = h.runtime.open_session("s");
    session.send("q1").wait().await.expect("answered");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let end = session.send("q2").wait().await.expect("answered");
    assert_eq!(end.outcome, TurnOutcome::Completed);
    assert_eq!(input(&h.log, 2, 1).instructions, "BASE\n\nfine 1");
    assert_eq!(runs(&h.log, "failing")[0].0, RunOutcome::Failed);
    assert_eq!(
        runs(&h.log, "panicking")[0].2.as_deref(),
        Some("panicked at x.rs:1: boom")
    );
    session.close().await;
    let failed = h
        .stats
        .snapshot()
        .into_iter()
        .find(|(k, _)| *k == "failed")
        .map(|(_, v)| v);
    assert_eq!(failed, Some(4), "two analyzers failed on each of two turns");
}

#[tokio::test(start_paused = true)]
async fn s26_hooks_that_fire_during_a_run_coalesce_into_one_follow_up_with_the_newest_input() {
    let slow = Mock::note("slow", &[Hook::TurnStart], 5_000, false, "ctx {turn}");
    let seen = slow.seen.clone();
    let h = harness(&texts(3), vec![slow.entry]);
    let session = h.runtime.open_session("s");
    for q in ["q1", "q2", "q3"] {
        session.send(q).wait().await.expect("answered");
    }
    tokio::time::sleep(Duration::from_secs(20)).await;
    let turns: Vec<u64> = seen
        .lock()
        .expect("not poisoned")
        .iter()
        .map(|r| r.turn)
        .collect();
    assert_eq!(turns, vec![1, 3], "turn 2's hook was replaced by turn 3's");
    let coalesced = h
        .log
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::RunCoalesced { .. }))
        .count();
    assert_eq!(coalesced, 2);
    assert_eq!(
        runs(&h.log, "slow").iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![5_000, 10_000]
    );
}

#[tokio::test(start_paused = true)]
async fn s13_queue_order_is_the_order_analyzers_finished_not_started() {
    let slow = Mock::note("slow", &[Hook::TurnComplete], 30, true, "slow {turn}");
    let fast = Mock::note("fast", &[Hook::TurnComplete], 10, true, "fast {turn}");
    let h = harness(&texts(2), vec![slow.entry, fast.entry]);
    let session = h.runtime.open_session("s");
    session.send("q1").wait().await.expect("answered");
    tokio::time::sleep(Duration::from_millis(100)).await;
    session.send("q2").wait().await.expect("answered");
    assert_eq!(input(&h.log, 2, 1).instructions, "BASE\n\nfast 1\n\nslow 1");
}

#[tokio::test(start_paused = true)]
async fn s14_an_injection_made_while_the_model_streams_waits_for_the_next_boundary() {
    let rag = Mock::note("rag", &[Hook::TurnStart], 1_000, false, "passage {turn}");
    let replies =
        "{\"tool_calls\": [{\"name\": \"missing\"}], \"delay\": \"2s\"}\n{\"text\": \"a2\"}\n";
    let h = harness(replies, vec![rag.entry]);
    let session = h.runtime.open_session("s");
    let end = session.send("q1").wait().await.expect("answered");
    // The unknown tool ends the turn (S35); the passage arrived during step 1's model call
    // and so was not part of it.
    assert_eq!(end.outcome, TurnOutcome::Error);
    assert!(end
        .error
        .as_deref()
        .unwrap_or("")
        .contains("unknown tool `missing`"));
    assert!(input(&h.log, 1, 1)
        .messages
        .iter()
        .all(|m| m.content != "passage 1"));
    session.send("q2").wait().await.expect("answered");
    assert_eq!(
        input(&h.log, 2, 1)
            .messages
            .last()
            .map(|m| m.content.as_str()),
        Some("passage 1")
    );
}

#[tokio::test(start_paused = true)]
async fn s27_analyzers_get_session_turn_hook_messages_config_and_deadline() {
    let probe = Mock::note("probe", &[Hook::TurnComplete], 0, true, "x");
    let h = harness(&texts(1), vec![probe.entry.clone()]);
    let session = h.runtime.open_session("sess-9");
    session.send("what is up?").wait().await.expect("answered");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let reqs = probe.requests();
    let r = &reqs[0];
    assert_eq!(
        (&*r.session, r.turn, r.hook),
        ("sess-9", 1, Hook::TurnComplete)
    );
    assert_eq!(r.view.latest_user.as_deref(), Some("what is up?"));
    assert_eq!(r.view.latest_reply.as_deref(), Some("reply 1"));
    assert_eq!(r.view.messages.len(), 2);
    assert_eq!(&*r.config_json, r#"{"level": 3}"#);
    let left = r
        .deadline
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    assert!(
        left > Duration::from_secs(25) && left <= Duration::from_secs(30),
        "{left:?}"
    );
    assert!(!r.cancel.is_cancelled());
}

#[tokio::test(start_paused = true)]
async fn s36_stop_aborts_the_model_call_and_leaves_the_queue_for_the_next_turn() {
    let rag = Mock::note("rag", &[Hook::TurnStart], 100, false, "passage {turn}");
    let replies = "{\"text\": \"never seen\", \"delay\": \"10s\"}\n{\"text\": \"a2\"}\n";
    let h = harness(replies, vec![rag.entry]);
    let session = h.runtime.open_session("s");
    let answer = session.send("q1");
    tokio::time::sleep(Duration::from_secs(1)).await;
    session.stop();
    let t0 = Instant::now();
    let end = answer.wait().await.expect("answered");
    assert_eq!(end.outcome, TurnOutcome::Stopped);
    assert_eq!(t0.elapsed(), Duration::ZERO);
    session.send("q2").wait().await.expect("answered");
    let t2 = input(&h.log, 2, 1);
    assert_eq!(
        t2.messages.last().map(|m| m.content.as_str()),
        Some("passage 1")
    );
    assert!(t2.messages.iter().all(|m| m.content != "never seen"));
}

#[tokio::test(start_paused = true)]
async fn s41_counters_track_delivered_superseded_stale_and_timed_out_work() {
    let keyed = Mock::new("keyed", &[Hook::TurnStart, Hook::TurnComplete], |req| {
        let text = format!("{} {}", req.hook, req.turn);
        (
            Duration::ZERO,
            Ok(vec![Injection::instructions(text).with_key("k")]),
        )
    });
    let mut stale = Mock::note("stale", &[Hook::TurnComplete], 0, true, "old {turn}");
    stale.entry.ttl_turns = Some(0);
    let mut hung = Mock::note("hung", &[Hook::ChatEnd], 60_000, true, "never");
    hung.entry.timeout = Duration::from_secs(1);
    let h = harness(&texts(2), vec![keyed.entry, stale.entry, hung.entry]);
    let session = h.runtime.open_session("s");
    session.send("q1").wait().await.expect("answered");
    tokio::time::sleep(Duration::from_secs(1)).await;
    session.send("q2").wait().await.expect("answered");
    session.close().await;
    let stats: std::collections::HashMap<_, _> = h.stats.snapshot().into_iter().collect();
    // Turn 1: turn_start and turn_complete of `keyed` share a key: one supersedes the other.
    assert_eq!(stats["superseded"], 2, "{stats:?}");
    assert_eq!(stats["stale"], 1, "{stats:?}");
    assert_eq!(stats["timed_out"], 1, "{stats:?}");
    assert_eq!(input(&h.log, 2, 1).instructions, "BASE\n\nturn_complete 1");
    assert_eq!(stats["delivered"], 1, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn closing_a_session_runs_chat_end_and_reports_undelivered_injections() {
    let bye = Mock::note("bye", &[Hook::ChatEnd], 100, true, "bye");
    let h = harness(&texts(1), vec![bye.entry]);
    let session = h.runtime.open_session("s");
    session.send("q1").wait().await.expect("answered");
    session.close().await;
    let events = h.log.events();
    assert!(events
        .iter()
        .any(|e| matches!(e.kind, EventKind::InjectionUndelivered { .. })));
    assert!(matches!(
        events.last().map(|e| &e.kind),
        Some(EventKind::SessionClosed { turns: 1 })
    ));
    assert!(
        session.send("late").wait().await.is_err(),
        "a closed session says so"
    );
}

#[path = "store_tests.rs"]
mod store;
