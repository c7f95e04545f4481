//! The `openai` provider: any server that speaks the OpenAI chat-completions API
//! (`POST {base_url}/chat/completions`), streaming (server-sent events) or not.
//!
//! Tool calls (parallel ones too) arrive as deltas keyed by index and are assembled here;
//! a JSON schema travels as `response_format`. Requests that fail before any text reached
//! the user are retried with exponential backoff on 429, 5xx and connection errors, honouring
//! `Retry-After`; a request that fails after text was streamed is not retried (the user has
//! seen it). Every error names the server and what it answered.

use std::collections::BTreeMap;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use murmur_plugin_api::Role;
use serde_json::{json, Value};

use super::{
    BoxFuture, ContextMessage, ModelError, ModelInput, ModelProvider, ModelReply, ModelRequest,
    ToolCall, ToolSpec, Usage,
};

/// Default time to wait for the server: for the response to start, and between two chunks of
/// a stream.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default retries after the first attempt.
pub const DEFAULT_MAX_RETRIES: u32 = 3;
/// The longest `Retry-After` honoured; a server asking for more gets this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How to reach an OpenAI-compatible server (config keys of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiSettings {
    /// The API root, e.g. `http://127.0.0.1:8080/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// Model name sent with each request.
    pub model: String,
    /// Environment variable holding the API key (sent as a bearer token), if any.
    pub api_key_env: Option<String>,
    /// The model's context length in tokens, if known (for compaction).
    pub context_length: Option<u32>,
    /// Time to wait for the response to start and between two stream chunks.
    pub timeout: Duration,
    /// Retries after the first attempt on 429, 5xx and connection errors.
    pub max_retries: u32,
    /// Stream the reply (server-sent events).
    pub stream: bool,
    /// Sampling temperature (server default when `None`).
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    pub top_p: Option<f32>,
    /// Most tokens per reply.
    pub max_tokens: Option<u32>,
    /// Random seed.
    pub seed: Option<u32>,
    /// Stop strings.
    pub stop: Vec<String>,
}

/// A client for one configured server and model. Cheap to share.
#[derive(Debug)]
pub struct OpenAiModel {
    settings: OpenAiSettings,
    endpoint: String,
    api_key: Option<String>,
    client: reqwest::Client,
}

impl OpenAiModel {
    /// Checks the settings and reads the API key from its environment variable.
    pub fn new(settings: &OpenAiSettings) -> Result<OpenAiModel, ModelError> {
        let api_key = match &settings.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.trim().is_empty() => Some(key.trim().to_string()),
                _ => {
                    return Err(error(format!(
                        "the API key variable {var} (api_key_env) is not set or empty"
                    )))
                }
            },
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|e| error(format!("cannot create the HTTP client: {e}")))?;
        Ok(OpenAiModel {
            endpoint: format!(
                "{}/chat/completions",
                settings.base_url.trim_end_matches('/')
            ),
            settings: settings.clone(),
            api_key,
            client,
        })
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

fn error(message: String) -> ModelError {
    ModelError {
        provider: "openai".to_string(),
        message,
    }
}

impl ModelProvider for OpenAiModel {
    fn name(&self) -> &str {
        "openai"
    }

    fn call(&self, request: ModelRequest) -> BoxFuture<'static, Result<ModelReply, ModelError>> {
        let body = request_body(&self.settings, &request);
        let attempt = Attempt {
            client: self.client.clone(),
            endpoint: self.endpoint.clone(),
            api_key: self.api_key.clone(),
            timeout: self.settings.timeout,
            stream: self.settings.stream,
            body,
        };
        let max_retries = self.settings.max_retries;
        Box::pin(async move {
            let mut retries = 0;
            loop {
                match attempt.run(&request.chunks).await {
                    Ok(reply) => return Ok(reply),
                    Err(failure) => {
                        let wait = match failure.retry {
                            Retry::After(wait) if retries < max_retries => wait,
                            Retry::Backoff if retries < max_retries => backoff(retries),
                            _ => return Err(error(failure.message)),
                        };
                        retries += 1;
                        tracing::warn!(
                            "{}; retry {retries} of {max_retries} in {:.1} s",
                            failure.message,
                            wait.as_secs_f64()
                        );
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        })
    }

    fn context_length(&self) -> Option<u32> {
        self.settings.context_length
    }
}

/// Wait before retry number `n + 1` when the server gave no `Retry-After`: 0.5 s, 1 s, 2 s, …
/// up to 8 s.
pub fn backoff(n: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << n.min(4)))
}

/// Reads a `Retry-After` header: seconds (the form API servers use), capped at
/// [`MAX_RETRY_AFTER`]. An HTTP date or garbage gives `None` (plain backoff applies).
pub fn retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some(Duration::from_secs_f64(seconds).min(MAX_RETRY_AFTER))
}

/// Whether a failed attempt may be retried, and when.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Retry {
    Never,
    Backoff,
    After(Duration),
}

#[derive(Debug)]
struct Failure {
    message: String,
    retry: Retry,
}

struct Attempt {
    client: reqwest::Client,
    endpoint: String,
    api_key: Option<String>,
    timeout: Duration,
    stream: bool,
    body: Value,
}

impl Attempt {
    async fn run(
        &self,
        chunks: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<ModelReply, Failure> {
        let server = &self.endpoint;
        let mut builder = self
            .client
            .post(server)
            .header("content-type", "application/json")
            .body(self.body.to_string());
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key);
        }
        let response = match tokio::time::timeout(self.timeout, builder.send()).await {
            Err(_) => {
                return Err(Failure {
                    message: format!(
                        "{server} did not answer within {}",
                        humantime::format_duration(self.timeout)
                    ),
                    retry: Retry::Backoff,
                })
            }
            Ok(Err(e)) => {
                return Err(Failure {
                    message: format!("cannot reach {server}: {}", error_chain(&e)),
                    retry: Retry::Backoff,
                })
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if !status.is_success() {
            let after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(retry_after);
            let body = tokio::time::timeout(self.timeout, response.text())
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            let retry = if status.as_u16() == 429 || status.is_server_error() {
                after.map_or(Retry::Backoff, Retry::After)
            } else {
                Retry::Never
            };
            return Err(Failure {
                message: format!("{server} answered {status}: {}", error_message(&body)),
                retry,
            });
        }
        if self.stream {
            self.read_stream(response, chunks).await
        } else {
            let body = tokio::time::timeout(self.timeout, response.text())
                .await
                .map_err(|_| Failure {
                    message: format!("{server} stopped sending its answer"),
                    retry: Retry::Backoff,
                })?
                .map_err(|e| Failure {
                    message: format!("reading the answer of {server}: {}", error_chain(&e)),
                    retry: Retry::Backoff,
                })?;
            let reply = parse_completion(&body).map_err(|e| Failure {
                message: format!("{server} sent an answer Murmur cannot read: {e}"),
                retry: Retry::Never,
            })?;
            if !reply.text.is_empty() {
                let _ = chunks.send(reply.text.clone());
            }
            Ok(reply)
        }
    }

    async fn read_stream(
        &self,
        response: reqwest::Response,
        chunks: &tokio::sync::mpsc::UnboundedSender<String>,
    ) -> Result<ModelReply, Failure> {
        let server = &self.endpoint;
        let mut events = response.bytes_stream().eventsource();
        let mut acc = StreamAccumulator::default();
        loop {
            let next = tokio::time::timeout(self.timeout, events.next()).await;
            // Once text reached the user, a retry would repeat it: fail instead.
            let retry = if acc.streamed_text {
                Retry::Never
            } else {
                Retry::Backoff
            };
            let event = match next {
                Err(_) => {
                    return Err(Failure {
                        message: format!(
                            "{server} sent nothing for {} in the middle of a stream",
                            humantime::format_duration(self.timeout)
                        ),
                        retry,
                    })
                }
                Ok(None) => {
                    return Err(Failure {
                        message: format!(
                            "{server} closed the stream before it was complete (no finish_reason, no [DONE])"
                        ),
                        retry,
                    })
                }
                Ok(Some(Err(e))) => {
                    return Err(Failure {
                        message: format!("the stream from {server} broke: {e}"),
                        retry,
                    })
                }
                Ok(Some(Ok(event))) => event,
            };
            if event.data.trim() == "[DONE]" {
                break;
            }
            let chunk: Value = serde_json::from_str(&event.data).map_err(|e| Failure {
                message: format!("{server} sent a stream event that is not JSON: {e}"),
                retry: Retry::Never,
            })?;
            if let Some(text) = acc.add(&chunk).map_err(|e| Failure {
                message: format!("{server}: {e}"),
                retry: Retry::Never,
            })? {
                let _ = chunks.send(text);
            }
        }
        if acc.finish_reason.is_none() {
            return Err(Failure {
                message: format!("{server} ended the stream without a finish_reason"),
                retry: Retry::Never,
            });
        }
        acc.finish().map_err(|e| Failure {
            message: format!("{server}: {e}"),
            retry: Retry::Never,
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The `error.message` of an OpenAI-style error body, or the body itself (shortened).
fn error_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error"))
            .or_else(|| v.get("message"))
            .and_then(Value::as_str)
    });
    let text = message.unwrap_or(body).trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    let mut short: String = text.chars().take(500).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

/// The JSON body of a chat-completions request for this step.
pub fn request_body(settings: &OpenAiSettings, request: &ModelRequest) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), json!(settings.model));
    body.insert("messages".into(), Value::Array(messages(&request.input)));
    if !request.tools.is_empty() {
        body.insert("tools".into(), tools(&request.tools));
    }
    if settings.stream {
        body.insert("stream".into(), json!(true));
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(t) = request.temperature.or(settings.temperature) {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = settings.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(n) = request.max_tokens.or(settings.max_tokens) {
        body.insert("max_tokens".into(), json!(n));
    }
    if let Some(seed) = settings.seed {
        body.insert("seed".into(), json!(seed));
    }
    if !settings.stop.is_empty() {
        body.insert("stop".into(), json!(settings.stop));
    }
    if let Some(schema) = &request.json_schema {
        body.insert(
            "response_format".into(),
            json!({
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": schema, "strict": true}
            }),
        );
    }
    Value::Object(body)
}

fn messages(input: &ModelInput) -> Vec<Value> {
    let mut out = Vec::with_capacity(input.messages.len() + 1);
    if !input.instructions.is_empty() {
        out.push(json!({"role": "system", "content": input.instructions}));
    }
    out.extend(input.messages.iter().map(message));
    out
}

/// A tool call as the OpenAI API writes it: the arguments are a JSON string.
pub fn wire_tool_call(c: &ToolCall) -> Value {
    json!({
        "id": c.id,
        "type": "function",
        "function": {"name": c.name, "arguments": c.arguments.to_string()},
    })
}

fn message(m: &ContextMessage) -> Value {
    match m.role {
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": m.tool_call_id.as_deref().unwrap_or_default(),
            "content": m.content,
        }),
        Role::Assistant if !m.tool_calls.is_empty() => {
            let calls: Vec<Value> = m.tool_calls.iter().map(wire_tool_call).collect();
            json!({
                "role": "assistant",
                "content": if m.content.is_empty() { Value::Null } else { json!(m.content) },
                "tool_calls": calls,
            })
        }
        role => json!({"role": role.as_str(), "content": m.content}),
    }
}

fn tools(tools: &[ToolSpec]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| {
                json!({
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    }
                })
            })
            .collect(),
    )
}

/// Reads a non-streamed chat completion.
pub fn parse_completion(body: &str) -> Result<ModelReply, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let message = v
        .pointer("/choices/0/message")
        .ok_or("no choices[0].message")?;
    let text = message
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut tool_calls = Vec::new();
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for (i, c) in calls.iter().enumerate() {
            let id = c.get("id").and_then(Value::as_str).unwrap_or_default();
            let name = c
                .pointer("/function/name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("tool_calls[{i}] has no function name"))?;
            let args = c
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("{}");
            tool_calls.push(tool_call(i, id, name, args)?);
        }
    }
    Ok(ModelReply {
        text,
        tool_calls,
        usage: usage(v.get("usage")),
    })
}

fn tool_call(index: usize, id: &str, name: &str, arguments: &str) -> Result<ToolCall, String> {
    let arguments = if arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(arguments).map_err(|e| {
            format!("the arguments of tool call {index} (`{name}`) are not JSON: {e}")
        })?
    };
    Ok(ToolCall {
        id: if id.is_empty() {
            format!("call_{index}")
        } else {
            id.to_string()
        },
        name: name.to_string(),
        arguments,
    })
}

fn usage(v: Option<&Value>) -> Usage {
    let Some(v) = v else {
        return Usage::default();
    };
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let prompt = n("/prompt_tokens");
    Usage {
        prompt_tokens: prompt,
        prompt_evaluated: prompt.saturating_sub(n("/prompt_tokens_details/cached_tokens")),
        completion_tokens: n("/completion_tokens"),
    }
}

/// Assembles a streamed reply from its `chat.completion.chunk` events.
#[derive(Debug, Default)]
pub struct StreamAccumulator {
    text: String,
    /// Tool calls by their `index`.
    calls: BTreeMap<u64, PartialCall>,
    finish_reason: Option<String>,
    usage: Usage,
    streamed_text: bool,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

impl StreamAccumulator {
    /// Adds one chunk; returns its text delta, if any, to stream to the user.
    pub fn add(&mut self, chunk: &Value) -> Result<Option<String>, String> {
        if let Some(message) = chunk.pointer("/error/message").and_then(Value::as_str) {
            return Err(format!("error in the stream: {message}"));
        }
        if chunk.get("usage").is_some_and(|u| !u.is_null()) {
            self.usage = usage(chunk.get("usage"));
        }
        let Some(choice) = chunk.pointer("/choices/0") else {
            return Ok(None);
        };
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(reason.to_string());
        }
        let Some(delta) = choice.get("delta") else {
            return Ok(None);
        };
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for (position, c) in calls.iter().enumerate() {
                let index = c
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(position as u64);
                let call = self.calls.entry(index).or_default();
                if let Some(id) = c.get("id").and_then(Value::as_str) {
                    call.id.push_str(id);
                }
                if let Some(name) = c.pointer("/function/name").and_then(Value::as_str) {
                    call.name.push_str(name);
                }
                if let Some(args) = c.pointer("/function/arguments").and_then(Value::as_str) {
                    call.arguments.push_str(args);
                }
            }
        }
        match delta.get("content").and_then(Value::as_str) {
            Some(text) if !text.is_empty() => {
                self.text.push_str(text);
                self.streamed_text = true;
                Ok(Some(text.to_string()))
            }
            _ => Ok(None),
        }
    }

    /// The finished reply.
    pub fn finish(self) -> Result<ModelReply, String> {
        let mut tool_calls = Vec::with_capacity(self.calls.len());
        for (i, call) in self.calls.values().enumerate() {
            if call.name.is_empty() {
                return Err(format!("tool call {i} has no function name"));
            }
            tool_calls.push(tool_call(i, &call.id, &call.name, &call.arguments)?);
        }
        Ok(ModelReply {
            text: self.text,
            tool_calls,
            usage: self.usage,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn settings() -> OpenAiSettings {
        OpenAiSettings {
            base_url: "http://127.0.0.1:9/v1/".into(),
            model: "m".into(),
            api_key_env: None,
            context_length: None,
            timeout: DEFAULT_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            stream: true,
            temperature: Some(0.0),
            top_p: None,
            max_tokens: Some(64),
            seed: None,
            stop: vec!["END".into()],
        }
    }

    fn input(messages: Vec<ContextMessage>) -> Arc<ModelInput> {
        Arc::new(ModelInput {
            session: "s".into(),
            turn: 1,
            step: 1,
            instructions: "Be brief.".into(),
            messages: messages.into(),
        })
    }

    #[test]
    fn the_body_carries_instructions_tool_calls_tool_results_tools_and_the_schema() {
        let call = ToolCall {
            id: "call_7".into(),
            name: "add".into(),
            arguments: json!({"a": 1}),
        };
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let mut request = ModelRequest::new(
            input(vec![
                ContextMessage::user("hi"),
                ContextMessage::assistant("", vec![call.clone()]),
                ContextMessage::tool(&call, "2"),
            ]),
            Arc::from(vec![ToolSpec {
                name: "add".into(),
                description: "adds".into(),
                parameters: json!({"type": "object"}),
            }]),
            tx,
        );
        request.json_schema = Some(json!({"type": "object"}));
        request.max_tokens = Some(9);
        let body = request_body(&settings(), &request);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_7", "type": "function", "function": {"name": "add", "arguments": "{\"a\":1}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_7", "content": "2"},
            ])
        );
        assert_eq!(body["tools"][0]["function"]["name"], "add");
        assert_eq!(
            body["max_tokens"], 9,
            "the call's limit wins over the config's"
        );
        assert_eq!(body["stop"], json!(["END"]));
        assert_eq!(body["stream"], true);
        assert_eq!(
            body["response_format"]["json_schema"]["schema"],
            json!({"type": "object"})
        );
    }

    #[test]
    fn streamed_parallel_tool_calls_are_assembled_by_index() {
        let mut acc = StreamAccumulator::default();
        let chunks = [
            json!({"choices": [{"delta": {"role": "assistant", "content": null}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "get", "arguments": "{\"ci"}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 1, "id": "b", "function": {"name": "get", "arguments": ""}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "ty\": \"Paris\"}"}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 1, "function": {"arguments": "{\"city\": \"Rome\"}"}}]}}]}),
            json!({"choices": [{"delta": {}, "finish_reason": "tool_calls"}]}),
            json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 4}}}),
        ];
        for c in &chunks {
            assert_eq!(acc.add(c).expect("test setup"), None);
        }
        assert_eq!(acc.finish_reason.as_deref(), Some("tool_calls"));
        let reply = acc.finish().expect("test setup");
        assert_eq!(reply.tool_calls.len(), 2);
        assert_eq!(reply.tool_calls[0].id, "a");
        assert_eq!(reply.tool_calls[0].arguments, json!({"city": "Paris"}));
        assert_eq!(reply.tool_calls[1].arguments, json!({"city": "Rome"}));
        assert_eq!(
            reply.usage,
            Usage {
                prompt_tokens: 10,
                prompt_evaluated: 6,
                completion_tokens: 5
            }
        );
    }

    #[test]
    fn broken_tool_arguments_and_stream_errors_are_reported() {
        let mut acc = StreamAccumulator::default();
        acc.add(&json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{oops"}}]}}]}))
            .expect("test setup");
        let e = acc.finish().expect_err("an error");
        assert!(e.contains("tool call 0 (`f`) are not JSON"), "{e}");
        let mut acc = StreamAccumulator::default();
        let e = acc
            .add(&json!({"error": {"message": "context overflow"}}))
            .expect_err("an error");
        assert!(e.contains("context overflow"), "{e}");
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        assert_eq!(retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(retry_after("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after("-1"), None);
        assert_eq!(backoff(0), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), Duration::from_secs(8));
    }

    #[test]
    fn error_bodies_are_reduced_to_their_message() {
        assert_eq!(
            error_message(r#"{"error": {"code": 400, "message": "bad things"}}"#),
            "bad things"
        );
        assert_eq!(error_message("plain text"), "plain text");
        assert_eq!(error_message(""), "(empty body)");
    }

    #[test]
    fn a_missing_api_key_variable_is_an_error_that_names_it() {
        let mut s = settings();
        s.api_key_env = Some("MURMUR_TEST_SURELY_UNSET_KEY".into());
        let e = OpenAiModel::new(&s).expect_err("an error");
        assert!(e.message.contains("MURMUR_TEST_SURELY_UNSET_KEY"), "{e}");
        let ok = OpenAiModel::new(&settings()).expect("test setup");
        assert_eq!(ok.endpoint(), "http://127.0.0.1:9/v1/chat/completions");
    }

    /// A one-connection-per-answer HTTP responder on loopback: isolates the retry logic from
    /// any real server (the real-server tests are in host/tests/openai_server.rs).
    async fn canned_server(answers: Vec<String>) -> (String, tokio::task::JoinHandle<usize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("test setup");
        let url = format!("http://{}/v1", listener.local_addr().expect("test setup"));
        let task = tokio::spawn(async move {
            let mut served = 0;
            for answer in answers {
                let (mut socket, _) = listener.accept().await.expect("test setup");
                let mut buf = vec![0u8; 65536];
                let mut got = Vec::new();
                // Read the head and the body (Content-Length) before answering.
                loop {
                    let n = socket.read(&mut buf).await.expect("test setup");
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some(head_end) = text.find("\r\n\r\n") {
                        let len = text[..head_end]
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().expect("test setup"))
                            })
                            .unwrap_or(0);
                        if got.len() >= head_end + 4 + len {
                            break;
                        }
                    }
                    if n == 0 {
                        break;
                    }
                }
                socket
                    .write_all(answer.as_bytes())
                    .await
                    .expect("test setup");
                socket.shutdown().await.expect("test setup");
                served += 1;
            }
            served
        });
        (url, task)
    }

    fn http(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn overload_answers_are_retried_honouring_retry_after_then_succeed() {
        let ok = r#"{"choices":[{"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#;
        let (url, server) = canned_server(vec![
            http(
                "429 Too Many Requests",
                "retry-after: 0\r\n",
                r#"{"error":{"message":"slow down"}}"#,
            ),
            http("503 Service Unavailable", "retry-after: 0\r\n", "busy"),
            http("200 OK", "", ok),
        ])
        .await;
        let mut s = settings();
        s.base_url = url;
        s.stream = false;
        let model = OpenAiModel::new(&s).expect("test setup");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let reply = model
            .call(ModelRequest::new(
                input(vec![ContextMessage::user("hi")]),
                Arc::from(vec![]),
                tx,
            ))
            .await
            .expect("test setup");
        assert_eq!(reply.text, "fine");
        assert_eq!(rx.recv().await.as_deref(), Some("fine"));
        assert_eq!(server.await.expect("test setup"), 3);
    }

    #[tokio::test]
    async fn client_errors_are_not_retried_and_name_the_server_and_its_answer() {
        let (url, server) = canned_server(vec![http(
            "400 Bad Request",
            "",
            r#"{"error":{"message":"the request exceeds the available context size"}}"#,
        )])
        .await;
        let mut s = settings();
        s.base_url = url.clone();
        let model = OpenAiModel::new(&s).expect("test setup");
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let e = model
            .call(ModelRequest::new(
                input(vec![ContextMessage::user("hi")]),
                Arc::from(vec![]),
                tx,
            ))
            .await
            .expect_err("an error");
        assert!(
            e.message
                .contains(&format!("{url}/chat/completions answered 400 Bad Request")),
            "{e}"
        );
        assert!(
            e.message.contains("exceeds the available context size"),
            "{e}"
        );
        assert_eq!(server.await.expect("test setup"), 1);
    }

    #[tokio::test]
    async fn retries_stop_after_max_retries() {
        let busy = http(
            "500 Internal Server Error",
            "retry-after: 0\r\n",
            r#"{"error":{"message":"boom"}}"#,
        );
        let (url, server) = canned_server(vec![busy.clone(), busy.clone(), busy]).await;
        let mut s = settings();
        s.base_url = url;
        s.max_retries = 2;
        let model = OpenAiModel::new(&s).expect("test setup");
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let e = model
            .call(ModelRequest::new(
                input(vec![ContextMessage::user("hi")]),
                Arc::from(vec![]),
                tx,
            ))
            .await
            .expect_err("an error");
        assert!(e.message.contains("500 Internal Server Error: boom"), "{e}");
        assert_eq!(
            server.await.expect("test setup"),
            3,
            "one attempt and two retries"
        );
    }
}
