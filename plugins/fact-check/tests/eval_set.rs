//! Runs every case of `examples/eval/fact-check.jsonl` through the analyzer's decision
//! ([`check_reply`]) against the knowledge base in `examples/kb/`, and prints precision,
//! recall and F1 on the `contradicted` label (`cargo test -p murmur-fact-check --test
//! eval_set -- --nocapture`). A second test checks every paragraph of the knowledge base
//! against the knowledge base itself, where no correction is right.
//!
//! The knowledge base is searched by [`OverlapSearch`], a stand-in for the host's BM25
//! index written for this test only: passages are cut the way the host cuts them (at
//! Markdown headings, then at about 1,200 characters on paragraph boundaries, each with its
//! heading path), and ranked by the summed inverse document frequency of the (stemmed) query
//! words they contain: no term frequency, no length normalisation. The real
//! evaluation through the host's index is `murmur eval`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use murmur_fact_check::{check_reply, Evidence, Settings};
use murmur_plugin_api::{Result, SearchHit};
use rust_stemmers::{Algorithm, Stemmer};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A passage of the stand-in index.
struct Passage {
    hit: SearchHit,
    terms: BTreeSet<String>,
}

/// Word-overlap search over the kb folder: the stand-in for BM25 described above.
struct OverlapSearch {
    passages: Vec<Passage>,
    idf: HashMap<String, f64>,
}

/// Lowercased words, English Snowball stems (as the host's index stems them).
fn terms(text: &str) -> BTreeSet<String> {
    let stemmer = Stemmer::create(Algorithm::English);
    text.split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .map(|w| stemmer.stem(&w.to_lowercase()).into_owned())
        .collect()
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            markdown_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "md" || e == "txt") {
            out.push(path);
        }
    }
}

impl OverlapSearch {
    fn open(kb: &Path) -> Self {
        let mut files = Vec::new();
        markdown_files(kb, &mut files);
        assert!(!files.is_empty(), "no Markdown files in {}", kb.display());
        let mut passages = Vec::new();
        for file in files {
            let source = file
                .strip_prefix(kb)
                .expect("file under the kb folder")
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&file).expect("readable kb file");
            let mut stack: Vec<(usize, String)> = Vec::new();
            let mut body = String::new();
            let mut n = 0;
            let mut flush = |stack: &[(usize, String)], body: &mut String, n: &mut usize| {
                let heading = stack
                    .iter()
                    .map(|(_, h)| h.as_str())
                    .collect::<Vec<_>>()
                    .join(" > ");
                // Cut long sections at paragraph boundaries near 1,200 characters.
                let mut chunk = String::new();
                let mut chunks = Vec::new();
                for para in body.split("\n\n") {
                    if !chunk.is_empty() && chunk.len() + para.len() > 1200 {
                        chunks.push(std::mem::take(&mut chunk));
                    }
                    if !chunk.is_empty() {
                        chunk.push_str("\n\n");
                    }
                    chunk.push_str(para.trim());
                }
                chunks.push(chunk);
                for c in chunks {
                    if c.trim().is_empty() {
                        continue;
                    }
                    let mut t = terms(&c);
                    t.extend(terms(&heading));
                    passages.push(Passage {
                        hit: SearchHit {
                            id: format!("{source}#{n}"),
                            source: source.clone(),
                            heading: heading.clone(),
                            text: c.trim().to_string(),
                            score: 0.0,
                            similarity: None,
                        },
                        terms: t,
                    });
                    *n += 1;
                }
                body.clear();
            };
            for line in text.lines() {
                let level = line.chars().take_while(|&c| c == '#').count();
                if level > 0 && line[level..].starts_with(' ') {
                    flush(&stack, &mut body, &mut n);
                    while stack.last().is_some_and(|(l, _)| *l >= level) {
                        stack.pop();
                    }
                    stack.push((level, line[level..].trim().to_string()));
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
            flush(&stack, &mut body, &mut n);
        }
        let mut df: HashMap<String, usize> = HashMap::new();
        for p in &passages {
            for t in &p.terms {
                *df.entry(t.clone()).or_default() += 1;
            }
        }
        let n = passages.len() as f64;
        let idf = df
            .into_iter()
            .map(|(t, d)| (t, (1.0 + (n - d as f64 + 0.5) / (d as f64 + 0.5)).ln()))
            .collect();
        OverlapSearch { passages, idf }
    }
}

impl Evidence for OverlapSearch {
    fn search(&self, query: &str, k: u32) -> Result<Vec<SearchHit>> {
        let q = terms(query);
        let mut scored: Vec<(f64, &Passage)> = self
            .passages
            .iter()
            .map(|p| {
                let s: f64 = q
                    .iter()
                    .filter(|t| p.terms.contains(*t))
                    .map(|t| self.idf.get(t).copied().unwrap_or(0.0))
                    .sum();
                (s, p)
            })
            .filter(|(s, _)| *s > 0.0)
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        Ok(scored
            .into_iter()
            .take(k as usize)
            .map(|(s, p)| SearchHit {
                score: s as f32,
                ..p.hit.clone()
            })
            .collect())
    }
}

/// The knowledge base agrees with itself: no paragraph of it, checked as a reply against
/// it, gets a correction. Every number in it is a claim the rules must not contradict.
#[test]
fn the_knowledge_base_checked_against_itself_gets_no_correction() {
    let root = repo_root();
    let kb_dir = root.join("examples/kb");
    let kb = OverlapSearch::open(&kb_dir);
    let mut files = Vec::new();
    markdown_files(&kb_dir, &mut files);
    let settings = Settings::default();
    let (mut paragraphs, mut claims) = (0, 0);
    let mut corrections = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable kb file");
        for paragraph in text.split("\n\n") {
            paragraphs += 1;
            let report = check_reply(paragraph, &settings, &kb, None, &|| false, &mut |_| {})
                .expect("check runs");
            claims += report.claims;
            if let Some(injection) = report.injection() {
                corrections.push(format!("{}: {}", file.display(), injection.content));
            }
        }
    }
    println!(
        "kb self-check: {paragraphs} paragraphs, {claims} claims, {} corrections",
        corrections.len()
    );
    assert!(claims >= 100, "only {claims} claims checked");
    assert!(corrections.is_empty(), "{}", corrections.join("\n"));
}

#[derive(serde::Deserialize)]
struct Case {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    reply: Option<String>,
    expect: Vec<String>,
    family: String,
}

#[test]
fn the_eval_set_is_checked_with_f1_of_at_least_0_90_on_contradicted() {
    let root = repo_root();
    let kb = OverlapSearch::open(&root.join("examples/kb"));
    let path = root.join("examples/eval/fact-check.jsonl");
    let text = std::fs::read_to_string(&path).expect("examples/eval/fact-check.jsonl exists");
    let settings = Settings::default();
    let (mut tp, mut fp, mut fn_, mut cases) = (0, 0, 0, 0);
    let mut errors: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let case: Case = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {} does not parse: {e}", n + 1));
        assert!(
            case.user.is_some() || case.reply.is_some(),
            "line {}: neither user nor reply",
            n + 1
        );
        cases += 1;
        // Without a reply the hook would be turn_start, which fact-check does not run on.
        let got: Vec<String> = match &case.reply {
            Some(reply) => {
                let report = check_reply(reply, &settings, &kb, None, &|| false, &mut |_| {})
                    .expect("check runs");
                match report.injection() {
                    Some(i) => {
                        let d = i.details.expect("details");
                        d["labels"]
                            .as_array()
                            .expect("labels")
                            .iter()
                            .filter_map(|l| l.as_str().map(String::from))
                            .collect()
                    }
                    None => vec![],
                }
            }
            None => vec![],
        };
        let expected = case.expect.iter().any(|l| l == "contradicted");
        let found = got.iter().any(|l| l == "contradicted");
        match (expected, found) {
            (true, true) => tp += 1,
            (false, true) => {
                fp += 1;
                errors.push(format!(
                    "FP [{}] {}",
                    case.family,
                    case.reply.unwrap_or_default()
                ));
            }
            (true, false) => {
                fn_ += 1;
                errors.push(format!(
                    "FN [{}] {}",
                    case.family,
                    case.reply.unwrap_or_default()
                ));
            }
            (false, false) => {}
        }
    }
    let precision = if tp + fp == 0 {
        1.0
    } else {
        tp as f64 / (tp + fp) as f64
    };
    let recall = if tp + fn_ == 0 {
        1.0
    } else {
        tp as f64 / (tp + fn_) as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    for e in &errors {
        println!("{e}");
    }
    println!(
        "fact-check eval (stand-in search): {cases} cases, contradicted: tp={tp} fp={fp} fn={fn_} \
         precision={precision:.3} recall={recall:.3} F1={f1:.3}"
    );
    assert!(cases >= 100, "only {cases} cases");
    assert!(f1 >= 0.90, "F1 {f1:.3} below 0.90");
}
