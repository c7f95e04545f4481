//! # murmur
//!
//! The Murmur host: a runtime for chat agents whose background analyzers are native
//! plugins. It owns each conversation's turn loop and inject queue, runs analyzers as
//! deferred work off the reply's path, and injects what they return at the next boundary
//! (the start of a turn, or between two tool-call steps), as `SPEC.md` defines rule by rule.
//!
//! Where things live:
//!
//! - [`config`]: the TOML file, parsed and validated with file/line/key errors;
//! - [`plugins`]: the `.so` loader, the host side of the ABI, instances from config;
//! - [`session`]: the turn state machine ([`session::machine`]), the inject queue
//!   ([`session::queue`]), run scheduling ([`session::runs`]) and the actor
//!   ([`session::driver`]);
//! - [`model`]: the model trait and its providers;
//! - [`knowledge`]: the full-text and vector index behind the `search` service and tool;
//! - [`store`]: the SQLite session store that lets a restarted host resume every session;
//! - [`server`]: `murmur serve`, the HTTP interface;
//! - [`runtime`]: what sessions share, and shutdown;
//! - [`events`]: the event stream, model-input recording and counters;
//! - [`mod@bench`]: the benchmark suite of `murmur bench` and `cargo bench`;
//! - [`scaffold`]: `murmur new-analyzer`, a new analyzer crate from the template;
//! - [`cli`]: the `murmur` command.
//!
//! Plugin authors depend on `murmur-plugin-api`, not on this crate.

pub mod analyzer;
pub mod bench;
mod chat;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod digest;
pub mod eval;
pub mod events;
pub mod file_error;
pub mod fuzzing;
pub mod knowledge;
pub mod model;
pub mod plugins;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod services;
pub mod session;
pub mod state;
pub mod store;
pub mod tool;

pub use runtime::Runtime;
