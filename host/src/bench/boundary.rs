//! The plugin boundary's costs.
//!
//! - **ABI call against native call.** The `configurable` analyzer loaded from its `.so` and
//!   called as a run calls it (the host builds the `FfiContext` over the view's messages in
//!   ABI form, calls through the abi_stable vtable, converts the returned injections), against
//!   [`NativeNote`], the
//!   same analyzer's logic compiled into the host and called through a Rust trait object
//!   with the host's own types. Both do the same work: read and write the `runs` state,
//!   format a debug log line, format the note. Measured with a 1-message and a 20-message
//!   context, and for a run that returns early with nothing (the bare crossing).
//! - **The ABI form of a view**: the messages as `FfiMessage`s, built once per hook firing.
//! - **A whole run**: [`AnalyzerBackend::run`] on the plugin with a 20-message context, as a
//!   session starts it (a task on the blocking pool, awaited).
//! - **Loading a plugin**: [`loader::load_file`] (permission check, private copy, SHA-256,
//!   `dlopen`, abi_stable's layout check, manifest).
//! - **Draining the inject queue** of 100 instructions-lane notes at a boundary.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::anyhow;
use murmur_plugin_api::ffi::FfiAnalyzerBox;
use murmur_plugin_api::{Hook, Injection, Role};

use super::{median, per_call_ns, Options, Scenario};
use crate::analyzer::{AnalyzerBackend, AnalyzerView, CancelFlag, RunError, RunRequest};
use crate::model::ContextMessage;
use crate::plugins::bridge::{self, PluginAnalyzer};
use crate::plugins::loader;
use crate::session::queue::{InjectQueue, Lane, Provenance};
use crate::state::StateStore;

/// The analyzer's config for a run that leaves one note.
const NOTE_CONFIG: &str =
    r#"{"text": "{name}: a note about turn {turn}.", "key": "note", "label": "note"}"#;
/// The analyzer's config for a run that returns at once (it only acts on turn 0, which
/// never comes).
const EMPTY_CONFIG: &str = r#"{"turns": [0]}"#;

/// An analyzer compiled into the host: the [`NativeNote`] twin of the plugin.
pub trait NativeAnalyzer: Send + Sync {
    /// One run.
    fn analyze(&self, request: &RunRequest) -> Result<Vec<Injection>, RunError>;
}

/// What the `configurable` plugin does with the bench's two configs (one note, or an early
/// return), in the host.
#[derive(Debug)]
pub struct NativeNote {
    text: Option<String>,
}

impl NativeAnalyzer for NativeNote {
    fn analyze(&self, request: &RunRequest) -> Result<Vec<Injection>, RunError> {
        let Some(text) = &self.text else {
            return Ok(Vec::new());
        };
        let runs = request
            .state
            .get(&request.analyzer, &request.session, "runs")
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        request.state.put(
            &request.analyzer,
            &request.session,
            "runs",
            Some(runs.to_string()),
        );
        bridge::plugin_log(
            3,
            &request.analyzer,
            &request.session,
            &format!("run {runs} for turn {}", request.turn),
        );
        let text = text
            .replace("{name}", "note")
            .replace("{turn}", &request.turn.to_string());
        Ok(vec![Injection::new(Role::System, text).with_key("note")])
    }
}

/// Everything the boundary measurements use, set up once.
pub struct Fixture {
    library: std::path::PathBuf,
    note: FfiAnalyzerBox,
    empty: FfiAnalyzerBox,
    native_note: Box<dyn NativeAnalyzer>,
    native_empty: Box<dyn NativeAnalyzer>,
    plugin: PluginAnalyzer,
    /// A run request over a 1-message context.
    pub short: RunRequest,
    /// A run request over a 20-message context.
    pub long: RunRequest,
}

/// A run request about turn 10 over a view of `messages` messages of about 200 bytes.
pub fn request(messages: usize) -> RunRequest {
    let history: Vec<ContextMessage> = (0..messages)
        .map(|i| {
            let text = format!(
                "Message {i}: the Halden line opened on 2 September 1897 and runs along the east shore of the lake, with six stations between the two ends of the line."
            );
            if i % 2 == 0 {
                ContextMessage::user(text)
            } else {
                ContextMessage::assistant(text, Vec::new())
            }
        })
        .collect();
    let latest = |role: Role| {
        history
            .iter()
            .rev()
            .find(|m| m.role == role)
            .map(|m| m.content.clone())
    };
    let (user, reply) = (latest(Role::User), latest(Role::Assistant));
    RunRequest {
        session: "bench".into(),
        analyzer: "note".into(),
        hook: Hook::TurnComplete,
        turn: 10,
        step: 0,
        view: Arc::new(AnalyzerView::new(history.into(), user, reply)),
        config_json: NOTE_CONFIG.into(),
        deadline: SystemTime::now() + Duration::from_secs(3600),
        cancel: CancelFlag::default(),
        state: StateStore::default(),
        services: None,
        default_model: None,
        tokens: Arc::new(AtomicU64::new(0)),
    }
}

impl Fixture {
    /// Loads the plugin and makes its instances.
    pub fn new(library: &std::path::Path) -> anyhow::Result<Fixture> {
        let lib = loader::load_file(library, true)
            .map_err(|r| anyhow!("{}: {}", r.file.display(), r.reason))?;
        let make = |config: &str| -> anyhow::Result<FfiAnalyzerBox> {
            (lib.module.new_analyzer())("configurable".into(), config.into())
                .into_result()
                .map_err(|e| anyhow!("the configurable analyzer refused {config}: {}", e.message))
        };
        Ok(Fixture {
            library: library.to_path_buf(),
            note: make(NOTE_CONFIG)?,
            empty: make(EMPTY_CONFIG)?,
            native_note: Box::new(NativeNote {
                text: Some("{name}: a note about turn {turn}.".into()),
            }),
            native_empty: Box::new(NativeNote { text: None }),
            plugin: PluginAnalyzer::new(make(NOTE_CONFIG)?),
            short: request(1),
            long: request(20),
        })
    }

    /// One call of the plugin through the ABI, as a run makes it on its thread.
    pub fn abi(&self, note: bool, request: &RunRequest) -> Result<Vec<Injection>, RunError> {
        let instance = if note { &self.note } else { &self.empty };
        bridge::call_analyzer(instance, request)
    }

    /// The same call to the native twin.
    pub fn native(&self, note: bool, request: &RunRequest) -> Result<Vec<Injection>, RunError> {
        let analyzer = if note {
            &self.native_note
        } else {
            &self.native_empty
        };
        analyzer.analyze(request)
    }

    /// A whole run of the plugin, as a session starts it; call inside a multi-thread tokio
    /// runtime.
    pub async fn run(&self, request: &RunRequest) -> Result<Vec<Injection>, RunError> {
        self.plugin.run(request.clone()).await
    }

    /// Loads the library again (a new private copy, so a real `dlopen` each time).
    pub fn load(&self) -> anyhow::Result<loader::PluginLibrary> {
        loader::load_file(&self.library, true)
            .map_err(|r| anyhow!("{}: {}", r.file.display(), r.reason))
    }
}

/// A queue holding `n` instructions-lane notes from four analyzers, as a boundary finds it.
pub fn full_queue(n: usize) -> InjectQueue {
    let mut queue = InjectQueue::new();
    let names: [Arc<str>; 4] = [
        "note-1".into(),
        "note-2".into(),
        "note-3".into(),
        "note-4".into(),
    ];
    for i in 0..n {
        let provenance = Provenance {
            analyzer: names[i % 4].clone(),
            hook: Hook::TurnComplete,
            about_turn: 1,
            ttl_turns: None,
        };
        let injection = Injection::new(Role::System, format!("note {i}: a note about turn 1."));
        // Fixture input: every note has the system role, which the queue accepts.
        let _ = queue.enqueue(injection, provenance);
    }
    queue
}

/// Nanoseconds per drain of a queue of `n` notes, one value per batch of drains (the
/// filling is not timed).
pub fn drain_ns(n: usize, batches: usize) -> Vec<f64> {
    (0..batches)
        .map(|_| {
            let mut spent = Duration::ZERO;
            let rounds = 200;
            for _ in 0..rounds {
                let mut queue = full_queue(n);
                let started = Instant::now();
                let drained = queue.drain(Lane::Instructions);
                spent += started.elapsed();
                std::hint::black_box(drained);
            }
            spent.as_nanos() as f64 / f64::from(rounds)
        })
        .collect()
}

/// The scenario.
pub fn run(options: &Options, library: &std::path::Path) -> anyhow::Result<()> {
    let fixture = Fixture::new(library)?;
    let batches = 30;
    let check = |r: Result<Vec<Injection>, RunError>, want: usize| -> anyhow::Result<()> {
        let got = r.map_err(|e| anyhow!("a bench call failed: {e}"))?.len();
        anyhow::ensure!(
            got == want,
            "a bench call returned {got} injections, not {want}"
        );
        Ok(())
    };
    // Each path must do what it says before it is timed.
    for request in [&fixture.short, &fixture.long] {
        check(fixture.abi(true, request), 1)?;
        check(fixture.native(true, request), 1)?;
        check(fixture.abi(false, request), 0)?;
        check(fixture.native(false, request), 0)?;
    }
    println!("median of {batches} batches, ns per call");
    println!(
        "{:<46} {:>12} {:>12} {:>10}",
        "call", "plugin ABI", "native", "ABI costs"
    );
    for (what, note, request) in [
        ("early return, 1-message context", false, &fixture.short),
        ("early return, 20-message context", false, &fixture.long),
        ("one note, 1-message context", true, &fixture.short),
        ("one note, 20-message context", true, &fixture.long),
    ] {
        let abi = median(per_call_ns(batches, || {
            std::hint::black_box(fixture.abi(note, request)).ok();
        }));
        let native = median(per_call_ns(batches, || {
            std::hint::black_box(fixture.native(note, request)).ok();
        }));
        println!(
            "{what:<46} {abi:>12.0} {native:>12.0} {:>+9.0} ns",
            abi - native
        );
    }

    // The view's messages in ABI form are built once per hook firing and shared by its runs
    // (the calls above reuse them); what building them costs:
    for n in [20usize, 2000] {
        let view = request(n).view;
        let ns = median(per_call_ns(batches, || {
            std::hint::black_box(bridge::AbiMessages::of(&view.messages));
        }));
        println!(
            "{:<46} {:>12.2} µs (once per hook firing, shared by its runs)",
            format!("ABI form of a {n}-message view"),
            ns / 1e3
        );
    }

    let tokio = super::tokio_runtime()?;
    let run_us = tokio.block_on(async {
        let mut per_batch = Vec::with_capacity(batches);
        for _ in 0..batches {
            let started = Instant::now();
            for _ in 0..50 {
                let _ = std::hint::black_box(fixture.run(&fixture.long).await);
            }
            per_batch.push(started.elapsed().as_secs_f64() * 1e6 / 50.0);
        }
        median(per_batch)
    });
    tokio.shutdown_timeout(Duration::from_secs(1));
    println!(
        "{:<46} {run_us:>12.1} µs (spawn on the blocking pool, call, await)",
        "whole run, one note, 20-message context"
    );

    let first = Instant::now();
    fixture.load()?;
    let first = first.elapsed();
    let mut loads = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        fixture.load()?;
        loads.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let size = std::fs::metadata(library).map_or(0, |m| m.len());
    println!(
        "{:<46} {:>12.2} ms median of 10 ({:.2} ms the first time; {:.1} MB library)",
        "loading the plugin",
        median(loads),
        first.as_secs_f64() * 1e3,
        size as f64 / 1e6
    );
    let drain = median(drain_ns(100, batches));
    println!(
        "{:<46} {:>12.2} µs ({:.0} ns per note)",
        "draining 100 queued notes",
        drain / 1e3,
        drain / 100.0
    );
    println!(
        "reproduce        {}",
        options.command(Scenario::Boundary, &[])
    );
    Ok(())
}
