//! The session store (SPEC S37, S38): SQLite in WAL mode, one file, written before the model
//! call that depends on it.
//!
//! Each session's actor commits what changed since its last commit — new history messages,
//! the injections it enqueued and their fates, its counters and pending user messages — in
//! one transaction, before it performs the next action. So a user message is stored before
//! the model is called, an injection is stored when it is enqueued, and it is marked
//! delivered in the same transaction that stores the model input carrying it. A host that is
//! killed at any moment resumes every session from the last commit with nothing lost and
//! nothing delivered twice.
//!
//! `synchronous = NORMAL`: a commit survives the process being killed; only a power loss or
//! an operating system crash may lose the last commits.

mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use murmur_plugin_api::{Hook, Injection, Role};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::events::{Boundary, EventKind};
use crate::model::ContextMessage;
use crate::session::machine::{Checkpoint, Restored, TurnMachine};
use crate::session::queue::{Lane, Provenance, Queued};

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
#[error("session store {}: {what}: {source}", path.display())]
pub struct StoreError {
    /// The database file.
    pub path: PathBuf,
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

/// What a session's actor has committed so far; [`Store::commit`] writes only the difference.
#[derive(Debug, Default)]
pub struct Cursor {
    stored: bool,
    history_len: usize,
    compactions: u64,
    checkpoint: Checkpoint,
    /// Injection events not yet written (a commit failed; the next one retries them).
    pending: Vec<EventKind>,
}

/// The SQLite store. One connection, used under a lock: commits are small and short.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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

impl Store {
    /// Opens (creating it and its folder if needed) the store at `path` and brings its
    /// schema up to date. The file is locked for this process: a second host on the same
    /// file is refused.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let err = |what: &str, e: Box<dyn std::error::Error + Send + Sync>| StoreError {
            path: path.to_path_buf(),
            what: what.to_string(),
            source: e,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                err(
                    &format!("cannot create the folder {}", dir.display()),
                    e.into(),
                )
            })?;
        }
        let mut conn = Connection::open(path).map_err(|e| err("cannot open", e.into()))?;
        conn.busy_timeout(std::time::Duration::from_millis(200))
            .map_err(|e| err("cannot configure", e.into()))?;
        conn.execute_batch(
            "PRAGMA locking_mode = EXCLUSIVE;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;",
        )
        .map_err(|e| {
            let busy = matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            );
            if busy {
                err(
                    "is in use by another process (is another `murmur serve` running with this [store] path?)",
                    e.into(),
                )
            } else {
                err("cannot configure (is it an SQLite database?)", e.into())
            }
        })?;
        schema::migrations()
            .to_latest(&mut conn)
            .map_err(|e| err("cannot bring the schema up to date", e.into()))?;
        Ok(Store {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(
        &self,
        what: impl Into<String>,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError {
            path: self.path.clone(),
            what: what.into(),
            source: Box::new(e),
        }
    }

    /// Every stored session, oldest first.
    pub fn sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        let conn = self.conn();
        let read = || -> rusqlite::Result<Vec<StoredSession>> {
            let mut st = conn.prepare(
                "SELECT id, derived, conversation_key FROM sessions ORDER BY created_ms, id",
            )?;
            let rows = st.query_map([], |r| {
                Ok(StoredSession {
                    id: r.get(0)?,
                    derived: r.get::<_, i64>(1)? != 0,
                    conversation_key: r.get(2)?,
                })
            })?;
            rows.collect()
        };
        read().map_err(|e| self.error("cannot list sessions", e))
    }

    /// Loads a session, with the cursor its actor continues from; `None` if it is not stored.
    pub fn load(&self, id: &str) -> Result<Option<(Restored, Cursor)>, StoreError> {
        let conn = self.conn();
        let what = || format!("cannot load session `{id}`");
        let head: Option<(String, i64)> = conn
            .query_row(
                "SELECT checkpoint, compactions FROM sessions WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.error(what(), e))?;
        let Some((checkpoint, compactions)) = head else {
            return Ok(None);
        };
        let checkpoint: Checkpoint = serde_json::from_str(&checkpoint)
            .map_err(|e| self.error(format!("{}: its checkpoint", what()), e))?;
        let compactions = u64::try_from(compactions).unwrap_or(0);
        let history = self.load_history(&conn, id).map_err(|e| StoreError {
            what: format!("{}: {}", what(), e.what),
            ..e
        })?;
        let (queued, last_injection) = self.load_queue(&conn, id).map_err(|e| StoreError {
            what: format!("{}: {}", what(), e.what),
            ..e
        })?;
        let cursor = Cursor {
            stored: true,
            history_len: history.len(),
            compactions,
            checkpoint: checkpoint.clone(),
            pending: Vec::new(),
        };
        Ok(Some((
            Restored {
                checkpoint,
                history,
                queued,
                last_injection,
                compactions,
            },
            cursor,
        )))
    }

    fn load_history(&self, conn: &Connection, id: &str) -> Result<Vec<ContextMessage>, StoreError> {
        let rows = (|| -> rusqlite::Result<Vec<(i64, String)>> {
            let mut st =
                conn.prepare("SELECT pos, message FROM messages WHERE session = ?1 ORDER BY pos")?;
            let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })()
        .map_err(|e| self.error("its messages", e))?;
        rows.into_iter()
            .map(|(pos, json)| {
                serde_json::from_str(&json).map_err(|e| self.error(format!("message {pos}"), e))
            })
            .collect()
    }

    fn load_queue(&self, conn: &Connection, id: &str) -> Result<(Vec<Queued>, u64), StoreError> {
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            Option<String>,
            i64,
            Option<i64>,
            String,
            Option<String>,
        );
        let (rows, last) = (|| -> rusqlite::Result<(Vec<Row>, i64)> {
            let last: i64 = conn.query_row(
                "SELECT COALESCE(MAX(id), 0) FROM injections WHERE session = ?1",
                [id],
                |r| r.get(0),
            )?;
            let mut st = conn.prepare(
                "SELECT id, analyzer, hook, lane, role, key, about_turn, ttl_turns, content, details
                 FROM injections WHERE session = ?1 AND status = 'queued' ORDER BY id",
            )?;
            let rows = st.query_map([id], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ))
            })?;
            Ok((rows.collect::<rusqlite::Result<_>>()?, last))
        })()
        .map_err(|e| self.error("its injections", e))?;
        let mut queued = Vec::with_capacity(rows.len());
        for (qid, analyzer, hook, lane, role, key, about_turn, ttl, content, details) in rows {
            let bad = |field: &str, e: serde_json::Error| {
                self.error(format!("injection {qid}: its {field}"), e)
            };
            let hook: Hook = parse(&hook).map_err(|e| bad("hook", e))?;
            let lane: Lane = parse(&lane).map_err(|e| bad("lane", e))?;
            let role: Role = parse(&role).map_err(|e| bad("role", e))?;
            let details = details
                .map(|d| serde_json::from_str(&d))
                .transpose()
                .map_err(|e| bad("details", e))?;
            queued.push(Queued {
                id: u64::try_from(qid).unwrap_or(0),
                lane,
                injection: Injection {
                    role,
                    content,
                    key,
                    details,
                },
                provenance: Provenance {
                    analyzer: analyzer.into(),
                    hook,
                    about_turn: u64::try_from(about_turn).unwrap_or(0),
                    ttl_turns: ttl.and_then(|t| u32::try_from(t).ok()),
                },
            });
        }
        Ok((queued, u64::try_from(last).unwrap_or(0)))
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
        cursor.pending.extend(
            events
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        EventKind::InjectionEnqueued { .. }
                            | EventKind::InjectionDelivered { .. }
                            | EventKind::InjectionSuperseded { .. }
                            | EventKind::InjectionStale { .. }
                            | EventKind::InjectionUndelivered { .. }
                    )
                })
                .cloned(),
        );
        let history = machine.history();
        let checkpoint = machine.checkpoint();
        let rewrite = !cursor.stored
            || cursor.compactions != machine.compactions()
            || history.len() < cursor.history_len;
        if !rewrite
            && history.len() == cursor.history_len
            && checkpoint == cursor.checkpoint
            && cursor.pending.is_empty()
        {
            return Ok(());
        }
        let mut conn = self.conn();
        let write = |tx: &Transaction<'_>| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let now = now_ms();
            let json = serde_json::to_string(&checkpoint)?;
            if !cursor.stored {
                // A new session replaces anything left under its id.
                tx.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
                tx.execute("DELETE FROM analyzer_state WHERE session = ?1", [id])?;
                tx.execute(
                    "INSERT INTO sessions (id, created_ms, updated_ms, checkpoint, compactions)
                     VALUES (?1, ?2, ?2, ?3, ?4)",
                    params![id, now, json, int(machine.compactions())],
                )?;
            } else {
                tx.execute(
                    "UPDATE sessions SET updated_ms = ?2, checkpoint = ?3, compactions = ?4 WHERE id = ?1",
                    params![id, now, json, int(machine.compactions())],
                )?;
            }
            let from = if rewrite {
                tx.execute("DELETE FROM messages WHERE session = ?1", [id])?;
                0
            } else {
                cursor.history_len
            };
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (session, pos, role, origin, content, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (pos, m) in history.iter().enumerate().skip(from) {
                insert.execute(params![
                    id,
                    int(pos as u64),
                    text(&m.role),
                    m.origin.as_str(),
                    m.content,
                    serde_json::to_string(m)?,
                ])?;
            }
            for e in &cursor.pending {
                record_injection(tx, id, e)?;
            }
            Ok(())
        };
        let result = conn
            .transaction()
            .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
            .and_then(|tx| {
                write(&tx)?;
                tx.commit()?;
                Ok(())
            });
        drop(conn);
        result.map_err(|source| StoreError {
            path: self.path.clone(),
            what: format!("cannot store session `{id}`"),
            source,
        })?;
        cursor.stored = true;
        cursor.history_len = history.len();
        cursor.compactions = machine.compactions();
        cursor.checkpoint = checkpoint;
        cursor.pending.clear();
        Ok(())
    }

    /// Deletes a session with everything it owns.
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
            tx.execute("DELETE FROM analyzer_state WHERE session = ?1", [id])?;
            tx.commit()
        };
        run(&mut conn).map_err(|e| self.error(format!("cannot delete session `{id}`"), e))
    }

    /// Marks a session as derived from a `/v1/chat/completions` conversation, with the
    /// fingerprint of the transcript its client now holds.
    pub fn set_conversation(&self, id: &str, key: Option<&[u8]>) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE sessions SET derived = 1, conversation_key = ?2 WHERE id = ?1",
                params![id, key],
            )
            .map(drop)
            .map_err(|e| self.error(format!("cannot store the conversation of `{id}`"), e))
    }

    /// The session's injections as the events that made them what they are now, oldest
    /// first: each one's `injection_enqueued`, then its delivery or other fate.
    pub fn injection_events(&self, id: &str) -> Result<Vec<EventKind>, StoreError> {
        let conn = self.conn();
        let rows = (|| -> rusqlite::Result<Vec<InjectionRow>> {
            let mut st = conn.prepare(
                "SELECT id, analyzer, hook, lane, role, key, about_turn, ttl_turns, content, details,
                        status, delivered_boundary, delivered_turn, delivered_step, superseded_by,
                        stale_at_turn
                 FROM injections WHERE session = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([id], InjectionRow::read)?;
            rows.collect()
        })()
        .map_err(|e| self.error(format!("cannot read the injections of `{id}`"), e))?;
        let mut events = Vec::with_capacity(rows.len() * 2);
        for row in rows {
            row.events(&mut events)
                .map_err(|e| self.error(format!("injection {} of `{id}`", row.id), e))?;
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
        self.conn()
            .query_row(
                "SELECT value FROM analyzer_state WHERE session = ?1 AND analyzer = ?2 AND key = ?3",
                [session, analyzer, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error(format!("cannot read state `{key}` of analyzer `{analyzer}`"), e))
    }

    /// Writes an analyzer's state value for a session, or removes it with `None`.
    pub fn state_put(
        &self,
        analyzer: &str,
        session: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let done = match value {
            Some(v) => conn.execute(
                "INSERT INTO analyzer_state (analyzer, session, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (session, analyzer, key) DO UPDATE SET value = excluded.value",
                [analyzer, session, key, v],
            ),
            None => conn.execute(
                "DELETE FROM analyzer_state WHERE session = ?1 AND analyzer = ?2 AND key = ?3",
                [session, analyzer, key],
            ),
        };
        done.map(drop).map_err(|e| {
            self.error(
                format!("cannot write state `{key}` of analyzer `{analyzer}`"),
                e,
            )
        })
    }
}

/// Writes one injection event: a new row, or the row's new status.
fn record_injection(tx: &Transaction<'_>, session: &str, e: &EventKind) -> rusqlite::Result<()> {
    match e {
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
        } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO injections
                 (session, id, analyzer, hook, lane, role, key, about_turn, ttl_turns, content, details, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'queued')",
            )?
            .execute(params![
                session,
                int(*id),
                analyzer,
                text(hook),
                text(lane),
                text(role),
                key,
                int(*about_turn),
                ttl_turns,
                content,
                details.as_ref().map(|d| d.to_string()),
            ])?;
        }
        EventKind::InjectionDelivered {
            id,
            boundary,
            turn,
            step,
            ..
        } => {
            tx.prepare_cached(
                "UPDATE injections SET status = 'delivered', delivered_boundary = ?3,
                 delivered_turn = ?4, delivered_step = ?5 WHERE session = ?1 AND id = ?2",
            )?
            .execute(params![session, int(*id), text(boundary), int(*turn), step])?;
        }
        EventKind::InjectionSuperseded { id, by, .. } => {
            tx.prepare_cached(
                "UPDATE injections SET status = 'superseded', superseded_by = ?3
                 WHERE session = ?1 AND id = ?2",
            )?
            .execute(params![session, int(*id), int(*by)])?;
        }
        EventKind::InjectionStale { id, turn, .. } => {
            tx.prepare_cached(
                "UPDATE injections SET status = 'stale', stale_at_turn = ?3
                 WHERE session = ?1 AND id = ?2",
            )?
            .execute(params![session, int(*id), int(*turn)])?;
        }
        EventKind::InjectionUndelivered { id, .. } => {
            tx.prepare_cached(
                "UPDATE injections SET status = 'undelivered' WHERE session = ?1 AND id = ?2",
            )?
            .execute(params![session, int(*id)])?;
        }
        _ => {}
    }
    Ok(())
}

/// One row of `injections`.
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

impl InjectionRow {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(InjectionRow {
            id: r.get(0)?,
            analyzer: r.get(1)?,
            hook: r.get(2)?,
            lane: r.get(3)?,
            role: r.get(4)?,
            key: r.get(5)?,
            about_turn: r.get(6)?,
            ttl_turns: r.get(7)?,
            content: r.get(8)?,
            details: r.get(9)?,
            status: r.get(10)?,
            boundary: r.get(11)?,
            turn: r.get(12)?,
            step: r.get(13)?,
            superseded_by: r.get(14)?,
            stale_at_turn: r.get(15)?,
        })
    }

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

#[cfg(test)]
mod tests;
