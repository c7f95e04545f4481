//! The `local` provider: a GGUF model run in-process on the CPU by llama.cpp (through the
//! `llama-cpp-2` binding), streaming tokens.
//!
//! One worker thread per loaded model owns the llama.cpp context; every session and analyzer
//! using the model queues its calls there, so the weights are loaded once per process. The
//! worker keeps the tokens already in its KV cache and, for each call, only evaluates what
//! follows the longest common prefix: a turn that extends the previous one processes only
//! its new tokens. The chat template, tokenizer and special tokens come from the GGUF file.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, OnceLock};

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use murmur_plugin_api::Role;
use tokio::sync::{mpsc, oneshot};

use super::{
    BoxFuture, ContextMessage, ModelError, ModelInput, ModelProvider, ModelReply, ModelRequest,
    Usage,
};

/// Sampling settings (config keys of the same names).
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f32,
    /// Nucleus sampling mass.
    pub top_p: f32,
    /// Keep this many most likely tokens (0 = all).
    pub top_k: i32,
    /// Penalty for repeating recent tokens (1 = off).
    pub repeat_penalty: f32,
    /// Random seed.
    pub seed: u32,
    /// Most tokens per reply.
    pub max_tokens: u32,
    /// Generation stops before any of these strings.
    pub stop: Vec<String>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: 0.95,
            top_k: 40,
            repeat_penalty: 1.1,
            seed: 42,
            max_tokens: 256,
            stop: Vec::new(),
        }
    }
}

/// How to load a local model.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalSettings {
    /// The `.gguf` file.
    pub path: PathBuf,
    /// Context length in tokens; `None` = the model's training length, at most 8192.
    pub context_length: Option<u32>,
    /// CPU threads.
    pub threads: u32,
    /// Default sampling.
    pub sampling: Sampling,
    /// Keep the KV cache of the previous call and evaluate only what follows the common
    /// prefix (on by default; off only to measure what reuse saves).
    pub kv_cache_reuse: bool,
}

/// The command that fetches the default model.
pub const FETCH_HINT: &str = "run scripts/fetch-model to download the default model";

pub(super) fn backend() -> Result<&'static LlamaBackend, String> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut backend =
                LlamaBackend::init().map_err(|e| format!("cannot start llama.cpp: {e}"))?;
            // llama.cpp logs every tensor at load; Murmur reports what matters itself.
            backend.void_logs();
            Ok(backend)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Per-call overrides of the default sampling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallOptions {
    /// Most tokens to generate.
    pub max_tokens: Option<u32>,
    /// Temperature.
    pub temperature: Option<f32>,
    /// A GBNF grammar the output must follow.
    pub grammar: Option<String>,
}

/// What the worker thread does: generate, or count the tokens of an input.
enum Work {
    Generate(Job),
    Count {
        input: Arc<ModelInput>,
        reply: oneshot::Sender<Result<u64, String>>,
    },
}

struct Job {
    input: Arc<ModelInput>,
    /// The sampling of the config table the call came through.
    sampling: Arc<Sampling>,
    options: CallOptions,
    chunks: mpsc::UnboundedSender<String>,
    cancel: Arc<AtomicBool>,
    reply: oneshot::Sender<Result<ModelReply, String>>,
}

/// Facts about a loaded model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// File name.
    pub name: String,
    /// Context length in use.
    pub context_length: u32,
    /// Context length the model was trained with.
    pub trained_context_length: u32,
}

/// A loaded local model. Cheap to share; calls are queued to its worker thread.
#[derive(Debug)]
pub struct LocalModel {
    jobs: std_mpsc::Sender<Work>,
    info: ModelInfo,
    sampling: Arc<Sampling>,
}

impl LocalModel {
    /// Loads the model file (blocking; ~0.2 s for the default model) and starts its worker.
    pub fn load(settings: &LocalSettings) -> Result<LocalModel, ModelError> {
        let error = |message: String| ModelError {
            provider: "local".to_string(),
            message,
        };
        if !settings.path.is_file() {
            return Err(error(format!(
                "model file {} not found; {FETCH_HINT}",
                settings.path.display()
            )));
        }
        let (jobs, receiver) = std_mpsc::channel::<Work>();
        let (ready_tx, ready_rx) = std_mpsc::channel::<Result<ModelInfo, String>>();
        let sampling = Arc::new(settings.sampling.clone());
        let settings = settings.clone();
        std::thread::Builder::new()
            .name("murmur-local-model".into())
            .spawn(move || worker(settings, receiver, ready_tx))
            .map_err(|e| error(format!("cannot start the model thread: {e}")))?;
        let info = ready_rx
            .recv()
            .map_err(|_| error("the model thread ended while loading".into()))?
            .map_err(error)?;
        Ok(LocalModel {
            jobs,
            info,
            sampling,
        })
    }

    /// The same loaded model (same weights, worker and KV cache) with other default
    /// sampling: config tables that differ only in sampling keys share one load.
    pub fn with_sampling(&self, sampling: Sampling) -> LocalModel {
        LocalModel {
            jobs: self.jobs.clone(),
            info: self.info.clone(),
            sampling: Arc::new(sampling),
        }
    }

    /// Facts about the model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Generates with per-call options.
    pub fn call_with(
        &self,
        request: ModelRequest,
        options: CallOptions,
    ) -> BoxFuture<'static, Result<ModelReply, ModelError>> {
        let (reply, rx) = oneshot::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let sent = self.jobs.send(Work::Generate(Job {
            input: request.input,
            sampling: self.sampling.clone(),
            options,
            chunks: request.chunks,
            cancel: cancel.clone(),
            reply,
        }));
        Box::pin(async move {
            // Dropping this future (a stop request, a timeout) stops generation.
            let _stop = CancelOnDrop(cancel);
            worker_answer(sent.is_ok(), rx).await
        })
    }
}

/// The worker's answer to a job, with the errors of a worker that is gone.
async fn worker_answer<T>(
    sent: bool,
    rx: oneshot::Receiver<Result<T, String>>,
) -> Result<T, ModelError> {
    let error = |message: String| ModelError {
        provider: "local".to_string(),
        message,
    };
    if !sent {
        return Err(error("the model thread has stopped".into()));
    }
    rx.await
        .map_err(|_| error("the model thread ended during the call".into()))?
        .map_err(error)
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl ModelProvider for LocalModel {
    fn name(&self) -> &str {
        "local"
    }

    fn call(&self, request: ModelRequest) -> BoxFuture<'static, Result<ModelReply, ModelError>> {
        let grammar = match &request.json_schema {
            Some(schema) => match llama_cpp_2::json_schema_to_grammar(&schema.to_string()) {
                Ok(g) => Some(g),
                Err(e) => {
                    let message = format!("the JSON schema cannot be turned into a grammar: {e}");
                    return Box::pin(async move {
                        Err(ModelError {
                            provider: "local".to_string(),
                            message,
                        })
                    });
                }
            },
            None => None,
        };
        let options = CallOptions {
            grammar,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
        };
        self.call_with(request, options)
    }

    fn context_length(&self) -> Option<u32> {
        Some(self.info.context_length)
    }

    fn max_reply_tokens(&self) -> Option<u32> {
        Some(self.sampling.max_tokens)
    }

    /// Exact: the input through the model's chat template and tokenizer.
    fn count_tokens(&self, input: Arc<ModelInput>) -> BoxFuture<'static, Result<u64, ModelError>> {
        let (reply, rx) = oneshot::channel();
        let sent = self.jobs.send(Work::Count { input, reply }).is_ok();
        Box::pin(worker_answer(sent, rx))
    }
}

fn worker(
    settings: LocalSettings,
    jobs: std_mpsc::Receiver<Work>,
    ready: std_mpsc::Sender<Result<ModelInfo, String>>,
) {
    let loaded = (|| -> Result<(&'static LlamaBackend, LlamaModel), String> {
        let backend = backend()?;
        let model =
            LlamaModel::load_from_file(backend, &settings.path, &LlamaModelParams::default())
                .map_err(|e| format!("cannot load {}: {e}", settings.path.display()))?;
        Ok((backend, model))
    })();
    let (backend, model) = match loaded {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let trained = model.n_ctx_train();
    let n_ctx = settings
        .context_length
        .unwrap_or(trained.min(8192))
        .max(256);
    let threads = i32::try_from(settings.threads.max(1)).unwrap_or(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(512)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut ctx = match model.new_context(backend, params) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot create a llama.cpp context: {e}")));
            return;
        }
    };
    let template = match model.chat_template(None) {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(format!(
                "{} has no usable chat template in its metadata: {e}",
                settings.path.display()
            )));
            return;
        }
    };
    let info = ModelInfo {
        name: settings
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        context_length: n_ctx,
        trained_context_length: trained,
    };
    if ready.send(Ok(info)).is_err() {
        return;
    }
    let mut engine = Engine {
        model: &model,
        template,
        cached: Vec::new(),
        n_ctx,
        kv_cache_reuse: settings.kv_cache_reuse,
    };
    while let Ok(work) = jobs.recv() {
        match work {
            Work::Generate(job) => {
                let result = engine.generate(&mut ctx, &job);
                let _ = job.reply.send(result);
            }
            Work::Count { input, reply } => {
                let result = engine.prompt_tokens(&input).map(|t| t.len() as u64);
                let _ = reply.send(result);
            }
        }
    }
}

struct Engine<'m> {
    model: &'m LlamaModel,
    template: LlamaChatTemplate,
    /// Tokens in the KV cache of sequence 0, in order.
    cached: Vec<LlamaToken>,
    n_ctx: u32,
    kv_cache_reuse: bool,
}

/// The chat messages of a model input, in the roles chat templates know.
pub fn chat_messages(input: &ModelInput) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(input.messages.len() + 1);
    if !input.instructions.is_empty() {
        out.push(("system".to_string(), input.instructions.clone()));
    }
    for m in &input.messages {
        out.push(chat_message(m));
    }
    out
}

fn chat_message(m: &ContextMessage) -> (String, String) {
    match m.role {
        Role::Tool => (
            "user".to_string(),
            format!(
                "[result of tool {}] {}",
                m.tool_name.as_deref().unwrap_or("?"),
                m.content
            ),
        ),
        Role::Assistant if !m.tool_calls.is_empty() => {
            let calls: Vec<String> = m
                .tool_calls
                .iter()
                .map(|c| format!("[calls tool {} with {}]", c.name, c.arguments))
                .collect();
            let text = if m.content.is_empty() {
                calls.join(" ")
            } else {
                format!("{} {}", m.content, calls.join(" "))
            };
            ("assistant".to_string(), text)
        }
        role => (role.as_str().to_string(), m.content.clone()),
    }
}

impl Engine<'_> {
    fn prompt_tokens(&self, input: &ModelInput) -> Result<Vec<LlamaToken>, String> {
        let messages = chat_messages(input)
            .into_iter()
            .map(|(role, content)| {
                LlamaChatMessage::new(role, content)
                    .map_err(|e| format!("message cannot be passed to the model: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prompt = self
            .model
            .apply_chat_template(&self.template, &messages, true)
            .map_err(|e| format!("cannot apply the chat template: {e}"))?;
        Ok(self.model.vocab().tokenize(prompt.as_bytes(), true, true))
    }

    fn generate(&mut self, ctx: &mut LlamaContext<'_>, job: &Job) -> Result<ModelReply, String> {
        let tokens = self.prompt_tokens(&job.input)?;
        let max_tokens = job
            .options
            .max_tokens
            .unwrap_or(job.sampling.max_tokens)
            .max(1);
        let needed = tokens.len() + max_tokens as usize;
        if needed > self.n_ctx as usize {
            return Err(format!(
                "the model input is {} tokens and up to {max_tokens} more may be generated, past the context length of {} tokens",
                tokens.len(),
                self.n_ctx
            ));
        }
        // Reuse the KV cache for the unchanged prefix; always evaluate at least one token so
        // there are logits to sample from.
        let mut common = if self.kv_cache_reuse {
            self.cached
                .iter()
                .zip(&tokens)
                .take_while(|(a, b)| a == b)
                .count()
        } else {
            0
        };
        if common == tokens.len() {
            common = common.saturating_sub(1);
        }
        let keep = u32::try_from(common).map_err(|_| "prompt too long".to_string())?;
        if ctx.clear_kv_cache_seq(Some(0), Some(keep), None).is_err() {
            ctx.clear_kv_cache();
            common = 0;
        }
        self.cached.truncate(common);
        let batch_size = ctx.n_batch().max(1) as usize;
        let mut batch = LlamaBatch::new(batch_size, 1);
        let new = &tokens[common..];
        for (chunk_index, chunk) in new.chunks(batch_size).enumerate() {
            if job.cancel.load(Ordering::SeqCst) {
                return Err("cancelled".into());
            }
            batch.clear();
            let base = common + chunk_index * batch_size;
            for (i, t) in chunk.iter().enumerate() {
                let pos = i32::try_from(base + i).map_err(|_| "prompt too long".to_string())?;
                let last = base + i + 1 == tokens.len();
                batch
                    .add(*t, pos, &[0], last)
                    .map_err(|e| format!("batch: {e}"))?;
            }
            if let Err(e) = ctx.decode(&mut batch) {
                self.cached.clear();
                ctx.clear_kv_cache();
                return Err(format!("llama.cpp could not evaluate the prompt: {e}"));
            }
            self.cached.extend_from_slice(chunk);
        }
        let prompt_evaluated = new.len();

        let temperature = job.options.temperature.unwrap_or(job.sampling.temperature);
        let mut sampler =
            self.sampler(&job.sampling, temperature, job.options.grammar.as_deref())?;
        let vocab = self.model.vocab();
        let mut text = String::new();
        let mut pending_bytes: Vec<u8> = Vec::new();
        let mut streamed = 0usize;
        let holdback = job.sampling.stop.iter().map(String::len).max().unwrap_or(0);
        let mut generated = 0u32;
        let mut batch = LlamaBatch::new(1, 1);
        let mut stopped_by_string = false;
        while generated < max_tokens {
            if job.cancel.load(Ordering::SeqCst) {
                return Err("cancelled".into());
            }
            let token = sampler.sample(ctx, -1);
            if vocab.is_eog(token) {
                break;
            }
            generated += 1;
            pending_bytes.extend(vocab.token_to_piece(token, false, None));
            let valid = match std::str::from_utf8(&pending_bytes) {
                Ok(s) => s.len(),
                Err(e) => e.valid_up_to(),
            };
            if valid > 0 {
                let piece: Vec<u8> = pending_bytes.drain(..valid).collect();
                text.push_str(&String::from_utf8_lossy(&piece));
            }
            if let Some(at) = job
                .sampling
                .stop
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                text.truncate(at);
                stopped_by_string = true;
            }
            let safe = if stopped_by_string {
                text.len()
            } else {
                floor_char_boundary(&text, text.len().saturating_sub(holdback))
            };
            if safe > streamed {
                let _ = job.chunks.send(text[streamed..safe].to_string());
                streamed = safe;
            }
            if stopped_by_string {
                break;
            }
            batch.clear();
            let pos =
                i32::try_from(self.cached.len()).map_err(|_| "context too long".to_string())?;
            batch
                .add(token, pos, &[0], true)
                .map_err(|e| format!("batch: {e}"))?;
            if let Err(e) = ctx.decode(&mut batch) {
                self.cached.clear();
                ctx.clear_kv_cache();
                return Err(format!(
                    "llama.cpp could not evaluate a generated token: {e}"
                ));
            }
            self.cached.push(token);
        }
        if streamed < text.len() {
            let _ = job.chunks.send(text[streamed..].to_string());
        }
        Ok(ModelReply {
            text,
            tool_calls: Vec::new(),
            usage: Usage {
                prompt_tokens: tokens.len() as u64,
                prompt_evaluated: prompt_evaluated as u64,
                completion_tokens: u64::from(generated),
            },
        })
    }

    fn sampler(
        &self,
        s: &Sampling,
        temperature: f32,
        grammar: Option<&str>,
    ) -> Result<LlamaSampler, String> {
        let mut chain = Vec::new();
        if let Some(g) = grammar {
            chain.push(
                LlamaSampler::grammar(self.model, g, "root")
                    .map_err(|e| format!("invalid output grammar: {e}"))?,
            );
        }
        if (s.repeat_penalty - 1.0).abs() > f32::EPSILON {
            chain.push(LlamaSampler::penalties(
                self.model.n_vocab(),
                64,
                s.repeat_penalty,
                0.0,
                0.0,
            ));
        }
        if temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            if s.top_k > 0 {
                chain.push(LlamaSampler::top_k(s.top_k));
            }
            chain.push(LlamaSampler::top_p(s.top_p, 1));
            chain.push(LlamaSampler::temp(temperature));
            chain.push(LlamaSampler::dist(s.seed));
        }
        Ok(LlamaSampler::chain_simple(chain))
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The default model file, relative to the current directory.
pub fn default_model_path() -> PathBuf {
    Path::new("models").join("SmolLM2-135M-Instruct.Q4_1.gguf")
}
