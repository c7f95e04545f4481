//! The optional judge: a model asked, through the host's `complete` service, whether the
//! reply needs improvement. This module builds the request and reads the answer; the call
//! itself is the host's.

use murmur_plugin_api::{ChatMessage, Completion, CompletionRequest, Error, Result};
use serde_json::{json, Value};

use crate::checks::{Position, Review};
use crate::settings::JudgeConfig;
use crate::text::shorten;

/// What the judge concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JudgeVerdict {
    /// The reply is fine.
    Fine,
    /// The reply needs improvement; these suggestions (possibly none) are for the next one.
    NeedsImprovement(Vec<String>),
}

/// Longest user message or reply passed to the judge, in characters.
const MAX_TEXT: usize = 2000;
/// Longest injected message passed to the judge, in characters.
const MAX_INJECTED: usize = 800;
/// Most injected messages passed to the judge (the most recent ones).
const MAX_INJECTIONS: usize = 4;
/// Longest suggestion kept, in characters.
const MAX_SUGGESTION: usize = 200;

const SYSTEM: &str = "You review the last reply of a chat assistant. Decide whether it needs \
improvement: does it answer what the user asked, use the context it was given, stay \
correct, complete and free of repetition? If it does, set needs_improvement to false and \
give no suggestions. Otherwise set it to true and give short, concrete suggestions for the \
next reply. Answer with JSON only.";

/// The JSON schema of the judge's answer: `{"needs_improvement": bool, "suggestions":
/// [string, …]}` with at most `max_suggestions` suggestions.
pub fn judge_schema(max_suggestions: usize) -> Value {
    json!({
        "type": "object",
        "properties": {
            "needs_improvement": { "type": "boolean" },
            "suggestions": {
                "type": "array",
                "items": { "type": "string" },
                "maxItems": max_suggestions,
            },
        },
        "required": ["needs_improvement", "suggestions"],
        "additionalProperties": false,
    })
}

/// The `complete` request for one review: the user message, the context-lane injections
/// the reply was written with (those after the latest user message or from the turn
/// before, the most recent few, each shortened) and the reply.
pub fn judge_request(review: &Review<'_>, judge: &JudgeConfig) -> CompletionRequest {
    let mut prompt = String::new();
    prompt.push_str("User message:\n");
    prompt.push_str(&shorten(or_none(review.user), MAX_TEXT));
    let recent: Vec<_> = review
        .injected
        .iter()
        .filter(|i| matches!(i.position, Position::AfterUser | Position::TurnBefore))
        .collect();
    let skip = recent.len().saturating_sub(MAX_INJECTIONS);
    if !recent.is_empty() {
        prompt.push_str("\n\nContext given to the assistant:");
        for i in recent.into_iter().skip(skip) {
            prompt.push_str(&format!(
                "\n[{}] {}",
                i.analyzer,
                shorten(i.content, MAX_INJECTED)
            ));
        }
    }
    prompt.push_str("\n\nAssistant reply:\n");
    prompt.push_str(&shorten(or_none(review.reply), MAX_TEXT));
    prompt.push_str(&format!(
        "\n\nDoes the reply need improvement? Give at most {} suggestions.",
        judge.max_suggestions
    ));
    CompletionRequest {
        system: Some(SYSTEM.to_string()),
        messages: vec![ChatMessage::user(prompt)],
        model: judge.model.clone(),
        max_tokens: Some(256),
        temperature: Some(0.0),
        json_schema: Some(judge_schema(judge.max_suggestions)),
    }
}

fn or_none(s: &str) -> &str {
    if s.trim().is_empty() {
        "(empty)"
    } else {
        s
    }
}

/// Reads the judge's answer: the validated `json` of the completion, else its text parsed
/// as JSON. Suggestions are trimmed, put on one line, shortened, deduplicated and capped at
/// `max_suggestions`; an answer without a boolean `needs_improvement` is an error.
pub fn judge_verdict(completion: &Completion, max_suggestions: usize) -> Result<JudgeVerdict> {
    let value = match &completion.json {
        Some(v) => v.clone(),
        None => parse_text(&completion.text)?,
    };
    let Some(needs) = value.get("needs_improvement").and_then(Value::as_bool) else {
        return Err(Error::msg(format!(
            "the judge's answer has no boolean `needs_improvement`: {}",
            shorten(&value.to_string(), 200)
        )));
    };
    if !needs {
        return Ok(JudgeVerdict::Fine);
    }
    let mut suggestions: Vec<String> = Vec::new();
    for s in value
        .get("suggestions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
        let one_line = one_line.trim_start_matches(['-', '*', '•', ' ']);
        if one_line.is_empty() {
            continue;
        }
        let s = shorten(one_line, MAX_SUGGESTION);
        if !suggestions.contains(&s) {
            suggestions.push(s);
        }
        if suggestions.len() == max_suggestions {
            break;
        }
    }
    Ok(JudgeVerdict::NeedsImprovement(suggestions))
}

/// The JSON object in a text answer, tolerating prose or a code fence around it.
fn parse_text(text: &str) -> Result<Value> {
    let start = text.find('{');
    let end = text.rfind('}');
    match (start, end) {
        (Some(s), Some(e)) if s < e => serde_json::from_str(&text[s..=e])
            .map_err(|err| Error::msg(format!("the judge's answer is not JSON: {err}"))),
        _ => Err(Error::msg(format!(
            "the judge's answer is not JSON: \"{}\"",
            shorten(text, 120)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_plugin_api::{Role, TokenUsage};

    fn completion(json: Option<Value>, text: &str) -> Completion {
        Completion {
            text: text.to_string(),
            json,
            usage: TokenUsage::default(),
        }
    }

    #[test]
    fn the_request_carries_the_exchange_recent_context_schema_and_model() {
        let review = Review::new("How tall is the Eiffel Tower?", "It is 512 m tall.")
            .with_injected("rag", "old passage", Position::Earlier)
            .with_injected(
                "rag",
                "The Eiffel Tower is 330 m tall.",
                Position::AfterUser,
            )
            .with_injected("fact-check", "- It said 512 m for …", Position::TurnBefore);
        let judge = JudgeConfig {
            model: Some("judge".into()),
            max_suggestions: 2,
        };
        let r = judge_request(&review, &judge);
        assert_eq!(r.model.as_deref(), Some("judge"));
        assert_eq!(r.temperature, Some(0.0));
        assert!(r.system.as_deref().is_some_and(|s| s.contains("JSON")));
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.messages[0].role, Role::User);
        let p = &r.messages[0].content;
        assert!(
            p.contains("User message:\nHow tall is the Eiffel Tower?"),
            "{p}"
        );
        assert!(p.contains("[rag] The Eiffel Tower is 330 m tall."), "{p}");
        assert!(p.contains("[fact-check] - It said 512 m"), "{p}");
        assert!(!p.contains("old passage"), "{p}");
        assert!(p.contains("Assistant reply:\nIt is 512 m tall."), "{p}");
        let schema = r.json_schema.expect("a schema");
        assert_eq!(
            schema["required"],
            json!(["needs_improvement", "suggestions"])
        );
        assert_eq!(schema["properties"]["needs_improvement"]["type"], "boolean");
        assert_eq!(schema["properties"]["suggestions"]["maxItems"], 2);
        // The analyzer's default model when none is named.
        let r = judge_request(
            &Review::new("", ""),
            &JudgeConfig {
                model: None,
                max_suggestions: 3,
            },
        );
        assert_eq!(r.model, None);
        assert!(r.messages[0].content.contains("Assistant reply:\n(empty)"));
        assert!(!r.messages[0].content.contains("Context given"));
    }

    #[test]
    fn long_texts_are_shortened_and_only_the_latest_injections_kept() {
        let long = "word ".repeat(1000);
        let contents: Vec<String> = (0..6).map(|i| format!("passage {i}")).collect();
        let mut review = Review::new(&long, &long);
        for c in &contents {
            review = review.with_injected("rag", c, Position::AfterUser);
        }
        let r = judge_request(
            &review,
            &JudgeConfig {
                model: None,
                max_suggestions: 3,
            },
        );
        let p = &r.messages[0].content;
        assert!(
            p.chars().count() < 2 * MAX_TEXT + 4 * MAX_INJECTED + 600,
            "{}",
            p.len()
        );
        assert!(!p.contains("passage 1") && p.contains("passage 2") && p.contains("passage 5"));
    }

    #[test]
    fn answers_become_verdicts_with_clean_capped_suggestions() {
        let c = completion(
            Some(json!({ "needs_improvement": false, "suggestions": ["x"] })),
            "",
        );
        assert_eq!(judge_verdict(&c, 3), Ok(JudgeVerdict::Fine));
        let c = completion(
            Some(json!({
                "needs_improvement": true,
                "suggestions": ["- Give the height\n in metres.", "", "Give the height in metres.", 7, "Cite the source.", "Be brief.", "Extra."]
            })),
            "",
        );
        assert_eq!(
            judge_verdict(&c, 3),
            Ok(JudgeVerdict::NeedsImprovement(vec![
                "Give the height in metres.".into(),
                "Cite the source.".into(),
                "Be brief.".into()
            ]))
        );
        // Without a validated value, the text is read.
        let c = completion(
            None,
            "Sure:\n```json\n{\"needs_improvement\": true, \"suggestions\": []}\n```",
        );
        assert_eq!(
            judge_verdict(&c, 3),
            Ok(JudgeVerdict::NeedsImprovement(vec![]))
        );
    }

    #[test]
    fn malformed_answers_are_errors() {
        for c in [
            completion(None, "The reply is fine."),
            completion(None, "{not json}"),
            completion(Some(json!({ "needs_improvement": "yes" })), ""),
            completion(Some(json!(["needs_improvement"])), ""),
        ] {
            assert!(judge_verdict(&c, 3).is_err(), "{c:?}");
        }
    }
}
