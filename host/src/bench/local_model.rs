//! The `local` provider against the bare engine: the same `llama-cpp-2` binding driven by a
//! minimal loop, the same GGUF file, prompt, threads and context size, measured side by side
//! in one process, round after round (docs/performance.md explains the method).
//!
//! ```text
//! murmur bench local-model [--model FILE --model-rounds N]
//! cargo bench -p murmur --bench local_model
//! cargo bench -p murmur --bench local_model -- --rounds 9 --tokens 128 --threads 2
//! ```
//!
//! Options of the cargo bench (each also read from the environment variable shown; flags
//! win):
//!
//! - `--rounds N` (`MURMUR_BENCH_ROUNDS`, default 5): measured rounds;
//! - `--tokens N` (`MURMUR_BENCH_TOKENS`, default 128): tokens generated per round;
//! - `--threads N` (`MURMUR_BENCH_THREADS`, default 2): CPU threads of both engines;
//! - `--warmup N` (`MURMUR_BENCH_WARMUP`, default 1): unreported rounds first;
//! - `--repeat-penalty X` (`MURMUR_BENCH_REPEAT_PENALTY`, default 1 = off), applied to both;
//! - `--only bare|provider`: run one engine alone (for its own peak memory);
//! - `MURMUR_MODEL`: the `.gguf` file (default `models/SmolLM2-135M-Instruct.Q4_1.gguf`).
//!
//! llama.cpp's OpenMP runtime reads `OMP_WAIT_POLICY` when the program starts; `murmur` and
//! the cargo bench run themselves again with `OMP_WAIT_POLICY=PASSIVE` unless it is set.

use std::ffi::OsString;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::local::{
    chat_messages, CallOptions, LocalModel, LocalSettings, Sampling, FETCH_HINT,
};
use crate::model::{ContextMessage, ModelInput, ModelRequest, ToolSpec};
use anyhow::{anyhow, bail, Context as _};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;

/// Same cap as the provider applies when `context_length` is not configured.
const MAX_DEFAULT_CONTEXT: u32 = 8192;
/// Same batch size as the provider.
const BATCH: u32 = 512;

const INSTRUCTIONS: &str = "You are a patient writing assistant. You answer in plain prose, \
without lists or headings, and you always finish the story you are asked to continue.";

const STORY: &str = "Continue this story for several paragraphs.\n\n\
The lighthouse on Carrow Point had been automated for eleven years when Mara Quill arrived \
with two suitcases, a crate of books and a letter from the harbour authority that nobody in \
the village seemed to have read. The letter said that the lamp had failed three times that \
winter, that the automatic fog signal sounded at random hours, and that the authority wished \
to have a keeper on the point again until the engineers could explain why. Mara had kept \
lights before, on colder coasts, and she did not believe in explanations that arrived by \
post. On her first night she climbed the hundred and twelve steps with a paraffin lamp, \
wound the old clockwork that still turned the lens in an emergency, and sat on the gallery \
with her coat buttoned to the chin, watching the beam sweep across the water. At a quarter \
past two the light went out. The clockwork stopped with a sound like a held breath, the fog \
signal began to moan although the night was perfectly clear, and far out beyond the reef, \
where no boat had any business to be, a small green light answered three times and was \
gone. Mara wrote the time in her notebook, relit the lamp by hand, and waited for morning.";

/// Which engines run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Only {
    /// Both, side by side.
    Both,
    /// The bare loop alone.
    Bare,
    /// The provider alone.
    Provider,
}

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `.gguf` file.
    pub model: PathBuf,
    /// Measured rounds.
    pub rounds: usize,
    /// Unreported rounds first.
    pub warmup: usize,
    /// Tokens generated per round.
    pub tokens: u32,
    /// CPU threads of both engines.
    pub threads: u32,
    /// Repeat penalty of both (1 = off).
    pub repeat_penalty: f32,
    /// Which engines run.
    pub only: Only,
}

/// A point in time: wall clock, and CPU time of the whole process (all threads).
#[derive(Debug, Clone, Copy)]
struct Stamp {
    at: Instant,
    cpu: Duration,
}

impl Stamp {
    fn now() -> anyhow::Result<Stamp> {
        Ok(Stamp {
            at: Instant::now(),
            cpu: process_cpu()?,
        })
    }
}

/// One generation, timed the same way for both engines. Wall clock: the prompt phase runs
/// from the call to the first generated token being available as text, the generation phase
/// from the first to the last generated token. CPU time is read only at the call, the first
/// token and the end of the call (reading it costs more than the clock), so the generation
/// phase's CPU covers every token after the first plus the decode of the last one.
#[derive(Debug, Clone)]
struct Run {
    prompt_tokens: usize,
    prompt_time: Duration,
    prompt_cpu: Duration,
    generated: usize,
    generation_time: Duration,
    generation_cpu: Duration,
    text: String,
}

impl Run {
    fn new(
        prompt_tokens: usize,
        generated: usize,
        started: Stamp,
        first: Stamp,
        last_token_at: Instant,
        finished: Stamp,
        text: String,
    ) -> Run {
        Run {
            prompt_tokens,
            prompt_time: first.at - started.at,
            prompt_cpu: first.cpu.saturating_sub(started.cpu),
            generated,
            generation_time: last_token_at - first.at,
            generation_cpu: finished.cpu.saturating_sub(first.cpu),
            text,
        }
    }

    fn prompt_rate(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64()
    }

    /// CPU milliseconds (all threads) per prompt token.
    fn prompt_cpu_per_token(&self) -> f64 {
        self.prompt_cpu.as_secs_f64() * 1000.0 / self.prompt_tokens as f64
    }

    /// CPU milliseconds (all threads) per generated token: one decode and one sampling each.
    fn generation_cpu_per_token(&self) -> f64 {
        if self.generated < 2 {
            return f64::NAN;
        }
        self.generation_cpu.as_secs_f64() * 1000.0 / self.generated as f64
    }

    /// Tokens after the first, over the time between the first and the last.
    fn generation_rate(&self) -> f64 {
        let secs = self.generation_time.as_secs_f64();
        if self.generated < 2 || secs <= 0.0 {
            return f64::NAN;
        }
        (self.generated - 1) as f64 / secs
    }
}

/// Runs the comparison and prints every round and the summaries.
pub fn run(options: &Options) -> anyhow::Result<()> {
    if !options.model.is_file() {
        bail!(
            "model file {} not found; {FETCH_HINT} (or set MURMUR_MODEL)",
            options.model.display()
        );
    }
    println!("model            {}", options.model.display());
    println!(
        "threads {}, {} tokens per round, {} rounds after {} warm-up, repeat penalty {}, \
         OMP_WAIT_POLICY={}",
        options.threads,
        options.tokens,
        options.rounds,
        options.warmup,
        options.repeat_penalty,
        std::env::var("OMP_WAIT_POLICY").unwrap_or_default()
    );
    println!("rss at start     {}", super::memory_line());
    println!("load average     {}", super::load_average());
    let threads = i32::try_from(options.threads).context("too many threads")?;

    // llama-cpp-2 allows one live `LlamaBackend` per process and the provider keeps its own
    // private. The handle is only a proof of initialisation (`llama_backend_free` frees the
    // quantisation tables, nothing a loaded model or context uses), so the bare engine is
    // set up first and its handle released before the provider initialises the backend.
    let backend = if options.only == Only::Provider {
        None
    } else {
        let mut backend = LlamaBackend::init().context("cannot start llama.cpp")?;
        backend.void_logs();
        Some(backend)
    };
    let bare_model = match &backend {
        Some(backend) => {
            let started = Instant::now();
            let model =
                LlamaModel::load_from_file(backend, &options.model, &LlamaModelParams::default())
                    .with_context(|| format!("cannot load {}", options.model.display()))?;
            Some((model, started.elapsed()))
        }
        None => None,
    };
    let mut bare = match (&backend, &bare_model) {
        (Some(backend), Some((model, load))) => {
            let started = Instant::now();
            let n_ctx = model.n_ctx_train().clamp(256, MAX_DEFAULT_CONTEXT);
            let params = LlamaContextParams::default()
                .with_n_ctx(NonZeroU32::new(n_ctx))
                .with_n_batch(BATCH)
                .with_n_threads(threads)
                .with_n_threads_batch(threads);
            let ctx = model
                .new_context(backend, params)
                .context("cannot create a llama.cpp context")?;
            let template = model
                .chat_template(None)
                .context("the model has no chat template")?;
            println!(
                "bare load        {:.3} s model + {:.3} s context ({n_ctx} tokens of context); rss {}",
                load.as_secs_f64(),
                started.elapsed().as_secs_f64(),
                super::memory_line()
            );
            Some(BareEngine {
                model,
                ctx,
                template,
                repeat_penalty: options.repeat_penalty,
            })
        }
        _ => None,
    };
    drop(backend);

    let provider = if options.only == Only::Bare {
        None
    } else {
        let started = Instant::now();
        let model = LocalModel::load(&LocalSettings {
            path: options.model.clone(),
            context_length: None,
            threads: options.threads,
            sampling: Sampling {
                temperature: 0.0,
                repeat_penalty: options.repeat_penalty,
                max_tokens: options.tokens,
                ..Sampling::default()
            },
            // Each round's input starts differently (below), so nothing but the template's
            // first tokens is reused, as for a new conversation.
            kv_cache_reuse: true,
        })
        .context("the local provider cannot load the model")?;
        println!(
            "provider load    {:.3} s model + context + worker ({} tokens of context); rss {}",
            started.elapsed().as_secs_f64(),
            model.info().context_length,
            super::memory_line()
        );
        if let Some(bare) = &bare {
            if bare.ctx.n_ctx() != model.info().context_length {
                bail!(
                    "context lengths differ: bare {} tokens, provider {}",
                    bare.ctx.n_ctx(),
                    model.info().context_length
                );
            }
        }
        Some(model)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .context("cannot start the tokio runtime")?;

    let mut bare_runs = Vec::new();
    let mut provider_runs = Vec::new();
    println!();
    println!(
        "{:<8} {:<9} {:>7} {:>9} {:>10} {:>9} {:>7} {:>9} {:>10} {:>9}",
        "round",
        "engine",
        "prompt",
        "prompt s",
        "prompt t/s",
        "cpu ms/t",
        "gen",
        "gen s",
        "gen t/s",
        "cpu ms/t"
    );
    for round in 0..options.warmup + options.rounds {
        let warm = round < options.warmup;
        // A different first line every round: the provider keeps its KV cache between calls
        // and would otherwise skip the whole prompt from the second round on.
        let input = Arc::new(ModelInput {
            session: format!("bench-{round}"),
            turn: 1,
            step: 1,
            instructions: format!("Session {round}. {INSTRUCTIONS}"),
            messages: vec![ContextMessage::user(STORY)].into(),
        });
        let label = if warm {
            "warm-up".to_string()
        } else {
            (round - options.warmup + 1).to_string()
        };
        // Alternate which engine goes first, so slow drift of the machine affects both.
        let bare_first = round % 2 == 0;
        let mut results: Vec<(&str, Run)> = Vec::new();
        for turn in 0..2 {
            let use_bare = (turn == 0) == bare_first;
            if use_bare {
                if let Some(bare) = bare.as_mut() {
                    results.push(("bare", bare.generate(&input, options.tokens)?));
                }
            } else if let Some(provider) = &provider {
                results.push((
                    "provider",
                    provider_generate(&runtime, provider, &input, options.tokens)?,
                ));
            }
        }
        if let [(_, a), (_, b)] = results.as_slice() {
            if a.text != b.text {
                println!("         note: the two engines wrote different text this round");
            }
        }
        for (engine, run) in results {
            print_run(&label, engine, &run);
            if !warm {
                if engine == "bare" {
                    bare_runs.push(run);
                } else {
                    provider_runs.push(run);
                }
            }
        }
    }

    println!();
    println!(
        "{:<17} {:>12} {:>14} {:>12} {:>14}",
        "", "prompt tok/s", "prompt cpu ms/t", "gen tok/s", "gen cpu ms/t"
    );
    for (name, runs) in [("bare", &bare_runs), ("provider", &provider_runs)] {
        if runs.is_empty() {
            continue;
        }
        println!(
            "median {:<10} {:>12.1} {:>14.2} {:>12.1} {:>14.2}",
            name,
            super::median(runs.iter().map(Run::prompt_rate)),
            super::median(runs.iter().map(Run::prompt_cpu_per_token)),
            super::median(runs.iter().map(Run::generation_rate)),
            super::median(runs.iter().map(Run::generation_cpu_per_token)),
        );
        println!(
            "best   {:<10} {:>12.1} {:>14.2} {:>12.1} {:>14.2}",
            name,
            best(runs.iter().map(Run::prompt_rate), true),
            best(runs.iter().map(Run::prompt_cpu_per_token), false),
            best(runs.iter().map(Run::generation_rate), true),
            best(runs.iter().map(Run::generation_cpu_per_token), false),
        );
    }
    if !bare_runs.is_empty() && !provider_runs.is_empty() {
        // Tokens per second, provider over bare; CPU per token, bare over provider: above
        // 100% the provider does better either way.
        let ratio = |f: fn(&Run) -> f64, higher_is_better: bool| {
            let relative = |p: f64, b: f64| if higher_is_better { p / b } else { b / p };
            let of_medians = relative(
                super::median(provider_runs.iter().map(f)),
                super::median(bare_runs.iter().map(f)),
            );
            let paired = super::median(
                provider_runs
                    .iter()
                    .zip(&bare_runs)
                    .map(|(p, b)| relative(f(p), f(b))),
            );
            let of_bests = relative(
                best(provider_runs.iter().map(f), higher_is_better),
                best(bare_runs.iter().map(f), higher_is_better),
            );
            format!(
                "{:>10.1}% {:>10.1}% {:>10.1}%",
                of_medians * 100.0,
                paired * 100.0,
                of_bests * 100.0
            )
        };
        println!();
        println!(
            "provider vs bare            {:>11} {:>11} {:>11}   (over 100%: provider better)",
            "medians", "per round", "bests"
        );
        println!(
            "prompt tok/s                {}",
            ratio(Run::prompt_rate, true)
        );
        println!(
            "generation tok/s            {}",
            ratio(Run::generation_rate, true)
        );
        println!(
            "prompt cpu per token        {}",
            ratio(Run::prompt_cpu_per_token, false)
        );
        println!(
            "generation cpu per token    {}",
            ratio(Run::generation_cpu_per_token, false)
        );
    }
    println!("memory at end    {}", super::memory_line());
    println!("load average     {}", super::load_average());
    Ok(())
}

/// The minimal loop: template, tokenize, decode the prompt in one batch, then sample and
/// decode one token at a time, exactly the work the provider does for a fresh prompt.
struct BareEngine<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    template: LlamaChatTemplate,
    repeat_penalty: f32,
}

impl BareEngine<'_> {
    fn generate(&mut self, input: &ModelInput, max_tokens: u32) -> anyhow::Result<Run> {
        self.ctx.clear_kv_cache();
        let started = Stamp::now()?;
        let messages = chat_messages(input)
            .into_iter()
            .map(|(role, content)| LlamaChatMessage::new(role, content))
            .collect::<Result<Vec<_>, _>>()
            .context("message cannot be passed to the model")?;
        let prompt = self
            .model
            .apply_chat_template(&self.template, &messages, true)
            .context("cannot apply the chat template")?;
        let vocab = self.model.vocab();
        let tokens = vocab.tokenize(prompt.as_bytes(), true, true);
        if tokens.len() > self.ctx.n_batch() as usize {
            bail!(
                "the prompt is {} tokens, more than one batch of {}",
                tokens.len(),
                self.ctx.n_batch()
            );
        }
        let mut batch = LlamaBatch::new(tokens.len(), 1);
        let last = tokens.len() - 1;
        for (i, token) in tokens.iter().enumerate() {
            batch.add(*token, i32::try_from(i)?, &[0], i == last)?;
        }
        self.ctx
            .decode(&mut batch)
            .context("llama.cpp could not evaluate the prompt")?;

        let mut chain = Vec::new();
        if (self.repeat_penalty - 1.0).abs() > f32::EPSILON {
            // The provider's penalty window.
            chain.push(LlamaSampler::penalties(
                self.model.n_vocab(),
                64,
                self.repeat_penalty,
                0.0,
                0.0,
            ));
        }
        chain.push(LlamaSampler::greedy());
        let mut sampler = LlamaSampler::chain_simple(chain);
        let mut bytes = Vec::new();
        let mut first = None;
        let mut last_token_at = started.at;
        let mut generated = 0usize;
        let mut pos = i32::try_from(tokens.len())?;
        let mut one = LlamaBatch::new(1, 1);
        while generated < max_tokens as usize {
            let token = sampler.sample(&self.ctx, -1);
            if vocab.is_eog(token) {
                break;
            }
            generated += 1;
            bytes.extend(vocab.token_to_piece(token, false, None));
            last_token_at = Instant::now();
            if first.is_none() {
                first = Some(Stamp {
                    at: last_token_at,
                    cpu: process_cpu()?,
                });
            }
            // Like the provider, decode every sampled token, the last one included.
            one.clear();
            one.add(token, pos, &[0], true)?;
            self.ctx
                .decode(&mut one)
                .context("llama.cpp could not evaluate a generated token")?;
            pos += 1;
        }
        let finished = Stamp::now()?;
        let first = first.ok_or_else(|| anyhow!("the model generated no token"))?;
        Ok(Run::new(
            tokens.len(),
            generated,
            started,
            first,
            last_token_at,
            finished,
            String::from_utf8_lossy(&bytes).into_owned(),
        ))
    }
}

/// One call to the provider, timed from the call to the chunks as a consumer receives them.
fn provider_generate(
    runtime: &tokio::runtime::Runtime,
    provider: &LocalModel,
    input: &Arc<ModelInput>,
    max_tokens: u32,
) -> anyhow::Result<Run> {
    let (chunks, mut received) = tokio::sync::mpsc::unbounded_channel();
    let tools: Arc<[ToolSpec]> = Arc::new([]);
    let request = ModelRequest::new(input.clone(), tools, chunks);
    let options = CallOptions {
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        grammar: None,
    };
    let started = Stamp::now()?;
    let call = provider.call_with(request, options);
    let (reply, (first, last_chunk_at, chunks)) = runtime.block_on(async {
        let collect = async {
            let mut first = None;
            let mut last_chunk_at = None;
            let mut chunks = 0u64;
            while received.recv().await.is_some() {
                let now = Instant::now();
                if first.is_none() {
                    first = Some(process_cpu().map(|cpu| Stamp { at: now, cpu }));
                }
                last_chunk_at = Some(now);
                chunks += 1;
            }
            (first, last_chunk_at, chunks)
        };
        tokio::join!(call, collect)
    });
    let finished = Stamp::now()?;
    let reply = reply.context("the provider call failed")?;
    let (Some(first), Some(last_chunk_at)) = (first, last_chunk_at) else {
        bail!("the provider streamed no text");
    };
    if chunks != reply.usage.completion_tokens {
        println!(
            "         note: {chunks} chunks for {} tokens; rates count tokens",
            reply.usage.completion_tokens
        );
    }
    Ok(Run::new(
        usize::try_from(reply.usage.prompt_evaluated)?,
        usize::try_from(reply.usage.completion_tokens)?,
        started,
        first?,
        last_chunk_at,
        finished,
        reply.text,
    ))
}

fn print_run(round: &str, engine: &str, run: &Run) {
    println!(
        "{:<8} {:<9} {:>7} {:>9.3} {:>10.1} {:>9.2} {:>7} {:>9.3} {:>10.1} {:>9.2}",
        round,
        engine,
        run.prompt_tokens,
        run.prompt_time.as_secs_f64(),
        run.prompt_rate(),
        run.prompt_cpu_per_token(),
        run.generated,
        run.generation_time.as_secs_f64(),
        run.generation_rate(),
        run.generation_cpu_per_token()
    );
}

/// The best value of a series: the highest rate or the lowest cost. On a shared machine
/// other work only ever slows a round down, so the best round is the least disturbed one.
fn best(values: impl Iterator<Item = f64>, highest: bool) -> f64 {
    values
        .filter(|v| v.is_finite())
        .reduce(|a, b| if highest { a.max(b) } else { a.min(b) })
        .unwrap_or(f64::NAN)
}

/// The options from the environment variables and then `args` (a `cargo bench` command
/// line).
pub fn parse_options(args: impl Iterator<Item = OsString>) -> anyhow::Result<Options> {
    let env_num = |name: &str, default: u64| -> anyhow::Result<u64> {
        match std::env::var(name) {
            Ok(v) => v
                .trim()
                .parse()
                .with_context(|| format!("{name}={v} is not a whole number")),
            Err(_) => Ok(default),
        }
    };
    let mut options = Options {
        model: std::env::var_os("MURMUR_MODEL").map_or_else(default_model, PathBuf::from),
        rounds: usize::try_from(env_num("MURMUR_BENCH_ROUNDS", 5)?)?,
        warmup: usize::try_from(env_num("MURMUR_BENCH_WARMUP", 1)?)?,
        tokens: u32::try_from(env_num("MURMUR_BENCH_TOKENS", 128)?)?,
        threads: u32::try_from(env_num("MURMUR_BENCH_THREADS", 2)?)?,
        repeat_penalty: match std::env::var("MURMUR_BENCH_REPEAT_PENALTY") {
            Ok(v) => v
                .trim()
                .parse()
                .with_context(|| format!("MURMUR_BENCH_REPEAT_PENALTY={v} is not a number"))?,
            Err(_) => 1.0,
        },
        only: Only::Both,
    };
    let mut args = args.map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match arg.as_str() {
            // Passed by `cargo bench` to every bench target.
            "--bench" => {}
            "--rounds" => options.rounds = value("--rounds")?.parse().context("--rounds")?,
            "--warmup" => options.warmup = value("--warmup")?.parse().context("--warmup")?,
            "--tokens" => options.tokens = value("--tokens")?.parse().context("--tokens")?,
            "--threads" => options.threads = value("--threads")?.parse().context("--threads")?,
            "--repeat-penalty" => {
                options.repeat_penalty = value("--repeat-penalty")?
                    .parse()
                    .context("--repeat-penalty")?;
            }
            "--only" => {
                options.only = match value("--only")?.as_str() {
                    "bare" => Only::Bare,
                    "provider" => Only::Provider,
                    other => bail!("--only takes `bare` or `provider`, not `{other}`"),
                }
            }
            other => bail!(
                "unknown argument `{other}`; options: --rounds N --warmup N --tokens N \
                 --threads N --repeat-penalty X --only bare|provider"
            ),
        }
    }
    if options.rounds == 0 || options.tokens < 2 || options.threads == 0 {
        bail!("--rounds and --threads must be at least 1 and --tokens at least 2");
    }
    Ok(options)
}

/// CPU time of the whole process, every thread included.
fn process_cpu() -> anyhow::Result<Duration> {
    Ok(super::cpu_time())
}

/// `models/SmolLM2-135M-Instruct.Q4_1.gguf` in the working folder, else in the source tree
/// this program was built from.
fn default_model() -> PathBuf {
    let here = crate::model::local::default_model_path();
    if here.is_file() {
        return here;
    }
    let tree = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(&here);
    if tree.is_file() {
        tree
    } else {
        here
    }
}

impl Options {
    /// The defaults, with the environment variables applied.
    pub fn defaults() -> anyhow::Result<Options> {
        parse_options(std::iter::empty())
    }
}
