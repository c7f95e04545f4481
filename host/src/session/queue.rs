//! The inject queue of one session: two lanes, queue order, supersede keys and ttl
//! (SPEC S1, S3, S5, S13–S16). Pure data; the turn machine decides when to drain.

use std::collections::VecDeque;
use std::sync::Arc;

use murmur_plugin_api::{Hook, Injection, Role};
use serde::{Deserialize, Serialize};

/// Where an injection goes (chosen by its role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// Appended to the system text of the next turn, once (S1).
    Instructions,
    /// Appended to the model messages at the next boundary, and kept (S3).
    Context,
}

impl Lane {
    /// The lane of a role, or `None` for roles that cannot be injected (S5).
    pub fn of(role: Role) -> Option<Lane> {
        match role {
            Role::System => Some(Lane::Instructions),
            Role::User | Role::Assistant => Some(Lane::Context),
            Role::Tool => None,
        }
    }
}

/// Who made an injection and what it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// Analyzer instance name.
    pub analyzer: Arc<str>,
    /// The hook whose run produced it.
    pub hook: Hook,
    /// The turn the run was about.
    pub about_turn: u64,
    /// The analyzer's `ttl_turns`.
    pub ttl_turns: Option<u32>,
}

/// One queued injection.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// Unique within the session, increasing in enqueue order.
    pub id: u64,
    /// Its lane.
    pub lane: Lane,
    /// The injection itself.
    pub injection: Injection,
    /// Where it came from.
    pub provenance: Provenance,
}

/// What [`InjectQueue::enqueue`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    /// Id of the new entry.
    pub id: u64,
    /// Its lane.
    pub lane: Lane,
    /// The still-queued entry it replaced (same analyzer, same key), if any.
    pub superseded: Option<Queued>,
}

/// An injection the queue refused, handed back with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    /// The injection.
    pub injection: Injection,
    /// Why.
    pub reason: String,
}

/// The queue.
#[derive(Debug, Default, Clone)]
pub struct InjectQueue {
    entries: VecDeque<Queued>,
    next_id: u64,
}

impl InjectQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// A queue restored from a store: these entries in queue order, and the highest id the
    /// session ever gave out, so new ids keep increasing.
    pub fn restore(entries: Vec<Queued>, last_id: u64) -> Self {
        let last_id = entries.iter().map(|q| q.id).fold(last_id, u64::max);
        InjectQueue {
            entries: entries.into(),
            next_id: last_id,
        }
    }

    /// Appends an injection at the end of the queue (S13); replaces a still-queued entry of
    /// the same analyzer with the same key (S15); refuses role `tool` (S5).
    pub fn enqueue(
        &mut self,
        injection: Injection,
        provenance: Provenance,
    ) -> Result<Enqueued, Refused> {
        let Some(lane) = Lane::of(injection.role) else {
            return Err(Refused {
                reason: format!(
                    "role `{}` cannot be injected; use system, user or assistant",
                    injection.role
                ),
                injection,
            });
        };
        let superseded = injection.key.as_ref().and_then(|key| {
            let pos = self.entries.iter().position(|q| {
                q.injection.key.as_ref() == Some(key)
                    && q.provenance.analyzer == provenance.analyzer
            })?;
            self.entries.remove(pos)
        });
        self.next_id += 1;
        let id = self.next_id;
        self.entries.push_back(Queued {
            id,
            lane,
            injection,
            provenance,
        });
        Ok(Enqueued {
            id,
            lane,
            superseded,
        })
    }

    /// Removes and returns every entry of a lane, in queue order (S14).
    pub fn drain(&mut self, lane: Lane) -> Vec<Queued> {
        let (taken, kept): (Vec<_>, Vec<_>) = self.entries.drain(..).partition(|q| q.lane == lane);
        self.entries = kept.into();
        taken
    }

    /// At the boundary of turn `turn`: removes and returns entries that have waited more
    /// turn boundaries than their `ttl_turns` since the turn they are about (S16).
    pub fn expire(&mut self, turn: u64) -> Vec<Queued> {
        let (stale, kept): (Vec<_>, Vec<_>) = self.entries.drain(..).partition(|q| {
            q.provenance
                .ttl_turns
                .is_some_and(|ttl| turn.saturating_sub(q.provenance.about_turn) > u64::from(ttl))
        });
        self.entries = kept.into();
        stale
    }

    /// Removes everything (session closed).
    pub fn take_all(&mut self) -> Vec<Queued> {
        self.entries.drain(..).collect()
    }

    /// Entries in queue order.
    pub fn iter(&self) -> impl Iterator<Item = &Queued> {
        self.entries.iter()
    }

    /// Number of queued entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prov(analyzer: &str, about_turn: u64, ttl: Option<u32>) -> Provenance {
        Provenance {
            analyzer: analyzer.into(),
            hook: Hook::TurnComplete,
            about_turn,
            ttl_turns: ttl,
        }
    }

    fn texts(q: &[Queued]) -> Vec<&str> {
        q.iter().map(|e| e.injection.content.as_str()).collect()
    }

    #[test]
    fn s5_role_tool_is_refused_and_handed_back() {
        let mut q = InjectQueue::new();
        let refused = q
            .enqueue(Injection::new(Role::Tool, "x"), prov("a", 1, None))
            .expect_err("tool role");
        assert_eq!(refused.injection.content, "x");
        assert!(refused.reason.contains("role `tool` cannot be injected"));
        assert!(q.is_empty());
    }

    #[test]
    fn s13_queue_order_is_enqueue_order_and_lanes_drain_separately() {
        let mut q = InjectQueue::new();
        for (text, role) in [
            ("i1", Role::System),
            ("c1", Role::User),
            ("i2", Role::System),
            ("c2", Role::Assistant),
        ] {
            q.enqueue(Injection::new(role, text), prov("a", 1, None))
                .expect("ok");
        }
        assert_eq!(texts(&q.drain(Lane::Instructions)), vec!["i1", "i2"]);
        assert_eq!(texts(&q.drain(Lane::Context)), vec!["c1", "c2"]);
        assert!(q.is_empty());
    }

    #[test]
    fn s14_drained_entries_are_gone_so_none_is_delivered_twice() {
        let mut q = InjectQueue::new();
        q.enqueue(Injection::context("c1"), prov("a", 1, None))
            .expect("ok");
        assert_eq!(q.drain(Lane::Context).len(), 1);
        assert!(q.drain(Lane::Context).is_empty());
    }

    #[test]
    fn s15_same_key_same_analyzer_replaces_the_queued_entry() {
        let mut q = InjectQueue::new();
        let first = q
            .enqueue(
                Injection::instructions("old").with_key("k"),
                prov("a", 1, None),
            )
            .expect("ok");
        q.enqueue(
            Injection::instructions("other").with_key("k"),
            prov("b", 1, None),
        )
        .expect("ok");
        let second = q
            .enqueue(
                Injection::instructions("new").with_key("k"),
                prov("a", 2, None),
            )
            .expect("ok");
        assert_eq!(second.superseded.map(|s| s.id), Some(first.id));
        assert_eq!(texts(&q.drain(Lane::Instructions)), vec!["other", "new"]);
    }

    #[test]
    fn s16_entries_older_than_ttl_turn_boundaries_are_stale() {
        let mut q = InjectQueue::new();
        q.enqueue(Injection::instructions("ttl1"), prov("a", 3, Some(1)))
            .expect("ok");
        q.enqueue(Injection::instructions("forever"), prov("b", 3, None))
            .expect("ok");
        assert!(
            q.expire(4).is_empty(),
            "one boundary after turn 3 is within ttl 1"
        );
        assert_eq!(texts(&q.expire(5)), vec!["ttl1"]);
        assert_eq!(q.len(), 1);
    }
}
