//! The critical path: does background analysis slow the reply?
//!
//! Two hosts in one process and one tokio runtime, each with one session on the scripted
//! model, which waits 20 ms before its first chunk (a model's time to first token) and then
//! streams 50 chunks. One host has four analyzers on `turn_start` and `turn_complete` that
//! each take 50 ms (sleeping, as an analyzer waiting on a model or a network does, and
//! polling cancellation every 5 ms); the other has none. The sessions take turns one after
//! the other with no think time, so the analyzers of one turn are still running while the
//! next reply streams. Latency runs from sending the message to the first and to the last
//! chunk reaching the host's observers (where `murmur serve` forwards them to the client).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::{median, percentile, Host, Options, Scenario};
use crate::events::{Observer, Stats, TurnOutcome};

/// Records when the first and the last chunk of the current turn arrived.
#[derive(Default)]
struct Chunks(Mutex<(Option<Instant>, Option<Instant>)>);

impl Observer for Chunks {
    fn chunk(&self, _session: &str, _turn: u64, _text: &str) {
        let now = Instant::now();
        if let Ok(mut c) = self.0.lock() {
            c.0.get_or_insert(now);
            c.1 = Some(now);
        }
    }
}

impl Chunks {
    fn take(&self) -> (Option<Instant>, Option<Instant>) {
        self.0
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

/// Latencies of one configuration, ms.
#[derive(Debug, Default)]
struct Latencies {
    first: Vec<f64>,
    last: Vec<f64>,
}

/// The scenario.
pub fn run(options: &Options, library: &std::path::Path) -> anyhow::Result<()> {
    let turns = options.latency_turns;
    let replies = usize::try_from(turns)?;
    let reply = super::reply_text(50);
    let analyzers = super::turns::four_analyzers("\"turn_start\", \"turn_complete\"", 50);
    let mut with = Host::new(library, &analyzers, replies, &reply, Some("20ms"))?;
    let mut without = Host::new(library, "", replies, &reply, Some("20ms"))?;
    let tokio = super::tokio_runtime()?;
    let chunks = [Arc::new(Chunks::default()), Arc::new(Chunks::default())];
    let stats = Arc::new(Stats::default());
    let result = tokio.block_on(async {
        let runtimes = [
            with.runtime(vec![chunks[0].clone(), stats.clone()])?,
            without.runtime(vec![chunks[1].clone()])?,
        ];
        let sessions = [
            runtimes[0].open_session("with"),
            runtimes[1].open_session("without"),
        ];
        let mut latencies = [Latencies::default(), Latencies::default()];
        for turn in 1..=turns {
            // Alternate which session goes first.
            let order: [usize; 2] = if turn % 2 == 1 { [0, 1] } else { [1, 0] };
            for which in order {
                let sent = Instant::now();
                let end = sessions[which]
                    .send(format!("Question {turn}: when did the Halden line open?"))
                    .wait()
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                if end.outcome != TurnOutcome::Completed {
                    bail!("turn {turn} ended {:?}: {:?}", end.outcome, end.error);
                }
                let (Some(first), Some(last)) = chunks[which].take() else {
                    bail!("turn {turn} streamed no chunk");
                };
                latencies[which]
                    .first
                    .push((first - sent).as_secs_f64() * 1e3);
                latencies[which]
                    .last
                    .push((last - sent).as_secs_f64() * 1e3);
            }
        }
        for (s, r) in sessions.iter().zip(&runtimes) {
            s.close().await;
            r.shutdown(Duration::from_secs(5)).await;
        }
        anyhow::Ok(latencies)
    });
    tokio.shutdown_timeout(Duration::from_secs(1));
    let latencies = result?;
    let runs = stats.runs.load(std::sync::atomic::Ordering::Relaxed);
    let coalesced = stats.coalesced.load(std::sync::atomic::Ordering::Relaxed);
    if runs == 0 {
        bail!("the four analyzers never ran");
    }
    println!(
        "two sessions, {turns} turns each, alternating; model: 20 ms to the first chunk, then 50 chunks"
    );
    println!("analyzer runs    {runs} (50 ms each), {coalesced} hooks coalesced into follow-ups");
    println!(
        "{:<34} {:>10} {:>10} {:>10} {:>10}",
        "latency, ms", "first p50", "first p99", "last p50", "last p99"
    );
    let [w, n] = &latencies;
    for (name, l) in [("four analyzers of 50 ms", w), ("no analyzers", n)] {
        println!(
            "{:<34} {:>10.3} {:>10.3} {:>10.3} {:>10.3}",
            name,
            median(l.first.iter().copied()),
            percentile(l.first.iter().copied(), 99.0),
            median(l.last.iter().copied()),
            percentile(l.last.iter().copied(), 99.0),
        );
    }
    let diff = |a: &[f64], b: &[f64]| {
        (median(a.iter().copied()) / median(b.iter().copied()) - 1.0) * 100.0
    };
    // Noise: the same comparison between the two halves of the configuration without
    // analyzers, turns paired by order.
    let half = n.first.len() / 2;
    let noise_first = diff(&n.first[..half], &n.first[half..]);
    let noise_last = diff(&n.last[..half], &n.last[half..]);
    println!(
        "difference       first token {:+.2}%, last token {:+.2}% (target: within noise, ≤ 1%)",
        diff(&w.first, &n.first),
        diff(&w.last, &n.last)
    );
    println!(
        "noise            first token {noise_first:+.2}%, last token {noise_last:+.2}% (first half of the turns without analyzers against the second)"
    );
    println!(
        "reproduce        {}",
        options.command(
            Scenario::CriticalPath,
            &[("latency-turns", turns.to_string())]
        )
    );
    Ok(())
}
