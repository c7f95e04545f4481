//! Plain Rust types of the authoring API: hooks, roles, injections, errors, config.

use std::fmt;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// A point in a conversation an analyzer can react to (SPEC S20).
///
/// ```
/// use murmur_plugin_api::Hook;
///
/// assert_eq!(Hook::parse("turn_complete"), Some(Hook::TurnComplete));
/// assert_eq!(Hook::TurnStart.as_str(), "turn_start");
/// assert_eq!(Hook::from_code(Hook::Step.code()), Some(Hook::Step));
/// assert_eq!(Hook::parse("turn_end"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// The first turn of a session starts.
    ChatStart,
    /// A user message arrived; runs concurrently with the model.
    TurnStart,
    /// A step ended with tool results.
    Step,
    /// The reply of a turn is final.
    TurnComplete,
    /// The session was closed.
    ChatEnd,
}

impl Hook {
    /// Every hook, in the order they happen.
    pub const ALL: [Hook; 5] = [
        Hook::ChatStart,
        Hook::TurnStart,
        Hook::Step,
        Hook::TurnComplete,
        Hook::ChatEnd,
    ];

    /// The name used in config files and manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::ChatStart => "chat_start",
            Hook::TurnStart => "turn_start",
            Hook::Step => "step",
            Hook::TurnComplete => "turn_complete",
            Hook::ChatEnd => "chat_end",
        }
    }

    /// Parses a config or manifest name.
    pub fn parse(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.as_str() == name)
    }

    /// The wire code (see [`crate::ffi::FfiHook`]).
    pub fn code(self) -> u8 {
        match self {
            Hook::ChatStart => 0,
            Hook::TurnStart => 1,
            Hook::Step => 2,
            Hook::TurnComplete => 3,
            Hook::ChatEnd => 4,
        }
    }

    /// Reads a wire code.
    pub fn from_code(code: u8) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.code() == code)
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role of a message.
///
/// ```
/// use murmur_plugin_api::Role;
///
/// assert_eq!(Role::System.as_str(), "system");
/// assert_eq!(Role::from_code(Role::User.code()), Some(Role::User));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Instructions. Injected with this role, text goes to the instructions lane (SPEC S1).
    System,
    /// The user. Injected with this role, text goes to the context lane (SPEC S3).
    User,
    /// The assistant. Injected with this role, text goes to the context lane (SPEC S3).
    Assistant,
    /// A tool result. Never injectable (SPEC S5).
    Tool,
}

impl Role {
    /// The name used in model inputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }

    /// The wire code (see [`crate::ffi::FfiRole`]).
    pub fn code(self) -> u8 {
        match self {
            Role::System => 0,
            Role::User => 1,
            Role::Assistant => 2,
            Role::Tool => 3,
        }
    }

    /// Reads a wire code.
    pub fn from_code(code: u8) -> Option<Role> {
        [Role::System, Role::User, Role::Assistant, Role::Tool]
            .into_iter()
            .find(|r| r.code() == code)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a message in the model context came from.
///
/// ```
/// use murmur_plugin_api::Origin;
///
/// assert_eq!(Origin::Injection.as_str(), "injection");
/// assert_eq!(Origin::from_code(Origin::Tool.code()), Some(Origin::Tool));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Typed by the user.
    User,
    /// Written by the chat model.
    Assistant,
    /// Returned by a tool.
    Tool,
    /// Injected by an analyzer.
    Injection,
    /// Written by the host when it compacted the context: a summary of older turns.
    Summary,
}

impl Origin {
    /// The name used in recorded model inputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::User => "user",
            Origin::Assistant => "assistant",
            Origin::Tool => "tool",
            Origin::Injection => "injection",
            Origin::Summary => "summary",
        }
    }

    /// The wire code (see [`crate::ffi::FfiOrigin`]).
    pub fn code(self) -> u8 {
        match self {
            Origin::User => 0,
            Origin::Assistant => 1,
            Origin::Tool => 2,
            Origin::Injection => 3,
            Origin::Summary => 4,
        }
    }

    /// Reads a wire code.
    pub fn from_code(code: u8) -> Option<Origin> {
        [
            Origin::User,
            Origin::Assistant,
            Origin::Tool,
            Origin::Injection,
            Origin::Summary,
        ]
        .into_iter()
        .find(|o| o.code() == code)
    }
}

/// A message an analyzer asks the host to inject at the next boundary.
///
/// The role picks the lane: [`Role::System`] goes to the instructions lane (appended to the
/// system prompt of the next turn, once), [`Role::User`] and [`Role::Assistant`] go to the
/// context lane (appended to the model messages and kept). [`Role::Tool`] is refused.
///
/// ```
/// use murmur_plugin_api::{Injection, Role};
///
/// let note = Injection::instructions("Answer the user's question first.")
///     .with_key("unanswered")
///     .with_details(serde_json::json!({ "words": ["everest"] }));
/// assert_eq!(note.role, Role::System);
/// assert_eq!(note.key.as_deref(), Some("unanswered"));
///
/// let passage = Injection::context("[handbook.md > Tickets] A single costs 4.20.");
/// assert_eq!(passage.role, Role::User);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    /// The role, which decides the lane.
    pub role: Role,
    /// The text.
    pub content: String,
    /// A still-queued injection of the same analyzer with the same key is replaced by this one.
    pub key: Option<String>,
    /// Free-form details, shown in the event log.
    pub details: Option<serde_json::Value>,
}

impl Injection {
    /// An injection with any role.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Injection {
            role,
            content: content.into(),
            key: None,
            details: None,
        }
    }

    /// An instructions-lane injection: text for the system prompt of the next turn.
    pub fn instructions(content: impl Into<String>) -> Self {
        Injection::new(Role::System, content)
    }

    /// A context-lane injection: a user-role message the model sees from the next boundary on.
    pub fn context(content: impl Into<String>) -> Self {
        Injection::new(Role::User, content)
    }

    /// Sets the supersede key (SPEC S15).
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Attaches details for the event log.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The analyzer or tool could not do its work.
    Failed,
    /// The configuration was rejected.
    InvalidConfig,
    /// The run noticed [`crate::Host::cancelled`] and stopped.
    Cancelled,
    /// A panic was caught at the boundary.
    Panicked,
    /// A host service is not offered by this host.
    Unsupported,
}

/// The error type of analyzers, tools and host services.
///
/// ```
/// use murmur_plugin_api::{Error, ErrorKind};
///
/// let e = Error::config("`min_word_len` must be at least 1");
/// assert_eq!(e.kind(), ErrorKind::InvalidConfig);
/// assert_eq!(e.to_string(), "`min_word_len` must be at least 1");
/// assert_eq!(Error::cancelled().kind(), ErrorKind::Cancelled);
/// assert_eq!(Error::msg("index offline").kind(), ErrorKind::Failed);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// A plain failure.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Failed, message.to_string())
    }

    /// A rejected configuration.
    pub fn config(message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::InvalidConfig, message.to_string())
    }

    /// The run stopped because it was cancelled.
    pub fn cancelled() -> Self {
        Error::new(ErrorKind::Cancelled, "cancelled by the host")
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// The result type of the authoring API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An analyzer's or tool's own configuration: its `[analyzer.config]` table, as JSON.
///
/// ```
/// use murmur_plugin_api::{Config, ErrorKind};
///
/// #[derive(Debug, serde::Deserialize)]
/// #[serde(default, deny_unknown_fields)]
/// struct Settings {
///     min_word_len: usize,
/// }
/// impl Default for Settings {
///     fn default() -> Self {
///         Settings { min_word_len: 4 }
///     }
/// }
///
/// // A missing table is an empty one: every field takes its default.
/// let s: Settings = Config::new(serde_json::Value::Null).parse().expect("defaults");
/// assert_eq!(s.min_word_len, 4);
/// let s: Settings = Config::new(serde_json::json!({ "min_word_len": 3 })).parse().expect("set");
/// assert_eq!(s.min_word_len, 3);
/// // A typo is an error that names the key.
/// let e = Config::new(serde_json::json!({ "min_len": 3 })).parse::<Settings>().expect_err("typo");
/// assert_eq!(e.kind(), ErrorKind::InvalidConfig);
/// assert!(e.message().contains("min_len"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config(serde_json::Value);

impl Config {
    /// Wraps a JSON value.
    pub fn new(value: serde_json::Value) -> Self {
        Config(value)
    }

    /// Parses the table into the plugin's own type. Missing table = empty table, so types
    /// with `#[serde(default)]` fields work without any config.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T> {
        let value = if self.0.is_null() {
            serde_json::Value::Object(Default::default())
        } else {
            self.0.clone()
        };
        serde_json::from_value(value).map_err(|e| Error::config(format!("invalid config: {e}")))
    }

    /// The raw JSON value.
    pub fn as_json(&self) -> &serde_json::Value {
        &self.0
    }
}
