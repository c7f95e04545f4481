//! `murmur serve`: the HTTP interface (axum). Many sessions at once over one runtime:
//!
//! - `POST /v1/sessions` → `{"id": "..."}`
//! - `POST /v1/sessions/{id}/messages` with `{"content": "..."}` → a server-sent-event
//!   stream of the turn: `token`, `tool_call`, `tool_result`, `injection`, `analyzer`,
//!   `error`, and last `turn_complete`
//! - `GET /v1/sessions/{id}/events` → a server-sent-event stream of everything the session
//!   does from now on, until it is deleted (a live feed: every turn, run and injection)
//! - `GET /v1/sessions/{id}[?include=injections]` → the visible transcript, and with
//!   `include=injections` every injection with its provenance
//! - `POST /v1/sessions/{id}/stop`, `DELETE /v1/sessions/{id}`
//! - `POST /v1/chat/completions`: the OpenAI chat-completions API, each conversation a
//!   session ([`completions`])
//! - `GET /healthz`, `GET /metrics` (Prometheus text format)
//! - `GET /`: a web page to chat and watch the analyzers' injections arrive (`web/`)
//!
//! Every error is a JSON body `{"error": {"type": ..., "message": ...}}` with a 4xx or 5xx
//! status. With `[server] auth_token_env`, every endpoint but `/healthz` needs
//! `Authorization: Bearer <token>`; the web page itself holds no data and asks for the
//! token when the API wants one.

pub mod completions;
pub mod hub;
pub mod metrics;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use crate::config::ServerSettings;
use crate::events::EventKind;
use crate::session::driver::{NotTaken, Seed};
use crate::session::Session;
use crate::Runtime;
use completions::Conversations;
use hub::{EventHub, Streamed};
use metrics::Metrics;
use murmur_plugin_api::Origin;

/// How many idle sessions [`App::make_room`] tries to unload before it gives up.
const UNLOAD_TRIES: usize = 8;

/// With a shared store: when each session in memory was last used, and which are being
/// unloaded (a request for one of those waits for the outcome).
#[derive(Debug, Default)]
struct Residency {
    last_used: HashMap<String, std::time::Instant>,
    unloading: std::collections::HashSet<String>,
}

/// The state every handler shares.
pub struct App {
    runtime: Runtime,
    sessions: Mutex<HashMap<String, Session>>,
    residency: Mutex<Residency>,
    unloaded: tokio::sync::Notify,
    conversations: Mutex<Conversations>,
    hub: Arc<EventHub>,
    metrics: Arc<Metrics>,
    settings: ServerSettings,
    token: Option<String>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl App {
    /// An app over `runtime`, which must have `hub` and `metrics` among its observers.
    /// `token`: the bearer token every request but `/healthz` must carry, if any.
    pub fn new(
        runtime: Runtime,
        hub: Arc<EventHub>,
        metrics: Arc<Metrics>,
        settings: ServerSettings,
        token: Option<String>,
    ) -> Arc<App> {
        Arc::new(App {
            runtime,
            sessions: Mutex::new(HashMap::new()),
            residency: Mutex::new(Residency::default()),
            unloaded: tokio::sync::Notify::new(),
            conversations: Mutex::new(Conversations::default()),
            hub,
            metrics,
            settings,
            token,
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn conversations(&self) -> std::sync::MutexGuard<'_, Conversations> {
        self.conversations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn residency(&self) -> std::sync::MutexGuard<'_, Residency> {
        self.residency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether sessions live in a database that several hosts share.
    fn shared(&self) -> bool {
        self.runtime.store().is_some_and(|s| s.shared().is_some())
    }

    /// Session `id` was used now.
    fn touch(&self, id: &str) {
        if self.shared() {
            self.residency()
                .last_used
                .insert(id.to_string(), std::time::Instant::now());
        }
    }

    /// The session `id`: open on this host, or — with a shared store — stored by another
    /// host (or unloaded from this one), then served here from now on.
    async fn session(&self, id: &str) -> Result<Session, ApiError> {
        loop {
            let notified = self.unloaded.notified();
            tokio::pin!(notified);
            // Registered before the check, so an unload that ends in between still wakes it.
            notified.as_mut().enable();
            {
                // Checked and cloned under both locks, in make_room's order: a session is
                // either being unloaded (wait for the outcome) or has a second handle from
                // here on (so make_room leaves it).
                let sessions = self.sessions();
                let mut residency = self.residency();
                if !residency.unloading.contains(id) {
                    let Some(s) = sessions.get(id).cloned() else {
                        break;
                    };
                    if self.shared() {
                        residency
                            .last_used
                            .insert(id.to_string(), std::time::Instant::now());
                    }
                    return Ok(s);
                }
            }
            notified.await;
        }
        let Some(pg) = self.runtime.store().and_then(|s| s.shared()) else {
            return Err(no_session(id));
        };
        if !pg.exists(id).await.map_err(unavailable)? {
            return Err(no_session(id));
        }
        self.make_room().await?;
        let mut sessions = self.sessions();
        let session = sessions
            .entry(id.to_string())
            .or_insert_with(|| {
                self.hub.track(id);
                self.runtime.attach_session(id)
            })
            .clone();
        self.touch(id);
        self.metrics.set_sessions(sessions.len());
        Ok(session)
    }

    /// With a shared store: while `max_sessions` sessions are in memory, unloads the least
    /// recently used ones that are idle — no request holds them, no turn, no analyzer run —
    /// until one more fits. The database keeps them; any host loads one again for its next
    /// message. Without a shared store, or when every session is busy, nothing changes and
    /// the answer is 429.
    async fn make_room(&self) -> Result<(), ApiError> {
        let mut refused = std::collections::HashSet::new();
        for _ in 0..UNLOAD_TRIES {
            let (id, session) = {
                let sessions = self.sessions();
                if sessions.len() < self.settings.max_sessions {
                    return Ok(());
                }
                if !self.shared() {
                    break;
                }
                let mut residency = self.residency();
                let conversations = self.conversations();
                let candidate = sessions
                    .iter()
                    .filter(|(id, s)| {
                        // One handle: the map's own, so no request is using it.
                        s.handles() == 1
                            && !refused.contains(*id)
                            && !residency.unloading.contains(*id)
                            && !conversations.is_busy(id)
                    })
                    .min_by_key(|(id, _)| (residency.last_used.get(*id).copied(), (*id).clone()));
                let Some((id, session)) = candidate else {
                    break;
                };
                residency.unloading.insert(id.clone());
                (id.clone(), session.clone())
            };
            let unloaded = session.unload().await;
            drop(session);
            {
                let mut sessions = self.sessions();
                let mut residency = self.residency();
                residency.unloading.remove(&id);
                if unloaded {
                    sessions.remove(&id);
                    residency.last_used.remove(&id);
                    self.conversations().forget(&id);
                    self.hub.remove(&id);
                    self.metrics.set_sessions(sessions.len());
                } else {
                    refused.insert(id.clone());
                }
            }
            self.unloaded.notify_waiters();
            if unloaded {
                tracing::debug!(session = %id, "unloaded (idle; the database keeps it)");
            }
        }
        Err(self.too_many(self.sessions().len()))
    }

    fn too_many(&self, open: usize) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sessions",
            format!(
                "{open} sessions are open, the most this host allows (server.max_sessions); delete one first"
            ),
        )
    }

    /// Opens a session. `derived`: opened for a `/v1/chat/completions` conversation, whose
    /// stateless client never deletes it. When `max_sessions` are open, room is made: with
    /// a shared store by unloading idle sessions ([`App::make_room`]), otherwise by closing
    /// the least recently used idle derived session; without one, the answer is 429.
    async fn open(&self, id: &str, seed: Seed, derived: bool) -> Result<Session, ApiError> {
        if self.shared() {
            self.make_room().await?;
        }
        let mut sessions = self.sessions();
        if sessions.len() >= self.settings.max_sessions {
            let evicted = (!self.shared())
                .then(|| self.conversations().evictable())
                .flatten()
                .and_then(|old| sessions.remove(&old).map(|s| (old, s)));
            let Some((old, session)) = evicted else {
                return Err(self.too_many(sessions.len()));
            };
            self.conversations().forget(&old);
            let hub = self.hub.clone();
            tokio::spawn(async move {
                session.close().await;
                hub.remove(&old);
            });
        }
        self.hub.track(id);
        let session = self.runtime.open_session_with(id, seed);
        sessions.insert(id.to_string(), session.clone());
        self.touch(id);
        if derived {
            self.conversations().adopt(id);
            if let Some(store) = self.runtime.store() {
                if let Err(e) = store.set_conversation(id, None) {
                    tracing::error!(session = id, "{e}");
                }
            }
        }
        self.metrics.set_sessions(sessions.len());
        Ok(session)
    }

    /// Refuses a message over `max_message_chars`.
    fn check_length(&self, text: &str) -> Result<(), ApiError> {
        let chars = text.chars().count();
        if chars > self.settings.max_message_chars {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "message_too_long",
                format!(
                    "the message is {chars} characters; the limit is {} (server.max_message_chars)",
                    self.settings.max_message_chars
                ),
            ));
        }
        Ok(())
    }

    /// The store sessions are kept in, if any.
    pub fn store(&self) -> Option<&Arc<crate::store::Store>> {
        self.runtime.store()
    }

    /// Resumes every session in the store (S37), with its injections' provenance and, for
    /// a derived session, the conversation it continues. Returns how many. A shared store's
    /// sessions are not resumed here: each is loaded by the host that serves its next turn.
    pub fn resume(&self) -> Result<usize, crate::store::StoreError> {
        let Some(store) = self.runtime.store().cloned() else {
            return Ok(0);
        };
        if store.shared().is_some() {
            return Ok(0);
        }
        let stored = self.runtime.stored_sessions()?;
        let mut sessions = self.sessions();
        for s in &stored {
            self.hub.track(&s.id);
            self.hub.replay(&s.id, store.injection_events(&s.id)?);
            if let Some(session) = self.runtime.resume_session(&s.id)? {
                sessions.insert(s.id.clone(), session);
            }
            if s.derived {
                let key = s
                    .conversation_key
                    .as_deref()
                    .and_then(|k| <[u8; 32]>::try_from(k).ok());
                self.conversations().restore(&s.id, key);
            }
        }
        self.metrics.set_sessions(sessions.len());
        Ok(stored.len())
    }

    /// With a shared store: every half `lease_ttl`, takes over the sessions whose host died
    /// holding their lease (it expired), so that their interrupted turns end and the messages
    /// that were waiting get their turns without waiting for the next request. Hosts race for
    /// each such session; one wins, the others leave it. Abort the task before
    /// [`App::shutdown`].
    pub fn watch_leases(app: &Arc<App>) -> Option<tokio::task::JoinHandle<()>> {
        let ttl = app.runtime.store()?.shared()?.settings().lease_ttl;
        let app = app.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(ttl / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(pg) = app.runtime.store().and_then(|s| s.shared()) else {
                    return;
                };
                // An unreachable database is reported by the requests and /healthz.
                let Ok(orphans) = pg.orphans().await else {
                    continue;
                };
                for id in orphans {
                    if let Ok(session) = app.session(&id).await {
                        session.take_over();
                    }
                }
            }
        }))
    }

    /// Stops the host. With a store, sessions are suspended: running turns stop and are
    /// stored, and every session resumes at the next start. Without one, sessions close
    /// (`turn_complete` and `chat_end` work finishes). Then the runtime shuts down.
    pub async fn shutdown(&self, grace: std::time::Duration) {
        let all: Vec<Session> = self.sessions().drain().map(|(_, s)| s).collect();
        let keep = self.runtime.store().is_some();
        for s in all {
            if keep {
                s.suspend().await;
            } else {
                s.close().await;
            }
        }
        self.runtime.shutdown(grace).await;
    }

    /// A derived session's client now holds the transcript `key`: remembered in memory and,
    /// with a store, across restarts.
    fn remember_conversation(&self, id: &str, key: Option<[u8; 32]>) {
        self.conversations().release(id, key);
        if let Some(store) = self.runtime.store() {
            if let Err(e) = store.set_conversation(id, key.as_ref().map(|k| &k[..])) {
                tracing::error!(session = id, "{e}");
            }
        }
    }
}

/// The router with every endpoint, the auth check and the body limit.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/v1/sessions", post(create_session))
        .route("/v1/sessions/{id}", get(transcript).delete(delete_session))
        .route("/v1/sessions/{id}/messages", post(post_message))
        .route("/v1/sessions/{id}/events", get(session_events))
        .route("/v1/sessions/{id}/stop", post(stop))
        .route("/v1/chat/completions", post(completions::chat_completions))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .layer(DefaultBodyLimit::max(app.settings.max_body_bytes))
        .with_state(app)
}

/// The shared store cannot serve now: 503 with the reason.
fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "session_unavailable",
        e.to_string(),
    )
}

fn no_session(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no session `{id}`; create one with POST /v1/sessions"),
    )
}

/// An error answered as JSON.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    fn json(rejection: JsonRejection, limit: usize) -> Self {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(
                status,
                "request_too_large",
                format!("the request body is over {limit} bytes (server.max_body_bytes)"),
            );
        }
        ApiError::new(status, "invalid_request", rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"type": self.kind, "message": self.message}})),
        )
            .into_response()
    }
}

/// Checks the bearer token (not for `/healthz`) and counts every answer by status.
async fn guard(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let open = matches!(req.uri().path(), "/healthz" | "/");
    let response = match (&app.token, open) {
        (Some(token), false) if !authorized(&headers, token) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token: send `Authorization: Bearer <token>`",
        )
        .into_response(),
        _ => next.run(req).await,
    };
    app.metrics.http_request(response.status().as_u16());
    response
}

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| given.trim() == token)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The web page: chat on the left, the session's analyzer runs and injections on the right.
async fn page() -> axum::response::Html<&'static str> {
    axum::response::Html(include_str!("web/index.html"))
}

/// `ok`, or with a shared store that cannot be reached, 503 and the reason (so a load
/// balancer sends requests to another host).
async fn healthz(State(app): State<Arc<App>>) -> Response {
    if let Some(pg) = app.runtime.store().and_then(|s| s.shared()) {
        if let Err(e) = pg.ping().await {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "reason": e.to_string()})),
            )
                .into_response();
        }
    }
    Json(json!({"status": "ok"})).into_response()
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    app.metrics.set_sessions(app.sessions().len());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

async fn create_session(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    if let Some(pg) = app.runtime.store().and_then(|s| s.shared()) {
        pg.ping().await.map_err(unavailable)?;
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    app.open(&id, Seed::default(), false).await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

#[derive(Debug, Deserialize)]
struct MessageBody {
    content: String,
}

async fn post_message(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    body: Result<Json<MessageBody>, JsonRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Json(body) = body.map_err(|r| ApiError::json(r, app.settings.max_body_bytes))?;
    if body.content.trim().is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "`content` is empty",
        ));
    }
    app.check_length(&body.content)?;
    let session = app.session(&id).await?;
    // Subscribe before sending, so no event of the turn is missed.
    let mut events = app.hub.subscribe(&id);
    let mut answer = session.send(body.content);
    // The stream starts once the session has taken (and stored) the message.
    answer.accepted().await.map_err(|e| match e {
        NotTaken::Closed(e) => ApiError::new(StatusCode::GONE, "session_closed", e.to_string()),
        NotTaken::Unavailable(why) => unavailable(why),
    })?;
    let (tx, rx) = mpsc::channel::<SseEvent>(256);
    tokio::spawn(async move {
        let answer = answer.wait();
        tokio::pin!(answer);
        let mut watching = true;
        loop {
            tokio::select! {
                biased;
                item = events.recv(), if watching => match item {
                    Ok(item) => {
                        if let Some(e) = sse(&item, false) {
                            if tx.send(e).await.is_err() {
                                return; // the client went away; the turn goes on
                            }
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        let e = SseEvent::default()
                            .event("error")
                            .data(json!({"message": format!("{n} events were dropped: the client reads too slowly")}).to_string());
                        if tx.send(e).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Closed) => watching = false,
                },
                end = &mut answer => {
                    while let Ok(item) = events.try_recv() {
                        if let Some(e) = sse(&item, false) {
                            if tx.send(e).await.is_err() {
                                return;
                            }
                        }
                    }
                    let last = match end {
                        Ok(end) => SseEvent::default().event("turn_complete").data(
                            json!({
                                "turn": end.turn,
                                "outcome": end.outcome,
                                "steps": end.steps,
                                "reply": end.reply,
                                "error": end.error,
                            })
                            .to_string(),
                        ),
                        Err(closed) => SseEvent::default()
                            .event("error")
                            .data(json!({"message": closed.to_string()}).to_string()),
                    };
                    let _ = tx.send(last).await;
                    return;
                }
            }
        }
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Every event of a session from now on, until the session is deleted.
async fn session_events(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    app.session(&id).await?;
    let events = app.hub.subscribe(&id);
    let stream = futures_util::stream::unfold(events, |mut events| async move {
        loop {
            match events.recv().await {
                Ok(item) => {
                    if let Some(e) = sse(&item, true) {
                        return Some((Ok(e), events));
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    let e = SseEvent::default().event("error").data(
                        json!({"message": format!("{n} events were dropped: the client reads too slowly")})
                            .to_string(),
                    );
                    return Some((Ok(e), events));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The server-sent event for one item of a session: the events a message's stream carries,
/// and with `all` every other event too, named by its type (`turn_started`, `turn_ended`,
/// `hook_fired`, ...).
fn sse(item: &Streamed, all: bool) -> Option<SseEvent> {
    let (name, data) = match item {
        Streamed::Token { turn, text } => ("token", json!({"turn": turn, "text": text})),
        Streamed::Event(e) => {
            let name = match &e.kind {
                EventKind::ToolCalled { .. } => "tool_call",
                EventKind::ToolResult { .. } => "tool_result",
                EventKind::InjectionEnqueued { .. }
                | EventKind::InjectionDelivered { .. }
                | EventKind::InjectionSuperseded { .. }
                | EventKind::InjectionStale { .. }
                | EventKind::InjectionRejected { .. }
                | EventKind::InjectionUndelivered { .. } => "injection",
                EventKind::AnalyzerRun { .. } => "analyzer",
                EventKind::Error { .. } => "error",
                _ if all => "",
                _ => return None,
            };
            let data = serde_json::to_value(e).ok()?;
            if name.is_empty() {
                let name = data["type"].as_str().unwrap_or("event").to_string();
                return Some(SseEvent::default().event(name).data(data.to_string()));
            }
            (name, data)
        }
    };
    Some(SseEvent::default().event(name).data(data.to_string()))
}

#[derive(Debug, Deserialize)]
struct TranscriptQuery {
    include: Option<String>,
}

async fn transcript(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Query(q): Query<TranscriptQuery>,
) -> Result<Json<Value>, ApiError> {
    let with_injections = match q.include.as_deref() {
        None | Some("") => false,
        Some("injections") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("`include={other}` is not known; the only value is `injections`"),
            ))
        }
    };
    // With a shared store, the stored session is the truth: its last turn may have run on
    // another host. Reading it needs no room in this host's memory.
    let history = match app.runtime.store().filter(|s| s.shared().is_some()) {
        Some(store) => {
            store
                .load(&id)
                .map_err(unavailable)?
                .ok_or_else(|| no_session(&id))?
                .0
                .history
        }
        None => app
            .session(&id)
            .await?
            .history()
            .await
            .map_err(|e| ApiError::new(StatusCode::GONE, "session_closed", e.to_string()))?,
    };
    let messages: Vec<Value> = history
        .iter()
        .filter(|m| matches!(m.origin, Origin::User | Origin::Assistant) && !m.content.is_empty())
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut out = json!({"id": id, "messages": messages});
    if with_injections {
        let injections = match app.runtime.store().filter(|s| s.shared().is_some()) {
            Some(store) => {
                let hub = EventHub::default();
                hub.track(&id);
                hub.replay(&id, store.injection_events(&id).map_err(unavailable)?);
                hub.injections(&id)
            }
            None => app.hub.injections(&id),
        };
        out["injections"] = Value::Array(injections);
    }
    Ok(Json(out))
}

async fn stop(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.session(&id).await?.stop();
    Ok(Json(json!({"id": id, "stopping": true})))
}

async fn delete_session(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    app.session(&id).await?;
    let session = app.sessions().remove(&id);
    let Some(session) = session else {
        return Err(no_session(&id));
    };
    app.conversations().forget(&id);
    app.residency().last_used.remove(&id);
    session.close().await;
    app.hub.remove(&id);
    app.metrics.set_sessions(app.sessions().len());
    Ok(Json(json!({"id": id, "deleted": true})))
}
