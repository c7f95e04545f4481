//! `search_knowledge`: the knowledge base as a tool the chat model can call.

use std::sync::Arc;
use std::time::Duration;

use murmur_plugin_api::SearchHit;

use super::{KnowledgeBase, MAX_K};
use crate::model::{BoxFuture, ToolSpec};
use crate::tool::{ToolBackend, ToolEntry};

/// The tool's name, as the model sees it.
pub const NAME: &str = "search_knowledge";

/// The tool entry for a knowledge base: `results` passages per call unless the model asks
/// for another number (1..=10).
pub fn entry(kb: Arc<KnowledgeBase>, results: u32, timeout: Duration) -> ToolEntry {
    ToolEntry {
        spec: ToolSpec {
            name: NAME.to_string(),
            description: "Search the knowledge base (documentation and handbooks) for passages \
                          about a topic. Returns the best passages with their source."
                .to_string(),
            parameters: serde_json::json!({
                "type": "object",
                "properties": {
                    "query": { "type": "string", "description": "What to look for, in plain words." },
                    "k": { "type": "integer", "minimum": 1, "maximum": 10, "description": "How many passages (default 3)." }
                },
                "required": ["query"]
            }),
        },
        timeout,
        backend: Arc::new(SearchTool { kb, results }),
    }
}

struct SearchTool {
    kb: Arc<KnowledgeBase>,
    results: u32,
}

impl ToolBackend for SearchTool {
    fn call(
        &self,
        arguments: serde_json::Value,
        _session: Arc<str>,
    ) -> BoxFuture<'static, Result<String, String>> {
        let kb = self.kb.clone();
        let default_k = self.results;
        Box::pin(async move {
            let Some(query) = arguments.get("query").and_then(|q| q.as_str()) else {
                return Err(format!(
                    "{NAME}: the arguments need a string `query` (got {arguments})"
                ));
            };
            let k = match arguments.get("k") {
                None | Some(serde_json::Value::Null) => default_k as usize,
                Some(v) => match v.as_u64() {
                    Some(k @ 1..=10) => k as usize,
                    _ => {
                        return Err(format!(
                            "{NAME}: `k` must be a whole number from 1 to 10 (got {v})"
                        ))
                    }
                },
            };
            let query = query.to_string();
            let hits = tokio::task::spawn_blocking(move || kb.search(&query, k.min(MAX_K)))
                .await
                .map_err(|e| format!("{NAME}: {e}"))?
                .map_err(|e| format!("{NAME}: {e}"))?;
            Ok(format_hits(&hits))
        })
    }
}

/// Passages as the model reads them: numbered, each with its citation.
pub fn format_hits(hits: &[SearchHit]) -> String {
    if hits.is_empty() {
        return "No passage in the knowledge base matches this query.".to_string();
    }
    hits.iter()
        .enumerate()
        .map(|(i, h)| format!("[{}] {}\n{}", i + 1, h.citation(), h.text))
        .collect::<Vec<_>>()
        .join("\n\n")
}
