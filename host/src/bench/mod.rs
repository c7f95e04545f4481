//! `murmur bench`: the host's benchmark suite, also run by `cargo bench -p murmur --bench
//! suite`. Each scenario prints its figures and the command that reproduces them;
//! docs/performance.md explains the method and keeps the results.
//!
//! - [`turns`]: one session, 1,000 sequential turns on the scripted model, with four
//!   analyzers and with none: turns/s, latency, CPU per turn, memory, and how a turn's cost
//!   grows with the history (turn 10 against turn 1,000);
//! - [`critical`]: reply latency (first and last token) with four slow analyzers and without;
//! - [`sessions`]: memory per idle session, 10,000 of them in one host;
//! - [`boundary`]: a call across the plugin ABI against a native trait call, a whole
//!   analyzer run, loading a plugin, draining the inject queue;
//! - [`local_model`]: the `local` provider's prompt and generation tokens/s against the bare
//!   engine.
//!
//! The host-side scenarios run the real host: the session runtime, the plugin loader and the
//! `configurable` test analyzer built as a `.so` (`murmur-testing-configurable`), driven by
//! the scripted model provider. Nothing is mocked; the model is scripted so that its own
//! work is next to nothing and what is measured is the host's.

pub mod boundary;
pub mod critical;
pub mod local_model;
pub mod sessions;
pub mod turns;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::config::Config;
use crate::events::Observer;
use crate::Runtime;

/// The plugin library the host-side scenarios load.
pub const FIXTURE_LIBRARY: &str = "libmurmur_testing_configurable.so";

/// How to build it.
pub const FIXTURE_HINT: &str =
    "build it with `cargo build --release -p murmur-testing-configurable` (or `scripts/install-plugins`)";

/// The scenarios, in the order `murmur bench` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Turn overhead and history growth: 1,000 turns with four analyzers and with none.
    Turns,
    /// Reply latency with four analyzers that each take 50 ms, against none.
    CriticalPath,
    /// Memory per idle session.
    Sessions,
    /// The plugin boundary: ABI against native calls, a run, a load, a queue drain.
    Boundary,
    /// The local model's prompt and generation tokens/s.
    LocalModel,
}

impl Scenario {
    /// Every scenario.
    pub const ALL: [Scenario; 5] = [
        Scenario::Turns,
        Scenario::CriticalPath,
        Scenario::Sessions,
        Scenario::Boundary,
        Scenario::LocalModel,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Turns => "turns",
            Scenario::CriticalPath => "critical-path",
            Scenario::Sessions => "sessions",
            Scenario::Boundary => "boundary",
            Scenario::LocalModel => "local-model",
        }
    }
}

/// What `murmur bench` was asked for.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Scenarios to run (default: all of them, in this order).
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Folder holding `libmurmur_testing_configurable.so` (default: next to the `murmur`
    /// executable, as `cargo build --release --workspace` leaves it).
    #[arg(long, value_name = "DIR")]
    pub plugins: Option<PathBuf>,
    /// turns: turns per session.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub turns: u64,
    /// turns: rounds of each configuration (medians are reported).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub rounds: usize,
    /// critical-path: turns per configuration.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub latency_turns: u64,
    /// sessions: idle sessions to open.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub sessions: usize,
    /// local-model: the `.gguf` file (default: the one `scripts/fetch-model` fetches).
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// local-model: measured rounds per engine.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub model_rounds: usize,
}

impl Options {
    /// The options' flags as a command line, for the "reproduce" lines.
    fn command(&self, scenario: Scenario, flags: &[(&str, String)]) -> String {
        let mut line = format!("murmur bench {}", scenario.name());
        for (flag, value) in flags {
            line.push_str(&format!(" --{flag} {value}"));
        }
        if let Some(dir) = &self.plugins {
            if scenario != Scenario::LocalModel {
                line.push_str(&format!(" --plugins {}", dir.display()));
            }
        }
        line
    }
}

/// Runs the scenarios asked for; a scenario that cannot run fails the whole command with
/// its reason.
pub fn run(options: &Options) -> anyhow::Result<()> {
    let scenarios: Vec<Scenario> = if options.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        options.scenarios.clone()
    };
    if options.turns < 110 || options.rounds == 0 || options.latency_turns == 0 {
        bail!("--turns must be at least 110, --rounds and --latency-turns at least 1");
    }
    println!("murmur bench {}", env!("CARGO_PKG_VERSION"));
    println!("machine          {}", machine());
    println!("load average     {}", load_average());
    let needs_plugin = scenarios.iter().any(|s| *s != Scenario::LocalModel);
    let library = if needs_plugin {
        Some(fixture_library(options.plugins.as_deref())?)
    } else {
        None
    };
    for scenario in scenarios {
        println!();
        println!("== {} ==", scenario.name());
        let library = library.as_deref().unwrap_or(Path::new(""));
        match scenario {
            Scenario::Turns => turns::run(options, library)?,
            Scenario::CriticalPath => critical::run(options, library)?,
            Scenario::Sessions => sessions::run(options, library)?,
            Scenario::Boundary => boundary::run(options, library)?,
            Scenario::LocalModel => {
                let mut o = local_model::Options::defaults()?;
                if let Some(model) = &options.model {
                    o.model = model.clone();
                }
                o.rounds = options.model_rounds;
                local_model::run(&o)?;
                let mut flags = vec![("model-rounds", options.model_rounds.to_string())];
                if let Some(model) = &options.model {
                    flags.push(("model", model.display().to_string()));
                }
                println!(
                    "reproduce        {}",
                    options.command(Scenario::LocalModel, &flags)
                );
            }
        }
    }
    println!();
    println!("load average     {}", load_average());
    Ok(())
}

/// Finds the fixture plugin: in `dir` if given, else next to the running executable or one
/// folder up (a `cargo bench` binary lives in `target/release/deps`).
pub fn fixture_library(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let candidates: Vec<PathBuf> = match dir {
        Some(dir) => vec![dir.to_path_buf()],
        None => {
            let exe = std::env::current_exe().context("cannot find the running executable")?;
            exe.ancestors()
                .skip(1)
                .take(2)
                .map(Path::to_path_buf)
                .collect()
        }
    };
    for dir in &candidates {
        let file = dir.join(FIXTURE_LIBRARY);
        if file.is_file() {
            return Ok(file);
        }
    }
    let looked: Vec<String> = candidates.iter().map(|d| d.display().to_string()).collect();
    bail!(
        "{FIXTURE_LIBRARY} is not in {}; {FIXTURE_HINT}, or pass --plugins DIR",
        looked.join(" or ")
    )
}

/// For `cargo bench`: builds the fixture plugin with the release profile (quick when it is
/// up to date) and returns the folder it is in.
pub fn build_fixture() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "-p", "murmur-testing-configurable"])
        .current_dir(&root)
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p murmur-testing-configurable failed");
    }
    Ok(std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("release"))
}

/// A host assembled from a config written to a temporary folder, with the fixture plugin
/// copied into its `plugins` folder and a model script of `replies` identical replies.
pub struct Host {
    /// The loaded config.
    pub config: Config,
    dir: tempfile::TempDir,
    prepared: Option<crate::cli::Prepared>,
}

/// One `[[analyzer]]` table of a bench config: the `configurable` plugin with this name,
/// these hooks and this work time, leaving one instructions-lane note per run under its
/// own supersede key.
pub fn analyzer_table(name: &str, hooks: &str, delay_ms: u64) -> String {
    format!(
        "[[analyzer]]\nname = \"{name}\"\nplugin = \"configurable\"\nhooks = [{hooks}]\n\
         [analyzer.config]\ndelay_ms = {delay_ms}\nlabel = \"{name}\"\n\
         text = \"{{name}}: a note about turn {{turn}}.\"\nkey = \"{name}\"\n\n"
    )
}

/// A reply of `words` four-letter words, each followed by a space: with `chunk_chars = 5`
/// the scripted model streams it as `words` chunks, one per word (a token, for the bench).
pub fn reply_text(words: usize) -> String {
    const WORDS: [&str; 8] = [
        "rail", "line", "open", "date", "town", "port", "year", "work",
    ];
    (0..words)
        .map(|i| format!("{} ", WORDS[i % WORDS.len()]))
        .collect()
}

impl Host {
    /// Writes the config (`body` after the common part), the script and the plugin folder,
    /// and loads everything as `murmur run` does.
    pub fn new(
        library: &Path,
        body: &str,
        replies: usize,
        reply: &str,
        delay: Option<&str>,
    ) -> anyhow::Result<Host> {
        let dir = tempfile::Builder::new()
            .prefix("murmur-bench-")
            .tempdir()
            .context("cannot create a temporary folder")?;
        let plugins = dir.path().join("plugins");
        std::fs::create_dir(&plugins)?;
        if !library.as_os_str().is_empty() {
            std::fs::copy(library, plugins.join(FIXTURE_LIBRARY))
                .with_context(|| format!("cannot copy {}", library.display()))?;
        }
        // One line per model call; every call gets the same reply.
        let line = match delay {
            Some(d) => serde_json::json!({ "text": reply, "delay": d }),
            None => serde_json::json!({ "text": reply }),
        }
        .to_string();
        let mut script = String::with_capacity((line.len() + 1) * replies);
        for _ in 0..replies {
            script.push_str(&line);
            script.push('\n');
        }
        std::fs::write(dir.path().join("replies.jsonl"), script)?;
        let text = format!(
            "plugins_dir = \"plugins\"\nsystem_prompt = \"You are a helpful assistant.\"\n\
             defer_timeout = \"30s\"\n\n[model]\nprovider = \"scripted\"\n\
             script = \"replies.jsonl\"\nchunk_chars = 5\n\n{body}"
        );
        let file = dir.path().join("murmur.toml");
        std::fs::write(&file, &text)?;
        let config = Config::load(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
        let prepared = crate::cli::Prepared::load_with(&config, &|line| {
            eprintln!("bench: {line}");
        })?;
        let wanted = config.analyzers.iter().filter(|a| a.enabled).count();
        let loaded = prepared.instances.analyzers.len();
        if loaded != wanted {
            bail!("{loaded} of the {wanted} analyzers loaded; see the warnings above");
        }
        Ok(Host {
            config,
            dir,
            prepared: Some(prepared),
        })
    }

    /// The runtime; call once, inside a tokio runtime.
    pub fn runtime(&mut self, observers: Vec<Arc<dyn Observer>>) -> anyhow::Result<Runtime> {
        let prepared = self
            .prepared
            .take()
            .context("the bench host's runtime was already built")?;
        Ok(prepared.runtime(&self.config, observers, None))
    }

    /// The temporary folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A multi-thread tokio runtime, as `murmur run` and `murmur serve` use (one worker per core).
pub fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// CPU time of the whole process, every thread included (`CLOCK_PROCESS_CPUTIME_ID`, in
/// nanoseconds).
pub fn cpu_time() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// A field of `/proc/self/status` in kB (`VmRSS`, `VmHWM`), when it can be read.
pub fn status_kb(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.trim().trim_end_matches("kB").trim().parse().ok()
    })
}

/// Resident and peak resident memory, as printed.
pub fn memory_line() -> String {
    let kb = |name| status_kb(name).map_or_else(|| "?".to_string(), |v| format!("{v} kB"));
    format!("{} (peak {})", kb("VmRSS"), kb("VmHWM"))
}

/// `/proc/loadavg`: other work on the machine shows up here.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// CPU model and core count, from `/proc/cpuinfo`.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores, {model}")
}

/// The median of a series (NaN when empty).
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    percentile(values, 50.0)
}

/// The `p`th percentile (nearest rank; the midpoint of the two middle values for p = 50).
pub fn percentile(values: impl IntoIterator<Item = f64>, p: f64) -> f64 {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    if (p - 50.0).abs() < f64::EPSILON {
        let mid = v.len() / 2;
        return if v.len() % 2 == 1 {
            v[mid]
        } else {
            (v[mid - 1] + v[mid]) / 2.0
        };
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Times `f` in batches long enough for the clock (about 2 ms each) and returns the
/// nanoseconds per call of each of `batches` batches, after one unrecorded batch.
pub fn per_call_ns(batches: usize, mut f: impl FnMut()) -> Vec<f64> {
    let mut per_batch = 1usize;
    loop {
        let started = std::time::Instant::now();
        for _ in 0..per_batch {
            f();
        }
        if started.elapsed() >= Duration::from_millis(2) || per_batch >= 1 << 24 {
            break;
        }
        per_batch *= 2;
    }
    (0..batches)
        .map(|_| {
            let started = std::time::Instant::now();
            for _ in 0..per_batch {
                f();
            }
            started.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank_and_the_middle_for_the_median() {
        let v = [5.0, 1.0, 4.0, 2.0, 3.0, 6.0];
        assert_eq!(median(v), 3.5);
        assert_eq!(median([2.0, 9.0, 4.0]), 4.0);
        assert_eq!(percentile(v, 99.0), 6.0);
        assert_eq!(percentile((1..=100).map(f64::from), 99.0), 99.0);
        assert!(median([]).is_nan());
    }

    #[test]
    fn a_reply_of_n_words_streams_as_n_chunks_of_five_characters() {
        let text = reply_text(50);
        assert_eq!(text.chars().count(), 250);
        let words: Vec<&str> = text.split_terminator(' ').collect();
        assert_eq!(words.len(), 50);
        assert!(words.iter().all(|w| w.len() == 4));
    }

    #[test]
    fn process_cpu_time_advances_with_work() {
        let before = cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_time() > before);
    }
}
