//! Runs the heuristic checks on the labeled cases of `examples/eval/self-review.jsonl` and
//! scores them the way `murmur eval` does: the labels of the returned note against each
//! case's `expect`, per label precision, recall and F1. `cargo test -p murmur-self-review
//! --test eval_set -- --nocapture` prints the table.
//!
//! The judge is off (it needs a host); `context` messages are placed right after the user
//! message, as the host's eval runner does.

use std::collections::{BTreeMap, BTreeSet};

use murmur_plugin_api::{Analyzer, Config};
use murmur_self_review::{Label, Position, Review, SelfReview};
use serde_json::Value;

const EVAL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/eval/self-review.jsonl"
);

/// One labeled case.
struct Case {
    line: usize,
    family: String,
    user: String,
    reply: Option<String>,
    expect: BTreeSet<String>,
    context: Vec<(String, String)>,
}

fn parse(line_no: usize, line: &str) -> Result<Case, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not an object")?;
    let text = |key: &str| -> Result<Option<String>, String> {
        match obj.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{key}` is not a string")),
        }
    };
    let user = text("user")?;
    let reply = text("reply")?;
    if user.is_none() && reply.is_none() {
        return Err("neither `user` nor `reply`".into());
    }
    let known: Vec<&str> = Label::CHECKS
        .iter()
        .chain([Label::Judge].iter())
        .map(|l| l.as_str())
        .collect();
    let mut expect = BTreeSet::new();
    for l in obj
        .get("expect")
        .and_then(Value::as_array)
        .ok_or("`expect` is not a list")?
    {
        let l = l.as_str().ok_or("a label is not a string")?;
        if !known.contains(&l) {
            return Err(format!("unknown label `{l}`"));
        }
        expect.insert(l.to_string());
    }
    let family = text("family")?.unwrap_or_default();
    let mut context = Vec::new();
    if let Some(c) = obj.get("context") {
        for m in c.as_array().ok_or("`context` is not a list")? {
            let analyzer = m.get("analyzer").and_then(Value::as_str);
            let content = m.get("content").and_then(Value::as_str);
            match (analyzer, content) {
                (Some(a), Some(c)) => context.push((a.to_string(), c.to_string())),
                _ => return Err("a context message lacks `analyzer` or `content`".into()),
            }
        }
    }
    Ok(Case {
        line: line_no,
        family,
        user: user.unwrap_or_default(),
        reply,
        expect,
        context,
    })
}

/// The labels the analyzer's note carries for a case (empty without a note).
fn labels(analyzer: &SelfReview, case: &Case) -> BTreeSet<String> {
    // Without a reply the hook is `turn_start`, on which self-review has nothing to review.
    let Some(reply) = &case.reply else {
        return BTreeSet::new();
    };
    let mut review = Review::new(&case.user, reply);
    for (a, c) in &case.context {
        review = review.with_injected(a, c, Position::AfterUser);
    }
    analyzer
        .review(&review)
        .and_then(|i| i.details)
        .and_then(|d| d.get("labels").cloned())
        .and_then(|l| serde_json::from_value::<BTreeSet<String>>(l).ok())
        .unwrap_or_default()
}

#[derive(Default)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
}

fn prf(c: &Counts) -> (f64, f64, f64) {
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let p = ratio(c.tp, c.tp + c.fp);
    let r = ratio(c.tp, c.tp + c.fn_);
    let f = if p + r == 0.0 {
        0.0
    } else {
        2.0 * p * r / (p + r)
    };
    (p, r, f)
}

#[test]
fn the_eval_set_parses_and_the_heuristics_reach_a_micro_f1_of_0_9() {
    let text = std::fs::read_to_string(EVAL).expect("examples/eval/self-review.jsonl exists");
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        match parse(i + 1, t) {
            Ok(c) => cases.push(c),
            Err(e) => errors.push(format!("line {}: {e}", i + 1)),
        }
    }
    assert!(
        errors.is_empty(),
        "unparsable lines:\n{}",
        errors.join("\n")
    );
    assert!(cases.len() >= 60, "only {} cases", cases.len());

    let analyzer = SelfReview::new(Config::default()).expect("the default config is valid");
    let mut per_label: BTreeMap<String, Counts> = Label::CHECKS
        .iter()
        .map(|l| (l.as_str().to_string(), Counts::default()))
        .collect();
    let mut exact = 0;
    let mut misses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for case in &cases {
        let got = labels(&analyzer, case);
        for l in got.union(&case.expect) {
            let c = per_label.entry(l.clone()).or_default();
            match (got.contains(l), case.expect.contains(l)) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                _ => c.fn_ += 1,
            }
        }
        if got == case.expect {
            exact += 1;
        } else {
            misses.entry(case.family.clone()).or_default().push(format!(
                "line {}: expected {:?}, got {:?}",
                case.line, case.expect, got
            ));
        }
    }

    let mut total = Counts::default();
    println!("\nself-review eval: {} cases, {} exact", cases.len(), exact);
    println!(
        "{:<22} {:>4} {:>4} {:>4} {:>9} {:>7} {:>6}",
        "label", "tp", "fp", "fn", "precision", "recall", "f1"
    );
    for (label, c) in &per_label {
        let (p, r, f) = prf(c);
        println!(
            "{label:<22} {:>4} {:>4} {:>4} {p:>9.3} {r:>7.3} {f:>6.3}",
            c.tp, c.fp, c.fn_
        );
        total.tp += c.tp;
        total.fp += c.fp;
        total.fn_ += c.fn_;
    }
    let (p, r, f) = prf(&total);
    println!(
        "{:<22} {:>4} {:>4} {:>4} {p:>9.3} {r:>7.3} {f:>6.3}",
        "micro", total.tp, total.fp, total.fn_
    );
    for (family, lines) in &misses {
        println!("misses in {family}:");
        for l in lines {
            println!("  {l}");
        }
    }
    assert!(f >= 0.9, "micro F1 {f:.3} is below 0.9");
}
