//! The optional model judge: confirms a contradiction the rules found by asking a model
//! (through the host's `complete` service) with a JSON schema.

use murmur_plugin_api::{ChatMessage, Completion, CompletionRequest};
use serde_json::json;

/// What the judge answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JudgeVerdict {
    /// The passage supports the claim.
    Supported,
    /// The passage contradicts the claim.
    Contradicted,
    /// The passage says nothing about the claim.
    NotCovered,
}

const SYSTEM: &str = "You check one claim against a passage from a knowledge base. Answer \
\"contradicted\" only if the passage states a different value for exactly the thing the claim \
is about; \"supported\" if the passage states the same value; otherwise \"not_covered\". \
Answer with JSON only.";

/// The JSON schema of the judge's answer.
pub fn schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {
            "verdict": {
                "type": "string",
                "enum": ["supported", "contradicted", "not_covered"]
            }
        },
        "required": ["verdict"],
        "additionalProperties": false
    })
}

/// The completion request that asks `model` about one claim and its evidence passage.
pub fn request(model: &str, claim: &str, source: &str, passage: &str) -> CompletionRequest {
    CompletionRequest {
        system: Some(SYSTEM.to_string()),
        messages: vec![ChatMessage::user(format!(
            "Passage ({source}):\n{}\n\nClaim:\n{}\n\nIs the claim supported, contradicted or \
             not covered by the passage?",
            passage.trim(),
            claim.trim()
        ))],
        model: Some(model.to_string()),
        max_tokens: Some(32),
        temperature: Some(0.0),
        json_schema: Some(schema()),
    }
}

/// Reads the judge's answer: the validated JSON if the host gave one, else the text parsed
/// as JSON. `None` when neither holds a known verdict.
pub fn parse_answer(answer: &Completion) -> Option<JudgeVerdict> {
    let value = match &answer.json {
        Some(v) => v.clone(),
        None => serde_json::from_str(answer.text.trim()).ok()?,
    };
    match value.get("verdict")?.as_str()? {
        "supported" => Some(JudgeVerdict::Supported),
        "contradicted" => Some(JudgeVerdict::Contradicted),
        "not_covered" => Some(JudgeVerdict::NotCovered),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_plugin_api::{Role, TokenUsage};

    fn completion(text: &str, json: Option<serde_json::Value>) -> Completion {
        Completion {
            text: text.to_string(),
            json,
            usage: TokenUsage::default(),
        }
    }

    #[test]
    fn the_request_names_the_model_and_carries_claim_passage_and_schema() {
        let r = request(
            "judge",
            "The line is 48 km long.",
            "lines.md > L1",
            "It is 38 km long.",
        );
        assert_eq!(r.model.as_deref(), Some("judge"));
        assert_eq!(r.messages.len(), 1);
        assert_eq!(r.messages[0].role, Role::User);
        let content = &r.messages[0].content;
        assert!(content.contains("The line is 48 km long."));
        assert!(content.contains("It is 38 km long."));
        assert!(content.contains("lines.md > L1"));
        assert_eq!(r.json_schema, Some(schema()));
        assert_eq!(
            schema()["properties"]["verdict"]["enum"],
            json!(["supported", "contradicted", "not_covered"])
        );
        assert_eq!(r.temperature, Some(0.0));
    }

    #[test]
    fn answers_are_read_from_the_json_or_the_text() {
        let a = completion("", Some(json!({"verdict": "contradicted"})));
        assert_eq!(parse_answer(&a), Some(JudgeVerdict::Contradicted));
        let a = completion(" {\"verdict\": \"supported\"} ", None);
        assert_eq!(parse_answer(&a), Some(JudgeVerdict::Supported));
        let a = completion("", Some(json!({"verdict": "not_covered"})));
        assert_eq!(parse_answer(&a), Some(JudgeVerdict::NotCovered));
        assert_eq!(parse_answer(&completion("yes", None)), None);
        assert_eq!(
            parse_answer(&completion("{\"verdict\": \"maybe\"}", None)),
            None
        );
        assert_eq!(parse_answer(&completion("", Some(json!({"v": 1})))), None);
    }
}
