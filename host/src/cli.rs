//! The `murmur` command line.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::conversation::{self, Line};
use crate::events::{
    EventKind, JsonlContent, JsonlWriter, Observer, Stats, TracingLog, TurnOutcome,
};
use crate::knowledge::KnowledgeBase;
use crate::model::Models;
use crate::plugins::{loader, Catalog};
use crate::services::ServiceHub;
use crate::session::SessionSettings;
use crate::state::StateStore;
use crate::Runtime;

/// Murmur: a host for chat agents with background analyzers as native plugins.
#[derive(Debug, Parser)]
#[command(name = "murmur", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scripted conversation and print its visible transcript.
    Run(RunArgs),
    /// Chat in the terminal: replies stream, the analyzers' injections show as notes.
    Chat(ChatArgs),
    /// Inspect plugin libraries.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Build the knowledge base's index (`[knowledge]`) now, and print counts and time.
    Index {
        /// The config file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Rebuild even when the index is up to date.
        #[arg(long)]
        force: bool,
    },
    /// Run one analyzer on a labeled set and print precision, recall and F1 per label.
    Eval(EvalArgs),
    /// Serve sessions over HTTP: a session API with server-sent events, health and metrics.
    Serve(ServeArgs),
    /// Create a new analyzer crate from Murmur's template, ready to build and test.
    NewAnalyzer(crate::scaffold::Options),
    /// Measure the host: turn overhead, history growth, the critical path, memory per
    /// session, the plugin boundary and the local model (see docs/performance.md).
    Bench(crate::bench::Options),
    /// Run one analyzer for a host that isolates it in a process (`isolation = "process"`);
    /// speaks the plugin-runner protocol on stdin and stdout. Started by the host.
    #[command(hide = true)]
    PluginRunner,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The config file.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// Address and port to listen on (default: `[server] listen`, else 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    records: Records,
}

/// Records a run or a server may write.
#[derive(Debug, clap::Args)]
struct Records {
    /// Write every model input as one JSON line (overrides `record_model_input`).
    #[arg(long, value_name = "OUT.jsonl")]
    record_model_input: Option<PathBuf>,
    /// Write every event as one JSON line.
    #[arg(long, value_name = "OUT.jsonl")]
    events: Option<PathBuf>,
}

impl Records {
    /// The observers that write the records asked for here or in the config.
    fn observers(&self, config: &Config) -> anyhow::Result<Vec<Arc<dyn Observer>>> {
        let mut observers: Vec<Arc<dyn Observer>> = Vec::new();
        let inputs = self
            .record_model_input
            .as_ref()
            .or(config.record_model_input.as_ref());
        for (path, what) in [
            (inputs, JsonlContent::ModelInputs),
            (self.events.as_ref(), JsonlContent::Events),
        ] {
            if let Some(path) = path {
                let w = JsonlWriter::create(path, what)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                observers.push(Arc::new(w));
            }
        }
        Ok(observers)
    }
}

#[derive(Debug, clap::Args)]
struct ChatArgs {
    /// The config file.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    #[command(flatten)]
    records: Records,
}

#[derive(Debug, clap::Args)]
struct EvalArgs {
    /// The config file; it names the analyzer and its plugin, models and knowledge base.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// Labeled sets (JSON Lines); see docs/analyzers.md.
    #[arg(required = true, value_name = "SET.jsonl")]
    sets: Vec<PathBuf>,
    /// The `[[analyzer]]` to run; default: each set's file name without `.jsonl`.
    #[arg(long, short)]
    analyzer: Option<String>,
    /// List every label, however many there are.
    #[arg(long)]
    per_label: bool,
    /// How many mistakes to show per set.
    #[arg(long, default_value_t = 10)]
    mistakes: usize,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The config file.
    #[arg(long, short, value_name = "FILE")]
    config: PathBuf,
    /// The conversation: one user message per line, `@wait 250ms` to idle, `#` comments.
    #[arg(long, short, value_name = "CONVERSATION")]
    script: PathBuf,
    #[command(flatten)]
    records: Records,
    /// Session id.
    #[arg(long, default_value = "session-1")]
    session: String,
}

#[derive(Debug, Subcommand)]
enum PluginsCommand {
    /// List the analyzers and tools in the config's plugins_dir, and the refused files.
    List {
        /// The config file.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Check that one library loads: exit 0 with a summary, or 1 with the reason.
    Check {
        /// The `.so` file.
        file: PathBuf,
    },
}

/// OpenMP threads that spin while waiting collapse llama.cpp's throughput on a shared
/// machine; waiting passively costs nothing measurable when the machine is idle. The OpenMP
/// runtime reads `OMP_WAIT_POLICY` when it is loaded, before `main`, so setting the variable
/// here would be too late: unless the user set it, the process runs itself again with it.
pub fn passive_openmp() {
    if std::env::var_os("OMP_WAIT_POLICY").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // `exec` returns only when it failed; then go on with the default policy.
    let error = command.args(args).env("OMP_WAIT_POLICY", "PASSIVE").exec();
    eprintln!("murmur: cannot restart with OMP_WAIT_POLICY=PASSIVE ({error}); going on without");
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    passive_openmp();
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Chat(args) => load_config(&args.config).and_then(|config| {
            let records = args.records.observers(&config)?;
            crate::chat::run(config, records)
        }),
        Command::Plugins {
            command: PluginsCommand::List { config },
        } => plugins_list(&config),
        Command::Plugins {
            command: PluginsCommand::Check { file },
        } => Ok(plugins_check(&file)),
        Command::Index { config, force } => index(&config, force),
        Command::Eval(args) => eval(args),
        Command::Serve(args) => serve(args),
        Command::NewAnalyzer(options) => crate::scaffold::run(&options).map(|()| ExitCode::SUCCESS),
        Command::Bench(options) => crate::bench::run(&options).map(|()| ExitCode::SUCCESS),
        Command::PluginRunner => Ok(crate::plugins::runner::main()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("murmur: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MURMUR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))
}

/// Streams reply text to stdout as it arrives.
struct TranscriptPrinter;

impl Observer for TranscriptPrinter {
    fn chunk(&self, _session: &str, _turn: u64, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn event(&self, event: &crate::events::Event) {
        match &event.kind {
            EventKind::ToolResult { name, output, .. } => {
                let output = output.replace('\n', " ");
                print!("\n  [tool {name}: {output}]\nassistant: ");
            }
            EventKind::UserMessageSteered { text, .. } => {
                print!("\nuser (during the turn): {text}\nassistant: ")
            }
            _ => return,
        }
        let _ = std::io::stdout().flush();
    }
}

/// Everything a runtime needs, loaded from the config: models, analyzer and tool instances,
/// analyzer state and the knowledge base.
pub(crate) struct Prepared {
    pub(crate) models: Arc<Models>,
    /// The loaded plugin libraries (a reloader continues from them).
    pub(crate) catalog: Catalog,
    pub(crate) instances: crate::plugins::Instances,
    pub(crate) state: StateStore,
    pub(crate) knowledge: Option<Arc<KnowledgeBase>>,
}

impl Prepared {
    /// Loads with progress and warnings on stderr.
    pub(crate) fn load(config: &Config) -> anyhow::Result<Prepared> {
        Prepared::load_with(config, &|line| eprintln!("murmur: {line}"))
    }

    /// Loads, telling `note` about progress and warnings, a line at a time.
    pub(crate) fn load_with(config: &Config, note: &dyn Fn(&str)) -> anyhow::Result<Prepared> {
        let models = Arc::new(Models::build(config, note).map_err(|e| anyhow::anyhow!("{e}"))?);
        let tools_enabled = config.tools.iter().filter(|t| t.enabled).count();
        if models.chat.name() == "local" && tools_enabled > 0 {
            note(&format!(
                "warning: the local model does not call tools; the {tools_enabled} [[tool]] table(s) take effect with the openai and scripted providers"
            ));
        }
        let catalog = Catalog::load(config)?;
        for r in &catalog.rejected {
            note(&format!(
                "warning: plugin {} refused: {}",
                r.file.display(),
                r.reason
            ));
        }
        for name in catalog.needing_knowledge(config) {
            note(&format!(
                "warning: analyzer `{name}` searches the knowledge base, but {} has no [knowledge] table; its runs will fail",
                config.file.display()
            ));
        }
        let state = StateStore::default();
        let mut instances = catalog.instantiate(config, &state);
        for e in &instances.errors {
            note(&format!("warning: {e}; running without it"));
        }
        let knowledge = open_knowledge(config, false, note)?;
        if let (Some(kb), Some(k)) = (&knowledge, &config.knowledge) {
            if k.tool {
                instances.tools.push(crate::knowledge::tool::entry(
                    kb.clone(),
                    k.tool_results,
                    config.tool_timeout,
                ));
            }
        }
        Ok(Prepared {
            models,
            catalog,
            instances,
            state,
            knowledge,
        })
    }

    /// Builds the runtime with these observers, keeping sessions in `store` if given; call
    /// inside the tokio runtime.
    pub(crate) fn runtime(
        self,
        config: &Config,
        observers: Vec<Arc<dyn Observer>>,
        store: Option<Arc<crate::store::Store>>,
    ) -> Runtime {
        let settings = SessionSettings {
            system_prompt: config.system_prompt.clone(),
            max_steps: config.max_steps,
            steering: config.steering,
            placement: config.instructions_placement,
            compaction: config.context.clone(),
        };
        let mut builder = Runtime::builder(settings, self.models.chat.clone())
            .analyzers(self.instances.analyzers)
            .tools(self.instances.tools)
            .state(self.state)
            .services(Arc::new(hub(&self.models, self.knowledge)));
        for o in observers {
            builder = builder.observer(o);
        }
        if let Some(store) = store {
            builder = builder.store(store);
        }
        builder.build()
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config)?;
    let lines = conversation::load(&args.script).map_err(|e| anyhow::anyhow!("{e}"))?;
    let prepared = Prepared::load(&config)?;

    let mut observers: Vec<Arc<dyn Observer>> =
        vec![Arc::new(TracingLog), Arc::new(TranscriptPrinter)];
    let stats = Arc::new(Stats::default());
    observers.push(stats.clone());
    observers.extend(args.records.observers(&config)?);

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let failed_turns = tokio.block_on(async {
        let runtime = prepared.runtime(&config, observers, None);
        let session = runtime.open_session(args.session.as_str());
        let mut failed = 0u64;
        for line in lines {
            match line {
                Line::Wait(d) => tokio::time::sleep(d).await,
                Line::Say(text) => {
                    print!("user: {text}\nassistant: ");
                    let _ = std::io::stdout().flush();
                    match session.send(text).wait().await {
                        Ok(end) => {
                            println!();
                            if end.outcome == TurnOutcome::Error
                                || end.outcome == TurnOutcome::MaxSteps
                            {
                                failed += 1;
                                println!(
                                    "[turn {} ended: {}]",
                                    end.turn,
                                    end.error.unwrap_or_default()
                                );
                            }
                        }
                        Err(e) => {
                            println!();
                            eprintln!("murmur: {e}");
                            failed += 1;
                            break;
                        }
                    }
                }
            }
        }
        session.close().await;
        runtime.shutdown(Duration::from_secs(2)).await;
        failed
    });
    // Analyzers stuck in plugin code that ignores cancellation are abandoned here.
    tokio.shutdown_timeout(Duration::from_millis(200));
    let summary: Vec<String> = stats
        .snapshot()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    eprintln!("murmur: {}", summary.join(" "));
    Ok(if failed_turns > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The session store the config names, if any. A PostgreSQL store needs its URL in the
/// environment variable the config names; the database itself may be down (see
/// [`crate::store::postgres`]).
fn open_store(config: &crate::config::Config) -> anyhow::Result<Option<Arc<crate::store::Store>>> {
    use crate::config::StoreSettings;
    Ok(match &config.store {
        StoreSettings::Memory => None,
        StoreSettings::Sqlite { path } => Some(Arc::new(crate::store::Store::sqlite(path)?)),
        StoreSettings::Postgres(pg) => {
            let url = match std::env::var(&pg.url_env) {
                Ok(u) if !u.trim().is_empty() => u,
                _ => anyhow::bail!(
                    "{}: [store] url_env names `{}`, which is not set or empty; set it to the database URL, e.g. postgres://murmur:secret@db.internal:5432/murmur",
                    config.file.display(),
                    pg.url_env
                ),
            };
            Some(Arc::new(crate::store::Store::Postgres(
                crate::store::PgStore::open(url.trim(), pg.clone())?,
            )))
        }
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    use crate::server::{self, hub::EventHub, metrics::Metrics};
    let config = load_config(&args.config)?;
    let mut settings = config.server.clone();
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    let token = match &settings.auth_token_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_string()),
            _ => anyhow::bail!(
                "{}: [server] auth_token_env names `{var}`, which is not set or empty; set it to the bearer token clients must send",
                config.file.display()
            ),
        },
    };
    let mut prepared = Prepared::load(&config)?;
    let catalog = std::mem::take(&mut prepared.catalog);
    let records = args.records.observers(&config)?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    tokio.block_on(async {
        let store = open_store(&config)?;
        let hub = Arc::new(EventHub::default());
        let metrics = Arc::new(Metrics::default());
        let mut observers: Vec<Arc<dyn Observer>> =
            vec![Arc::new(TracingLog), hub.clone(), metrics.clone()];
        observers.extend(records);
        let runtime = prepared.runtime(&config, observers, store);
        let reloader = crate::plugins::reload::Reloader::new(config.clone(), catalog, runtime.clone());
        let _watch = crate::plugins::reload::watch(reloader).map_err(|e| anyhow::anyhow!(e))?;
        let app = server::App::new(runtime, hub, metrics, settings.clone(), token.clone());
        let takeovers = server::App::watch_leases(&app);
        let resumed = app.resume()?;
        match app.store().map(|s| (s.place(), s.shared())) {
            Some((place, None)) => {
                eprintln!("murmur: sessions are kept in {place}; {resumed} resumed")
            }
            Some((place, Some(pg))) => {
                match pg.ping().await {
                    Ok(()) => eprintln!("murmur: sessions are kept in {place}, shared with other hosts; this host is {}", pg.host()),
                    Err(e) => eprintln!("murmur: sessions are kept in {place}, which is unreachable for now ({e}); requests are answered 503 until it is back"),
                }
            }
            None => {}
        }
        let listener = tokio::net::TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        let addr = listener.local_addr().unwrap_or(settings.listen);
        if !addr.ip().is_loopback() && token.is_none() {
            eprintln!(
                "murmur: warning: listening on {addr}, beyond this machine, without authentication; set [server] auth_token_env"
            );
        }
        eprintln!("murmur: listening on http://{addr} (Ctrl-C stops)");
        axum::serve(listener, server::router(app.clone()))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
                eprintln!("murmur: stopping...");
            })
            .await
            .context("the HTTP server failed")?;
        if let Some(watch) = &takeovers {
            watch.abort();
        }
        app.shutdown(Duration::from_secs(2)).await;
        anyhow::Ok(())
    })?;
    tokio.shutdown_timeout(Duration::from_millis(200));
    Ok(ExitCode::SUCCESS)
}

/// The host services over these models and knowledge base, on the current tokio runtime.
fn hub(models: &Arc<Models>, knowledge: Option<Arc<KnowledgeBase>>) -> ServiceHub {
    let hub = ServiceHub::new(models.clone(), tokio::runtime::Handle::current());
    match knowledge {
        Some(kb) => hub.with_knowledge(kb),
        None => hub,
    }
}

/// Opens the config's knowledge base, building its index first when needed (with progress
/// lines on stderr). `None` when the config has no `[knowledge]` table.
fn open_knowledge(
    config: &Config,
    force: bool,
    note: &dyn Fn(&str),
) -> anyhow::Result<Option<Arc<KnowledgeBase>>> {
    let Some(settings) = &config.knowledge else {
        return Ok(None);
    };
    let (kb, _) = KnowledgeBase::open(settings, force, note)
        .with_context(|| format!("[knowledge] in {}", config.file.display()))?;
    Ok(Some(Arc::new(kb)))
}

fn index(config_path: &Path, force: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let Some(settings) = &config.knowledge else {
        anyhow::bail!(
            "{}: no [knowledge] table; add one with `path = \"folder of .md and .txt files\"`",
            config_path.display()
        );
    };
    let (kb, report) = KnowledgeBase::open(settings, force, &|line| eprintln!("murmur: {line}"))
        .with_context(|| format!("[knowledge] in {}", config_path.display()))?;
    println!(
        "{}: {} files, {} passages, {} KB of text, index {} ({}) in {:.2} s",
        settings.path.display(),
        report.files,
        kb.passages(),
        report.bytes / 1024,
        kb.index_dir().display(),
        if report.rebuilt {
            "built"
        } else {
            "up to date"
        },
        report.elapsed.as_secs_f64()
    );
    for s in &report.skipped {
        println!("skipped {s}");
    }
    Ok(ExitCode::SUCCESS)
}

fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config)?;
    let mut sets = Vec::new();
    for path in &args.sets {
        let name = match &args.analyzer {
            Some(a) => a.clone(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let cases = crate::eval::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        if config.analyzer(&name).is_none() {
            let known: Vec<&str> = config.analyzers.iter().map(|a| a.name.as_str()).collect();
            anyhow::bail!(
                "{}: no [[analyzer]] named `{name}` in {} (configured: {}); pass --analyzer",
                path.display(),
                args.config.display(),
                known.join(", ")
            );
        }
        sets.push((path.clone(), name, cases));
    }
    let catalog = Catalog::load(&config)?;
    let state = StateStore::default();
    let instances = catalog.instantiate(&config, &state);
    let models = Arc::new(
        Models::build(&config, &|line| eprintln!("murmur: {line}"))
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let knowledge = open_knowledge(&config, false, &|line| eprintln!("murmur: {line}"))?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut failed = false;
    for (path, name, cases) in sets {
        let Some(entry) = instances.analyzers.iter().find(|a| *a.name == *name) else {
            let why: Vec<String> = instances.errors.iter().map(|e| e.to_string()).collect();
            anyhow::bail!(
                "analyzer `{name}` could not be created: {}",
                if why.is_empty() {
                    "it is disabled or its plugin is not in plugins_dir".to_string()
                } else {
                    why.join("; ")
                }
            );
        };
        eprintln!(
            "murmur: eval {} ({} cases) on analyzer `{name}` ({} {})",
            path.display(),
            cases.len(),
            entry.plugin,
            entry.version
        );
        let report = tokio.block_on(async {
            let hub = Arc::new(hub(&models, knowledge.clone()));
            crate::eval::run(entry, &cases, Some(hub), &|done, all| {
                if done % 100 == 0 && done < all {
                    eprintln!("murmur:   {done}/{all}");
                }
            })
            .await
        });
        println!("== {} (analyzer {name})", path.display());
        let rows = if args.per_label { usize::MAX } else { 40 };
        print!("{}", crate::eval::render(&report, rows, args.mistakes));
        println!();
        failed |= report.mistakes.iter().any(|m| m.error.is_some());
    }
    tokio.shutdown_timeout(Duration::from_millis(200));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn plugins_list(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let catalog = Catalog::load(&config)?;
    let mut rows = vec![vec![
        "KIND".to_string(),
        "NAME".into(),
        "FILE".into(),
        "VERSION".into(),
        "API".into(),
        "HOOKS".into(),
        "CONFIGURED AS".into(),
    ]];
    for lib in &catalog.libraries {
        let m = &lib.manifest;
        for a in &m.analyzers {
            let used: Vec<&str> = config
                .analyzers
                .iter()
                .filter(|c| c.plugin == a.name)
                .map(|c| c.name.as_str())
                .collect();
            rows.push(vec![
                "analyzer".into(),
                a.name.clone(),
                file_name(&lib.file),
                m.version.clone(),
                m.api_version.clone(),
                a.hooks
                    .iter()
                    .map(|h| h.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                if used.is_empty() {
                    "-".into()
                } else {
                    used.join(", ")
                },
            ]);
        }
        for t in &m.tools {
            let used: Vec<&str> = config
                .tools
                .iter()
                .filter(|c| c.plugin == t.name)
                .map(|c| c.name.as_str())
                .collect();
            rows.push(vec![
                "tool".into(),
                t.name.clone(),
                file_name(&lib.file),
                m.version.clone(),
                m.api_version.clone(),
                "-".into(),
                if used.is_empty() {
                    "-".into()
                } else {
                    used.join(", ")
                },
            ]);
        }
    }
    print!("{}", table(&rows));
    if !catalog.libraries.is_empty() {
        // As sha256sum prints them: what a table's `sha256` pins.
        println!();
        for lib in &catalog.libraries {
            println!("sha256  {}  {}", lib.sha256, file_name(&lib.file));
        }
    }
    if !catalog.rejected.is_empty() {
        println!();
        for r in &catalog.rejected {
            println!("rejected  {}: {}", file_name(&r.file), r.reason);
        }
    }
    let instances = catalog.instantiate(&config, &StateStore::default());
    if !instances.errors.is_empty() {
        println!();
        for e in &instances.errors {
            println!("config    {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn plugins_check(file: &Path) -> ExitCode {
    match loader::load_file(file, true) {
        Ok(lib) => {
            let m = &lib.manifest;
            println!("{}: ok", file.display());
            println!("  sha256 {}", lib.sha256);
            println!(
                "  plugin {} {} (murmur-plugin-api {}, ABI {})",
                m.name,
                m.version,
                m.api_version,
                murmur_plugin_api::ffi::ABI_VERSION
            );
            if !m.requires.is_empty() {
                println!("  requires {}", m.requires.join(", "));
            }
            for a in &m.analyzers {
                let hooks: Vec<&str> = a.hooks.iter().map(|h| h.as_str()).collect();
                println!(
                    "  analyzer {} [{}] {}",
                    a.name,
                    hooks.join(","),
                    a.description
                );
            }
            for t in &m.tools {
                println!("  tool {} {}", t.name, t.description);
            }
            ExitCode::SUCCESS
        }
        Err(r) => {
            println!("{}: {}", r.file.display(), r.reason);
            ExitCode::FAILURE
        }
    }
}
