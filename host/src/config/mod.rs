//! The one TOML file users configure Murmur with.
//!
//! [`raw`] mirrors the file (`deny_unknown_fields`, spans kept); [`Config::load`] resolves it
//! into the validated [`Config`] the program uses, reporting every problem at once with its
//! file, line and key. Relative paths are resolved against the config file's folder. Every
//! key and default is documented in `docs/config.md`.

pub mod raw;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use murmur_plugin_api::Hook;
use toml::Spanned;

use raw::{RawAnalyzer, RawConfig, RawModel, RawTool};

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
/// Default characters per streamed chunk of the scripted model.
pub const DEFAULT_CHUNK_CHARS: usize = 8;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Folder scanned for plugin libraries.
    pub plugins_dir: PathBuf,
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
    /// The chat model.
    pub model: ModelConfig,
    /// `[[analyzer]]` tables, in file order.
    pub analyzers: Vec<AnalyzerConfig>,
    /// `[[tool]]` tables, in file order.
    pub tools: Vec<ToolConfig>,
}

/// SPEC S6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstructionsPlacement {
    /// Appended to the system prompt of the next turn (S1).
    System,
    /// One system message right before the turn's user message, so the prefix stays cached.
    BeforeLastUser,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    /// Replies read from a JSON Lines file, one per model call.
    Scripted {
        /// The script file.
        script: PathBuf,
        /// Characters per streamed chunk.
        chunk_chars: usize,
    },
}

/// One `[[analyzer]]` table.
#[derive(Debug, Clone)]
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
    /// `[analyzer.config]` as JSON.
    pub config: serde_json::Value,
    /// Line of the table in the file.
    pub line: usize,
}

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
    "system_prompt",
    "max_steps",
    "defer_timeout",
    "analyzer_timeout",
    "tool_timeout",
    "steering",
    "instructions_placement",
    "record_model_input",
];

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
        let model = match raw.model {
            Some(m) => self.model(m),
            None => {
                self.error(
                    None,
                    "model",
                    "missing `[model]` table; for example `[model]` with `provider = \"scripted\"` and `script = \"replies.jsonl\"`",
                );
                ModelConfig::Scripted {
                    script: PathBuf::new(),
                    chunk_chars: DEFAULT_CHUNK_CHARS,
                }
            }
        };
        let analyzers: Vec<AnalyzerConfig> = raw
            .analyzers
            .into_iter()
            .enumerate()
            .map(|(i, a)| self.analyzer(i, a, defer_timeout, analyzer_timeout))
            .collect();
        let tools: Vec<ToolConfig> = raw
            .tools
            .into_iter()
            .enumerate()
            .map(|(i, t)| self.tool(i, t, tool_timeout))
            .collect();
        self.unique(
            analyzers.iter().map(|a| (a.name.as_str(), a.line)),
            "analyzer",
        );
        self.unique(tools.iter().map(|t| (t.name.as_str(), t.line)), "tool");
        Config {
            file: self.file.clone(),
            plugins_dir,
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
            model,
            analyzers,
            tools,
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

    fn model(&mut self, m: Spanned<RawModel>) -> ModelConfig {
        let span = m.span();
        let m = m.into_inner();
        let provider = m.provider.get_ref().as_str();
        match provider {
            "scripted" => {
                let script = match &m.script {
                    Some(s) => self.path(s.get_ref()),
                    None => {
                        self.error(
                            Some(span),
                            "model.script",
                            "the scripted provider needs `script = \"FILE.jsonl\"`",
                        );
                        PathBuf::new()
                    }
                };
                let chunk_chars = self.positive(
                    m.chunk_chars.as_ref(),
                    "model.chunk_chars",
                    1,
                    DEFAULT_CHUNK_CHARS as u32,
                ) as usize;
                ModelConfig::Scripted {
                    script,
                    chunk_chars,
                }
            }
            other => {
                self.error(
                    Some(m.provider.span()),
                    "model.provider",
                    format!("unknown provider `{other}`; this build offers \"scripted\""),
                );
                ModelConfig::Scripted {
                    script: PathBuf::new(),
                    chunk_chars: DEFAULT_CHUNK_CHARS,
                }
            }
        }
    }

    fn analyzer(
        &mut self,
        i: usize,
        a: Spanned<RawAnalyzer>,
        defer: Duration,
        timeout: Duration,
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
            config: table_to_json(a.config),
            line,
            name,
        }
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
        assert_eq!(
            c.model,
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
    fn a_missing_model_table_says_what_to_write() {
        let err = parse("").expect_err("no model");
        assert_eq!(err.0[0].key, "model");
        assert!(err.0[0].message.contains("provider = \"scripted\""));
    }

    #[test]
    fn unknown_provider_lists_the_available_ones() {
        let err = parse("[model]\nprovider = \"gpt\"\n").expect_err("bad provider");
        assert_eq!(err.0[0].key, "model.provider");
        assert_eq!(err.0[0].line, Some(2));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("[model\nprovider = 1").expect_err("bad toml");
        assert_eq!(err.0[0].line, Some(1));
    }
}
