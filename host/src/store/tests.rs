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
    let store = Store::sqlite(&dir.path().join("s.db")).expect("open");
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
    let Store::Sqlite(sqlite) = &store else {
        unreachable!("fresh() opens SQLite")
    };
    sqlite
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
    sqlite
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
    let err = Store::sqlite(&path)
        .expect_err("not a database")
        .to_string();
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
    let _first = Store::sqlite(&path).expect("open, creating the folders");
    let err = Store::sqlite(&path).expect_err("locked").to_string();
    assert!(err.contains("in use by another process"), "{err}");
}

/// The PostgreSQL backend on a real server started for the test: the same round trip as
/// SQLite, and what only a shared store has — leases, fencing, failover and the inbox.
mod postgres {
    use super::*;
    use crate::store::postgres::{LeaseError, PgSettings, PgStore};
    use murmur_e2e::postgres::Postgres;

    const WAIT: Duration = Duration::from_millis(300);

    fn settings(lease_wait: Duration) -> PgSettings {
        PgSettings {
            url_env: "TEST".into(),
            lease_ttl: Duration::from_secs(30),
            lease_wait,
            pool_size: 4,
            tls_ca_file: None,
        }
    }

    /// Two hosts' stores on one new database.
    fn two_hosts(pg: &Postgres, db: &str) -> (Store, Store) {
        let url = pg.database(db);
        let open = || {
            Store::Postgres(
                PgStore::open(&url, settings(Duration::from_millis(300))).expect("open"),
            )
        };
        (open(), open())
    }

    fn host(store: &Store) -> &PgStore {
        store.shared().expect("a PostgreSQL store")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leases_fence_commits_and_a_dead_hosts_session_is_taken_over_with_its_queue() {
        let pg = Postgres::start();
        let (a, b) = two_hosts(&pg, "leases");
        let mut m = TurnMachine::new("s".into(), settings_for_machine());
        let mut cursor = Cursor::default();
        m.user_message("q1".into());
        // A new session needs no lease; every later commit does.
        commit(&a, &mut cursor, &mut m);
        m.model_replied(reply("a1"));
        let events = m.take_events();
        let err = a
            .commit("s", &mut cursor, &m, &events)
            .expect_err("no lease");
        assert!(err.to_string().contains("holds no lease"), "{err}");

        let lease = host(&a).acquire("s", WAIT).await.expect("A leases");
        assert_eq!(lease.took_over_from, None);
        assert_eq!(lease.version, cursor.version());
        cursor.set_lease(Some(lease.epoch));
        m.enqueue(vec![Injection::instructions("coach")], &provenance(1));
        commit(&a, &mut cursor, &mut m);

        // B waits for all of lease_wait while A holds the session, then gives up naming A.
        match host(&b).acquire("s", WAIT).await {
            Err(LeaseError::Busy { holder, .. }) => assert_eq!(holder, host(&a).host()),
            other => panic!("{other:?}"),
        }
        // A dies: its lease runs out (on the database's clock).
        pg.psql(
            "leases",
            "UPDATE sessions SET lease_expires = now() - interval '1 second'",
        );
        assert_eq!(host(&b).orphans().await.expect("orphans"), ["s"]);
        let taken = host(&b).acquire("s", WAIT).await.expect("B takes over");
        assert!(host(&b).orphans().await.expect("orphans").is_empty());
        assert_eq!(taken.took_over_from.as_deref(), Some(host(&a).host()));
        assert!(taken.epoch > lease.epoch);
        let (restored, mut b_cursor) = b.load("s").expect("load").expect("stored");
        assert_eq!(b_cursor.version(), taken.version);
        assert_eq!(contents(&restored.history), ["q1", "a1"]);
        assert_eq!(
            restored.queued.len(),
            1,
            "the queued injection moved with it"
        );

        // A comes back from a pause and tries to write: fenced, nothing changes.
        m.user_message("q2 from a stale host".into());
        let events = m.take_events();
        let err = a.commit("s", &mut cursor, &m, &events).expect_err("fenced");
        assert!(err.to_string().contains("lost its lease"), "{err}");
        assert!(!host(&a).renew("s", lease.epoch).expect("renew"));

        // B goes on from what was stored.
        let (mut bm, _) = TurnMachine::restore("s".into(), settings_for_machine(), restored);
        b_cursor.set_lease(Some(taken.epoch));
        bm.user_message("q2".into());
        commit(&b, &mut b_cursor, &mut bm);
        host(&b).release("s", taken.epoch).expect("release");
        let again = host(&a).acquire("s", WAIT).await.expect("free again");
        assert_ne!(
            again.version,
            cursor.version(),
            "A's copy is stale: it must reload"
        );
        let (restored, _) = a.load("s").expect("load").expect("stored");
        assert_eq!(contents(&restored.history)[..3], ["q1", "a1", "q2"]);
        assert!(restored.queued.is_empty(), "delivered at B's turn");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_inbox_entry_lands_in_the_queue_once() {
        let pg = Postgres::start();
        let (a, b) = two_hosts(&pg, "inbox");
        let mut m = TurnMachine::new("s".into(), settings_for_machine());
        let mut cursor = Cursor::default();
        m.user_message("q1".into());
        m.model_replied(reply("a1"));
        commit(&b, &mut cursor, &mut m);
        let lease = host(&b).acquire("s", WAIT).await.expect("B leases");
        cursor.set_lease(Some(lease.epoch));

        // A's run about turn 1 ends after the session moved to B.
        let p = provenance(1);
        host(&a)
            .inbox_push(
                "s",
                &p,
                &[Injection::instructions("late coach").with_key("k")],
            )
            .expect("push");
        let items = host(&b).inbox("s", &cursor).expect("read");
        assert_eq!(items.len(), 1);
        for item in &items {
            cursor.claim(item.seq);
            m.enqueue(vec![item.injection.clone()], &item.provenance);
        }
        // Not read twice before the commit that stores it.
        assert!(host(&b).inbox("s", &cursor).expect("read").is_empty());
        commit(&b, &mut cursor, &mut m);
        assert!(host(&b).inbox("s", &cursor).expect("read").is_empty());
        assert_eq!(pg.psql("inbox", "SELECT count(*) FROM inbox").trim(), "0");
        let (restored, _) = b.load("s").expect("load").expect("stored");
        assert_eq!(restored.queued.len(), 1);
        assert_eq!(restored.queued[0].injection.content, "late coach");
        assert_eq!(restored.queued[0].provenance, p);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_loaded_session_equals_the_committed_one() {
        let pg = Postgres::start();
        let (a, _) = two_hosts(&pg, "roundtrip");
        let mut m = TurnMachine::new("s".into(), settings_for_machine());
        let mut cursor = Cursor::default();
        m.set_system_prompt("OWN".into());
        m.user_message("q1".into());
        commit(&a, &mut cursor, &mut m);
        let lease = host(&a).acquire("s", WAIT).await.expect("lease");
        cursor.set_lease(Some(lease.epoch));
        m.model_replied(reply("a1"));
        m.enqueue(
            vec![
                Injection::instructions("old").with_key("k"),
                Injection::instructions("new").with_key("k"),
                Injection::context("fact").with_details(serde_json::json!({"n": 1})),
            ],
            &provenance(1),
        );
        commit(&a, &mut cursor, &mut m);
        let (restored, _) = a.load("s").expect("load").expect("stored");
        assert_eq!(&restored.history, &m.history().to_vec());
        assert_eq!(restored.checkpoint, m.checkpoint());
        let queued: Vec<&Queued> = m.queue().iter().collect();
        assert_eq!(restored.queued.iter().collect::<Vec<_>>(), queued);
        assert_eq!(restored.last_injection, 3);
        let events = a.injection_events("s").expect("events");
        assert!(matches!(
            events.get(1),
            Some(EventKind::InjectionSuperseded { id: 1, by: 2, .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_database_is_an_error_naming_it_and_calls_fail_fast() {
        let store = PgStore::open(
            "postgres://murmur@127.0.0.1:1/nowhere",
            settings(Duration::from_millis(300)),
        )
        .expect("opening connects nothing");
        let first = store.ping().await.expect_err("unreachable").to_string();
        assert!(
            first.contains("PostgreSQL murmur@127.0.0.1:1/nowhere")
                && first.contains("cannot reach"),
            "{first}"
        );
        let second = store.ping().await.expect_err("still").to_string();
        assert!(second.contains("next attempt in"), "{second}");
        let bad = PgStore::open("mysql://x", settings(Duration::ZERO)).expect_err("not a URL");
        assert!(bad.to_string().contains("$TEST"), "{bad}");
    }

    /// TLS follows the URL's sslmode, and the server's certificate is always verified:
    /// against `tls_ca_file`, or Mozilla's roots without one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_is_negotiated_as_the_url_says_and_the_certificate_is_verified() {
        let pg = Postgres::start();
        let url = pg.database("tls");
        let open = |url: &str, ca: Option<&std::path::Path>| {
            let settings = PgSettings {
                tls_ca_file: ca.map(Into::into),
                ..settings(WAIT)
            };
            PgStore::open(url, settings).expect("open")
        };
        // A server without TLS: `require` is refused, the default (`prefer`) goes plain.
        let err = open(&format!("{url}?sslmode=require"), None)
            .ping()
            .await
            .expect_err("no TLS on the server")
            .to_string();
        assert!(err.contains("server does not support TLS"), "{err}");
        open(&url, None).ping().await.expect("plain");

        let ca = pg.enable_tls();
        let tls_connections = || {
            pg.psql(
                "tls",
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE ssl AND application_name = 'murmur'",
            )
        };
        // Trusting the authority that signed the server's certificate: encrypted.
        let store = open(&format!("{url}?sslmode=require"), Some(&ca));
        store.ping().await.expect("TLS with the test CA");
        assert_eq!(tls_connections().trim(), "1");
        // `prefer` (the default) with an untrusted certificate fails and says what to do,
        // rather than connecting to a server it cannot authenticate.
        let err = open(&url, None)
            .ping()
            .await
            .expect_err("the test CA is not among Mozilla's roots")
            .to_string();
        assert!(
            err.contains("TLS certificate is not trusted") && err.contains("tls_ca_file"),
            "{err}"
        );
        // The certificate must name the host: the same server under another name fails.
        let other = url.replace("127.0.0.1", "db.invalid");
        let err = open(
            &format!("{other}?sslmode=require&hostaddr=127.0.0.1"),
            Some(&ca),
        )
        .ping()
        .await
        .expect_err("db.invalid is not in the certificate");
        assert!(err.to_string().contains("not trusted"), "{err}");
        // A file without certificates is refused when the store is opened, naming it.
        let empty = pg.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = PgStore::open(
            &url,
            PgSettings {
                tls_ca_file: Some(empty.clone()),
                ..settings(WAIT)
            },
        )
        .expect_err("no certificate in it")
        .to_string();
        assert!(
            err.contains("empty.pem") && err.contains("store.tls_ca_file"),
            "{err}"
        );
    }

    fn settings_for_machine() -> Arc<SessionSettings> {
        super::settings()
    }

    use std::time::Duration;
}
