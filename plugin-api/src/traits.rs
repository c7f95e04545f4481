//! The two things a plugin can export: analyzers and tools.

use crate::{Config, Context, Hook, Host, Injection, Result};

/// A background analyzer. The crate documentation has a complete one, with its
/// `export_plugin!` line; `murmur new-analyzer NAME` makes a crate from a template.
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
///
/// ```
/// use murmur_plugin_api::{export_plugin, Config, Error, Host, Result, Tool};
///
/// /// Adds two numbers.
/// struct Add;
///
/// impl Tool for Add {
///     const NAME: &'static str = "add";
///     const DESCRIPTION: &'static str = "Adds two numbers a and b.";
///     fn parameters() -> serde_json::Value {
///         serde_json::json!({
///             "type": "object",
///             "properties": { "a": { "type": "number" }, "b": { "type": "number" } },
///             "required": ["a", "b"]
///         })
///     }
///     fn new(_config: Config) -> Result<Self> {
///         Ok(Add)
///     }
///     fn call(&self, args: serde_json::Value, _host: &Host<'_>) -> Result<String> {
///         let n = |k: &str| args[k].as_f64().ok_or_else(|| Error::msg(format!("`{k}` is not a number")));
///         Ok((n("a")? + n("b")?).to_string())
///     }
/// }
///
/// export_plugin! {
///     name: "calculator",
///     version: "0.1.0",
///     analyzers: [],
///     tools: [Add],
/// }
/// # fn main() {}
/// ```
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
