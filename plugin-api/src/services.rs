//! Typed requests and answers of the host services reached through [`crate::Host::call`]:
//! `complete` (a model call) and `search` (the knowledge base).
//! They cross the boundary as JSON, so fields can be added without changing the ABI.

use serde::{Deserialize, Serialize};

use crate::Role;

/// One message of a completion request.
///
/// ```
/// use murmur_plugin_api::{ChatMessage, Role};
///
/// let turn = [ChatMessage::user("Hi"), ChatMessage::assistant("Hello!")];
/// assert_eq!(turn[1].role, Role::Assistant);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: Role,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::User,
            content: content.into(),
        }
    }

    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// A request to the `complete` service: call a model the config names.
///
/// ```
/// use murmur_plugin_api::{ChatMessage, CompletionRequest};
///
/// // Structured output: the answer's `json` is guaranteed to validate against the schema.
/// let request = CompletionRequest {
///     system: Some("Say whether the message is rude.".into()),
///     messages: vec![ChatMessage::user("you are useless")],
///     model: Some("judge".into()),
///     max_tokens: Some(32),
///     json_schema: Some(serde_json::json!({
///         "type": "object",
///         "properties": { "rude": { "type": "boolean" } },
///         "required": ["rude"]
///     })),
///     ..CompletionRequest::default()
/// };
/// // In `analyze`: `let answer = host.complete(&request)?;` then read `answer.json`.
/// assert_eq!(request.messages.len(), 1);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// System text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The conversation to complete.
    pub messages: Vec<ChatMessage>,
    /// A `[models.NAME]` name; default: the analyzer's `model`, else the chat model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Most tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// A JSON schema the answer must follow; the answer is then guaranteed to parse and
    /// validate, or the call fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<serde_json::Value>,
}

/// Tokens a call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Input tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
}

/// The answer of the `complete` service.
///
/// ```
/// use murmur_plugin_api::{Completion, TokenUsage};
///
/// let answer: Completion = serde_json::from_value(serde_json::json!({
///     "text": "{\"rude\": false}",
///     "json": { "rude": false },
///     "usage": { "prompt_tokens": 31, "completion_tokens": 5 }
/// }))
/// .expect("an answer");
/// assert_eq!(answer.json.as_ref().and_then(|j| j["rude"].as_bool()), Some(false));
/// assert_eq!(answer.usage, TokenUsage { prompt_tokens: 31, completion_tokens: 5 });
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// With a `json_schema`: the parsed, validated value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// Tokens used.
    #[serde(default)]
    pub usage: TokenUsage,
}

/// A request to the `search` service: full-text (BM25) search over the knowledge base the
/// config's `[knowledge]` table names.
///
/// [`crate::Host::search`] sends it; it is public for hosts and for tests.
///
/// ```
/// use murmur_plugin_api::SearchRequest;
///
/// let r = SearchRequest { query: "ticket prices".into(), k: 3 };
/// assert_eq!(serde_json::to_value(&r).expect("JSON")["k"], 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Free text; words are matched after lowercasing and stemming, operators are not
    /// interpreted.
    pub query: String,
    /// Most hits to return, best first.
    pub k: u32,
}

/// One passage the `search` service found.
///
/// ```
/// use murmur_plugin_api::SearchHit;
///
/// let hit = SearchHit {
///     id: "handbook.md#3".into(),
///     source: "handbook.md".into(),
///     heading: "Tickets > Singles".into(),
///     text: "A single ticket costs 4.20.".into(),
///     score: 7.1,
///     similarity: None,
/// };
/// assert_eq!(hit.citation(), "handbook.md > Tickets > Singles");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Stable id of the passage: `source#n`, unique in the index.
    pub id: String,
    /// The file the passage comes from, relative to the knowledge folder (`handbook.md`).
    pub source: String,
    /// The heading path of the section it belongs to (`Limits > Timeouts`), empty when the
    /// passage comes before the first heading.
    pub heading: String,
    /// The passage text.
    pub text: String,
    /// Rank score, higher is better, comparable only between hits of one query: the BM25
    /// score, or, when the knowledge base has an embedding model, the hybrid score
    /// (`semantic_weight` × `similarity` + the rest × BM25 relative to the best hit, 0 to 1).
    pub score: f32,
    /// Cosine similarity of query and passage (−1 to 1; unrelated text scores about 0.1 or
    /// less) when the knowledge base has an embedding model, else `None`. Unlike `score`, it
    /// is comparable across queries, so it suits a relevance floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity: Option<f32>,
}

impl SearchHit {
    /// A citation for the passage: `source`, or `source > heading` when it has a heading.
    pub fn citation(&self) -> String {
        if self.heading.is_empty() {
            self.source.clone()
        } else {
            format!("{} > {}", self.source, self.heading)
        }
    }
}
