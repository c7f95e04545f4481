//! Host services that need the runtime: `complete` (call a configured model, optionally
//! with a JSON schema) and `search` (the knowledge base). Plugins reach them through
//! `Host::call`; the bridge forwards here from the plugin's blocking thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use murmur_plugin_api::{
    Completion, CompletionRequest, Origin, Role, SearchHit, SearchRequest, TokenUsage,
};
use tokio::runtime::Handle;

use crate::analyzer::CancelFlag;
use crate::knowledge::KnowledgeBase;
use crate::model::{ContextMessage, ModelInput, ModelReply, ModelRequest, Models};

/// Capabilities this host offers to plugins.
/// `search` is always offered; without a `[knowledge]` table a call fails with a message
/// that says so.
pub const HOST_CAPABILITIES: &[&str] = &["log", "state", "cancel", "complete", "search"];

/// Why a service call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceError {
    /// The host offers no such service (or none was configured).
    Unsupported(String),
    /// The run was cancelled or passed its deadline.
    Cancelled(String),
    /// Anything else.
    Failed(String),
}

/// What a service call needs to know about the run it serves.
#[derive(Debug, Clone)]
pub struct CallScope<'a> {
    /// Session id.
    pub session: &'a str,
    /// The analyzer's default model, if its table names one.
    pub default_model: Option<&'a str>,
    /// The run's cancellation flag.
    pub cancel: &'a CancelFlag,
    /// The run's deadline.
    pub deadline: SystemTime,
    /// Tokens used by this run so far.
    pub tokens: &'a AtomicU64,
}

/// The runtime side of host services.
pub struct ServiceHub {
    models: Arc<Models>,
    handle: Handle,
    knowledge: Option<Arc<KnowledgeBase>>,
}

impl std::fmt::Debug for ServiceHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceHub")
            .field("models", &self.models)
            .field("knowledge", &self.knowledge)
            .finish_non_exhaustive()
    }
}

impl ServiceHub {
    /// A hub over these models, running async work on `handle`.
    pub fn new(models: Arc<Models>, handle: Handle) -> Self {
        ServiceHub {
            models,
            handle,
            knowledge: None,
        }
    }

    /// Offers `search` over this knowledge base.
    pub fn with_knowledge(mut self, kb: Arc<KnowledgeBase>) -> Self {
        self.knowledge = Some(kb);
        self
    }

    /// Serves one call by name, from a blocking (non-runtime) thread.
    pub fn call(
        &self,
        service: &str,
        request_json: &str,
        scope: &CallScope<'_>,
    ) -> Result<String, ServiceError> {
        match service {
            "complete" => {
                let request: CompletionRequest =
                    serde_json::from_str(request_json).map_err(|e| {
                        ServiceError::Failed(format!("invalid `complete` request: {e}"))
                    })?;
                let answer = self.complete(request, scope)?;
                serde_json::to_string(&answer).map_err(|e| ServiceError::Failed(e.to_string()))
            }
            "search" => {
                let request: SearchRequest = serde_json::from_str(request_json)
                    .map_err(|e| ServiceError::Failed(format!("invalid `search` request: {e}")))?;
                let hits = self.search(&request)?;
                serde_json::to_string(&hits).map_err(|e| ServiceError::Failed(e.to_string()))
            }
            other => Err(ServiceError::Unsupported(format!(
                "this host offers no service `{other}` (capabilities: {})",
                HOST_CAPABILITIES.join(", ")
            ))),
        }
    }

    /// The `search` service: BM25 over the knowledge base.
    pub fn search(&self, request: &SearchRequest) -> Result<Vec<SearchHit>, ServiceError> {
        let Some(kb) = &self.knowledge else {
            return Err(ServiceError::Unsupported(
                "`search` needs a knowledge base: add a `[knowledge]` table with `path` to the config"
                    .into(),
            ));
        };
        kb.search(&request.query, request.k as usize)
            .map_err(|e| ServiceError::Failed(e.to_string()))
    }

    /// The `complete` service. With a JSON schema, local models decode under a grammar
    /// derived from it; every answer is parsed and validated, with one retry, and never
    /// returned unvalidated.
    pub fn complete(
        &self,
        request: CompletionRequest,
        scope: &CallScope<'_>,
    ) -> Result<Completion, ServiceError> {
        let name = request
            .model
            .as_deref()
            .or(scope.default_model)
            .unwrap_or(crate::config::DEFAULT_MODEL_NAME);
        let model = match self.models.named.get(name) {
            Some(m) => m.clone(),
            None if request.model.is_none() && scope.default_model.is_none() => {
                self.models.chat.clone()
            }
            None => {
                return Err(ServiceError::Failed(format!(
                    "no model named `{name}` (configured: {})",
                    self.models
                        .named
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
        };
        let validator = match &request.json_schema {
            Some(schema) => Some(
                jsonschema::validator_for(schema)
                    .map_err(|e| ServiceError::Failed(format!("invalid json_schema: {e}")))?,
            ),
            None => None,
        };
        let input = Arc::new(ModelInput {
            session: scope.session.to_string(),
            turn: 0,
            step: 0,
            instructions: request.system.clone().unwrap_or_default(),
            messages: request
                .messages
                .iter()
                .map(|m| ContextMessage {
                    role: m.role,
                    content: m.content.clone(),
                    origin: match m.role {
                        Role::Assistant => Origin::Assistant,
                        _ => Origin::User,
                    },
                    analyzer: None,
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                    tool_name: None,
                })
                .collect(),
        });
        let attempts = if validator.is_some() { 2 } else { 1 };
        let mut last_problem = String::new();
        for _ in 0..attempts {
            let (chunks, _ignored) = tokio::sync::mpsc::unbounded_channel();
            let mut call = ModelRequest::new(input.clone(), Arc::from(Vec::new()), chunks);
            call.max_tokens = request.max_tokens;
            call.temperature = request.temperature;
            call.json_schema = request.json_schema.clone();
            let reply = self.run_bounded(model.call(call), scope)?;
            let usage = TokenUsage {
                prompt_tokens: reply.usage.prompt_tokens,
                completion_tokens: reply.usage.completion_tokens,
            };
            scope.tokens.fetch_add(
                usage.prompt_tokens + usage.completion_tokens,
                Ordering::Relaxed,
            );
            let Some(validator) = &validator else {
                return Ok(Completion {
                    text: reply.text,
                    json: None,
                    usage,
                });
            };
            match serde_json::from_str::<serde_json::Value>(reply.text.trim()) {
                Ok(value) => match validator.validate(&value) {
                    Ok(()) => {
                        return Ok(Completion {
                            text: reply.text,
                            json: Some(value),
                            usage,
                        })
                    }
                    Err(e) => last_problem = format!("does not match the schema: {e}"),
                },
                Err(e) => last_problem = format!("is not JSON: {e}"),
            }
        }
        Err(ServiceError::Failed(format!(
            "model `{name}` gave no valid answer in {attempts} tries: its output {last_problem}"
        )))
    }

    /// Runs a model call on the runtime, giving up at the run's deadline or cancellation.
    fn run_bounded(
        &self,
        call: crate::model::BoxFuture<'static, Result<ModelReply, crate::model::ModelError>>,
        scope: &CallScope<'_>,
    ) -> Result<ModelReply, ServiceError> {
        let left = scope
            .deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let cancel = scope.cancel.clone();
        self.handle.block_on(async move {
            let cancelled = async {
                while !cancel.is_cancelled() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            tokio::select! {
                r = call => r.map_err(|e| ServiceError::Failed(e.to_string())),
                _ = tokio::time::sleep(left) => Err(ServiceError::Cancelled("the run's deadline passed during `complete`".into())),
                _ = cancelled => Err(ServiceError::Cancelled("the run was cancelled during `complete`".into())),
            }
        })
    }
}
