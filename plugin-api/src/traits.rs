//! The two things a plugin can export: analyzers and tools.

use crate::{Config, Context, Hook, Host, Injection, Result};

/// A background analyzer.
///
/// The host creates one instance per `[[analyzer]]` table with [`Analyzer::new`] and calls
/// [`Analyzer::analyze`] on a blocking thread for every hook it subscribes to. Calls for
/// different sessions may run at the same time; calls for one session never overlap.
///
/// Inside `analyze`: no tokio runtime, no `tokio::spawn`, no timers of your own; check
/// [`Host::cancelled`] during long work; panics are caught and reported as failures.
pub trait Analyzer: Send + Sync + Sized + 'static {
    /// Export name, used as `plugin = "..."` in `[[analyzer]]` tables.
    const NAME: &'static str;
    /// One line for `murmur plugins list`.
    const DESCRIPTION: &'static str = "";
    /// Hooks this analyzer reacts to unless the config says otherwise.
    const HOOKS: &'static [Hook];

    /// Creates an instance from its `[analyzer.config]` table.
    fn new(config: Config) -> Result<Self>;

    /// Runs once for a hook; returns the messages to inject at the next boundary.
    fn analyze(&self, ctx: &Context<'_>, host: &Host<'_>) -> Result<Vec<Injection>>;
}

/// A tool the chat model can call.
pub trait Tool: Send + Sync + Sized + 'static {
    /// Export name, used as `plugin = "..."` in `[[tool]]` tables.
    const NAME: &'static str;
    /// What the tool does, shown to the model.
    const DESCRIPTION: &'static str;

    /// JSON schema of the arguments object.
    fn parameters() -> serde_json::Value;

    /// Creates an instance from its `[tool.config]` table.
    fn new(config: Config) -> Result<Self>;

    /// Runs the tool; the returned text becomes the tool result the model sees.
    fn call(&self, args: serde_json::Value, host: &Host<'_>) -> Result<String>;
}
