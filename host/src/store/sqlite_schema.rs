//! The store's schema, as numbered migrations (SQLite's `user_version` holds the number).
//! A migration, once released, is never edited: a change is a new migration at the end.

use rusqlite_migration::{Migrations, M};

/// Every migration, oldest first.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(V1)])
}

/// Sessions, their model context, their injections and the analyzers' per-session state.
const V1: &str = "
CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    -- counters, the running turn and pending user messages, as JSON (machine::Checkpoint)
    checkpoint TEXT NOT NULL,
    -- times a compaction replaced the history's prefix
    compactions INTEGER NOT NULL DEFAULT 0,
    -- opened for a /v1/chat/completions conversation, and the fingerprint of the
    -- transcript its client holds
    derived INTEGER NOT NULL DEFAULT 0,
    conversation_key BLOB
) STRICT;

CREATE TABLE messages (
    session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    pos INTEGER NOT NULL,
    role TEXT NOT NULL,
    origin TEXT NOT NULL,
    content TEXT NOT NULL,
    -- the whole message (tool calls, analyzer, ...) as JSON
    message TEXT NOT NULL,
    PRIMARY KEY (session, pos)
) STRICT, WITHOUT ROWID;

CREATE TABLE injections (
    session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    id INTEGER NOT NULL,
    analyzer TEXT NOT NULL,
    hook TEXT NOT NULL,
    lane TEXT NOT NULL,
    role TEXT NOT NULL,
    key TEXT,
    about_turn INTEGER NOT NULL,
    ttl_turns INTEGER,
    content TEXT NOT NULL,
    details TEXT,
    -- queued, delivered, superseded, stale or undelivered
    status TEXT NOT NULL,
    delivered_boundary TEXT,
    delivered_turn INTEGER,
    delivered_step INTEGER,
    superseded_by INTEGER,
    stale_at_turn INTEGER,
    PRIMARY KEY (session, id)
) STRICT, WITHOUT ROWID;

CREATE TABLE analyzer_state (
    analyzer TEXT NOT NULL,
    session TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (session, analyzer, key)
) STRICT, WITHOUT ROWID;
";

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }
}
