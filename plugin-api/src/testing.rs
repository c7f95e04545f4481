//! A testing kit for analyzers (feature `testing`): a mock host, a builder for the context
//! of a run on any hook, and a conformance check every analyzer can run in its own tests.
//!
//! Add it as a dev-dependency with the feature on:
//!
//! ```toml
//! [dev-dependencies]
//! murmur-plugin-api = { version = "0.1", features = ["testing"] }
//! ```
//!
//! ```
//! use murmur_plugin_api::testing::{conformance, MockHost, Run};
//! use murmur_plugin_api::{Analyzer, Config, Context, Hook, Host, Injection, Result, Role};
//!
//! /// Asks for a shorter reply when the last one was long.
//! struct Brevity;
//!
//! impl Analyzer for Brevity {
//!     const NAME: &'static str = "brevity";
//!     const HOOKS: &'static [Hook] = &[Hook::TurnComplete];
//!     fn new(_config: Config) -> Result<Self> {
//!         Ok(Brevity)
//!     }
//!     fn analyze(&self, ctx: &Context<'_>, host: &Host<'_>) -> Result<Vec<Injection>> {
//!         let long = ctx.latest_reply().is_some_and(|r| r.len() > 20);
//!         host.state_put("seen", "yes");
//!         Ok(if long { vec![Injection::instructions("Be brief.")] } else { vec![] })
//!     }
//! }
//!
//! let host = MockHost::new();
//! let out = Run::new(Hook::TurnComplete)
//!     .user("Tell me about trains.")
//!     .assistant("Trains are long vehicles that run on rails, usually in groups of cars.")
//!     .analyze(&Brevity, &host)
//!     .expect("a note");
//! assert_eq!(out.len(), 1);
//! assert_eq!(out[0].role, Role::System);
//! assert_eq!(host.state("seen").as_deref(), Some("yes"));
//!
//! // Every analyzer can run this in its own tests.
//! conformance::<Brevity>(Config::new(serde_json::json!({}))).assert_ok();
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RErr, RNone, ROk, ROption, RResult, RSome, RStr, RString};

use crate::ffi::{
    ErrorCode, FfiContext, FfiError, FfiHostServices, FfiHostServices_TO, FfiMessage,
};
use crate::{
    capability, Analyzer, Completion, Config, Context, Hook, Host, Injection, Level, Origin,
    Result, Role, SearchHit, TokenUsage,
};

/// A service call the analyzer made: its name and its request as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceCall {
    /// `complete`, `search` or another service name.
    pub service: String,
    /// The request, as the analyzer sent it.
    pub request: serde_json::Value,
}

/// What a scripted service call answers.
#[derive(Debug, Clone)]
enum Answer {
    Ok(serde_json::Value),
    Err(ErrorCode, String),
}

/// Host services for tests: scripted answers for `complete`, `search` and any other
/// service, captured log lines and service calls, per-test state, and a cancellation switch.
///
/// Answers are given out in the order they were scripted, per service; a call with no
/// answer left fails with [`crate::ErrorKind::Unsupported`], as a host without that service
/// would answer.
#[derive(Debug, Default)]
pub struct MockHost {
    answers: Mutex<HashMap<String, VecDeque<Answer>>>,
    calls: Mutex<Vec<ServiceCall>>,
    logs: Mutex<Vec<(Level, String)>>,
    state: Mutex<HashMap<String, String>>,
    cancelled: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MockHost {
    /// A host with no scripted answers, no state, not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scripts the next answer of `service` as this JSON value.
    pub fn answer(self, service: &str, value: serde_json::Value) -> Self {
        lock(&self.answers)
            .entry(service.to_string())
            .or_default()
            .push_back(Answer::Ok(value));
        self
    }

    /// Scripts the next call of `service` to fail with this message.
    pub fn fail(self, service: &str, message: &str) -> Self {
        lock(&self.answers)
            .entry(service.to_string())
            .or_default()
            .push_back(Answer::Err(ErrorCode::Failed, message.to_string()));
        self
    }

    /// Scripts the next `complete` answer as plain text.
    pub fn complete_text(self, text: &str) -> Self {
        let completion = Completion {
            text: text.to_string(),
            json: None,
            usage: TokenUsage::default(),
        };
        self.answer(
            capability::COMPLETE,
            serde_json::to_value(completion).unwrap_or_default(),
        )
    }

    /// Scripts the next `complete` answer as structured output (a request with a JSON
    /// schema gets `json` back, and its text).
    pub fn complete_json(self, json: serde_json::Value) -> Self {
        let completion = Completion {
            text: json.to_string(),
            json: Some(json),
            usage: TokenUsage::default(),
        };
        self.answer(
            capability::COMPLETE,
            serde_json::to_value(completion).unwrap_or_default(),
        )
    }

    /// Scripts the next `search` answer.
    pub fn search_hits(self, hits: Vec<SearchHit>) -> Self {
        self.answer(
            capability::SEARCH,
            serde_json::to_value(hits).unwrap_or_default(),
        )
    }

    /// Sets a state value before the run, as an earlier run would have.
    pub fn with_state(self, key: &str, value: &str) -> Self {
        lock(&self.state).insert(key.to_string(), value.to_string());
        self
    }

    /// Asks the run to stop: [`Host::cancelled`] answers `true` from now on.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// The service calls made so far, in order.
    pub fn calls(&self) -> Vec<ServiceCall> {
        lock(&self.calls).clone()
    }

    /// The log lines written so far, in order.
    pub fn logs(&self) -> Vec<(Level, String)> {
        lock(&self.logs).clone()
    }

    /// A state value.
    pub fn state(&self, key: &str) -> Option<String> {
        lock(&self.state).get(key).cloned()
    }

    /// The services this host answers: those with a scripted answer.
    fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.answers).keys().cloned().collect();
        names.sort();
        names
    }
}

impl FfiHostServices for MockHost {
    fn log(&self, level: u8, message: RStr<'_>) {
        let level = match level {
            0 => Level::Error,
            1 => Level::Warn,
            2 => Level::Info,
            3 => Level::Debug,
            _ => Level::Trace,
        };
        lock(&self.logs).push((level, message.as_str().to_string()));
    }

    fn state_get(&self, key: RStr<'_>) -> ROption<RString> {
        match lock(&self.state).get(key.as_str()) {
            Some(v) => RSome(v.as_str().into()),
            None => RNone,
        }
    }

    fn state_put(&self, key: RStr<'_>, value: ROption<RStr<'_>>) {
        let mut state = lock(&self.state);
        match value {
            RSome(v) => state.insert(key.as_str().to_string(), v.as_str().to_string()),
            RNone => state.remove(key.as_str()),
        };
    }

    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    fn call(&self, service: RStr<'_>, request_json: RStr<'_>) -> RResult<RString, FfiError> {
        let request = serde_json::from_str(request_json.as_str())
            .unwrap_or_else(|_| serde_json::Value::String(request_json.as_str().to_string()));
        lock(&self.calls).push(ServiceCall {
            service: service.as_str().to_string(),
            request,
        });
        if self.cancelled() {
            return RErr(FfiError {
                code: ErrorCode::Cancelled as u32,
                message: "the run was cancelled".into(),
            });
        }
        let next = lock(&self.answers)
            .get_mut(service.as_str())
            .and_then(VecDeque::pop_front);
        match next {
            Some(Answer::Ok(value)) => ROk(value.to_string().into()),
            Some(Answer::Err(code, message)) => RErr(FfiError {
                code: code as u32,
                message: message.into(),
            }),
            None => RErr(FfiError {
                code: ErrorCode::Unsupported as u32,
                message: format!(
                    "the mock host has no answer for `{}` (scripted: {})",
                    service.as_str(),
                    self.services().join(", ")
                )
                .into(),
            }),
        }
    }

    fn capabilities(&self) -> RString {
        serde_json::to_string(&self.services())
            .unwrap_or_default()
            .into()
    }
}

/// One message of a [`Run`]'s context.
#[derive(Debug, Clone)]
struct TestMessage {
    role: Role,
    origin: Origin,
    content: String,
    name: String,
}

/// The context of one analyzer run on any hook, built message by message; then
/// [`Run::analyze`] calls the analyzer with it, as the host would.
#[derive(Debug, Clone)]
pub struct Run {
    hook: Hook,
    session: String,
    turn: u64,
    step: u32,
    messages: Vec<TestMessage>,
    config: serde_json::Value,
    deadline: Duration,
    extensions: serde_json::Value,
}

impl Run {
    /// A run on `hook`, turn 1 (step 1 for `step`), session `test`, no messages, a deadline
    /// 30 s away.
    pub fn new(hook: Hook) -> Self {
        Run {
            hook,
            session: "test".into(),
            turn: 1,
            step: if hook == Hook::Step { 1 } else { 0 },
            messages: Vec::new(),
            config: serde_json::Value::Object(Default::default()),
            deadline: Duration::from_secs(30),
            extensions: serde_json::Value::Object(Default::default()),
        }
    }

    /// The session id.
    pub fn session(mut self, id: &str) -> Self {
        self.session = id.to_string();
        self
    }

    /// The turn number, from 1.
    pub fn turn(mut self, turn: u64) -> Self {
        self.turn = turn;
        self
    }

    /// The step number (for `step` hooks).
    pub fn step(mut self, step: u32) -> Self {
        self.step = step;
        self
    }

    /// A message typed by the user.
    pub fn user(self, text: &str) -> Self {
        self.message(Role::User, Origin::User, text, "")
    }

    /// A reply of the model.
    pub fn assistant(self, text: &str) -> Self {
        self.message(Role::Assistant, Origin::Assistant, text, "")
    }

    /// A tool result, from the tool `name`.
    pub fn tool_result(self, name: &str, text: &str) -> Self {
        self.message(Role::Tool, Origin::Tool, text, name)
    }

    /// A context-lane injection an analyzer (`analyzer`) made earlier.
    pub fn injection(self, role: Role, analyzer: &str, text: &str) -> Self {
        self.message(role, Origin::Injection, text, analyzer)
    }

    fn message(mut self, role: Role, origin: Origin, text: &str, name: &str) -> Self {
        self.messages.push(TestMessage {
            role,
            origin,
            content: text.to_string(),
            name: name.to_string(),
        });
        self
    }

    /// The analyzer's config table as [`Context::config`] returns it.
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }

    /// Time until the run's deadline.
    pub fn deadline_in(mut self, left: Duration) -> Self {
        self.deadline = left;
        self
    }

    /// An extension fact, as [`Context::extension`] reads it.
    pub fn extension(mut self, name: &str, value: serde_json::Value) -> Self {
        if let serde_json::Value::Object(map) = &mut self.extensions {
            map.insert(name.to_string(), value);
        }
        self
    }

    /// Calls `analyzer` with this context and `host`'s services.
    pub fn analyze<A: Analyzer>(&self, analyzer: &A, host: &MockHost) -> Result<Vec<Injection>> {
        let latest = |role: Role| {
            self.messages
                .iter()
                .rev()
                .find(|m| m.role == role && m.origin != Origin::Injection)
                .map_or("", |m| m.content.as_str())
        };
        let messages: Vec<FfiMessage<'_>> = self
            .messages
            .iter()
            .map(|m| FfiMessage {
                role: m.role.code(),
                origin: m.origin.code(),
                content: m.content.as_str().into(),
                name: m.name.as_str().into(),
                tool_calls_json: "".into(),
            })
            .collect();
        let config_json = self.config.to_string();
        let extensions_json = self.extensions.to_string();
        let deadline = SystemTime::now() + self.deadline;
        let raw = FfiContext {
            session_id: self.session.as_str().into(),
            turn: self.turn,
            step: self.step,
            hook: self.hook.code(),
            messages: messages.as_slice().into(),
            latest_user: latest(Role::User).into(),
            latest_reply: latest(Role::Assistant).into(),
            config_json: config_json.as_str().into(),
            deadline_unix_ms: crate::ffi::unix_ms(deadline),
            extensions_json: extensions_json.as_str().into(),
        };
        let ctx = Context::from_ffi(&raw);
        let host = Host::from_ffi(FfiHostServices_TO::from_ptr(host, TD_Opaque));
        analyzer.analyze(&ctx, &host)
    }
}

/// The deadline of every conformance run: a run must return before it. Generous, because
/// analyzers' own tests usually run unoptimised on busy machines; a run that reaches it is
/// stuck or far too slow.
pub const CONFORMANCE_DEADLINE: Duration = Duration::from_secs(10);

/// What [`conformance`] found.
#[derive(Debug, Clone, Default)]
pub struct Conformance {
    /// The checks that ran, one line each.
    pub passed: Vec<String>,
    /// The checks that failed, with what happened.
    pub failures: Vec<String>,
}

impl Conformance {
    /// Whether every check passed.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// Panics with every failure, for use in a test.
    #[track_caller]
    pub fn assert_ok(&self) {
        assert!(self.is_ok(), "{self}");
    }
}

impl fmt::Display for Conformance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} conformance checks passed, {} failed",
            self.passed.len(),
            self.failures.len()
        )?;
        for failure in &self.failures {
            writeln!(f, "  failed: {failure}")?;
        }
        Ok(())
    }
}

/// Checks what the host relies on, for every hook `A` subscribes to: a run on an empty
/// context, on 2,000 messages, on a 1 MB message and on a host that has asked it to stop
/// returns (with injections or an error, never a panic) before its deadline,
/// [`CONFORMANCE_DEADLINE`] away;
/// and no injection has the `tool` role (the host refuses it) or empty text. Service calls
/// get no answer, as from a host without those services, which an analyzer must survive.
pub fn conformance<A: Analyzer>(config: Config) -> Conformance {
    conformance_within::<A>(config, CONFORMANCE_DEADLINE)
}

/// [`conformance`] with another deadline for each run.
pub fn conformance_within<A: Analyzer>(config: Config, deadline: Duration) -> Conformance {
    let mut report = Conformance::default();
    let analyzer = match catch_unwind(AssertUnwindSafe(|| A::new(config.clone()))) {
        Ok(Ok(a)) => a,
        Ok(Err(e)) => {
            report.failures.push(format!(
                "{}::new refused the config {}: {e}",
                A::NAME,
                config.as_json()
            ));
            return report;
        }
        Err(_) => {
            report
                .failures
                .push(format!("{}::new panicked on {}", A::NAME, config.as_json()));
            return report;
        }
    };
    let huge_text = "All work and no play makes a long message. ".repeat(25_000);
    for &hook in A::HOOKS {
        let empty = Run::new(hook)
            .config(config.as_json().clone())
            .deadline_in(deadline);
        let mut many = empty.clone().turn(1000);
        for i in 0..1000 {
            many = many
                .user(&format!("Question {i}: when did the line open?"))
                .assistant(&format!("Answer {i}: it opened in 1897."));
        }
        let huge = empty.clone().user(&huge_text).assistant(&huge_text);
        let cases = [
            ("an empty context", empty.clone(), false),
            ("2,000 messages", many, false),
            ("a 1 MB message", huge, false),
            (
                "a cancelled host",
                empty.user("Hello?").assistant("Hi."),
                true,
            ),
        ];
        for (what, run, cancelled) in cases {
            let name = format!("{} on {} with {what}", A::NAME, hook.as_str());
            let host = MockHost::new();
            if cancelled {
                host.cancel();
            }
            let started = Instant::now();
            let result = catch_unwind(AssertUnwindSafe(|| run.analyze(&analyzer, &host)));
            let took = started.elapsed();
            let failure = match result {
                Err(_) => Some("panicked".to_string()),
                _ if took > deadline => Some(format!(
                    "took {:.2} s, past its deadline of {:.2} s",
                    took.as_secs_f64(),
                    deadline.as_secs_f64()
                )),
                // The host discards what a cancelled run returns; it only needs it to end.
                Ok(Ok(injections)) => check_injections(&injections),
                // Failing is allowed: the host reports it and goes on.
                Ok(Err(_)) => None,
            };
            match failure {
                Some(why) => report.failures.push(format!("{name}: {why}")),
                None => report.passed.push(name),
            }
        }
    }
    if A::HOOKS.is_empty() {
        report
            .failures
            .push(format!("{} subscribes to no hook", A::NAME));
    }
    report
}

fn check_injections(injections: &[Injection]) -> Option<String> {
    for (i, injection) in injections.iter().enumerate() {
        if injection.role == Role::Tool {
            return Some(format!(
                "injection {} has the tool role, which the host refuses",
                i + 1
            ));
        }
        if injection.content.trim().is_empty() {
            return Some(format!("injection {} is empty", i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// Echoes what it was given, asks `complete` and `search`, and misbehaves on request.
    struct Probe {
        behaviour: String,
    }

    impl Analyzer for Probe {
        const NAME: &'static str = "probe";
        const HOOKS: &'static [Hook] = &[Hook::TurnStart, Hook::TurnComplete];

        fn new(config: Config) -> Result<Self> {
            Ok(Probe {
                behaviour: config.as_json()["behaviour"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            })
        }

        fn analyze(&self, ctx: &Context<'_>, host: &Host<'_>) -> Result<Vec<Injection>> {
            let long = ctx.messages().any(|m| m.content.len() > 100_000);
            match self.behaviour.as_str() {
                "panic" => panic!("probe panics"),
                "tool" => return Ok(vec![Injection::new(Role::Tool, "result")]),
                "slow-on-huge" if long => {
                    std::thread::sleep(ctx.remaining() + Duration::from_millis(50))
                }
                _ => {}
            }
            host.log(Level::Info, &format!("hook {}", ctx.hook().as_str()));
            Ok(vec![Injection::context(format!(
                "{} messages, user: {}",
                ctx.messages().len(),
                ctx.latest_user().unwrap_or("-")
            ))])
        }
    }

    fn probe(behaviour: &str) -> Config {
        Config::new(serde_json::json!({ "behaviour": behaviour }))
    }

    #[test]
    fn a_run_carries_its_messages_hook_and_config_and_the_host_records_logs() {
        let host = MockHost::new();
        let out = Run::new(Hook::TurnComplete)
            .turn(3)
            .user("first")
            .assistant("reply")
            .injection(Role::User, "rag", "a passage")
            .user("second")
            .analyze(
                &Probe {
                    behaviour: String::new(),
                },
                &host,
            )
            .expect("runs");
        assert_eq!(out[0].content, "4 messages, user: second");
        assert_eq!(
            host.logs(),
            vec![(Level::Info, "hook turn_complete".to_string())]
        );
    }

    #[test]
    fn scripted_answers_come_in_order_and_a_missing_one_is_unsupported() {
        let host = MockHost::new()
            .complete_text("first")
            .complete_json(serde_json::json!({"ok": true}))
            .fail(capability::SEARCH, "index offline");
        let raw = FfiHostServices_TO::from_ptr(&host, TD_Opaque);
        let h = Host::from_ffi(raw);
        let request = crate::CompletionRequest::default();
        assert_eq!(h.complete(&request).expect("first").text, "first");
        assert_eq!(
            h.complete(&request).expect("second").json,
            Some(serde_json::json!({"ok": true}))
        );
        let e = h.complete(&request).expect_err("none left");
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = h.search("trains", 3).expect_err("scripted failure");
        assert_eq!(
            (e.kind(), e.message()),
            (ErrorKind::Failed, "index offline")
        );
        let calls = host.calls();
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[3].service, "search");
        assert_eq!(calls[3].request["query"], "trains");
        host.cancel();
        assert!(h.cancelled());
        let e = h.complete(&request).expect_err("cancelled");
        assert_eq!(e.kind(), ErrorKind::Cancelled);
    }

    #[test]
    fn state_set_before_a_run_is_seen_and_changes_are_kept() {
        let host = MockHost::new().with_state("count", "1");
        let h = Host::from_ffi(FfiHostServices_TO::from_ptr(&host, TD_Opaque));
        assert_eq!(h.state_get("count").as_deref(), Some("1"));
        h.state_put("count", "2");
        h.state_remove("gone");
        assert_eq!(host.state("count").as_deref(), Some("2"));
    }

    #[test]
    fn conformance_passes_a_well_behaved_analyzer_on_every_hook() {
        let report = conformance::<Probe>(probe(""));
        report.assert_ok();
        assert_eq!(report.passed.len(), 8, "{report}");
    }

    #[test]
    fn conformance_names_a_panic_a_tool_injection_and_a_slow_run() {
        let report = conformance::<Probe>(probe("panic"));
        assert_eq!(report.failures.len(), 8, "{report}");
        assert!(report.failures[0].ends_with("panicked"), "{report}");
        let report = conformance::<Probe>(probe("tool"));
        assert!(report.failures[0].contains("the tool role"), "{report}");
        let report = conformance_within::<Probe>(probe("slow-on-huge"), Duration::from_millis(300));
        assert_eq!(report.failures.len(), 2, "{report}");
        assert!(
            report.failures[0].contains("a 1 MB message: took"),
            "{report}"
        );
    }
}
