//! Sentence embeddings: a GGUF embedding model (a BERT-family encoder with mean pooling, such
//! as all-MiniLM-L6-v2) run in-process by llama.cpp. The knowledge base uses it to rank
//! passages by meaning as well as by words.
//!
//! One worker thread owns the llama.cpp context; callers block on their answer, so the
//! embedder can be used from synchronous code (index builds, the `search` service). Vectors
//! come back L2-normalised: their dot product is their cosine similarity.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;

use super::local::backend;

/// Most tokens of one text; longer texts are cut (BERT models are trained on at most 512).
const MAX_TOKENS: u32 = 512;

struct Job {
    texts: Vec<String>,
    reply: mpsc::Sender<Result<Vec<Vec<f32>>, String>>,
}

/// A loaded embedding model. Cheap to share behind an `Arc`; calls are queued to its worker.
pub struct Embedder {
    path: PathBuf,
    dim: usize,
    max_tokens: u32,
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("path", &self.path)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the model at `path` on a worker thread using `threads` CPU threads. Fails with
    /// a message naming the file when it does not load or is not an embedding model.
    pub fn load(path: &Path, threads: u32) -> Result<Embedder, String> {
        if !path.is_file() {
            return Err(format!(
                "embedding model {} not found; run scripts/fetch-model to download the default one",
                path.display()
            ));
        }
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let owned = path.to_path_buf();
        std::thread::Builder::new()
            .name("murmur-embedder".into())
            .spawn(move || worker(owned, threads, rx, ready_tx))
            .map_err(|e| format!("cannot start the embedding worker: {e}"))?;
        let (dim, max_tokens) = ready_rx
            .recv()
            .map_err(|_| format!("{}: the embedding worker stopped", path.display()))??;
        Ok(Embedder {
            path: path.to_path_buf(),
            dim,
            max_tokens,
            jobs: Mutex::new(jobs),
        })
    }

    /// The model file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of every vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Most tokens of one text that count; the rest of a longer text is cut.
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// One unit-length vector per text, in order.
    pub fn embed<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Vec<f32>>, String> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = mpsc::channel();
        let job = Job {
            texts: texts.iter().map(|t| t.as_ref().to_string()).collect(),
            reply,
        };
        let sent = self
            .jobs
            .lock()
            .map_err(|_| "the embedding worker is gone".to_string())?
            .send(job)
            .is_ok();
        if !sent {
            return Err("the embedding worker is gone".into());
        }
        answer
            .recv()
            .map_err(|_| "the embedding worker stopped".to_string())?
    }
}

/// Dot product of two vectors of the same length (cosine similarity for unit vectors).
/// Eight running sums, so the compiler can use SIMD lanes (a single sum must add in order).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut sums = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            sums[i] += x[i] * y[i];
        }
    }
    sums.iter().sum::<f32>() + tail
}

fn worker(
    path: PathBuf,
    threads: u32,
    jobs: mpsc::Receiver<Job>,
    ready: mpsc::Sender<Result<(usize, u32), String>>,
) {
    let fail = |e: String| {
        let _ = ready.send(Err(e));
    };
    let backend = match backend() {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let model = match LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default()) {
        Ok(m) => m,
        Err(e) => return fail(format!("cannot load {}: {e}", path.display())),
    };
    // Sentence-embedding models declare how their token states are pooled; chat models do
    // not, and their mean-pooled states are not trained for similarity.
    let arch = model
        .meta_val_str("general.architecture")
        .unwrap_or_default();
    if model.meta_val_str(&format!("{arch}.pooling_type")).is_err() {
        return fail(format!(
            "{} is not an embedding model: its metadata has no `{arch}.pooling_type`",
            path.display()
        ));
    }
    let dim = usize::try_from(model.n_embd()).unwrap_or(0);
    let n_ctx = model.n_ctx_train().clamp(8, MAX_TOKENS);
    let threads = i32::try_from(threads.max(1)).unwrap_or(1);
    // An encoder sees a whole text at once: batch and micro-batch hold the longest text.
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_ctx)
        .with_n_ubatch(n_ctx)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_embeddings(true)
        .with_pooling_type(LlamaPoolingType::Mean);
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => return fail(format!("cannot create a llama.cpp context: {e}")),
    };
    let Ok(n_tokens) = usize::try_from(n_ctx) else {
        return fail("context length out of range".into());
    };
    let mut batch = LlamaBatch::new(n_tokens, 1);
    // Probe: a model without pooled sentence embeddings (a chat model) fails here, once.
    let probe = (|| -> Result<(), String> {
        let tokens = model.vocab().tokenize(b"probe", true, false);
        batch
            .add_sequence(&tokens, 0, false)
            .map_err(|e| e.to_string())?;
        ctx.decode(&mut batch).map_err(|e| e.to_string())?;
        ctx.embeddings_seq_ith(0)
            .map_err(|_| "it gives no pooled sentence embedding".to_string())?;
        batch.clear();
        ctx.clear_kv_cache();
        Ok(())
    })();
    if let Err(e) = probe {
        return fail(format!(
            "{} is not a usable embedding model: {e}",
            path.display()
        ));
    }
    let _ = ready.send(Ok((dim, n_ctx)));
    drop(ready);

    for job in jobs {
        let mut out = Vec::with_capacity(job.texts.len());
        let mut failed = None;
        for text in &job.texts {
            match embed_one(&model, &mut ctx, &mut batch, text, n_tokens) {
                Ok(v) => out.push(v),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let _ = job.reply.send(match failed {
            Some(e) => Err(e),
            None => Ok(out),
        });
    }
}

fn embed_one(
    model: &LlamaModel,
    ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
    batch: &mut LlamaBatch,
    text: &str,
    n_tokens: usize,
) -> Result<Vec<f32>, String> {
    // Special-token text in a passage is read as plain text.
    let mut tokens = model.vocab().tokenize(text.as_bytes(), true, false);
    if tokens.len() > n_tokens {
        // Keep the start of the text and the closing separator the model expects.
        let last = tokens[tokens.len() - 1];
        tokens.truncate(n_tokens - 1);
        tokens.push(last);
    }
    batch.clear();
    batch
        .add_sequence(&tokens, 0, false)
        .map_err(|e| format!("cannot fill the batch: {e}"))?;
    ctx.clear_kv_cache();
    ctx.decode(batch)
        .map_err(|e| format!("llama.cpp failed to encode: {e}"))?;
    let v = ctx
        .embeddings_seq_ith(0)
        .map_err(|_| "llama.cpp returned no embedding".to_string())?;
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return Err("the model returned a zero or non-finite embedding".into());
    }
    Ok(v.iter().map(|x| x / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Option<PathBuf> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2.gguf");
        p.is_file().then_some(p)
    }

    #[test]
    fn similar_sentences_are_closer_than_unrelated_ones() {
        let Some(path) = model() else {
            panic!("models/all-MiniLM-L6-v2.gguf is missing; run scripts/fetch-model");
        };
        let e = Embedder::load(&path, 2).expect("loads");
        assert_eq!(e.dim(), 384);
        let v = e
            .embed(&[
                "How many people live in Port Avalon?",
                "Port Avalon has a population of 412,000.",
                "The ferry crosses to Corran Island twice a day.",
            ])
            .expect("embeds");
        assert_eq!(v.len(), 3);
        for x in &v {
            assert!((dot(x, x) - 1.0).abs() < 1e-4, "unit length");
        }
        let related = dot(&v[0], &v[1]);
        let unrelated = dot(&v[0], &v[2]);
        assert!(related > unrelated + 0.2, "{related} vs {unrelated}");
        // The same text twice gives the same vector.
        let again = e
            .embed(&["How many people live in Port Avalon?"])
            .expect("embeds");
        assert!(dot(&again[0], &v[0]) > 0.9999);
    }

    #[test]
    fn a_chat_model_is_refused() {
        let chat =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
        let err = Embedder::load(&chat, 1).expect_err("a chat model is refused");
        assert!(err.contains("is not an embedding model"), "{err}");
        assert!(err.contains("SmolLM2-135M-Instruct.Q4_1.gguf"), "{err}");
    }

    #[test]
    fn a_text_longer_than_the_model_takes_is_cut_not_refused() {
        let Some(path) = model() else {
            panic!("models/all-MiniLM-L6-v2.gguf is missing; run scripts/fetch-model");
        };
        let e = Embedder::load(&path, 1).expect("loads");
        let long = "The Halden line runs every fifteen minutes. ".repeat(200);
        let v = e.embed(&[long.as_str(), ""]).expect("embeds");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].len(), e.dim());
    }

    #[test]
    fn a_missing_file_names_itself_and_the_fix() {
        let err = Embedder::load(Path::new("/nonexistent/model.gguf"), 1)
            .expect_err("a missing file is refused");
        assert!(err.contains("/nonexistent/model.gguf"), "{err}");
        assert!(err.contains("scripts/fetch-model"), "{err}");
    }
}
