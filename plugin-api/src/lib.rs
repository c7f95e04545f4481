//! # murmur-plugin-api
//!
//! The one crate a Murmur plugin depends on. A plugin is a native library (`.so`) that
//! exports **analyzers**, which run as deferred background work on conversation hooks and
//! return messages for the host to inject at the next boundary, and **tools**, which the chat
//! model can call.
//!
//! This crate holds types, traits, the frozen ABI ([`ffi`]) and the export macro. It does no
//! I/O and has no runtime: loading, scheduling and the turn loop live in the host (`murmur`).
//!
//! ## A complete analyzer
//!
//! ```
//! use murmur_plugin_api::{export_plugin, Analyzer, Config, Context, Hook, Host, Injection, Result};
//!
//! /// Reminds the model to stay brief once replies get long.
//! pub struct Brevity {
//!     max_chars: usize,
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Settings {
//!     #[serde(default = "default_max")]
//!     max_chars: usize,
//! }
//! fn default_max() -> usize { 400 }
//!
//! impl Analyzer for Brevity {
//!     const NAME: &'static str = "brevity";
//!     const HOOKS: &'static [Hook] = &[Hook::TurnComplete];
//!
//!     fn new(config: Config) -> Result<Self> {
//!         let settings: Settings = config.parse()?;
//!         Ok(Brevity { max_chars: settings.max_chars })
//!     }
//!
//!     fn analyze(&self, ctx: &Context<'_>, _host: &Host<'_>) -> Result<Vec<Injection>> {
//!         let long = ctx.latest_reply().is_some_and(|r| r.chars().count() > self.max_chars);
//!         Ok(if long {
//!             vec![Injection::instructions("Keep the next reply short.").with_key("brevity")]
//!         } else {
//!             vec![]
//!         })
//!     }
//! }
//!
//! export_plugin! {
//!     name: "brevity",
//!     version: "0.1.0",
//!     analyzers: [Brevity],
//!     tools: [],
//! }
//! # fn main() {}
//! ```
//!
//! Build it with `crate-type = ["cdylib", "rlib"]`, copy the `.so` into the host's
//! `plugins_dir` and name it in the config:
//!
//! ```toml
//! [[analyzer]]
//! name = "brevity"
//! [analyzer.config]
//! max_chars = 300
//! ```
//!
//! ## Lanes
//!
//! The role of an [`Injection`] picks its lane. [`Role::System`] (see
//! [`Injection::instructions`]) is appended to the system prompt of the next turn only: use
//! it for guidance the model should trust. [`Role::User`] and [`Role::Assistant`] (see
//! [`Injection::context`]) enter the model messages at the next boundary and stay: use them
//! for material such as retrieved passages. [`Role::Tool`] is refused.
//!
//! ## Compatibility
//!
//! The types in [`ffi`] are frozen. New host services are reached through [`Host::call`] by
//! name and advertised in [`Host::capabilities`]; new manifest fields are optional JSON. A
//! plugin built against any `0.x` of this crate with the same [`ffi::ABI_VERSION`] loads in
//! any host with that ABI version, provided the host offers the capabilities the plugin lists
//! in `requires`.

#![warn(missing_docs)]

mod context;
pub mod export;
pub mod ffi;
mod manifest;
mod services;
#[cfg(feature = "testing")]
pub mod testing;
mod traits;
mod types;

pub use context::{Context, Host, Level, Message};
pub use manifest::{capability, AnalyzerInfo, Manifest, ToolInfo, API_VERSION};
pub use services::{
    ChatMessage, Completion, CompletionRequest, SearchHit, SearchRequest, TokenUsage,
};
pub use traits::{Analyzer, Tool};
pub use types::{Config, Error, ErrorKind, Hook, Injection, Origin, Result, Role};

#[doc(hidden)]
pub mod __private {
    pub use abi_stable;
}
