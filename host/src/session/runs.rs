//! Which analyzer runs to start, and when `turn_complete` may fire: subscriptions,
//! `every_n_turns` and `enabled` (S20), one run in flight per analyzer with coalesced
//! follow-ups (S26), and the settle wait of S22. Pure logic over a clock value.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use murmur_plugin_api::Hook;
use tokio::time::Instant;

/// What the tracker needs to know about one analyzer.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotSpec {
    /// Hooks it reacts to.
    pub hooks: Vec<Hook>,
    /// Whether it runs at all.
    pub enabled: bool,
    /// Turn hooks run on turns divisible by this.
    pub every_n_turns: u32,
    /// How long `turn_complete` waits for its `turn_start`/`step` work.
    pub defer_timeout: Duration,
    /// Shared by every session: a quarantined analyzer runs no more.
    pub health: Health,
}

/// One analyzer's consecutive crashes and timeouts, across all sessions of a host, and
/// whether they put it in quarantine.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<HealthState>);

#[derive(Debug, Default)]
struct HealthState {
    failures: AtomicU32,
    quarantined: AtomicBool,
}

impl PartialEq for Health {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Health {
    /// Whether the analyzer is quarantined.
    pub fn is_quarantined(&self) -> bool {
        self.0.quarantined.load(Ordering::SeqCst)
    }

    /// A run ended: `bad` when it crashed or timed out. A good run resets the count. With
    /// `limit` consecutive bad runs (0: no limit) the analyzer is quarantined; the call that
    /// does it gets the count back, once.
    pub fn record(&self, bad: bool, limit: u32) -> Option<u32> {
        if !bad {
            self.0.failures.store(0, Ordering::SeqCst);
            return None;
        }
        let failures = self.0.failures.fetch_add(1, Ordering::SeqCst) + 1;
        if limit == 0 || failures < limit {
            return None;
        }
        (!self.0.quarantined.swap(true, Ordering::SeqCst)).then_some(failures)
    }
}

impl SlotSpec {
    /// Whether `hook` on `turn` runs this analyzer (S20), unless it is quarantined.
    pub fn wants(&self, hook: Hook, turn: u64) -> bool {
        if !self.enabled || self.health.is_quarantined() || !self.hooks.contains(&hook) {
            return false;
        }
        match hook {
            Hook::ChatStart | Hook::ChatEnd => true,
            Hook::TurnStart | Hook::Step | Hook::TurnComplete => {
                turn.is_multiple_of(u64::from(self.every_n_turns.max(1)))
            }
        }
    }
}

/// A run to start.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStart<V> {
    /// Index of the analyzer.
    pub analyzer: usize,
    /// Run id, unique in the session.
    pub run: u64,
    /// The hook.
    pub hook: Hook,
    /// The turn it is about.
    pub turn: u64,
    /// The step it is about (0 when none).
    pub step: u32,
    /// What the analyzer will see.
    pub view: V,
}

#[derive(Debug, Clone)]
struct InFlight {
    run: u64,
    hook: Hook,
    turn: u64,
}

#[derive(Debug, Clone)]
struct Slot<V> {
    running: Option<InFlight>,
    follow_up: Option<RunStart<V>>,
}

#[derive(Debug, Clone)]
struct Settle<V> {
    turn: u64,
    ended: Instant,
    view: V,
}

/// Result of [`RunTracker::fire`].
#[derive(Debug, Clone, PartialEq)]
pub struct Fired<V> {
    /// Runs to start now.
    pub start: Vec<RunStart<V>>,
    /// Analyzers whose hook was folded into a follow-up run (S26).
    pub coalesced: Vec<usize>,
}

/// The analyzer runs of one session.
#[derive(Debug, Clone)]
pub struct RunTracker<V> {
    slots: Vec<Slot<V>>,
    next_run: u64,
    settles: VecDeque<Settle<V>>,
}

fn is_turn_work(hook: Hook) -> bool {
    matches!(hook, Hook::ChatStart | Hook::TurnStart | Hook::Step)
}

impl<V: Clone> RunTracker<V> {
    /// A tracker for `analyzers` analyzers.
    pub fn new(analyzers: usize) -> Self {
        RunTracker {
            slots: (0..analyzers)
                .map(|_| Slot {
                    running: None,
                    follow_up: None,
                })
                .collect(),
            next_run: 0,
            settles: VecDeque::new(),
        }
    }

    /// The analyzers changed (a reload): `map[new]` is the old index of the analyzer now at
    /// `new`, if it was there before. Their runs in flight and follow-ups move along; the
    /// slots of analyzers that are gone are dropped.
    pub fn remap(&mut self, map: &[Option<usize>]) {
        let mut old: Vec<Option<Slot<V>>> = std::mem::take(&mut self.slots)
            .into_iter()
            .map(Some)
            .collect();
        self.slots = map
            .iter()
            .enumerate()
            .map(|(new, from)| {
                let mut slot = from
                    .and_then(|i| old.get_mut(i).and_then(Option::take))
                    .unwrap_or(Slot {
                        running: None,
                        follow_up: None,
                    });
                if let Some(f) = slot.follow_up.as_mut() {
                    f.analyzer = new;
                }
                slot
            })
            .collect();
    }

    /// A hook fired: start a run for each subscribed idle analyzer; for a busy one, replace
    /// its follow-up with this newer input (S26).
    pub fn fire(
        &mut self,
        specs: &[SlotSpec],
        hook: Hook,
        turn: u64,
        step: u32,
        view: &V,
    ) -> Fired<V> {
        let mut fired = Fired {
            start: Vec::new(),
            coalesced: Vec::new(),
        };
        for (i, spec) in specs.iter().enumerate() {
            if !spec.wants(hook, turn) {
                continue;
            }
            self.next_run += 1;
            let start = RunStart {
                analyzer: i,
                run: self.next_run,
                hook,
                turn,
                step,
                view: view.clone(),
            };
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            if slot.running.is_some() {
                slot.follow_up = Some(start);
                fired.coalesced.push(i);
            } else {
                slot.running = Some(InFlight {
                    run: start.run,
                    hook,
                    turn,
                });
                fired.start.push(start);
            }
        }
        fired
    }

    /// A run ended (any outcome). Returns the follow-up to start, if one was coalesced.
    pub fn finished(&mut self, analyzer: usize, run: u64) -> Option<RunStart<V>> {
        let slot = self.slots.get_mut(analyzer)?;
        if slot.running.as_ref().map(|r| r.run) != Some(run) {
            return None;
        }
        slot.running = None;
        let next = slot.follow_up.take()?;
        slot.running = Some(InFlight {
            run: next.run,
            hook: next.hook,
            turn: next.turn,
        });
        Some(next)
    }

    /// Whether any run is in flight or waiting as a follow-up.
    pub fn busy(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.running.is_some() || s.follow_up.is_some())
    }

    /// A turn's reply is out: `turn_complete` for it waits for the turn's deferred work.
    pub fn turn_ended(&mut self, turn: u64, at: Instant, view: V) {
        self.settles.push_back(Settle {
            turn,
            ended: at,
            view,
        });
    }

    /// Turns whose `turn_complete` may fire now, in turn order, and when to look again.
    ///
    /// A turn settles when no analyzer has `chat_start`/`turn_start`/`step` work about it
    /// (or an earlier turn) running or coalesced, except analyzers whose `defer_timeout`
    /// since the turn's end has passed: their work is not cancelled, only no longer awaited
    /// (S22, S23).
    pub fn settled(
        &mut self,
        specs: &[SlotSpec],
        now: Instant,
    ) -> (Vec<(u64, V)>, Option<Instant>) {
        let mut ready = Vec::new();
        while let Some(front) = self.settles.front() {
            let wake = self.blocked_until(specs, front.turn, front.ended, now);
            if let Some(wake) = wake {
                return (ready, Some(wake));
            }
            if let Some(s) = self.settles.pop_front() {
                ready.push((s.turn, s.view));
            }
        }
        (ready, None)
    }

    fn blocked_until(
        &self,
        specs: &[SlotSpec],
        turn: u64,
        ended: Instant,
        now: Instant,
    ) -> Option<Instant> {
        let mut wake: Option<Instant> = None;
        for (slot, spec) in self.slots.iter().zip(specs) {
            let pending = slot
                .running
                .as_ref()
                .map(|r| (r.hook, r.turn))
                .into_iter()
                .chain(slot.follow_up.as_ref().map(|f| (f.hook, f.turn)))
                .any(|(hook, t)| is_turn_work(hook) && t <= turn);
            let deadline = ended + spec.defer_timeout;
            if pending && now < deadline {
                wake = Some(wake.map_or(deadline, |w| w.min(deadline)));
            }
        }
        wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(hooks: &[Hook]) -> SlotSpec {
        SlotSpec {
            hooks: hooks.to_vec(),
            enabled: true,
            every_n_turns: 1,
            defer_timeout: Duration::from_secs(5),
            health: Health::default(),
        }
    }

    #[test]
    fn consecutive_crashes_or_timeouts_quarantine_an_analyzer_once_and_good_runs_reset_them() {
        let s = spec(&[Hook::TurnStart]);
        assert_eq!(s.health.record(true, 3), None);
        assert_eq!(s.health.record(true, 3), None);
        assert_eq!(
            s.health.record(false, 3),
            None,
            "a good run resets the count"
        );
        assert_eq!(s.health.record(true, 3), None);
        assert_eq!(s.health.record(true, 3), None);
        assert!(s.wants(Hook::TurnStart, 1));
        assert_eq!(s.health.record(true, 3), Some(3));
        assert!(!s.wants(Hook::TurnStart, 1), "quarantined");
        assert_eq!(s.health.record(true, 3), None, "reported once");
        let never = spec(&[Hook::TurnStart]);
        for _ in 0..10 {
            assert_eq!(never.health.record(true, 0), None);
        }
        assert!(never.wants(Hook::TurnStart, 1));
    }

    #[test]
    fn a_remap_keeps_runs_in_flight_of_analyzers_that_stay() {
        let (a, b) = (spec(&[Hook::TurnStart]), spec(&[Hook::TurnStart]));
        let mut t = RunTracker::new(2);
        let first = t.fire(&[a.clone(), b.clone()], Hook::TurnStart, 1, 0, &"v1");
        let run_b = first.start[1].run;
        t.fire(&[a.clone(), b.clone()], Hook::TurnStart, 2, 0, &"v2");
        // `a` is removed, `b` moves to index 0, a new analyzer comes at index 1.
        t.remap(&[Some(1), None]);
        let next = t.finished(0, run_b).expect("b's follow-up moved with it");
        assert_eq!((next.analyzer, next.turn, next.view), (0, 2, "v2"));
        let c = spec(&[Hook::TurnStart]);
        let fired = t.fire(&[b, c], Hook::TurnStart, 3, 0, &"v3");
        assert_eq!(
            fired.start.iter().map(|s| s.analyzer).collect::<Vec<_>>(),
            [1]
        );
        assert_eq!(fired.coalesced, [0], "b is still running its follow-up");
    }

    #[test]
    fn s20_hooks_every_n_turns_and_enabled_narrow_subscriptions() {
        let every3 = SlotSpec {
            every_n_turns: 3,
            ..spec(&[Hook::TurnComplete, Hook::ChatEnd])
        };
        assert!(!every3.wants(Hook::TurnComplete, 1));
        assert!(every3.wants(Hook::TurnComplete, 3));
        assert!(
            every3.wants(Hook::ChatEnd, 1),
            "chat hooks ignore every_n_turns"
        );
        assert!(!every3.wants(Hook::TurnStart, 3), "not subscribed");
        let off = SlotSpec {
            enabled: false,
            ..spec(&[Hook::TurnComplete])
        };
        assert!(!off.wants(Hook::TurnComplete, 1));
    }

    #[test]
    fn s26_a_busy_analyzer_gets_one_follow_up_with_the_newest_input() {
        let specs = [spec(&[Hook::TurnStart])];
        let mut t = RunTracker::new(1);
        let first = t.fire(&specs, Hook::TurnStart, 1, 0, &"v1");
        assert_eq!(first.start.len(), 1);
        let second = t.fire(&specs, Hook::TurnStart, 2, 0, &"v2");
        let third = t.fire(&specs, Hook::TurnStart, 3, 0, &"v3");
        assert!(second.start.is_empty() && third.start.is_empty());
        assert_eq!(third.coalesced, vec![0]);
        let follow = t.finished(0, first.start[0].run).expect("one follow-up");
        assert_eq!((follow.turn, follow.view), (3, "v3"));
        assert!(t.finished(0, follow.run).is_none(), "no second follow-up");
        assert!(!t.busy());
    }

    #[test]
    fn s22_turn_complete_waits_for_turn_work_up_to_the_defer_timeout() {
        let specs = [spec(&[Hook::TurnStart]), spec(&[Hook::TurnComplete])];
        let mut t = RunTracker::new(2);
        let now = Instant::now();
        let fired = t.fire(&specs, Hook::TurnStart, 1, 0, &());
        t.turn_ended(1, now, ());
        let (ready, wake) = t.settled(&specs, now);
        assert!(ready.is_empty());
        assert_eq!(wake, Some(now + Duration::from_secs(5)));
        // Finished in time: settles at once.
        t.finished(0, fired.start[0].run);
        assert_eq!(t.settled(&specs, now + Duration::from_secs(1)).0.len(), 1);
    }

    #[test]
    fn s23_work_past_the_defer_timeout_stops_blocking_but_is_not_cancelled() {
        let specs = [spec(&[Hook::TurnStart])];
        let mut t = RunTracker::new(1);
        let now = Instant::now();
        t.fire(&specs, Hook::TurnStart, 1, 0, &());
        t.turn_ended(1, now, ());
        let (ready, _) = t.settled(&specs, now + Duration::from_secs(5));
        assert_eq!(ready.len(), 1);
        assert!(t.busy(), "the run is still in flight");
    }

    #[test]
    fn turn_complete_work_never_blocks_settling() {
        let specs = [spec(&[Hook::TurnComplete])];
        let mut t = RunTracker::new(1);
        let now = Instant::now();
        t.fire(&specs, Hook::TurnComplete, 1, 0, &());
        t.turn_ended(2, now, ());
        assert_eq!(t.settled(&specs, now).0.len(), 1);
    }
}
