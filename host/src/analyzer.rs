//! Analyzers as the host sees them: an instance per `[[analyzer]]` table, behind the
//! [`AnalyzerBackend`] trait. Plugin libraries implement it through
//! [`crate::plugins::bridge`]; tests may implement it directly to isolate the turn loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use murmur_plugin_api::{Hook, Injection};

use crate::model::BoxFuture;
use crate::services::ServiceHub;
use crate::session::runs::SlotSpec;
use crate::state::StateStore;

/// What an analyzer sees of the conversation (S27), shared by all runs of one hook.
#[derive(Default)]
pub struct AnalyzerView {
    /// The model messages so far (a shared snapshot of the history).
    pub messages: crate::model::Messages,
    /// The latest user message.
    pub latest_user: Option<String>,
    /// The latest assistant reply.
    pub latest_reply: Option<String>,
    /// The messages as they cross the plugin ABI, built by the first run that needs them
    /// and shared by the others.
    abi: std::sync::OnceLock<crate::plugins::bridge::AbiMessages>,
}

impl AnalyzerView {
    /// A view of these messages.
    pub fn new(
        messages: crate::model::Messages,
        latest_user: Option<String>,
        latest_reply: Option<String>,
    ) -> Self {
        AnalyzerView {
            messages,
            latest_user,
            latest_reply,
            abi: std::sync::OnceLock::new(),
        }
    }

    /// The messages as the plugin ABI takes them.
    pub(crate) fn abi(&self) -> &crate::plugins::bridge::AbiMessages {
        self.abi
            .get_or_init(|| crate::plugins::bridge::AbiMessages::of(&self.messages))
    }
}

impl Clone for AnalyzerView {
    fn clone(&self) -> Self {
        AnalyzerView::new(
            self.messages.clone(),
            self.latest_user.clone(),
            self.latest_reply.clone(),
        )
    }
}

impl PartialEq for AnalyzerView {
    fn eq(&self, other: &Self) -> bool {
        self.messages == other.messages
            && self.latest_user == other.latest_user
            && self.latest_reply == other.latest_reply
    }
}

impl std::fmt::Debug for AnalyzerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyzerView")
            .field("messages", &self.messages)
            .field("latest_user", &self.latest_user)
            .field("latest_reply", &self.latest_reply)
            .finish_non_exhaustive()
    }
}

/// A cancellation flag the host sets and the analyzer polls (S23).
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// Asks the run to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether the run was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One analyzer run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// Session id.
    pub session: Arc<str>,
    /// Analyzer instance name.
    pub analyzer: Arc<str>,
    /// The hook.
    pub hook: Hook,
    /// The turn it is about.
    pub turn: u64,
    /// The step it is about (0 when none).
    pub step: u32,
    /// The conversation.
    pub view: Arc<AnalyzerView>,
    /// The analyzer's config table as JSON.
    pub config_json: Arc<str>,
    /// When the hard timeout strikes.
    pub deadline: SystemTime,
    /// Set by the host at the hard timeout or on shutdown.
    pub cancel: CancelFlag,
    /// Per-analyzer, per-session state.
    pub state: StateStore,
    /// Runtime services (`complete`), when the host offers them.
    pub services: Option<Arc<ServiceHub>>,
    /// The model `complete` uses unless the call names one.
    pub default_model: Option<Arc<str>>,
    /// Model tokens this run used through host services (S41).
    pub tokens: Arc<AtomicU64>,
}

/// Why a run produced nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    /// The analyzer returned an error.
    #[error("{0}")]
    Failed(String),
    /// The analyzer panicked (caught inside the plugin).
    #[error("{0}")]
    Panicked(String),
    /// The analyzer stopped after cancellation.
    #[error("{0}")]
    Cancelled(String),
    /// The process running it (`isolation = "process"`) ended during the run.
    #[error("{0}")]
    Crashed(String),
}

/// Something that can run an analyzer.
pub trait AnalyzerBackend: Send + Sync + 'static {
    /// Runs once. The returned future may be dropped at the hard timeout; the backend must
    /// not rely on being polled to completion.
    fn run(&self, request: RunRequest) -> BoxFuture<'static, Result<Vec<Injection>, RunError>>;
}

/// One configured analyzer instance.
#[derive(Clone)]
pub struct AnalyzerEntry {
    /// Instance name (`[[analyzer]] name`).
    pub name: Arc<str>,
    /// Export name in its plugin.
    pub plugin: String,
    /// Version of the plugin that provides it.
    pub version: Arc<str>,
    /// Subscriptions and settle timing.
    pub slot: SlotSpec,
    /// Hard timeout of one run (S23).
    pub timeout: Duration,
    /// S16.
    pub ttl_turns: Option<u32>,
    /// The config table as JSON.
    pub config_json: Arc<str>,
    /// The model its `complete` calls use by default.
    pub model: Option<Arc<str>>,
    /// Crashes or timeouts in a row that put it in quarantine (0: never).
    pub quarantine_after: u32,
    /// How to run it.
    pub backend: Arc<dyn AnalyzerBackend>,
}

impl std::fmt::Debug for AnalyzerEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalyzerEntry")
            .field("name", &self.name)
            .field("plugin", &self.plugin)
            .field("slot", &self.slot)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
