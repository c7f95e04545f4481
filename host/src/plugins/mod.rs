//! Plugins: the folder of `.so` files ([`loader`]), the host side of the ABI ([`bridge`]),
//! and the [`Catalog`] that turns `[[analyzer]]` and `[[tool]]` tables into instances.

pub mod bridge;
pub mod loader;
pub mod process;
pub mod protocol;
pub mod reload;
pub mod runner;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::analyzer::AnalyzerEntry;
use crate::config::{AnalyzerConfig, Config};
use crate::model::ToolSpec;
use crate::session::runs::SlotSpec;
use crate::state::StateStore;
use crate::tool::ToolEntry;

pub use loader::{PluginLibrary, Rejection};

/// A config table that could not be turned into an instance. The host runs without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {table} `{name}`: {message}", file.display())]
pub struct InstanceError {
    /// The config file.
    pub file: PathBuf,
    /// Line of the table.
    pub line: usize,
    /// `analyzer` or `tool`.
    pub table: &'static str,
    /// Instance name.
    pub name: String,
    /// What went wrong.
    pub message: String,
}

/// The plugin folder was not scanned.
#[derive(Debug, thiserror::Error)]
#[error("plugins_dir {} (set in {config}): {reason}", dir.display())]
pub struct ScanError {
    /// The folder.
    pub dir: PathBuf,
    /// The config file that names it.
    pub config: String,
    /// Why.
    pub reason: loader::ScanDirError,
}

/// Loaded libraries and refused files.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Loaded libraries.
    pub libraries: Vec<Arc<PluginLibrary>>,
    /// Refused files, with a one-line reason.
    pub rejected: Vec<Rejection>,
}

/// Instances built from the config.
#[derive(Debug, Default)]
pub struct Instances {
    /// Analyzer instances, in config order.
    pub analyzers: Vec<AnalyzerEntry>,
    /// Tools, in config order.
    pub tools: Vec<ToolEntry>,
    /// Tables that could not be instantiated.
    pub errors: Vec<InstanceError>,
}

impl Catalog {
    /// Enabled analyzer instances whose plugin needs `search` while the config has no
    /// `[knowledge]` table: their runs would fail at every hook.
    pub fn needing_knowledge<'c>(&self, config: &'c Config) -> Vec<&'c str> {
        if config.knowledge.is_some() {
            return Vec::new();
        }
        config
            .analyzers
            .iter()
            .filter(|a| a.enabled)
            .filter(|a| {
                self.libraries.iter().any(|lib| {
                    lib.manifest.analyzers.iter().any(|x| x.name == a.plugin)
                        && lib
                            .manifest
                            .requires
                            .iter()
                            .any(|r| r == murmur_plugin_api::capability::SEARCH)
                })
            })
            .map(|a| a.name.as_str())
            .collect()
    }

    /// Loads every plugin in the config's `plugins_dir`.
    pub fn load(config: &Config) -> Result<Catalog, ScanError> {
        Self::load_dir(&config.plugins_dir, config.allow_insecure_plugins).map_err(|reason| {
            ScanError {
                dir: config.plugins_dir.clone(),
                config: config.file.display().to_string(),
                reason,
            }
        })
    }

    /// Loads every plugin in a folder (see [`loader::scan_dir`]).
    pub fn load_dir(dir: &Path, allow_insecure: bool) -> Result<Catalog, loader::ScanDirError> {
        Self::rescan(dir, allow_insecure, &[])
    }

    /// Loads every plugin in a folder, keeping those of `previous` whose files did not
    /// change.
    pub fn rescan(
        dir: &Path,
        allow_insecure: bool,
        previous: &[Arc<PluginLibrary>],
    ) -> Result<Catalog, loader::ScanDirError> {
        let scan = loader::scan_dir(dir, allow_insecure, previous)?;
        Ok(Catalog {
            libraries: scan.libraries,
            rejected: scan.rejected,
        })
    }

    /// The library that exports the analyzer `plugin`.
    pub fn analyzer_library(&self, plugin: &str) -> Option<&Arc<PluginLibrary>> {
        self.libraries
            .iter()
            .find(|lib| lib.manifest.analyzers.iter().any(|i| i.name == plugin))
    }

    /// Creates one instance per enabled `[[analyzer]]` and `[[tool]]` table; disabled
    /// tables are not set up at all, so their plugin need not be present.
    pub fn instantiate(&self, config: &Config, state: &StateStore) -> Instances {
        let mut out = Instances::default();
        for a in config.analyzers.iter().filter(|a| a.enabled) {
            match self.analyzer(a, config) {
                Ok(entry) => out.analyzers.push(entry),
                Err(e) => out.errors.push(e),
            }
        }
        for t in config.tools.iter().filter(|t| t.enabled) {
            let error = |message: String| InstanceError {
                file: config.file.clone(),
                line: t.line,
                table: "tool",
                name: t.name.clone(),
                message,
            };
            let found = self.libraries.iter().find_map(|lib| {
                let info = lib.manifest.tools.iter().find(|i| i.name == t.plugin)?;
                Some((lib, info))
            });
            let Some((lib, info)) = found else {
                out.errors.push(error(format!(
                    "no loaded plugin exports a tool named `{}` (available: {})",
                    t.plugin,
                    self.export_names(|m| m.tools.iter().map(|i| i.name.clone()).collect())
                )));
                continue;
            };
            if let Err(why) = pinned(lib, t.sha256.as_deref()) {
                out.errors.push(error(why));
                continue;
            }
            let config_json = t.config.to_string();
            let created =
                (lib.module.new_tool())(t.plugin.as_str().into(), config_json.as_str().into());
            match created.into_result() {
                Ok(instance) => out.tools.push(ToolEntry {
                    spec: ToolSpec {
                        name: t.name.clone(),
                        description: info.description.clone(),
                        parameters: info.parameters.clone(),
                    },
                    timeout: t.timeout,
                    backend: Arc::new(bridge::PluginTool::new(
                        t.name.as_str().into(),
                        instance,
                        state.clone(),
                    )),
                }),
                Err(e) => out.errors.push(error(format!(
                    "{} refused its config: {}",
                    lib.file.display(),
                    e.message.as_str()
                ))),
            }
        }
        out
    }

    /// The instance of one enabled `[[analyzer]]` table, from the library that exports its
    /// plugin: in this process or, with `isolation = "process"`, in a runner child that is
    /// started once now to check the table.
    pub fn analyzer(
        &self,
        a: &AnalyzerConfig,
        config: &Config,
    ) -> Result<AnalyzerEntry, InstanceError> {
        let error = |message: String| InstanceError {
            file: config.file.clone(),
            line: a.line,
            table: "analyzer",
            name: a.name.clone(),
            message,
        };
        let found = self.libraries.iter().find_map(|lib| {
            let info = lib.manifest.analyzers.iter().find(|i| i.name == a.plugin)?;
            Some((lib, info))
        });
        let Some((lib, info)) = found else {
            return Err(error(format!(
                "no loaded plugin exports an analyzer named `{}` (available: {})",
                a.plugin,
                self.export_names(|m| m.analyzers.iter().map(|i| i.name.clone()).collect())
            )));
        };
        pinned(lib, a.sha256.as_deref()).map_err(error)?;
        let config_json = a.config.to_string();
        let backend: Arc<dyn crate::analyzer::AnalyzerBackend> = match a.isolation {
            crate::config::Isolation::InProcess => {
                let created = (lib.module.new_analyzer())(
                    a.plugin.as_str().into(),
                    config_json.as_str().into(),
                );
                let instance = created.into_result().map_err(|e| {
                    error(format!(
                        "{} refused its config: {}",
                        lib.file.display(),
                        e.message.as_str()
                    ))
                })?;
                Arc::new(bridge::PluginAnalyzer::new(instance))
            }
            crate::config::Isolation::Process { memory_limit } => {
                // Its code runs only in the child; a child checks the config now, so
                // a mistake shows at startup.
                let exe = std::env::current_exe().map_err(|e| {
                    error(format!(
                        "cannot find the murmur binary to run it in a process: {e}"
                    ))
                })?;
                let spec = process::RunnerSpec {
                    exe,
                    library: lib.file.clone(),
                    plugin: a.plugin.clone(),
                    config_json: config_json.clone(),
                    check_owner: !config.allow_insecure_plugins,
                    memory_limit: Some(memory_limit),
                    name: a.name.clone(),
                };
                spec.check().map_err(error)?;
                Arc::new(process::ProcessAnalyzer::new(spec))
            }
        };
        Ok(AnalyzerEntry {
            name: a.name.as_str().into(),
            plugin: a.plugin.clone(),
            version: lib.manifest.version.as_str().into(),
            slot: SlotSpec {
                hooks: a.hooks.clone().unwrap_or_else(|| info.hooks.clone()),
                enabled: a.enabled,
                every_n_turns: a.every_n_turns,
                defer_timeout: a.defer_timeout,
                health: Default::default(),
            },
            timeout: a.timeout,
            ttl_turns: a.ttl_turns,
            config_json: config_json.into(),
            model: a.model.as_deref().map(Arc::from),
            quarantine_after: a.quarantine_after,
            backend,
        })
    }
}

/// Checks a table's `sha256` pin against the library that provides its plugin.
fn pinned(lib: &PluginLibrary, pin: Option<&str>) -> Result<(), String> {
    match pin {
        Some(pin) if pin != lib.sha256 => Err(format!(
            "{} has SHA-256 {}, but the table pins {pin}; refused (if the new file is trusted, update `sha256`)",
            lib.file.display(),
            lib.sha256
        )),
        _ => Ok(()),
    }
}

impl Catalog {
    fn export_names(&self, names: impl Fn(&murmur_plugin_api::Manifest) -> Vec<String>) -> String {
        let all: Vec<String> = self
            .libraries
            .iter()
            .flat_map(|l| names(&l.manifest))
            .collect();
        if all.is_empty() {
            "none".to_string()
        } else {
            all.join(", ")
        }
    }
}
