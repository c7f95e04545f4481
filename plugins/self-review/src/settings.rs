//! The `[analyzer.config]` table: raw settings with defaults, resolved into a checked
//! [`ReviewConfig`].

use std::collections::BTreeSet;

use murmur_plugin_api::{Config, Error, Result};
use serde::Deserialize;

use crate::checks::Label;

/// The raw `[analyzer.config]` table. Every key has a default, so the table may be left
/// out; unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Heuristic checks to run, by label. Default: all six (`empty`, `truncated`,
    /// `repeated`, `unanswered_question`, `ignored_context`, `repeats_correction`).
    pub checks: Vec<String>,
    /// Analyzer instances whose context-lane injections are retrieved passages. Default:
    /// `["rag"]`.
    pub retrieval_from: Vec<String>,
    /// Analyzer instances whose context-lane injections are fact-check corrections.
    /// Default: `["fact-check"]`.
    pub corrections_from: Vec<String>,
    /// Words shorter than this many characters are not content words (numbers always
    /// are). Default: 3; 1 to 20.
    pub min_word_len: usize,
    /// Ask the analyzer's default model (its `model` key, else the chat model) to judge the
    /// reply too. Default: `false`.
    pub judge: bool,
    /// Ask this `[models.NAME]` model to judge the reply; setting it turns the judge on.
    /// Default: not set.
    pub judge_model: Option<String>,
    /// Most suggestions kept from the judge (also the schema's `maxItems`). Default: 3;
    /// 1 to 10.
    pub max_suggestions: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            checks: Label::CHECKS
                .iter()
                .map(|l| l.as_str().to_string())
                .collect(),
            retrieval_from: vec!["rag".to_string()],
            corrections_from: vec!["fact-check".to_string()],
            min_word_len: 3,
            judge: false,
            judge_model: None,
            max_suggestions: 3,
        }
    }
}

/// How the judge model is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgeConfig {
    /// The model name; `None` uses the analyzer's default model.
    pub model: Option<String>,
    /// Most suggestions asked for and kept.
    pub max_suggestions: usize,
}

/// The checked configuration the analyzer runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewConfig {
    /// Enabled heuristic checks.
    pub checks: BTreeSet<Label>,
    /// Analyzer instances whose injections are retrieved passages.
    pub retrieval_from: Vec<String>,
    /// Analyzer instances whose injections are fact-check corrections.
    pub corrections_from: Vec<String>,
    /// Shortest content word, in characters.
    pub min_word_len: usize,
    /// The judge, when configured.
    pub judge: Option<JudgeConfig>,
}

impl Default for ReviewConfig {
    /// The configuration of an empty table: every check, no judge.
    fn default() -> Self {
        ReviewConfig {
            checks: Label::CHECKS.into_iter().collect(),
            retrieval_from: vec!["rag".to_string()],
            corrections_from: vec!["fact-check".to_string()],
            min_word_len: 3,
            judge: None,
        }
    }
}

impl Settings {
    /// Checks every key and resolves the settings; all problems are reported at once, each
    /// naming its key.
    pub fn resolve(self) -> Result<ReviewConfig> {
        let mut problems: Vec<String> = Vec::new();
        let mut checks = BTreeSet::new();
        for name in &self.checks {
            match Label::parse_check(name) {
                Some(l) => {
                    checks.insert(l);
                }
                None => problems.push(format!(
                    "`checks`: unknown check \"{name}\" (known: {})",
                    Label::CHECKS.map(Label::as_str).join(", ")
                )),
            }
        }
        let judge_on = self.judge || self.judge_model.is_some();
        if self.checks.is_empty() && !judge_on {
            problems.push(
                "`checks`: empty, and no judge is configured: the analyzer would do nothing"
                    .to_string(),
            );
        }
        for (key, names) in [
            ("retrieval_from", &self.retrieval_from),
            ("corrections_from", &self.corrections_from),
        ] {
            if names.iter().any(|n| n.trim().is_empty()) {
                problems.push(format!("`{key}`: analyzer names must not be empty"));
            }
        }
        if !(1..=20).contains(&self.min_word_len) {
            problems.push(format!(
                "`min_word_len`: {} is out of range (1 to 20)",
                self.min_word_len
            ));
        }
        if !(1..=10).contains(&self.max_suggestions) {
            problems.push(format!(
                "`max_suggestions`: {} is out of range (1 to 10)",
                self.max_suggestions
            ));
        }
        if self
            .judge_model
            .as_deref()
            .is_some_and(|m| m.trim().is_empty())
        {
            problems.push("`judge_model`: must name a model, or be left out".to_string());
        }
        if !problems.is_empty() {
            return Err(Error::config(format!(
                "self-review config: {}",
                problems.join("; ")
            )));
        }
        Ok(ReviewConfig {
            checks,
            retrieval_from: self.retrieval_from,
            corrections_from: self.corrections_from,
            min_word_len: self.min_word_len,
            judge: judge_on.then(|| JudgeConfig {
                model: self.judge_model.map(|m| m.trim().to_string()),
                max_suggestions: self.max_suggestions,
            }),
        })
    }
}

/// Parses and resolves an `[analyzer.config]` table. A value of the wrong type is reported
/// with its key (serde alone would not name it).
pub fn parse_config(config: &Config) -> Result<ReviewConfig> {
    let value = match config.as_json() {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        v => v.clone(),
    };
    let settings: Settings = match serde_json::from_value(value.clone()) {
        Ok(s) => s,
        Err(e) => {
            let serde_json::Value::Object(map) = &value else {
                return Err(Error::config(format!(
                    "self-review config: expected a table: {e}"
                )));
            };
            // Find the keys that fail on their own, to name them.
            let mut bad: Vec<String> = Vec::new();
            for (key, v) in map {
                let one =
                    serde_json::Value::Object([(key.clone(), v.clone())].into_iter().collect());
                if let Err(e) = serde_json::from_value::<Settings>(one) {
                    bad.push(format!("`{key}`: {e}"));
                }
            }
            if bad.is_empty() {
                bad.push(e.to_string());
            }
            return Err(Error::config(format!(
                "self-review config: {}",
                bad.join("; ")
            )));
        }
    };
    settings.resolve()
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_plugin_api::ErrorKind;
    use serde_json::json;

    fn err(v: serde_json::Value) -> Error {
        parse_config(&Config::new(v)).expect_err("a bad config")
    }

    #[test]
    fn an_empty_table_gives_every_check_and_no_judge() {
        let c = parse_config(&Config::new(serde_json::Value::Null)).expect("defaults");
        assert_eq!(c, ReviewConfig::default());
        assert_eq!(Settings::default().resolve().expect("defaults"), c);
    }

    #[test]
    fn keys_are_read() {
        let c = parse_config(&Config::new(json!({
            "checks": ["empty", "truncated"],
            "retrieval_from": ["kb"],
            "corrections_from": ["checker"],
            "min_word_len": 4,
            "judge_model": "judge",
            "max_suggestions": 2,
        })))
        .expect("valid");
        assert_eq!(
            c.checks,
            [Label::Empty, Label::Truncated].into_iter().collect()
        );
        assert_eq!(c.retrieval_from, ["kb"]);
        assert_eq!(c.corrections_from, ["checker"]);
        assert_eq!(c.min_word_len, 4);
        assert_eq!(
            c.judge,
            Some(JudgeConfig {
                model: Some("judge".into()),
                max_suggestions: 2
            })
        );
        let c = parse_config(&Config::new(json!({ "judge": true, "checks": [] }))).expect("valid");
        assert_eq!(c.judge.map(|j| j.model), Some(None));
        assert!(c.checks.is_empty());
    }

    #[test]
    fn bad_values_are_config_errors_that_name_the_key() {
        for (v, key) in [
            (json!({ "checks": ["empty", "loud"] }), "`checks`"),
            (json!({ "checks": [] }), "`checks`"),
            (json!({ "checks": "empty" }), "`checks`"),
            (json!({ "min_word_len": 0 }), "`min_word_len`"),
            (json!({ "min_word_len": "three" }), "`min_word_len`"),
            (json!({ "max_suggestions": 11 }), "`max_suggestions`"),
            (json!({ "judge_model": " " }), "`judge_model`"),
            (json!({ "judge": "yes" }), "`judge`"),
            (json!({ "retrieval_from": [""] }), "`retrieval_from`"),
            (json!({ "corrections_from": [" "] }), "`corrections_from`"),
            (json!({ "min_len": 3 }), "min_len"),
        ] {
            let e = err(v.clone());
            assert_eq!(e.kind(), ErrorKind::InvalidConfig, "{v}");
            assert!(e.message().contains(key), "{v}: {}", e.message());
        }
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let e = err(json!({ "min_word_len": 0, "max_suggestions": 0 }));
        assert!(e.message().contains("`min_word_len`"), "{}", e.message());
        assert!(e.message().contains("`max_suggestions`"), "{}", e.message());
        let e = err(json!({ "min_word_len": "x", "judge": 2 }));
        assert!(e.message().contains("`min_word_len`"), "{}", e.message());
        assert!(e.message().contains("`judge`"), "{}", e.message());
    }
}
