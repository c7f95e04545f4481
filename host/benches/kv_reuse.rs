//! Prompt tokens the local model evaluates per turn over a 10-turn conversation, with and
//! without KV cache reuse, on the real session runtime (turn loop, inject queue, local
//! provider). An analyzer leaves an instructions-lane note after every turn, so the table
//! also shows what `instructions_placement` does to the reusable prefix (SPEC S6).
//!
//! ```text
//! cargo bench -p murmur --bench kv_reuse
//! ```
//!
//! `MURMUR_MODEL` names the `.gguf` file (default `models/SmolLM2-135M-Instruct.Q4_1.gguf`).
//! Unless `OMP_WAIT_POLICY` is set, the benchmark runs itself again with `PASSIVE` (the OpenMP
//! runtime reads it at load).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use murmur::analyzer::{AnalyzerBackend, AnalyzerEntry, RunError, RunRequest};
use murmur::config::InstructionsPlacement;
use murmur::events::{EventKind, EventLog};
use murmur::model::local::{LocalModel, LocalSettings, Sampling, FETCH_HINT};
use murmur::model::{BoxFuture, ModelProvider};
use murmur::runtime::Runtime;
use murmur::session::compaction::CompactionSettings;
use murmur::session::runs::SlotSpec;
use murmur::session::SessionSettings;
use murmur_plugin_api::{Hook, Injection};

const QUESTIONS: [&str; 10] = [
    "What is the capital of France?",
    "And the capital of Germany?",
    "Which of the two cities is larger?",
    "Name a famous museum in Paris.",
    "What river flows through Berlin?",
    "What language is spoken in both countries' neighbour, Switzerland?",
    "Give me one word that describes Paris.",
    "What is the population of France, roughly?",
    "Which country has more people, France or Germany?",
    "Thank you. Summarise what we discussed in one sentence.",
];

/// Leaves one instructions-lane note after every turn.
struct Coach;

impl AnalyzerBackend for Coach {
    fn run(&self, request: RunRequest) -> BoxFuture<'static, Result<Vec<Injection>, RunError>> {
        let turn = request.turn;
        Box::pin(async move {
            Ok(vec![Injection::instructions(format!(
                "Coach note after turn {turn}: keep the next answer to one sentence."
            ))])
        })
    }
}

fn coach() -> AnalyzerEntry {
    AnalyzerEntry {
        name: "coach".into(),
        plugin: "coach".into(),
        version: "1".into(),
        slot: SlotSpec {
            hooks: vec![Hook::TurnComplete],
            enabled: true,
            every_n_turns: 1,
            defer_timeout: Duration::from_secs(5),
            health: Default::default(),
        },
        timeout: Duration::from_secs(30),
        ttl_turns: None,
        config_json: "{}".into(),
        model: None,
        quarantine_after: 0,
        backend: Arc::new(Coach),
    }
}

struct TurnFigures {
    prompt_tokens: u64,
    evaluated: u64,
    seconds: f64,
}

async fn conversation(
    model: Arc<dyn ModelProvider>,
    placement: InstructionsPlacement,
) -> anyhow::Result<Vec<TurnFigures>> {
    let settings = SessionSettings {
        system_prompt: "You are a helpful assistant. Answer briefly.".into(),
        max_steps: 1,
        steering: true,
        placement,
        compaction: CompactionSettings::default(),
    };
    let log = Arc::new(EventLog::default());
    let runtime = Runtime::builder(settings, model)
        .analyzer(coach())
        .observer(log.clone())
        .build();
    let session = runtime.open_session("bench");
    let mut seconds = Vec::new();
    for question in QUESTIONS {
        let started = Instant::now();
        let end = session.send(question).wait().await?;
        seconds.push(started.elapsed().as_secs_f64());
        if let Some(e) = end.error {
            return Err(anyhow!("turn {} failed: {e}", end.turn));
        }
        // Let the coach's note arrive before the next turn, as it would between two user
        // messages typed by a person.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    session.close().await;
    runtime.shutdown(Duration::from_secs(5)).await;
    let usage: Vec<(u64, u64)> = log
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ModelReplied { usage, .. } => {
                Some((usage.prompt_tokens, usage.prompt_evaluated))
            }
            _ => None,
        })
        .collect();
    if usage.len() != QUESTIONS.len() {
        return Err(anyhow!(
            "expected {} model replies, saw {}",
            QUESTIONS.len(),
            usage.len()
        ));
    }
    Ok(usage
        .into_iter()
        .zip(seconds)
        .map(|((prompt_tokens, evaluated), seconds)| TurnFigures {
            prompt_tokens,
            evaluated,
            seconds,
        })
        .collect())
}

fn load(path: &std::path::Path, reuse: bool) -> anyhow::Result<Arc<dyn ModelProvider>> {
    let model = LocalModel::load(&LocalSettings {
        path: path.to_path_buf(),
        context_length: Some(4096),
        threads: 2,
        sampling: Sampling {
            max_tokens: 48,
            ..Sampling::default()
        },
        kv_cache_reuse: reuse,
    })?;
    Ok(Arc::new(model))
}

fn main() -> ExitCode {
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        if let Ok(exe) = std::env::current_exe() {
            let error = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("OMP_WAIT_POLICY", "PASSIVE")
                .exec();
            eprintln!("cannot restart with OMP_WAIT_POLICY=PASSIVE: {error}");
        }
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv_reuse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; this benchmark takes no options.
    let path = std::env::var_os("MURMUR_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("models")
                .join("SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if !path.is_file() {
        return Err(anyhow!("{} not found; {FETCH_HINT}", path.display()));
    }
    let tokio = tokio::runtime::Runtime::new().context("start tokio")?;
    let runs = [
        (
            "reuse, before_last_user",
            true,
            InstructionsPlacement::BeforeLastUser,
        ),
        ("reuse, system", true, InstructionsPlacement::System),
        ("no reuse", false, InstructionsPlacement::BeforeLastUser),
    ];
    let mut results = Vec::new();
    for (label, reuse, placement) in runs {
        eprintln!("kv_reuse: 10 turns, {label} ...");
        let model = load(&path, reuse)?;
        results.push((label, tokio.block_on(conversation(model, placement))?));
    }
    println!(
        "prompt tokens evaluated per turn (of the prompt's total), {} turns, SmolLM2-135M Q4_1, 2 threads",
        QUESTIONS.len()
    );
    print!("{:>4} ", "turn");
    for (label, _) in &results {
        print!("| {label:>32} ");
    }
    println!();
    for turn in 0..QUESTIONS.len() {
        print!("{:>4} ", turn + 1);
        for (_, figures) in &results {
            let f = &figures[turn];
            print!(
                "| {:>5} of {:>5} in {:>6.2} s    ",
                f.evaluated, f.prompt_tokens, f.seconds
            );
        }
        println!();
    }
    print!("{:>4} ", "sum");
    for (_, figures) in &results {
        let evaluated: u64 = figures.iter().map(|f| f.evaluated).sum();
        let total: u64 = figures.iter().map(|f| f.prompt_tokens).sum();
        let seconds: f64 = figures.iter().map(|f| f.seconds).sum();
        print!("| {evaluated:>5} of {total:>5} in {seconds:>6.2} s    ");
    }
    println!();
    Ok(())
}
