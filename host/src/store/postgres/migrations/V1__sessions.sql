-- Sessions, their model context, their injections, the analyzers' per-session state, and
-- the inbox through which analyzer results reach a session that moved to another host.
-- A migration, once released, is never edited: a change is a new migration after it.

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    -- counters, the running turn and pending user messages, as JSON (machine::Checkpoint)
    checkpoint TEXT NOT NULL,
    -- times a compaction replaced the history's prefix
    compactions BIGINT NOT NULL DEFAULT 0,
    -- opened for a /v1/chat/completions conversation, and the fingerprint of the
    -- transcript its client holds
    derived BOOLEAN NOT NULL DEFAULT FALSE,
    conversation_key BYTEA,
    -- commits so far: a host whose copy is older loads the session again
    version BIGINT NOT NULL DEFAULT 0,
    -- the host serving the session's current turn, its lease's number (every commit
    -- names it, so a host that lost the lease writes nothing) and when it runs out
    lease_holder TEXT,
    lease_epoch BIGINT NOT NULL DEFAULT 0,
    lease_expires TIMESTAMPTZ
);

CREATE INDEX sessions_conversation_key ON sessions (conversation_key)
    WHERE conversation_key IS NOT NULL;

CREATE TABLE messages (
    session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    pos BIGINT NOT NULL,
    role TEXT NOT NULL,
    origin TEXT NOT NULL,
    content TEXT NOT NULL,
    -- the whole message (tool calls, analyzer, ...) as JSON
    message TEXT NOT NULL,
    PRIMARY KEY (session, pos)
);

CREATE TABLE injections (
    session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    id BIGINT NOT NULL,
    analyzer TEXT NOT NULL,
    hook TEXT NOT NULL,
    lane TEXT NOT NULL,
    role TEXT NOT NULL,
    key TEXT,
    about_turn BIGINT NOT NULL,
    ttl_turns BIGINT,
    content TEXT NOT NULL,
    details TEXT,
    -- queued, delivered, superseded, stale or undelivered
    status TEXT NOT NULL,
    delivered_boundary TEXT,
    delivered_turn BIGINT,
    delivered_step BIGINT,
    superseded_by BIGINT,
    stale_at_turn BIGINT,
    PRIMARY KEY (session, id)
);

CREATE TABLE analyzer_state (
    analyzer TEXT NOT NULL,
    session TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (session, analyzer, key)
);

-- Injections from analyzer runs that ended on a host no longer serving the session. The
-- host that next holds the session's lease moves them into its queue, and deletes them in
-- the transaction that stores them as injections: each lands exactly once.
CREATE TABLE inbox (
    seq BIGSERIAL PRIMARY KEY,
    session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    analyzer TEXT NOT NULL,
    hook TEXT NOT NULL,
    about_turn BIGINT NOT NULL,
    ttl_turns BIGINT,
    role TEXT NOT NULL,
    key TEXT,
    content TEXT NOT NULL,
    details TEXT,
    from_host TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE INDEX inbox_session ON inbox (session, seq);
