//! The thin async layer around [`TurnMachine`] and [`RunTracker`]: one actor task per
//! session performs model calls, tool calls and analyzer runs, and feeds their results back.
//!
//! The actor owns all session state, so there are no locks: a boundary drains the queue
//! atomically because nothing else can touch it (S14). Analyzer runs are separate tasks that
//! report back over a channel; their order of arrival is the queue order (S13). The current
//! step's model or tool call is a future the actor polls itself, beside its other inputs: a
//! streamed chunk then wakes the task that handles it, with no hop to another task, and
//! dropping the future aborts the call.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures_util::FutureExt as _;
use murmur_plugin_api::{Hook, Injection};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::analyzer::{AnalyzerEntry, AnalyzerView, CancelFlag, RunError, RunRequest};
use crate::events::{EventKind, RunOutcome, TurnOutcome};
use crate::model::{ContextMessage, ModelError, ModelInput, ModelReply, ModelRequest, ToolCall};
use crate::runtime::{AnalyzerSet, Shared};
use crate::session::compaction::{self, Compaction};
use crate::session::machine::{Action, Restored, TurnEnd, TurnMachine, TurnOptions};
use crate::session::queue::Provenance;
use crate::session::runs::{RunStart, RunTracker};
use crate::store::{Acquired, Cursor, LeaseError, PgStore};

type View = Arc<AnalyzerView>;

/// A model or tool call of the current step, polled by the actor; a panic in it becomes an
/// error message.
type Step<T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, String>> + Send>>;

fn step<T: 'static>(call: impl std::future::Future<Output = T> + Send + 'static) -> Step<T> {
    Box::pin(
        std::panic::AssertUnwindSafe(call)
            .catch_unwind()
            .map(|r| r.map_err(|panic| panic_message(&*panic))),
    )
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}

enum Command {
    User {
        text: String,
        options: Arc<TurnOptions>,
        accepted: oneshot::Sender<Result<(), String>>,
        answered: oneshot::Sender<TurnEnd>,
    },
    ToolResults {
        results: Vec<(String, String)>,
        options: Arc<TurnOptions>,
        answered: oneshot::Sender<Result<TurnEnd, ResumeError>>,
    },
    Stop,
    /// Take the session over from a host whose lease expired, if no other host did.
    TakeOver,
    Transcript(oneshot::Sender<Vec<ContextMessage>>),
    Close(oneshot::Sender<()>),
    Suspend(oneshot::Sender<()>),
    /// End the actor if the session is idle with nothing in flight; answers whether it did.
    Unload(oneshot::Sender<bool>),
}

/// A handle to a running session. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Session {
    id: Arc<str>,
    tx: mpsc::UnboundedSender<Command>,
}

/// What a session starts from besides the configuration: a conversation begun elsewhere,
/// such as the history an HTTP client sends with its first request.
#[derive(Debug, Clone, Default)]
pub struct Seed {
    /// Replaces the configured system prompt.
    pub system_prompt: Option<String>,
    /// The conversation so far; the session's first turn follows it.
    pub history: Vec<ContextMessage>,
}

/// The session ended before answering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session `{0}` is closed")]
pub struct SessionClosed(pub String);

/// Why a session did not take a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotTaken {
    /// The session is closed.
    #[error(transparent)]
    Closed(#[from] SessionClosed),
    /// The session cannot serve a turn on this host now (its shared store is unreachable,
    /// or another host held it for all of `store.lease_wait`); the reason says which.
    #[error("{0}")]
    Unavailable(String),
}

/// Resolves when the turn that answers a user message ends.
#[derive(Debug)]
pub struct Answer {
    session: Arc<str>,
    accepted: Option<oneshot::Receiver<Result<(), String>>>,
    rx: oneshot::Receiver<TurnEnd>,
}

impl Answer {
    /// Waits until the session has taken the message: it started a turn, joined the
    /// running one or waits for its own, and with a store it is stored (S38).
    pub async fn accepted(&mut self) -> Result<(), NotTaken> {
        match self.accepted.take() {
            Some(rx) => rx
                .await
                .map_err(|_| NotTaken::Closed(SessionClosed(self.session.to_string())))?
                .map_err(NotTaken::Unavailable),
            None => Ok(()),
        }
    }

    /// Waits for the end of the turn that answered the message.
    pub async fn wait(self) -> Result<TurnEnd, SessionClosed> {
        self.rx
            .await
            .map_err(|_| SessionClosed(self.session.to_string()))
    }
}

/// Why tool results did not resume a turn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    /// The session is closed.
    #[error(transparent)]
    Closed(#[from] SessionClosed),
    /// The results do not fit the session's state (the reason says how).
    #[error("{0}")]
    Refused(String),
    /// The session cannot serve a turn on this host now (see [`NotTaken::Unavailable`]).
    #[error("{0}")]
    Unavailable(String),
}

impl Session {
    /// Starts a new session. With a store, it is stored before this returns (a failure is
    /// reported as an error event, and every later commit retries).
    pub(crate) fn spawn(shared: Arc<Shared>, id: Arc<str>, seed: Seed) -> Session {
        let mut machine =
            TurnMachine::with_history(id.clone(), shared.settings.clone(), seed.history, 0);
        if let Some(prompt) = seed.system_prompt {
            machine.set_system_prompt(prompt);
        }
        let cursor = shared.store.as_ref().map(|_| Cursor::default());
        Self::start(shared, id, machine, cursor, Vec::new())
    }

    /// A session another host stored and this host has not loaded: its actor loads it when
    /// it first leases it (with a shared store).
    pub(crate) fn attach(shared: Arc<Shared>, id: Arc<str>) -> Session {
        let machine = TurnMachine::new(id.clone(), shared.settings.clone());
        Self::start(shared, id, machine, Some(Cursor::unloaded()), Vec::new())
    }

    /// Resumes a stored session (S37): see [`TurnMachine::restore`].
    pub(crate) fn resume(
        shared: Arc<Shared>,
        id: Arc<str>,
        restored: Restored,
        cursor: Cursor,
    ) -> Session {
        let (machine, actions) =
            TurnMachine::restore(id.clone(), shared.settings.clone(), restored);
        Self::start(shared, id, machine, Some(cursor), actions)
    }

    fn start(
        shared: Arc<Shared>,
        id: Arc<str>,
        machine: TurnMachine,
        cursor: Option<Cursor>,
        actions: Vec<Action>,
    ) -> Session {
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let set = shared.analyzers();
        let lease = if shared.store.as_deref().and_then(|s| s.shared()).is_some() {
            Lease::Released
        } else {
            Lease::Local
        };
        let mut actor = Actor {
            lease,
            acquiring: None,
            parked: std::collections::VecDeque::new(),
            machine,
            runs: RunTracker::new(set.entries.len()),
            set,
            id: id.clone(),
            shared: shared.clone(),
            rx,
            done_tx,
            done_rx,
            model_task: None,
            chunks: None,
            partial: String::new(),
            tools_task: None,
            wake: None,
            waiters: Vec::new(),
            closing: None,
            chat_ended: false,
            cursor,
            store_error: None,
        };
        actor.flush_events();
        shared.tracker.spawn(async move {
            actor.perform(actions);
            actor.run().await;
        });
        Session { id, tx }
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Sends a user message. It starts a turn, joins the running one at its next step
    /// boundary, or waits for a turn of its own (S30).
    pub fn send(&self, text: impl Into<String>) -> Answer {
        self.send_with(text, TurnOptions::default())
    }

    /// Sends a user message whose turn uses these options (client tools, a reply schema,
    /// sampling limits).
    pub fn send_with(&self, text: impl Into<String>, options: TurnOptions) -> Answer {
        let (answered, rx) = oneshot::channel();
        let (accepted, accepted_rx) = oneshot::channel();
        // A closed session drops the sender; `Answer::wait` reports it.
        let _ = self.tx.send(Command::User {
            text: text.into(),
            options: Arc::new(options),
            accepted,
            answered,
        });
        Answer {
            session: self.id.clone(),
            accepted: Some(accepted_rx),
            rx,
        }
    }

    /// Answers the client-run tool calls a turn ended with ([`TurnOutcome::ToolCalls`]) with
    /// `(call id, output)` pairs, and waits for the end of the turn they resume (S11).
    ///
    /// [`TurnOutcome::ToolCalls`]: crate::events::TurnOutcome::ToolCalls
    pub async fn tool_results(
        &self,
        results: Vec<(String, String)>,
        options: TurnOptions,
    ) -> Result<TurnEnd, ResumeError> {
        let (answered, rx) = oneshot::channel();
        let closed = || SessionClosed(self.id.to_string());
        self.tx
            .send(Command::ToolResults {
                results,
                options: Arc::new(options),
                answered,
            })
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// With a shared store: takes the session over from a host whose lease on it expired
    /// (the host died mid-turn). The interrupted turn ends as stopped, messages that were
    /// waiting start their turns, and the lease is released once the session is idle. Does
    /// nothing if another host holds a live lease on it.
    pub fn take_over(&self) {
        let _ = self.tx.send(Command::TakeOver);
    }

    /// Stops the running turn, if any (S36).
    pub fn stop(&self) {
        let _ = self.tx.send(Command::Stop);
    }

    /// The model context so far (history with injections at their positions).
    pub async fn history(&self) -> Result<Vec<ContextMessage>, SessionClosed> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Transcript(tx))
            .map_err(|_| SessionClosed(self.id.to_string()))?;
        rx.await.map_err(|_| SessionClosed(self.id.to_string()))
    }

    /// Ends this session's actor without closing the session, for a host that stops while
    /// a store keeps its sessions: a running turn stops (S36) and is stored; analyzer runs
    /// still in flight are abandoned. The session resumes when the host starts again.
    pub async fn suspend(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Suspend(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// With a shared store: ends this host's copy of the session if it is idle — no turn,
    /// no waiting message, no analyzer run in flight — so that memory holds only sessions
    /// in use. The database keeps the session; any host loads it again for its next
    /// message. Returns whether it did; a busy session goes on untouched.
    pub async fn unload(&self) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Unload(tx)).is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// How many handles to this session exist (this one included).
    pub fn handles(&self) -> usize {
        self.tx.strong_count()
    }

    /// Closes the session: stops a running turn, lets `turn_complete` and `chat_end` work
    /// finish (each run bounded by its hard timeout), reports undelivered injections, and
    /// deletes it from the store.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

struct RunDone {
    /// The instance that ran (of the analyzer set of its time).
    entry: AnalyzerEntry,
    run: u64,
    hook: Hook,
    turn: u64,
    duration: Duration,
    tokens: u64,
    result: Result<Result<Vec<Injection>, RunError>, Ended>,
}

enum Ended {
    TimedOut(Duration),
    ShutDown,
}

enum Wake {
    Command(Option<Command>),
    Chunk(String),
    Model(Result<ModelOutcome, String>),
    Tools(Result<Vec<Result<String, String>>, String>),
    Run(RunDone),
    Timer,
    Lease(Result<Acquired, LeaseError>),
    Renew,
    Shutdown,
}

/// Who waits for the end of a turn.
enum Waiter {
    User(oneshot::Sender<TurnEnd>),
    Resume(oneshot::Sender<Result<TurnEnd, ResumeError>>),
}

/// This host's claim on the session.
enum Lease {
    /// No shared store: the session is always this host's.
    Local,
    /// A shared store, and another host may serve the session's next turn.
    Released,
    /// Waiting for the lease; commands that need it are parked meanwhile.
    Acquiring,
    /// This host serves the session until it releases the lease; renewed at `renew_at`.
    Held { epoch: i64, renew_at: Instant },
}

type Acquiring =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Acquired, LeaseError>> + Send>>;

impl Waiter {
    fn answer(self, end: TurnEnd) {
        // A waiter that went away no longer wants the answer.
        match self {
            Waiter::User(tx) => {
                let _ = tx.send(end);
            }
            Waiter::Resume(tx) => {
                let _ = tx.send(Ok(end));
            }
        }
    }
}

struct Actor {
    id: Arc<str>,
    shared: Arc<Shared>,
    machine: TurnMachine,
    runs: RunTracker<View>,
    /// The analyzers this session uses; `runs` is indexed like it.
    set: Arc<AnalyzerSet>,
    rx: mpsc::UnboundedReceiver<Command>,
    done_tx: mpsc::UnboundedSender<RunDone>,
    done_rx: mpsc::UnboundedReceiver<RunDone>,
    model_task: Option<Step<ModelOutcome>>,
    chunks: Option<mpsc::UnboundedReceiver<String>>,
    partial: String,
    tools_task: Option<Step<Vec<Result<String, String>>>>,
    wake: Option<Instant>,
    waiters: Vec<(u64, Waiter)>,
    closing: Option<Option<oneshot::Sender<()>>>,
    chat_ended: bool,
    /// With a store: what has been committed so far.
    cursor: Option<Cursor>,
    /// The last commit's failure, until a commit succeeds: no model call is made meanwhile.
    store_error: Option<String>,
    /// With a shared store: whether this host serves the session now.
    lease: Lease,
    acquiring: Option<Acquiring>,
    /// Commands that wait for the lease, in arrival order.
    parked: std::collections::VecDeque<Command>,
}

async fn recv_opt<T>(rx: &mut Option<mpsc::UnboundedReceiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn join_opt<T>(task: &mut Option<Step<T>>) -> Result<T, String> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

async fn lease_opt(task: &mut Option<Acquiring>) -> Result<Acquired, LeaseError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Actor {
    async fn run(mut self) {
        // One wait for shutdown for the actor's life, not a new one per wake-up.
        let shutdown = self.shared.cancel.clone().cancelled_owned();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let renew_at = self.renew_at();
            let wake = tokio::select! {
                biased;
                _ = &mut shutdown => Wake::Shutdown,
                c = self.rx.recv(), if self.closing.is_none() => Wake::Command(c),
                Some(chunk) = recv_opt(&mut self.chunks) => Wake::Chunk(chunk),
                r = join_opt(&mut self.model_task) => Wake::Model(r),
                r = join_opt(&mut self.tools_task) => Wake::Tools(r),
                Some(done) = self.done_rx.recv() => Wake::Run(done),
                _ = sleep_opt(self.wake) => Wake::Timer,
                r = lease_opt(&mut self.acquiring) => Wake::Lease(r),
                _ = sleep_opt(renew_at) => Wake::Renew,
            };
            match wake {
                Wake::Shutdown => {
                    self.abort_calls();
                    break;
                }
                Wake::Command(None) => self.closing = Some(None),
                Wake::Command(Some(Command::Suspend(done))) => {
                    self.stop();
                    self.flush_events();
                    self.release();
                    let _ = done.send(());
                    return;
                }
                Wake::Command(Some(Command::Unload(done))) => {
                    if self.unloadable() {
                        self.flush_events();
                        self.release();
                        let _ = done.send(true);
                        return;
                    }
                    let _ = done.send(false);
                }
                Wake::Command(Some(c)) => self.command(c),
                Wake::Chunk(chunk) => self.chunk(chunk),
                Wake::Model(result) => self.model_done(result),
                Wake::Tools(result) => self.tools_done(result),
                Wake::Run(done) => self.run_done(done),
                Wake::Timer => self.wake = None,
                Wake::Lease(result) => self.leased(result),
                Wake::Renew => self.renew(),
            }
            self.settle();
            if self.try_finish_close() {
                break;
            }
            if self.idle() {
                self.release();
            }
        }
        self.flush_events();
    }

    fn command(&mut self, command: Command) {
        let needs_lease = matches!(
            command,
            Command::User { .. }
                | Command::ToolResults { .. }
                | Command::Close(_)
                | Command::TakeOver
        );
        if needs_lease
            && (!self.parked.is_empty() || matches!(self.lease, Lease::Released | Lease::Acquiring))
        {
            self.parked.push_back(command);
            self.acquire();
            return;
        }
        match command {
            Command::User {
                text,
                options,
                accepted,
                answered,
            } => {
                let (seq, actions) = self.machine.user_message_with(text, options);
                self.waiters.push((seq, Waiter::User(answered)));
                self.perform(actions);
                let _ = accepted.send(Ok(()));
            }
            Command::ToolResults {
                results,
                options,
                answered,
            } => match self.machine.client_results(results, options) {
                Ok((seq, actions)) => {
                    self.waiters.push((seq, Waiter::Resume(answered)));
                    self.perform(actions);
                }
                Err(why) => {
                    self.flush_events();
                    let _ = answered.send(Err(ResumeError::Refused(why)));
                }
            },
            Command::Stop => self.stop(),
            // Holding the lease is the whole of it: loading the session ended its
            // interrupted turn.
            Command::TakeOver => {}
            Command::Transcript(reply) => {
                let _ = reply.send(self.machine.history().to_vec());
            }
            Command::Close(done) => {
                self.stop();
                self.closing = Some(Some(done));
            }
            Command::Suspend(done) => {
                // Handled by the actor's loop, which ends with it.
                let _ = done.send(());
            }
            Command::Unload(done) => {
                // Handled by the actor's loop, which ends with it when it can.
                let _ = done.send(false);
            }
        }
    }

    fn stop(&mut self) {
        if self.machine.is_idle() {
            return;
        }
        self.abort_calls();
        let partial = std::mem::take(&mut self.partial);
        let actions = self.machine.stop(partial);
        self.perform(actions);
    }

    fn abort_calls(&mut self) {
        // Dropping a call's future aborts it.
        self.model_task = None;
        if let Some(mut chunks) = self.chunks.take() {
            while let Ok(c) = chunks.try_recv() {
                self.partial.push_str(&c);
            }
        }
        self.tools_task = None;
    }

    fn chunk(&mut self, chunk: String) {
        for o in &self.shared.observers {
            o.chunk(&self.id, self.machine.turns(), &chunk);
        }
        self.partial.push_str(&chunk);
    }

    fn model_done(&mut self, result: Result<ModelOutcome, String>) {
        self.model_task = None;
        let result = result.map(|outcome| {
            if let Some(c) = &outcome.compaction {
                self.machine.compacted(c);
            }
            outcome.reply
        });
        if let Some(mut chunks) = self.chunks.take() {
            while let Ok(c) = chunks.try_recv() {
                self.chunk(c);
            }
        }
        self.partial.clear();
        let actions = match result {
            Ok(Ok(reply)) => self.machine.model_replied(reply),
            Ok(Err(e)) => self.machine.model_failed(e.to_string()),
            Err(e) => self
                .machine
                .model_failed(format!("model call ended abnormally: {e}")),
        };
        self.perform(actions);
    }

    fn tools_done(&mut self, result: Result<Vec<Result<String, String>>, String>) {
        self.tools_task = None;
        let results =
            result.unwrap_or_else(|e| vec![Err(format!("tool task ended abnormally: {e}"))]);
        let actions = self.machine.tools_finished(results);
        self.perform(actions);
    }

    fn run_done(&mut self, done: RunDone) {
        let entry = &done.entry;
        let (outcome, injections, error) = match done.result {
            Ok(Ok(injections)) => (RunOutcome::Ok, injections, None),
            Ok(Err(RunError::Failed(e))) => (RunOutcome::Failed, Vec::new(), Some(e)),
            Ok(Err(RunError::Panicked(e))) => (RunOutcome::Panicked, Vec::new(), Some(e)),
            Ok(Err(RunError::Cancelled(e))) => (RunOutcome::Cancelled, Vec::new(), Some(e)),
            Ok(Err(RunError::Crashed(e))) => (RunOutcome::Crashed, Vec::new(), Some(e)),
            Err(Ended::TimedOut(after)) => (
                RunOutcome::TimedOut,
                Vec::new(),
                Some(format!(
                    "no result after the hard timeout of {}; result discarded, cancellation requested",
                    humantime::format_duration(after)
                )),
            ),
            Err(Ended::ShutDown) => (RunOutcome::Cancelled, Vec::new(), Some("host shutting down".into())),
        };
        self.shared.emit(
            &self.id,
            EventKind::AnalyzerRun {
                analyzer: entry.name.to_string(),
                hook: done.hook,
                turn: done.turn,
                run: done.run,
                outcome,
                duration_ms: u64::try_from(done.duration.as_millis()).unwrap_or(u64::MAX),
                injections: injections.len(),
                tokens: done.tokens,
                error: error.clone(),
            },
        );
        let bad = matches!(outcome, RunOutcome::Crashed | RunOutcome::TimedOut);
        if outcome != RunOutcome::Cancelled {
            if let Some(failures) = entry.slot.health.record(bad, entry.quarantine_after) {
                self.shared.emit(
                    &self.id,
                    EventKind::AnalyzerQuarantined {
                        analyzer: entry.name.to_string(),
                        failures,
                        error: error.clone().unwrap_or_default(),
                    },
                );
            }
        }
        if !injections.is_empty() {
            let provenance = Provenance {
                analyzer: entry.name.clone(),
                hook: done.hook,
                about_turn: done.turn,
                ttl_turns: entry.ttl_turns,
            };
            let shared = self.shared.clone();
            match (
                &self.lease,
                shared.store.as_deref().and_then(|s| s.shared()),
            ) {
                (Lease::Released | Lease::Acquiring, Some(pg)) => {
                    // The session may be served elsewhere now: the holder of its next lease
                    // takes these from the inbox.
                    if let Err(e) = pg.inbox_push(&self.id, &provenance, &injections) {
                        self.shared.emit(
                            &self.id,
                            EventKind::Error {
                                message: e.to_string(),
                            },
                        );
                    }
                }
                _ => {
                    self.machine.enqueue(injections, &provenance);
                    self.flush_events();
                }
            }
        }
        // An analyzer removed by a reload has no slot any more, and no follow-up.
        let next = self
            .set
            .position(&entry.name)
            .and_then(|i| self.runs.finished(i, done.run));
        if let Some(next) = next {
            self.start_run(next);
        }
    }

    fn perform(&mut self, actions: Vec<Action>) {
        self.flush_events();
        for action in actions {
            match action {
                Action::CallModel(_) if self.store_error.is_some() => {
                    // S37: nothing reaches the model before it is stored.
                    let why = self.store_error.clone().unwrap_or_default();
                    let actions = self
                        .machine
                        .model_failed(format!("the model was not called: {why}"));
                    self.perform(actions);
                }
                Action::CallModel(input) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    self.partial.clear();
                    self.chunks = Some(rx);
                    let options = self.machine.options().cloned().unwrap_or_default();
                    self.model_task = Some(step(call_model(
                        self.shared.clone(),
                        self.id.clone(),
                        input,
                        options,
                        tx,
                    )));
                }
                Action::CallTools { calls, .. } => {
                    self.tools_task = Some(step(call_tools(
                        self.shared.clone(),
                        self.id.clone(),
                        calls,
                    )));
                }
                Action::Fire { hook, turn, step } => {
                    if matches!(hook, Hook::ChatStart | Hook::TurnStart) {
                        self.take_up_reload();
                    }
                    if self.set.slots.iter().any(|s| s.wants(hook, turn)) {
                        let view = self.view();
                        self.fire(hook, turn, step, view);
                    }
                }
                Action::TurnEnded(end) => {
                    // A turn that waits for the client's tool results has no final reply.
                    if end.outcome != TurnOutcome::ToolCalls
                        && self
                            .set
                            .slots
                            .iter()
                            .any(|s| s.wants(Hook::TurnComplete, end.turn))
                    {
                        let view = self.view();
                        self.runs.turn_ended(end.turn, Instant::now(), view);
                    }
                    let (answered, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
                        .into_iter()
                        .partition(|(seq, _)| *seq <= end.answered_upto);
                    self.waiters = waiting;
                    for (_, waiter) in answered {
                        waiter.answer(end.clone());
                    }
                }
            }
            self.flush_events();
        }
    }

    /// A turn begins: a reload published since then takes effect now. Slots of analyzers
    /// that stay (by name) keep their runs in flight and follow-ups.
    fn take_up_reload(&mut self) {
        let current = self.shared.analyzers();
        if current.generation == self.set.generation {
            return;
        }
        let map: Vec<Option<usize>> = current
            .entries
            .iter()
            .map(|a| self.set.position(&a.name))
            .collect();
        self.runs.remap(&map);
        self.set = current;
    }

    fn view(&self) -> View {
        Arc::new(AnalyzerView::new(
            self.machine.history().clone(),
            self.machine.latest_user().map(str::to_string),
            self.machine.latest_reply().map(str::to_string),
        ))
    }

    fn fire(&mut self, hook: Hook, turn: u64, step: u32, view: View) {
        let fired = self.runs.fire(&self.set.slots, hook, turn, step, &view);
        let analyzers: Vec<String> = fired
            .start
            .iter()
            .map(|s| s.analyzer)
            .chain(fired.coalesced.iter().copied())
            .filter_map(|i| self.set.entries.get(i).map(|a| a.name.to_string()))
            .collect();
        if analyzers.is_empty() {
            return;
        }
        self.shared.emit(
            &self.id,
            EventKind::HookFired {
                hook,
                turn,
                step,
                analyzers,
            },
        );
        for i in fired.coalesced {
            if let Some(a) = self.set.entries.get(i) {
                self.shared.emit(
                    &self.id,
                    EventKind::RunCoalesced {
                        analyzer: a.name.to_string(),
                        hook,
                        turn,
                    },
                );
            }
        }
        for start in fired.start {
            self.start_run(start);
        }
    }

    /// Spawns one analyzer run with its hard timeout (S23); it never blocks this actor
    /// (S21) and reports back over `done_tx`.
    fn start_run(&mut self, start: RunStart<View>) {
        let Some(entry) = self.set.entries.get(start.analyzer).cloned() else {
            return;
        };
        let cancel = CancelFlag::default();
        let tokens = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let request = RunRequest {
            session: self.id.clone(),
            analyzer: entry.name.clone(),
            hook: start.hook,
            turn: start.turn,
            step: start.step,
            view: start.view,
            config_json: entry.config_json.clone(),
            deadline: SystemTime::now() + entry.timeout,
            cancel: cancel.clone(),
            state: self.shared.state.clone(),
            services: self.shared.services.clone(),
            default_model: entry.model.clone(),
            tokens: tokens.clone(),
        };
        let done = self.done_tx.clone();
        let shutdown = self.shared.cancel.clone();
        let (run, hook, turn) = (start.run, start.hook, start.turn);
        self.shared.tracker.spawn(async move {
            let started = Instant::now();
            let work = entry.backend.run(request);
            let timeout = entry.timeout;
            let result = tokio::select! {
                r = tokio::time::timeout(timeout, work) => r.map_err(|_| Ended::TimedOut(timeout)),
                _ = shutdown.cancelled() => Err(Ended::ShutDown),
            };
            if result.is_err() {
                cancel.cancel();
            }
            // The session may be gone; then nobody wants the result.
            let _ = done.send(RunDone {
                entry,
                run,
                hook,
                turn,
                duration: started.elapsed(),
                tokens: tokens.load(std::sync::atomic::Ordering::Relaxed),
                result,
            });
        });
    }

    /// Fires `turn_complete` for every turn whose deferred work settled (S22, S24).
    fn settle(&mut self) {
        let (ready, wake) = self.runs.settled(&self.set.slots, Instant::now());
        self.wake = wake;
        for (turn, view) in ready {
            self.fire(Hook::TurnComplete, turn, 0, view);
        }
    }

    fn try_finish_close(&mut self) -> bool {
        if self.closing.is_none() {
            return false;
        }
        if !self.machine.is_idle() || self.wake.is_some() {
            return false;
        }
        if !self.chat_ended {
            self.chat_ended = true;
            let turn = self.machine.turns();
            if self.set.slots.iter().any(|s| s.wants(Hook::ChatEnd, turn)) {
                let view = self.view();
                self.fire(Hook::ChatEnd, turn, 0, view);
            }
        }
        if self.runs.busy() {
            return false;
        }
        let done = self.closing.as_mut().and_then(Option::take);
        self.machine.close();
        self.flush_events();
        self.shared.state.forget_session(&self.id);
        if let Some(store) = &self.shared.store {
            if let Err(e) = store.delete(&self.id) {
                self.shared.emit(
                    &self.id,
                    EventKind::Error {
                        message: e.to_string(),
                    },
                );
            }
        }
        if let Some(done) = done {
            let _ = done.send(());
        }
        true
    }

    /// When the held lease is renewed next.
    fn renew_at(&self) -> Option<Instant> {
        match self.lease {
            Lease::Held { renew_at, .. } => Some(renew_at),
            _ => None,
        }
    }

    /// Starts acquiring the lease, unless that is under way. A session that was never
    /// stored (the database was down when it opened) is stored first.
    fn acquire(&mut self) {
        if !matches!(self.lease, Lease::Released) {
            return;
        }
        if self.cursor.as_ref().is_some_and(|c| !c.stored()) {
            self.commit(&[]);
            if let Some(why) = self.store_error.clone() {
                self.refuse_parked(&why, false);
                return;
            }
        }
        let shared = self.shared.clone();
        let id = self.id.clone();
        // A takeover alone does not wait for a live lease: that host is not dead.
        let only_takeover = self.parked.iter().all(|c| matches!(c, Command::TakeOver));
        self.lease = Lease::Acquiring;
        self.acquiring = Some(Box::pin(async move {
            match shared.store.as_deref().and_then(|s| s.shared()) {
                Some(pg) => {
                    let wait = if only_takeover {
                        Duration::ZERO
                    } else {
                        pg.settings().lease_wait
                    };
                    pg.acquire(&id, wait).await
                }
                None => Err(LeaseError::NoSession(id.to_string())),
            }
        }));
    }

    /// The lease is this host's, or could not be had: the parked commands go on, or are
    /// refused with the reason.
    fn leased(&mut self, result: Result<Acquired, LeaseError>) {
        self.acquiring = None;
        self.lease = Lease::Released;
        let shared = self.shared.clone();
        let Some(pg) = shared.store.as_deref().and_then(|s| s.shared()) else {
            return;
        };
        let acquired = match result {
            Ok(a) => a,
            Err(e) => {
                let closed = matches!(e, LeaseError::NoSession(_));
                self.refuse_parked(&e.to_string(), closed);
                return;
            }
        };
        self.lease = Lease::Held {
            epoch: acquired.epoch,
            renew_at: Instant::now() + pg.settings().lease_ttl / 3,
        };
        if let Some(from_host) = acquired.took_over_from.clone() {
            self.shared.emit(
                &self.id,
                EventKind::SessionTakenOver {
                    from_host,
                    epoch: acquired.epoch,
                },
            );
        }
        let current = self
            .cursor
            .as_ref()
            .is_some_and(|c| c.stored() && c.version() == acquired.version);
        if !current && !self.reload(acquired.epoch) {
            return;
        }
        if let Some(c) = self.cursor.as_mut() {
            c.set_lease(Some(acquired.epoch));
        }
        self.take_inbox(pg);
        while let Some(command) = self.parked.pop_front() {
            self.command(command);
        }
    }

    /// Loads the session as another host left it (S37): its interrupted turn, if any, ends
    /// as stopped and messages that were waiting start their turns. False if it could not
    /// be loaded (the parked commands are refused).
    fn reload(&mut self, epoch: i64) -> bool {
        let loaded = match self.shared.store.as_deref().map(|s| s.load(&self.id)) {
            Some(Ok(loaded)) => loaded,
            Some(Err(e)) => {
                self.release();
                self.refuse_parked(&e.to_string(), false);
                return false;
            }
            None => None,
        };
        let Some((restored, mut cursor)) = loaded else {
            self.lease = Lease::Released;
            self.refuse_parked(&format!("session `{}` is no longer stored", self.id), true);
            return false;
        };
        cursor.set_lease(Some(epoch));
        let (machine, actions) =
            TurnMachine::restore(self.id.clone(), self.shared.settings.clone(), restored);
        self.machine = machine;
        self.cursor = Some(cursor);
        self.store_error = None;
        self.partial.clear();
        self.perform(actions);
        true
    }

    /// Answers the parked commands: the session is closed, or not available now.
    fn refuse_parked(&mut self, why: &str, closed: bool) {
        if self.parked.iter().any(|c| !matches!(c, Command::TakeOver)) {
            tracing::warn!(session = &*self.id, "{why}");
        }
        for command in std::mem::take(&mut self.parked) {
            match command {
                // Dropping `accepted` tells the waiter the session is closed.
                Command::User { accepted, .. } if !closed => {
                    let _ = accepted.send(Err(why.to_string()));
                }
                Command::ToolResults { answered, .. } => {
                    let _ = answered.send(Err(if closed {
                        ResumeError::Closed(SessionClosed(self.id.to_string()))
                    } else {
                        ResumeError::Unavailable(why.to_string())
                    }));
                }
                Command::Close(done) => {
                    let _ = done.send(());
                }
                _ => {}
            }
        }
    }

    /// Moves what other hosts left in the inbox into the queue; the next commit stores them
    /// and empties the inbox of them.
    fn take_inbox(&mut self, pg: &PgStore) {
        let Some(cursor) = self.cursor.as_mut() else {
            return;
        };
        match pg.inbox(&self.id, cursor) {
            Ok(items) => {
                if items.is_empty() {
                    return;
                }
                for item in items {
                    cursor.claim(item.seq);
                    self.machine.enqueue(vec![item.injection], &item.provenance);
                }
                self.flush_events();
            }
            Err(e) => self.shared.emit(
                &self.id,
                EventKind::Error {
                    message: e.to_string(),
                },
            ),
        }
    }

    /// Renews the lease while a turn runs, and takes what arrived in the inbox meanwhile.
    /// A lease found lost stops the turn: another host serves the session now.
    fn renew(&mut self) {
        let Lease::Held { epoch, .. } = self.lease else {
            return;
        };
        let shared = self.shared.clone();
        let Some(pg) = shared.store.as_deref().and_then(|s| s.shared()) else {
            return;
        };
        let ttl = pg.settings().lease_ttl;
        match pg.renew(&self.id, epoch) {
            Ok(true) => {
                self.lease = Lease::Held {
                    epoch,
                    renew_at: Instant::now() + ttl / 3,
                };
                self.take_inbox(pg);
            }
            Ok(false) => {
                let message = format!(
                    "this host lost its lease on the session (epoch {epoch}) to another host; the running turn stops here"
                );
                self.shared.emit(&self.id, EventKind::Error { message });
                self.lease = Lease::Released;
                if let Some(c) = self.cursor.as_mut() {
                    c.set_lease(None);
                    c.invalidate();
                }
                self.stop();
            }
            Err(e) => {
                self.shared.emit(
                    &self.id,
                    EventKind::Error {
                        message: e.to_string(),
                    },
                );
                self.lease = Lease::Held {
                    epoch,
                    renew_at: Instant::now() + (ttl / 3).min(Duration::from_secs(1)),
                };
            }
        }
    }

    /// Whether the session has nothing to do on this host: no turn, nobody waiting, nothing
    /// parked, not closing, and everything committed.
    fn idle(&self) -> bool {
        self.machine.is_idle()
            && self.waiters.is_empty()
            && self.parked.is_empty()
            && self.closing.is_none()
            && self.store_error.is_none()
    }

    /// Whether this host's copy can go without losing anything: the store is shared (it
    /// holds the session) and nothing runs or waits here.
    fn unloadable(&self) -> bool {
        self.shared
            .store
            .as_deref()
            .is_some_and(|s| s.shared().is_some())
            && self.idle()
            && !self.runs.busy()
            && self.acquiring.is_none()
            && self.model_task.is_none()
            && self.tools_task.is_none()
    }

    /// Gives up the lease, if held: the next turn may run on any host.
    fn release(&mut self) {
        let Lease::Held { epoch, .. } = self.lease else {
            return;
        };
        self.lease = Lease::Released;
        if let Some(c) = self.cursor.as_mut() {
            c.set_lease(None);
        }
        if let Some(pg) = self.shared.store.as_deref().and_then(|s| s.shared()) {
            if let Err(e) = pg.release(&self.id, epoch) {
                // It runs out by itself.
                tracing::warn!(session = &*self.id, "{e}");
            }
        }
    }

    /// Commits what changed to the store, if any (S37, S38), then tells the observers.
    fn flush_events(&mut self) {
        let events = self.machine.take_events();
        self.commit(&events);
        for kind in events {
            self.shared.emit(&self.id, kind);
        }
    }

    fn commit(&mut self, events: &[EventKind]) {
        let (Some(store), Some(cursor)) = (&self.shared.store, self.cursor.as_mut()) else {
            return;
        };
        match store.commit(&self.id, cursor, &self.machine, events) {
            Ok(()) => self.store_error = None,
            Err(e) => {
                let message = e.to_string();
                if self.store_error.as_ref() != Some(&message) {
                    self.shared.emit(
                        &self.id,
                        EventKind::Error {
                            message: message.clone(),
                        },
                    );
                }
                self.store_error = Some(message);
            }
        }
    }
}

/// What a model call task returns: the compaction its input needed, if any (applied to the
/// history whatever the call's outcome), and the reply.
struct ModelOutcome {
    compaction: Option<Compaction>,
    reply: Result<ModelReply, ModelError>,
}

/// One step's model call: fit the input to the context window, record it (S40), call.
async fn call_model(
    shared: Arc<Shared>,
    session: Arc<str>,
    input: Arc<ModelInput>,
    options: Arc<TurnOptions>,
    chunks: mpsc::UnboundedSender<String>,
) -> ModelOutcome {
    let (input, compaction) =
        match compaction::fit(&*shared.model, &shared.settings.compaction, input).await {
            Ok(fitted) => fitted,
            Err(e) => {
                return ModelOutcome {
                    compaction: None,
                    reply: Err(e),
                }
            }
        };
    if let Some(c) = &compaction {
        shared.emit(
            &session,
            EventKind::ContextCompacted {
                turn: input.turn,
                step: input.step,
                details: c.clone(),
            },
        );
    }
    for o in &shared.observers {
        o.model_input(&input);
    }
    let tools = if options.client_tools.is_empty() {
        shared.tool_specs.clone()
    } else {
        shared
            .tool_specs
            .iter()
            .chain(options.client_tools.iter())
            .cloned()
            .collect()
    };
    let mut request = ModelRequest::new(input, tools, chunks);
    request.json_schema = options.json_schema.clone();
    request.max_tokens = options.max_tokens.or(request.max_tokens);
    request.temperature = options.temperature.or(request.temperature);
    let reply = shared.model.call(request).await;
    ModelOutcome { compaction, reply }
}

async fn call_tools(
    shared: Arc<Shared>,
    session: Arc<str>,
    calls: Vec<ToolCall>,
) -> Vec<Result<String, String>> {
    let mut results = Vec::with_capacity(calls.len());
    for call in calls {
        let result = match shared.tool(&call.name) {
            Some(tool) => {
                match tokio::time::timeout(
                    tool.timeout,
                    tool.backend.call(call.arguments.clone(), session.clone()),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(format!(
                        "timed out after {}",
                        humantime::format_duration(tool.timeout)
                    )),
                }
            }
            None => {
                let known: Vec<&str> = shared.tools.iter().map(|t| t.spec.name.as_str()).collect();
                Err(format!(
                    "the model called unknown tool `{}` (configured tools: {})",
                    call.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            }
        };
        results.push(result);
    }
    results
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
