//! Runs the detectors over examples/eval/moderation.jsonl the way the analyzer scans a hook:
//! `user` alone is a `turn_start` case (the user message, every detector); a case with
//! `reply` is a `turn_complete` case (the reply, PII and secrets). Prints a per-label
//! precision/recall/F1 table (`cargo test -p murmur-moderation --test eval_set --
//! --nocapture`) and requires F1 ≥ 0.97 for every PII and secret label.

use std::collections::{BTreeMap, BTreeSet};

use murmur_moderation::{Category, Detector, Detectors, Settings, Where};

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    tp: u32,
    fp: u32,
    fn_: u32,
}

impl Counts {
    fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        1.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

#[derive(Debug)]
struct Case {
    line: usize,
    text: String,
    place: Where,
    expect: BTreeSet<String>,
    family: String,
}

fn load() -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/eval/moderation.jsonl"
    );
    let data = std::fs::read_to_string(path).expect("the eval file exists");
    let mut cases = Vec::new();
    for (i, raw) in data.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {} is not JSON: {e}", i + 1));
        let user = v.get("user").and_then(|u| u.as_str());
        let reply = v.get("reply").and_then(|u| u.as_str());
        assert!(
            user.is_some() || reply.is_some(),
            "line {} has neither user nor reply",
            i + 1
        );
        let hook = v.get("hook").and_then(|h| h.as_str());
        let (text, place) = match (reply, hook) {
            (_, Some("turn_start")) => (user.unwrap_or_default(), Where::User),
            (Some(r), _) => (r, Where::Reply),
            (None, _) => (user.unwrap_or_default(), Where::User),
        };
        let expect: BTreeSet<String> = v
            .get("expect")
            .and_then(|e| e.as_array())
            .unwrap_or_else(|| panic!("line {} has no expect array", i + 1))
            .iter()
            .map(|l| {
                l.as_str()
                    .unwrap_or_else(|| panic!("line {}: labels are strings", i + 1))
                    .to_string()
            })
            .collect();
        for label in &expect {
            let known = Detector::from_label(label).is_some() || label.starts_with("abuse:");
            assert!(known, "line {}: unknown label `{label}`", i + 1);
        }
        cases.push(Case {
            line: i + 1,
            text: text.to_string(),
            place,
            expect,
            family: v
                .get("family")
                .and_then(|f| f.as_str())
                .unwrap_or("")
                .to_string(),
        });
    }
    cases
}

#[test]
fn every_pii_and_secret_label_reaches_f1_097_on_the_eval_set() {
    let cases = load();
    assert!(cases.len() >= 400, "only {} cases", cases.len());
    let detectors = Detectors::new(&Settings::default()).expect("default settings are valid");
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let mut errors = Vec::new();
    for case in &cases {
        let got: BTreeSet<String> = detectors
            .scan(&case.text, case.place)
            .into_iter()
            .map(|f| f.label)
            .collect();
        for label in got.union(&case.expect) {
            let c = counts.entry(label.clone()).or_default();
            match (got.contains(label), case.expect.contains(label)) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => {}
            }
        }
        if got != case.expect {
            errors.push(format!(
                "line {} [{}]: expected {:?}, got {:?}",
                case.line, case.family, case.expect, got
            ));
        }
    }
    println!(
        "{} cases, {} with a wrong label set",
        cases.len(),
        errors.len()
    );
    for e in &errors {
        println!("  {e}");
    }
    println!(
        "{:<18} {:>4} {:>4} {:>4} {:>9} {:>7} {:>6}",
        "label", "tp", "fp", "fn", "precision", "recall", "f1"
    );
    for (label, c) in &counts {
        println!(
            "{:<18} {:>4} {:>4} {:>4} {:>9.3} {:>7.3} {:>6.3}",
            label,
            c.tp,
            c.fp,
            c.fn_,
            c.precision(),
            c.recall(),
            c.f1()
        );
    }
    for d in Detector::ALL {
        if !matches!(d.category(), Category::Pii | Category::Secret) {
            continue;
        }
        let c = counts.get(d.label()).copied().unwrap_or_default();
        assert!(c.tp >= 20, "`{}` has only {} positives", d.label(), c.tp);
        assert!(
            c.f1() >= 0.97,
            "`{}`: F1 {:.3} (tp {}, fp {}, fn {})",
            d.label(),
            c.f1(),
            c.tp,
            c.fp,
            c.fn_
        );
    }
}
