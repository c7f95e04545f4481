//! Typed requests and answers of the host services reached through [`crate::Host::call`]:
//! `complete` (a model call) and `search` (the knowledge base).
//! They cross the boundary as JSON, so fields can be added without changing the ABI.

use serde::{Deserialize, Serialize};

use crate::Role;

/// One message of a completion request.
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Free text; words are matched after lowercasing and stemming, operators are not
    /// interpreted.
    pub query: String,
    /// Most hits to return, best first.
    pub k: u32,
}

/// One passage the `search` service found.
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
