//! The SQLite backend: one file in WAL mode, owned by one host (a second host on the same
//! file is refused).
//!
//! `synchronous = NORMAL`: a commit survives the process being killed; only a power loss or
//! an operating system crash may lose the last commits.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::sqlite_schema as schema;
use super::{
    now_ms, Cursor, Delta, InjectionRow, Loaded, Restored, StoreError, StoredSession, Write,
    INJECTION_COLUMNS,
};

/// The SQLite store. One connection, used under a lock: commits are small and short.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating it and its folder if needed) the store at `path` and brings its
    /// schema up to date. The file is locked for this process: a second host on the same
    /// file is refused.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let err = |what: &str, e: Box<dyn std::error::Error + Send + Sync>| StoreError {
            place: path.display().to_string(),
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
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn error(
        &self,
        what: impl Into<String>,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> StoreError {
        StoreError {
            place: self.path.display().to_string(),
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
        let read = || -> rusqlite::Result<Option<Loaded>> {
            let head: Option<(String, i64)> = conn
                .query_row(
                    "SELECT checkpoint, compactions FROM sessions WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((checkpoint, compactions)) = head else {
                return Ok(None);
            };
            let mut st =
                conn.prepare("SELECT pos, message FROM messages WHERE session = ?1 ORDER BY pos")?;
            let messages = st
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let last_injection: i64 = conn.query_row(
                "SELECT COALESCE(MAX(id), 0) FROM injections WHERE session = ?1",
                [id],
                |r| r.get(0),
            )?;
            Ok(Some(Loaded {
                checkpoint,
                compactions,
                messages,
                queued: injection_rows(&conn, id, true)?,
                last_injection,
            }))
        };
        let loaded = read().map_err(|e| self.error(format!("cannot load session `{id}`"), e))?;
        drop(conn);
        loaded
            .map(|l| l.restore(&self.path.display().to_string(), id))
            .transpose()
    }

    /// Writes a commit's delta in one transaction.
    pub(super) fn write(
        &self,
        id: &str,
        cursor: &Cursor,
        delta: &Delta<'_>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let write = |tx: &Transaction<'_>| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let now = now_ms();
            let json = serde_json::to_string(&delta.checkpoint)?;
            if delta.create {
                // A new session replaces anything left under its id.
                tx.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
                tx.execute("DELETE FROM analyzer_state WHERE session = ?1", [id])?;
                tx.execute(
                    "INSERT INTO sessions (id, created_ms, updated_ms, checkpoint, compactions)
                     VALUES (?1, ?2, ?2, ?3, ?4)",
                    params![id, now, json, delta.compactions],
                )?;
            } else {
                tx.execute(
                    "UPDATE sessions SET updated_ms = ?2, checkpoint = ?3, compactions = ?4 WHERE id = ?1",
                    params![id, now, json, delta.compactions],
                )?;
            }
            if delta.rewrite {
                tx.execute("DELETE FROM messages WHERE session = ?1", [id])?;
            }
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (session, pos, role, origin, content, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for m in delta.messages() {
                let (pos, role, origin, content, json) = m?;
                insert.execute(params![id, pos, role, origin, content, json])?;
            }
            for w in cursor.writes() {
                record_injection(tx, id, &w)?;
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
            place: self.path.display().to_string(),
            what: format!("cannot store session `{id}`"),
            source,
        })
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

    /// The session's injections, oldest first; with `queued`, only those still queued.
    pub(super) fn injections(
        &self,
        id: &str,
        queued: bool,
    ) -> Result<Vec<InjectionRow>, StoreError> {
        injection_rows(&self.conn(), id, queued)
            .map_err(|e| self.error(format!("cannot read the injections of `{id}`"), e))
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

fn injection_rows(
    conn: &Connection,
    id: &str,
    queued: bool,
) -> rusqlite::Result<Vec<InjectionRow>> {
    let filter = if queued { " AND status = 'queued'" } else { "" };
    let mut st = conn.prepare(&format!(
        "SELECT {INJECTION_COLUMNS} FROM injections WHERE session = ?1{filter} ORDER BY id"
    ))?;
    let rows = st.query_map([id], |r| {
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
    })?;
    rows.collect()
}

/// Writes one injection row, or a row's fate.
fn record_injection(tx: &Transaction<'_>, session: &str, w: &Write) -> rusqlite::Result<()> {
    match w {
        Write::Insert(r) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO injections
                 (session, id, analyzer, hook, lane, role, key, about_turn, ttl_turns, content, details, status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 'queued')",
            )?
            .execute(params![
                session,
                r.id,
                r.analyzer,
                r.hook,
                r.lane,
                r.role,
                r.key,
                r.about_turn,
                r.ttl_turns,
                r.content,
                r.details,
            ])?;
        }
        Write::Fate(f) => {
            tx.prepare_cached(
                "UPDATE injections SET status = ?3, delivered_boundary = ?4, delivered_turn = ?5,
                 delivered_step = ?6, superseded_by = ?7, stale_at_turn = ?8
                 WHERE session = ?1 AND id = ?2",
            )?
            .execute(params![
                session,
                f.id,
                f.status,
                f.boundary,
                f.turn,
                f.step,
                f.superseded_by,
                f.stale_at_turn,
            ])?;
        }
    }
    Ok(())
}
