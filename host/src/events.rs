//! What happens in a session, as events: the event log (`--events`), the model-input record
//! (`--record-model-input`, SPEC S40), streamed text, and the counters of SPEC S41 all read
//! the same stream through [`Observer`]s.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use murmur_plugin_api::{Hook, Role};
use serde::Serialize;

use crate::model::{ModelInput, ToolCall, Usage};
use crate::session::compaction::Compaction;
use crate::session::queue::Lane;

/// One event of one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Session id.
    pub session: Arc<str>,
    /// Milliseconds since the host started (tokio clock, so paused-time tests are exact).
    pub at_ms: u64,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnOutcome {
    /// The model gave its final reply.
    Completed,
    /// A stop request ended it (S36).
    Stopped,
    /// The model or a tool failed (S35).
    Error,
    /// The model still called tools after `max_steps` steps.
    MaxSteps,
    /// The model called tools that the client runs (an HTTP client's own tools); the
    /// client's results resume the conversation in a new turn (S11).
    ToolCalls,
}

/// How an analyzer run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// It returned injections (possibly none).
    Ok,
    /// It returned an error.
    Failed,
    /// It panicked (caught inside the plugin).
    Panicked,
    /// It passed its hard timeout; its result is discarded (S23).
    TimedOut,
    /// It stopped after the host cancelled it.
    Cancelled,
    /// Its process (`isolation = "process"`) died during the run.
    Crashed,
}

/// Which kind of boundary delivered an injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Boundary {
    /// Start of a turn, before its first model call.
    Turn,
    /// Between two steps of a turn.
    Step,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A turn started with this user message.
    TurnStarted { turn: u64, user: String },
    /// A model call starts.
    ModelCalled {
        turn: u64,
        step: u32,
        messages: usize,
    },
    /// The model answered a step; `usage` counts its tokens (`prompt_evaluated` < `prompt_tokens`
    /// when the KV cache held the rest).
    ModelReplied {
        turn: u64,
        step: u32,
        usage: Usage,
        tool_calls: usize,
    },
    /// The input of a step did not fit the model's context window: the oldest turns were
    /// summarised or dropped (the details say which, and whose injections went with them).
    ContextCompacted {
        turn: u64,
        step: u32,
        #[serde(flatten)]
        details: Compaction,
    },
    /// The model called a tool.
    ToolCalled {
        turn: u64,
        step: u32,
        call: ToolCall,
    },
    /// A tool returned.
    ToolResult {
        turn: u64,
        step: u32,
        id: String,
        name: String,
        output: String,
    },
    /// A turn ended.
    TurnEnded {
        turn: u64,
        outcome: TurnOutcome,
        steps: u32,
        reply: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A user message arrived while a turn was running (S30).
    UserMessagePending { text: String, steer: bool },
    /// A pending user message joined the running turn at a step boundary (S30).
    UserMessageSteered { turn: u64, step: u32, text: String },
    /// A hook fired for these analyzers.
    HookFired {
        hook: Hook,
        turn: u64,
        step: u32,
        analyzers: Vec<String>,
    },
    /// A hook found the analyzer's previous run still in flight; it will run once more
    /// afterwards with the newest input (S26).
    RunCoalesced {
        analyzer: String,
        hook: Hook,
        turn: u64,
    },
    /// An analyzer run ended.
    AnalyzerRun {
        analyzer: String,
        hook: Hook,
        turn: u64,
        run: u64,
        outcome: RunOutcome,
        duration_ms: u64,
        injections: usize,
        /// Model tokens used through host services.
        tokens: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// An injection entered the queue.
    InjectionEnqueued {
        id: u64,
        analyzer: String,
        /// The hook whose run made it.
        hook: Hook,
        lane: Lane,
        role: Role,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        about_turn: u64,
        /// The analyzer's `ttl_turns` (S16).
        #[serde(skip_serializing_if = "Option::is_none")]
        ttl_turns: Option<u32>,
        content: String,
        /// What the analyzer attached for the log (findings, sources, labels).
        #[serde(skip_serializing_if = "Option::is_none")]
        details: Option<serde_json::Value>,
    },
    /// An injection reached the model input.
    InjectionDelivered {
        id: u64,
        analyzer: String,
        lane: Lane,
        boundary: Boundary,
        turn: u64,
        step: u32,
    },
    /// A newer injection with the same key replaced a queued one (S15).
    InjectionSuperseded {
        id: u64,
        by: u64,
        analyzer: String,
        key: String,
    },
    /// An injection outlived its analyzer's `ttl_turns` (S16).
    InjectionStale {
        id: u64,
        analyzer: String,
        about_turn: u64,
        turn: u64,
    },
    /// An injection was refused (S5).
    InjectionRejected {
        analyzer: String,
        role: Role,
        reason: String,
    },
    /// The session closed with these injections never delivered.
    InjectionUndelivered { id: u64, analyzer: String },
    /// Something went wrong outside a turn's own outcome.
    Error { message: String },
    /// An analyzer crashed or timed out `failures` times in a row and runs no more, in any
    /// session, until the host restarts.
    AnalyzerQuarantined {
        analyzer: String,
        failures: u32,
        /// The last failure.
        error: String,
    },
    /// The session was restored from the store after a host restart (S37). A turn that was
    /// running when the host stopped ends as stopped (`interrupted` names it); queued
    /// injections wait for the next boundary.
    SessionResumed {
        /// Turns so far.
        turns: u64,
        /// Messages in the model context.
        messages: usize,
        /// Injections still queued.
        queued: usize,
        /// The turn the restart interrupted, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        interrupted: Option<u64>,
    },
    /// The session closed.
    SessionClosed { turns: u64 },
    /// This host took the session over from a host whose lease expired (a failover; with a
    /// shared PostgreSQL store).
    SessionTakenOver {
        /// The host that held it.
        from_host: String,
        /// The new lease's epoch.
        epoch: i64,
    },
}

/// Receives what sessions do. Implementations must be quick: they run on the session's task.
pub trait Observer: Send + Sync {
    /// Every event.
    fn event(&self, _event: &Event) {}
    /// Every model input, before the call (S40).
    fn model_input(&self, _input: &ModelInput) {}
    /// Streamed reply text.
    fn chunk(&self, _session: &str, _turn: u64, _text: &str) {}
    /// Writes buffered output.
    fn flush(&self) {}
}

/// Writes one JSON object per line to a file.
#[derive(Debug)]
pub struct JsonlWriter {
    out: Mutex<BufWriter<File>>,
    what: JsonlContent,
}

/// What a [`JsonlWriter`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonlContent {
    /// Events (`--events`).
    Events,
    /// Model inputs (`--record-model-input`).
    ModelInputs,
}

impl JsonlWriter {
    /// Creates (truncates) the file.
    pub fn create(path: &Path, what: JsonlContent) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        Ok(JsonlWriter {
            out: Mutex::new(BufWriter::new(File::create(path)?)),
            what,
        })
    }

    fn write(&self, value: &impl Serialize) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let result = serde_json::to_writer(&mut *out, value)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            // Whole lines reach the file as they are made: a reader following a running
            // server's record never sees half a line, and a killed process loses nothing.
            .and_then(|()| out.flush());
        if let Err(e) = result {
            tracing::error!("cannot write {:?} log: {e}", self.what);
        }
    }
}

impl Observer for JsonlWriter {
    fn event(&self, event: &Event) {
        if self.what == JsonlContent::Events {
            self.write(event);
        }
    }

    fn model_input(&self, input: &ModelInput) {
        if self.what == JsonlContent::ModelInputs {
            self.write(input);
        }
    }

    fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = out.flush() {
            tracing::error!("cannot flush {:?} log: {e}", self.what);
        }
    }
}

/// Logs events through `tracing` (SPEC S4: every injection is visible in the log).
#[derive(Debug, Default)]
pub struct TracingLog;

impl Observer for TracingLog {
    fn event(&self, e: &Event) {
        let s = &*e.session;
        match &e.kind {
            EventKind::AnalyzerRun {
                analyzer,
                hook,
                turn,
                outcome,
                duration_ms,
                injections,
                error,
                ..
            } => match outcome {
                RunOutcome::Ok => tracing::debug!(
                    session = s, analyzer, %hook, turn, duration_ms, injections, "analyzer run ok"
                ),
                _ => tracing::warn!(
                    session = s, analyzer, %hook, turn, duration_ms, ?outcome,
                    error = error.as_deref().unwrap_or(""), "analyzer run did not succeed"
                ),
            },
            EventKind::InjectionEnqueued {
                id,
                analyzer,
                lane,
                about_turn,
                ..
            } => {
                tracing::info!(
                    session = s,
                    id,
                    analyzer,
                    ?lane,
                    about_turn,
                    "injection enqueued"
                )
            }
            EventKind::InjectionDelivered {
                id,
                analyzer,
                boundary,
                turn,
                step,
                ..
            } => {
                tracing::info!(
                    session = s,
                    id,
                    analyzer,
                    ?boundary,
                    turn,
                    step,
                    "injection delivered"
                )
            }
            EventKind::InjectionStale {
                id,
                analyzer,
                about_turn,
                turn,
            } => {
                tracing::info!(
                    session = s,
                    id,
                    analyzer,
                    about_turn,
                    turn,
                    "stale injection dropped"
                )
            }
            EventKind::InjectionRejected {
                analyzer, reason, ..
            } => {
                tracing::error!(session = s, analyzer, "injection rejected: {reason}")
            }
            EventKind::TurnEnded {
                turn,
                outcome,
                error: Some(error),
                ..
            } => {
                tracing::error!(session = s, turn, ?outcome, "turn failed: {error}")
            }
            EventKind::ContextCompacted {
                turn,
                step,
                details,
            } => tracing::info!(
                session = s,
                turn,
                step,
                strategy = details.strategy.as_str(),
                turns = details.turns,
                tokens_before = details.tokens_before,
                tokens_after = details.tokens_after,
                fallback = details.fallback.as_deref().unwrap_or(""),
                "context compacted"
            ),
            EventKind::Error { message } => tracing::error!(session = s, "{message}"),
            EventKind::AnalyzerQuarantined {
                analyzer,
                failures,
                error,
            } => tracing::error!(
                analyzer,
                failures,
                "analyzer `{analyzer}` quarantined after {failures} crashes or timeouts in a row; it runs no more until the host restarts (last: {error})"
            ),
            EventKind::SessionResumed {
                turns,
                messages,
                queued,
                interrupted,
            } => tracing::info!(
                session = s,
                turns,
                messages,
                queued,
                interrupted,
                "session resumed"
            ),
            EventKind::SessionTakenOver { from_host, epoch } => tracing::warn!(
                session = s,
                from_host,
                epoch,
                "session taken over from a host whose lease expired"
            ),
            _ => tracing::trace!(session = s, event = ?e.kind),
        }
    }
}

/// The counters of SPEC S41.
#[derive(Debug, Default)]
pub struct Stats {
    /// Turns ended.
    pub turns: AtomicU64,
    /// Analyzer runs ended, any outcome.
    pub runs: AtomicU64,
    /// Runs that failed or panicked.
    pub failed: AtomicU64,
    /// Runs past their hard timeout.
    pub timed_out: AtomicU64,
    /// Runs whose process died (`isolation = "process"`).
    pub crashed: AtomicU64,
    /// Analyzers put in quarantine.
    pub quarantined: AtomicU64,
    /// Hooks folded into a follow-up run.
    pub coalesced: AtomicU64,
    /// Injections enqueued.
    pub enqueued: AtomicU64,
    /// Injections delivered.
    pub delivered: AtomicU64,
    /// Injections replaced by a newer one with the same key.
    pub superseded: AtomicU64,
    /// Injections dropped by `ttl_turns`.
    pub stale: AtomicU64,
    /// Injections refused.
    pub rejected: AtomicU64,
    /// Context compactions.
    pub compactions: AtomicU64,
    /// Prompt tokens of all chat model calls.
    pub prompt_tokens: AtomicU64,
    /// Of those, tokens the model evaluated (the rest came from its cache).
    pub prompt_evaluated: AtomicU64,
    /// Tokens the chat model generated.
    pub completion_tokens: AtomicU64,
}

impl Stats {
    /// A snapshot as name/value pairs, in a stable order.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("turns", get(&self.turns)),
            ("analyzer_runs", get(&self.runs)),
            ("failed", get(&self.failed)),
            ("timed_out", get(&self.timed_out)),
            ("crashed", get(&self.crashed)),
            ("quarantined", get(&self.quarantined)),
            ("coalesced", get(&self.coalesced)),
            ("enqueued", get(&self.enqueued)),
            ("delivered", get(&self.delivered)),
            ("superseded", get(&self.superseded)),
            ("stale", get(&self.stale)),
            ("rejected", get(&self.rejected)),
            ("compactions", get(&self.compactions)),
            ("prompt_tokens", get(&self.prompt_tokens)),
            ("prompt_evaluated", get(&self.prompt_evaluated)),
            ("completion_tokens", get(&self.completion_tokens)),
        ]
    }
}

impl Observer for Stats {
    fn event(&self, e: &Event) {
        let bump = |c: &AtomicU64| {
            c.fetch_add(1, Ordering::Relaxed);
        };
        match &e.kind {
            EventKind::TurnEnded { .. } => bump(&self.turns),
            EventKind::AnalyzerRun { outcome, .. } => {
                bump(&self.runs);
                match outcome {
                    RunOutcome::Failed | RunOutcome::Panicked => bump(&self.failed),
                    RunOutcome::TimedOut => bump(&self.timed_out),
                    RunOutcome::Crashed => bump(&self.crashed),
                    RunOutcome::Ok | RunOutcome::Cancelled => {}
                }
            }
            EventKind::AnalyzerQuarantined { .. } => bump(&self.quarantined),
            EventKind::RunCoalesced { .. } => bump(&self.coalesced),
            EventKind::InjectionEnqueued { .. } => bump(&self.enqueued),
            EventKind::InjectionDelivered { .. } => bump(&self.delivered),
            EventKind::InjectionSuperseded { .. } => bump(&self.superseded),
            EventKind::InjectionStale { .. } => bump(&self.stale),
            EventKind::InjectionRejected { .. } => bump(&self.rejected),
            EventKind::ContextCompacted { .. } => bump(&self.compactions),
            EventKind::ModelReplied { usage, .. } => {
                let add = |c: &AtomicU64, n: u64| {
                    c.fetch_add(n, Ordering::Relaxed);
                };
                add(&self.prompt_tokens, usage.prompt_tokens);
                add(&self.prompt_evaluated, usage.prompt_evaluated);
                add(&self.completion_tokens, usage.completion_tokens);
            }
            _ => {}
        }
    }
}

/// Collects events in memory (tests and embedders).
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<Vec<Event>>,
    inputs: Mutex<Vec<ModelInput>>,
}

impl EventLog {
    /// All events so far.
    pub fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// All model inputs so far.
    pub fn model_inputs(&self) -> Vec<ModelInput> {
        self.inputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Observer for EventLog {
    fn event(&self, e: &Event) {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(e.clone());
    }

    fn model_input(&self, input: &ModelInput) {
        self.inputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(input.clone());
    }
}
