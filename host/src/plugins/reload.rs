//! Hot reload for `murmur serve`: the host watches `plugins_dir` and the config file
//! (`notify`, debounced), and reloads on a change or on SIGHUP.
//!
//! A reload re-reads the config (one with errors is refused with them, and the running
//! config stays), rescans the plugin folder (a new or changed `.so` is loaded as a new
//! generation through a fresh shadow copy; an unchanged one is kept as it is), and rebuilds
//! the analyzer instances whose table or library changed. Sessions take the new set up at
//! their next turn; runs in flight finish on the instances they started with, whose code
//! stays mapped (libraries are never unloaded). An analyzer whose plugin is gone stops
//! receiving runs. Tools, models, `[server]`, `[store]` and the other settings take effect
//! at the next start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{new_debouncer, DebounceEventResult, Debouncer};

use super::{Catalog, PluginLibrary};
use crate::analyzer::AnalyzerEntry;
use crate::config::{AnalyzerConfig, Config};
use crate::Runtime;

/// Changes closer together than this make one reload.
const DEBOUNCE: Duration = Duration::from_millis(300);

/// An instance and what it was made from.
#[derive(Clone)]
struct Instance {
    table: AnalyzerConfig,
    library: Arc<PluginLibrary>,
    entry: AnalyzerEntry,
}

/// Reloads a runtime's analyzers from the config file and the plugin folder.
pub struct Reloader {
    config_path: PathBuf,
    config: Config,
    catalog: Catalog,
    runtime: Runtime,
    instances: Vec<Instance>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("config", &self.config_path)
            .finish_non_exhaustive()
    }
}

/// Whether two versions of a table make the same instance (its line may move).
fn same_table(a: &AnalyzerConfig, b: &AnalyzerConfig) -> bool {
    AnalyzerConfig {
        line: 0,
        ..a.clone()
    } == AnalyzerConfig {
        line: 0,
        ..b.clone()
    }
}

impl Reloader {
    /// A reloader for `runtime`, which was built from `config` and `catalog`.
    pub fn new(config: Config, catalog: Catalog, runtime: Runtime) -> Self {
        let set = runtime.analyzers();
        let instances = set
            .entries
            .iter()
            .filter_map(|entry| {
                let table = config.analyzer(&entry.name)?.clone();
                let library = catalog.analyzer_library(&table.plugin)?.clone();
                Some(Instance {
                    table,
                    library,
                    entry: entry.clone(),
                })
            })
            .collect();
        Reloader {
            config_path: config.file.clone(),
            config,
            catalog,
            runtime,
            instances,
        }
    }

    /// What to watch: the plugin folder and the config file's folder.
    fn watched(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.config.plugins_dir.clone()];
        if let Some(dir) = self.config_path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.to_path_buf()
            };
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// Reloads now; returns what happened, a line each.
    pub fn reload(&mut self) -> Vec<String> {
        let mut report = Vec::new();
        match Config::load(&self.config_path) {
            Ok(config) => self.config = config,
            Err(errors) => report.push(format!(
                "{} has errors; the running config stays:\n{}",
                self.config_path.display(),
                errors.to_string().trim_end()
            )),
        }
        match Catalog::rescan(
            &self.config.plugins_dir,
            self.config.allow_insecure_plugins,
            &self.catalog.libraries,
        ) {
            Ok(catalog) => {
                for r in &catalog.rejected {
                    report.push(format!("plugin {} refused: {}", r.file.display(), r.reason));
                }
                self.catalog = catalog;
            }
            Err(e) => {
                report.push(format!(
                    "plugins_dir {}: {e}; the running analyzers stay",
                    self.config.plugins_dir.display()
                ));
                return report;
            }
        }
        let mut next: Vec<Instance> = Vec::new();
        for table in self.config.analyzers.iter().filter(|a| a.enabled) {
            let library = self.catalog.analyzer_library(&table.plugin).cloned();
            let before = self.instances.iter().find(|i| i.table.name == table.name);
            let Some(library) = library else {
                let what = if before.is_some() {
                    "stops: no plugin in the folder exports"
                } else {
                    "not added: no plugin in the folder exports"
                };
                report.push(format!(
                    "analyzer `{}` {what} `{}`",
                    table.name, table.plugin
                ));
                continue;
            };
            if let Some(kept) =
                before.filter(|i| same_table(&i.table, table) && Arc::ptr_eq(&i.library, &library))
            {
                next.push(kept.clone());
                continue;
            }
            match self.catalog.analyzer(table, &self.config) {
                Ok(entry) => {
                    report.push(format!(
                        "analyzer `{}` {} ({} {} from {})",
                        table.name,
                        if before.is_some() {
                            "reloaded"
                        } else {
                            "added"
                        },
                        library.manifest.name,
                        library.manifest.version,
                        library.file.display()
                    ));
                    next.push(Instance {
                        table: table.clone(),
                        library,
                        entry,
                    });
                }
                Err(e) => match before {
                    Some(old) => {
                        report.push(format!("{e}; the running instance stays"));
                        next.push(old.clone());
                    }
                    None => report.push(format!("{e}; not added")),
                },
            }
        }
        for old in &self.instances {
            if !next.iter().any(|i| i.table.name == old.table.name)
                && !report
                    .iter()
                    .any(|l| l.contains(&format!("`{}`", old.table.name)))
            {
                report.push(format!("analyzer `{}` removed", old.table.name));
            }
        }
        let changed = next.len() != self.instances.len()
            || next.iter().zip(&self.instances).any(|(a, b)| {
                a.table.name != b.table.name || !Arc::ptr_eq(&a.entry.backend, &b.entry.backend)
            });
        if changed {
            let names: Vec<&str> = next.iter().map(|i| i.table.name.as_str()).collect();
            let generation = self
                .runtime
                .replace_analyzers(next.iter().map(|i| i.entry.clone()).collect());
            report.push(format!(
                "analyzers now: {} (generation {generation}); sessions take them up at their next turn",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ));
            self.instances = next;
        } else if report.is_empty() {
            report.push("nothing changed".into());
        }
        report
    }
}

/// Whether a changed path matters: the config file, or a library in the plugin folder.
fn concerns(config_path: &Path, plugins_dir: &Path, path: &Path) -> bool {
    let dir = |p: &Path| p.parent().and_then(|d| d.canonicalize().ok());
    if path == config_path
        || (path.file_name() == config_path.file_name() && dir(path) == dir(config_path))
    {
        return true;
    }
    path.extension().is_some_and(|x| x == "so") && dir(path) == plugins_dir.canonicalize().ok()
}

/// A running watch; dropping it stops watching.
pub struct Watch {
    _debouncer: Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").finish_non_exhaustive()
    }
}

/// Watches the config file and the plugin folder and reloads on a change or SIGHUP,
/// printing what each reload did. Call inside the tokio runtime.
pub fn watch(mut reloader: Reloader) -> Result<Watch, String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
    let watched = reloader.watched();
    let paths_tx = tx.clone();
    let config_path = reloader.config_path.clone();
    let plugins_dir = reloader.config.plugins_dir.clone();
    let (config_file, plugins) = (config_path.clone(), plugins_dir.clone());
    let mut debouncer = new_debouncer(DEBOUNCE, move |events: DebounceEventResult| {
        if let Ok(events) = events {
            if events
                .iter()
                .any(|e| concerns(&config_file, &plugins, &e.path))
            {
                let _ = paths_tx.send("files changed");
            }
        }
    })
    .map_err(|e| format!("cannot watch for changes: {e}"))?;
    for dir in &watched {
        debouncer
            .watcher()
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    }
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot listen for SIGHUP: {e}"))?;
    tokio::spawn(async move {
        loop {
            let cause = tokio::select! {
                c = rx.recv() => match c { Some(c) => c, None => return },
                _ = hangups.recv() => "SIGHUP",
            };
            let (back, report) = match tokio::task::spawn_blocking(move || {
                let report = reloader.reload();
                (reloader, report)
            })
            .await
            {
                Ok(done) => done,
                Err(e) => {
                    eprintln!("murmur: reload failed: {e}");
                    return;
                }
            };
            reloader = back;
            for line in report {
                eprintln!("murmur: reload ({cause}): {line}");
                tracing::info!(cause, "reload: {line}");
            }
        }
    });
    eprintln!(
        "murmur: watching {} and {} for changes (SIGHUP reloads too)",
        config_path.display(),
        plugins_dir.display()
    );
    drop(tx);
    Ok(Watch {
        _debouncer: debouncer,
    })
}
