//! The store on a real SQLite file: what a commit writes, what a load gives back, and the
//! errors a user sees.

use std::sync::Arc;

use murmur_plugin_api::{Hook, Injection};

use super::*;
use crate::config::InstructionsPlacement;
use crate::model::{ModelReply, ToolCall};
use crate::session::compaction::{Compaction, Strategy};
use crate::session::machine::{Action, SessionSettings};

fn settings() -> Arc<SessionSettings> {
    Arc::new(SessionSettings {
        system_prompt: "BASE".into(),
        max_steps: 4,
        steering: true,
        placement: InstructionsPlacement::System,
        compaction: Default::default(),
    })
}

fn reply(text: &str) -> ModelReply {
    ModelReply {
        text: text.into(),
        ..ModelReply::default()
    }
}

fn provenance(turn: u64) -> Provenance {
    Provenance {
        analyzer: "a".into(),
        hook: Hook::TurnComplete,
        about_turn: turn,
        ttl_turns: Some(3),
    }
}

/// A store in a new temporary folder, an empty session `s` and its cursor.
fn fresh() -> (tempfile::TempDir, Store, TurnMachine, Cursor) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("s.db")).expect("open");
    (
        dir,
        store,
        TurnMachine::new("s".into(), settings()),
        Cursor::default(),
    )
}

/// Commits like the actor does: after every change, with the events it produced.
fn commit(store: &Store, cursor: &mut Cursor, m: &mut TurnMachine) {
    let events = m.take_events();
    store.commit("s", cursor, m, &events).expect("commit");
}

fn contents(history: &[ContextMessage]) -> Vec<&str> {
    history.iter().map(|m| m.content.as_str()).collect()
}

#[test]
fn a_loaded_session_equals_the_committed_one() {
    let (_dir, store, mut m, mut cursor) = fresh();
    m.set_system_prompt("OWN".into());
    m.user_message("q1".into());
    commit(&store, &mut cursor, &mut m);
    let call = ToolCall {
        id: "c1".into(),
        name: "lookup".into(),
        arguments: serde_json::json!({"q": "x"}),
    };
    m.model_replied(ModelReply {
        tool_calls: vec![call],
        ..reply("")
    });
    m.tools_finished(vec![Ok("found".into())]);
    m.model_replied(reply("a1"));
    m.enqueue(
        vec![Injection::instructions("coach").with_key("k")],
        &provenance(1),
    );
    m.enqueue(
        vec![Injection::context("fact").with_details(serde_json::json!({"n": 1}))],
        &provenance(1),
    );
    commit(&store, &mut cursor, &mut m);

    let (restored, loaded_cursor) = store.load("s").expect("load").expect("stored");
    assert_eq!(&restored.history, &m.history().to_vec());
    assert_eq!(restored.checkpoint, m.checkpoint());
    assert_eq!(restored.checkpoint.system_prompt.as_deref(), Some("OWN"));
    let queued: Vec<&Queued> = m.queue().iter().collect();
    assert_eq!(restored.queued.iter().collect::<Vec<_>>(), queued);
    assert_eq!(restored.last_injection, 2);
    assert_eq!(loaded_cursor.history_len, m.history().len());
    assert!(store.load("other").expect("load").is_none());
}

#[test]
fn a_compaction_rewrites_the_stored_history() {
    let (_dir, store, mut m, mut cursor) = fresh();
    for (q, a) in [("q1", "a1"), ("q2", "a2")] {
        m.user_message(q.into());
        m.model_replied(reply(a));
        commit(&store, &mut cursor, &mut m);
    }
    let actions = m.user_message("q3".into()).1;
    assert!(matches!(actions.first(), Some(Action::CallModel(_))));
    m.compacted(&Compaction {
        strategy: Strategy::Summarize,
        removed: 4,
        turns: 2,
        injections_from: Vec::new(),
        summary: Some("two questions".into()),
        tokens_before: 100,
        tokens_after: 20,
        context_length: 64,
        fallback: None,
    });
    commit(&store, &mut cursor, &mut m);
    let (restored, _) = store.load("s").expect("load").expect("stored");
    assert_eq!(
        contents(&restored.history),
        ["Summary of the earlier conversation: two questions", "q3"]
    );
    assert_eq!(restored.compactions, 1);
}

#[test]
fn injection_fates_are_stored_and_replayed_as_events() {
    let (_dir, store, mut m, mut cursor) = fresh();
    m.user_message("q1".into());
    m.model_replied(reply("a1"));
    // 1 is superseded by 2 within one commit; 3 is delivered at turn 2.
    m.enqueue(
        vec![
            Injection::instructions("old").with_key("k"),
            Injection::instructions("new").with_key("k"),
            Injection::context("fact"),
        ],
        &provenance(1),
    );
    commit(&store, &mut cursor, &mut m);
    m.user_message("q2".into());
    commit(&store, &mut cursor, &mut m);
    let events = store.injection_events("s").expect("read");
    let fates: Vec<String> = events
        .iter()
        .map(|e| match e {
            EventKind::InjectionEnqueued { id, content, .. } => format!("{id} enqueued {content}"),
            EventKind::InjectionSuperseded { id, by, .. } => format!("{id} superseded by {by}"),
            EventKind::InjectionDelivered {
                id, turn, boundary, ..
            } => format!("{id} delivered at turn {turn} ({boundary:?})"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        fates,
        [
            "1 enqueued old",
            "1 superseded by 2",
            "2 enqueued new",
            "2 delivered at turn 2 (Turn)",
            "3 enqueued fact",
            "3 delivered at turn 2 (Turn)",
        ]
    );
    let (restored, _) = store.load("s").expect("load").expect("stored");
    assert!(restored.queued.is_empty());
    assert_eq!(restored.last_injection, 3);
}

#[test]
fn a_failed_commit_is_retried_by_the_next_one() {
    let (_dir, store, mut m, mut cursor) = fresh();
    m.user_message("q1".into());
    m.model_replied(reply("a1"));
    m.enqueue(vec![Injection::context("fact")], &provenance(1));
    store
        .conn()
        .execute_batch("CREATE TRIGGER refuse BEFORE INSERT ON injections BEGIN SELECT RAISE(ABORT, 'disk says no'); END;")
        .expect("trigger");
    let events = m.take_events();
    let err = store
        .commit("s", &mut cursor, &m, &events)
        .expect_err("the trigger refuses");
    let text = err.to_string();
    assert!(
        text.contains("s.db")
            && text.contains("cannot store session `s`")
            && text.contains("disk says no"),
        "{text}"
    );
    assert!(
        store.load("s").expect("load").is_none(),
        "nothing was written"
    );
    store
        .conn()
        .execute_batch("DROP TRIGGER refuse;")
        .expect("drop trigger");
    store.commit("s", &mut cursor, &m, &[]).expect("retried");
    let (restored, _) = store.load("s").expect("load").expect("stored");
    assert_eq!(contents(&restored.history), ["q1", "a1"]);
    assert_eq!(
        restored.queued.len(),
        1,
        "the enqueued event was kept for the retry"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_refused_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database ".repeat(40)).expect("write");
    let err = Store::open(&path).expect_err("not a database").to_string();
    assert!(err.contains("notes.txt"), "{err}");
    assert!(err.contains("SQLite"), "{err}");
    assert!(
        std::fs::read_to_string(&path)
            .expect("still there")
            .starts_with("these are my notes"),
        "the file is left as it was"
    );
}

#[test]
fn a_second_host_on_the_same_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/dir/s.db");
    let _first = Store::open(&path).expect("open, creating the folders");
    let err = Store::open(&path).expect_err("locked").to_string();
    assert!(err.contains("in use by another process"), "{err}");
}
