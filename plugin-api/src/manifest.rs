//! The manifest: what a plugin library says about itself at load time.
//!
//! It crosses the boundary as JSON, so it can gain optional fields without changing the ABI.
//! Readers ignore fields they do not know; new fields must have a default.

use serde::{Deserialize, Serialize};

use crate::Hook;

/// Version of this authoring API (`murmur-plugin-api`), compiled into every plugin.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Names of host capabilities a plugin may require (see [`Manifest::requires`]).
pub mod capability {
    /// `Host::log`.
    pub const LOG: &str = "log";
    /// `Host::state_get` / `Host::state_put`.
    pub const STATE: &str = "state";
    /// `Host::cancelled` and the run deadline.
    pub const CANCEL: &str = "cancel";
    /// `Host::complete`: call a model the config names, optionally with a JSON schema.
    pub const COMPLETE: &str = "complete";
    /// `Host::search`: full-text search over the knowledge base.
    pub const SEARCH: &str = "search";
}

/// What a plugin library exports.
///
/// `export_plugin!` builds it from the exported types; the host reads it as JSON and
/// `murmur plugins check` prints it.
///
/// ```
/// use murmur_plugin_api::{capability, Hook, Manifest};
///
/// let m: Manifest = serde_json::from_value(serde_json::json!({
///     "api_version": "0.1.0",
///     "name": "shouting",
///     "version": "0.1.0",
///     "requires": [capability::COMPLETE],
///     "analyzers": [{ "name": "shouting", "hooks": ["turn_complete"] }]
/// }))
/// .expect("a manifest");
/// assert_eq!(m.analyzers[0].hooks, [Hook::TurnComplete]);
/// assert!(m.tools.is_empty());
/// assert_eq!(m.requires, ["complete"]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The `murmur-plugin-api` version the plugin was built with.
    pub api_version: String,
    /// The plugin's own name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// Host capabilities the plugin needs; a host lacking one refuses the plugin.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Exported analyzers.
    #[serde(default)]
    pub analyzers: Vec<AnalyzerInfo>,
    /// Exported tools.
    #[serde(default)]
    pub tools: Vec<ToolInfo>,
}

/// One exported analyzer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyzerInfo {
    /// Export name, used as `plugin = "..."` in `[[analyzer]]` tables.
    pub name: String,
    /// One line for `murmur plugins list`.
    #[serde(default)]
    pub description: String,
    /// Hooks it subscribes to unless the config overrides them.
    pub hooks: Vec<Hook>,
}

/// One exported tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// Export name, used as `plugin = "..."` in `[[tool]]` tables.
    pub name: String,
    /// What the tool does, shown to the model.
    #[serde(default)]
    pub description: String,
    /// JSON schema of the arguments.
    #[serde(default)]
    pub parameters: serde_json::Value,
}
