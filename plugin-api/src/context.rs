//! What an analyzer sees during a run: the [`Context`] and the [`Host`] services.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use abi_stable::std_types::{RNone, RSome, RStr};
use serde::de::DeserializeOwned;

use crate::ffi::{ErrorCode, FfiContext, FfiHostRef, FfiMessage};
use crate::{
    Completion, CompletionRequest, Config, Error, ErrorKind, Hook, Origin, Result, Role, SearchHit,
    SearchRequest,
};

/// One model message, borrowed for the duration of a run.
///
/// ```
/// use murmur_plugin_api::{Context, Message, Origin, Role};
///
/// /// The passages rag injected so far, with the analyzer that injected each.
/// fn passages<'a>(ctx: &Context<'a>) -> Vec<(&'a str, &'a str)> {
///     ctx.messages()
///         .filter(|m: &Message<'a>| m.origin == Origin::Injection && m.role == Role::User)
///         .map(|m| (m.name, m.content))
///         .collect()
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// Its role.
    pub role: Role,
    /// Where it came from.
    pub origin: Origin,
    /// Its text.
    pub content: &'a str,
    /// The analyzer name for injections, the tool name for tool results, else empty.
    pub name: &'a str,
}

impl<'a> Message<'a> {
    fn from_ffi(m: &FfiMessage<'a>) -> Self {
        Message {
            role: Role::from_code(m.role).unwrap_or(Role::User),
            origin: Origin::from_code(m.origin).unwrap_or(Origin::User),
            content: m.content.as_str(),
            name: m.name.as_str(),
        }
    }
}

/// The per-run context of an analyzer (SPEC S27).
///
/// ```
/// use murmur_plugin_api::{Analyzer, Config, Context, Hook, Host, Injection, Origin, Result};
///
/// /// Counts the passages other analyzers put into the conversation.
/// struct PassageCount;
///
/// impl Analyzer for PassageCount {
///     const NAME: &'static str = "passage-count";
///     const HOOKS: &'static [Hook] = &[Hook::TurnComplete];
///     fn new(_config: Config) -> Result<Self> {
///         Ok(PassageCount)
///     }
///     fn analyze(&self, ctx: &Context<'_>, _host: &Host<'_>) -> Result<Vec<Injection>> {
///         let passages = ctx.messages().filter(|m| m.origin == Origin::Injection).count();
///         if passages > 10 && ctx.remaining().as_millis() > 0 {
///             let note = format!("Turn {}: {passages} passages so far; prefer the latest.", ctx.turn());
///             return Ok(vec![Injection::instructions(note).with_key("passages")]);
///         }
///         Ok(vec![])
///     }
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    raw: &'a FfiContext<'a>,
}

impl<'a> Context<'a> {
    /// Wraps the wire context. Used by the export adapters and the host's tests.
    pub fn from_ffi(raw: &'a FfiContext<'a>) -> Self {
        Context { raw }
    }

    /// The session this run is about.
    pub fn session_id(&self) -> &'a str {
        self.raw.session_id.as_str()
    }

    /// The turn this run is about, from 1.
    pub fn turn(&self) -> u64 {
        self.raw.turn
    }

    /// The step of the turn, from 1; 0 when the hook is not tied to a step.
    pub fn step(&self) -> u32 {
        self.raw.step
    }

    /// The hook that started this run.
    pub fn hook(&self) -> Hook {
        Hook::from_code(self.raw.hook).unwrap_or(Hook::TurnComplete)
    }

    /// The model messages so far (history, injections at their positions, tool results).
    pub fn messages(&self) -> impl ExactSizeIterator<Item = Message<'a>> + 'a {
        self.raw.messages.as_slice().iter().map(Message::from_ffi)
    }

    /// The latest user message, if any.
    pub fn latest_user(&self) -> Option<&'a str> {
        non_empty(self.raw.latest_user)
    }

    /// The latest assistant reply, if any.
    pub fn latest_reply(&self) -> Option<&'a str> {
        non_empty(self.raw.latest_reply)
    }

    /// The analyzer's own config table.
    pub fn config(&self) -> Config {
        Config::new(serde_json::from_str(self.raw.config_json.as_str()).unwrap_or_default())
    }

    /// The wall-clock deadline of this run.
    pub fn deadline(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.raw.deadline_unix_ms)
    }

    /// Time left until the deadline (zero once it passed).
    pub fn remaining(&self) -> Duration {
        self.deadline()
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }

    /// Facts added after the ABI froze, by name.
    pub fn extension<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        let all: serde_json::Value =
            serde_json::from_str(self.raw.extensions_json.as_str()).ok()?;
        serde_json::from_value(all.get(name)?.clone()).ok()
    }
}

fn non_empty(s: RStr<'_>) -> Option<&str> {
    let s = s.as_str();
    (!s.is_empty()).then_some(s)
}

/// Log levels for [`Host::log`].
///
/// ```
/// use murmur_plugin_api::{Host, Level};
///
/// fn report(host: &Host<'_>, skipped: usize) {
///     // Shown with the analyzer's name and session; `MURMUR_LOG=debug` shows `Debug`.
///     host.log(Level::Debug, &format!("skipped {skipped} short messages"));
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something failed.
    Error,
    /// Something looks wrong.
    Warn,
    /// Normal operation.
    Info,
    /// Detail for debugging.
    Debug,
    /// Everything.
    Trace,
}

/// ```
/// use murmur_plugin_api::{
///     Analyzer, ChatMessage, CompletionRequest, Config, Context, Error, ErrorKind, Hook, Host,
///     Injection, Level, Result,
/// };
///
/// /// Asks a small model whether the reply was rude; remembers how often it was.
/// struct Politeness;
///
/// impl Analyzer for Politeness {
///     const NAME: &'static str = "politeness";
///     const HOOKS: &'static [Hook] = &[Hook::TurnComplete];
///     fn new(_config: Config) -> Result<Self> {
///         Ok(Politeness)
///     }
///     fn analyze(&self, ctx: &Context<'_>, host: &Host<'_>) -> Result<Vec<Injection>> {
///         let Some(reply) = ctx.latest_reply() else { return Ok(vec![]) };
///         if host.cancelled() {
///             return Err(Error::cancelled());
///         }
///         let request = CompletionRequest {
///             messages: vec![ChatMessage::user(format!("Is this rude? Answer yes or no.\n{reply}"))],
///             max_tokens: Some(3),
///             ..CompletionRequest::default()
///         };
///         let answer = match host.complete(&request) {
///             Ok(a) => a,
///             // A host without `complete`: nothing to do here.
///             Err(e) if e.kind() == ErrorKind::Unsupported => return Ok(vec![]),
///             Err(e) => return Err(e),
///         };
///         if !answer.text.trim().to_lowercase().starts_with("yes") {
///             return Ok(vec![]);
///         }
///         let times = host.state_get("rude").and_then(|n| n.parse::<u32>().ok()).unwrap_or(0) + 1;
///         host.state_put("rude", &times.to_string());
///         host.log(Level::Info, &format!("rude reply number {times}"));
///         Ok(vec![Injection::instructions("Stay polite.").with_key("politeness")])
///     }
/// }
/// ```
/// Services the host offers during a call. All calls block the calling plugin thread.
pub struct Host<'a> {
    raw: FfiHostRef<'a>,
}

impl std::fmt::Debug for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Host")
    }
}

impl<'a> Host<'a> {
    /// Wraps the wire services object. Used by the export adapters.
    pub fn from_ffi(raw: FfiHostRef<'a>) -> Self {
        Host { raw }
    }

    /// Writes a log line attributed to this analyzer and session.
    pub fn log(&self, level: Level, message: &str) {
        let code = match level {
            Level::Error => 0,
            Level::Warn => 1,
            Level::Info => 2,
            Level::Debug => 3,
            Level::Trace => 4,
        };
        self.raw.log(code, message.into());
    }

    /// Reads this analyzer's state for this session.
    pub fn state_get(&self, key: &str) -> Option<String> {
        self.raw.state_get(key.into()).into_option().map(Into::into)
    }

    /// Writes this analyzer's state for this session.
    pub fn state_put(&self, key: &str, value: &str) {
        self.raw.state_put(key.into(), RSome(value.into()));
    }

    /// Removes this analyzer's state for this session.
    pub fn state_remove(&self, key: &str) {
        self.raw.state_put(key.into(), RNone);
    }

    /// Whether the host asked this run to stop. Long work should check it regularly and
    /// return [`Error::cancelled`].
    pub fn cancelled(&self) -> bool {
        self.raw.cancelled()
    }

    /// The host's capabilities (service names).
    pub fn capabilities(&self) -> Vec<String> {
        serde_json::from_str(self.raw.capabilities().as_str()).unwrap_or_default()
    }

    /// Calls a model through the host (`complete` capability). Blocks until the answer, the
    /// run's deadline or its cancellation. With `json_schema`, `Completion::json` holds a
    /// value that parsed and validated against it; otherwise this returns an error.
    pub fn complete(&self, request: &CompletionRequest) -> Result<Completion> {
        let request = serde_json::to_value(request).map_err(Error::msg)?;
        let answer = self.call("complete", &request)?;
        serde_json::from_value(answer)
            .map_err(|e| Error::msg(format!("unexpected answer from `complete`: {e}")))
    }

    /// Searches the knowledge base (`search` capability): up to `k` passages, best first.
    /// Fails with [`ErrorKind::Unsupported`] when the host has no `[knowledge]` configured.
    pub fn search(&self, query: &str, k: u32) -> Result<Vec<SearchHit>> {
        let request = serde_json::to_value(SearchRequest {
            query: query.to_string(),
            k,
        })
        .map_err(Error::msg)?;
        let answer = self.call("search", &request)?;
        serde_json::from_value(answer)
            .map_err(|e| Error::msg(format!("unexpected answer from `search`: {e}")))
    }

    /// Calls a named host service with a JSON request.
    pub fn call(&self, service: &str, request: &serde_json::Value) -> Result<serde_json::Value> {
        let request = request.to_string();
        match self
            .raw
            .call(service.into(), request.as_str().into())
            .into_result()
        {
            Ok(text) => serde_json::from_str(text.as_str()).map_err(|e| {
                Error::msg(format!(
                    "host service `{service}` answered invalid JSON: {e}"
                ))
            }),
            Err(e) => Err(Error::new(
                match ErrorCode::from_u32(e.code) {
                    ErrorCode::Cancelled => ErrorKind::Cancelled,
                    ErrorCode::Unsupported | ErrorCode::UnknownName => ErrorKind::Unsupported,
                    _ => ErrorKind::Failed,
                },
                e.message.into_string(),
            )),
        }
    }
}
