//! # rag: retrieved passages as context
//!
//! A Murmur analyzer on `turn_start`. While the model answers the user's message, it queries
//! the host's knowledge base (the `search` service: BM25 over the `[knowledge]` folder, hybrid
//! with meaning when the host has an embedding model) with
//! that message, keeps the passages that score well enough, drops those it already injected
//! in this session, and injects the rest, with their citations and within a token budget,
//! as one context-lane message. The model sees them from the next boundary on; they stay in
//! its context for the rest of the session, so a passage is never injected twice.
//!
//! ## Config (`[analyzer.config]`, every key optional)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `candidates` | 8 | passages asked from `search` |
//! | `max_passages` | 3 | most passages injected per turn |
//! | `min_score` | 1.0 | BM25 score a passage needs (lexical search) |
//! | `min_similarity` | 0.25 | similarity to the message a passage needs (hybrid search) |
//! | `min_relative_score` | 0.4 | … and at least this share of the best hit's score |
//! | `token_budget` | 600 | most tokens of passage text per injection (1 token ≈ 4 characters) |
//! | `previous_turn` | false | also query with the previous user message |
//! | `header` | see below | the first line of the injected message |
//!
//! The injection has key `rag` (a newer retrieval replaces one still queued) and details
//! `{"labels": [citations], "passages": [{"id", "citation", "score"}]}` (not the query: it is
//! the user's message, already in the transcript, and may hold what moderation redacts).
//! The passages it injected are remembered in per-session state (`injected`).

use std::collections::BTreeSet;

use murmur_plugin_api::{
    export_plugin, Analyzer, Config, Context, Error, Hook, Host, Injection, Level, Origin, Result,
    SearchHit,
};
use serde::Deserialize;

/// The `[analyzer.config]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Passages asked from `search`.
    pub candidates: u32,
    /// Most passages injected per turn.
    pub max_passages: usize,
    /// BM25 score a passage needs, when the search is lexical.
    pub min_score: f32,
    /// Cosine similarity to the query a passage needs, when the search is hybrid.
    pub min_similarity: f32,
    /// Share of the best hit's score a passage needs.
    pub min_relative_score: f32,
    /// Most tokens of passage text per injection.
    pub token_budget: usize,
    /// Also query with the previous user message.
    pub previous_turn: bool,
    /// First line of the injected message.
    pub header: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            candidates: 8,
            max_passages: 3,
            min_score: 1.0,
            min_similarity: 0.25,
            min_relative_score: 0.4,
            token_budget: 600,
            previous_turn: false,
            header: "Passages from the knowledge base that may help answer the user \
                     (cite the source in brackets when you use one):"
                .to_string(),
        }
    }
}

impl Settings {
    fn check(self) -> Result<Self> {
        if self.candidates == 0 || self.candidates > 100 {
            return Err(Error::config("`candidates` must be between 1 and 100"));
        }
        if self.max_passages == 0 {
            return Err(Error::config("`max_passages` must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.min_relative_score) {
            return Err(Error::config(
                "`min_relative_score` must be between 0 and 1",
            ));
        }
        if !self.min_score.is_finite() || self.min_score < 0.0 {
            return Err(Error::config("`min_score` must be a number of at least 0"));
        }
        if !(-1.0..=1.0).contains(&self.min_similarity) {
            return Err(Error::config("`min_similarity` must be between -1 and 1"));
        }
        if self.token_budget < 50 {
            return Err(Error::config("`token_budget` must be at least 50"));
        }
        Ok(self)
    }
}

/// Tokens of a text, estimated at one per four characters.
fn tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

/// The passages to inject: good enough, not injected before, within the budget, best first.
pub fn select(hits: &[SearchHit], already: &BTreeSet<String>, s: &Settings) -> Vec<SearchHit> {
    let best = hits.iter().map(|h| h.score).fold(0.0f32, f32::max);
    let floor = best * s.min_relative_score;
    // Relevance on an absolute scale: similarity when the search has it, else BM25.
    let relevant = |h: &SearchHit| match h.similarity {
        Some(similarity) => similarity >= s.min_similarity,
        None => h.score >= s.min_score,
    };
    let mut out: Vec<SearchHit> = Vec::new();
    let mut used = 0usize;
    for h in hits {
        if out.len() == s.max_passages {
            break;
        }
        if h.score < floor
            || !relevant(h)
            || already.contains(&h.id)
            || out.iter().any(|o| o.id == h.id)
        {
            continue;
        }
        let cost = tokens(&h.text) + tokens(&h.citation()) + 2;
        if used + cost > s.token_budget {
            continue;
        }
        used += cost;
        out.push(h.clone());
    }
    out
}

/// The injected message for these passages.
pub fn render(passages: &[SearchHit], s: &Settings) -> Injection {
    let mut text = s.header.clone();
    for (i, p) in passages.iter().enumerate() {
        text.push_str(&format!("\n\n[{}] {}\n{}", i + 1, p.citation(), p.text));
    }
    let labels: Vec<String> = passages.iter().map(SearchHit::citation).collect();
    let listed: Vec<serde_json::Value> = passages
        .iter()
        .map(|p| serde_json::json!({"id": p.id, "citation": p.citation(), "score": p.score}))
        .collect();
    Injection::context(text)
        .with_key("rag")
        .with_details(serde_json::json!({"labels": labels, "passages": listed}))
}

/// The query for a turn: the user's message, and with `previous_turn` the user message
/// before it.
pub fn query(ctx: &Context<'_>, s: &Settings) -> Option<String> {
    let latest = ctx.latest_user()?.trim().to_string();
    if latest.is_empty() {
        return None;
    }
    if !s.previous_turn {
        return Some(latest);
    }
    let mut users = ctx
        .messages()
        .filter(|m| m.origin == Origin::User)
        .map(|m| m.content)
        .collect::<Vec<_>>();
    // The latest user message is the last one; the one before it is the previous turn's.
    users.pop();
    Some(match users.last() {
        Some(prev) => format!("{latest}\n{prev}"),
        None => latest,
    })
}

const STATE_KEY: &str = "injected";

/// The analyzer.
#[derive(Debug)]
pub struct Rag {
    settings: Settings,
}

impl Analyzer for Rag {
    const NAME: &'static str = "rag";
    const DESCRIPTION: &'static str =
        "injects knowledge-base passages about the user's message, with citations";
    const HOOKS: &'static [Hook] = &[Hook::TurnStart];

    fn new(config: Config) -> Result<Self> {
        let settings: Settings = config.parse()?;
        Ok(Rag {
            settings: settings.check()?,
        })
    }

    fn analyze(&self, ctx: &Context<'_>, host: &Host<'_>) -> Result<Vec<Injection>> {
        let Some(query) = query(ctx, &self.settings) else {
            return Ok(vec![]);
        };
        let hits = host.search(&query, self.settings.candidates)?;
        let mut already: BTreeSet<String> = host
            .state_get(STATE_KEY)
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let chosen = select(&hits, &already, &self.settings);
        host.log(
            Level::Debug,
            &format!(
                "{} hits, {} injected, best score {:.2}",
                hits.len(),
                chosen.len(),
                hits.first().map_or(0.0, |h| h.score)
            ),
        );
        if chosen.is_empty() {
            return Ok(vec![]);
        }
        already.extend(chosen.iter().map(|h| h.id.clone()));
        if let Ok(state) = serde_json::to_string(&already) {
            host.state_put(STATE_KEY, &state);
        }
        Ok(vec![render(&chosen, &self.settings)])
    }
}

export_plugin! {
    name: "rag",
    version: env!("CARGO_PKG_VERSION"),
    requires: ["search", "state"],
    analyzers: [Rag],
    tools: [],
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_plugin_api::{ErrorKind, Role};

    fn hit(id: &str, score: f32, text: &str) -> SearchHit {
        SearchHit {
            id: id.into(),
            source: "kb.md".into(),
            heading: format!("Doc > {id}"),
            text: text.into(),
            score,
            similarity: None,
        }
    }

    fn ids(v: &[SearchHit]) -> Vec<&str> {
        v.iter().map(|h| h.id.as_str()).collect()
    }

    #[test]
    fn keeps_the_best_hits_above_both_thresholds() {
        let s = Settings::default();
        let hits = vec![
            hit("a", 10.0, "alpha"),
            hit("b", 5.0, "beta"),
            hit("c", 3.9, "gamma: under 40% of the best"),
            hit("d", 4.5, "delta"),
            hit("e", 4.2, "epsilon, one too many"),
        ];
        assert_eq!(
            ids(&select(&hits, &BTreeSet::new(), &s)),
            vec!["a", "b", "d"]
        );
        // The absolute floor applies when every score is low.
        let weak = vec![hit("a", 0.9, "x"), hit("b", 0.5, "y")];
        assert!(select(&weak, &BTreeSet::new(), &s).is_empty());
    }

    #[test]
    fn with_similarities_the_floor_is_on_similarity_not_bm25() {
        let s = Settings::default();
        let with = |id: &str, score: f32, similarity: f32| SearchHit {
            similarity: Some(similarity),
            ..hit(id, score, id)
        };
        // Hybrid scores are below 1, so the BM25 floor would drop them all.
        let hits = vec![
            with("a", 0.7, 0.62),
            with("b", 0.5, 0.41),
            with("c", 0.45, 0.2),
            with("d", 0.2, 0.35),
        ];
        // c is not similar enough; d is under 40% of the best score.
        assert_eq!(ids(&select(&hits, &BTreeSet::new(), &s)), vec!["a", "b"]);
        let off_topic = vec![with("a", 0.3, 0.12), with("b", 0.28, 0.1)];
        assert!(select(&off_topic, &BTreeSet::new(), &s).is_empty());
    }

    #[test]
    fn skips_passages_already_injected_and_duplicates() {
        let s = Settings::default();
        let hits = vec![hit("a", 9.0, "x"), hit("a", 9.0, "x"), hit("b", 8.0, "y")];
        let already: BTreeSet<String> = ["b".to_string()].into();
        assert_eq!(ids(&select(&hits, &already, &s)), vec!["a"]);
    }

    #[test]
    fn stays_within_the_token_budget_but_takes_a_smaller_later_passage() {
        let s = Settings {
            token_budget: 100,
            ..Settings::default()
        };
        let hits = vec![
            hit("a", 9.0, &"a".repeat(200)),
            hit("b", 8.0, &"b".repeat(300)),
            hit("c", 7.0, &"c".repeat(80)),
        ];
        // a costs ~59 tokens, b ~84 (over), c ~29.
        assert_eq!(ids(&select(&hits, &BTreeSet::new(), &s)), vec!["a", "c"]);
    }

    #[test]
    fn the_injection_is_context_lane_with_citations_and_labels() {
        let s = Settings::default();
        let i = render(&[hit("a", 9.0, "Alpha text.")], &s);
        assert_eq!(i.role, Role::User);
        assert_eq!(i.key.as_deref(), Some("rag"));
        assert!(i.content.starts_with(&s.header));
        assert!(
            i.content.ends_with("\n\n[1] kb.md > Doc > a\nAlpha text."),
            "{}",
            i.content
        );
        let d = i.details.expect("details");
        assert_eq!(d["labels"], serde_json::json!(["kb.md > Doc > a"]));
        assert_eq!(d["passages"][0]["id"], "a");
        assert!(
            d.get("query").is_none(),
            "the user's message stays out of the details"
        );
    }

    #[test]
    fn config_has_defaults_and_rejects_bad_values_by_key() {
        let r = Rag::new(Config::new(serde_json::Value::Null)).expect("defaults");
        assert_eq!(r.settings.max_passages, 3);
        for (bad, key) in [
            (serde_json::json!({"max_passages": 0}), "max_passages"),
            (serde_json::json!({"candidates": 0}), "candidates"),
            (
                serde_json::json!({"min_relative_score": 2.0}),
                "min_relative_score",
            ),
            (serde_json::json!({"min_score": -1.0}), "min_score"),
            (serde_json::json!({"token_budget": 10}), "token_budget"),
            (serde_json::json!({"top_k": 3}), "top_k"),
        ] {
            let e = Rag::new(Config::new(bad)).expect_err("rejected");
            assert_eq!(e.kind(), ErrorKind::InvalidConfig);
            assert!(e.message().contains(key), "{}", e.message());
        }
    }
}
