//! The PostgreSQL backend: one database shared by several `murmur serve` hosts.
//!
//! - **Leases.** A session is served by one host at a time: the host that runs its current
//!   turn holds a lease on its row (`lease_holder`, `lease_epoch`, `lease_expires`, on the
//!   database's clock). The actor acquires it before a turn (waiting while another host
//!   holds it), renews it while the turn runs, and releases it when the session is idle. A
//!   host that dies loses its leases when they expire; the next host to acquire one loads
//!   the session as committed, ends the interrupted turn as stopped, and goes on.
//! - **Fencing.** Every commit names the lease's epoch and changes nothing unless it still
//!   holds: a host that lost its lease (paused past the expiry, cut off from the database)
//!   cannot overwrite what the new holder wrote.
//! - **Versions.** Each commit increments the session's `version`. A host that served the
//!   session before keeps its copy in memory and reloads only if another host committed
//!   since.
//! - **Inbox.** An analyzer run that ends on a host that no longer holds the session's lease
//!   writes its injections to `inbox`. The holder moves them into its queue when it
//!   acquires the lease and while it renews it, and deletes them in the commit that stores
//!   them as injections: each lands exactly once, in the order the runs ended.
//!
//! The actor's store calls are synchronous (a commit must land before the model call that
//! depends on it); on tokio's multi-thread runtime they wait in `block_in_place`, so the
//! other tasks of the worker move to another thread meanwhile.
//!
//! When the database is unreachable, calls fail at once for a growing interval (100 ms up to
//! 5 s) before the next attempt, and the host stays up: requests are answered 503 with the
//! reason, `/healthz` reports the database down, and the schema is brought up to date on the
//! first connection that succeeds.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio_postgres::{IsolationLevel, Row};

use super::{
    now_ms, text, Cursor, Delta, InjectionRow, Loaded, Restored, StoreError, StoredSession, Write,
    INJECTION_COLUMNS,
};
use crate::session::queue::Provenance;
use murmur_plugin_api::Injection;

mod embedded {
    refinery::embed_migrations!("src/store/postgres/migrations");
}

/// The advisory lock hosts take while they migrate the schema, so two hosts starting at
/// once do not both run a migration.
const MIGRATION_LOCK: i64 = 0x6d75_726d_7572; // "murmur"

/// How long a store call waits for a connection, and a connection attempt for the server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The shortest and the longest pause after a failed connection.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// The PostgreSQL store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSettings {
    /// The environment variable that holds the connection URL.
    pub url_env: String,
    /// How long a lease lasts without renewal: how long a dead host's sessions wait before
    /// another host takes them over.
    pub lease_ttl: Duration,
    /// How long a message for a session whose turn runs on another host waits for that
    /// turn to end before it is answered 503.
    pub lease_wait: Duration,
    /// The most connections this host opens.
    pub pool_size: usize,
    /// A PEM file of the certificate authorities that sign the server's certificate;
    /// without one, the web's public authorities (Mozilla's list) are trusted.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for PgSettings {
    fn default() -> Self {
        PgSettings {
            url_env: "MURMUR_DATABASE_URL".into(),
            lease_ttl: Duration::from_secs(10),
            lease_wait: Duration::from_secs(60),
            pool_size: 16,
            tls_ca_file: None,
        }
    }
}

/// A lease this host now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// Its epoch: commits name it.
    pub epoch: i64,
    /// The session's version: if the actor's copy is older, it loads the session.
    pub version: i64,
    /// The host whose expired lease this one replaced, if any (a failover).
    pub took_over_from: Option<String>,
}

/// Why a lease was not acquired.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another host held the session for all of `lease_wait`.
    #[error("session `{session}` is serving a turn on host {holder}; waited {} for it to end (store.lease_wait)", humantime::format_duration(*waited))]
    Busy {
        /// The session.
        session: String,
        /// The host that holds it.
        holder: String,
        /// How long this host waited.
        waited: Duration,
    },
    /// The session is not in the store (deleted by another host).
    #[error("session `{0}` is not in the store (deleted?)")]
    NoSession(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Injections an analyzer run left in the inbox, with where they came from.
#[derive(Debug, Clone)]
pub struct InboxItem {
    /// Its place in the inbox.
    pub seq: i64,
    /// Where it came from.
    pub provenance: Provenance,
    /// The injection.
    pub injection: Injection,
}

#[derive(Debug)]
struct Down {
    until: Instant,
    pause: Duration,
    why: String,
}

/// The PostgreSQL store.
pub struct PgStore {
    pool: Pool,
    place: String,
    host: String,
    settings: PgSettings,
    handle: Handle,
    migrated: tokio::sync::OnceCell<()>,
    down: Mutex<Option<Down>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("place", &self.place)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl PgStore {
    /// A store on the database at `url` (which came from `settings.url_env`). Nothing is
    /// connected yet: the first call connects and brings the schema up to date, so a host
    /// starts while the database is down. Must be called inside a tokio runtime.
    pub fn open(url: &str, settings: PgSettings) -> Result<PgStore, StoreError> {
        let place_of = |detail: &str| format!("PostgreSQL {detail}(from ${})", settings.url_env);
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError {
            place: place_of(""),
            what: "the URL is not a PostgreSQL connection string (postgres://user:password@host:port/database)".into(),
            source: Box::new(e),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("murmur");
        }
        let place = place_of(&describe(&config));
        let handle = Handle::try_current().map_err(|e| StoreError {
            place: place.clone(),
            what: "must be opened inside the async runtime".into(),
            source: Box::new(e),
        })?;
        let tls =
            tls_connector(settings.tls_ca_file.as_deref()).map_err(|(what, e)| StoreError {
                place: place.clone(),
                what,
                source: e,
            })?;
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError {
                place: place.clone(),
                what: "cannot build the connection pool".into(),
                source: Box::new(e),
            })?;
        let host = format!(
            "{}:{}:{}",
            rustix::system::uname().nodename().to_string_lossy(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(PgStore {
            pool,
            place,
            host,
            settings,
            handle,
            migrated: tokio::sync::OnceCell::new(),
            down: Mutex::new(None),
        })
    }

    /// The database, for messages (without the password).
    pub fn place(&self) -> &str {
        &self.place
    }

    /// This host's name in leases: node name, process id and a random suffix, so a
    /// restarted host is a new holder.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The store's settings.
    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    fn error(&self, what: impl Into<String>, e: impl Into<BoxError>) -> StoreError {
        StoreError {
            place: self.place.clone(),
            what: what.into(),
            source: e.into(),
        }
    }

    /// Runs `f` to completion from synchronous code (see the module docs).
    fn block<F: Future>(&self, f: F) -> Result<F::Output, StoreError> {
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::CurrentThread => Err(self.error(
                "cannot wait for the database",
                "the PostgreSQL store needs tokio's multi-thread runtime, and this is the current-thread one",
            )),
            Ok(h) => Ok(tokio::task::block_in_place(|| h.block_on(f))),
            Err(_) => Ok(self.handle.block_on(f)),
        }
    }

    /// A pooled connection to an up-to-date schema; fails fast while the database is known
    /// to be down.
    async fn client(&self) -> Result<Object, StoreError> {
        if let Some(down) = self.lock_down().as_ref() {
            if Instant::now() < down.until {
                return Err(self.error(
                    format!(
                        "the database is unreachable; next attempt in {} ms",
                        down.until
                            .saturating_duration_since(Instant::now())
                            .as_millis()
                    ),
                    down.why.clone(),
                ));
            }
        }
        let mut client = match self.pool.get().await {
            Ok(c) => c,
            Err(e) => {
                let why = causes(&e);
                let mut down = self.lock_down();
                let pause = down
                    .as_ref()
                    .map_or(BACKOFF.0, |d| (d.pause * 2).min(BACKOFF.1));
                if down.is_none() {
                    tracing::error!(store = %self.place, "the database is unreachable: {why}");
                }
                *down = Some(Down {
                    until: Instant::now() + pause,
                    pause,
                    why: why.clone(),
                });
                let what = if untrusted_certificate(&e) {
                    "cannot reach the database: its TLS certificate is not trusted (name the \
                     authority that signed it in [store] tls_ca_file, or on a private network \
                     put sslmode=disable in the URL)"
                } else {
                    "cannot reach the database"
                };
                return Err(self.error(what, why));
            }
        };
        if self.lock_down().take().is_some() {
            tracing::info!(store = %self.place, "the database is reachable again");
        }
        if !self.migrated.initialized() {
            self.migrated
                .get_or_try_init(|| migrate(&mut client))
                .await
                .map_err(|e| self.error("cannot bring the schema up to date", e))?;
        }
        Ok(client)
    }

    fn lock_down(&self) -> std::sync::MutexGuard<'_, Option<Down>> {
        self.down.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Connects (bringing the schema up to date) and runs `SELECT 1`: whether the host can
    /// serve sessions now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .simple_query("SELECT 1")
            .await
            .map(drop)
            .map_err(|e| self.error("cannot query the database", e))
    }

    /// Every stored session, oldest first.
    pub fn sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        self.block(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT id, derived, conversation_key FROM sessions ORDER BY created_ms, id",
                    &[],
                )
                .await
                .map_err(|e| self.error("cannot list sessions", e))?;
            rows.iter()
                .map(|r| {
                    Ok(StoredSession {
                        id: r.try_get(0)?,
                        derived: r.try_get(1)?,
                        conversation_key: r.try_get(2)?,
                    })
                })
                .collect::<Result<_, tokio_postgres::Error>>()
                .map_err(|e| self.error("cannot list sessions", e))
        })?
    }

    /// Whether a session is stored.
    pub async fn exists(&self, id: &str) -> Result<bool, StoreError> {
        let client = self.client().await?;
        client
            .query_opt("SELECT 1 FROM sessions WHERE id = $1", &[&id])
            .await
            .map(|r| r.is_some())
            .map_err(|e| self.error(format!("cannot look up session `{id}`"), e))
    }

    /// Loads a session in one consistent snapshot, with the cursor its actor continues
    /// from; `None` if it is not stored.
    pub fn load(&self, id: &str) -> Result<Option<(Restored, Cursor)>, StoreError> {
        let loaded = self.block(async {
            let mut client = self.client().await?;
            let read = async {
                let tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let Some(head) = tx
                    .query_opt(
                        "SELECT checkpoint, compactions, version FROM sessions WHERE id = $1",
                        &[&id],
                    )
                    .await?
                else {
                    return Ok::<_, tokio_postgres::Error>(None);
                };
                let messages = tx
                    .query(
                        "SELECT pos, message FROM messages WHERE session = $1 ORDER BY pos",
                        &[&id],
                    )
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect::<Result<_, tokio_postgres::Error>>()?;
                let last_injection: i64 = tx
                    .query_one(
                        "SELECT COALESCE(MAX(id), 0)::BIGINT FROM injections WHERE session = $1",
                        &[&id],
                    )
                    .await?
                    .try_get(0)?;
                let queued = injection_rows(&tx, id, true).await?;
                tx.commit().await?;
                Ok(Some((
                    Loaded {
                        checkpoint: head.try_get(0)?,
                        compactions: head.try_get(1)?,
                        messages,
                        queued,
                        last_injection,
                    },
                    head.try_get::<_, i64>(2)?,
                )))
            };
            read.await
                .map_err(|e| self.error(format!("cannot load session `{id}`"), e))
        })??;
        let Some((loaded, version)) = loaded else {
            return Ok(None);
        };
        let (restored, mut cursor) = loaded.restore(&self.place, id)?;
        cursor.version = version;
        Ok(Some((restored, cursor)))
    }

    /// Writes a commit's delta in one transaction, if this host still holds the session's
    /// lease (a new session needs none). Returns the session's new version.
    pub(super) fn write(
        &self,
        id: &str,
        cursor: &Cursor,
        delta: &Delta<'_>,
    ) -> Result<i64, StoreError> {
        let writes: Vec<Write> = cursor.writes().collect();
        self.block(async {
            let mut client = self.client().await?;
            let write = async {
                let tx = client.transaction().await?;
                let now = now_ms();
                let json = serde_json::to_string(&delta.checkpoint)?;
                let version: i64 = if delta.create {
                    // A new session replaces anything left under its id, unless another
                    // host serves it.
                    tx.execute(
                        "DELETE FROM sessions WHERE id = $1
                         AND (lease_holder IS NULL OR lease_expires < now())",
                        &[&id],
                    )
                    .await?;
                    tx.execute("DELETE FROM analyzer_state WHERE session = $1", &[&id])
                        .await?;
                    tx.execute(
                        "INSERT INTO sessions (id, created_ms, updated_ms, checkpoint, compactions, version)
                         VALUES ($1, $2, $2, $3, $4, 1)",
                        &[&id, &now, &json, &delta.compactions],
                    )
                    .await?;
                    1
                } else {
                    let Some(epoch) = cursor.lease else {
                        return Err::<i64, BoxError>(
                            "this host holds no lease on the session".into(),
                        );
                    };
                    let row = tx
                        .query_opt(
                            "UPDATE sessions SET updated_ms = $2, checkpoint = $3, compactions = $4,
                                 version = version + 1,
                                 lease_expires = now() + make_interval(secs => $7)
                             WHERE id = $1 AND lease_holder = $5 AND lease_epoch = $6
                             RETURNING version",
                            &[
                                &id,
                                &now,
                                &json,
                                &delta.compactions,
                                &self.host,
                                &epoch,
                                &self.settings.lease_ttl.as_secs_f64(),
                            ],
                        )
                        .await?;
                    match row {
                        Some(r) => r.try_get(0)?,
                        None => {
                            return Err(format!(
                                "this host lost its lease on the session (epoch {epoch}) to another host"
                            )
                            .into())
                        }
                    }
                };
                if delta.rewrite {
                    tx.execute("DELETE FROM messages WHERE session = $1", &[&id])
                        .await?;
                }
                let insert = tx
                    .prepare(
                        "INSERT INTO messages (session, pos, role, origin, content, message)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .await?;
                for m in delta.messages() {
                    let (pos, role, origin, content, json) = m?;
                    tx.execute(&insert, &[&id, &pos, &role, &origin, &content, &json])
                        .await?;
                }
                for w in &writes {
                    record_injection(&tx, id, w).await?;
                }
                if !cursor.claimed.is_empty() {
                    tx.execute(
                        "DELETE FROM inbox WHERE session = $1 AND seq = ANY($2)",
                        &[&id, &cursor.claimed],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(version)
            };
            write
                .await
                .map_err(|e| self.error(format!("cannot store session `{id}`"), e))
        })?
    }

    /// Deletes a session with everything it owns.
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.block(async {
            let mut client = self.client().await?;
            let run = async {
                let tx = client.transaction().await?;
                tx.execute("DELETE FROM sessions WHERE id = $1", &[&id])
                    .await?;
                tx.execute("DELETE FROM analyzer_state WHERE session = $1", &[&id])
                    .await?;
                tx.commit().await
            };
            run.await
                .map_err(|e| self.error(format!("cannot delete session `{id}`"), e))
        })?
    }

    /// Marks a session as derived from a `/v1/chat/completions` conversation, with the
    /// fingerprint of the transcript its client now holds.
    pub fn set_conversation(&self, id: &str, key: Option<&[u8]>) -> Result<(), StoreError> {
        self.block(async {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE sessions SET derived = TRUE, conversation_key = $2 WHERE id = $1",
                    &[&id, &key],
                )
                .await
                .map(drop)
                .map_err(|e| self.error(format!("cannot store the conversation of `{id}`"), e))
        })?
    }

    /// Takes the derived session whose client holds the transcript `key`, on whichever host
    /// it was last served: the key is cleared, so a second request with the same history
    /// finds nothing and opens its own session (a branch).
    pub async fn claim_conversation(&self, key: &[u8]) -> Result<Option<String>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE sessions SET conversation_key = NULL
                 WHERE id = (SELECT id FROM sessions WHERE conversation_key = $1 LIMIT 1
                             FOR UPDATE SKIP LOCKED)
                 RETURNING id",
                &[&key],
            )
            .await
            .map_err(|e| self.error("cannot look up a conversation", e))?;
        row.map(|r| r.try_get(0))
            .transpose()
            .map_err(|e| self.error("cannot look up a conversation", e))
    }

    /// The session's injections, oldest first; with `queued`, only those still queued.
    pub(super) fn injections(
        &self,
        id: &str,
        queued: bool,
    ) -> Result<Vec<InjectionRow>, StoreError> {
        self.block(async {
            let client = self.client().await?;
            injection_rows(&client, id, queued)
                .await
                .map_err(|e| self.error(format!("cannot read the injections of `{id}`"), e))
        })?
    }

    /// An analyzer's state value for a session.
    pub fn state_get(
        &self,
        analyzer: &str,
        session: &str,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        self.block(async {
            let client = self.client().await?;
            let row = client
                .query_opt(
                    "SELECT value FROM analyzer_state WHERE session = $1 AND analyzer = $2 AND key = $3",
                    &[&session, &analyzer, &key],
                )
                .await
                .and_then(|r| r.map(|r| r.try_get(0)).transpose());
            row.map_err(|e| {
                self.error(format!("cannot read state `{key}` of analyzer `{analyzer}`"), e)
            })
        })?
    }

    /// Writes an analyzer's state value for a session, or removes it with `None`.
    pub fn state_put(
        &self,
        analyzer: &str,
        session: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<(), StoreError> {
        self.block(async {
            let client = self.client().await?;
            let done = match value {
                Some(v) => {
                    client
                        .execute(
                            "INSERT INTO analyzer_state (analyzer, session, key, value) VALUES ($1, $2, $3, $4)
                             ON CONFLICT (session, analyzer, key) DO UPDATE SET value = excluded.value",
                            &[&analyzer, &session, &key, &v],
                        )
                        .await
                }
                None => {
                    client
                        .execute(
                            "DELETE FROM analyzer_state WHERE session = $1 AND analyzer = $2 AND key = $3",
                            &[&session, &analyzer, &key],
                        )
                        .await
                }
            };
            done.map(drop).map_err(|e| {
                self.error(format!("cannot write state `{key}` of analyzer `{analyzer}`"), e)
            })
        })?
    }

    /// Acquires the lease on session `id` for this host, waiting up to `wait` while another
    /// host holds it (the actor waits `lease_wait`; a takeover does not wait).
    pub async fn acquire(&self, id: &str, wait: Duration) -> Result<Acquired, LeaseError> {
        let started = Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            let client = self.client().await?;
            let took = client
                .query_opt(
                    "WITH old AS (
                         SELECT id, lease_holder, lease_expires < now() AS expired
                         FROM sessions WHERE id = $1 FOR UPDATE
                     )
                     UPDATE sessions s SET lease_holder = $2, lease_epoch = s.lease_epoch + 1,
                         lease_expires = now() + make_interval(secs => $3)
                     FROM old
                     WHERE s.id = old.id
                       AND (old.lease_holder IS NULL OR old.expired OR old.lease_holder = $2)
                     RETURNING s.lease_epoch, s.version, old.lease_holder",
                    &[&id, &self.host, &self.settings.lease_ttl.as_secs_f64()],
                )
                .await
                .map_err(|e| self.error(format!("cannot lease session `{id}`"), e))?;
            if let Some(row) = took {
                let read = || -> Result<Acquired, tokio_postgres::Error> {
                    let previous: Option<String> = row.try_get(2)?;
                    Ok(Acquired {
                        epoch: row.try_get(0)?,
                        version: row.try_get(1)?,
                        took_over_from: previous.filter(|h| *h != self.host),
                    })
                };
                return read()
                    .map_err(|e| self.error(format!("cannot lease session `{id}`"), e).into());
            }
            let held = client
                .query_opt(
                    "SELECT lease_holder,
                            GREATEST(EXTRACT(EPOCH FROM lease_expires - now()), 0)::FLOAT8
                     FROM sessions WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(|e| self.error(format!("cannot lease session `{id}`"), e))?;
            drop(client);
            let Some(row) = held else {
                return Err(LeaseError::NoSession(id.to_string()));
            };
            let holder: Option<String> = row.try_get(0).unwrap_or_default();
            let left: Option<f64> = row.try_get(1).unwrap_or_default();
            let waited = started.elapsed();
            if waited >= wait {
                return Err(LeaseError::Busy {
                    session: id.to_string(),
                    holder: holder.unwrap_or_else(|| "?".into()),
                    waited,
                });
            }
            // Poll often at first (a turn that is ending), then less; never sleep past the
            // expiry or the end of the wait.
            let left = Duration::from_secs_f64(left.unwrap_or(0.0).max(0.0));
            let nap = pause
                .min(left + Duration::from_millis(5))
                .min(wait - waited);
            tokio::time::sleep(nap).await;
            pause = (pause * 3 / 2).min(Duration::from_millis(250));
        }
    }

    /// Sessions whose lease ran out while a host held it — the host died, or lost the
    /// database — oldest expiry first: some other host should take them over.
    pub async fn orphans(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id FROM sessions
                 WHERE lease_holder IS NOT NULL AND lease_expires < now()
                 ORDER BY lease_expires LIMIT 100",
                &[],
            )
            .await
            .map_err(|e| self.error("cannot look for expired leases", e))?;
        rows.iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(|e| self.error("cannot look for expired leases", e))
    }

    /// Extends the lease: `Ok(false)` if this host no longer holds it.
    pub fn renew(&self, id: &str, epoch: i64) -> Result<bool, StoreError> {
        self.block(async {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE sessions SET lease_expires = now() + make_interval(secs => $4)
                     WHERE id = $1 AND lease_holder = $2 AND lease_epoch = $3",
                    &[
                        &id,
                        &self.host,
                        &epoch,
                        &self.settings.lease_ttl.as_secs_f64(),
                    ],
                )
                .await
                .map(|n| n == 1)
                .map_err(|e| self.error(format!("cannot renew the lease on `{id}`"), e))
        })?
    }

    /// Gives the lease up, so the session's next turn may run on any host at once.
    pub fn release(&self, id: &str, epoch: i64) -> Result<(), StoreError> {
        self.block(async {
            let client = self.client().await?;
            client
                .execute(
                    "UPDATE sessions SET lease_holder = NULL, lease_expires = NULL
                     WHERE id = $1 AND lease_holder = $2 AND lease_epoch = $3",
                    &[&id, &self.host, &epoch],
                )
                .await
                .map(drop)
                .map_err(|e| self.error(format!("cannot release the lease on `{id}`"), e))
        })?
    }

    /// Leaves injections from an analyzer run for whichever host holds the session next.
    pub fn inbox_push(
        &self,
        id: &str,
        provenance: &Provenance,
        injections: &[Injection],
    ) -> Result<(), StoreError> {
        self.block(async {
            let mut client = self.client().await?;
            let push = async {
                let tx = client.transaction().await?;
                let insert = tx
                    .prepare(
                        "INSERT INTO inbox (session, analyzer, hook, about_turn, ttl_turns, role, key,
                             content, details, from_host, created_ms)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .await?;
                let about = super::int(provenance.about_turn);
                let ttl = provenance.ttl_turns.map(i64::from);
                for i in injections {
                    tx.execute(
                        &insert,
                        &[
                            &id,
                            &&*provenance.analyzer,
                            &text(&provenance.hook),
                            &about,
                            &ttl,
                            &text(&i.role),
                            &i.key,
                            &i.content,
                            &i.details.as_ref().map(|d| d.to_string()),
                            &self.host,
                            &now_ms(),
                        ],
                    )
                    .await?;
                }
                tx.commit().await
            };
            push.await.map_err(|e| {
                self.error(
                    format!(
                        "cannot leave {} injection(s) of `{}` for session `{id}`",
                        injections.len(),
                        provenance.analyzer
                    ),
                    e,
                )
            })
        })?
    }

    /// The injections other hosts left for session `id` that the cursor has not taken yet,
    /// in the order they were left.
    pub fn inbox(&self, id: &str, cursor: &Cursor) -> Result<Vec<InboxItem>, StoreError> {
        let after = cursor.claimed.iter().copied().max().unwrap_or(0);
        let rows = self.block(async {
            let client = self.client().await?;
            client
                .query(
                    "SELECT seq, analyzer, hook, about_turn, ttl_turns, role, key, content, details
                     FROM inbox WHERE session = $1 AND seq > $2 ORDER BY seq",
                    &[&id, &after],
                )
                .await
                .map_err(|e| self.error(format!("cannot read the inbox of `{id}`"), e))
        })??;
        rows.iter()
            .map(|r| inbox_item(r).map_err(|e| self.error(format!("the inbox of `{id}`"), e)))
            .collect()
    }
}

fn inbox_item(r: &Row) -> Result<InboxItem, BoxError> {
    let hook: String = r.try_get(2)?;
    let role: String = r.try_get(5)?;
    let details: Option<String> = r.try_get(8)?;
    Ok(InboxItem {
        seq: r.try_get(0)?,
        provenance: Provenance {
            analyzer: r.try_get::<_, String>(1)?.into(),
            hook: super::parse(&hook)?,
            about_turn: u64::try_from(r.try_get::<_, i64>(3)?).unwrap_or(0),
            ttl_turns: r
                .try_get::<_, Option<i64>>(4)?
                .and_then(|t| u32::try_from(t).ok()),
        },
        injection: Injection {
            role: super::parse(&role)?,
            content: r.try_get(7)?,
            key: r.try_get(6)?,
            details: details.as_deref().map(serde_json::from_str).transpose()?,
        },
    })
}

/// Brings the schema up to date under an advisory lock, so hosts starting together take
/// turns.
async fn migrate(client: &mut Object) -> Result<(), BoxError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner()
        .run_async(&mut ***client)
        .await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = report?;
    for m in report.applied_migrations() {
        tracing::info!("session store: applied migration {m}");
    }
    Ok(())
}

async fn injection_rows(
    client: &impl deadpool_postgres::GenericClient,
    id: &str,
    queued: bool,
) -> Result<Vec<InjectionRow>, tokio_postgres::Error> {
    let filter = if queued { " AND status = 'queued'" } else { "" };
    let rows = client
        .query(
            &format!(
                "SELECT {INJECTION_COLUMNS} FROM injections WHERE session = $1{filter} ORDER BY id"
            ),
            &[&id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(InjectionRow {
                id: r.try_get(0)?,
                analyzer: r.try_get(1)?,
                hook: r.try_get(2)?,
                lane: r.try_get(3)?,
                role: r.try_get(4)?,
                key: r.try_get(5)?,
                about_turn: r.try_get(6)?,
                ttl_turns: r.try_get(7)?,
                content: r.try_get(8)?,
                details: r.try_get(9)?,
                status: r.try_get(10)?,
                boundary: r.try_get(11)?,
                turn: r.try_get(12)?,
                step: r.try_get(13)?,
                superseded_by: r.try_get(14)?,
                stale_at_turn: r.try_get(15)?,
            })
        })
        .collect()
}

/// Writes one injection row, or a row's fate.
async fn record_injection(
    tx: &tokio_postgres::Transaction<'_>,
    session: &str,
    w: &Write,
) -> Result<(), tokio_postgres::Error> {
    match w {
        Write::Insert(r) => {
            tx.execute(
                "INSERT INTO injections
                 (session, id, analyzer, hook, lane, role, key, about_turn, ttl_turns, content, details, status)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'queued')
                 ON CONFLICT (session, id) DO UPDATE SET analyzer = excluded.analyzer,
                     hook = excluded.hook, lane = excluded.lane, role = excluded.role,
                     key = excluded.key, about_turn = excluded.about_turn,
                     ttl_turns = excluded.ttl_turns, content = excluded.content,
                     details = excluded.details, status = 'queued'",
                &[
                    &session,
                    &r.id,
                    &r.analyzer,
                    &r.hook,
                    &r.lane,
                    &r.role,
                    &r.key,
                    &r.about_turn,
                    &r.ttl_turns,
                    &r.content,
                    &r.details,
                ],
            )
            .await?;
        }
        Write::Fate(f) => {
            tx.execute(
                "UPDATE injections SET status = $3, delivered_boundary = $4, delivered_turn = $5,
                 delivered_step = $6, superseded_by = $7, stale_at_turn = $8
                 WHERE session = $1 AND id = $2",
                &[
                    &session,
                    &f.id,
                    &f.status,
                    &f.boundary,
                    &f.turn,
                    &f.step,
                    &f.superseded_by,
                    &f.stale_at_turn,
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// `user@host:port/database`, for messages.
/// The TLS side of connections. Whether TLS is used follows the URL's `sslmode` (`disable`,
/// `prefer`, the default, or `require`); when it is, the server's certificate and host name
/// are always verified, against `ca_file` if given, else against Mozilla's roots. (libpq's
/// `prefer` and `require` accept any certificate; Murmur does not.)
fn tls_connector(
    ca_file: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, (String, BoxError)> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let named = |what: &str| format!("{what} {} (store.tls_ca_file)", path.display());
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    (
                        named("cannot read the certificates of"),
                        Box::new(e) as BoxError,
                    )
                })?;
            if certs.is_empty() {
                return Err((
                    named("no PEM certificate (-----BEGIN CERTIFICATE-----) in"),
                    "the file holds no certificate".into(),
                ));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    (
                        named("a certificate is not usable in"),
                        Box::new(e) as BoxError,
                    )
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ("cannot set up TLS".to_string(), Box::new(e) as BoxError))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// An error and its causes in one line ("error performing TLS handshake: server does not
/// support TLS"), each cause once.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

/// Whether a connection failed because the server's certificate was not trusted.
fn untrusted_certificate(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(rustls::Error::InvalidCertificate(_)) = c.downcast_ref::<rustls::Error>() {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)))
            {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{} ",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}
