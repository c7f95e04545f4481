//! # fact-check: checks the numbers in a reply against the knowledge base
//!
//! The `fact-check` analyzer runs on `turn_complete`. It picks the checkable claims of the
//! assistant's reply, looks each one up in the knowledge base through the host's `search`
//! service (BM25 over `examples/kb/`), and when a passage states a different value for the
//! same thing, it injects one correction message into the context lane (key `fact-check`).
//! It is advisory: supported claims and claims the knowledge base does not cover inject
//! nothing. It does not check claims without numbers or dates, and it never searches the web.
//!
//! ## Claim extraction ([`claims`])
//!
//! The reply is split into sentences: every Markdown line (list item, heading, table row) is
//! its own unit, and within a line a sentence ends at `.`, `!` or `?` followed by a space and
//! a capital letter, digit or opening quote, except after known abbreviations (`approx.`,
//! `e.g.`, `St.`, month abbreviations) and initials. Decimal points never split. A sentence is
//! a claim when it states at least one quantity (below) and has two content words to search
//! with; questions and hedged sentences ("I think", "probably", "I'm not sure", "for
//! example") are skipped. A sentence that starts with a pronoun or names nothing borrows
//! the subject of the last sentence that named something. At most `max_claims` claims are
//! checked per reply.
//!
//! ## Normalisation ([`quantity`])
//!
//! Numbers, units, money, percentages, counts, dates and times are read into a dimension and
//! a value interval in a base unit, so `1,200` = `1 200` = `1200`, `3 km` = `3000 m`,
//! `March 5, 2021` = `5 March 2021` = `2021-03-05` = `5 Mar 2021`, and amounts in different
//! currencies are never compared. The [`quantity`] module documents every rule, including
//! the equality rule: exact values agree within `tolerance` (relative) or half a unit of
//! their last written decimal; hedged values (`about`, `around`, `approximately`, `nearly`,
//! …) within `approx_tolerance` or half the place value of their last non-zero digit;
//! bounds (`over`, `up to`, `before`, …) agree with every value on their side, and two
//! bounds of one direction compare their thresholds (`under 12` differs from `under 6`).
//!
//! ## Verdicts ([`check`])
//!
//! For each claim the analyzer searches with the claim's words (numbers and units removed,
//! identifiers such as `Line 3` kept), takes the top `k` hits scoring at least `min_score`,
//! and splits them into sentences and `;` clauses. Each quantity of the claim is then
//! matched against the quantities of those clauses:
//!
//! - **Overlap.** The share of the claim's content words a clause contains, each word
//!   weighted by how rare it is among the retrieved clauses (words every clause has, like
//!   the company name, weigh little) and by how close it stands to the value in the claim.
//!   Words of the passage's heading path count; words of the previous clause count half
//!   when the clause starts with "it", "they", …. Words that only name the dimension
//!   ("long", "costs", "weighs") and the counted noun are left out: the dimension check
//!   covers them. A claim sentence that names nothing ("It has 9 stations.", "The trip
//!   takes 34 minutes.") borrows the subject of the last sentence that did.
//! - **Same kind of value.** Same dimension, same currency, same counted noun, same rate.
//! - **Same subject.** A value is not used when the identifiers on its side of the clause
//!   are not the claim's (`Class 41` when the claim is about `Class 63`), when the clause
//!   names another thing while the claim's names are missing from it ("the ferry MV Corran
//!   Star was built in 2005" for "the lighthouse on Corran Island was built in 1871"), or
//!   when another value of the claim equals it (in "VDC 60, reduced to VDC 35", the 35 is
//!   not evidence against the 60).
//! - **Alignment.** Candidates are ranked by overlap, plus how close the shared words stand
//!   to both values (so "every 10 minutes at peak times and every 20 minutes at other
//!   times" lines up a peak-time claim with the 10), plus 0.3 for each other value of the
//!   claim the clause confirms.
//!
//! Verdict per quantity:
//! - `supported`: a candidate's value equals the claim's (see the equality rule) and ranks
//!   within 0.25 of the best candidate; it needs `support_overlap` overlap.
//! - `contradicted`: the best candidate's value differs, no equal value ranks near it, its
//!   overlap is at least `min_overlap`, the clause shares at least two content words with
//!   the claim (identifiers not counted), and the claim's words stand near the evidence
//!   value (`min_local`; 0.3 when the clause also confirms other values of the claim, whose
//!   words then explain the overlap). The quoted value is, among the contradicting
//!   candidates near the top, the one closest to the claim's (a wrong 1898 is quoted
//!   against 1897, not 1971).
//! - `not_covered`: otherwise.
//!
//! A claim is contradicted when any of its quantities is, supported when one is and none is
//! contradicted. The rules are deliberately conservative: a wrong correction is worse than
//! a missed one.
//!
//! With `judge_model` set, each contradiction the rules find is put to that model (a
//! `[models.NAME]` table) through the host's `complete` service with a JSON schema
//! (`{"verdict": "supported" | "contradicted" | "not_covered"}`) over the claim and the
//! evidence passage; only a `contradicted` answer keeps the correction. When the judge call
//! fails, the rules' verdict stands and a warning is logged.
//!
//! ## Output
//!
//! One context-lane injection with key `fact-check` listing every contradicted claim, in the
//! format that `self-review` parses:
//!
//! ```text
//! Fact-check of the previous reply (from the knowledge base):
//! - It said 48.6 km for "The Halden line is 48.6 km long."; the knowledge base says 38.6 km (northwind/lines.md > Northwind Rail Lines > Halden line, L1).
//! ```
//!
//! Parentheses in a citation become a comma so that the source stays parseable. Details:
//! `{"labels": ["contradicted"], "corrections": [{"claim", "stated", "expected", "source",
//! "evidence"}], "supported": n, "not_covered": n, "contradicted": n}`. A debug log line
//! summarises every run.
//!
//! ## Config (`[analyzer.config]`)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `k` | 5 | hits per claim (1–50) |
//! | `min_score` | 0.0 | hits with a lower BM25 score are ignored |
//! | `min_overlap` | 0.6 | weighted word overlap needed to contradict (0–1] |
//! | `support_overlap` | 0.35 | weighted word overlap needed to support (0–`min_overlap`] |
//! | `min_local` | 0.1 | how close the claim's words must stand to a contradicting value [0–1] |
//! | `tolerance` | 0.005 | relative tolerance of equality [0–0.5) |
//! | `approx_tolerance` | 0.05 | relative tolerance of hedged values [`tolerance`–1) |
//! | `max_claims` | 8 | claims checked per reply (≥ 1) |
//! | `judge_model` | none | a `[models.NAME]` name that confirms contradictions |
//!
//! Unknown keys and invalid values are refused with an error naming the key.

pub mod check;
pub mod claims;
pub mod judge;
pub mod quantity;
pub mod text;

use murmur_plugin_api::{
    export_plugin, Analyzer, Completion, CompletionRequest, Config, Context, Error, Hook, Host,
    Injection, Level, Result, SearchHit,
};
use serde::Deserialize;
use serde_json::json;

use crate::check::{check_claim, evidence_sentences, Finding, Thresholds, Verdict};
use crate::claims::extract_claims;
use crate::judge::JudgeVerdict;
use crate::quantity::Tolerance;

/// The knowledge base as the analyzer sees it. The host implements it with its `search`
/// service; tests use an in-memory fake.
pub trait Evidence {
    /// Up to `k` passages for `query`, best first.
    fn search(&self, query: &str, k: u32) -> Result<Vec<SearchHit>>;
}

impl Evidence for Host<'_> {
    fn search(&self, query: &str, k: u32) -> Result<Vec<SearchHit>> {
        Host::search(self, query, k)
    }
}

/// A model that can confirm a contradiction. The host implements it with `complete`.
pub trait Judge {
    /// Runs one completion.
    fn complete(&self, request: &CompletionRequest) -> Result<Completion>;
}

impl Judge for Host<'_> {
    fn complete(&self, request: &CompletionRequest) -> Result<Completion> {
        Host::complete(self, request)
    }
}

/// The `[analyzer.config]` table. Every field has a default, so the table may be left out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Hits per claim.
    pub k: u32,
    /// Hits with a lower score are ignored.
    pub min_score: f32,
    /// Weighted word overlap an evidence sentence needs to contradict a claim.
    pub min_overlap: f64,
    /// Weighted word overlap an evidence sentence needs to support a claim.
    pub support_overlap: f64,
    /// How close the claim's words must stand to a contradicting value (0–1).
    pub min_local: f64,
    /// Relative tolerance of equality.
    pub tolerance: f64,
    /// Relative tolerance of hedged values (`about`, `around`, …).
    pub approx_tolerance: f64,
    /// Claims checked per reply.
    pub max_claims: usize,
    /// A `[models.NAME]` name that confirms contradictions, if any.
    pub judge_model: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        let th = Thresholds::default();
        Settings {
            k: 5,
            min_score: th.min_score,
            min_overlap: th.min_overlap,
            support_overlap: th.support_overlap,
            min_local: th.min_local,
            tolerance: th.tolerance.relative,
            approx_tolerance: th.tolerance.approx,
            max_claims: 8,
            judge_model: None,
        }
    }
}

impl Settings {
    /// Reads and validates the config table; errors name the offending key.
    pub fn from_config(config: &Config) -> Result<Settings> {
        let settings: Settings = match config.parse() {
            Ok(s) => s,
            Err(e) => {
                // Find the key serde objected to, so the message names it.
                if let Some(table) = config.as_json().as_object() {
                    for (key, value) in table {
                        let single = serde_json::Value::Object(
                            [(key.clone(), value.clone())].into_iter().collect(),
                        );
                        if let Err(err) = serde_json::from_value::<Settings>(single) {
                            return Err(Error::config(format!("fact-check: `{key}`: {err}")));
                        }
                    }
                }
                return Err(Error::config(format!("fact-check: {}", e.message())));
            }
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<()> {
        let bad = |key: &str, rule: &str| Err(Error::config(format!("fact-check: `{key}` {rule}")));
        if !(1..=50).contains(&self.k) {
            return bad("k", "must be between 1 and 50");
        }
        if !self.min_score.is_finite() {
            return bad("min_score", "must be a finite number");
        }
        if !(self.min_overlap > 0.0 && self.min_overlap <= 1.0) {
            return bad("min_overlap", "must be greater than 0 and at most 1");
        }
        if !(self.support_overlap > 0.0 && self.support_overlap <= self.min_overlap) {
            return bad(
                "support_overlap",
                "must be greater than 0 and at most `min_overlap`",
            );
        }
        if !(0.0..=1.0).contains(&self.min_local) {
            return bad("min_local", "must be between 0 and 1");
        }
        if !(self.tolerance >= 0.0 && self.tolerance < 0.5) {
            return bad("tolerance", "must be at least 0 and less than 0.5");
        }
        if !(self.approx_tolerance >= self.tolerance && self.approx_tolerance < 1.0) {
            return bad(
                "approx_tolerance",
                "must be at least `tolerance` and less than 1",
            );
        }
        if self.max_claims == 0 {
            return bad("max_claims", "must be at least 1");
        }
        if self
            .judge_model
            .as_deref()
            .is_some_and(|m| m.trim().is_empty())
        {
            return bad("judge_model", "must name a [models.NAME] table");
        }
        Ok(())
    }

    /// The verdict thresholds these settings make.
    pub fn thresholds(&self) -> Thresholds {
        Thresholds {
            min_score: self.min_score,
            min_overlap: self.min_overlap,
            support_overlap: self.support_overlap,
            min_local: self.min_local,
            tolerance: Tolerance {
                relative: self.tolerance,
                approx: self.approx_tolerance,
            },
            ..Thresholds::default()
        }
    }
}

/// One contradicted claim, as injected.
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    /// The claim sentence.
    pub claim: String,
    /// Its value as written in the reply.
    pub stated: String,
    /// The knowledge base's value as written in the passage.
    pub expected: String,
    /// `source > heading` of the passage.
    pub source: String,
    /// The evidence sentence.
    pub evidence: String,
}

/// What a run found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Claims checked.
    pub claims: usize,
    /// Claims the knowledge base supports.
    pub supported: usize,
    /// Claims the knowledge base does not cover (including contradictions a judge rejected).
    pub not_covered: usize,
    /// Contradicted claims.
    pub corrections: Vec<Correction>,
    /// Contradictions the judge rejected.
    pub overruled: usize,
}

/// Text for one line of the correction format: no line breaks, no double quotes in the
/// claim, no parentheses in values and sources.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn plain_source(s: &str) -> String {
    one_line(&s.replace(" (", ", ").replace(['(', ')'], ""))
}

impl Correction {
    fn from_finding(claim: &str, f: Finding) -> Self {
        Correction {
            claim: one_line(&claim.replace('"', "'")),
            stated: one_line(&f.stated.replace(['(', ')'], "")),
            expected: one_line(&f.expected.replace(['(', ')'], "")),
            source: plain_source(&f.source),
            evidence: one_line(&f.evidence),
        }
    }

    /// The correction's line: `- It said … for "…"; the knowledge base says … (…).`
    pub fn line(&self) -> String {
        format!(
            "- It said {} for \"{}\"; the knowledge base says {} ({}).",
            self.stated, self.claim, self.expected, self.source
        )
    }
}

impl Report {
    /// The injection for this report: none unless a claim was contradicted.
    pub fn injection(&self) -> Option<Injection> {
        if self.corrections.is_empty() {
            return None;
        }
        let mut content =
            String::from("Fact-check of the previous reply (from the knowledge base):");
        for c in &self.corrections {
            content.push('\n');
            content.push_str(&c.line());
        }
        let corrections: Vec<serde_json::Value> = self
            .corrections
            .iter()
            .map(|c| {
                json!({
                    "claim": c.claim,
                    "stated": c.stated,
                    "expected": c.expected,
                    "source": c.source,
                    "evidence": c.evidence,
                })
            })
            .collect();
        Some(
            Injection::context(content)
                .with_key("fact-check")
                .with_details(json!({
                    "labels": ["contradicted"],
                    "corrections": corrections,
                    "contradicted": self.corrections.len(),
                    "supported": self.supported,
                    "not_covered": self.not_covered,
                })),
        )
    }

    /// The one-line summary for the log.
    pub fn summary(&self) -> String {
        format!(
            "fact-check: {} claims, {} supported, {} contradicted, {} not covered, {} overruled by the judge",
            self.claims,
            self.supported,
            self.corrections.len(),
            self.not_covered,
            self.overruled
        )
    }
}

/// Checks a reply: the whole decision, free of host types so tests can call it directly.
/// `judge` is used only when `settings.judge_model` is set; `cancelled` is asked between
/// claims. `warn` receives judge failures and a missing knowledge base (an `Unsupported`
/// search error, after which the remaining claims count as not covered); other search
/// errors end the run.
pub fn check_reply(
    reply: &str,
    settings: &Settings,
    evidence: &dyn Evidence,
    judge: Option<&dyn Judge>,
    cancelled: &dyn Fn() -> bool,
    warn: &mut dyn FnMut(&str),
) -> Result<Report> {
    let thresholds = settings.thresholds();
    let claims = extract_claims(reply, settings.max_claims);
    let mut report = Report {
        claims: claims.len(),
        ..Report::default()
    };
    for claim in &claims {
        if cancelled() {
            return Err(Error::cancelled());
        }
        let hits = match evidence.search(&claim.query(), settings.k) {
            Ok(hits) => hits,
            Err(e) if e.kind() == murmur_plugin_api::ErrorKind::Unsupported => {
                // No knowledge base configured: nothing can be checked.
                warn(&format!("fact-check: no knowledge base to search ({e})"));
                report.not_covered = report.claims - report.supported - report.corrections.len();
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        let sentences = evidence_sentences(&hits, thresholds.min_score);
        match check_claim(claim, &sentences, &thresholds) {
            Verdict::Supported => report.supported += 1,
            Verdict::NotCovered => report.not_covered += 1,
            Verdict::Contradicted(finding) => {
                let keep = match (settings.judge_model.as_deref(), judge) {
                    (Some(model), Some(judge)) => {
                        let request =
                            judge::request(model, &claim.text, &finding.source, &finding.passage);
                        match judge.complete(&request) {
                            Ok(answer) => match judge::parse_answer(&answer) {
                                Some(JudgeVerdict::Contradicted) => true,
                                Some(JudgeVerdict::Supported) => {
                                    report.overruled += 1;
                                    report.supported += 1;
                                    false
                                }
                                Some(JudgeVerdict::NotCovered) => {
                                    report.overruled += 1;
                                    report.not_covered += 1;
                                    false
                                }
                                None => {
                                    warn("fact-check: the judge's answer had no verdict; keeping the rules' verdict");
                                    true
                                }
                            },
                            Err(e) if e.kind() == murmur_plugin_api::ErrorKind::Cancelled => {
                                return Err(e)
                            }
                            Err(e) => {
                                warn(&format!(
                                    "fact-check: judge `{model}` failed ({e}); keeping the rules' verdict"
                                ));
                                true
                            }
                        }
                    }
                    _ => true,
                };
                if keep {
                    report
                        .corrections
                        .push(Correction::from_finding(&claim.text, finding));
                }
            }
        }
    }
    Ok(report)
}

/// The analyzer: one instance per `[[analyzer]]` table that names `fact-check`.
#[derive(Debug)]
pub struct FactCheck {
    settings: Settings,
}

impl FactCheck {
    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }
}

impl Analyzer for FactCheck {
    const NAME: &'static str = "fact-check";
    const DESCRIPTION: &'static str =
        "checks numbers and dates in the reply against the knowledge base and injects corrections";
    const HOOKS: &'static [Hook] = &[Hook::TurnComplete];

    fn new(config: Config) -> Result<Self> {
        Ok(FactCheck {
            settings: Settings::from_config(&config)?,
        })
    }

    fn analyze(&self, ctx: &Context<'_>, host: &Host<'_>) -> Result<Vec<Injection>> {
        let Some(reply) = ctx.latest_reply() else {
            return Ok(vec![]);
        };
        let report = check_reply(
            reply,
            &self.settings,
            host,
            Some(host),
            &|| host.cancelled(),
            &mut |msg| host.log(Level::Warn, msg),
        )?;
        host.log(Level::Debug, &report.summary());
        Ok(report.injection().into_iter().collect())
    }
}

export_plugin! {
    name: "fact-check",
    version: env!("CARGO_PKG_VERSION"),
    requires: ["search"],
    analyzers: [FactCheck],
    tools: [],
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_plugin_api::{ErrorKind, Role, TokenUsage};
    use std::cell::RefCell;

    /// An in-memory knowledge base: every passage is returned for every query.
    struct FakeKb(Vec<SearchHit>);

    impl Evidence for FakeKb {
        fn search(&self, _query: &str, k: u32) -> Result<Vec<SearchHit>> {
            Ok(self.0.iter().take(k as usize).cloned().collect())
        }
    }

    struct FakeJudge {
        answer: Result<Completion>,
        asked: RefCell<Vec<CompletionRequest>>,
    }

    impl Judge for FakeJudge {
        fn complete(&self, request: &CompletionRequest) -> Result<Completion> {
            self.asked.borrow_mut().push(request.clone());
            self.answer.clone()
        }
    }

    fn kb() -> FakeKb {
        let hit = |source: &str, heading: &str, text: &str| SearchHit {
            id: format!("{source}#0"),
            source: source.to_string(),
            heading: heading.to_string(),
            text: text.to_string(),
            score: 3.0,
            similarity: None,
        };
        FakeKb(vec![
            hit(
                "northwind/lines.md",
                "Northwind Rail Lines > Halden line (L1)",
                "The Halden line is the oldest and busiest line, opened in 1897. It runs 38.6 km \
                 from Port Avalon Central to Halden with 9 stations, and the end-to-end trip \
                 takes 34 minutes.",
            ),
            hit(
                "northwind/fares.md",
                "Fares and Tickets > Fare zones > Single fares by zone",
                "A single journey within zone A costs VDC 2.80. A journey from zone A into zone \
                 B costs VDC 4.50.",
            ),
        ])
    }

    fn run(reply: &str, settings: &Settings, judge: Option<&dyn Judge>) -> Report {
        let mut warnings = Vec::new();
        check_reply(reply, settings, &kb(), judge, &|| false, &mut |w| {
            warnings.push(w.to_string())
        })
        .expect("check runs")
    }

    const FORMAT: &str = r#"^- It said (?P<stated>.+?) for "(?P<claim>.+?)"; the knowledge base says (?P<expected>.+?) \((?P<source>[^()]+)\)\.$"#;

    #[test]
    fn a_contradiction_becomes_one_context_injection_in_the_correction_format() {
        let report = run(
            "A single journey within zone A costs VDC 3.80. The Halden line is 48.6 km long. \
             It opened in 1897.",
            &Settings::default(),
            None,
        );
        assert_eq!(report.claims, 3);
        assert_eq!(report.corrections.len(), 2);
        assert_eq!(report.supported, 1);
        let injection = report.injection().expect("contradictions inject");
        assert_eq!(injection.role, Role::User);
        assert_eq!(injection.key.as_deref(), Some("fact-check"));
        let mut lines = injection.content.lines();
        assert_eq!(
            lines.next(),
            Some("Fact-check of the previous reply (from the knowledge base):")
        );
        let re = regex::Regex::new(FORMAT).expect("the contract's regex");
        let first = lines.next().expect("first correction");
        let caps = re.captures(first).expect("matches the format");
        assert_eq!(&caps["stated"], "VDC 3.80");
        assert_eq!(&caps["expected"], "VDC 2.80");
        let second = lines.next().expect("second correction");
        let caps = re.captures(second).expect("matches the format");
        assert_eq!(&caps["stated"], "48.6 km");
        assert_eq!(&caps["claim"], "The Halden line is 48.6 km long.");
        assert_eq!(&caps["expected"], "38.6 km");
        assert_eq!(
            &caps["source"],
            "northwind/lines.md > Northwind Rail Lines > Halden line, L1"
        );
        assert!(lines.next().is_none());
        let details = injection.details.expect("details");
        assert_eq!(details["labels"], json!(["contradicted"]));
        assert_eq!(details["corrections"][1]["stated"], "48.6 km");
        assert_eq!(
            details["corrections"][0]["source"],
            "northwind/fares.md > Fares and Tickets > Fare zones > Single fares by zone"
        );
        assert_eq!(details["supported"], 1);
        assert_eq!(details["not_covered"], 0);
    }

    #[test]
    fn supported_and_uncovered_claims_inject_nothing() {
        let report = run(
            "The Halden line is 38,600 m long and opened in 1897. The Eiffel Tower is 330 m tall.",
            &Settings::default(),
            None,
        );
        assert_eq!((report.supported, report.not_covered), (1, 1));
        assert!(report.injection().is_none());
        assert!(report.summary().contains("1 supported"));
    }

    #[test]
    fn a_claim_with_quotes_stays_parseable() {
        let report = run(
            "The \"Halden line\" is 48.6 km long.",
            &Settings::default(),
            None,
        );
        let injection = report.injection().expect("contradiction");
        let line = injection.content.lines().nth(1).expect("line");
        let re = regex::Regex::new(FORMAT).expect("regex");
        assert!(re.is_match(line), "{line}");
    }

    #[test]
    fn the_judge_confirms_or_overrules_contradictions() {
        let settings = Settings {
            judge_model: Some("judge".into()),
            ..Settings::default()
        };
        let answer = |verdict: &str| Completion {
            text: String::new(),
            json: Some(json!({ "verdict": verdict })),
            usage: TokenUsage::default(),
        };
        let judge = FakeJudge {
            answer: Ok(answer("supported")),
            asked: RefCell::new(vec![]),
        };
        let report = run("The Halden line is 48.6 km long.", &settings, Some(&judge));
        assert!(report.corrections.is_empty());
        assert_eq!((report.overruled, report.supported), (1, 1));
        let asked = judge.asked.borrow();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].model.as_deref(), Some("judge"));
        assert!(asked[0].messages[0].content.contains("38.6 km"));

        let judge = FakeJudge {
            answer: Ok(answer("contradicted")),
            asked: RefCell::new(vec![]),
        };
        let report = run("The Halden line is 48.6 km long.", &settings, Some(&judge));
        assert_eq!(report.corrections.len(), 1);

        // A failing judge leaves the rules' verdict.
        let judge = FakeJudge {
            answer: Err(Error::msg("model unavailable")),
            asked: RefCell::new(vec![]),
        };
        let report = run("The Halden line is 48.6 km long.", &settings, Some(&judge));
        assert_eq!(report.corrections.len(), 1);

        // Without judge_model the judge is never asked.
        let judge = FakeJudge {
            answer: Ok(answer("supported")),
            asked: RefCell::new(vec![]),
        };
        let report = run(
            "The Halden line is 48.6 km long.",
            &Settings::default(),
            Some(&judge),
        );
        assert_eq!(report.corrections.len(), 1);
        assert!(judge.asked.borrow().is_empty());
    }

    #[test]
    fn odd_input_is_handled_without_panics() {
        for reply in [
            "",
            "   ",
            "1.",
            "€€5 and 5€ and $",
            "99999999999999999999999 km long line 3",
            "between and 5 km; from 5 to; 10–",
            "12:99 on 2021-13-45 at 5:",
            "😀 The line is 5 km 😀 long and opened in 1999 ☃.",
            "| a | b |\n|---|---|\n| 5 km | |",
            "It. It. It has 5 stations.",
            "Mar. 5, 2021 the 1990s s zone A. A. B. 5 km",
        ] {
            let report = run(reply, &Settings::default(), None);
            assert!(report.claims <= 8, "{reply}");
        }
    }

    #[test]
    fn a_host_without_a_knowledge_base_leaves_claims_unchecked() {
        struct NoKb;
        impl Evidence for NoKb {
            fn search(&self, _query: &str, _k: u32) -> Result<Vec<SearchHit>> {
                Err(Error::new(
                    ErrorKind::Unsupported,
                    "no [knowledge] configured",
                ))
            }
        }
        let mut warnings = Vec::new();
        let report = check_reply(
            "The Halden line is 48.6 km long. It opened in 1897.",
            &Settings::default(),
            &NoKb,
            None,
            &|| false,
            &mut |w| warnings.push(w.to_string()),
        )
        .expect("not an error");
        assert_eq!((report.claims, report.not_covered), (2, 2));
        assert!(report.injection().is_none());
        assert_eq!(warnings.len(), 1);

        struct Broken;
        impl Evidence for Broken {
            fn search(&self, _query: &str, _k: u32) -> Result<Vec<SearchHit>> {
                Err(Error::msg("index unreadable"))
            }
        }
        let err = check_reply(
            "The Halden line is 48.6 km long.",
            &Settings::default(),
            &Broken,
            None,
            &|| false,
            &mut |_| {},
        )
        .expect_err("search failures end the run");
        assert_eq!(err.message(), "index unreadable");
    }

    #[test]
    fn cancellation_stops_between_claims() {
        let err = check_reply(
            "The Halden line is 48.6 km long.",
            &Settings::default(),
            &kb(),
            None,
            &|| true,
            &mut |_| {},
        )
        .expect_err("cancelled");
        assert_eq!(err.kind(), ErrorKind::Cancelled);
    }

    #[test]
    fn settings_have_defaults_and_errors_name_the_key() {
        let s = Settings::from_config(&Config::new(serde_json::Value::Null)).expect("defaults");
        assert_eq!(s, Settings::default());
        assert_eq!((s.k, s.max_claims), (5, 8));
        let s = Settings::from_config(&Config::new(json!({"k": 3, "judge_model": "small"})))
            .expect("valid");
        assert_eq!(s.k, 3);
        assert_eq!(s.judge_model.as_deref(), Some("small"));
        for (config, key) in [
            (json!({"kk": 3}), "kk"),
            (json!({"k": "three"}), "k"),
            (json!({"k": 0}), "k"),
            (json!({"min_overlap": 1.5}), "min_overlap"),
            (
                json!({"min_overlap": 0.5, "support_overlap": 0.7}),
                "support_overlap",
            ),
            (json!({"tolerance": -0.1}), "tolerance"),
            (json!({"approx_tolerance": 2}), "approx_tolerance"),
            (json!({"max_claims": 0}), "max_claims"),
            (json!({"judge_model": " "}), "judge_model"),
            (json!({"min_score": "high"}), "min_score"),
            (json!({"min_local": 2.0}), "min_local"),
        ] {
            let err = FactCheck::new(Config::new(config.clone())).expect_err("invalid");
            assert_eq!(err.kind(), ErrorKind::InvalidConfig);
            assert!(
                err.message().contains(&format!("`{key}`")) || err.message().contains(key),
                "{config}: {}",
                err.message()
            );
        }
    }
}
