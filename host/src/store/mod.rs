//! The session store (SPEC S37, S38): what a host keeps of each session so that nothing is
//! lost and nothing is delivered twice when the host stops, crashes, or — with PostgreSQL —
//! when another host takes the session over.
//!
//! Two backends share one contract and one schema:
//!
//! - [`sqlite`]: one file in WAL mode, owned by one host (the default);
//! - [`postgres`]: one database shared by several hosts; a session is leased by the host
//!   that serves its current turn, and analyzer results that arrive after the session moved
//!   on reach its queue through an inbox table.
//!
//! Each session's actor commits what changed since its last commit — new history messages,
//! the injections it enqueued and their fates, its counters and pending user messages — in
//! one transaction, before it performs the next action. So a user message is stored before
//! the model is called, an injection is stored when it is enqueued, and it is marked
//! delivered in the same transaction that stores the model input carrying it. A [`Cursor`]
//! remembers what the session has committed, so a commit writes only the difference.

pub mod postgres;
pub mod sqlite;
mod sqlite_schema;

use murmur_plugin_api::{Hook, Injection, Role};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::events::{Boundary, EventKind};
use crate::model::{ContextMessage, Messages};
use crate::session::machine::{Checkpoint, Restored, TurnMachine};
use crate::session::queue::{Lane, Provenance, Queued};

pub use postgres::{Acquired, LeaseError, PgStore};
pub use sqlite::SqliteStore;

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[error("session store {place}: {what}: {source}")]
pub struct StoreError {
    /// Which store: the SQLite file, or the PostgreSQL database.
    pub place: String,
    /// What the store was doing.
    pub what: String,
    /// The cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// A stored session, as listed at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Its id.
    pub id: String,
    /// Opened for a `/v1/chat/completions` conversation.
    pub derived: bool,
    /// The fingerprint of the transcript its client holds, for a derived session.
    pub conversation_key: Option<Vec<u8>>,
}

/// The session store of a host.
#[derive(Debug)]
pub enum Store {
    /// An SQLite file owned by this host.
    Sqlite(SqliteStore),
    /// A PostgreSQL database shared with other hosts.
    Postgres(PgStore),
}

impl Store {
    /// Opens (creating it and its folder if needed) the SQLite store at `path`; see
    /// [`SqliteStore::open`].
    pub fn sqlite(path: &std::path::Path) -> Result<Store, StoreError> {
        SqliteStore::open(path).map(Store::Sqlite)
    }

    /// Where the sessions are kept, for messages: the file, or the database.
    pub fn place(&self) -> String {
        match self {
            Store::Sqlite(s) => s.path().display().to_string(),
            Store::Postgres(s) => s.place().to_string(),
        }
    }

    /// The PostgreSQL store, when sessions are shared with other hosts (then a session's
    /// actor leases it for each turn).
    pub fn shared(&self) -> Option<&PgStore> {
        match self {
            Store::Postgres(s) => Some(s),
            Store::Sqlite(_) => None,
        }
    }

    /// Every stored session, oldest first.
    pub fn sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        match self {
            Store::Sqlite(s) => s.sessions(),
            Store::Postgres(s) => s.sessions(),
        }
    }

    /// Loads a session, with the cursor its actor continues from; `None` if it is not stored.
    pub fn load(&self, id: &str) -> Result<Option<(Restored, Cursor)>, StoreError> {
        match self {
            Store::Sqlite(s) => s.load(id),
            Store::Postgres(s) => s.load(id),
        }
    }

    /// Writes what changed in `machine` since `cursor`, plus the injection events among
    /// `events`, in one transaction; then advances the cursor. On failure nothing is
    /// written and the cursor keeps the events, so the next commit retries them.
    pub fn commit(
        &self,
        id: &str,
        cursor: &mut Cursor,
        machine: &TurnMachine,
        events: &[EventKind],
    ) -> Result<(), StoreError> {
        cursor
            .pending
            .extend(events.iter().filter(|e| Write::of(e).is_some()).cloned());
        let Some(delta) = cursor.delta(machine) else {
            return Ok(());
        };
        match self {
            Store::Sqlite(s) => s.write(id, cursor, &delta)?,
            Store::Postgres(s) => cursor.version = s.write(id, cursor, &delta)?,
        }
        cursor.advance(machine, delta);
        Ok(())
    }

    /// Deletes a session with everything it owns.
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.delete(id),
            Store::Postgres(s) => s.delete(id),
        }
    }

    /// Marks a session as derived from a `/v1/chat/completions` conversation, with the
    /// fingerprint of the transcript its client now holds.
    pub fn set_conversation(&self, id: &str, key: Option<&[u8]>) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.set_conversation(id, key),
            Store::Postgres(s) => s.set_conversation(id, key),
        }
    }

    /// The session's injections as the events that made them what they are now, oldest
    /// first: each one's `injection_enqueued`, then its delivery or other fate.
    pub fn injection_events(&self, id: &str) -> Result<Vec<EventKind>, StoreError> {
        let rows = match self {
            Store::Sqlite(s) => s.injections(id, false)?,
            Store::Postgres(s) => s.injections(id, false)?,
        };
        let mut events = Vec::with_capacity(rows.len() * 2);
        for row in rows {
            row.events(&mut events).map_err(|e| StoreError {
                place: self.place(),
                what: format!("injection {} of `{id}`", row.id),
                source: e.into(),
            })?;
        }
        Ok(events)
    }

    /// An analyzer's state value for a session.
    pub fn state_get(
        &self,
        analyzer: &str,
        session: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        match self {
            Store::Sqlite(s) => s.state_get(analyzer, session, key),
            Store::Postgres(s) => s.state_get(analyzer, session, key),
        }
    }

    /// Writes an analyzer's state value for a session, or removes it with `None`.
    pub fn state_put(
        &self,
        analyzer: &str,
        session: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.state_put(analyzer, session, key, value),
            Store::Postgres(s) => s.state_put(analyzer, session, key, value),
        }
    }
}

/// What a session's actor has committed so far; [`Store::commit`] writes only the difference.
#[derive(Debug, Default)]
pub struct Cursor {
    stored: bool,
    history_len: usize,
    compactions: u64,
    checkpoint: Checkpoint,
    /// Injection events not yet written (a commit failed; the next one retries them).
    pending: Vec<EventKind>,
    /// PostgreSQL: the session's version as of the last commit or load; another host's
    /// commit since then makes the actor load the session again.
    version: i64,
    /// PostgreSQL: the lease this host holds on the session (its epoch), if any. Every
    /// commit checks it, so a host that lost the lease writes nothing.
    lease: Option<i64>,
    /// PostgreSQL: inbox rows taken into the queue, deleted by the commit that stores them
    /// as injections.
    claimed: Vec<i64>,
}

impl Cursor {
    /// Whether the session was committed (or loaded) at least once.
    pub fn stored(&self) -> bool {
        self.stored
    }

    /// PostgreSQL: the session's version this cursor has.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// PostgreSQL: the epoch of the lease this host holds on the session, if any.
    pub fn lease(&self) -> Option<i64> {
        self.lease
    }

    /// PostgreSQL: this host now holds the lease `epoch` (or none).
    pub fn set_lease(&mut self, epoch: Option<i64>) {
        self.lease = epoch;
    }

    /// PostgreSQL: this inbox row is now in the session's queue; the next commit deletes it.
    pub fn claim(&mut self, seq: i64) {
        self.claimed.push(seq);
    }

    /// PostgreSQL: this copy of the session can no longer be trusted (the lease was lost);
    /// the next lease loads the session.
    pub fn invalidate(&mut self) {
        self.version = -1;
    }

    /// A cursor for a session stored by another host and not loaded here yet: the next
    /// lease loads it.
    pub fn unloaded() -> Cursor {
        Cursor {
            stored: true,
            version: -1,
            ..Cursor::default()
        }
    }

    /// What the next commit writes, or `None` when nothing changed.
    fn delta<'m>(&self, machine: &'m TurnMachine) -> Option<Delta<'m>> {
        let history = machine.history();
        let checkpoint = machine.checkpoint();
        let rewrite = !self.stored
            || self.compactions != machine.compactions()
            || history.len() < self.history_len;
        if !rewrite
            && history.len() == self.history_len
            && checkpoint == self.checkpoint
            && self.pending.is_empty()
            && self.claimed.is_empty()
        {
            return None;
        }
        Some(Delta {
            create: !self.stored,
            from: if rewrite { 0 } else { self.history_len },
            rewrite,
            history,
            checkpoint,
            compactions: int(machine.compactions()),
        })
    }

    fn advance(&mut self, machine: &TurnMachine, delta: Delta<'_>) {
        self.stored = true;
        self.history_len = delta.history.len();
        self.compactions = machine.compactions();
        self.checkpoint = delta.checkpoint;
        self.pending.clear();
        self.claimed.clear();
    }

    /// The injection rows and fates to write, in order.
    fn writes(&self) -> impl Iterator<Item = Write> + '_ {
        self.pending.iter().filter_map(Write::of)
    }
}

/// What changed since the last commit.
struct Delta<'m> {
    /// The session is not stored yet: insert it (replacing anything left under its id).
    create: bool,
    /// The stored history is replaced from its start (a compaction, or a new session).
    rewrite: bool,
    /// The first history position to write.
    from: usize,
    history: &'m Messages,
    checkpoint: Checkpoint,
    compactions: i64,
}

impl Delta<'_> {
    /// The history messages to write: (position, role, origin, content, the whole message
    /// as JSON).
    fn messages(
        &self,
    ) -> impl Iterator<Item = Result<(i64, String, &str, &str, String), serde_json::Error>> {
        self.history
            .iter()
            .enumerate()
            .skip(self.from)
            .map(|(pos, m)| {
                Ok((
                    int(pos as u64),
                    text(&m.role),
                    m.origin.as_str(),
                    m.content.as_str(),
                    serde_json::to_string(m)?,
                ))
            })
    }
}

/// One write to `injections`: a new row, or a row's fate.
enum Write {
    Insert(InjectionRow),
    Fate(Fate),
}

/// An injection's new status and what goes with it.
struct Fate {
    id: i64,
    status: &'static str,
    boundary: Option<String>,
    turn: Option<i64>,
    step: Option<i64>,
    superseded_by: Option<i64>,
    stale_at_turn: Option<i64>,
}

impl Fate {
    fn new(id: u64, status: &'static str) -> Fate {
        Fate {
            id: int(id),
            status,
            boundary: None,
            turn: None,
            step: None,
            superseded_by: None,
            stale_at_turn: None,
        }
    }
}

impl Write {
    fn of(e: &EventKind) -> Option<Write> {
        Some(match e {
            EventKind::InjectionEnqueued {
                id,
                analyzer,
                hook,
                lane,
                role,
                key,
                about_turn,
                ttl_turns,
                content,
                details,
            } => Write::Insert(InjectionRow {
                id: int(*id),
                analyzer: analyzer.clone(),
                hook: text(hook),
                lane: text(lane),
                role: text(role),
                key: key.clone(),
                about_turn: int(*about_turn),
                ttl_turns: ttl_turns.map(i64::from),
                content: content.clone(),
                details: details.as_ref().map(|d| d.to_string()),
                status: "queued".into(),
                boundary: None,
                turn: None,
                step: None,
                superseded_by: None,
                stale_at_turn: None,
            }),
            EventKind::InjectionDelivered {
                id,
                boundary,
                turn,
                step,
                ..
            } => Write::Fate(Fate {
                boundary: Some(text(boundary)),
                turn: Some(int(*turn)),
                step: Some(i64::from(*step)),
                ..Fate::new(*id, "delivered")
            }),
            EventKind::InjectionSuperseded { id, by, .. } => Write::Fate(Fate {
                superseded_by: Some(int(*by)),
                ..Fate::new(*id, "superseded")
            }),
            EventKind::InjectionStale { id, turn, .. } => Write::Fate(Fate {
                stale_at_turn: Some(int(*turn)),
                ..Fate::new(*id, "stale")
            }),
            EventKind::InjectionUndelivered { id, .. } => {
                Write::Fate(Fate::new(*id, "undelivered"))
            }
            _ => return None,
        })
    }
}

/// One row of `injections`, as both backends store it.
struct InjectionRow {
    id: i64,
    analyzer: String,
    hook: String,
    lane: String,
    role: String,
    key: Option<String>,
    about_turn: i64,
    ttl_turns: Option<i64>,
    content: String,
    details: Option<String>,
    status: String,
    boundary: Option<String>,
    turn: Option<i64>,
    step: Option<i64>,
    superseded_by: Option<i64>,
    stale_at_turn: Option<i64>,
}

/// The columns of `injections` in [`InjectionRow`]'s order, for SELECTs.
const INJECTION_COLUMNS: &str = "id, analyzer, hook, lane, role, key, about_turn, ttl_turns, \
     content, details, status, delivered_boundary, delivered_turn, delivered_step, \
     superseded_by, stale_at_turn";

impl InjectionRow {
    /// The queued injection this row is.
    fn queued(&self) -> Result<Queued, serde_json::Error> {
        let hook: Hook = parse(&self.hook)?;
        let lane: Lane = parse(&self.lane)?;
        let role: Role = parse(&self.role)?;
        let details = self
            .details
            .as_deref()
            .map(serde_json::from_str)
            .transpose()?;
        Ok(Queued {
            id: u64::try_from(self.id).unwrap_or(0),
            lane,
            injection: Injection {
                role,
                content: self.content.clone(),
                key: self.key.clone(),
                details,
            },
            provenance: Provenance {
                analyzer: self.analyzer.as_str().into(),
                hook,
                about_turn: u64::try_from(self.about_turn).unwrap_or(0),
                ttl_turns: self.ttl_turns.and_then(|t| u32::try_from(t).ok()),
            },
        })
    }

    /// The events that made this injection what it is now.
    fn events(&self, out: &mut Vec<EventKind>) -> Result<(), serde_json::Error> {
        let id = u64::try_from(self.id).unwrap_or(0);
        let u = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        let lane: Lane = parse(&self.lane)?;
        out.push(EventKind::InjectionEnqueued {
            id,
            analyzer: self.analyzer.clone(),
            hook: parse(&self.hook)?,
            lane,
            role: parse(&self.role)?,
            key: self.key.clone(),
            about_turn: u(Some(self.about_turn)),
            ttl_turns: self.ttl_turns.and_then(|t| u32::try_from(t).ok()),
            content: self.content.clone(),
            details: self
                .details
                .as_deref()
                .map(serde_json::from_str)
                .transpose()?,
        });
        let analyzer = self.analyzer.clone();
        match self.status.as_str() {
            "delivered" => out.push(EventKind::InjectionDelivered {
                id,
                analyzer,
                lane,
                boundary: match self.boundary.as_deref() {
                    Some(b) => parse(b)?,
                    None => Boundary::Turn,
                },
                turn: u(self.turn),
                step: u32::try_from(u(self.step)).unwrap_or(0),
            }),
            "superseded" => out.push(EventKind::InjectionSuperseded {
                id,
                by: u(self.superseded_by),
                analyzer,
                key: self.key.clone().unwrap_or_default(),
            }),
            "stale" => out.push(EventKind::InjectionStale {
                id,
                analyzer,
                about_turn: u(Some(self.about_turn)),
                turn: u(self.stale_at_turn),
            }),
            "undelivered" => out.push(EventKind::InjectionUndelivered { id, analyzer }),
            _ => {}
        }
        Ok(())
    }
}

/// What a backend read of one session, before it is checked and turned into a
/// [`Restored`].
struct Loaded {
    checkpoint: String,
    compactions: i64,
    /// (position, the message as JSON)
    messages: Vec<(i64, String)>,
    /// The queued injections.
    queued: Vec<InjectionRow>,
    /// The highest injection id the session used.
    last_injection: i64,
}

impl Loaded {
    /// The session as its actor resumes it, with the cursor of what is stored. A row that
    /// cannot be read is an error naming it.
    fn restore(self, place: &str, id: &str) -> Result<(Restored, Cursor), StoreError> {
        let err = |what: String, e: serde_json::Error| StoreError {
            place: place.to_string(),
            what: format!("cannot load session `{id}`: {what}"),
            source: e.into(),
        };
        let checkpoint: Checkpoint =
            serde_json::from_str(&self.checkpoint).map_err(|e| err("its checkpoint".into(), e))?;
        let compactions = u64::try_from(self.compactions).unwrap_or(0);
        let history = self
            .messages
            .into_iter()
            .map(|(pos, json)| {
                serde_json::from_str::<ContextMessage>(&json)
                    .map_err(|e| err(format!("its messages: message {pos}"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let queued = self
            .queued
            .iter()
            .map(|row| {
                row.queued()
                    .map_err(|e| err(format!("its injections: injection {}", row.id), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cursor = Cursor {
            stored: true,
            history_len: history.len(),
            compactions,
            checkpoint: checkpoint.clone(),
            ..Cursor::default()
        };
        Ok((
            Restored {
                checkpoint,
                history,
                queued,
                last_injection: u64::try_from(self.last_injection).unwrap_or(0),
                compactions,
            },
            cursor,
        ))
    }
}

fn text<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn parse<T: DeserializeOwned>(s: &str) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
