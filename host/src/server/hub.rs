//! Fans the runtime's events out to the HTTP clients watching a session: an [`Observer`]
//! that keeps one broadcast channel per watched session, and the provenance of every
//! injection of the sessions it was told to track (for `GET /v1/sessions/{id}?include=
//! injections`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::events::{Event, Observer};

/// Events buffered per session for slow readers; a reader further behind is told how many
/// it missed.
const CAPACITY: usize = 1024;
/// Injections remembered per session; older ones are forgotten first.
const MAX_INJECTIONS: usize = 1000;

/// What a watcher of a session receives.
#[derive(Debug, Clone)]
pub enum Streamed {
    /// An event of the session.
    Event(Event),
    /// A piece of the reply being streamed.
    Token {
        /// The turn it belongs to.
        turn: u64,
        /// The text.
        text: String,
    },
}

/// The per-session channels and injection records.
#[derive(Debug, Default)]
pub struct EventHub {
    channels: Mutex<HashMap<Arc<str>, broadcast::Sender<Arc<Streamed>>>>,
    injections: Mutex<HashMap<Arc<str>, Vec<serde_json::Value>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl EventHub {
    /// Starts remembering the injections of `session`.
    pub fn track(&self, session: &str) {
        lock(&self.injections).insert(Arc::from(session), Vec::new());
    }

    /// Records injections of a tracked session from before a restart, as the events that
    /// made them (see [`crate::store::Store::injection_events`]).
    pub fn replay(&self, session: &str, events: Vec<crate::events::EventKind>) {
        let session: Arc<str> = Arc::from(session);
        for kind in events {
            self.record(&Event {
                session: session.clone(),
                at_ms: 0,
                kind,
            });
        }
    }

    /// The injections of a tracked session so far: what the analyzer sent (analyzer, lane,
    /// key, the turn it is about, text, details) and, once delivered, where (`delivered`:
    /// boundary, turn, step), or its other fate (`superseded`, `stale`, `undelivered`).
    pub fn injections(&self, session: &str) -> Vec<serde_json::Value> {
        lock(&self.injections)
            .get(session)
            .cloned()
            .unwrap_or_default()
    }

    fn record(&self, event: &Event) {
        use crate::events::EventKind as K;
        let mut all = lock(&self.injections);
        let Some(list) = all.get_mut(&event.session) else {
            return;
        };
        fn find(list: &mut [serde_json::Value], id: u64) -> Option<&mut serde_json::Value> {
            list.iter_mut().find(|v| v["id"].as_u64() == Some(id))
        }
        match &event.kind {
            K::InjectionEnqueued { .. } => {
                if let Ok(mut v) = serde_json::to_value(&event.kind) {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("type");
                        o.insert("status".into(), "queued".into());
                        o.insert("enqueued_at_ms".into(), event.at_ms.into());
                    }
                    if list.len() == MAX_INJECTIONS {
                        list.remove(0);
                    }
                    list.push(v);
                }
            }
            K::InjectionDelivered {
                id,
                boundary,
                turn,
                step,
                ..
            } => {
                if let Some(v) = find(list, *id) {
                    v["status"] = "delivered".into();
                    v["delivered"] = serde_json::json!({
                        "boundary": boundary, "turn": turn, "step": step, "at_ms": event.at_ms
                    });
                }
            }
            K::InjectionSuperseded { id, by, .. } => {
                if let Some(v) = find(list, *id) {
                    v["status"] = "superseded".into();
                    v["superseded_by"] = (*by).into();
                }
            }
            K::InjectionStale { id, turn, .. } => {
                if let Some(v) = find(list, *id) {
                    v["status"] = "stale".into();
                    v["stale_at_turn"] = (*turn).into();
                }
            }
            K::InjectionUndelivered { id, .. } => {
                if let Some(v) = find(list, *id) {
                    v["status"] = "undelivered".into();
                }
            }
            _ => {}
        }
    }

    /// A receiver of everything the session does from now on.
    pub fn subscribe(&self, session: &str) -> broadcast::Receiver<Arc<Streamed>> {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = channels.get(session) {
            return tx.subscribe();
        }
        let (tx, rx) = broadcast::channel(CAPACITY);
        channels.insert(Arc::from(session), tx);
        rx
    }

    /// Forgets a session's channel (its watchers see the stream end) and injections.
    pub fn remove(&self, session: &str) {
        lock(&self.channels).remove(session);
        lock(&self.injections).remove(session);
    }

    fn send(&self, session: &str, item: Streamed) {
        let channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = channels.get(session) {
            // No receiver right now is fine: nobody is watching.
            let _ = tx.send(Arc::new(item));
        }
    }
}

impl Observer for EventHub {
    fn event(&self, event: &Event) {
        self.record(event);
        self.send(&event.session, Streamed::Event(event.clone()));
    }

    fn chunk(&self, session: &str, turn: u64, text: &str) {
        self.send(
            session,
            Streamed::Token {
                turn,
                text: text.to_string(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;

    #[test]
    fn only_watched_sessions_get_their_own_events() {
        let hub = EventHub::default();
        let mut a = hub.subscribe("a");
        hub.chunk("a", 1, "Hel");
        hub.chunk("b", 1, "nobody watches b");
        hub.event(&Event {
            session: Arc::from("a"),
            at_ms: 5,
            kind: EventKind::Error {
                message: "x".into(),
            },
        });
        match a.try_recv().as_deref() {
            Ok(Streamed::Token { turn: 1, text }) => assert_eq!(text, "Hel"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(a.try_recv().as_deref(), Ok(Streamed::Event(e)) if e.at_ms == 5));
        assert!(a.try_recv().is_err());
        hub.remove("a");
        assert!(matches!(
            a.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
    }
}
