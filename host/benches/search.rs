//! Latency of the `search` service on a knowledge base of 100,000 passages, lexical (BM25)
//! and hybrid (BM25 plus the embedding model).
//!
//! ```text
//! cargo bench -p murmur --bench search [-- PASSAGES]
//! ```
//!
//! The passages are generated from the words of `examples/kb` (a fixed seed, word
//! frequencies as in the handbook, 40 to 160 words each, a two-level heading), so queries
//! meet realistic posting lists. The index is built once in a temporary folder. The
//! queries are the messages of `examples/eval/rag.jsonl`, asked with `k = 8` as the `rag`
//! analyzer does, 10 rounds after one warm-up round. It prints the build time and the p50,
//! p99 and max latency of each round, then the median of the rounds.
//!
//! The hybrid part needs `models/all-MiniLM-L6-v2.gguf` (`scripts/fetch-model`) and is
//! skipped without it. Each query is embedded by the model, as in use; the 100,000 passage
//! vectors are random unit vectors (a fixed seed) rather than embeddings, which would take
//! over an hour to compute here: the sign-bit pass over all rows and the exact ranking of a
//! fixed number of candidates cost the same whatever the values.
//! It prints the latency of embedding a query alone and of the whole hybrid search.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use murmur::knowledge::{passage_id, passages, Document, KnowledgeBase, Passage, Vectors};
use murmur::model::embedding::Embedder;

const DEFAULT_PASSAGES: usize = 100_000;
const ROUNDS: usize = 10;
const HYBRID_ROUNDS: usize = 5;
const K: usize = 8;

/// A small deterministic generator (xorshift64*), so every run indexes the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [-1, 1).
    fn signed(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// One round of `f` over every query: sorted latencies.
fn round(
    queries: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<usize>,
    hits: &mut usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        *hits += f(q)?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok(times)
}

/// Runs `rounds` rounds after a warm-up one, printing each and the medians.
fn measure(
    label: &str,
    rounds: usize,
    queries: &[String],
    mut f: impl FnMut(&str) -> anyhow::Result<usize>,
) -> anyhow::Result<()> {
    let mut hits = 0usize;
    round(queries, &mut f, &mut hits)?;
    hits = 0;
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for r in 1..=rounds {
        let times = round(queries, &mut f, &mut hits)?;
        let (p50, p99) = (percentile(&times, 0.5), percentile(&times, 0.99));
        println!(
            "{label} round {r:>2}: p50 {}, p99 {}, max {}",
            micros(p50),
            micros(p99),
            micros(times[times.len() - 1])
        );
        p50s.push(p50);
        p99s.push(p99);
    }
    p50s.sort();
    p99s.sort();
    println!(
        "{label}: median of {rounds} rounds: p50 {}, p99 {} ({hits} hits returned)",
        micros(p50s[rounds / 2]),
        micros(p99s[rounds / 2]),
    );
    Ok(())
}

fn kb_words(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut words = Vec::new();
    for entry in walk(root)? {
        let text = std::fs::read_to_string(&entry)
            .with_context(|| format!("cannot read {}", entry.display()))?;
        for p in passages::split_markdown(&text, 1200) {
            words.extend(p.text.split_whitespace().map(str::to_string));
        }
    }
    anyhow::ensure!(!words.is_empty(), "no words in {}", root.display());
    Ok(words)
}

fn walk(dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn questions(path: &Path) -> anyhow::Result<Vec<String>> {
    let cases = murmur::eval::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cases.into_iter().filter_map(|c| c.user).collect())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("search bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let count = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(|a| a.parse::<usize>())
        .transpose()
        .context("the argument is the number of passages")?
        .unwrap_or(DEFAULT_PASSAGES);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let words = kb_words(&root.join("examples/kb"))?;
    let queries = questions(&root.join("examples/eval/rag.jsonl"))?;

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let pick = |n: usize, rng: &mut Rng| -> String {
        (0..n)
            .map(|_| words[rng.below(words.len())].as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let docs: Vec<Document> = (0..count / 10)
        .map(|d| Document {
            source: format!("generated/{d:05}.md"),
            passages: (0..10)
                .map(|_| {
                    let h = format!("{} > {}", pick(3, &mut rng), pick(4, &mut rng));
                    let n = 40 + rng.below(121);
                    Passage {
                        heading: h,
                        text: pick(n, &mut rng),
                    }
                })
                .collect(),
        })
        .collect();
    let ids: Vec<String> = docs
        .iter()
        .flat_map(|d| (0..d.passages.len()).map(|n| passage_id(&d.source, n)))
        .collect();
    let tmp = tempfile::tempdir().context("cannot create a temporary folder")?;
    let dir = tmp.path().join("index");
    let started = Instant::now();
    let indexed = KnowledgeBase::write_index(&dir, docs)?;
    let build = started.elapsed();
    let kb = KnowledgeBase::open_index(&dir)?;
    println!(
        "indexed {indexed} passages in {:.1} s ({} segment(s)); {} queries per round, k = {K}",
        build.as_secs_f64(),
        kb.segments(),
        queries.len()
    );
    measure("lexical", ROUNDS, &queries, |q| Ok(kb.search(q, K)?.len()))?;

    let model = root.join("models/all-MiniLM-L6-v2.gguf");
    if !model.is_file() {
        println!(
            "hybrid: skipped, {} is missing (scripts/fetch-model)",
            model.display()
        );
        return Ok(());
    }
    let threads = std::env::var("EMBED_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let embedder =
        std::sync::Arc::new(Embedder::load(&model, threads).map_err(|e| anyhow::anyhow!("{e}"))?);
    let mut vectors = Vectors::new(embedder.dim());
    let mut v = vec![0f32; embedder.dim()];
    for id in ids {
        for x in v.iter_mut() {
            *x = rng.signed();
        }
        let norm = v
            .iter()
            .map(|x| x * x)
            .sum::<f32>()
            .sqrt()
            .max(f32::MIN_POSITIVE);
        v.iter_mut().for_each(|x| *x /= norm);
        vectors.push(id, &v).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    vectors.write(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let kb = kb.with_embedder(embedder.clone(), 0.8)?;
    println!(
        "hybrid: {} passage vectors of {} dimensions, {threads} embedding threads",
        vectors.len(),
        vectors.dim()
    );
    // The vector search alone, on the queries' own vectors: by sign bits then exactly (as
    // searches run), and exhaustively, for the ratio.
    let embedded: std::collections::HashMap<&str, Vec<f32>> = queries
        .iter()
        .map(|q| {
            let v = embedder.embed(&[q]).map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok((q.as_str(), v.into_iter().next().unwrap_or_default()))
        })
        .collect::<anyhow::Result<_>>()?;
    vectors.prepare();
    let vector_of = |q: &str| embedded.get(q).map(Vec::as_slice).unwrap_or_default();
    measure("nearest 20, sign bits", ROUNDS, &queries, |q| {
        Ok(vectors.nearest(vector_of(q), 20).len())
    })?;
    measure("nearest 20, exhaustive", HYBRID_ROUNDS, &queries, |q| {
        Ok(vectors.nearest_exact(vector_of(q), 20).len())
    })?;
    measure("embed query", HYBRID_ROUNDS, &queries, |q| {
        Ok(embedder
            .embed(&[q])
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .len())
    })?;
    measure("hybrid", HYBRID_ROUNDS, &queries, |q| {
        Ok(kb.search(q, K)?.len())
    })?;
    Ok(())
}
