//! `murmur eval`: runs one configured analyzer, through its real plugin and the host's real
//! services, on a labeled set of cases, and scores what it found.
//!
//! A labeled set is a JSON Lines file; one case per line:
//!
//! ```json
//! {"user": "my card is 4111 1111 1111 1111", "expect": ["card"], "family": "card-spaced"}
//! ```
//!
//! - `user`, `reply`: the latest user message and assistant reply (at least one);
//! - `hook`: `turn_start` or `turn_complete`; default `turn_complete` when `reply` is given,
//!   else `turn_start`;
//! - `context`: injected messages the model saw this turn, placed after the user message:
//!   `[{"analyzer": "rag", "content": "..."}]`;
//! - `expect`: the labels the analyzer should report (empty: it should report nothing);
//! - `family`: the kind of case, for grouping mistakes; other fields are ignored.
//!
//! Lines starting with `#` and blank lines are skipped. What an analyzer reports is the union
//! of the `labels` arrays in the `details` of the injections it returns. Scores are counted
//! per label (true positives, false positives, false negatives) and summed into micro
//! precision, recall and F1.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use murmur_plugin_api::{Hook, Injection, Role};
use serde::Deserialize;

use crate::analyzer::{AnalyzerEntry, AnalyzerView, CancelFlag, RunRequest};
use crate::file_error::FileError;
use crate::model::ContextMessage;
use crate::services::ServiceHub;
use crate::state::StateStore;

/// One labeled case.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    /// Its line in the file.
    pub line: usize,
    /// The latest user message.
    pub user: Option<String>,
    /// The latest reply.
    pub reply: Option<String>,
    /// Injected messages after the user message: (analyzer, content).
    pub context: Vec<(String, String)>,
    /// The hook to run.
    pub hook: Hook,
    /// Expected labels.
    pub expect: BTreeSet<String>,
    /// The kind of case.
    pub family: String,
}

#[derive(Debug, Deserialize)]
struct RawCase {
    user: Option<String>,
    reply: Option<String>,
    hook: Option<String>,
    #[serde(default)]
    context: Vec<RawContext>,
    expect: Vec<String>,
    family: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContext {
    analyzer: String,
    content: String,
}

/// Reads a labeled set; errors name the file and line.
pub fn load(path: &Path) -> Result<Vec<Case>, FileError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| FileError::file(path, format!("cannot read: {e}")))?;
    parse(&text, path)
}

/// Parses a labeled set as if read from `path`.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Case>, FileError> {
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let raw: RawCase = serde_json::from_str(line)
            .map_err(|e| FileError::at(path, n, format!("not a case: {e}")))?;
        if raw.user.is_none() && raw.reply.is_none() {
            return Err(FileError::at(path, n, "a case needs `user` or `reply`"));
        }
        let hook = match raw.hook.as_deref() {
            None if raw.reply.is_some() => Hook::TurnComplete,
            None => Hook::TurnStart,
            Some(h) => Hook::parse(h)
                .ok_or_else(|| FileError::at(path, n, format!("`hook`: unknown hook `{h}`")))?,
        };
        cases.push(Case {
            line: n,
            user: raw.user,
            reply: raw.reply,
            context: raw
                .context
                .into_iter()
                .map(|c| (c.analyzer, c.content))
                .collect(),
            hook,
            expect: raw.expect.into_iter().collect(),
            family: raw.family.unwrap_or_default(),
        });
    }
    if cases.is_empty() {
        return Err(FileError::file(path, "no cases"));
    }
    Ok(cases)
}

/// Counts for one label.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Reported and expected.
    pub tp: u64,
    /// Reported, not expected.
    pub fp: u64,
    /// Expected, not reported.
    pub fn_: u64,
}

impl Counts {
    /// tp / (tp + fp); 1 when nothing was reported.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    /// tp / (tp + fn); 1 when nothing was expected.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }

    fn add(&mut self, other: Counts) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// A case the analyzer got wrong (or that failed).
#[derive(Debug, Clone, PartialEq)]
pub struct Mistake {
    /// Line in the file.
    pub line: usize,
    /// Its family.
    pub family: String,
    /// Expected labels.
    pub expected: BTreeSet<String>,
    /// Reported labels.
    pub reported: BTreeSet<String>,
    /// The run's error, if it failed.
    pub error: Option<String>,
}

/// The scores of one labeled set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Cases run.
    pub cases: usize,
    /// Per label.
    pub labels: BTreeMap<String, Counts>,
    /// Per family: (cases, cases with a mistake).
    pub families: BTreeMap<String, (usize, usize)>,
    /// Every wrong case, in file order.
    pub mistakes: Vec<Mistake>,
    /// Wall time of all runs.
    pub elapsed: Duration,
}

impl Report {
    /// Sum over labels.
    pub fn micro(&self) -> Counts {
        let mut all = Counts::default();
        for c in self.labels.values() {
            all.add(*c);
        }
        all
    }

    fn record(&mut self, case: &Case, reported: BTreeSet<String>, error: Option<String>) {
        self.cases += 1;
        for l in case.expect.union(&reported) {
            let c = self.labels.entry(l.clone()).or_default();
            match (case.expect.contains(l), reported.contains(l)) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                _ => c.fn_ += 1,
            }
        }
        let wrong = error.is_some() || reported != case.expect;
        let f = self.families.entry(case.family.clone()).or_default();
        f.0 += 1;
        if wrong {
            f.1 += 1;
            self.mistakes.push(Mistake {
                line: case.line,
                family: case.family.clone(),
                expected: case.expect.clone(),
                reported,
                error,
            });
        }
    }
}

/// The labels an analyzer reported: the union of `details.labels` of its injections.
pub fn labels(injections: &[Injection]) -> BTreeSet<String> {
    injections
        .iter()
        .filter_map(|i| i.details.as_ref()?.get("labels")?.as_array().cloned())
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn view(case: &Case) -> AnalyzerView {
    let mut messages = Vec::new();
    if let Some(u) = &case.user {
        messages.push(ContextMessage::user(u.clone()));
    }
    for (analyzer, content) in &case.context {
        messages.push(ContextMessage::injection(
            Role::User,
            content.clone(),
            analyzer.clone(),
        ));
    }
    if let Some(r) = &case.reply {
        messages.push(ContextMessage::assistant(r.clone(), Vec::new()));
    }
    AnalyzerView::new(messages.into(), case.user.clone(), case.reply.clone())
}

/// Runs `analyzer` on every case, each in a session of its own (fresh per-session state),
/// one at a time, and scores the results. Must run inside a tokio runtime.
pub async fn run(
    analyzer: &AnalyzerEntry,
    cases: &[Case],
    services: Option<Arc<ServiceHub>>,
    progress: &dyn Fn(usize, usize),
) -> Report {
    let started = Instant::now();
    let state = StateStore::default();
    let mut report = Report::default();
    for (i, case) in cases.iter().enumerate() {
        let session: Arc<str> = Arc::from(format!("eval-{}", case.line));
        let request = RunRequest {
            session: session.clone(),
            analyzer: analyzer.name.clone(),
            hook: case.hook,
            turn: 1,
            step: 0,
            view: Arc::new(view(case)),
            config_json: analyzer.config_json.clone(),
            deadline: SystemTime::now() + analyzer.timeout,
            cancel: CancelFlag::default(),
            state: state.clone(),
            services: services.clone(),
            default_model: analyzer.model.clone(),
            tokens: Arc::new(AtomicU64::new(0)),
        };
        let outcome = tokio::time::timeout(analyzer.timeout, analyzer.backend.run(request)).await;
        let (reported, error) = match outcome {
            Ok(Ok(injections)) => (labels(&injections), None),
            Ok(Err(e)) => (BTreeSet::new(), Some(e.to_string())),
            Err(_) => (
                BTreeSet::new(),
                Some(format!("timed out after {:?}", analyzer.timeout)),
            ),
        };
        state.forget_session(&session);
        report.record(case, reported, error);
        progress(i + 1, cases.len());
    }
    report.elapsed = started.elapsed();
    report
}

/// The report as text: a table per label (when there are at most `max_label_rows`), the
/// micro average, families with mistakes, and the first `max_mistakes` mistakes.
pub fn render(report: &Report, max_label_rows: usize, max_mistakes: usize) -> String {
    let mut out = String::new();
    let row = |name: &str, c: &Counts| {
        format!(
            "{name:<32} {:>5} {:>5} {:>5} {:>9.3} {:>7.3} {:>6.3}\n",
            c.tp + c.fn_,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall(),
            c.f1()
        )
    };
    out.push_str(&format!(
        "{:<32} {:>5} {:>5} {:>5} {:>9} {:>7} {:>6}\n",
        "LABEL", "EXP", "FP", "FN", "PRECISION", "RECALL", "F1"
    ));
    if report.labels.len() <= max_label_rows {
        for (label, c) in &report.labels {
            out.push_str(&row(label, c));
        }
    } else {
        out.push_str(&format!(
            "({} labels; --per-label lists them)\n",
            report.labels.len()
        ));
    }
    out.push_str(&row("all (micro)", &report.micro()));
    let per_case = report.elapsed.as_secs_f64() * 1000.0 / report.cases.max(1) as f64;
    out.push_str(&format!(
        "{} cases, {} wrong, {:.2} ms per case\n",
        report.cases,
        report.mistakes.len(),
        per_case
    ));
    let missed: Vec<&Mistake> = report
        .mistakes
        .iter()
        .filter(|m| m.error.is_some() || !m.expected.is_subset(&m.reported))
        .collect();
    out.push_str(&format!(
        "{} cases missed an expected label, {} only reported extra ones\n",
        missed.len(),
        report.mistakes.len() - missed.len()
    ));
    let wrong: Vec<String> = report
        .families
        .iter()
        .filter(|(_, (_, bad))| *bad > 0)
        .map(|(f, (n, bad))| {
            let f = if f.is_empty() { "(none)" } else { f };
            format!("{f} {bad}/{n}")
        })
        .collect();
    if !wrong.is_empty() {
        out.push_str(&format!("families with mistakes: {}\n", wrong.join(", ")));
    }
    // Misses first: for retrieval-style sets, extra labels are expected.
    let extra = report.mistakes.iter().filter(|m| !missed.contains(m));
    for m in missed.iter().copied().chain(extra).take(max_mistakes) {
        let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
        out.push_str(&format!(
            "  line {}: expected [{}], reported [{}]",
            m.line,
            list(&m.expected),
            list(&m.reported)
        ));
        if let Some(e) = &m.error {
            out.push_str(&format!(" (failed: {e})"));
        }
        out.push('\n');
    }
    if report.mistakes.len() > max_mistakes {
        out.push_str(&format!(
            "  … {} more\n",
            report.mistakes.len() - max_mistakes
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_parse_with_defaults_and_errors_name_the_line() {
        let text = "# comment\n\n{\"user\": \"hi\", \"expect\": []}\n{\"reply\": \"r\", \"user\": \"u\", \"expect\": [\"x\"], \"family\": \"f\", \"context\": [{\"analyzer\": \"rag\", \"content\": \"c\"}]}\n";
        let cases = parse(text, Path::new("set.jsonl")).expect("parses");
        assert_eq!(cases.len(), 2);
        assert_eq!((cases[0].line, cases[0].hook), (3, Hook::TurnStart));
        assert_eq!((cases[1].line, cases[1].hook), (4, Hook::TurnComplete));
        assert_eq!(cases[1].context, vec![("rag".into(), "c".into())]);
        let v = view(&cases[1]);
        assert_eq!(v.messages.len(), 3);
        assert_eq!(v.messages[1].analyzer.as_deref(), Some("rag"));

        let e = parse("{\"user\": \"a\"}\n", Path::new("set.jsonl")).expect_err("no expect");
        assert_eq!(e.line, Some(1));
        assert!(e.to_string().starts_with("set.jsonl:1: not a case"), "{e}");
        let e = parse("\n{\"expect\": []}", Path::new("s")).expect_err("no text");
        assert_eq!(e.to_string(), "s:2: a case needs `user` or `reply`");
        let e = parse(
            "{\"user\": \"a\", \"expect\": [], \"hook\": \"later\"}",
            Path::new("s"),
        )
        .expect_err("bad hook");
        assert!(e.to_string().contains("unknown hook `later`"), "{e}");
        assert!(parse("# only\n", Path::new("s")).is_err());
    }

    #[test]
    fn scores_count_per_label_and_micro() {
        let case = |expect: &[&str]| Case {
            line: 1,
            user: Some("u".into()),
            reply: None,
            context: vec![],
            hook: Hook::TurnStart,
            expect: expect.iter().map(|s| s.to_string()).collect(),
            family: "f".into(),
        };
        let set = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let mut r = Report::default();
        r.record(&case(&["card"]), set(&["card"]), None);
        r.record(&case(&["card"]), set(&[]), None);
        r.record(&case(&[]), set(&["email"]), None);
        r.record(&case(&[]), set(&[]), None);
        let card = r.labels["card"];
        assert_eq!((card.tp, card.fp, card.fn_), (1, 0, 1));
        assert!((card.precision() - 1.0).abs() < 1e-9);
        assert!((card.recall() - 0.5).abs() < 1e-9);
        assert!((card.f1() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(r.labels["email"].fp, 1);
        let micro = r.micro();
        assert_eq!((micro.tp, micro.fp, micro.fn_), (1, 1, 1));
        assert_eq!(r.families["f"], (4, 2));
        assert_eq!(r.mistakes.len(), 2);
        let text = render(&r, 10, 5);
        assert!(text.contains("card"), "{text}");
        assert!(text.contains("families with mistakes: f 2/4"), "{text}");
    }

    #[test]
    fn labels_are_the_union_of_details_labels() {
        let a =
            Injection::instructions("a").with_details(serde_json::json!({"labels": ["x", "y"]}));
        let b = Injection::context("b")
            .with_details(serde_json::json!({"labels": ["y", "z"], "other": 1}));
        let c = Injection::context("c");
        let got: Vec<String> = labels(&[a, b, c]).into_iter().collect();
        assert_eq!(got, vec!["x", "y", "z"]);
    }
}
