//! # murmur-self-review: the `self-review` analyzer
//!
//! After each reply (hook `turn_complete`), `self-review` reviews the reply against the
//! user's latest message and against what analyzers injected into the model context, and
//! when it finds problems it injects **one** instructions-lane note for the next turn: a
//! short piece of coaching, one bullet per finding, e.g.
//!
//! ```text
//! Self-review of your previous reply:
//! - Your last reply ended mid-sentence; finish your thoughts.
//! - The user asked "How tall is the Eiffel Tower?"; answer it directly.
//! - You repeated 512 m although the fact-check said 330 m; use 330 m.
//! ```
//!
//! It is advisory and deferred like every analyzer: it never changes the reply it reviews,
//! only the system prompt of the next turn. It is not a fact checker (that is `fact-check`,
//! whose corrections it reads) and not a retriever (that is `rag`, whose passages it reads).
//! The host loads it from its `.so`; nothing else depends on this crate.
//!
//! ## Checks and labels
//!
//! Each check that fires adds its label to `details.labels`:
//!
//! | label | fires when |
//! |---|---|
//! | `empty` | the reply is empty, white space, or only filler ("Sure!", "Let me check."). The other checks are then skipped. |
//! | `truncated` | the reply stops mid-sentence: an unclosed code fence or bracket, an empty or unfinished last list item, a last word or mark after which nothing can end ("and", "the", ",", ":"), or no final punctuation in a reply that punctuates elsewhere. A short unpunctuated answer ("Paris") is complete. |
//! | `repeated` | the same sentence twice (four words or more), the same run of eight words twice in running text, or a short phrase looping three times. Parallel list items that merely start alike are fine. |
//! | `unanswered_question` | a question of the user (a sentence ending in `?`, opening with what/when/where/which/who/why/how, or an indirect "I'd like to know when …") shares no content word (stemmed, stop words removed) with the reply. A terse reply (eight words at most) that names something or gives a number also counts as an answer ("Canberra."), as does a reply opening with "Yes"/"No" to a yes-no question, or a short reply with a number to a how-much/how-many question, or with a number or time word to a when/how-long question. One finding per question, naming it. |
//! | `ignored_context` | passages from the `retrieval_from` analyzers were in the model context for this reply (after the latest user message, or injected during the turn before), share content words with the user message, and bring key facts (numbers, proper names) the user did not mention; the reply uses none of them. |
//! | `repeats_correction` | a correction from a `corrections_from` analyzer (the fact-check line format `- It said STATED for "CLAIM"; the knowledge base says EXPECTED (SOURCE).`) rejected `STATED`, and this reply states it again (numbers compared without thousands separators, "1,200" = "1200"), does not state `EXPECTED`, and is about the claim. |
//! | `judge` | the judge model (when configured) says the reply needs improvement. |
//!
//! ## The injection
//!
//! Nothing found, nothing injected. Otherwise one [`Injection::instructions`] with key
//! `self-review`, so a newer review replaces one still queued (SPEC S15), and details
//!
//! ```json
//! {"labels": ["truncated", "unanswered_question"],
//!  "findings": [{"label": "truncated", "detail": "it ends with \"and\""}, …],
//!  "suggestions": ["…from the judge…"]}
//! ```
//!
//! with `labels` sorted and without repeats. Advice about one reply is only useful for the
//! next turn: set `ttl_turns = 1` on the `[[analyzer]]` table so a note that could not be
//! delivered in time is dropped rather than reaching a later turn (SPEC S16).
//!
//! ## The judge
//!
//! With `judge = true` (the analyzer's default model: its `model` key, else the chat model)
//! or `judge_model = "NAME"` (a `[models.NAME]` model), the analyzer also calls the model
//! through the host's `complete` service with the user message, the recent injections and
//! the reply, and a JSON schema requiring `{"needs_improvement": boolean, "suggestions":
//! [string, …]}` (at most `max_suggestions` items). When `needs_improvement` is true, label
//! `judge` is added and each suggestion becomes a bullet. The judge is skipped for an empty
//! reply. A failing judge call is logged as a warning and the heuristics still count.
//!
//! ## Config (`[analyzer.config]`)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `checks` | all six labels above but `judge` | heuristic checks to run |
//! | `retrieval_from` | `["rag"]` | analyzer instances whose injections are retrieved passages |
//! | `corrections_from` | `["fact-check"]` | analyzer instances whose injections are fact-check corrections |
//! | `min_word_len` | `3` | shortest content word, in characters (1 to 20; numbers always count) |
//! | `judge` | `false` | ask the analyzer's default model to judge the reply |
//! | `judge_model` | not set | ask this model to judge the reply (turns the judge on) |
//! | `max_suggestions` | `3` | most judge suggestions asked for and kept (1 to 10) |
//!
//! Unknown keys and bad values are refused with an [`Error::config`] naming the key.
//!
//! ```toml
//! [[analyzer]]
//! name = "self-review"
//! ttl_turns = 1
//! [analyzer.config]
//! checks = ["empty", "truncated", "unanswered_question", "repeats_correction"]
//! judge_model = "judge"
//! ```
//!
//! ## Using the checks without a host
//!
//! Every check is a plain function over a [`Review`] (user message, reply, and injected
//! messages with their analyzer name and [`Position`]), so tests and tools call them
//! directly:
//!
//! ```
//! use murmur_self_review::{run_checks, Position, Review, ReviewConfig};
//!
//! let review = Review::new("How tall is the Eiffel Tower?", "It is very tall and")
//!     .with_injected("rag", "The Eiffel Tower in Paris is 330 m tall.", Position::AfterUser);
//! let labels: Vec<&str> = run_checks(&review, &ReviewConfig::default())
//!     .iter()
//!     .map(|f| f.label.as_str())
//!     .collect();
//! assert_eq!(labels, ["truncated", "ignored_context"]);
//! ```

mod checks;
mod correction;
mod judge;
mod settings;
mod text;

use std::collections::BTreeSet;

use murmur_plugin_api::{
    export_plugin, Analyzer, Config, Context, Error, ErrorKind, Hook, Host, Injection, Level,
    Result,
};
use serde_json::json;

pub use checks::{
    check_empty, check_ignored_context, check_repeated, check_repeats_correction, check_truncated,
    check_unanswered, is_answered, key_facts, questions, run_checks, Finding, Injected, Label,
    Position, Question, QuestionKind, Review,
};
pub use correction::{parse_correction_line, parse_corrections, Correction};
pub use judge::{judge_request, judge_schema, judge_verdict, JudgeVerdict};
pub use settings::{parse_config, JudgeConfig, ReviewConfig, Settings};

/// The supersede key of the injection (SPEC S15).
pub const KEY: &str = "self-review";

/// The first line of the injected note.
const HEADING: &str = "Self-review of your previous reply:";

/// The finding a judge verdict adds, with the suggestions for the note; `None` when the
/// judge found the reply fine.
pub fn judge_finding(verdict: JudgeVerdict) -> Option<(Finding, Vec<String>)> {
    let JudgeVerdict::NeedsImprovement(suggestions) = verdict else {
        return None;
    };
    let detail = if suggestions.is_empty() {
        "the judge found the reply needs improvement".to_string()
    } else {
        format!("the judge suggested: {}", suggestions.join(" / "))
    };
    Some((
        Finding {
            label: Label::Judge,
            detail,
            advice: "A reviewer found your last reply needs improvement; answer more carefully."
                .to_string(),
        },
        suggestions,
    ))
}

/// The note for a set of findings: `None` when there are none, else one instructions-lane
/// injection with key [`KEY`], one bullet per finding (the judge's suggestions replace its
/// generic bullet) and details `{"labels", "findings", "suggestions"}`.
pub fn report(findings: &[Finding], suggestions: &[String]) -> Option<Injection> {
    if findings.is_empty() {
        return None;
    }
    let mut bullets: Vec<&str> = Vec::new();
    for f in findings {
        if f.label == Label::Judge && !suggestions.is_empty() {
            continue;
        }
        if !bullets.contains(&f.advice.as_str()) {
            bullets.push(&f.advice);
        }
    }
    for s in suggestions {
        if !bullets.contains(&s.as_str()) {
            bullets.push(s);
        }
    }
    let mut text = HEADING.to_string();
    for b in bullets {
        text.push_str("\n- ");
        text.push_str(b);
    }
    let labels: BTreeSet<&str> = findings.iter().map(|f| f.label.as_str()).collect();
    let details = json!({
        "labels": labels,
        "findings": findings
            .iter()
            .map(|f| json!({ "label": f.label.as_str(), "detail": f.detail }))
            .collect::<Vec<_>>(),
        "suggestions": suggestions,
    });
    Some(
        Injection::instructions(text)
            .with_key(KEY)
            .with_details(details),
    )
}

/// The analyzer: one instance per `[[analyzer]]` table that uses `self-review`.
#[derive(Debug)]
pub struct SelfReview {
    config: ReviewConfig,
}

impl SelfReview {
    /// The resolved configuration.
    pub fn config(&self) -> &ReviewConfig {
        &self.config
    }

    /// The heuristic part of a run: the note for `review`, without the judge.
    pub fn review(&self, review: &Review<'_>) -> Option<Injection> {
        report(&run_checks(review, &self.config), &[])
    }
}

impl Analyzer for SelfReview {
    const NAME: &'static str = "self-review";
    const DESCRIPTION: &'static str =
        "reviews each reply (empty, truncated, repeated, unanswered, ignored context, repeated corrections) and coaches the next one";
    const HOOKS: &'static [Hook] = &[Hook::TurnComplete];

    fn new(config: Config) -> Result<Self> {
        Ok(SelfReview {
            config: parse_config(&config)?,
        })
    }

    fn analyze(&self, ctx: &Context<'_>, host: &Host<'_>) -> Result<Vec<Injection>> {
        // The host reports an empty final reply as no reply; after `turn_complete` that is
        // an empty reply worth flagging, on other hooks there is nothing to review.
        let reply = match ctx.latest_reply() {
            Some(r) => r,
            None if ctx.hook() == Hook::TurnComplete => "",
            None => return Ok(vec![]),
        };
        let user = ctx.latest_user().unwrap_or("");
        let review = Review::from_messages(user, reply, ctx.messages());
        let mut findings = run_checks(&review, &self.config);
        let mut suggestions = Vec::new();
        let empty = findings.iter().any(|f| f.label == Label::Empty);
        if let (Some(judge), false) = (&self.config.judge, empty) {
            if host.cancelled() {
                return Err(Error::cancelled());
            }
            let verdict = host
                .complete(&judge_request(&review, judge))
                .and_then(|c| judge_verdict(&c, judge.max_suggestions));
            match verdict {
                Ok(v) => {
                    if let Some((finding, s)) = judge_finding(v) {
                        findings.push(finding);
                        suggestions = s;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Cancelled => return Err(e),
                Err(e) => host.log(
                    Level::Warn,
                    &format!("judge call failed; using the heuristic checks alone: {e}"),
                ),
            }
        }
        Ok(report(&findings, &suggestions).into_iter().collect())
    }
}

export_plugin! {
    name: "murmur-self-review",
    version: env!("CARGO_PKG_VERSION"),
    analyzers: [SelfReview],
    tools: [],
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_plugin_api::Role;

    fn analyzer(config: serde_json::Value) -> SelfReview {
        SelfReview::new(Config::new(config)).expect("a valid config")
    }

    #[test]
    fn one_instructions_lane_note_with_the_key_bullets_and_sorted_labels() {
        let a = analyzer(serde_json::Value::Null);
        let review = Review::new(
            "How tall is the Eiffel Tower?",
            "Buildings are fascinating structures and",
        )
        .with_injected(
            "fact-check",
            "Fact-check of the previous reply (from the knowledge base):\n\
             - It said 512 m for \"The Eiffel Tower is 512 m tall.\"; the knowledge base says 330 m (landmarks.md > Paris > Eiffel Tower).",
            Position::AfterUser,
        );
        let i = a.review(&review).expect("problems found");
        assert_eq!(i.role, Role::System);
        assert_eq!(i.key.as_deref(), Some("self-review"));
        assert_eq!(
            i.content,
            "Self-review of your previous reply:\n\
             - Your last reply ended mid-sentence; finish your thoughts.\n\
             - The user asked \"How tall is the Eiffel Tower?\"; answer it directly."
        );
        let d = i.details.expect("details");
        assert_eq!(d["labels"], json!(["truncated", "unanswered_question"]));
        assert_eq!(d["findings"][0]["label"], "truncated");
        assert_eq!(d["findings"][0]["detail"], "it ends with \"and\"");
        assert_eq!(d["findings"][1]["label"], "unanswered_question");
        assert_eq!(d["suggestions"], json!([]));
    }

    #[test]
    fn a_repeated_correction_is_coached_with_the_expected_value() {
        let a = analyzer(serde_json::Value::Null);
        let review = Review::new("How tall is the Eiffel Tower?", "The Eiffel Tower is 512 m tall.")
            .with_injected(
                "fact-check",
                "Fact-check of the previous reply (from the knowledge base):\n\
                 - It said 512 m for \"The Eiffel Tower is 512 m tall.\"; the knowledge base says 330 m (landmarks.md > Paris > Eiffel Tower).",
                Position::AfterUser,
            );
        let i = a.review(&review).expect("a finding");
        assert_eq!(
            i.content,
            "Self-review of your previous reply:\n\
             - You repeated 512 m although the fact-check said 330 m; use 330 m."
        );
        assert_eq!(
            i.details.expect("details")["labels"],
            json!(["repeats_correction"])
        );
    }

    #[test]
    fn a_good_reply_gets_no_note() {
        let a = analyzer(serde_json::Value::Null);
        let review = Review::new(
            "How tall is the Eiffel Tower?",
            "The Eiffel Tower is 330 m tall.",
        )
        .with_injected(
            "rag",
            "The Eiffel Tower in Paris is 330 m tall.",
            Position::AfterUser,
        );
        assert_eq!(a.review(&review), None);
        assert_eq!(report(&[], &[]), None);
    }

    #[test]
    fn judge_suggestions_become_bullets_and_a_label() {
        assert_eq!(judge_finding(JudgeVerdict::Fine), None);
        let (finding, suggestions) = judge_finding(JudgeVerdict::NeedsImprovement(vec![
            "Give the height in metres.".into(),
        ]))
        .expect("needs improvement");
        assert_eq!(finding.label, Label::Judge);
        let truncated = check_truncated("It is very tall and").expect("truncated");
        let i = report(&[truncated, finding.clone()], &suggestions).expect("a note");
        assert_eq!(
            i.content,
            "Self-review of your previous reply:\n\
             - Your last reply ended mid-sentence; finish your thoughts.\n\
             - Give the height in metres."
        );
        let d = i.details.expect("details");
        assert_eq!(d["labels"], json!(["judge", "truncated"]));
        assert_eq!(d["suggestions"], json!(["Give the height in metres."]));
        // Without suggestions the judge's own bullet stands.
        let (finding, none) =
            judge_finding(JudgeVerdict::NeedsImprovement(vec![])).expect("needs improvement");
        let i = report(&[finding], &none).expect("a note");
        assert!(i.content.ends_with(
            "- A reviewer found your last reply needs improvement; answer more carefully."
        ));
    }

    #[test]
    fn the_manifest_names_the_analyzer_and_its_hook() {
        let m = MURMUR_PLUGIN.manifest();
        assert_eq!(m.analyzers.len(), 1);
        assert_eq!(m.analyzers[0].name, "self-review");
        assert!(MURMUR_PLUGIN.requires.is_empty(), "the judge is optional");
    }

    #[test]
    fn config_errors_refuse_the_instance() {
        let e =
            SelfReview::new(Config::new(json!({ "checks": ["loud"] }))).expect_err("unknown check");
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("`checks`"));
    }
}
