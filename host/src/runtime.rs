//! The host runtime: what all sessions share (model, analyzers, tools, observers, state)
//! and the root of the task tree for deferred work (SPEC S21–S26).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::analyzer::AnalyzerEntry;
use crate::events::{Event, EventKind, Observer};
use crate::model::{ModelProvider, ToolSpec};
use crate::services::ServiceHub;
use crate::session::driver::{Seed, Session};
use crate::session::machine::SessionSettings;
use crate::session::runs::SlotSpec;
use crate::state::StateStore;
use crate::store::{Store, StoreError, StoredSession};
use crate::tool::ToolEntry;

/// The analyzers of a host at one moment. A reload publishes a new set; each session takes
/// it up at its next turn, while runs of the set before finish on their own.
#[derive(Debug, Default)]
pub struct AnalyzerSet {
    /// Counts the sets a host published, from 0.
    pub generation: u64,
    /// The instances, in config order.
    pub entries: Vec<AnalyzerEntry>,
    /// Their subscriptions, by the same index.
    pub slots: Vec<SlotSpec>,
}

impl AnalyzerSet {
    fn new(generation: u64, entries: Vec<AnalyzerEntry>) -> Self {
        let slots = entries.iter().map(|a| a.slot.clone()).collect();
        AnalyzerSet {
            generation,
            entries,
            slots,
        }
    }

    /// The index of the analyzer with this instance name.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|a| &*a.name == name)
    }
}

/// Everything sessions share.
pub(crate) struct Shared {
    pub settings: Arc<SessionSettings>,
    analyzers: std::sync::RwLock<Arc<AnalyzerSet>>,
    pub tools: Vec<ToolEntry>,
    pub tool_specs: Arc<[ToolSpec]>,
    pub model: Arc<dyn ModelProvider>,
    pub observers: Vec<Arc<dyn Observer>>,
    pub state: StateStore,
    pub services: Option<Arc<ServiceHub>>,
    /// Where sessions are kept across restarts (S37); `None` keeps them in memory.
    pub store: Option<Arc<Store>>,
    /// Every analyzer run and session task, for shutdown.
    pub tracker: TaskTracker,
    /// Cancelled at shutdown; sessions and runs hold children.
    pub cancel: CancellationToken,
    pub start: Instant,
}

impl Shared {
    /// The current analyzer set.
    pub fn analyzers(&self) -> Arc<AnalyzerSet> {
        self.analyzers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn emit(&self, session: &Arc<str>, kind: EventKind) {
        let event = Event {
            session: session.clone(),
            at_ms: u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX),
            kind,
        };
        for o in &self.observers {
            o.event(&event);
        }
    }

    pub fn tool(&self, name: &str) -> Option<&ToolEntry> {
        self.tools.iter().find(|t| t.spec.name == name)
    }
}

/// Builds a [`Runtime`].
pub struct RuntimeBuilder {
    settings: SessionSettings,
    model: Arc<dyn ModelProvider>,
    analyzers: Vec<AnalyzerEntry>,
    tools: Vec<ToolEntry>,
    observers: Vec<Arc<dyn Observer>>,
    state: StateStore,
    services: Option<Arc<ServiceHub>>,
    store: Option<Arc<Store>>,
}

impl RuntimeBuilder {
    /// Keeps sessions and analyzer state in this store (S37, S38).
    pub fn store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Offers these runtime services (`complete`) to analyzers.
    pub fn services(mut self, hub: Arc<ServiceHub>) -> Self {
        self.services = Some(hub);
        self
    }

    /// Uses this state store (shared with tool instances built beforehand).
    pub fn state(mut self, state: StateStore) -> Self {
        self.state = state;
        self
    }

    /// Adds an analyzer instance.
    pub fn analyzer(mut self, entry: AnalyzerEntry) -> Self {
        self.analyzers.push(entry);
        self
    }

    /// Adds analyzer instances.
    pub fn analyzers(mut self, entries: impl IntoIterator<Item = AnalyzerEntry>) -> Self {
        self.analyzers.extend(entries);
        self
    }

    /// Adds tools.
    pub fn tools(mut self, entries: impl IntoIterator<Item = ToolEntry>) -> Self {
        self.tools.extend(entries);
        self
    }

    /// Adds an observer of events, model inputs and streamed text.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Finishes. Must be called inside a tokio runtime (it reads the tokio clock).
    pub fn build(self) -> Runtime {
        if let Some(store) = &self.store {
            self.state.attach(store.clone());
        }
        let tool_specs: Arc<[ToolSpec]> = self.tools.iter().map(|t| t.spec.clone()).collect();
        Runtime {
            shared: Arc::new(Shared {
                settings: Arc::new(self.settings),
                analyzers: std::sync::RwLock::new(Arc::new(AnalyzerSet::new(0, self.analyzers))),
                tools: self.tools,
                tool_specs,
                model: self.model,
                observers: self.observers,
                state: self.state,
                services: self.services,
                store: self.store,
                tracker: TaskTracker::new(),
                cancel: CancellationToken::new(),
                start: Instant::now(),
            }),
        }
    }
}

/// The host runtime. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("analyzers", &self.shared.analyzers().entries.len())
            .field("tools", &self.shared.tools.len())
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts building a runtime around a model.
    pub fn builder(settings: SessionSettings, model: Arc<dyn ModelProvider>) -> RuntimeBuilder {
        RuntimeBuilder {
            settings,
            model,
            analyzers: Vec::new(),
            tools: Vec::new(),
            observers: Vec::new(),
            state: StateStore::default(),
            services: None,
            store: None,
        }
    }

    /// Opens a new session with this id; its actor runs until [`Session::close`]. With a
    /// store, a stored session of that id is replaced (use [`Runtime::resume_session`] to
    /// continue one).
    pub fn open_session(&self, id: impl Into<Arc<str>>) -> Session {
        Session::spawn(self.shared.clone(), id.into(), Seed::default())
    }

    /// Opens a session that continues a conversation begun elsewhere.
    pub fn open_session_with(&self, id: impl Into<Arc<str>>, seed: Seed) -> Session {
        Session::spawn(self.shared.clone(), id.into(), seed)
    }

    /// The store, if sessions are kept in one.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.shared.store.as_ref()
    }

    /// The sessions in the store, oldest first (none without a store).
    pub fn stored_sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        match &self.shared.store {
            Some(store) => store.sessions(),
            None => Ok(Vec::new()),
        }
    }

    /// Resumes a stored session (S37): its history, queued injections and pending user
    /// messages as committed; a turn the restart interrupted ends as stopped. `None` when
    /// the store has no such session, or there is no store.
    pub fn resume_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let Some(store) = &self.shared.store else {
            return Ok(None);
        };
        let Some((restored, cursor)) = store.load(id)? else {
            return Ok(None);
        };
        Ok(Some(Session::resume(
            self.shared.clone(),
            id.into(),
            restored,
            cursor,
        )))
    }

    /// A session another host stored, served here from its next turn on (with a shared
    /// store): its actor loads it when it first leases it.
    pub fn attach_session(&self, id: &str) -> Session {
        Session::attach(self.shared.clone(), id.into())
    }

    /// The names of the host's tools (`[[tool]]` tables).
    pub fn tool_names(&self) -> impl Iterator<Item = &str> {
        self.shared.tools.iter().map(|t| t.spec.name.as_str())
    }

    /// The analyzers now.
    pub fn analyzers(&self) -> Arc<AnalyzerSet> {
        self.shared.analyzers()
    }

    /// Publishes a new analyzer set (a reload): each session takes it up at its next turn;
    /// runs in flight finish on the instances they started with. Returns its generation.
    pub fn replace_analyzers(&self, entries: Vec<AnalyzerEntry>) -> u64 {
        let mut current = self
            .shared
            .analyzers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let generation = current.generation + 1;
        *current = Arc::new(AnalyzerSet::new(generation, entries));
        generation
    }

    /// Stops all deferred work: cancels every run (setting its cancellation flag), then
    /// waits up to `grace` for tasks to end. Runs stuck inside a plugin that ignores
    /// cancellation are abandoned. Returns whether everything ended in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        let done = tokio::time::timeout(grace, self.shared.tracker.wait())
            .await
            .is_ok();
        for o in &self.shared.observers {
            o.flush();
        }
        done
    }

    /// Flushes every observer.
    pub fn flush(&self) {
        for o in &self.shared.observers {
            o.flush();
        }
    }
}
