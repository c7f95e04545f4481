//! `POST /v1/chat/completions`: the OpenAI chat-completions API over Murmur sessions, so an
//! application that speaks it gets background analyzers by changing only its base URL.
//!
//! **Which session.** A request names its session with the `X-Murmur-Session` header (an
//! unknown id opens a session with that id). Without the header, the session is derived from
//! the conversation: a stateless client resends its whole history each time, so the history
//! without its new input (the last user message, or the tool results it ends with) is looked
//! up among the transcripts this server has answered. A match continues that session; no
//! match (a first request, an edited or regenerated message, a retried failure) opens a new
//! session seeded with the history the client sent. Every answer carries the session id in
//! its `X-Murmur-Session` header.
//!
//! **What the client sees.** Only the reply: the session's own history holds the analyzers'
//! injections at the positions where they entered the model input (SPEC S3, S10–S12), and
//! none of them is ever returned to the client (S4).
//!
//! **Client tools.** The request's `tools` are run by the client: when the model calls one,
//! the turn ends with `finish_reason: "tool_calls"`, and the request that sends the results
//! resumes the conversation (S11). The host's own `[[tool]]` tools are offered as well and run
//! inside the turn as usual.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;

use super::hub::Streamed;
use super::{ApiError, App};
use crate::events::TurnOutcome;
use crate::model::openai::wire_tool_call;
use crate::model::{ContextMessage, ToolCall, ToolSpec};
use crate::session::driver::{ResumeError, Seed};
use crate::session::machine::TurnOptions;
use crate::session::{Session, TurnEnd};

/// The header that names a request's session.
pub const SESSION_HEADER: &str = "x-murmur-session";

/// A conversation's fingerprint: SHA-256 over its messages as the client sees them.
type Key = [u8; 32];

/// The sessions derived from conversations: which transcript continues which session, and
/// when each was last used (the least recently used idle one gives way when the host is
/// full, since a stateless client never deletes its sessions).
#[derive(Debug, Default)]
pub struct Conversations {
    by_key: HashMap<Key, String>,
    last_used: HashMap<String, u64>,
    busy: HashSet<String>,
    clock: u64,
}

impl Conversations {
    /// Takes the session whose answered transcript is `key`, marking it busy. A second
    /// request with the same history finds nothing and opens its own session (a branch).
    fn claim(&mut self, key: &Key) -> Option<String> {
        let id = self.by_key.remove(key)?;
        self.busy.insert(id.clone());
        Some(id)
    }

    /// Registers a new derived session, busy.
    pub fn adopt(&mut self, id: &str) {
        self.clock += 1;
        self.last_used.insert(id.to_string(), self.clock);
        self.busy.insert(id.to_string());
    }

    /// The request on `id` ended; `key`, if any, is the transcript the client now holds.
    pub(super) fn release(&mut self, id: &str, key: Option<Key>) {
        self.busy.remove(id);
        if let Some(used) = self.last_used.get_mut(id) {
            self.clock += 1;
            *used = self.clock;
            if let Some(key) = key {
                self.by_key.insert(key, id.to_string());
            }
        }
    }

    /// A derived session resumed from the store, idle, continued by the transcript `key`.
    pub fn restore(&mut self, id: &str, key: Option<Key>) {
        self.adopt(id);
        self.release(id, key);
    }

    /// Whether a request is using session `id` now.
    pub fn is_busy(&self, id: &str) -> bool {
        self.busy.contains(id)
    }

    /// The least recently used derived session that no request is using.
    pub fn evictable(&self) -> Option<String> {
        self.last_used
            .iter()
            .filter(|(id, _)| !self.busy.contains(*id))
            .min_by_key(|(_, used)| **used)
            .map(|(id, _)| id.clone())
    }

    /// Forgets a session (deleted or evicted).
    pub fn forget(&mut self, id: &str) {
        self.by_key.retain(|_, v| v != id);
        self.last_used.remove(id);
        self.busy.remove(id);
    }
}

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    model: Option<String>,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    tools: Option<Vec<InTool>>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    n: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<InToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InToolCall {
    id: String,
    function: InFunction,
}

#[derive(Debug, Deserialize)]
struct InFunction {
    name: String,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InTool {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    function: Option<InToolFunction>,
}

#[derive(Debug, Deserialize)]
struct InToolFunction {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
}

/// A tool call as the client holds it: the arguments exactly as the JSON string it sent.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    id: String,
    name: String,
    arguments: String,
}

impl Call {
    fn of(call: &ToolCall) -> Call {
        Call {
            id: call.id.clone(),
            name: call.name.clone(),
            arguments: call.arguments.to_string(),
        }
    }

    fn to_tool_call(&self) -> ToolCall {
        ToolCall {
            id: self.id.clone(),
            name: self.name.clone(),
            // Arguments that are not JSON reach the model as the string they are.
            arguments: serde_json::from_str(&self.arguments)
                .unwrap_or_else(|_| Value::String(self.arguments.clone())),
        }
    }
}

/// One message of the client's conversation, checked.
#[derive(Debug, Clone, PartialEq)]
enum Msg {
    System(String),
    User(String),
    Assistant { content: String, calls: Vec<Call> },
    Tool { id: String, content: String },
}

impl Msg {
    fn hash_into(&self, h: &mut Sha256) {
        fn field(h: &mut Sha256, s: &str) {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        match self {
            Msg::System(text) => {
                field(h, "system");
                field(h, text);
            }
            Msg::User(text) => {
                field(h, "user");
                field(h, text);
            }
            Msg::Assistant { content, calls } => {
                field(h, "assistant");
                field(h, content);
                h.update((calls.len() as u64).to_le_bytes());
                for c in calls {
                    field(h, &c.id);
                    field(h, &c.name);
                    field(h, &c.arguments);
                }
            }
            Msg::Tool { id, content } => {
                field(h, "tool");
                field(h, id);
                field(h, content);
            }
        }
    }
}

fn key_of<'a>(messages: impl IntoIterator<Item = &'a Msg>) -> Key {
    let mut h = Sha256::new();
    for m in messages {
        m.hash_into(&mut h);
    }
    h.finalize().into()
}

/// What a request adds to its conversation.
#[derive(Debug)]
enum NewInput {
    User(String),
    ToolResults(Vec<(String, String)>),
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// The text of a message's `content`: a string, null, or an array of text parts.
fn text_of(content: Option<&Value>, at: usize) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(invalid(format!(
                            "messages[{at}].content[{j}]: only text parts are supported, not `{}`",
                            kind.unwrap_or("(no type)")
                        )))
                    }
                }
            }
            Ok(text)
        }
        Some(_) => Err(invalid(format!(
            "messages[{at}].content must be a string, an array of text parts, or null"
        ))),
    }
}

fn parse_messages(messages: &[InMessage]) -> Result<Vec<Msg>, ApiError> {
    let mut out = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let content = text_of(m.content.as_ref(), i)?;
        out.push(match m.role.as_str() {
            "system" | "developer" => Msg::System(content),
            "user" => Msg::User(content),
            "assistant" => Msg::Assistant {
                content,
                calls: m
                    .tool_calls
                    .iter()
                    .flatten()
                    .map(|c| Call {
                        id: c.id.clone(),
                        name: c.function.name.clone(),
                        arguments: c.function.arguments.clone().unwrap_or_default(),
                    })
                    .collect(),
            },
            "tool" => Msg::Tool {
                id: m.tool_call_id.clone().ok_or_else(|| {
                    invalid(format!(
                        "messages[{i}]: a `tool` message needs `tool_call_id`"
                    ))
                })?,
                content,
            },
            other => {
                return Err(invalid(format!(
                    "messages[{i}].role `{other}` is not one of system, developer, user, assistant, tool"
                )))
            }
        });
    }
    Ok(out)
}

/// Splits a conversation into the history and the new input at its end.
fn split(messages: &[Msg]) -> Result<(&[Msg], NewInput), ApiError> {
    match messages.last() {
        Some(Msg::User(text)) => Ok((
            &messages[..messages.len() - 1],
            NewInput::User(text.clone()),
        )),
        Some(Msg::Tool { .. }) => {
            let start = messages
                .iter()
                .rposition(|m| !matches!(m, Msg::Tool { .. }))
                .map_or(0, |i| i + 1);
            let results = messages[start..]
                .iter()
                .filter_map(|m| match m {
                    Msg::Tool { id, content } => Some((id.clone(), content.clone())),
                    _ => None,
                })
                .collect();
            Ok((&messages[..start], NewInput::ToolResults(results)))
        }
        Some(_) => Err(invalid(
            "the last message must be a `user` message or the `tool` results of the assistant's calls",
        )),
        None => Err(invalid("`messages` is empty")),
    }
}

/// The session history and system prompt a conversation begun by the client starts from.
fn seed(history: &[Msg]) -> Seed {
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for m in history {
        match m {
            Msg::System(text) => system.push(text.as_str()),
            Msg::User(text) => messages.push(ContextMessage::user(text.clone())),
            Msg::Assistant { content, calls } => messages.push(ContextMessage::assistant(
                content.clone(),
                calls.iter().map(Call::to_tool_call).collect(),
            )),
            Msg::Tool { id, content } => {
                let name = history
                    .iter()
                    .find_map(|m| match m {
                        Msg::Assistant { calls, .. } => calls.iter().find(|c| &c.id == id),
                        _ => None,
                    })
                    .map(|c| c.name.clone())
                    .unwrap_or_default();
                let call = ToolCall {
                    id: id.clone(),
                    name,
                    arguments: Value::Null,
                };
                messages.push(ContextMessage::tool(&call, content.clone()));
            }
        }
    }
    Seed {
        system_prompt: (!system.is_empty()).then(|| system.join("\n\n")),
        history: messages,
    }
}

/// The turn options a request asks for.
fn options(req: &ChatRequest, host_tools: &[&str]) -> Result<TurnOptions, ApiError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(invalid("`n` must be 1: Murmur answers with one choice"));
    }
    let mut tools = Vec::new();
    for (i, t) in req.tools.iter().flatten().enumerate() {
        let Some(f) = t.function.as_ref().filter(|_| t.kind == "function") else {
            return Err(invalid(format!(
                "tools[{i}]: only `function` tools are supported, not `{}`",
                t.kind
            )));
        };
        if host_tools.contains(&f.name.as_str()) {
            return Err(invalid(format!(
                "tools[{i}]: `{}` is a tool of the host ([[tool]] in its config); give the client's tool another name",
                f.name
            )));
        }
        tools.push(ToolSpec {
            name: f.name.clone(),
            description: f.description.clone().unwrap_or_default(),
            parameters: f
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        });
    }
    let json_schema = match &req.response_format {
        None | Some(Value::Null) => None,
        Some(format) => match format["type"].as_str() {
            Some("text") => None,
            Some("json_object") => Some(json!({"type": "object"})),
            Some("json_schema") => match format["json_schema"].get("schema") {
                Some(schema) if schema.is_object() => Some(schema.clone()),
                _ => {
                    return Err(invalid(
                        "response_format.json_schema.schema must be a JSON schema object",
                    ))
                }
            },
            other => {
                return Err(invalid(format!(
                    "response_format.type `{}` is not one of text, json_object, json_schema",
                    other.unwrap_or("(missing)")
                )))
            }
        },
    };
    Ok(TurnOptions {
        client_tools: tools.into(),
        json_schema,
        max_tokens: req.max_completion_tokens.or(req.max_tokens),
        temperature: req.temperature,
    })
}

/// A session id a client may choose: 1 to 64 letters, digits, `-` or `_`.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The session a request continues, and whether it was derived from the conversation.
async fn session_for(
    app: &App,
    headers: &HeaderMap,
    history: &[Msg],
) -> Result<(String, Session, bool), ApiError> {
    if let Some(value) = headers.get(SESSION_HEADER) {
        let id = value
            .to_str()
            .ok()
            .filter(|id| valid_id(id))
            .ok_or_else(|| {
                invalid(format!(
                    "the {SESSION_HEADER} header must be 1 to 64 letters, digits, `-` or `_`"
                ))
            })?;
        match app.session(id).await {
            Ok(session) => return Ok((id.to_string(), session, false)),
            Err(e) if e.status != StatusCode::NOT_FOUND => return Err(e),
            Err(_) => {}
        }
        let session = app.open(id, seed(history), false).await?;
        return Ok((id.to_string(), session, false));
    }
    let key = key_of(history);
    // With a shared store, the conversation may have continued on another host: the
    // database says which session holds it.
    let claimed = match app.store().and_then(|s| s.shared()) {
        Some(pg) => pg
            .claim_conversation(&key)
            .await
            .map_err(super::unavailable)?,
        None => app.conversations().claim(&key),
    };
    if let Some(id) = claimed {
        match app.session(&id).await {
            Ok(session) => {
                app.conversations().adopt(&id);
                return Ok((id, session, true));
            }
            Err(e) if e.status != StatusCode::NOT_FOUND => return Err(e),
            Err(_) => {}
        }
        app.conversations().forget(&id);
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let session = app.open(&id, seed(history), true).await?;
    Ok((id, session, true))
}

type TurnFuture = Pin<Box<dyn Future<Output = Result<TurnEnd, ApiError>> + Send>>;

fn start_turn(session: Session, input: NewInput, options: TurnOptions) -> TurnFuture {
    match input {
        NewInput::User(text) => {
            let answer = session.send_with(text, options);
            Box::pin(async move { answer.wait().await.map_err(|e| gone(&e.to_string())) })
        }
        NewInput::ToolResults(results) => Box::pin(async move {
            session
                .tool_results(results, options)
                .await
                .map_err(|e| match e {
                    ResumeError::Closed(e) => gone(&e.to_string()),
                    ResumeError::Unavailable(why) => super::unavailable(why),
                    ResumeError::Refused(why) => {
                        ApiError::new(StatusCode::CONFLICT, "session_conflict", why)
                    }
                })
        }),
    }
}

fn gone(message: &str) -> ApiError {
    ApiError::new(StatusCode::GONE, "session_closed", message)
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Json<ChatRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(|r| ApiError::json(r, app.settings.max_body_bytes))?;
    let limit = app.settings.max_request_messages;
    if req.messages.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_messages",
            format!(
                "the request has {} messages; the limit is {limit} (server.max_request_messages)",
                req.messages.len()
            ),
        ));
    }
    let messages = parse_messages(&req.messages)?;
    let (history, input) = split(&messages)?;
    let new_text: Vec<&str> = match &input {
        NewInput::User(text) => vec![text.as_str()],
        NewInput::ToolResults(results) => results.iter().map(|(_, t)| t.as_str()).collect(),
    };
    if matches!(&input, NewInput::User(text) if text.trim().is_empty()) {
        return Err(invalid("the last user message is empty"));
    }
    for text in new_text {
        app.check_length(text)?;
    }
    let host_tools: Vec<&str> = app.runtime.tool_names().collect();
    let options = options(&req, &host_tools)?;
    let (id, session, derived) = session_for(&app, &headers, history).await?;
    let request = Request {
        app: app.clone(),
        id: id.clone(),
        derived,
        released: false,
        messages,
        model: req.model.clone().unwrap_or_else(|| "murmur".to_string()),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let mut response = if req.stream.unwrap_or(false) {
        // Subscribe before the turn starts, so no token is missed.
        let events = app.hub.subscribe(&id);
        let turn = start_turn(session, input, options);
        let usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        stream(request, events, turn, usage).into_response()
    } else {
        let turn = start_turn(session, input, options).await;
        let end = match turn {
            Ok(end) => end,
            Err(e) => {
                request.finish(None);
                return Err(e);
            }
        };
        if end.outcome == TurnOutcome::Error {
            request.finish(None);
            return Err(model_error(&end));
        }
        let message = request.reply_message(&end, end.reply.clone());
        let body = json!({
            "id": request.completion_id(&end),
            "object": "chat.completion",
            "created": request.created,
            "model": request.model,
            "choices": [{
                "index": 0,
                "message": message,
                "finish_reason": finish_reason(end.outcome),
                "logprobs": null,
            }],
            "usage": usage_json(&end),
        });
        request.finish(Some((&end, end.reply.clone())));
        Json(body).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(SESSION_HEADER, v);
    }
    Ok(response)
}

/// One request in flight: what its answer and the conversation's new fingerprint need.
/// A request dropped before it finished (its client went away) releases its session.
struct Request {
    app: Arc<App>,
    id: String,
    derived: bool,
    released: bool,
    messages: Vec<Msg>,
    model: String,
    created: u64,
}

impl Drop for Request {
    fn drop(&mut self) {
        if self.derived && !self.released {
            self.app.conversations().release(&self.id, None);
        }
    }
}

impl Request {
    fn completion_id(&self, end: &TurnEnd) -> String {
        format!("chatcmpl-{}-{}", self.id, end.turn)
    }

    /// The assistant message the client receives, with `content` the text it was given.
    fn reply_message(&self, end: &TurnEnd, content: String) -> Value {
        let mut message = json!({
            "role": "assistant",
            "content": if content.is_empty() && !end.tool_calls.is_empty() { Value::Null } else { Value::String(content) },
            "refusal": null,
        });
        if !end.tool_calls.is_empty() {
            message["tool_calls"] = end.tool_calls.iter().map(wire_tool_call).collect();
        }
        message
    }

    /// The request ended; with the turn's end and the text the client received, the
    /// transcript the client now holds continues this session.
    fn finish(mut self, answered: Option<(&TurnEnd, String)>) {
        let key = answered.filter(|_| self.derived).map(|(end, content)| {
            let mut messages = std::mem::take(&mut self.messages);
            messages.push(Msg::Assistant {
                content,
                calls: end.tool_calls.iter().map(Call::of).collect(),
            });
            key_of(&messages)
        });
        if self.derived {
            self.app.remember_conversation(&self.id, key);
            self.released = true;
        }
    }
}

fn finish_reason(outcome: TurnOutcome) -> &'static str {
    match outcome {
        TurnOutcome::ToolCalls => "tool_calls",
        TurnOutcome::MaxSteps => "length",
        TurnOutcome::Completed | TurnOutcome::Stopped | TurnOutcome::Error => "stop",
    }
}

fn usage_json(end: &TurnEnd) -> Value {
    let (prompt, completion) = (end.usage.prompt_tokens, end.usage.completion_tokens);
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    })
}

fn model_error(end: &TurnEnd) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "model_error",
        end.error
            .clone()
            .unwrap_or_else(|| "the turn failed".to_string()),
    )
}

/// The streamed answer: `chat.completion.chunk` objects, then `[DONE]`.
fn stream(
    request: Request,
    mut events: tokio::sync::broadcast::Receiver<Arc<Streamed>>,
    turn: TurnFuture,
    include_usage: bool,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = mpsc::channel::<SseEvent>(256);
    tokio::spawn(async move {
        let chunk = |id: &str, delta: Value, finish: Option<&str>| {
            SseEvent::default().data(
                json!({
                    "id": id,
                    "object": "chat.completion.chunk",
                    "created": request.created,
                    "model": request.model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
                })
                .to_string(),
            )
        };
        let pending_id = format!("chatcmpl-{}", request.id);
        let mut text = String::new();
        let mut client_gone = tx
            .send(chunk(
                &pending_id,
                json!({"role": "assistant", "content": ""}),
                None,
            ))
            .await
            .is_err();
        tokio::pin!(turn);
        let mut watching = true;
        let end = loop {
            tokio::select! {
                biased;
                item = events.recv(), if watching => match item {
                    Ok(item) => {
                        if let Streamed::Token { text: piece, .. } = &*item {
                            text.push_str(piece);
                            if !client_gone {
                                client_gone = tx.send(chunk(&pending_id, json!({"content": piece}), None)).await.is_err();
                            }
                        }
                    }
                    // Tokens missed by a slow reader are still in the turn's reply; the
                    // client gets the rest of the text at the end.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => watching = false,
                },
                end = &mut turn => break end,
            }
        };
        while let Ok(item) = events.try_recv() {
            if let Streamed::Token { text: piece, .. } = &*item {
                text.push_str(piece);
                if !client_gone {
                    client_gone = tx
                        .send(chunk(&pending_id, json!({ "content": piece }), None))
                        .await
                        .is_err();
                }
            }
        }
        let end = match end {
            Ok(end) if end.outcome != TurnOutcome::Error => end,
            Ok(end) => {
                request.finish(None);
                let e = model_error(&end);
                let _ = tx.send(error_event(&e)).await;
                return;
            }
            Err(e) => {
                request.finish(None);
                let _ = tx.send(error_event(&e)).await;
                return;
            }
        };
        let id = request.completion_id(&end);
        // Text the stream missed (a slow reader): the rest of the reply.
        if let Some(rest) = end
            .reply
            .strip_prefix(text.as_str())
            .filter(|rest| !rest.is_empty())
        {
            let _ = tx.send(chunk(&id, json!({ "content": rest }), None)).await;
            text.push_str(rest);
        }
        if !end.tool_calls.is_empty() {
            let calls: Vec<Value> = end
                .tool_calls
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut call = wire_tool_call(c);
                    call["index"] = i.into();
                    call
                })
                .collect();
            let _ = tx
                .send(chunk(&id, json!({ "tool_calls": calls }), None))
                .await;
        }
        let _ = tx
            .send(chunk(&id, json!({}), Some(finish_reason(end.outcome))))
            .await;
        if include_usage {
            let usage = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": request.created,
                "model": request.model,
                "choices": [],
                "usage": usage_json(&end),
            });
            let _ = tx.send(SseEvent::default().data(usage.to_string())).await;
        }
        let _ = tx.send(SseEvent::default().data("[DONE]")).await;
        request.finish(Some((&end, text)));
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) },
        );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn error_event(e: &ApiError) -> SseEvent {
    SseEvent::default().data(json!({"error": {"type": e.kind, "message": e.message}}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_plugin_api::Role;

    fn user(t: &str) -> Msg {
        Msg::User(t.into())
    }

    #[test]
    fn the_new_input_is_the_last_user_message_or_the_trailing_tool_results() {
        let msgs = vec![Msg::System("be brief".into()), user("hi")];
        let (history, input) = split(&msgs).expect("splits");
        assert_eq!(history, &msgs[..1]);
        assert!(matches!(input, NewInput::User(t) if t == "hi"));

        let call = Call {
            id: "c1".into(),
            name: "add".into(),
            arguments: "{\"a\":1}".into(),
        };
        let msgs = vec![
            user("add"),
            Msg::Assistant {
                content: String::new(),
                calls: vec![
                    call.clone(),
                    Call {
                        id: "c2".into(),
                        ..call
                    },
                ],
            },
            Msg::Tool {
                id: "c1".into(),
                content: "1".into(),
            },
            Msg::Tool {
                id: "c2".into(),
                content: "2".into(),
            },
        ];
        let (history, input) = split(&msgs).expect("splits");
        assert_eq!(history.len(), 2);
        match input {
            NewInput::ToolResults(r) => assert_eq!(
                r,
                vec![("c1".into(), "1".into()), ("c2".into(), "2".into())]
            ),
            other => panic!("{other:?}"),
        }

        let err = split(&msgs[..2]).expect_err("ends with the assistant");
        assert!(err.message.contains("last message"), "{}", err.message);
        assert!(split(&[]).is_err());
    }

    #[test]
    fn fingerprints_tell_roles_contents_and_arguments_apart() {
        let a = key_of(&[user("ab"), user("c")]);
        assert_eq!(a, key_of(&[user("ab"), user("c")]));
        assert_ne!(a, key_of(&[user("a"), user("bc")]), "fields are delimited");
        assert_ne!(a, key_of(&[Msg::System("ab".into()), user("c")]));
        let with = |args: &str| {
            key_of(&[Msg::Assistant {
                content: String::new(),
                calls: vec![Call {
                    id: "c".into(),
                    name: "f".into(),
                    arguments: args.into(),
                }],
            }])
        };
        assert_ne!(with("{\"a\":1}"), with("{\"a\": 1}"));
    }

    #[test]
    fn a_derived_session_is_claimed_once_and_continues_under_its_new_transcript() {
        let mut c = Conversations::default();
        let first = key_of(&[user("hi")]);
        c.adopt("s1");
        assert_eq!(c.evictable(), None, "busy sessions are never evicted");
        c.release("s1", Some(first));
        assert_eq!(c.claim(&first).as_deref(), Some("s1"));
        assert_eq!(c.claim(&first), None, "a concurrent request branches");
        let second = key_of(&[user("hi"), user("again")]);
        c.release("s1", Some(second));
        assert_eq!(
            c.claim(&first),
            None,
            "the old transcript no longer continues it"
        );
        c.adopt("s2");
        c.release("s2", None);
        assert_eq!(c.evictable().as_deref(), Some("s1"), "least recently used");
        c.forget("s1");
        assert_eq!(c.claim(&second), None);
        assert_eq!(c.evictable().as_deref(), Some("s2"));
    }

    #[test]
    fn a_client_history_seeds_the_session_with_its_system_prompt_and_tool_names() {
        let msgs = parse_messages(
            &serde_json::from_value::<Vec<InMessage>>(json!([
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": [{"type": "text", "text": "2+"}, {"type": "text", "text": "3?"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "add", "arguments": "{\"a\":2,\"b\":3}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "5"},
                {"role": "assistant", "content": "5."}
            ]))
            .expect("valid messages"),
        )
        .expect("parses");
        let seed = seed(&msgs);
        assert_eq!(seed.system_prompt.as_deref(), Some("You are terse."));
        let h = &seed.history;
        assert_eq!(h.len(), 4);
        assert_eq!(h[0].content, "2+3?");
        assert_eq!(h[1].tool_calls[0].arguments, json!({"a": 2, "b": 3}));
        assert_eq!(h[2].role, Role::Tool);
        assert_eq!(h[2].tool_name.as_deref(), Some("add"));
        assert_eq!(h[3].content, "5.");
    }

    #[test]
    fn bad_messages_name_the_field() {
        let parse = |v: Value| {
            parse_messages(&serde_json::from_value::<Vec<InMessage>>(v).expect("shape"))
                .expect_err("refused")
                .message
        };
        let m = parse(json!([{"role": "user", "content": [{"type": "image_url"}]}]));
        assert!(
            m.contains("messages[0].content[0]") && m.contains("image_url"),
            "{m}"
        );
        let m = parse(json!([{"role": "user", "content": "x"}, {"role": "robot", "content": "x"}]));
        assert!(m.contains("messages[1].role `robot`"), "{m}");
        let m = parse(json!([{"role": "tool", "content": "x"}]));
        assert!(
            m.contains("messages[0]") && m.contains("tool_call_id"),
            "{m}"
        );
    }

    #[test]
    fn options_carry_client_tools_and_the_reply_schema() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
            "max_completion_tokens": 64
        }))
        .expect("request");
        let o = options(&req, &["add"]).expect("options");
        assert_eq!(o.client_tools[0].name, "weather");
        assert_eq!(o.json_schema, Some(json!({"type": "object"})));
        assert_eq!(o.max_tokens, Some(64));
        let e = options(&req, &["weather"]).expect_err("collides with a host tool");
        assert!(
            e.message.contains("tools[0]") && e.message.contains("weather"),
            "{}",
            e.message
        );
    }
}
