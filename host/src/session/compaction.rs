//! Context compaction: when a step's model input would not fit the model's context window,
//! the oldest whole turns make room, summarised through the model or dropped.
//!
//! The current turn (its user message, the instructions injected before it and everything
//! after) is never touched, and turns go whole, so a tool call never loses its result. A
//! compaction frees more than the step needs (down to half of the window where it can), so
//! the next turns extend a stable prefix and the local model's KV cache stays useful instead
//! of being invalidated at every turn.
//!
//! The planning ([`cut_points`], [`transcript`]) is pure; [`fit`] runs it against a provider,
//! which counts tokens exactly (local) or estimates them (`openai`, scripted).

use std::sync::Arc;

use murmur_plugin_api::{Origin, Role};
use serde::Serialize;

use crate::model::{ContextMessage, ModelError, ModelInput, ModelProvider, ModelRequest};

/// What to do when the input does not fit (`[context] compaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Replace the oldest turns by a summary the model writes.
    Summarize,
    /// Drop the oldest turns.
    DropOldest,
    /// Send the input as it is; the provider reports an overflow as a turn error.
    Off,
}

impl Strategy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Summarize => "summarize",
            Strategy::DropOldest => "drop_oldest",
            Strategy::Off => "off",
        }
    }
}

/// The `[context]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionSettings {
    /// What to do.
    pub strategy: Strategy,
    /// Tokens kept free for the reply; `None` = the model's default `max_tokens`.
    pub reserve_tokens: Option<u32>,
    /// Most tokens of a summary.
    pub summary_max_tokens: u32,
}

/// Default `summary_max_tokens`.
pub const DEFAULT_SUMMARY_MAX_TOKENS: u32 = 200;
/// Room kept for the reply when neither the config nor the model says.
pub const FALLBACK_RESERVE: u32 = 256;

impl Default for CompactionSettings {
    fn default() -> Self {
        CompactionSettings {
            strategy: Strategy::Summarize,
            reserve_tokens: None,
            summary_max_tokens: DEFAULT_SUMMARY_MAX_TOKENS,
        }
    }
}

/// A compaction that happened: the first `removed` history messages were replaced by
/// `summary` (or dropped when it is `None`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compaction {
    /// What was done (`summarize` or `drop_oldest`).
    pub strategy: Strategy,
    /// History messages removed from the front.
    pub removed: usize,
    /// Whole turns among them.
    pub turns: usize,
    /// The analyzers whose injections were among them, in order (their provenance; the
    /// delivery events name each injection).
    pub injections_from: Vec<String>,
    /// The summary that replaces them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Tokens of the input before and after.
    pub tokens_before: u64,
    /// ″
    pub tokens_after: u64,
    /// The model's context length.
    pub context_length: u32,
    /// Why a summary was asked for but the turns were dropped instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

impl Compaction {
    /// The message that replaces the removed ones, if any.
    pub fn replacement(&self) -> Option<ContextMessage> {
        self.summary
            .as_ref()
            .map(|s| ContextMessage::summary(summary_text(s)))
    }
}

/// How a summary reads in the model context.
pub fn summary_text(summary: &str) -> String {
    format!("Summary of the earlier conversation: {}", summary.trim())
}

/// Where the history may be cut: before each earlier turn (its user message, with the
/// injections placed right before it), ascending. The current turn, from the last user
/// message on, is never cut into.
pub fn cut_points(messages: &[ContextMessage]) -> Vec<usize> {
    let starts: Vec<usize> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.origin == Origin::User)
        .map(|(i, _)| {
            // Instructions injected before this user message belong to its turn.
            let mut start = i;
            while start > 0 && messages[start - 1].origin == Origin::Injection {
                start -= 1;
            }
            start
        })
        .collect();
    // Cutting at the first turn's start removes nothing; the last start is the current turn.
    match starts.split_last() {
        Some((&current, earlier)) => earlier
            .iter()
            .copied()
            .skip_while(|&s| s == 0)
            .chain(std::iter::once(current))
            .filter(|&s| s > 0)
            .collect(),
        None => Vec::new(),
    }
}

/// The removed messages as plain text for the summariser.
pub fn transcript(messages: &[ContextMessage]) -> String {
    let mut out = String::new();
    for m in messages {
        let line = match (m.origin, m.role) {
            (Origin::Summary, _) => format!("(Earlier summary) {}", m.content),
            (Origin::User, _) => format!("User: {}", m.content),
            (Origin::Assistant, _) if !m.tool_calls.is_empty() => {
                let calls: Vec<String> = m
                    .tool_calls
                    .iter()
                    .map(|c| format!("{}({})", c.name, c.arguments))
                    .collect();
                format!("Assistant: {} [called {}]", m.content, calls.join(", "))
            }
            (Origin::Assistant, _) => format!("Assistant: {}", m.content),
            (Origin::Tool, _) => format!(
                "Tool {} returned: {}",
                m.tool_name.as_deref().unwrap_or("?"),
                m.content
            ),
            (Origin::Injection, Role::System) => format!("(Note to the assistant) {}", m.content),
            (Origin::Injection, _) => format!("(Context) {}", m.content),
        };
        out.push_str(line.trim());
        out.push('\n');
    }
    out
}

const SUMMARISER: &str = "You summarise conversations. Write a short summary of the \
conversation below in plain sentences: the facts, names, numbers, questions and answers \
that matter for continuing it. Write only the summary.";

fn with_messages(input: &ModelInput, messages: Vec<ContextMessage>) -> Arc<ModelInput> {
    Arc::new(ModelInput {
        messages: messages.into(),
        ..input.clone()
    })
}

/// Makes `input` fit the model's context window, if it has a known one. Returns the input
/// to send and what was compacted. Errors only when the provider cannot count tokens; a
/// failed summary falls back to dropping.
pub async fn fit(
    model: &dyn ModelProvider,
    settings: &CompactionSettings,
    input: Arc<ModelInput>,
) -> Result<(Arc<ModelInput>, Option<Compaction>), ModelError> {
    let Some(context_length) = model.context_length() else {
        return Ok((input, None));
    };
    if settings.strategy == Strategy::Off {
        return Ok((input, None));
    }
    let reserve = settings
        .reserve_tokens
        .or(model.max_reply_tokens())
        .unwrap_or(FALLBACK_RESERVE);
    let budget = u64::from(context_length.saturating_sub(reserve));
    let before = model.count_tokens(input.clone()).await?;
    if before <= budget {
        return Ok((input, None));
    }
    // Over budget: the one place that needs the messages as a slice.
    let all = input.messages.to_vec();
    let cuts = cut_points(&all);
    if cuts.is_empty() {
        // Only the current turn: nothing may go. The provider reports the overflow.
        return Ok((input, None));
    }
    // A summary takes at most a quarter of the window, whatever the config says.
    let summary_tokens = settings.summary_max_tokens.min(context_length / 4).max(1);
    let summary_room = match settings.strategy {
        Strategy::Summarize => u64::from(summary_tokens) + 16,
        _ => 0,
    };
    // Free down to half the window where possible, so the following turns extend a stable
    // prefix; otherwise every earlier turn goes.
    let target = budget / 2;
    let mut cut = cuts[cuts.len() - 1];
    for &c in &cuts {
        let rest = with_messages(&input, all[c..].to_vec());
        if model.count_tokens(rest).await? + summary_room <= target {
            cut = c;
            break;
        }
    }
    let removed = &all[..cut];
    let turns = removed.iter().filter(|m| m.origin == Origin::User).count();
    let mut injections_from: Vec<String> = Vec::new();
    for name in removed.iter().filter_map(|m| m.analyzer.as_deref()) {
        if !injections_from.iter().any(|n| n == name) {
            injections_from.push(name.to_string());
        }
    }
    let (summary, fallback) = match settings.strategy {
        Strategy::Summarize => {
            match summarise(model, summary_tokens, &input, removed, context_length).await {
                Ok(s) if !s.trim().is_empty() => (Some(s.trim().to_string()), None),
                Ok(_) => (None, Some("the model wrote an empty summary".to_string())),
                Err(e) => (None, Some(format!("the summary failed: {e}"))),
            }
        }
        _ => (None, None),
    };
    let mut messages = Vec::with_capacity(all.len() - cut + 1);
    if let Some(s) = &summary {
        messages.push(ContextMessage::summary(summary_text(s)));
    }
    messages.extend_from_slice(&all[cut..]);
    let compacted = with_messages(&input, messages);
    let after = model.count_tokens(compacted.clone()).await?;
    let compaction = Compaction {
        strategy: if summary.is_some() {
            Strategy::Summarize
        } else {
            Strategy::DropOldest
        },
        removed: cut,
        turns,
        injections_from,
        summary,
        tokens_before: before,
        tokens_after: after,
        context_length,
        fallback,
    };
    Ok((compacted, Some(compaction)))
}

/// Asks the model for a summary of `removed`. A transcript too long for one call keeps its
/// most recent part.
async fn summarise(
    model: &dyn ModelProvider,
    summary_tokens: u32,
    input: &ModelInput,
    removed: &[ContextMessage],
    context_length: u32,
) -> Result<String, ModelError> {
    let mut text = transcript(removed);
    let allowed = u64::from(context_length.saturating_sub(summary_tokens + 8));
    let request_input = |text: &str| {
        Arc::new(ModelInput {
            session: input.session.clone(),
            turn: input.turn,
            step: input.step,
            instructions: SUMMARISER.to_string(),
            messages: vec![ContextMessage::user(format!(
                "Conversation:\n{text}\nSummary:"
            ))]
            .into(),
        })
    };
    for _ in 0..4 {
        let tokens = model.count_tokens(request_input(&text)).await?;
        if tokens <= allowed {
            break;
        }
        // Keep the most recent part, in proportion, with a margin.
        let keep = (text.len() as u64 * allowed * 9 / (tokens * 10)) as usize;
        let mut start = text.len().saturating_sub(keep);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text = format!("(…) {}", &text[start..]);
    }
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let mut request = ModelRequest::new(request_input(&text), Arc::from(Vec::new()), tx);
    request.max_tokens = Some(summary_tokens);
    request.temperature = Some(0.0);
    Ok(model.call(request).await?.text)
}

#[cfg(test)]
mod tests {
    use murmur_plugin_api::Role;

    use super::*;
    use crate::model::{BoxFuture, ModelReply, ToolCall};

    fn user(t: &str) -> ContextMessage {
        ContextMessage::user(t)
    }
    fn assistant(t: &str) -> ContextMessage {
        ContextMessage::assistant(t, Vec::new())
    }

    /// Counts one token per word; summarises as "SUMMARY(n lines)"; a small window.
    #[derive(Default)]
    struct WordModel {
        context: u32,
        fail_summary: bool,
        /// The summary requests: their user message and their size in words.
        asked: std::sync::Mutex<Vec<(String, u64)>>,
    }

    fn words(input: &ModelInput) -> u64 {
        std::iter::once(&input.instructions)
            .chain(input.messages.iter().map(|m| &m.content))
            .map(|t| t.split_whitespace().count() as u64)
            .sum()
    }

    impl ModelProvider for WordModel {
        fn name(&self) -> &str {
            "words"
        }
        fn call(
            &self,
            request: ModelRequest,
        ) -> BoxFuture<'static, Result<ModelReply, ModelError>> {
            let fail = self.fail_summary;
            let asked = request.input.messages[0].content.clone();
            let lines = asked.lines().count();
            if let Ok(mut log) = self.asked.lock() {
                log.push((asked, words(&request.input)));
            }
            Box::pin(async move {
                if fail {
                    return Err(ModelError {
                        provider: "words".into(),
                        message: "down".into(),
                    });
                }
                Ok(ModelReply {
                    text: format!("SUMMARY({lines} lines)"),
                    ..ModelReply::default()
                })
            })
        }
        fn context_length(&self) -> Option<u32> {
            Some(self.context)
        }
        fn max_reply_tokens(&self) -> Option<u32> {
            Some(10)
        }
        fn count_tokens(
            &self,
            input: Arc<ModelInput>,
        ) -> BoxFuture<'static, Result<u64, ModelError>> {
            let n = words(&input);
            Box::pin(async move { Ok(n) })
        }
    }

    fn input(messages: Vec<ContextMessage>) -> Arc<ModelInput> {
        Arc::new(ModelInput {
            session: "s".into(),
            turn: 9,
            step: 1,
            instructions: "sys".into(),
            messages: messages.into(),
        })
    }

    /// Turn `i` is ten words from the user and ten from the assistant.
    fn turns(n: usize) -> Vec<ContextMessage> {
        let ten = |who: &str, i: usize| format!("{who}{i} w w w w w w w w w");
        (0..n)
            .flat_map(|i| [user(&ten("u", i)), assistant(&ten("a", i))])
            .collect()
    }

    #[test]
    fn cut_points_fall_before_earlier_turns_with_their_instructions_and_never_in_the_current_one() {
        let call = ToolCall {
            id: "c".into(),
            name: "t".into(),
            arguments: serde_json::json!({}),
        };
        let messages = vec![
            user("q1"),
            ContextMessage::assistant("", vec![call.clone()]),
            ContextMessage::tool(&call, "r"),
            assistant("a1"),
            ContextMessage::injection(Role::System, "be brief", "coach"),
            user("q2"),
            assistant("a2"),
            user("q3"),
            ContextMessage::injection(Role::User, "context", "rag"),
        ];
        assert_eq!(cut_points(&messages), vec![4, 7]);
        assert_eq!(cut_points(&messages[..1]), Vec::<usize>::new());
        assert_eq!(cut_points(&[]), Vec::<usize>::new());
    }

    #[tokio::test]
    async fn an_input_that_fits_is_left_alone() {
        let model = WordModel {
            context: 100,
            ..WordModel::default()
        };
        let i = input(turns(3));
        let (out, c) = fit(&model, &CompactionSettings::default(), i.clone())
            .await
            .expect("counts");
        assert!(c.is_none());
        assert_eq!(out, i);
    }

    #[tokio::test]
    async fn summarize_replaces_the_oldest_turns_down_to_half_the_window() {
        // 10 turns = 201 words; window 150, reply reserve 10 → budget 140, target 70.
        let model = WordModel {
            context: 150,
            ..WordModel::default()
        };
        let settings = CompactionSettings {
            summary_max_tokens: 20,
            ..CompactionSettings::default()
        };
        let (out, c) = fit(&model, &settings, input(turns(10)))
            .await
            .expect("counts");
        let c = c.expect("compacted");
        assert_eq!(c.strategy, Strategy::Summarize);
        assert_eq!(c.tokens_before, 201);
        // Keep k turns with 20k + 1 + 36 ≤ 70 → k = 1; nine turns summarised.
        assert_eq!(c.turns, 9);
        assert_eq!(c.removed, 18);
        // The nine turns (about 200 words with the instructions) do not fit one summary
        // request in a 150-word window: it keeps their most recent part.
        let asked = model.asked.lock().expect("lock").clone();
        assert_eq!(asked.len(), 1);
        let (request, size) = &asked[0];
        assert!(*size <= 150 - 20 - 8, "{size} words: {request}");
        assert!(request.starts_with("Conversation:\n(…) "), "{request}");
        assert!(
            request.contains("User: u8 w w w w w w w w w\nAssistant: a8 w"),
            "{request}"
        );
        assert!(
            !request.contains("u9"),
            "the current turn is not summarised: {request}"
        );
        let summary = c.summary.clone().expect("a summary");
        assert!(summary.starts_with("SUMMARY("), "{summary}");
        assert_eq!(out.messages.len(), 3);
        assert_eq!(out.messages[0].origin, Origin::Summary);
        assert_eq!(out.messages[0].content, summary_text(&summary));
        assert_eq!(out.messages[1].content, "u9 w w w w w w w w w");
        assert!(c.tokens_after <= 70, "{c:?}");
    }

    #[tokio::test]
    async fn drop_oldest_drops_whole_turns_and_names_the_injections_it_took() {
        let model = WordModel {
            context: 150,
            ..WordModel::default()
        };
        let settings = CompactionSettings {
            strategy: Strategy::DropOldest,
            ..CompactionSettings::default()
        };
        let mut messages = turns(10);
        messages.insert(1, ContextMessage::injection(Role::User, "ctx", "rag"));
        let (out, c) = fit(&model, &settings, input(messages))
            .await
            .expect("counts");
        let c = c.expect("compacted");
        assert_eq!(c.strategy, Strategy::DropOldest);
        assert!(c.summary.is_none());
        assert_eq!(c.injections_from, vec!["rag".to_string()]);
        // Target 70: three turns (60 words + 1) stay.
        assert_eq!(c.turns, 7);
        assert_eq!(out.messages.len(), 6);
        assert_eq!(out.messages[0].content, "u7 w w w w w w w w w");
        assert_eq!(c.tokens_after, 61);
    }

    #[tokio::test]
    async fn a_failed_summary_falls_back_to_dropping_and_says_why() {
        let model = WordModel {
            context: 150,
            fail_summary: true,
            ..WordModel::default()
        };
        let (out, c) = fit(&model, &CompactionSettings::default(), input(turns(10)))
            .await
            .expect("counts");
        let c = c.expect("compacted");
        assert_eq!(c.strategy, Strategy::DropOldest);
        assert!(
            c.fallback.as_deref().unwrap_or("").contains("down"),
            "{c:?}"
        );
        assert!(out.messages.iter().all(|m| m.origin != Origin::Summary));
    }

    #[tokio::test]
    async fn a_current_turn_alone_too_big_is_sent_as_it_is() {
        let model = WordModel {
            context: 20,
            ..WordModel::default()
        };
        let i = input(vec![user(&"w ".repeat(50))]);
        let (out, c) = fit(&model, &CompactionSettings::default(), i.clone())
            .await
            .expect("counts");
        assert!(c.is_none());
        assert_eq!(out, i);
    }

    #[test]
    fn the_transcript_names_who_said_what() {
        let t = transcript(&[
            ContextMessage::summary("Summary of the earlier conversation: x"),
            user("hi"),
            ContextMessage::injection(Role::System, "be brief", "coach"),
            assistant("hello"),
        ]);
        assert_eq!(
            t,
            "(Earlier summary) Summary of the earlier conversation: x\nUser: hi\n(Note to the assistant) be brief\nAssistant: hello\n"
        );
    }
}
