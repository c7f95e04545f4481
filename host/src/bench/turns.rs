//! Turn overhead and history growth.
//!
//! One session, `--turns` (1,000) sequential turns with no think time; the scripted model
//! replies 50 words in 50 stream chunks at once. Two configurations, run one after the other
//! `--rounds` times in alternating order, each in a fresh host and tokio runtime:
//!
//! - **four analyzers**: four `configurable` instances on `turn_complete` that take no time
//!   and leave one instructions-lane note each (with a supersede key, so a note that waits
//!   is replaced by the next);
//! - **no analyzers**.
//!
//! Per turn it reads the wall clock and the process's CPU time (every thread: the session
//! actor, the model task, the analyzers on the blocking pool) from sending the message to
//! the turn's end; background work of the previous turn's analyzers therefore counts in the
//! turn during which it runs, which is what a long session pays per turn. The totals run from
//! the first message to the session's close, which waits for the last runs.
//!
//! History growth compares the mean CPU per turn of turns 10-59 with that of the last 50
//! turns of the same session (windows of 50 turns, because the analyzers' background work
//! lands on whichever turn runs meanwhile).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{median, percentile, Host, Options, Scenario};
use crate::events::{Observer, Stats, TurnOutcome};

/// One session's measurements.
#[derive(Debug, Clone)]
pub struct Session {
    /// Wall time of each turn.
    pub latency: Vec<Duration>,
    /// Process CPU time during each turn.
    pub cpu: Vec<Duration>,
    /// From the first message to the close.
    pub wall: Duration,
    /// Process CPU time from the first message to the close.
    pub total_cpu: Duration,
    /// Analyzer runs and injections delivered.
    pub runs: u64,
    /// Injections delivered into model inputs.
    pub delivered: u64,
    /// Resident memory after the close, kB.
    pub rss_kb: u64,
}

impl Session {
    /// Turns per second.
    pub fn turns_per_second(&self) -> f64 {
        self.latency.len() as f64 / self.wall.as_secs_f64()
    }

    /// Mean CPU per turn, µs, the close included.
    pub fn cpu_per_turn_us(&self) -> f64 {
        self.total_cpu.as_secs_f64() * 1e6 / self.latency.len() as f64
    }

    /// Mean of a per-turn series over turns `from..=to` (1-based), in µs.
    pub fn window_us(series: &[Duration], from: usize, to: usize) -> f64 {
        let window: Vec<f64> = series
            .iter()
            .take(to)
            .skip(from - 1)
            .map(|d| d.as_secs_f64() * 1e6)
            .collect();
        window.iter().sum::<f64>() / window.len().max(1) as f64
    }
}

/// History growth: the first turn of the early window, and the windows' length.
const EARLY: usize = 10;
const WINDOW: usize = 50;

/// The four analyzers' tables.
pub fn four_analyzers(hooks: &str, delay_ms: u64) -> String {
    (1..=4)
        .map(|i| super::analyzer_table(&format!("note-{i}"), hooks, delay_ms))
        .collect()
}

/// Runs one session of `turns` turns on a fresh host with these analyzer tables.
pub fn session(library: &std::path::Path, analyzers: &str, turns: u64) -> anyhow::Result<Session> {
    let replies = usize::try_from(turns)?;
    let mut host = Host::new(library, analyzers, replies, &super::reply_text(50), None)?;
    let stats = Arc::new(Stats::default());
    let tokio = super::tokio_runtime()?;
    let observers: Vec<Arc<dyn Observer>> = vec![stats.clone()];
    let result = tokio.block_on(async {
        let runtime = host.runtime(observers)?;
        // From a task on the runtime, as an HTTP handler of `murmur serve` drives a session.
        tokio::spawn(drive(runtime, turns, stats))
            .await
            .map_err(|e| anyhow::anyhow!("the bench's session task ended abnormally: {e}"))?
    });
    tokio.shutdown_timeout(Duration::from_secs(1));
    drop(host);
    result
}

/// Sends `turns` messages one after the other and measures each turn.
async fn drive(runtime: crate::Runtime, turns: u64, stats: Arc<Stats>) -> anyhow::Result<Session> {
    let replies = usize::try_from(turns)?;
    let session = runtime.open_session("bench");
    let mut latency = Vec::with_capacity(replies);
    let mut cpu = Vec::with_capacity(replies);
    let started = Instant::now();
    let cpu_started = super::cpu_time();
    for turn in 1..=turns {
        let (t0, c0) = (Instant::now(), super::cpu_time());
        let end = session
            .send(format!("Question {turn}: when did the Halden line open?"))
            .wait()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        cpu.push(super::cpu_time().saturating_sub(c0));
        latency.push(t0.elapsed());
        if end.outcome != TurnOutcome::Completed {
            bail!("turn {turn} ended {:?}: {:?}", end.outcome, end.error);
        }
    }
    session.close().await;
    let wall = started.elapsed();
    let total_cpu = super::cpu_time().saturating_sub(cpu_started);
    runtime.shutdown(Duration::from_secs(5)).await;
    Ok(Session {
        latency,
        cpu,
        wall,
        total_cpu,
        runs: stats.runs.load(std::sync::atomic::Ordering::Relaxed),
        delivered: stats.delivered.load(std::sync::atomic::Ordering::Relaxed),
        rss_kb: super::status_kb("VmRSS").unwrap_or(0),
    })
}

/// The scenario.
pub fn run(options: &Options, library: &std::path::Path) -> anyhow::Result<()> {
    let turns = options.turns;
    let four = four_analyzers("\"turn_complete\"", 0);
    println!(
        "one session, {turns} turns, 50 chunks per reply, no think time; {} rounds per configuration",
        options.rounds
    );
    println!(
        "{:<6} {:<10} {:>9} {:>10} {:>10} {:>11} {:>9} {:>10} {:>11} {:>8}",
        "round",
        "analyzers",
        "turns/s",
        "mean ms",
        "p99 ms",
        "cpu µs/t",
        "runs",
        "delivered",
        "growth cpu",
        "rss MiB"
    );
    let late_from = usize::try_from(turns)? - (WINDOW - 1);
    let last = usize::try_from(turns)?;
    let mut results: [Vec<Session>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=options.rounds {
        // Alternate which configuration goes first, so drift of the machine hits both.
        let order: [usize; 2] = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        for which in order {
            let tables = if which == 0 { "" } else { four.as_str() };
            let s = session(library, tables, turns)?;
            if which == 1 && s.runs == 0 {
                bail!("the four analyzers never ran");
            }
            let growth = Session::window_us(&s.cpu, late_from, last)
                / Session::window_us(&s.cpu, EARLY, EARLY + WINDOW - 1);
            println!(
                "{:<6} {:<10} {:>9.0} {:>10.3} {:>10.3} {:>11.1} {:>9} {:>10} {:>10.2}× {:>8.1}",
                round,
                if which == 0 { "none" } else { "four" },
                s.turns_per_second(),
                mean_ms(&s.latency),
                percentile(s.latency.iter().map(|d| d.as_secs_f64() * 1e3), 99.0),
                s.cpu_per_turn_us(),
                s.runs,
                s.delivered,
                growth,
                s.rss_kb as f64 / 1024.0
            );
            results[which].push(s);
        }
    }
    println!();
    println!(
        "medians over rounds        {:>9} {:>10} {:>10} {:>11} {:>14} {:>14}",
        "turns/s", "mean ms", "p99 ms", "cpu µs/t", "cpu t10-59 µs", "cpu last-50 µs"
    );
    let mut cpu_per_turn = [0.0; 2];
    for (which, sessions) in results.iter().enumerate() {
        let m = |f: &dyn Fn(&Session) -> f64| median(sessions.iter().map(f));
        cpu_per_turn[which] = m(&Session::cpu_per_turn_us);
        println!(
            "{:<26} {:>9.0} {:>10.3} {:>10.3} {:>11.1} {:>14.1} {:>14.1}",
            if which == 0 {
                "no analyzers"
            } else {
                "four analyzers"
            },
            m(&Session::turns_per_second),
            m(&|s| mean_ms(&s.latency)),
            m(&|s| percentile(s.latency.iter().map(|d| d.as_secs_f64() * 1e3), 99.0)),
            cpu_per_turn[which],
            m(&|s| Session::window_us(&s.cpu, EARLY, EARLY + WINDOW - 1)),
            m(&|s| Session::window_us(&s.cpu, late_from, last)),
        );
    }
    let growth = |sessions: &[Session], series: fn(&Session) -> &[Duration]| {
        median(sessions.iter().map(|s| {
            Session::window_us(series(s), late_from, last)
                / Session::window_us(series(s), EARLY, EARLY + WINDOW - 1)
        }))
    };
    println!();
    println!(
        "cpu per turn with four analyzers      {:.1} µs (target < 50 µs), {:.1} µs more than with none",
        cpu_per_turn[1],
        cpu_per_turn[1] - cpu_per_turn[0]
    );
    // What one analyzer run adds: the rounds pair up (round r of each configuration).
    let per_run = median(results[1].iter().zip(&results[0]).map(|(four, none)| {
        (four.total_cpu.as_secs_f64() - none.total_cpu.as_secs_f64()) * 1e6
            / four.runs.max(1) as f64
    }));
    println!(
        "cpu per analyzer run                  {per_run:.1} µs (CPU with four analyzers minus without, over the runs; rounds paired)"
    );
    for (which, name) in [(1, "four analyzers"), (0, "no analyzers")] {
        println!(
            "history growth, {name:<15}       cpu per turn {:.2}×, wall per turn {:.2}× (turns {late_from}-{last} against 10-59; target ≤ 1.5×)",
            growth(&results[which], |s| &s.cpu),
            growth(&results[which], |s| &s.latency),
        );
    }
    println!("memory           {}", super::memory_line());
    println!(
        "reproduce        {}",
        options.command(
            Scenario::Turns,
            &[
                ("turns", turns.to_string()),
                ("rounds", options.rounds.to_string())
            ]
        )
    );
    Ok(())
}

fn mean_ms(v: &[Duration]) -> f64 {
    v.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / v.len().max(1) as f64
}
