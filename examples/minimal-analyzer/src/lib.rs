//! # minimal-analyzer: a template for your own Murmur analyzer
//!
//! Shows a complete analyzer plugin: settings read from `[analyzer.config]` with defaults,
//! the decision kept in a plain function that unit tests call without loading the `.so`,
//! a thin [`Analyzer::analyze`] around it, and the [`export_plugin!`] line that makes the
//! library loadable.
//!
//! The analyzer, `unanswered-question`, runs on `turn_complete`. When the latest user
//! message asks a question (a sentence ending in `?`) and the reply mentions none of that
//! question's content words, it injects a note in the instructions lane, so the next turn's
//! system prompt reminds the model to answer it. The note has the key `unanswered-question`,
//! so a newer note replaces one that is still queued (SPEC S15).
//!
//! Build, check and try it, from the root of the Murmur repository:
//!
//! ```text
//! cargo test -p minimal-analyzer
//! cargo build -p minimal-analyzer -p murmur
//! target/debug/murmur plugins check target/debug/libminimal_analyzer.so
//! mkdir -p my-bot/plugins && cp target/debug/libminimal_analyzer.so my-bot/plugins/
//! target/debug/murmur run --config my-bot/murmur.toml --script my-bot/conversation.txt
//! ```
//!
//! `examples/minimal-analyzer/README.md` has the config, model script and conversation
//! files for the last command.

use murmur_plugin_api::{
    export_plugin, Analyzer, Config, Context, Error, Hook, Host, Injection, Result,
};
use serde::Deserialize;

/// The `[analyzer.config]` table. Every field has a default, so the table may be left out.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Words shorter than this many characters are not content words.
    pub min_word_len: usize,
    /// The note to inject; `{words}` is replaced by the question's content words.
    pub note: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_word_len: 4,
            note: "The user's last question (about: {words}) may not have been answered. \
                   Answer it directly before anything else."
                .to_string(),
        }
    }
}

/// What [`check`] concluded about one exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The user asked no question (or only one made of short or filler words).
    NoQuestion,
    /// The reply mentions at least one content word of the question.
    Answered,
    /// The reply mentions none of these content words of the question.
    Unanswered(Vec<String>),
}

/// Filler words that say nothing about what a question is about.
const FILLER: &[&str] = &[
    "about", "and", "are", "can", "could", "did", "does", "have", "how", "please", "should",
    "tell", "that", "the", "there", "these", "this", "those", "what", "when", "where", "which",
    "who", "whom", "whose", "why", "will", "with", "would", "you", "your",
];

/// Lowercased words of at least `min_len` characters.
fn words(text: &str, min_len: usize) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(move |w| w.chars().count() >= min_len)
        .map(str::to_lowercase)
}

/// What two words must share to match: a plural `s` is dropped, so "capitals" and "capital"
/// match.
fn stem(word: &str) -> &str {
    word.strip_suffix('s').unwrap_or(word)
}

/// The decision, free of any host types so that tests can call it directly.
pub fn check(user: &str, reply: &str, settings: &Settings) -> Verdict {
    let mut asked: Vec<String> = Vec::new();
    for sentence in user.split_inclusive(['.', '!', '?', '\n']) {
        if !sentence.trim_end().ends_with('?') {
            continue;
        }
        for w in words(sentence, settings.min_word_len) {
            if !FILLER.contains(&w.as_str()) && !asked.iter().any(|a| stem(a) == stem(&w)) {
                asked.push(w);
            }
        }
    }
    if asked.is_empty() {
        return Verdict::NoQuestion;
    }
    let said: Vec<String> = words(reply, 1).collect();
    if asked
        .iter()
        .any(|a| said.iter().any(|s| stem(s) == stem(a)))
    {
        Verdict::Answered
    } else {
        Verdict::Unanswered(asked)
    }
}

/// The analyzer: one instance per `[[analyzer]]` table that names `unanswered-question`.
#[derive(Debug)]
pub struct UnansweredQuestion {
    settings: Settings,
}

impl UnansweredQuestion {
    /// The injection for one exchange, if any. `analyze` is this plus the host's context.
    pub fn review(&self, user: &str, reply: &str) -> Option<Injection> {
        let Verdict::Unanswered(words) = check(user, reply, &self.settings) else {
            return None;
        };
        let note = self.settings.note.replace("{words}", &words.join(", "));
        Some(
            Injection::instructions(note)
                .with_key("unanswered-question")
                .with_details(serde_json::json!({ "words": words })),
        )
    }
}

impl Analyzer for UnansweredQuestion {
    const NAME: &'static str = "unanswered-question";
    const DESCRIPTION: &'static str = "reminds the model of a question its reply did not address";
    const HOOKS: &'static [Hook] = &[Hook::TurnComplete];

    fn new(config: Config) -> Result<Self> {
        let settings: Settings = config.parse()?;
        if settings.min_word_len == 0 {
            return Err(Error::config("`min_word_len` must be at least 1"));
        }
        Ok(UnansweredQuestion { settings })
    }

    fn analyze(&self, ctx: &Context<'_>, _host: &Host<'_>) -> Result<Vec<Injection>> {
        let Some(user) = ctx.latest_user() else {
            return Ok(vec![]);
        };
        let reply = ctx.latest_reply().unwrap_or("");
        Ok(self.review(user, reply).into_iter().collect())
    }
}

export_plugin! {
    name: "minimal-analyzer",
    version: env!("CARGO_PKG_VERSION"),
    analyzers: [UnansweredQuestion],
    tools: [],
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_plugin_api::testing::{conformance, MockHost, Run};
    use murmur_plugin_api::{ErrorKind, Role};

    #[test]
    fn a_turn_whose_reply_skips_the_question_gets_a_note_through_analyze() {
        let out = Run::new(Hook::TurnComplete)
            .user("How tall is Everest?")
            .assistant("Mountains are great.")
            .analyze(&analyzer(serde_json::Value::Null), &MockHost::new())
            .expect("analyze succeeds");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].role, Role::System);
        assert!(
            out[0].content.contains("tall, everest"),
            "{}",
            out[0].content
        );
    }

    #[test]
    fn meets_the_host_conformance_checks() {
        conformance::<UnansweredQuestion>(Config::new(serde_json::Value::Null)).assert_ok();
    }

    fn analyzer(config: serde_json::Value) -> UnansweredQuestion {
        UnansweredQuestion::new(Config::new(config)).expect("valid config")
    }

    #[test]
    fn a_reply_that_mentions_the_question_counts_as_answered() {
        let s = Settings::default();
        let v = check(
            "What is the capital of France?",
            "Paris is the capital.",
            &s,
        );
        assert_eq!(v, Verdict::Answered);
        // Plural and case do not matter.
        let v = check("Which CAPITALS lie on a river?", "Most capitals do.", &s);
        assert_eq!(v, Verdict::Answered);
    }

    #[test]
    fn a_reply_that_ignores_the_question_is_flagged_with_its_content_words() {
        let v = check(
            "Thanks! What is the capital of France?",
            "Happy to help with anything else.",
            &Settings::default(),
        );
        assert_eq!(
            v,
            Verdict::Unanswered(vec!["capital".into(), "france".into()])
        );
    }

    #[test]
    fn statements_and_filler_only_questions_are_not_questions() {
        let s = Settings::default();
        assert_eq!(check("Tell me a joke.", "", &s), Verdict::NoQuestion);
        assert_eq!(check("What is it?", "", &s), Verdict::NoQuestion);
        // Only the sentence with the question mark counts.
        let v = check("Paris is lovely. Why so?", "Because.", &s);
        assert_eq!(v, Verdict::NoQuestion);
    }

    #[test]
    fn the_injection_goes_to_the_instructions_lane_with_a_key() {
        let a = analyzer(serde_json::json!({ "note": "Answer the question about {words}." }));
        let i = a
            .review("How tall is Everest?", "Mountains are great.")
            .expect("unanswered");
        assert_eq!(i.role, Role::System);
        assert_eq!(i.content, "Answer the question about tall, everest.");
        assert_eq!(i.key.as_deref(), Some("unanswered-question"));
        assert!(a
            .review("How tall is Everest?", "Everest is 8849 m tall.")
            .is_none());
    }

    #[test]
    fn settings_have_defaults_and_refuse_unknown_keys_and_a_zero_length() {
        let a = analyzer(serde_json::Value::Null);
        assert_eq!(a.settings.min_word_len, 4);
        let a = analyzer(serde_json::json!({ "min_word_len": 3 }));
        assert_eq!(
            check("Why is the sky red?", "No idea.", &a.settings),
            Verdict::Unanswered(vec!["sky".into(), "red".into()])
        );
        let e = UnansweredQuestion::new(Config::new(serde_json::json!({ "min_len": 3 })))
            .expect_err("typo");
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        let e = UnansweredQuestion::new(Config::new(serde_json::json!({ "min_word_len": 0 })))
            .expect_err("zero");
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
    }
}
