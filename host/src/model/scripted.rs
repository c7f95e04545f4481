//! The `scripted` provider: deterministic replies from a JSON Lines file, for tests and demos.
//!
//! One line per model call, in order, shared by all sessions of the host:
//!
//! ```text
//! {"text": "Paris is the capital of France."}
//! {"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 3}}]}
//! {"text": "slow answer", "delay": "2s"}
//! {"error": "upstream overloaded"}
//! ```
//!
//! `delay` waits before the first chunk (a humane duration); `error` makes the call fail.
//! Blank lines and lines starting with `#` are skipped. Text streams in chunks of
//! `chunk_chars` characters. A call past the last line fails with a clear error.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::file_error::FileError;

use super::{BoxFuture, ModelError, ModelProvider, ModelReply, ModelRequest, ToolCall};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLine {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<RawToolCall>>,
    #[serde(default)]
    delay: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToolCall {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    arguments: Option<serde_json::Value>,
}

/// One scripted model call.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptedCall {
    /// Line in the file.
    pub line: usize,
    /// Wait before the first chunk.
    pub delay: Duration,
    /// The outcome.
    pub reply: Result<ModelReply, String>,
}

/// Replies from a file.
#[derive(Debug)]
pub struct ScriptedModel {
    file: PathBuf,
    calls: Arc<[ScriptedCall]>,
    next: Arc<AtomicUsize>,
    chunk_chars: usize,
}

impl ScriptedModel {
    /// Reads and checks a script file.
    pub fn load(path: &Path, chunk_chars: usize) -> Result<Self, FileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| FileError::file(path, format!("cannot read the model script: {e}")))?;
        Self::parse(&text, path, chunk_chars)
    }

    /// Parses script text as if read from `path`.
    pub fn parse(text: &str, path: &Path, chunk_chars: usize) -> Result<Self, FileError> {
        let err = |line: usize, message: String| FileError::at(path, line, message);
        let mut calls = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let parsed: RawLine = serde_json::from_str(trimmed)
                .map_err(|e| err(line, format!("not a valid script line: {e}")))?;
            let delay = match &parsed.delay {
                None => Duration::ZERO,
                Some(d) => humantime::parse_duration(d)
                    .map_err(|e| err(line, format!("`delay`: `{d}` is not a duration ({e})")))?,
            };
            let reply = match (parsed.text, parsed.tool_calls, parsed.error) {
                (None, None, Some(e)) => Err(e),
                (text, calls, None) if text.is_some() || calls.is_some() => {
                    let calls = calls.unwrap_or_default();
                    let tool_calls = calls
                        .into_iter()
                        .enumerate()
                        .map(|(k, c)| ToolCall {
                            id: c.id.unwrap_or_else(|| format!("call_{line}_{}", k + 1)),
                            name: c.name,
                            arguments: c.arguments.unwrap_or_else(|| serde_json::json!({})),
                        })
                        .collect();
                    Ok(ModelReply {
                        text: text.unwrap_or_default(),
                        tool_calls,
                        ..ModelReply::default()
                    })
                }
                _ => {
                    return Err(err(
                        line,
                        "a line needs `text`, `tool_calls` (or both), or `error` alone".to_string(),
                    ))
                }
            };
            calls.push(ScriptedCall { line, delay, reply });
        }
        Ok(ScriptedModel {
            file: path.to_path_buf(),
            calls: calls.into(),
            next: Arc::new(AtomicUsize::new(0)),
            chunk_chars: chunk_chars.max(1),
        })
    }

    /// Number of scripted calls.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether the script has no calls.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }
}

impl ModelProvider for ScriptedModel {
    fn name(&self) -> &str {
        "scripted"
    }

    fn call(&self, request: ModelRequest) -> BoxFuture<'static, Result<ModelReply, ModelError>> {
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        let call = self.calls.get(index).cloned();
        let file = self.file.clone();
        let total = self.calls.len();
        let chunk_chars = self.chunk_chars;
        Box::pin(async move {
            let error = |message: String| ModelError {
                provider: "scripted".to_string(),
                message,
            };
            let Some(call) = call else {
                return Err(error(format!(
                    "script {} has {total} replies and model call {} asked for one more",
                    file.display(),
                    index + 1
                )));
            };
            if !call.delay.is_zero() {
                tokio::time::sleep(call.delay).await;
            }
            let reply = call
                .reply
                .map_err(|e| error(format!("{e} (script line {})", call.line)))?;
            let chars: Vec<char> = reply.text.chars().collect();
            for chunk in chars.chunks(chunk_chars) {
                // A closed receiver means nobody listens any more; the reply is still whole.
                let _ = request.chunks.send(chunk.iter().collect());
                tokio::task::yield_now().await;
            }
            Ok(reply)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_tool_calls_delays_and_errors() {
        let m = ScriptedModel::parse(
            "# comment\n{\"text\": \"hi\"}\n\n{\"tool_calls\": [{\"name\": \"add\", \"arguments\": {\"a\": 1}}]}\n{\"error\": \"boom\", \"delay\": \"1s\"}\n",
            Path::new("s.jsonl"),
            4,
        )
        .expect("valid script");
        assert_eq!(m.len(), 3);
        assert_eq!(
            m.calls[1]
                .reply
                .as_ref()
                .map(|r| r.tool_calls[0].id.clone()),
            Ok("call_4_1".into())
        );
        assert_eq!(m.calls[2].delay, Duration::from_secs(1));
        assert_eq!(m.calls[2].reply, Err("boom".to_string()));
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let e = ScriptedModel::parse(
            "{\"text\": \"ok\"}\n{\"txt\": 1}\n",
            Path::new("s.jsonl"),
            4,
        )
        .expect_err("bad");
        assert_eq!(e.line, Some(2));
        assert!(e.to_string().starts_with("s.jsonl:2: "), "{e}");
        let e = ScriptedModel::parse("{}\n", Path::new("s.jsonl"), 4).expect_err("empty");
        assert!(e.message.contains("needs `text`"));
    }

    #[tokio::test]
    async fn streams_in_chunks_and_fails_clearly_past_the_end() {
        let m = ScriptedModel::parse("{\"text\": \"abcdefghij\"}\n", Path::new("s.jsonl"), 4)
            .expect("valid");
        let input = Arc::new(super::super::ModelInput {
            session: "s".into(),
            turn: 1,
            step: 1,
            instructions: String::new(),
            messages: Vec::new().into(),
        });
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let req = |tx| ModelRequest::new(input.clone(), Arc::from(Vec::new()), tx);
        let reply = m.call(req(tx.clone())).await.expect("first call");
        assert_eq!(reply.text, "abcdefghij");
        let mut chunks = Vec::new();
        while let Ok(c) = rx.try_recv() {
            chunks.push(c);
        }
        assert_eq!(chunks, vec!["abcd", "efgh", "ij"]);
        let e = m.call(req(tx)).await.expect_err("past the end");
        assert!(
            e.message
                .contains("has 1 replies and model call 2 asked for one more"),
            "{e}"
        );
    }
}
