//! The chat model: one trait, one provider per file.
//!
//! A provider receives the exact [`ModelInput`] of a step, streams text chunks through the
//! request's channel and returns the final [`ModelReply`]: text, tool calls, or both.

pub mod embedding;
pub mod local;
pub mod messages;
pub mod openai;
pub mod scripted;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use murmur_plugin_api::{Origin, Role};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use messages::Messages;

/// A boxed future, as returned by providers and backends.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A tool call requested by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id, echoed by the tool result.
    pub id: String,
    /// Tool name.
    pub name: String,
    /// Arguments object.
    pub arguments: serde_json::Value,
}

/// One message of the model context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextMessage {
    /// Its role.
    pub role: Role,
    /// Its text.
    pub content: String,
    /// Where it came from (S40).
    pub origin: Origin,
    /// For injections: the analyzer(s) that made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analyzer: Option<String>,
    /// For assistant messages that call tools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// For tool results: the call they answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// For tool results: the tool's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

impl ContextMessage {
    /// A message typed by the user.
    pub fn user(content: impl Into<String>) -> Self {
        Self::plain(Role::User, Origin::User, content)
    }

    /// A reply of the model.
    pub fn assistant(content: impl Into<String>, tool_calls: Vec<ToolCall>) -> Self {
        ContextMessage {
            tool_calls,
            ..Self::plain(Role::Assistant, Origin::Assistant, content)
        }
    }

    /// A tool result.
    pub fn tool(call: &ToolCall, content: impl Into<String>) -> Self {
        ContextMessage {
            tool_call_id: Some(call.id.clone()),
            tool_name: Some(call.name.clone()),
            ..Self::plain(Role::Tool, Origin::Tool, content)
        }
    }

    /// A summary of older turns, written by context compaction.
    pub fn summary(content: impl Into<String>) -> Self {
        Self::plain(Role::System, Origin::Summary, content)
    }

    /// An injected message.
    pub fn injection(role: Role, content: impl Into<String>, analyzer: impl Into<String>) -> Self {
        ContextMessage {
            analyzer: Some(analyzer.into()),
            ..Self::plain(role, Origin::Injection, content)
        }
    }

    fn plain(role: Role, origin: Origin, content: impl Into<String>) -> Self {
        ContextMessage {
            role,
            content: content.into(),
            origin,
            analyzer: None,
            tool_calls: Vec::new(),
            tool_call_id: None,
            tool_name: None,
        }
    }

    /// Whether it belongs to the user-visible transcript (S4: injections never do).
    pub fn is_visible(&self) -> bool {
        matches!(self.origin, Origin::User | Origin::Assistant)
    }
}

/// The exact request the model receives for one step (S40's recorded line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInput {
    /// Session id.
    pub session: String,
    /// Turn, from 1.
    pub turn: u64,
    /// Step within the turn, from 1.
    pub step: u32,
    /// System text.
    pub instructions: String,
    /// Messages: a snapshot of the session's history, shared, not copied.
    pub messages: Messages,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// Name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON schema of its arguments.
    pub parameters: serde_json::Value,
}

/// Tokens a model call used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    /// Tokens of the model input.
    pub prompt_tokens: u64,
    /// Of those, tokens actually evaluated (the rest came from the cache).
    pub prompt_evaluated: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

/// The model's answer to one step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelReply {
    /// Text (possibly empty when it calls tools).
    pub text: String,
    /// Tool calls; none means the reply is final.
    pub tool_calls: Vec<ToolCall>,
    /// Tokens used, when the provider knows.
    pub usage: Usage,
}

/// One model call.
#[derive(Debug)]
pub struct ModelRequest {
    /// What the model sees.
    pub input: Arc<ModelInput>,
    /// Tools it may call.
    pub tools: Arc<[ToolSpec]>,
    /// Receives text chunks as they stream.
    pub chunks: mpsc::UnboundedSender<String>,
    /// Most tokens to generate (provider default when `None`).
    pub max_tokens: Option<u32>,
    /// Sampling temperature (provider default when `None`).
    pub temperature: Option<f32>,
    /// A JSON schema the output must follow (structured output): the local provider
    /// constrains decoding with a grammar derived from it, `openai` sends it as
    /// `response_format`.
    pub json_schema: Option<serde_json::Value>,
}

impl ModelRequest {
    /// A request with the provider's defaults.
    pub fn new(
        input: Arc<ModelInput>,
        tools: Arc<[ToolSpec]>,
        chunks: mpsc::UnboundedSender<String>,
    ) -> Self {
        ModelRequest {
            input,
            tools,
            chunks,
            max_tokens: None,
            temperature: None,
            json_schema: None,
        }
    }
}

/// A failed model call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model `{provider}`: {message}")]
pub struct ModelError {
    /// Which provider failed.
    pub provider: String,
    /// What happened.
    pub message: String,
}

/// A chat model.
pub trait ModelProvider: Send + Sync + 'static {
    /// Provider name for messages and events.
    fn name(&self) -> &str;

    /// Performs one model call. Dropping the future aborts it (stop, S36).
    fn call(&self, request: ModelRequest) -> BoxFuture<'static, Result<ModelReply, ModelError>>;

    /// The model's context length in tokens, when known. Context compaction needs it.
    fn context_length(&self) -> Option<u32> {
        None
    }

    /// The most tokens one reply may take by default, when known (room kept free in the
    /// context window for the answer).
    fn max_reply_tokens(&self) -> Option<u32> {
        None
    }

    /// How many tokens this input takes in the model's context. The default is an estimate
    /// ([`estimate_tokens`]); a provider with the model's tokenizer counts exactly.
    fn count_tokens(&self, input: Arc<ModelInput>) -> BoxFuture<'static, Result<u64, ModelError>> {
        let n = estimate_tokens(&input);
        Box::pin(async move { Ok(n) })
    }
}

/// A cautious token estimate for models whose tokenizer Murmur does not have: one token per
/// three bytes of text (English averages about four) plus a few per message for the chat
/// format. It errs on the high side, so compaction starts a little early rather than late.
pub fn estimate_tokens(input: &ModelInput) -> u64 {
    let text = |s: &str| (s.len() as u64).div_ceil(3);
    let mut n = text(&input.instructions) + 4;
    for m in &input.messages {
        n += 4 + text(&m.content);
        for c in &m.tool_calls {
            n += 4 + text(&c.name) + text(&c.arguments.to_string());
        }
    }
    n
}

/// Every configured model, built once per process and shared by all sessions and analyzers.
pub struct Models {
    /// The chat model.
    pub chat: Arc<dyn ModelProvider>,
    /// All models by config name (`default` is `[model]`).
    pub named: std::collections::BTreeMap<String, Arc<dyn ModelProvider>>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("named", &self.named.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Models {
    /// Loads every model of the config; `progress` hears about slow steps.
    pub fn build(
        config: &crate::config::Config,
        progress: &dyn Fn(&str),
    ) -> Result<Models, ModelError> {
        use crate::config::ModelConfig;
        let mut named: std::collections::BTreeMap<String, Arc<dyn ModelProvider>> =
            Default::default();
        let mut loaded: Vec<(ModelConfig, Arc<dyn ModelProvider>)> = Vec::new();
        // Local models by what needs a load of their own; sampling is per table.
        let mut weights: Vec<(&local::LocalSettings, Arc<local::LocalModel>)> = Vec::new();
        for (name, model) in &config.models {
            if let Some((_, shared)) = loaded.iter().find(|(m, _)| m == model) {
                named.insert(name.clone(), shared.clone());
                continue;
            }
            let provider: Arc<dyn ModelProvider> = match model {
                ModelConfig::Scripted {
                    script,
                    chunk_chars,
                } => Arc::new(scripted::ScriptedModel::load(script, *chunk_chars).map_err(
                    |e| ModelError {
                        provider: "scripted".into(),
                        message: e.to_string(),
                    },
                )?),
                ModelConfig::Local(settings) => {
                    let same_load = |s: &local::LocalSettings| {
                        s.path == settings.path
                            && s.context_length == settings.context_length
                            && s.threads == settings.threads
                            && s.kv_cache_reuse == settings.kv_cache_reuse
                    };
                    if let Some((_, m)) = weights.iter().find(|(s, _)| same_load(s)) {
                        let provider: Arc<dyn ModelProvider> =
                            Arc::new(m.with_sampling(settings.sampling.clone()));
                        loaded.push((model.clone(), provider.clone()));
                        named.insert(name.clone(), provider);
                        continue;
                    }
                    progress(&format!("loading model {} ...", settings.path.display()));
                    let started = std::time::Instant::now();
                    let m = local::LocalModel::load(settings)?;
                    progress(&format!(
                        "model ready in {:.2} s ({} tokens of context, {} threads)",
                        started.elapsed().as_secs_f64(),
                        m.info().context_length,
                        settings.threads
                    ));
                    let m = Arc::new(m);
                    weights.push((settings, m.clone()));
                    m
                }
                ModelConfig::OpenAi(settings) => Arc::new(openai::OpenAiModel::new(settings)?),
            };
            loaded.push((model.clone(), provider.clone()));
            named.insert(name.clone(), provider);
        }
        let chat = named
            .get(&config.chat_model)
            .cloned()
            .ok_or_else(|| ModelError {
                provider: "config".into(),
                message: format!("no model named `{}`", config.chat_model),
            })?;
        Ok(Models { chat, named })
    }
}
