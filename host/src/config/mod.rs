//! The one TOML file users configure Murmur with.
//!
//! [`raw`] mirrors the file (`deny_unknown_fields`, spans kept); [`Config::load`] resolves it
//! into the validated [`Config`] the program uses, reporting every problem at once with its
//! file, line and key. Relative paths are resolved against the config file's folder. Every
//! key and default is documented in `docs/config.md`.

pub mod raw;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use murmur_plugin_api::Hook;
use serde::Deserialize;
use toml::Spanned;

use crate::knowledge::KnowledgeSettings;
use crate::model::local::{LocalSettings, Sampling};
use crate::model::openai::{self, OpenAiSettings};
use crate::session::compaction::{CompactionSettings, Strategy};

use raw::{
    RawAnalyzer, RawConfig, RawContext, RawKnowledge, RawModel, RawServer, RawStore, RawTool,
};

/// Default `system_prompt`.
pub const DEFAULT_SYSTEM_PROMPT: &str = "You are a helpful assistant.";
/// Default `max_steps` (SPEC: a turn has 1..=max_steps steps).
pub const DEFAULT_MAX_STEPS: u32 = 15;
/// Default `defer_timeout` (SPEC S22).
pub const DEFAULT_DEFER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default hard analyzer `timeout` (SPEC S23).
pub const DEFAULT_ANALYZER_TIMEOUT: Duration = Duration::from_secs(30);
/// Default tool `timeout`.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Name under which `[model]` appears in [`Config::models`].
pub const DEFAULT_MODEL_NAME: &str = "default";

/// The local model used when the config names none: the default GGUF file relative to the
/// current directory, greedy sampling, up to 4 threads.
pub fn default_local() -> LocalSettings {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4) as u32;
    LocalSettings {
        path: crate::model::local::default_model_path(),
        context_length: None,
        threads,
        sampling: Sampling::default(),
        kv_cache_reuse: true,
    }
}

/// Default characters per streamed chunk of the scripted model.
pub const DEFAULT_CHUNK_CHARS: usize = 8;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Folder scanned for plugin libraries.
    pub plugins_dir: PathBuf,
    /// Load plugins even from a folder or file that other users can write to.
    pub allow_insecure_plugins: bool,
    /// Base system prompt of every session.
    pub system_prompt: String,
    /// Most model calls in one turn.
    pub max_steps: u32,
    /// Session-wide: how long `turn_complete` waits for `turn_start`/`step` work (S22).
    pub defer_timeout: Duration,
    /// Session-wide default hard timeout of an analyzer run (S23).
    pub analyzer_timeout: Duration,
    /// Default timeout of a tool call.
    pub tool_timeout: Duration,
    /// Whether user messages arriving mid-turn join the running turn (S30).
    pub steering: bool,
    /// Where instructions-lane text goes (S6).
    pub instructions_placement: InstructionsPlacement,
    /// Where to record every model input (S40), if anywhere.
    pub record_model_input: Option<PathBuf>,
    /// Every configured model by name; `[model]` is named `default`.
    pub models: BTreeMap<String, ModelConfig>,
    /// The name of the chat model in `models`.
    pub chat_model: String,
    /// `[[analyzer]]` tables, in file order.
    pub analyzers: Vec<AnalyzerConfig>,
    /// `[[tool]]` tables, in file order.
    pub tools: Vec<ToolConfig>,
    /// `[context]`: what to do when a step's input does not fit the context window.
    pub context: CompactionSettings,
    /// `[knowledge]`: the knowledge base behind the `search` service, if configured.
    pub knowledge: Option<KnowledgeSettings>,
    /// `[server]`: how `murmur serve` listens and what it accepts.
    pub server: ServerSettings,
    /// `[store]`: where `murmur serve` keeps sessions across restarts.
    pub store: StoreSettings,
}

/// `[store]`: where `murmur serve` keeps its sessions (S37).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// In memory: sessions end with the process.
    Memory,
    /// An SQLite file (the default: `.murmur/sessions.db` beside the config file).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database that several hosts share.
    Postgres(crate::store::postgres::PgSettings),
}

/// `[server]`: how `murmur serve` listens and what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// Address and port; loopback unless the config says otherwise.
    pub listen: std::net::SocketAddr,
    /// The environment variable holding the bearer token; `None` = no authentication.
    pub auth_token_env: Option<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Longest user message, in characters.
    pub max_message_chars: usize,
    /// Most sessions open at once.
    pub max_sessions: usize,
    /// Most messages in one `/v1/chat/completions` request.
    pub max_request_messages: usize,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8080)),
            auth_token_env: None,
            max_body_bytes: 1024 * 1024,
            max_message_chars: 32_000,
            max_sessions: 256,
            max_request_messages: 1000,
        }
    }
}

/// SPEC S6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstructionsPlacement {
    /// Appended to the system prompt of the next turn (S1).
    System,
    /// One system message right before the turn's user message, so the prefix stays cached.
    BeforeLastUser,
}

/// `[model]` or `[models.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// A GGUF model run in-process (the default).
    Local(LocalSettings),
    /// Any OpenAI-compatible chat-completions server.
    OpenAi(OpenAiSettings),
    /// Replies read from a JSON Lines file, one per model call.
    Scripted {
        /// The script file.
        script: PathBuf,
        /// Characters per streamed chunk.
        chunk_chars: usize,
    },
}

/// One `[[analyzer]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzerConfig {
    /// Instance name, unique in the file.
    pub name: String,
    /// Export name of the analyzer in a plugin library.
    pub plugin: String,
    /// Whether it runs at all.
    pub enabled: bool,
    /// Hooks override; `None` = the plugin's defaults.
    pub hooks: Option<Vec<Hook>>,
    /// Hard timeout of one run.
    pub timeout: Duration,
    /// How long `turn_complete` waits for this analyzer's `turn_start`/`step` work.
    pub defer_timeout: Duration,
    /// Injections still queued this many turn boundaries after their turn are dropped.
    pub ttl_turns: Option<u32>,
    /// Run turn hooks only on turns divisible by this number.
    pub every_n_turns: u32,
    /// The model its `complete` calls use unless they name one (a key of `models`).
    pub model: Option<String>,
    /// The SHA-256 (lowercase hex) its plugin file must have; a file that differs is refused.
    pub sha256: Option<String>,
    /// Where it runs.
    pub isolation: Isolation,
    /// Crashes or timeouts in a row that put it in quarantine (0: never).
    pub quarantine_after: u32,
    /// `[analyzer.config]` as JSON.
    pub config: serde_json::Value,
    /// Line of the table in the file.
    pub line: usize,
}

/// Where an analyzer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// In the host process, on its blocking pool (the default: no overhead).
    InProcess,
    /// In a `murmur plugin-runner` child that the host kills at the hard timeout and
    /// restarts after a crash.
    Process {
        /// The child's address-space limit in bytes.
        memory_limit: u64,
    },
}

/// Default `memory_limit_mb` of a process-isolated analyzer.
pub const DEFAULT_MEMORY_LIMIT_MB: u32 = 1024;
/// Default `quarantine_after`.
pub const DEFAULT_QUARANTINE_AFTER: u32 = 3;

/// One `[[tool]]` table.
#[derive(Debug, Clone)]
pub struct ToolConfig {
    /// Name the model sees, unique in the file.
    pub name: String,
    /// Export name of the tool in a plugin library.
    pub plugin: String,
    /// Whether the model is offered it.
    pub enabled: bool,
    /// Timeout of one call.
    pub timeout: Duration,
    /// The SHA-256 (lowercase hex) its plugin file must have; a file that differs is refused.
    pub sha256: Option<String>,
    /// `[tool.config]` as JSON.
    pub config: serde_json::Value,
    /// Line of the table in the file.
    pub line: usize,
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key path (`analyzer[2].timeout`), or empty for the file as a whole.
    pub key: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "invalid config ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: path.to_path_buf(),
                line: None,
                key: String::new(),
                message: format!("cannot read the config file: {e}"),
            }])
        })?;
        Config::parse(&text, path)
    }

    /// Validates config text as if read from `path` (used for relative paths and errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
        let mut r = Resolver {
            file: path.to_path_buf(),
            base: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            text,
            errors: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let line = e.span().map(|s| r.line_of(s.start));
                let mut message = e.message().to_string();
                let key = unknown_field_key(&message).unwrap_or_default();
                if TOP_LEVEL_KEYS.contains(&key.as_str()) {
                    message
                        .push_str(" (top-level keys must come before the first `[table]` header)");
                }
                return Err(ConfigErrors(vec![ConfigError {
                    file: r.file,
                    line,
                    key,
                    message,
                }]));
            }
        };
        let config = r.resolve(raw);
        if r.errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(r.errors))
        }
    }

    /// The config of the analyzer instance with this name.
    pub fn analyzer(&self, name: &str) -> Option<&AnalyzerConfig> {
        self.analyzers.iter().find(|a| a.name == name)
    }
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "plugins_dir",
    "allow_insecure_plugins",
    "quarantine_after",
    "system_prompt",
    "max_steps",
    "defer_timeout",
    "analyzer_timeout",
    "tool_timeout",
    "steering",
    "instructions_placement",
    "record_model_input",
    "model",
];

/// The model providers this build offers.
pub const PROVIDERS: &[&str] = &["local", "openai", "scripted"];

/// toml reports unknown keys as "unknown field `x`, expected ..."; pull the key out.
fn unknown_field_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

struct Resolver<'t> {
    file: PathBuf,
    base: PathBuf,
    text: &'t str,
    errors: Vec<ConfigError>,
}

impl Resolver<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    fn error(
        &mut self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let line = span.map(|s| self.line_of(s.start));
        self.errors.push(ConfigError {
            file: self.file.clone(),
            line,
            key: key.into(),
            message: message.into(),
        });
    }

    fn path(&self, value: &str) -> PathBuf {
        let p = Path::new(value);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn duration(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Duration {
        let Some(v) = value else { return default };
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.error(Some(v.span()), key, "must be longer than zero");
                default
            }
            Err(e) => {
                self.error(
                    Some(v.span()),
                    key,
                    format!(
                        "`{}` is not a duration ({e}); write e.g. \"250ms\", \"5s\", \"1m\"",
                        v.get_ref()
                    ),
                );
                default
            }
        }
    }

    /// A number between `min` and `max`; `None` when absent or out of range (reported).
    fn number_in(
        &mut self,
        value: Option<&Spanned<f64>>,
        key: &str,
        min: f64,
        max: f64,
    ) -> Option<f32> {
        let v = value?;
        let x = *v.get_ref();
        if !(min..=max).contains(&x) {
            self.error(
                Some(v.span()),
                key,
                format!("must be between {min} and {max}"),
            );
            return None;
        }
        Some(x as f32)
    }

    fn positive(&mut self, value: Option<&Spanned<i64>>, key: &str, min: i64, default: u32) -> u32 {
        let Some(v) = value else { return default };
        match u32::try_from(*v.get_ref()) {
            Ok(n) if i64::from(n) >= min => n,
            _ => {
                self.error(
                    Some(v.span()),
                    key,
                    format!("must be a whole number of at least {min}"),
                );
                default
            }
        }
    }

    fn resolve(&mut self, raw: RawConfig) -> Config {
        let plugins_dir = raw
            .plugins_dir
            .as_ref()
            .map(|p| self.path(p.get_ref()))
            .unwrap_or_else(|| self.path("plugins"));
        let max_steps = self.positive(raw.max_steps.as_ref(), "max_steps", 1, DEFAULT_MAX_STEPS);
        let defer_timeout = self.duration(
            raw.defer_timeout.as_ref(),
            "defer_timeout",
            DEFAULT_DEFER_TIMEOUT,
        );
        let analyzer_timeout = self.duration(
            raw.analyzer_timeout.as_ref(),
            "analyzer_timeout",
            DEFAULT_ANALYZER_TIMEOUT,
        );
        let tool_timeout = self.duration(
            raw.tool_timeout.as_ref(),
            "tool_timeout",
            DEFAULT_TOOL_TIMEOUT,
        );
        let instructions_placement = match raw.instructions_placement.as_ref() {
            None => InstructionsPlacement::System,
            Some(v) => match v.get_ref().as_str() {
                "system" => InstructionsPlacement::System,
                "before_last_user" => InstructionsPlacement::BeforeLastUser,
                other => {
                    self.error(
                        Some(v.span()),
                        "instructions_placement",
                        format!("unknown placement `{other}`; expected \"system\" or \"before_last_user\""),
                    );
                    InstructionsPlacement::System
                }
            },
        };
        let context = self.context(raw.context.as_ref());
        let knowledge = raw.knowledge.as_ref().map(|k| self.knowledge(k));
        let server = self.server(raw.server.as_ref());
        let store = self.store(raw.store.as_ref());
        let (models, chat_model) = self.models(raw.model, raw.models);
        let quarantine_after = self.positive(
            raw.quarantine_after.as_ref(),
            "quarantine_after",
            0,
            DEFAULT_QUARANTINE_AFTER,
        );
        let analyzers: Vec<AnalyzerConfig> = raw
            .analyzers
            .into_iter()
            .enumerate()
            .map(|(i, a)| self.analyzer(i, a, defer_timeout, analyzer_timeout, quarantine_after))
            .collect();
        let tools: Vec<ToolConfig> = raw
            .tools
            .into_iter()
            .enumerate()
            .map(|(i, t)| self.tool(i, t, tool_timeout))
            .collect();
        for (i, a) in analyzers.iter().enumerate() {
            if let Some(m) = a.model.as_ref().filter(|m| !models.contains_key(*m)) {
                let known: Vec<&str> = models.keys().map(String::as_str).collect();
                self.errors.push(ConfigError {
                    file: self.file.clone(),
                    line: Some(a.line),
                    key: format!("analyzer[{i}].model"),
                    message: format!("no `[models.{m}]` table (defined: {})", known.join(", ")),
                });
            }
        }
        self.unique(
            analyzers.iter().map(|a| (a.name.as_str(), a.line)),
            "analyzer",
        );
        self.unique(tools.iter().map(|t| (t.name.as_str(), t.line)), "tool");
        Config {
            file: self.file.clone(),
            plugins_dir,
            allow_insecure_plugins: raw.allow_insecure_plugins.unwrap_or(false),
            system_prompt: raw
                .system_prompt
                .unwrap_or_else(|| DEFAULT_SYSTEM_PROMPT.to_string()),
            max_steps,
            defer_timeout,
            analyzer_timeout,
            tool_timeout,
            steering: raw.steering.unwrap_or(true),
            instructions_placement,
            record_model_input: raw
                .record_model_input
                .as_ref()
                .map(|p| self.path(p.get_ref())),
            models,
            chat_model,
            analyzers,
            tools,
            context,
            knowledge,
            server,
            store,
        }
    }

    fn store(&mut self, raw: Option<&RawStore>) -> StoreSettings {
        let kind = raw
            .and_then(|r| r.kind.as_ref())
            .map(|k| (k.get_ref().as_str(), k.span()));
        let kind_name = kind.as_ref().map_or("sqlite", |(k, _)| k);
        // Keys that belong to another kind of store.
        if let Some(raw) = raw {
            let postgres_keys = [
                ("url_env", raw.url_env.as_ref().map(|v| v.span())),
                ("lease_ttl", raw.lease_ttl.as_ref().map(|v| v.span())),
                ("lease_wait", raw.lease_wait.as_ref().map(|v| v.span())),
                ("pool_size", raw.pool_size.as_ref().map(|v| v.span())),
                ("tls_ca_file", raw.tls_ca_file.as_ref().map(|v| v.span())),
            ];
            if kind_name != "postgres" {
                for (key, span) in postgres_keys {
                    if let Some(span) = span {
                        self.error(
                            Some(span),
                            format!("store.{key}"),
                            format!("only a PostgreSQL store has `{key}`; add kind = \"postgres\" or remove it"),
                        );
                    }
                }
            }
            if let Some(p) = raw.path.as_ref().filter(|_| kind_name != "sqlite") {
                self.error(
                    Some(p.span()),
                    "store.path",
                    format!(
                        "a {kind_name} store has no file; remove `path` or use kind = \"sqlite\""
                    ),
                );
            }
        }
        match kind {
            None | Some(("sqlite", _)) => {
                let path = raw
                    .and_then(|r| r.path.as_ref())
                    .map(|p| {
                        if p.get_ref().trim().is_empty() {
                            self.error(Some(p.span()), "store.path", "must name a file");
                        }
                        self.path(p.get_ref())
                    })
                    .unwrap_or_else(|| self.path(".murmur/sessions.db"));
                StoreSettings::Sqlite { path }
            }
            Some(("memory", _)) => StoreSettings::Memory,
            Some(("postgres", _)) => {
                let d = crate::store::postgres::PgSettings::default();
                let Some(raw) = raw else {
                    return StoreSettings::Postgres(d);
                };
                let url_env = match &raw.url_env {
                    None => d.url_env.clone(),
                    Some(v) => {
                        let name = v.get_ref().trim();
                        if name.is_empty() || name.contains('=') || name.contains("://") {
                            self.error(
                                Some(v.span()),
                                "store.url_env",
                                "must name the environment variable that holds the database URL, e.g. \"MURMUR_DATABASE_URL\"",
                            );
                        }
                        name.to_string()
                    }
                };
                let lease_ttl =
                    self.duration(raw.lease_ttl.as_ref(), "store.lease_ttl", d.lease_ttl);
                if let Some(v) = raw
                    .lease_ttl
                    .as_ref()
                    .filter(|_| lease_ttl < Duration::from_secs(1))
                {
                    self.error(
                        Some(v.span()),
                        "store.lease_ttl",
                        "must be at least 1s: the lease is renewed every third of it",
                    );
                }
                StoreSettings::Postgres(crate::store::postgres::PgSettings {
                    url_env,
                    lease_ttl,
                    lease_wait: self.duration(
                        raw.lease_wait.as_ref(),
                        "store.lease_wait",
                        d.lease_wait,
                    ),
                    pool_size: self.positive(
                        raw.pool_size.as_ref(),
                        "store.pool_size",
                        1,
                        d.pool_size as u32,
                    ) as usize,
                    tls_ca_file: raw.tls_ca_file.as_ref().map(|p| {
                        if p.get_ref().trim().is_empty() {
                            self.error(
                                Some(p.span()),
                                "store.tls_ca_file",
                                "must name a PEM file of certificate authorities",
                            );
                        }
                        self.path(p.get_ref())
                    }),
                })
            }
            Some((other, span)) => {
                self.error(
                    Some(span),
                    "store.kind",
                    format!(
                        "unknown store `{other}`; expected \"sqlite\", \"postgres\" or \"memory\""
                    ),
                );
                StoreSettings::Memory
            }
        }
    }

    fn server(&mut self, raw: Option<&RawServer>) -> ServerSettings {
        let d = ServerSettings::default();
        let Some(raw) = raw else { return d };
        let listen = match &raw.listen {
            None => d.listen,
            Some(v) => match v.get_ref().parse() {
                Ok(a) => a,
                Err(_) => {
                    self.error(
                        Some(v.span()),
                        "server.listen",
                        format!(
                            "`{}` is not an address and port; write e.g. \"127.0.0.1:8080\"",
                            v.get_ref()
                        ),
                    );
                    d.listen
                }
            },
        };
        let auth_token_env = raw.auth_token_env.as_ref().and_then(|v| {
            let name = v.get_ref().trim();
            if name.is_empty() || name.contains('=') {
                self.error(
                    Some(v.span()),
                    "server.auth_token_env",
                    "must name an environment variable, e.g. \"MURMUR_TOKEN\"",
                );
                None
            } else {
                Some(name.to_string())
            }
        });
        ServerSettings {
            listen,
            auth_token_env,
            max_body_bytes: self.positive(
                raw.max_body_bytes.as_ref(),
                "server.max_body_bytes",
                1024,
                d.max_body_bytes as u32,
            ) as usize,
            max_message_chars: self.positive(
                raw.max_message_chars.as_ref(),
                "server.max_message_chars",
                1,
                d.max_message_chars as u32,
            ) as usize,
            max_sessions: self.positive(
                raw.max_sessions.as_ref(),
                "server.max_sessions",
                1,
                d.max_sessions as u32,
            ) as usize,
            max_request_messages: self.positive(
                raw.max_request_messages.as_ref(),
                "server.max_request_messages",
                1,
                d.max_request_messages as u32,
            ) as usize,
        }
    }

    fn knowledge(&mut self, raw: &RawKnowledge) -> KnowledgeSettings {
        let d = KnowledgeSettings::new(self.path(raw.path.get_ref()), self.path(".murmur/index"));
        if raw.path.get_ref().trim().is_empty() {
            self.error(
                Some(raw.path.span()),
                "knowledge.path",
                "must name a folder",
            );
        }
        KnowledgeSettings {
            index: raw
                .index
                .as_ref()
                .map(|p| self.path(p.get_ref()))
                .unwrap_or(d.index),
            max_passage_chars: self.positive(
                raw.max_passage_chars.as_ref(),
                "knowledge.max_passage_chars",
                200,
                d.max_passage_chars as u32,
            ) as usize,
            tool: raw.tool.unwrap_or(d.tool),
            tool_results: self.positive(
                raw.tool_results.as_ref(),
                "knowledge.tool_results",
                1,
                d.tool_results,
            ),
            embedding_model: raw.embedding_model.as_ref().map(|p| self.path(p.get_ref())),
            semantic_weight: self
                .number_in(
                    raw.semantic_weight.as_ref(),
                    "knowledge.semantic_weight",
                    0.0,
                    1.0,
                )
                .unwrap_or(d.semantic_weight),
            ..d
        }
    }

    fn context(&mut self, raw: Option<&RawContext>) -> CompactionSettings {
        let d = CompactionSettings::default();
        let Some(raw) = raw else { return d };
        let strategy = match raw.compaction.as_ref() {
            None => d.strategy,
            Some(v) => match v.get_ref().as_str() {
                "summarize" => Strategy::Summarize,
                "drop_oldest" => Strategy::DropOldest,
                "off" => Strategy::Off,
                other => {
                    self.error(
                        Some(v.span()),
                        "context.compaction",
                        format!(
                            "unknown compaction `{other}`; expected \"summarize\", \"drop_oldest\" or \"off\""
                        ),
                    );
                    d.strategy
                }
            },
        };
        CompactionSettings {
            strategy,
            reserve_tokens: raw
                .reserve_tokens
                .as_ref()
                .map(|v| self.positive(Some(v), "context.reserve_tokens", 1, 0)),
            summary_max_tokens: self.positive(
                raw.summary_max_tokens.as_ref(),
                "context.summary_max_tokens",
                16,
                d.summary_max_tokens,
            ),
        }
    }

    fn unique<'a>(&mut self, names: impl Iterator<Item = (&'a str, usize)>, table: &str) {
        let mut seen: Vec<(&str, usize)> = Vec::new();
        for (i, (name, line)) in names.enumerate() {
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                self.errors.push(ConfigError {
                    file: self.file.clone(),
                    line: Some(line),
                    key: format!("{table}[{i}].name"),
                    message: format!("`{name}` is already the name of the {table} on line {first}; names must be unique"),
                });
            } else {
                seen.push((name, line));
            }
        }
    }

    /// Resolves `[model]` / `model = "NAME"` and `[models.NAME]` into the named models and
    /// the name of the chat model.
    fn models(
        &mut self,
        model: Option<Spanned<toml::Value>>,
        named: BTreeMap<String, Spanned<RawModel>>,
    ) -> (BTreeMap<String, ModelConfig>, String) {
        let mut models = BTreeMap::new();
        for (name, raw) in named {
            let m = self.model(&format!("models.{name}"), raw);
            models.insert(name, m);
        }
        let chat = match model {
            None => {
                models
                    .entry(DEFAULT_MODEL_NAME.to_string())
                    .or_insert_with(|| ModelConfig::Local(default_local()));
                DEFAULT_MODEL_NAME.to_string()
            }
            Some(v) => {
                let span = v.span();
                match v.into_inner() {
                    toml::Value::String(name) => {
                        if !models.contains_key(&name) {
                            let known: Vec<&str> = models.keys().map(String::as_str).collect();
                            self.error(
                                Some(span),
                                "model",
                                format!(
                                    "no `[models.{name}]` table (defined: {})",
                                    if known.is_empty() {
                                        "none".to_string()
                                    } else {
                                        known.join(", ")
                                    }
                                ),
                            );
                        }
                        name
                    }
                    toml::Value::Table(_) => {
                        // Parse the table again from the text so that its keys keep their
                        // spans (a `toml::Value` has none).
                        #[derive(Deserialize)]
                        struct ModelTable {
                            model: Spanned<RawModel>,
                        }
                        match toml::from_str::<ModelTable>(self.text) {
                            Ok(t) => {
                                let m = self.model("model", t.model);
                                if models.contains_key(DEFAULT_MODEL_NAME) {
                                    self.error(
                                        Some(span.clone()),
                                        "model",
                                        format!("`[model]` is the model named `{DEFAULT_MODEL_NAME}`, and `[models.{DEFAULT_MODEL_NAME}]` defines it too; keep one of them"),
                                    );
                                }
                                models.insert(DEFAULT_MODEL_NAME.to_string(), m);
                            }
                            Err(e) => {
                                let line = e.span().map(|s| self.line_of(s.start));
                                let key = unknown_field_key(e.message())
                                    .unwrap_or_else(|| "model".into());
                                let mut message = e.message().to_string();
                                if TOP_LEVEL_KEYS.contains(&key.as_str()) {
                                    message.push_str(" (top-level keys must come before the first `[table]` header)");
                                }
                                self.errors.push(ConfigError {
                                    file: self.file.clone(),
                                    line: line.or(Some(self.line_of(span.start))),
                                    key,
                                    message,
                                });
                            }
                        }
                        DEFAULT_MODEL_NAME.to_string()
                    }
                    _ => {
                        self.error(
                            Some(span),
                            "model",
                            "must be a `[model]` table or the name of a `[models.NAME]` table",
                        );
                        DEFAULT_MODEL_NAME.to_string()
                    }
                }
            }
        };
        (models, chat)
    }

    fn model(&mut self, key: &str, m: Spanned<RawModel>) -> ModelConfig {
        let span = m.span();
        let m = m.into_inner();
        let provider = m.provider.get_ref().clone();
        let k = |field: &str| format!("{key}.{field}");
        // Which providers each optional key applies to; any other use is an error.
        const LOCAL: &[&str] = &["local"];
        const SCRIPTED: &[&str] = &["scripted"];
        const OPENAI: &[&str] = &["openai"];
        const BOTH: &[&str] = &["local", "openai"];
        type KeyUse<'a> = (&'a str, Option<Range<usize>>, &'a [&'a str]);
        let keys: [KeyUse; 18] = [
            ("script", m.script.as_ref().map(|v| v.span()), SCRIPTED),
            (
                "chunk_chars",
                m.chunk_chars.as_ref().map(|v| v.span()),
                SCRIPTED,
            ),
            ("path", m.path.as_ref().map(|v| v.span()), LOCAL),
            ("threads", m.threads.as_ref().map(|v| v.span()), LOCAL),
            (
                "kv_cache_reuse",
                m.kv_cache_reuse.as_ref().map(|v| v.span()),
                LOCAL,
            ),
            ("top_k", m.top_k.as_ref().map(|v| v.span()), LOCAL),
            (
                "repeat_penalty",
                m.repeat_penalty.as_ref().map(|v| v.span()),
                LOCAL,
            ),
            ("base_url", m.base_url.as_ref().map(|v| v.span()), OPENAI),
            ("model", m.model.as_ref().map(|v| v.span()), OPENAI),
            (
                "api_key_env",
                m.api_key_env.as_ref().map(|v| v.span()),
                OPENAI,
            ),
            ("timeout", m.timeout.as_ref().map(|v| v.span()), OPENAI),
            (
                "max_retries",
                m.max_retries.as_ref().map(|v| v.span()),
                OPENAI,
            ),
            ("stream", m.stream.as_ref().map(|v| v.span()), OPENAI),
            (
                "context_length",
                m.context_length.as_ref().map(|v| v.span()),
                BOTH,
            ),
            (
                "temperature",
                m.temperature.as_ref().map(|v| v.span()),
                BOTH,
            ),
            ("top_p", m.top_p.as_ref().map(|v| v.span()), BOTH),
            ("seed", m.seed.as_ref().map(|v| v.span()), BOTH),
            ("max_tokens", m.max_tokens.as_ref().map(|v| v.span()), BOTH),
        ];
        if PROVIDERS.contains(&provider.as_str()) {
            for (field, present, allowed) in keys {
                if let Some(sp) = present.filter(|_| !allowed.contains(&provider.as_str())) {
                    let which: Vec<String> = allowed.iter().map(|p| format!("\"{p}\"")).collect();
                    self.error(
                        Some(sp),
                        k(field),
                        format!(
                            "applies to provider{} {} only (this model uses \"{provider}\")",
                            if which.len() > 1 { "s" } else { "" },
                            which.join(" and ")
                        ),
                    );
                }
            }
            if m.stop.is_some() && provider == "scripted" {
                self.error(
                    Some(span.clone()),
                    k("stop"),
                    "applies to providers \"local\" and \"openai\" only (this model uses \"scripted\")",
                );
            }
        }
        let float = |this: &mut Self, v: &Option<Spanned<f64>>, field: &str, min: f64, max: f64| {
            this.number_in(v.as_ref(), &k(field), min, max)
        };
        match provider.as_str() {
            "scripted" => {
                let script = match &m.script {
                    Some(s) => self.path(s.get_ref()),
                    None => {
                        self.error(
                            Some(span),
                            k("script"),
                            "the scripted provider needs `script = \"FILE.jsonl\"`",
                        );
                        PathBuf::new()
                    }
                };
                let chunk_chars = self.positive(
                    m.chunk_chars.as_ref(),
                    &k("chunk_chars"),
                    1,
                    DEFAULT_CHUNK_CHARS as u32,
                ) as usize;
                ModelConfig::Scripted {
                    script,
                    chunk_chars,
                }
            }
            "local" => {
                let defaults = default_local();
                let d = &defaults.sampling;
                let sampling = Sampling {
                    temperature: float(self, &m.temperature, "temperature", 0.0, 2.0)
                        .unwrap_or(d.temperature),
                    top_p: float(self, &m.top_p, "top_p", 0.0, 1.0).unwrap_or(d.top_p),
                    top_k: self
                        .positive(m.top_k.as_ref(), &k("top_k"), 0, d.top_k.max(0) as u32)
                        .min(i32::MAX as u32) as i32,
                    repeat_penalty: float(self, &m.repeat_penalty, "repeat_penalty", 0.5, 2.0)
                        .unwrap_or(d.repeat_penalty),
                    seed: self.positive(m.seed.as_ref(), &k("seed"), 0, d.seed),
                    max_tokens: self.positive(
                        m.max_tokens.as_ref(),
                        &k("max_tokens"),
                        1,
                        d.max_tokens,
                    ),
                    stop: m.stop.clone().unwrap_or_default(),
                };
                ModelConfig::Local(LocalSettings {
                    path: m
                        .path
                        .as_ref()
                        .map(|p| self.path(p.get_ref()))
                        .unwrap_or(defaults.path),
                    context_length: m
                        .context_length
                        .as_ref()
                        .map(|c| self.positive(Some(c), &k("context_length"), 256, 2048)),
                    threads: self.positive(m.threads.as_ref(), &k("threads"), 1, defaults.threads),
                    sampling,
                    kv_cache_reuse: m.kv_cache_reuse.as_ref().is_none_or(|v| *v.get_ref()),
                })
            }
            "openai" => {
                let base_url = match &m.base_url {
                    Some(u) => {
                        let url = u.get_ref().trim().to_string();
                        if !(url.starts_with("http://") || url.starts_with("https://")) {
                            self.error(
                                Some(u.span()),
                                k("base_url"),
                                format!("`{url}` is not an http:// or https:// URL"),
                            );
                        }
                        url
                    }
                    None => {
                        self.error(
                            Some(span.clone()),
                            k("base_url"),
                            "the openai provider needs the server's API root, e.g. `base_url = \"http://127.0.0.1:8080/v1\"`",
                        );
                        String::new()
                    }
                };
                let model = match &m.model {
                    Some(name) if !name.get_ref().trim().is_empty() => {
                        name.get_ref().trim().to_string()
                    }
                    Some(name) => {
                        self.error(Some(name.span()), k("model"), "must not be empty");
                        String::new()
                    }
                    None => {
                        self.error(
                            Some(span.clone()),
                            k("model"),
                            "the openai provider needs the model name the server knows, e.g. `model = \"gpt-4o-mini\"`",
                        );
                        String::new()
                    }
                };
                if let Some(var) = m
                    .api_key_env
                    .as_ref()
                    .filter(|v| v.get_ref().trim().is_empty())
                {
                    self.error(
                        Some(var.span()),
                        k("api_key_env"),
                        "must name an environment variable",
                    );
                }
                ModelConfig::OpenAi(OpenAiSettings {
                    base_url,
                    model,
                    api_key_env: m
                        .api_key_env
                        .as_ref()
                        .map(|v| v.get_ref().trim().to_string()),
                    context_length: m
                        .context_length
                        .as_ref()
                        .map(|c| self.positive(Some(c), &k("context_length"), 256, 0)),
                    timeout: self.duration(
                        m.timeout.as_ref(),
                        &k("timeout"),
                        openai::DEFAULT_TIMEOUT,
                    ),
                    max_retries: self.positive(
                        m.max_retries.as_ref(),
                        &k("max_retries"),
                        0,
                        openai::DEFAULT_MAX_RETRIES,
                    ),
                    stream: m.stream.as_ref().map(|s| *s.get_ref()).unwrap_or(true),
                    temperature: float(self, &m.temperature, "temperature", 0.0, 2.0),
                    top_p: float(self, &m.top_p, "top_p", 0.0, 1.0),
                    max_tokens: m
                        .max_tokens
                        .as_ref()
                        .map(|n| self.positive(Some(n), &k("max_tokens"), 1, 0)),
                    seed: m
                        .seed
                        .as_ref()
                        .map(|n| self.positive(Some(n), &k("seed"), 0, 0)),
                    stop: m.stop.clone().unwrap_or_default(),
                })
            }
            other => {
                self.error(
                    Some(m.provider.span()),
                    k("provider"),
                    format!(
                        "unknown provider `{other}`; this build offers {}",
                        PROVIDERS
                            .iter()
                            .map(|p| format!("\"{p}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                ModelConfig::Local(default_local())
            }
        }
    }

    fn analyzer(
        &mut self,
        i: usize,
        a: Spanned<RawAnalyzer>,
        defer: Duration,
        timeout: Duration,
        quarantine_after: u32,
    ) -> AnalyzerConfig {
        let line = self.line_of(a.span().start);
        let a = a.into_inner();
        let key = |k: &str| format!("analyzer[{i}].{k}");
        let name = a.name.get_ref().trim().to_string();
        if name.is_empty() {
            self.error(Some(a.name.span()), key("name"), "must not be empty");
        }
        let hooks = a.hooks.as_ref().map(|hooks| {
            let mut parsed = Vec::new();
            for h in hooks.get_ref() {
                match Hook::parse(h.get_ref()) {
                    Some(hook) if !parsed.contains(&hook) => parsed.push(hook),
                    Some(_) => {}
                    None => self.error(
                        Some(h.span()),
                        key("hooks"),
                        format!(
                            "unknown hook `{}`; expected one of {}",
                            h.get_ref(),
                            Hook::ALL.map(Hook::as_str).join(", ")
                        ),
                    ),
                }
            }
            parsed
        });
        let ttl_turns = a
            .ttl_turns
            .as_ref()
            .map(|t| self.positive(Some(t), &key("ttl_turns"), 0, 0));
        AnalyzerConfig {
            plugin: a
                .plugin
                .map(|p| p.into_inner())
                .unwrap_or_else(|| name.clone()),
            enabled: a.enabled.unwrap_or(true),
            hooks,
            timeout: self.duration(a.timeout.as_ref(), &key("timeout"), timeout),
            defer_timeout: self.duration(a.defer_timeout.as_ref(), &key("defer_timeout"), defer),
            ttl_turns,
            every_n_turns: self.positive(a.every_n_turns.as_ref(), &key("every_n_turns"), 1, 1),
            model: a.model.map(|m| m.into_inner()),
            sha256: self.sha256(a.sha256.as_ref(), &key("sha256")),
            isolation: self.isolation(
                a.isolation.as_ref(),
                a.memory_limit_mb.as_ref(),
                &key("isolation"),
                &key("memory_limit_mb"),
            ),
            quarantine_after: self.positive(
                a.quarantine_after.as_ref(),
                &key("quarantine_after"),
                0,
                quarantine_after,
            ),
            config: table_to_json(a.config),
            line,
            name,
        }
    }

    fn isolation(
        &mut self,
        kind: Option<&Spanned<String>>,
        memory: Option<&Spanned<i64>>,
        key: &str,
        memory_key: &str,
    ) -> Isolation {
        let process = match kind {
            None => false,
            Some(v) => {
                match v.get_ref().as_str() {
                    "in_process" => false,
                    "process" => true,
                    other => {
                        self.error(
                        Some(v.span()),
                        key,
                        format!("unknown isolation `{other}`; expected \"in_process\" or \"process\""),
                    );
                        false
                    }
                }
            }
        };
        if !process {
            if let Some(m) = memory {
                self.error(
                    Some(m.span()),
                    memory_key,
                    "only an analyzer with isolation = \"process\" has a memory limit",
                );
            }
            return Isolation::InProcess;
        }
        let mb = self.positive(memory, memory_key, 64, DEFAULT_MEMORY_LIMIT_MB);
        Isolation::Process {
            memory_limit: u64::from(mb) << 20,
        }
    }

    /// A pinned SHA-256: 64 hex digits, kept lowercase.
    fn sha256(&mut self, v: Option<&Spanned<String>>, key: &str) -> Option<String> {
        let v = v?;
        let hex = v.get_ref().trim().to_ascii_lowercase();
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            self.error(
                Some(v.span()),
                key,
                "must be 64 hex digits, the SHA-256 of the plugin file (`murmur plugins list` prints it; so does `sha256sum FILE`)",
            );
            return None;
        }
        Some(hex)
    }

    fn tool(&mut self, i: usize, t: Spanned<RawTool>, timeout: Duration) -> ToolConfig {
        let line = self.line_of(t.span().start);
        let t = t.into_inner();
        let name = t.name.get_ref().trim().to_string();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            self.error(
                Some(t.name.span()),
                format!("tool[{i}].name"),
                "tool names must be 1 to 64 characters of a-z, A-Z, 0-9, `_` or `-` (models reject others)",
            );
        }
        ToolConfig {
            plugin: t
                .plugin
                .map(|p| p.into_inner())
                .unwrap_or_else(|| name.clone()),
            enabled: t.enabled.unwrap_or(true),
            timeout: self.duration(t.timeout.as_ref(), &format!("tool[{i}].timeout"), timeout),
            sha256: self.sha256(t.sha256.as_ref(), &format!("tool[{i}].sha256")),
            config: table_to_json(t.config),
            line,
            name,
        }
    }
}

fn table_to_json(table: Option<toml::Table>) -> serde_json::Value {
    match table {
        Some(t) => serde_json::to_value(t).unwrap_or_default(),
        None => serde_json::Value::Object(Default::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigErrors> {
        Config::parse(text, Path::new("/etc/murmur/murmur.toml"))
    }

    const MINIMAL: &str = "[model]\nprovider = \"scripted\"\nscript = \"replies.jsonl\"\n";

    #[test]
    fn defaults_fill_every_optional_key() {
        let c = parse(MINIMAL).expect("minimal config is valid");
        assert_eq!(c.plugins_dir, Path::new("/etc/murmur/plugins"));
        assert_eq!(c.max_steps, 15);
        assert_eq!(c.defer_timeout, Duration::from_secs(5));
        assert_eq!(c.analyzer_timeout, Duration::from_secs(30));
        assert!(c.steering);
        assert_eq!(c.instructions_placement, InstructionsPlacement::System);
        assert_eq!(c.chat_model, "default");
        assert_eq!(
            c.models["default"],
            ModelConfig::Scripted {
                script: PathBuf::from("/etc/murmur/replies.jsonl"),
                chunk_chars: DEFAULT_CHUNK_CHARS
            }
        );
    }

    #[test]
    fn analyzer_tables_inherit_global_timeouts_and_pass_config_as_json() {
        let text = format!(
            "defer_timeout = \"2s\"\n{MINIMAL}[[analyzer]]\nname = \"notes\"\nplugin = \"configurable\"\nhooks = [\"turn_start\", \"step\"]\nttl_turns = 1\n[analyzer.config]\ntext = \"hi\"\ndelay_ms = 50\n"
        );
        let c = parse(&text).expect("valid");
        let a = &c.analyzers[0];
        assert_eq!(a.plugin, "configurable");
        assert_eq!(a.defer_timeout, Duration::from_secs(2));
        assert_eq!(a.timeout, Duration::from_secs(30));
        assert_eq!(a.hooks, Some(vec![Hook::TurnStart, Hook::Step]));
        assert_eq!(a.ttl_turns, Some(1));
        assert_eq!(a.config, serde_json::json!({"text": "hi", "delay_ms": 50}));
        assert_eq!(a.line, 5);
        assert_eq!(c.analyzers.len(), 1);
    }

    #[test]
    fn a_postgres_store_has_defaults_and_its_keys_are_checked() {
        let c = parse(&format!("{MINIMAL}[store]\nkind = \"postgres\"\n")).expect("valid");
        assert_eq!(
            c.store,
            StoreSettings::Postgres(crate::store::postgres::PgSettings::default())
        );
        let c = parse(&format!(
            "{MINIMAL}[store]\nkind = \"postgres\"\nurl_env = \"DB\"\nlease_ttl = \"3s\"\nlease_wait = \"1m\"\npool_size = 4\ntls_ca_file = \"certs/ca.pem\"\n"
        ))
        .expect("valid");
        let StoreSettings::Postgres(pg) = c.store else {
            panic!("{:?}", c.store)
        };
        assert_eq!(
            (
                pg.url_env.as_str(),
                pg.lease_ttl,
                pg.lease_wait,
                pg.pool_size
            ),
            ("DB", Duration::from_secs(3), Duration::from_secs(60), 4)
        );
        let ca = pg.tls_ca_file.expect("tls_ca_file");
        assert!(ca.ends_with("certs/ca.pem"), "{}", ca.display());
        let err = parse(&format!(
            "{MINIMAL}[store]\nkind = \"postgres\"\npath = \"x.db\"\nurl_env = \"postgres://u@h/db\"\nlease_ttl = \"500ms\"\n"
        ))
        .expect_err("three problems");
        let keys: Vec<_> = err.0.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            keys,
            [
                ("store.path", Some(6)),
                ("store.url_env", Some(7)),
                ("store.lease_ttl", Some(8))
            ],
            "{err}"
        );
        let err =
            parse(&format!("{MINIMAL}[store]\ntls_ca_file = \"ca.pem\"\n")).expect_err("sqlite");
        assert!(
            err.to_string()
                .contains("only a PostgreSQL store has `tls_ca_file`"),
            "{err}"
        );
        let err = parse(&format!("{MINIMAL}[store]\nlease_wait = \"5s\"\n")).expect_err("sqlite");
        assert!(
            err.to_string()
                .contains("only a PostgreSQL store has `lease_wait`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let err = parse(&format!(
            "{MINIMAL}\n[[analyzer]]\nname = \"a\"\ntimout = \"1s\"\n"
        ))
        .expect_err("typo");
        let e = &err.0[0];
        assert_eq!(e.key, "timout");
        assert_eq!(e.line, Some(7));
        assert!(
            e.to_string()
                .starts_with("/etc/murmur/murmur.toml:7: `timout`:"),
            "{e}"
        );
    }

    #[test]
    fn every_semantic_error_is_reported_at_once_with_its_line() {
        let text = format!(
            "max_steps = 0\ndefer_timeout = \"soon\"\n{MINIMAL}[[analyzer]]\nname = \"a\"\nhooks = [\"turn_end\"]\n[[analyzer]]\nname = \"a\"\n"
        );
        let err = parse(&text).expect_err("three problems");
        let keys: Vec<_> = err.0.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            keys,
            vec![
                ("max_steps", Some(1)),
                ("defer_timeout", Some(2)),
                ("analyzer[0].hooks", Some(8)),
                ("analyzer[1].name", Some(9)),
            ]
        );
    }

    #[test]
    fn a_top_level_key_inside_a_table_gets_a_hint() {
        let err = parse(&format!("{MINIMAL}steering = false\n")).expect_err("misplaced");
        assert_eq!(err.0[0].key, "steering");
        assert!(
            err.0[0].message.contains("top-level keys must come before"),
            "{}",
            err.0[0].message
        );
    }

    #[test]
    fn without_a_model_table_the_chat_uses_the_default_local_model() {
        let c = parse("").expect("valid");
        let ModelConfig::Local(local) = &c.models[&c.chat_model] else {
            panic!("local")
        };
        assert_eq!(
            local.path,
            Path::new("models/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        assert_eq!(local.sampling.temperature, 0.0);
    }

    #[test]
    fn named_models_can_serve_the_chat_and_analyzers() {
        let text = "model = \"small\"\n[models.small]\nprovider = \"local\"\npath = \"m.gguf\"\ntemperature = 0.7\nstop = [\"</s>\"]\n[models.judge]\nprovider = \"scripted\"\nscript = \"j.jsonl\"\n[[analyzer]]\nname = \"a\"\nmodel = \"judge\"\n";
        let c = parse(text).expect("valid");
        assert_eq!(c.chat_model, "small");
        let ModelConfig::Local(small) = &c.models["small"] else {
            panic!("local")
        };
        assert_eq!(small.path, Path::new("/etc/murmur/m.gguf"));
        assert_eq!(small.sampling.stop, vec!["</s>".to_string()]);
        assert!((small.sampling.temperature - 0.7).abs() < 1e-6);
        assert_eq!(c.analyzers[0].model.as_deref(), Some("judge"));
    }

    #[test]
    fn unknown_model_names_and_keys_of_another_provider_are_errors() {
        let text = "model = \"big\"\n[models.small]\nprovider = \"scripted\"\nscript = \"s.jsonl\"\nthreads = 2\n[[analyzer]]\nname = \"a\"\nmodel = \"nope\"\n";
        let err = parse(text).expect_err("three problems");
        let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["models.small.threads", "model", "analyzer[0].model"],
            "{err}"
        );
        assert!(err.0[0]
            .message
            .contains("applies to provider \"local\" only"));
    }

    #[test]
    fn unknown_provider_lists_the_available_ones() {
        let err = parse("[model]\nprovider = \"gpt\"\n").expect_err("bad provider");
        assert_eq!(err.0[0].key, "model.provider");
        assert!(
            err.0[0]
                .message
                .contains("\"local\", \"openai\", \"scripted\""),
            "{err}"
        );
        assert_eq!(err.0[0].line, Some(2));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("[model\nprovider = 1").expect_err("bad toml");
        assert_eq!(err.0[0].line, Some(1));
    }
}
