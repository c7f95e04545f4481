//! The host side of the boundary: runs plugin analyzers and tools on the blocking pool and
//! serves host services to them. Types cross as the frozen R-structs of
//! `murmur_plugin_api::ffi`, borrowed from the host for the duration of one call.

use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RErr, RNone, ROk, ROption, RResult, RSome, RStr, RString};
use murmur_plugin_api::ffi::{
    ErrorCode, FfiAnalyzerBox, FfiContext, FfiError, FfiHostServices, FfiHostServices_TO,
    FfiMessage, FfiToolBox,
};
use murmur_plugin_api::{Injection, Role};

use crate::analyzer::{AnalyzerBackend, CancelFlag, RunError, RunRequest};
use crate::model::{BoxFuture, Messages};
use crate::services::{CallScope, ServiceError, ServiceHub, HOST_CAPABILITIES};
use crate::state::StateStore;
use crate::tool::ToolBackend;

/// An analyzer instance living in a plugin library.
pub struct PluginAnalyzer {
    instance: Arc<FfiAnalyzerBox>,
}

impl PluginAnalyzer {
    pub(crate) fn new(instance: FfiAnalyzerBox) -> Self {
        PluginAnalyzer {
            instance: Arc::new(instance),
        }
    }
}

impl AnalyzerBackend for PluginAnalyzer {
    fn run(&self, request: RunRequest) -> BoxFuture<'static, Result<Vec<Injection>, RunError>> {
        let instance = self.instance.clone();
        Box::pin(async move {
            // Plugin code blocks; it runs on the blocking pool. If the hard timeout drops this
            // future, the thread finishes on its own with the cancellation flag set.
            tokio::task::spawn_blocking(move || call_analyzer(&instance, &request))
                .await
                .unwrap_or_else(|e| {
                    Err(RunError::Panicked(format!(
                        "analyzer thread ended abnormally: {e}"
                    )))
                })
        })
    }
}

pub(crate) fn call_analyzer(
    instance: &FfiAnalyzerBox,
    request: &RunRequest,
) -> Result<Vec<Injection>, RunError> {
    let services = HostServices {
        owner: request.analyzer.clone(),
        session: request.session.clone(),
        cancel: request.cancel.clone(),
        state: request.state.clone(),
        hub: request.services.clone(),
        default_model: request.default_model.clone(),
        deadline: request.deadline,
        tokens: request.tokens.clone(),
    };
    let input = CallInput {
        session: &request.session,
        hook: request.hook,
        turn: request.turn,
        step: request.step,
        messages: request.view.abi().slice(),
        latest_user: request.view.latest_user.as_deref(),
        latest_reply: request.view.latest_reply.as_deref(),
        config_json: &request.config_json,
        deadline: request.deadline,
    };
    analyze(instance, &input, &services)
}

/// The owner of [`AbiMessages`]: the messages and their tool calls as JSON.
pub(crate) struct AbiOwner {
    messages: Messages,
    tool_calls: Vec<String>,
}

type FfiMessages<'a> = Vec<FfiMessage<'a>>;

self_cell::self_cell!(
    /// Messages as they cross the plugin ABI: borrowed views of the history's text, built
    /// once per analyzer view and shared by the runs that get it.
    pub(crate) struct AbiMessages {
        owner: AbiOwner,
        #[covariant]
        dependent: FfiMessages,
    }
);

impl AbiMessages {
    /// Builds the ABI form of `messages`.
    pub(crate) fn of(messages: &Messages) -> AbiMessages {
        // Tool calls cross as JSON; only the few messages that have them need any.
        let tool_calls: Vec<String> = messages
            .iter()
            .filter(|m| !m.tool_calls.is_empty())
            .map(|m| serde_json::to_string(&m.tool_calls).unwrap_or_default())
            .collect();
        let owner = AbiOwner {
            messages: messages.clone(),
            tool_calls,
        };
        AbiMessages::new(owner, |owner| {
            let mut calls = owner.tool_calls.iter();
            owner
                .messages
                .iter()
                .map(|m| FfiMessage {
                    role: m.role.code(),
                    origin: m.origin.code(),
                    content: m.content.as_str().into(),
                    name: m
                        .analyzer
                        .as_deref()
                        .or(m.tool_name.as_deref())
                        .unwrap_or("")
                        .into(),
                    tool_calls_json: if m.tool_calls.is_empty() {
                        "".into()
                    } else {
                        calls.next().map_or("", String::as_str).into()
                    },
                })
                .collect()
        })
    }

    /// The messages, ready for an `FfiContext`.
    pub(crate) fn slice(&self) -> &[FfiMessage<'_>] {
        self.borrow_dependent()
    }
}

/// What one analyzer call is given, borrowed from the host or from a runner's frame.
pub(crate) struct CallInput<'a> {
    pub session: &'a str,
    pub hook: murmur_plugin_api::Hook,
    pub turn: u64,
    pub step: u32,
    pub messages: &'a [FfiMessage<'a>],
    pub latest_user: Option<&'a str>,
    pub latest_reply: Option<&'a str>,
    pub config_json: &'a str,
    pub deadline: std::time::SystemTime,
}

/// Calls the analyzer across the boundary with these host services: in the host, or in a
/// `murmur plugin-runner` child whose services go back to the host over a pipe.
pub(crate) fn analyze<S: FfiHostServices>(
    instance: &FfiAnalyzerBox,
    input: &CallInput<'_>,
    services: &S,
) -> Result<Vec<Injection>, RunError> {
    let ctx = FfiContext {
        session_id: input.session.into(),
        turn: input.turn,
        step: input.step,
        hook: input.hook.code(),
        messages: input.messages.into(),
        latest_user: input.latest_user.unwrap_or("").into(),
        latest_reply: input.latest_reply.unwrap_or("").into(),
        config_json: input.config_json.into(),
        deadline_unix_ms: murmur_plugin_api::ffi::unix_ms(input.deadline),
        extensions_json: "{}".into(),
    };
    let host = FfiHostServices_TO::from_ptr(services, TD_Opaque);
    match instance.analyze(&ctx, host).into_result() {
        Ok(injections) => Ok(injections
            .into_iter()
            .map(|i| Injection {
                // Unknown role codes are refused like `tool` (S5).
                role: Role::from_code(i.role).unwrap_or(Role::Tool),
                content: i.content.into_string(),
                key: i.key.into_option().map(RString::into_string),
                details: serde_json::from_str(i.details_json.as_str()).ok(),
            })
            .collect()),
        Err(e) => Err(run_error(e)),
    }
}

fn run_error(e: FfiError) -> RunError {
    let message = e.message.into_string();
    match ErrorCode::from_u32(e.code) {
        ErrorCode::Panicked => RunError::Panicked(message),
        ErrorCode::Cancelled => RunError::Cancelled(message),
        _ => RunError::Failed(message),
    }
}

/// A tool instance living in a plugin library.
pub struct PluginTool {
    name: Arc<str>,
    instance: Arc<FfiToolBox>,
    state: StateStore,
}

impl PluginTool {
    pub(crate) fn new(name: Arc<str>, instance: FfiToolBox, state: StateStore) -> Self {
        PluginTool {
            name,
            instance: Arc::new(instance),
            state,
        }
    }
}

impl ToolBackend for PluginTool {
    fn call(
        &self,
        arguments: serde_json::Value,
        session: Arc<str>,
    ) -> BoxFuture<'static, Result<String, String>> {
        let instance = self.instance.clone();
        let services = HostServices {
            owner: self.name.clone(),
            session,
            cancel: CancelFlag::default(),
            state: self.state.clone(),
            hub: None,
            default_model: None,
            deadline: std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
            tokens: Arc::default(),
        };
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let args = arguments.to_string();
                let host = FfiHostServices_TO::from_ptr(&services, TD_Opaque);
                instance
                    .call(args.as_str().into(), host)
                    .into_result()
                    .map(RString::into_string)
                    .map_err(|e| e.message.into_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("tool thread ended abnormally: {e}")))
        })
    }
}

/// Host services for one call, attributed to an analyzer (or tool) and a session.
struct HostServices {
    owner: Arc<str>,
    session: Arc<str>,
    cancel: CancelFlag,
    state: StateStore,
    hub: Option<Arc<ServiceHub>>,
    default_model: Option<Arc<str>>,
    deadline: std::time::SystemTime,
    tokens: Arc<std::sync::atomic::AtomicU64>,
}

impl FfiHostServices for HostServices {
    fn log(&self, level: u8, message: RStr<'_>) {
        plugin_log(level, &self.owner, &self.session, message.as_str());
    }

    fn state_get(&self, key: RStr<'_>) -> ROption<RString> {
        match self.state.get(&self.owner, &self.session, key.as_str()) {
            Some(v) => RSome(v.into()),
            None => RNone,
        }
    }

    fn state_put(&self, key: RStr<'_>, value: ROption<RStr<'_>>) {
        let value = value.into_option().map(|v| v.as_str().to_string());
        self.state
            .put(&self.owner, &self.session, key.as_str(), value);
    }

    fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn call(&self, service: RStr<'_>, request_json: RStr<'_>) -> RResult<RString, FfiError> {
        let Some(hub) = &self.hub else {
            return RErr(FfiError {
                code: ErrorCode::Unsupported as u32,
                message: format!("host service `{}` is not available here", service.as_str())
                    .into(),
            });
        };
        let scope = CallScope {
            session: &self.session,
            default_model: self.default_model.as_deref(),
            cancel: &self.cancel,
            deadline: self.deadline,
            tokens: &self.tokens,
        };
        match call_service(hub, service.as_str(), request_json.as_str(), &scope) {
            Ok(text) => ROk(text.into()),
            Err((code, message)) => RErr(FfiError {
                code: code as u32,
                message: message.into(),
            }),
        }
    }

    fn capabilities(&self) -> RString {
        serde_json::to_string(HOST_CAPABILITIES)
            .unwrap_or_default()
            .into()
    }
}

/// Calls a host service for plugin code, in the host or for a runner child: a panic in host
/// code becomes an error rather than unwinding into the plugin.
pub(crate) fn call_service(
    hub: &ServiceHub,
    service: &str,
    request_json: &str,
    scope: &CallScope<'_>,
) -> Result<String, (ErrorCode, String)> {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        hub.call(service, request_json, scope)
    }))
    .unwrap_or_else(|_| Err(ServiceError::Failed("host service panicked".into())));
    result.map_err(|e| match e {
        ServiceError::Unsupported(m) => (ErrorCode::Unsupported, m),
        ServiceError::Cancelled(m) => (ErrorCode::Cancelled, m),
        ServiceError::Failed(m) => (ErrorCode::Failed, m),
    })
}

/// A log line of plugin code, attributed to its analyzer (or tool) and session.
pub(crate) fn plugin_log(level: u8, owner: &str, session: &str, message: &str) {
    match level {
        0 => tracing::error!(target: "murmur::plugin", analyzer = owner, session, "{message}"),
        1 => tracing::warn!(target: "murmur::plugin", analyzer = owner, session, "{message}"),
        2 => tracing::info!(target: "murmur::plugin", analyzer = owner, session, "{message}"),
        3 => tracing::debug!(target: "murmur::plugin", analyzer = owner, session, "{message}"),
        _ => tracing::trace!(target: "murmur::plugin", analyzer = owner, session, "{message}"),
    }
}
