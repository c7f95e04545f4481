//! S37 and S38 on the real actor with the real SQLite store (in a temp folder): what is
//! stored before each model call, and what a new runtime over the same store resumes.

use std::sync::Arc;

use tokio::sync::Notify;

use super::*;
use crate::model::{ModelError, ModelProvider, ModelReply, ModelRequest};
use crate::store::Store;

type PeekFn = dyn Fn(&ModelInput) + Send + Sync;

/// The scripted model, with a look at each input before the call; calls of `hold_turn`
/// never return (a model still streaming when the host is killed).
struct Peek {
    inner: ScriptedModel,
    peek: Box<PeekFn>,
    hold_turn: Option<u64>,
    held: Arc<Notify>,
}

impl Peek {
    fn new(replies: &str, peek: impl Fn(&ModelInput) + Send + Sync + 'static) -> Peek {
        Peek {
            inner: ScriptedModel::parse(replies, Path::new("replies.jsonl"), 100)
                .expect("valid script"),
            peek: Box::new(peek),
            hold_turn: None,
            held: Arc::new(Notify::new()),
        }
    }
}

impl ModelProvider for Peek {
    fn name(&self) -> &str {
        "peek"
    }

    fn call(&self, request: ModelRequest) -> BoxFuture<'static, Result<ModelReply, ModelError>> {
        (self.peek)(&request.input);
        if Some(request.input.turn) == self.hold_turn {
            self.held.notify_one();
            return Box::pin(std::future::pending());
        }
        self.inner.call(request)
    }
}

fn open_store(dir: &tempfile::TempDir) -> Arc<Store> {
    Arc::new(Store::sqlite(&dir.path().join("sessions.db")).expect("store opens"))
}

fn contents<'a>(
    history: impl IntoIterator<Item = &'a crate::model::ContextMessage>,
) -> Vec<String> {
    history.into_iter().map(|m| m.content.clone()).collect()
}

#[tokio::test(start_paused = true)]
async fn s38_a_user_message_is_stored_before_the_model_is_called() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(&dir);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (peek_store, peek_seen) = (store.clone(), seen.clone());
    let model = Peek::new(&texts(2), move |input| {
        let (restored, _) = peek_store
            .load(&input.session)
            .expect("store readable")
            .expect("session stored");
        peek_seen
            .lock()
            .expect("not poisoned")
            .push(contents(&restored.history));
    });
    let h = harness_with(Arc::new(model), Vec::new(), Some(store));
    let session = h.runtime.open_session("s");
    session
        .send("first question")
        .wait()
        .await
        .expect("answered");
    session.send("second").wait().await.expect("answered");
    let seen = seen.lock().expect("not poisoned").clone();
    assert_eq!(
        seen,
        vec![
            vec!["first question".to_string()],
            vec!["first question".into(), "reply 1".into(), "second".into()],
        ],
        "at each model call, the store already holds the message it answers"
    );
}

#[tokio::test(start_paused = true)]
async fn s37_an_injection_is_stored_when_enqueued_and_marked_delivered_with_the_input_that_carries_it(
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(&dir);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (peek_store, peek_seen) = (store.clone(), seen.clone());
    let model = Peek::new(&texts(2), move |input| {
        let events = peek_store
            .injection_events(&input.session)
            .expect("store readable");
        let (restored, _) = peek_store
            .load(&input.session)
            .expect("store readable")
            .expect("session stored");
        peek_seen.lock().expect("not poisoned").push((
            input.turn,
            events,
            contents(&restored.history),
        ));
    });
    let facts = Mock::note("facts", &[Hook::TurnComplete], 0, false, "fact {turn}");
    let h = harness_with(Arc::new(model), vec![facts.entry], Some(store.clone()));
    let session = h.runtime.open_session("s");
    session.send("q1").wait().await.expect("answered");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let queued = store.injection_events("s").expect("readable");
    assert!(
        matches!(queued.as_slice(), [EventKind::InjectionEnqueued { id: 1, content, .. }] if content == "fact 1"),
        "stored as queued as soon as it was enqueued: {queued:?}"
    );
    session.send("q2").wait().await.expect("answered");
    let seen = seen.lock().expect("not poisoned").clone();
    let (turn, events, history) = &seen[1];
    assert_eq!(*turn, 2);
    assert!(
        events.iter().any(|e| matches!(
            e,
            EventKind::InjectionDelivered {
                id: 1,
                turn: 2,
                step: 1,
                ..
            }
        )),
        "marked delivered before the call that carries it: {events:?}"
    );
    assert_eq!(history, &["q1", "reply 1", "q2", "fact 1"]);
}

#[tokio::test(start_paused = true)]
async fn s37_a_new_runtime_over_the_store_resumes_the_session_with_nothing_lost_or_repeated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(&dir);

    // The first host: turn 1 answers; turn 2's model call never returns; a message that
    // arrives meanwhile waits; then the host dies without closing anything.
    let mut model = Peek::new(&texts(1), |_| {});
    model.hold_turn = Some(2);
    let held = model.held.clone();
    let ctx = Mock::note("ctx", &[Hook::TurnStart], 500, false, "ctx {turn}");
    let first = harness_with(Arc::new(model), vec![ctx.entry], Some(store.clone()));
    let session = first.runtime.open_session("s");
    session.send("q1").wait().await.expect("answered");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut q2 = session.send("q2");
    q2.accepted().await.expect("taken");
    held.notified().await;
    tokio::time::sleep(Duration::from_secs(1)).await; // ctx 2 is enqueued meanwhile
    let mut q3 = session.send("q3");
    q3.accepted().await.expect("taken");
    first.runtime.shutdown(Duration::ZERO).await;
    drop(session);

    // The second host resumes it.
    let ctx = Mock::note("ctx", &[Hook::TurnStart], 500, false, "ctx {turn}");
    let second = harness_with(
        Arc::new(Peek::new(&texts(2), |_| {})),
        vec![ctx.entry],
        Some(store.clone()),
    );
    let stored = second.runtime.stored_sessions().expect("listed");
    assert_eq!(
        stored.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        ["s"]
    );
    let session = second
        .runtime
        .resume_session("s")
        .expect("loads")
        .expect("stored");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = second.log.events();
    assert!(
        events.iter().any(|e| matches!(
            e.kind,
            EventKind::SessionResumed {
                turns: 2,
                interrupted: Some(2),
                queued: 1,
                ..
            }
        )),
        "{events:?}"
    );
    assert!(events.iter().any(|e| matches!(
        &e.kind,
        EventKind::TurnEnded { turn: 2, outcome: TurnOutcome::Stopped, error: Some(why), .. }
            if why.contains("restarted")
    )));
    // q3 was waiting: it gets its turn (3) at once, and the injection queued at the kill
    // reaches it.
    assert_eq!(
        contents(&input(&second.log, 3, 1).messages),
        ["q1", "reply 1", "q2", "ctx 1", "q3", "ctx 2"]
    );
    let end = session.send("q4").wait().await.expect("answered");
    assert_eq!(end.turn, 4);
    let last = contents(&input(&second.log, 4, 1).messages);
    assert_eq!(
        last,
        ["q1", "reply 1", "q2", "ctx 1", "q3", "ctx 2", "reply 1", "q4", "ctx 3"]
    );
    let delivered: Vec<u64> = store
        .injection_events("s")
        .expect("readable")
        .iter()
        .filter_map(|e| match e {
            EventKind::InjectionDelivered { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, [1, 2, 3], "each delivered once");
}

#[tokio::test(start_paused = true)]
async fn closing_a_session_deletes_it_from_the_store_and_suspending_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(&dir);
    let h = harness_with(
        Arc::new(Peek::new(&texts(2), |_| {})),
        Vec::new(),
        Some(store.clone()),
    );
    let closed = h.runtime.open_session("closed");
    let kept = h.runtime.open_session("kept");
    closed.send("a").wait().await.expect("answered");
    kept.send("b").wait().await.expect("answered");
    closed.close().await;
    kept.suspend().await;
    let ids: Vec<String> = store
        .sessions()
        .expect("listed")
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["kept"]);
    assert!(kept.send("c").wait().await.is_err(), "its actor has ended");
}
