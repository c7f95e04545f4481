//! Memory per idle session.
//!
//! One host with the four analyzers of the `turns` scenario opens `--sessions` (10,000)
//! sessions; each has one turn (so it holds a history, an analyzer run has finished and a
//! note waits in its queue) and then stays open and idle. The resident memory the process
//! gained, divided by the sessions, is what one idle session costs; the size of the
//! histories themselves (each message's struct and text) is reported apart, as the target
//! allows for it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{Host, Options, Scenario};
use crate::events::{Observer, Stats, TurnOutcome};
use crate::model::ContextMessage;

/// Bytes a history holds: the message structs and the heap text they own.
pub fn history_bytes(history: &[ContextMessage]) -> usize {
    history
        .iter()
        .map(|m| {
            std::mem::size_of::<ContextMessage>()
                + m.content.capacity()
                + m.analyzer.as_ref().map_or(0, String::capacity)
                + m.tool_name.as_ref().map_or(0, String::capacity)
                + m.tool_call_id.as_ref().map_or(0, String::capacity)
                + m.tool_calls.len() * std::mem::size_of::<crate::model::ToolCall>()
        })
        .sum()
}

/// The scenario.
pub fn run(options: &Options, library: &std::path::Path) -> anyhow::Result<()> {
    let n = options.sessions;
    if n == 0 {
        bail!("--sessions must be at least 1");
    }
    let analyzers = super::turns::four_analyzers("\"turn_complete\"", 0);
    // One reply for the warm-up session and one for each session's turn.
    let mut host = Host::new(library, &analyzers, n + 1, &super::reply_text(50), None)?;
    let stats = Arc::new(Stats::default());
    let tokio = super::tokio_runtime()?;
    let observers: Vec<Arc<dyn Observer>> = vec![stats.clone()];
    let result = tokio.block_on(async {
        let runtime = host.runtime(observers)?;
        let turn = |session: crate::session::Session| async move {
            let end = session
                .send("When did the Halden line open?")
                .wait()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if end.outcome != TurnOutcome::Completed {
                bail!("a turn ended {:?}: {:?}", end.outcome, end.error);
            }
            Ok(session)
        };
        // Warm up: threads, pools and the analyzers' first run exist before measuring.
        let warm = turn(runtime.open_session("warm-up")).await?;
        settle(&stats, 4, Duration::from_secs(10)).await;
        let before = super::status_kb("VmRSS").unwrap_or(0);
        let started = Instant::now();
        let mut sessions = Vec::with_capacity(n);
        for i in 0..n {
            sessions.push(turn(runtime.open_session(format!("idle-{i}"))).await?);
        }
        let settled = settle(&stats, 4 * (n as u64 + 1), Duration::from_secs(30)).await;
        let opened = started.elapsed();
        let after = super::status_kb("VmRSS").unwrap_or(0);
        let mut history = 0usize;
        for s in &sessions {
            let h = s.history().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            history += history_bytes(&h);
        }
        for s in sessions.iter().chain([&warm]) {
            s.close().await;
        }
        runtime.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok((before, after, history, opened, settled))
    });
    tokio.shutdown_timeout(Duration::from_secs(1));
    drop(host);
    let (before, after, history, opened, settled) = result?;
    let per_session = after.saturating_sub(before) as f64 * 1024.0 / n as f64;
    let history_per_session = history as f64 / n as f64;
    println!(
        "{n} sessions with one turn each and four analyzers, opened in {:.2} s; {} analyzer runs{}",
        opened.as_secs_f64(),
        stats.runs.load(Ordering::Relaxed),
        if settled {
            ""
        } else {
            " (not all had finished)"
        }
    );
    println!(
        "resident memory  {before} kB before, {after} kB after: {:.1} KB per session",
        per_session / 1024.0
    );
    println!(
        "of which history {:.1} KB per session (2 messages); the host's own {:.1} KB per session (target ≤ 20 KB)",
        history_per_session / 1024.0,
        (per_session - history_per_session) / 1024.0
    );
    println!(
        "reproduce        {}",
        options.command(Scenario::Sessions, &[("sessions", n.to_string())])
    );
    Ok(())
}

/// Waits until `runs` analyzer runs (or coalesced hooks) have ended, or `limit` passed;
/// whether they all did.
async fn settle(stats: &Stats, runs: u64, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        let done = stats.runs.load(Ordering::Relaxed) + stats.coalesced.load(Ordering::Relaxed);
        if done >= runs {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
