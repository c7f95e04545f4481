//! Load test: `murmur serve` with the four analyzers Murmur ships and the scripted model,
//! driven over loopback by 1,000 concurrent sessions for 60 seconds.
//!
//! ```text
//! cargo bench -p murmur --bench load [-- --sessions N --seconds S --store sqlite|memory]
//! ```
//!
//! It builds the release plugins, writes a config in a temporary folder (the four analyzers
//! on `examples/kb`, lexical search, the sessions in SQLite unless `--store memory`) and a
//! model script, starts the release `murmur serve`, opens the sessions, and has each send
//! the questions of `examples/eval/rag.jsonl` one after another, reading every answer's
//! server-sent events to `turn_complete`, with no pause between turns, until the time is up.
//! After a settle pause it prints turns per second, the p50/p99/max latency of a turn (from
//! sending the message to its `turn_complete`), errors (must be 0), the injections the host
//! enqueued against those delivered, superseded, stale or still queued (they must add up),
//! and the host's peak resident memory and CPU time. Client and host share the machine.

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;

struct Args {
    sessions: usize,
    seconds: u64,
    store: String,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        sessions: 1000,
        seconds: 60,
        store: "sqlite".into(),
    };
    let mut it = std::env::args().skip(1).filter(|s| s != "--bench");
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sessions" => a.sessions = value.parse().context("--sessions")?,
            "--seconds" => a.seconds = value.parse().context("--seconds")?,
            "--store" if value == "sqlite" || value == "memory" => a.store = value,
            _ => bail!("unknown argument {flag} {value}; use --sessions N --seconds S --store sqlite|memory"),
        }
    }
    Ok(a)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Builds the release plugins and returns a folder that holds them.
fn plugins() -> anyhow::Result<tempfile::TempDir> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("load: building the release plugins...");
    let status = std::process::Command::new(cargo)
        .args(["build", "--release"])
        .args(["-p", "murmur-rag", "-p", "murmur-moderation"])
        .args(["-p", "murmur-fact-check", "-p", "murmur-self-review"])
        .current_dir(root())
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build --release of the plugins failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let dir = tempfile::Builder::new()
        .prefix("murmur-load-plugins-")
        .tempdir()?;
    for lib in [
        "murmur_rag",
        "murmur_moderation",
        "murmur_fact_check",
        "murmur_self_review",
    ] {
        let name = format!("lib{lib}.so");
        std::fs::copy(target.join("release").join(&name), dir.path().join(&name))
            .with_context(|| format!("copy {name}"))?;
    }
    Ok(dir)
}

/// The questions of the RAG labeled set.
fn questions() -> anyhow::Result<Vec<String>> {
    let path = root().join("examples/eval/rag.jsonl");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let out: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["user"].as_str().map(str::to_string))
        .collect();
    if out.is_empty() {
        bail!("{}: no questions", path.display());
    }
    Ok(out)
}

async fn post_json(
    http: &reqwest::Client,
    url: String,
    body: &Value,
) -> reqwest::Result<reqwest::Response> {
    http.post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
}

async fn get_json(http: &reqwest::Client, url: String) -> anyhow::Result<Value> {
    let bytes = http.get(&url).send().await?.bytes().await?;
    serde_json::from_slice(&bytes).with_context(|| format!("{url}: not JSON"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One session's loop: a turn after another until `until`.
async fn session(
    http: reqwest::Client,
    base: String,
    id: String,
    questions: Arc<Vec<String>>,
    offset: usize,
    until: Instant,
) -> (Vec<Duration>, Vec<String>) {
    let (mut latencies, mut errors) = (Vec::new(), Vec::new());
    let mut k = offset;
    while Instant::now() < until {
        let content = &questions[k % questions.len()];
        k += 1;
        let started = Instant::now();
        let sent = post_json(
            &http,
            format!("{base}/v1/sessions/{id}/messages"),
            &json!({ "content": content }),
        )
        .await;
        let response = match sent {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                errors.push(format!("{id}: status {}", r.status()));
                continue;
            }
            Err(e) => {
                errors.push(format!("{id}: {e}"));
                continue;
            }
        };
        let mut events = eventsource_stream::EventStream::new(response.bytes_stream());
        let mut end = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(e) if e.event == "turn_complete" => {
                    end = serde_json::from_str::<Value>(&e.data).ok();
                }
                Ok(_) => {}
                Err(e) => {
                    errors.push(format!("{id}: stream: {e}"));
                    break;
                }
            }
        }
        match end {
            Some(v) if v["outcome"] == "completed" => latencies.push(started.elapsed()),
            Some(v) => errors.push(format!("{id}: turn ended {v}")),
            None => errors.push(format!("{id}: no turn_complete")),
        }
    }
    (latencies, errors)
}

fn proc_status(pid: u32, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// User plus system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

async fn metric(http: &reqwest::Client, base: &str, line: &str) -> anyhow::Result<u64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0) as u64)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("load: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<bool> {
    let args = args()?;
    let plugins = plugins()?;
    let questions = Arc::new(questions()?);
    let dir = tempfile::Builder::new().prefix("murmur-load-").tempdir()?;
    let replies: String = (0..400_000)
        .map(|i| {
            let text = match i % 4 {
                0 => "The Halden line opened in 1897 and runs 42 km along the coast.",
                1 => "A single ticket from Port Avalon Central to Halden costs 7.40 crowns.",
                2 => "Bicycles travel free outside the morning peak; book a space online.",
                _ => "Seniors over 65 get half-price tickets on every Northwind Rail line.",
            };
            format!("{}\n", json!({ "text": text }))
        })
        .collect();
    std::fs::write(dir.path().join("replies.jsonl"), replies)?;
    let store = if args.store == "memory" {
        "[store]\nkind = \"memory\"\n".to_string()
    } else {
        "[store]\npath = \"sessions.db\"\n".to_string()
    };
    let config = format!(
        "plugins_dir = {plugins:?}\nsystem_prompt = \"You are the assistant of Northwind Rail.\"\n\n\
         [model]\nprovider = \"scripted\"\nscript = \"replies.jsonl\"\nchunk_chars = 16\n\n\
         [knowledge]\npath = {kb:?}\nindex = \"index\"\n\n\
         [server]\nmax_sessions = {max}\n\n{store}\n\
         [[analyzer]]\nname = \"rag\"\nhooks = [\"turn_start\"]\n\n\
         [[analyzer]]\nname = \"moderation\"\n\n\
         [[analyzer]]\nname = \"fact-check\"\n\n\
         [[analyzer]]\nname = \"self-review\"\nttl_turns = 1\n",
        plugins = plugins.path().display().to_string(),
        kb = root().join("examples/kb").display().to_string(),
        max = args.sessions + 16,
    );
    std::fs::write(dir.path().join("murmur.toml"), config)?;

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async move {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_murmur"))
            .args(["serve", "--config", "murmur.toml", "--listen", "127.0.0.1:0"])
            .current_dir(dir.path())
            .env("MURMUR_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start murmur serve")?;
        let pid = child.id().context("the server's pid")?;
        let stderr = child.stderr.take().context("stderr")?;
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let base = loop {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
                .await
                .context("murmur serve did not start listening")??
                .context("murmur serve exited before listening")?;
            eprintln!("load: server: {line}");
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap_or_default().to_string();
            }
        };
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("load: server: {line}");
            }
        });
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(args.sessions)
            .timeout(Duration::from_secs(300))
            .build()?;

        let mut ids = Vec::with_capacity(args.sessions);
        for _ in 0..args.sessions {
            let created = post_json(&http, format!("{base}/v1/sessions"), &json!({})).await?;
            let v: Value = serde_json::from_slice(&created.bytes().await?)?;
            ids.push(v["id"].as_str().context("a session id")?.to_string());
        }
        eprintln!(
            "load: {} sessions open; driving them for {} s...",
            ids.len(),
            args.seconds
        );
        let cpu_before = cpu_seconds(pid).unwrap_or(0.0);
        let started = Instant::now();
        let until = started + Duration::from_secs(args.seconds);
        let tasks: Vec<_> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                tokio::spawn(session(
                    http.clone(),
                    base.clone(),
                    id.clone(),
                    questions.clone(),
                    i * 7,
                    until,
                ))
            })
            .collect();
        let mut latencies = Vec::new();
        let mut errors = Vec::new();
        for t in tasks {
            let (l, e) = t.await?;
            latencies.extend(l);
            errors.extend(e);
        }
        let elapsed = started.elapsed();
        let cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu_before;
        // Analyzer work still running lands in the queues.
        tokio::time::sleep(Duration::from_secs(8)).await;

        let (mut queued, mut delivered_seen) = (0u64, 0u64);
        for id in &ids {
            let v = get_json(&http, format!("{base}/v1/sessions/{id}?include=injections")).await?;
            for i in v["injections"].as_array().into_iter().flatten() {
                match i["status"].as_str() {
                    Some("queued") => queued += 1,
                    Some("delivered") => delivered_seen += 1,
                    _ => {}
                }
            }
        }
        let fate = |f: &str| format!("murmur_injections_total{{fate=\"{f}\"}}");
        let enqueued = metric(&http, &base, &fate("enqueued")).await?;
        let delivered = metric(&http, &base, &fate("delivered")).await?;
        let superseded = metric(&http, &base, &fate("superseded")).await?;
        let stale = metric(&http, &base, &fate("stale")).await?;
        let runs_failed = metric(
            &http,
            &base,
            "murmur_analyzer_runs_total{analyzer=\"rag\",outcome=\"failed\"}",
        )
        .await?;
        let peak = proc_status(pid, "VmHWM:").unwrap_or_default();
        let _ = child.start_kill();

        latencies.sort();
        let turns = latencies.len();
        println!(
            "load: {} sessions, {:.1} s, store {}: {turns} turns, {:.1} turns/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; errors {}",
            ids.len(),
            elapsed.as_secs_f64(),
            args.store,
            turns as f64 / elapsed.as_secs_f64(),
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            percentile(&latencies, 1.0).as_secs_f64() * 1e3,
            errors.len(),
        );
        let accounted = delivered + superseded + stale + queued;
        println!(
            "load: injections enqueued {enqueued} = delivered {delivered} + superseded {superseded} + stale {stale} + still queued {queued} ({}); the transcripts show {delivered_seen} delivered",
            if accounted == enqueued { "they add up" } else { "THEY DO NOT ADD UP" },
        );
        println!(
            "load: host peak RSS {peak}; host CPU {cpu:.1} s in {:.1} s ({:.0}% of one core); rag runs failed {runs_failed}",
            elapsed.as_secs_f64(),
            100.0 * cpu / elapsed.as_secs_f64(),
        );
        for e in errors.iter().take(5) {
            println!("load: error: {e}");
        }
        anyhow::Ok(errors.is_empty() && accounted == enqueued && delivered_seen == delivered)
    })
}
